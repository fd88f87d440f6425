/* fraud: scores each payment once. Consumes payments.requests; allowed
 * payments go on to payments.fraud-scored, blocked ones end `blocked`,
 * review holds the payment with an interim `review` outcome. A payment
 * already assessed is never re-scored: its stored assessment is re-emitted.
 * (The gradient-boosted model arrives with issue 4; until then ml_score is 0
 * and model_version "none".) */
#ifndef FRAUD_H
#define FRAUD_H

#include "kloop.h"

extern const stage_def fraud_stage;

#endif
