/* fraud: scores each payment once. Consumes payments.requests; allowed
 * payments go on to payments.fraud-scored, blocked ones end `blocked`,
 * review holds the payment with an interim `review` outcome. A payment
 * already assessed is never re-scored: its stored assessment is re-emitted.
 * Rules run first; the gradient-boosted model (model.c, PAYSTREAM_FRAUD_MODEL)
 * scores the rest of the batch in one call; with PAYSTREAM_FRAUD_MODEL=none
 * ml_score is 0 and model_version "none". A payment whose assessment the
 * database refuses on its own ends `failed` (fraud_store_refused). */
#ifndef FRAUD_H
#define FRAUD_H

#include "kloop.h"

extern const stage_def fraud_stage;

#endif
