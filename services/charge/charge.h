/* charge: the processor gateway. Consumes payments.fraud-scored, records the
 * attempt (`charging`) durably before any request leaves, charges through
 * the libcurl multi interface with a processor idempotency key derived from
 * the payment, and records the answer. Succeeded -> payments.charged;
 * declined and failed end there with an outcome. An ambiguous answer
 * (timeout, reset, 5xx) is retried on the same processor with the same key,
 * never sent elsewhere. */
#ifndef CHARGE_H
#define CHARGE_H

#include "kloop.h"

/* The processor idempotency key for a payment at a processor. */
void charge_idempotency_key(const char *payment_id, const char *processor, char *out, size_t len);

/* The pause before retrying a charge that got no definite answer: 100 ms
 * doubling per round up to 2 s, plus up to half of that again as jitter
 * (jitter in [0, 1)) so that retries of many payments do not arrive at the
 * processor in lockstep. */
long charge_backoff_ms(int round, double jitter);

extern const stage_def charge_stage;

#endif
