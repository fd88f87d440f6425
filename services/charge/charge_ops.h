/* charge_ops: payment operations (capture, void, refund) that ingest
 * accepted, as items of charge's state machine (charge.c) beside sales:
 * each is executed at the processor that holds the payment's authorization
 * or charge — never another one (no failover: the money is there).
 * Same safety rules as charges: the operation is moved to `processing` and
 * its send counted in Postgres before the request leaves, with a processor
 * idempotency key derived from the operation id alone (op_<id>). An answer
 * without a verdict (timeout, reset, 5xx, 409, a Stripe `pending` / PayPal
 * `PENDING` refund, a 4xx that decides nothing: 401 after a key rotation,
 * a proxy's 404, DUPLICATE_REQUEST_ID) holds only this item: it is parked on a capped
 * back-off (listed in charge_unresolved, its age in the unresolved metric),
 * later events of the same payment wait behind it, the partition's commit
 * floor stops at it, every other payment goes on. Before any re-send the
 * processor is asked what op_<id> got (charge_lookup.h): found, that answer
 * is recorded as if it were the reply; unknown, it is sent again with the
 * same key — only while its first send is within the processor's key
 * lifetime (charge_resolve.h): past it a refund is only searched for by its
 * operation id, a capture or void escalated, never sent again; otherwise
 * asked again later. An operation taken up with a send already counted (a
 * restart, a rebalance) starts with that question. "No such object" (404
 * resource_missing / INVALID_RESOURCE_ID) ends it `declined` with that code
 * when Postgres says no earlier send may have arrived; otherwise it is
 * asked about a bounded number of times, then escalated and dead-lettered.
 * A refund answered pending is then asked for by the processor's refund
 * id instead (refund_status.h).
 * The answer is recorded by ps_settle_operation (013): success turns the
 * reservation into captured/released/refunded, a decline gives it back. A
 * succeeded operation goes to the ledger (payments.charged, with its
 * ChargeResult); a declined one ends with its outcome here. An operation's
 * Postgres work is one statement at a time (they are rare next to sales);
 * its HTTP goes through the same slots and breaker as sales. */
#ifndef CHARGE_OPS_H
#define CHARGE_OPS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "charge_item.h"
#include "kloop.h"

struct op_item *charge_op_new(const char *operation_id);
void charge_op_free(struct op_item *o);

/* One step of operation item x: the cycle's plan (answer false: due work
 * done, a request started while *room allows) or its request's answer
 * (x->ans). Sets x->st (IT_READ waiting for next_try_ms, IT_INFLIGHT,
 * IT_RECORD, IT_DONE). */
void charge_op_step(stage_ctx *ctx, charge_state *st, citem *x, bool answer, int64_t now,
                    size_t *room);

/* A DONE operation's output: its charged event, its outcome, or its dead letter. */
void charge_op_emit(stage_ctx *ctx, citem *x, stage_msg *m, outbox *out);

/* How long it has been held without a definite answer (0: not held). */
int64_t charge_op_unresolved_ms(const citem *x, int64_t now);

#endif
