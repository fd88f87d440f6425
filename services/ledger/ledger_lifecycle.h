/* ledger_lifecycle: the ledger's side of the payment lifecycle. An
 * authorization (a charged payment of kind authorize) posts its hold and
 * becomes `authorized` with its outcome; a succeeded operation posts its
 * money movement (capture, release, refund: posting_lifecycle.h) as its own
 * ledger transaction (ledger_transactions.operation_id) and becomes
 * `posted` with its outcome. Amounts, fees and processors are read from
 * Postgres (the payment, the succeeded attempt, the operation row), never
 * the event's. One posting per movement: the unique indexes of 013 make a
 * replay post nothing new, and the outcome is re-sent from what is stored. */
#ifndef LEDGER_LIFECYCLE_H
#define LEDGER_LIFECYCLE_H

#include <stdbool.h>
#include <stddef.h>

#include "kloop.h"

/* Whether ev is the lifecycle's (an operation, or an authorization). */
bool ledger_lifecycle_takes(const ps_event *ev);

/* Posts every lifecycle event of the batch, one after the other. Returns 0,
 * or -1 on a transient failure (the batch is retried; postings are
 * idempotent). */
int ledger_lifecycle(stage_ctx *ctx, stage_msg *msgs, size_t n, outbox *out);

#endif
