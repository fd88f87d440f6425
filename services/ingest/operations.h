/* ingest/operations: intake of capture, void and refund requests. Each is
 * validated, claimed by its own (merchant, idempotency key) in
 * payment_operations and decided in Postgres by ps_accept_operation
 * (migration 013): the payment is found (the merchant's own), and the
 * operation's amount is reserved on it by one conditional UPDATE, or the
 * operation is rejected with a code (payment_not_found, currency_mismatch,
 * payment_not_capturable, authorization_expired, amount_exceeds_capturable,
 * amount_exceeds_refundable). Accepted operations go straight to the
 * charge stage's topic (payments.fraud-scored): fraud scores sales and
 * authorizations only, and an operation never passes through it. Outcomes
 * (rejections, replays) are built from the operation's row (lib/operation.h).
 * Duplicates: a finished operation's outcome is replayed, one in flight is
 * absorbed, the same key with other parameters is idempotency_key_reused.
 * No Redis cache for operations: Postgres answers every one. */
#ifndef INGEST_OPERATIONS_H
#define INGEST_OPERATIONS_H

#include <stddef.h>

#include "kloop.h"

/* Processes the operation messages of a batch (msgs[i]->ev->operation set).
 * Returns 0, or -1 on a transient failure (the batch is retried). */
int ingest_operations(stage_ctx *ctx, stage_msg **msgs, size_t n, outbox *out);

#endif
