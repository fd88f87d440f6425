/* charge_db: the charge stage's persistence — the attempt rows in Postgres
 * and one round trip per cycle that makes the cycle's decisions durable and
 * learns what they did. The state machine (charge.c) plans a trip; this file
 * runs it and says, per item, what happened (citem.said). */
#ifndef CHARGE_DB_H
#define CHARGE_DB_H

#include <stddef.h>

#include "charge_item.h"
#include "kloop.h"

/* What one cycle asks of Postgres. Every group may be empty; an item is in
 * at most one group. */
typedef struct trip {
  citem **fresh; size_t nfresh; /* open first attempts (send counted for the eager), read */
  citem **book; size_t nbook;   /* refused sends; failovers */
  citem **rec; size_t nrec;     /* definite answers to record, then read back */
  citem **send; size_t nsend;   /* sends to count before they leave */
  size_t neager;                /* the first neager fresh are sent right after the trip */
} trip;

/* Runs the trip as one transaction in one round trip and sets every item's
 * `said`. When Postgres refuses the trip because of some item's data (a data
 * exception, an integrity violation, a raised exception), bisects it into
 * smaller transactions until the item it refuses on its own is found; that
 * item is SAID_ISOLATED with its reason and the others go on. Returns 0, or
 * -1 when some part failed transiently (those items are SAID_FAILED). */
int charge_db_trip(stage_ctx *ctx, const processor *procs, int nproc, trip *t);

/* Ends an isolated payment where that is safe, in its own transaction
 * (SQL in charge_db.c): `failed` with outcome_hex when no attempt may hold
 * the charge. Sets x->end_status, x->db.outcome_hex (the stored outcome, if
 * any) and x->may_hold. Returns 0, or -1 with err (a data error: left as it
 * is, listed in charge_unresolved; else transient). */
int charge_db_isolate_end(stage_ctx *ctx, citem *x, const char *outcome_hex, char *err,
                          size_t errlen);

/* Frees what an item's row owns. */
void charge_db_row_free(item_row *r);

/* The attempt state a definite answer is recorded as. */
const char *charge_db_answer_state(const citem *x);

#endif
