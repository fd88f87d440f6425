/* charge_resolve: the resolver's question for a sale or authorization
 * attempt without a definite answer, and the processor's idempotency-key
 * lifetime that bounds it (#20 review 2; migration 027).
 *
 * Within the key's lifetime an attempt an earlier send of which may have
 * arrived is asked about by key (charge_lookup.h): found, the answer is
 * recorded; "key unknown", it provably never arrived and is sent again with
 * the same key. A processor forgets keys, though (Stripe: pruned once at
 * least 24 hours old; PayPal: 6 hours for orders). Past the lifetime "key
 * unknown" proves nothing and a re-send could be executed a second time, so
 * an attempt whose FIRST send (charge_attempts.first_sent_at, Postgres'
 * clock) is older than the window is NEVER sent again: it is only searched
 * for by its payment id (charge_lookup.h). Found, the answer is recorded;
 * not found, it stays `charging` (listed in charge_unresolved with the
 * reason, counted in the unresolved-age metric), an ALERT is logged once and
 * paystream_charge_key_unfound_total counts it; it is searched again on a
 * long back-off and settled by a webhook, the settlement report or an
 * operator — never re-sent automatically.
 *
 * The window per processor is ps_key_resend_window(name) (027: the
 * processor_settings lifetime, default 24 h, less least(1 h, lifetime/10)),
 * re-read every 10 s, and capped by the flavour's documented lifetime (a
 * PayPal-like processor at 6 h less its margin). The database refuses the
 * count of such a re-send on its own (027's guard): this worker stops a
 * little earlier (KEY_SLACK_MS). Before 027 (or while Postgres cannot be
 * read) the flavour's window is used. */
#ifndef CHARGE_RESOLVE_H
#define CHARGE_RESOLVE_H

#include <stdbool.h>
#include <stdint.h>

#include "charge_item.h"
#include "kloop.h"

/* What to do after a status query's (or search's) answer. */
typedef enum resolve_said {
  RESOLVE_RECORD, /* the answer was found: record it as the reply */
  RESOLVE_SEND,   /* the key never arrived (within its lifetime): send again now, same key */
  RESOLVE_AGAIN,  /* ask again at x->next_try_ms, never send */
} resolve_said;

/* Reads the key windows when due (and, once, checks the role charge runs as:
 * migration 021's settled_by and 009's stage guards depend on it). */
void charge_resolve_refresh(stage_ctx *ctx, charge_state *st, int64_t now);

/* Whether a first send age_ms ago is past processor proc's window. */
bool charge_key_aged(const charge_state *st, int proc, int64_t age_ms);

/* Whether x's attempt may be at the processor and its first send is past
 * the window: it is never sent again. */
bool charge_key_past(const charge_state *st, const citem *x, int64_t now);

/* Starts x's status query (by key) or, past the key's window, its search by
 * payment id. Returns whether it is out (else next_try_ms is set). */
bool charge_resolve_start(charge_state *st, citem *x, int64_t now);

/* What x->ans (the query's or search's answer) says; sets x->lookup,
 * x->next_try_ms; writes the reason of an attempt it holds past the
 * key's window to charge_attempts.error (charge_unresolved's last_error). */
resolve_said charge_resolve_answer(stage_ctx *ctx, charge_state *st, citem *x, int64_t now);

/* An operation's facts for a re-send or a search (charge_ops.c): its
 * state, processor, kind, currency, whether a send may have arrived, the
 * age of its first send, its amount and payment id (for the search's
 * answer: lc_check_pending). */
typedef struct op_facts {
  char state[16], processor[64], kind[16], currency[4], payment_id[130];
  bool may_have;
  int64_t age_ms, amount_minor;
} op_facts;

/* Reads operation id's facts. Returns 0, or -1 (not read: asked later). */
int charge_resolve_op_facts(stage_ctx *ctx, const char *id, op_facts *f);

/* Writes why an attempt or operation is held to its row (charge_attempts.error
 * while charging, payment_operations.error_message while processing). */
void charge_resolve_note_attempt(stage_ctx *ctx, const citem *x, const char *why);
void charge_resolve_note_operation(stage_ctx *ctx, const char *operation_id, const char *why);

#endif
