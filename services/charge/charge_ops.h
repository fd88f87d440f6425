/* charge_ops: executes payment operations (capture, void, refund) that
 * ingest accepted, at the processor that holds the payment's authorization
 * or charge — never another one (no failover: the money is there).
 * Same safety rules as charges: the operation is moved to `processing` and
 * its send counted in Postgres before the request leaves, with a processor
 * idempotency key derived from the operation id alone (op_<id>), so every
 * retry after an ambiguous answer (timeout, reset, 5xx, 409, 4xx that is
 * not a decision) is the same request; such an operation holds its batch
 * (process fails, kloop retries with back-off) until the processor answers
 * for good. The answer is recorded by ps_settle_operation (013): success
 * turns the reservation into captured/released/refunded, a decline gives it
 * back. A succeeded operation goes to the ledger (payments.charged, with its
 * ChargeResult); a declined one ends with its outcome here.
 * Operations are sequential and synchronous (one libcurl easy handle):
 * they are rare next to sales, which keep the multi pipeline (charge.c). */
#ifndef CHARGE_OPS_H
#define CHARGE_OPS_H

#include <stddef.h>

#include "charge_item.h"
#include "kloop.h"

/* Handles the operation messages of a batch (ev->operation set), leaving
 * the others alone. Returns 0, or -1 on a transient failure or an answer
 * still owed (the whole batch is retried; nothing else was taken yet). */
int charge_operations(stage_ctx *ctx, charge_state *st, stage_msg *msgs, size_t n, outbox *out);

#endif
