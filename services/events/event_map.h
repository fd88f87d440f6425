/* event_map: what a recorded processor event asks the events stage to
 * apply, read from its normalised fields and its signed body. Pure (no
 * I/O): the decisions on state and money are Postgres's
 * (ps_apply_processor_event, migrations 024, 028, 035); this only names the action
 * and the facts the normalised event does not carry (a dispute's status and
 * fee, a charge's fee, a decline's code, the operation a refund names). */
#ifndef EVENTS_EVENT_MAP_H
#define EVENTS_EVENT_MAP_H

#include <stdbool.h>
#include <stdint.h>

#include "payments.pb-c.h"

typedef enum ev_action {
  EV_NONE,             /* recorded only (authorizations, captures, refunds that succeeded, ...) */
  EV_CHARGE_SUCCEEDED, /* a sale charged: settles an unknown attempt */
  EV_CHARGE_FAILED,    /* a sale declined: settles an unknown attempt */
  EV_REFUND_FAILED,    /* a refund failed (late, if it had succeeded) */
  EV_REFUND_SUCCEEDED, /* a refund succeeded: settles one still without an answer */
  EV_DISPUTE,          /* a dispute moved: status in dispute_status */
} ev_action;

typedef struct ev_map {
  ev_action action;
  char dispute_status[16]; /* open, withdrawn, reinstated, won, lost */
  int64_t fee_minor;       /* the charge's or the dispute's fee (a PayPal dispute without `fee`:
                            * the sum of its seller fee DEBITs), -1 when not stated */
  char decline_code[64];   /* a declined charge's reason, "" when not stated */
  char operation_id[128];  /* a refund event: our operation id from its metadata, "" if none */
  /* A PayPal-like dispute resource's cumulative money_movements: how many
   * times the funds were withdrawn from (DEBIT) and given back to (CREDIT)
   * the seller so far; -1 when the resource carries no such list (a Stripe
   * event, an old-style PayPal event: each event is then one movement).
   * Only movements of the disputed funds: a fee movement (its reason names
   * a fee: DISPUTE_FEE, CHARGEBACK_FEE, DISPUTE_SETTLEMENT_FEE) is not one. */
  int withdrawals, reinstatements;
  /* one of them moved an amount other than the dispute's: counted all the
   * same, the dispute's amount posted (logged by the caller) */
  bool partial;
} ev_map;

/* Fills m for e. Returns 0, or -1 when the event names an action it
 * cannot complete (a dispute event with no status it knows, a closed
 * dispute neither won nor lost): the caller records it and applies nothing. */
int ev_map_event(const Payments__V1__ProcessorEvent *e, ev_map *m);

/* "charge_succeeded", ... as ps_apply_processor_event takes them. */
const char *ev_action_name(ev_action a);

#endif
