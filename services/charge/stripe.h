/* stripe: the Stripe-like processor flavour — form-encoded POST /v1/charges
 * with an Idempotency-Key header; 402 with an error object on decline. Pure
 * request building and response mapping, unit-tested without a network. */
#ifndef CHARGE_STRIPE_H
#define CHARGE_STRIPE_H

#include <stddef.h>
#include <stdint.h>

#include "processor.h" /* charge_answer, charge_kind */

/* Form body for a charge; returns a malloc'd string. */
char *stripe_build_body(int64_t amount_minor, const char *currency, const char *payment_method,
                        const char *payment_id);

/* Maps an HTTP status and body to an answer. */
void stripe_map_response(long http_status, const char *body, size_t len, charge_answer *a);

#endif
