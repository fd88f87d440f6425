/* apply: one recorded processor event applied to its payment, and what
 * merchants and the ledger hear of it. The decisions are Postgres's
 * (ps_apply_processor_event, migrations 024, 028, 035: conditional writes, postings
 * once per money movement); this builds the function's arguments and, from
 * the effect it returns (the first application's, on every redelivery), the
 * outputs:
 *   charge_settled  -> payments.charged (the ledger posts it as any charge
 *                      and publishes the payment's outcome)
 *   charge_declined -> the payment's stored outcome (declined)
 *   refund_reversed -> an outcome `failed` / refund_failed for the refund
 *   refund_settled  -> payments.charged for a refund still without an
 *                      answer that the processor says succeeded (the ledger
 *                      posts it and publishes its outcome; charge emits
 *                      nothing for an operation settled here)
 *   refund_failure_kept -> nothing: kept until the refund settles (028)
 *   dispute         -> an outcome `updated` with the dispute's fields
 *   ignored         -> nothing (counted). */
#ifndef EVENTS_APPLY_H
#define EVENTS_APPLY_H

#include <stddef.h>

#include "config.h"
#include "event_map.h"
#include "outbox.h"
#include "payments.pb-c.h"
#include "pg.h"

/* SQL: records the event and applies it, one transaction (pg_pipeline). */
extern const char EVENTS_SQL_APPLY[];
#define EVENTS_APPLY_NPARAMS 10

/* A declined sale's outcome (hex, for payments.outcome), built from the
 * payment's forwarded request; *hex NULL when the payment is unknown.
 * Returns 0, or -1 with err (a Postgres error: retry or isolate). */
int events_decline_outcome(pg_conn *pg, const Payments__V1__ProcessorEvent *e, const ev_map *m,
                           char **hex, char *err, size_t errlen);

/* Adds the outputs of the effect row r (row 0 of EVENTS_SQL_APPLY's
 * result) to out; *effect names it (static storage). Returns 0, or -1
 * with err (a Postgres error reading what the outputs are built from). */
int events_outputs(pg_conn *pg, const cfg *c, const PGresult *r, outbox *out, const char **effect,
                   char *err, size_t errlen);

#endif
