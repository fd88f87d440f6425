/* stripe: the Stripe-like processor flavour — form-encoded POST /v1/charges
 * with an Idempotency-Key header; 402 with an error object on decline. Pure
 * request building and response mapping, unit-tested without a network. */
#ifndef CHARGE_STRIPE_H
#define CHARGE_STRIPE_H

#include <stddef.h>
#include <stdint.h>

/* What one HTTP exchange means for the payment. */
typedef enum charge_kind {
  CHARGE_SUCCEEDED,  /* charged: charge id and fee known */
  CHARGE_DECLINED,   /* terminal: decline code */
  CHARGE_REJECTED,   /* the processor refused the request itself (4xx): not charged */
  CHARGE_NOT_SENT,   /* provably never reached the processor (connection refused) */
  CHARGE_RETRYABLE,  /* the processor said "not now" (429, 409 in progress): not charged */
  CHARGE_UNKNOWN,    /* ambiguous (timeout, reset, 5xx, garbled 200): retry same key */
} charge_kind;

typedef struct charge_answer {
  charge_kind kind;
  char charge_id[128];
  char decline_code[64];
  int64_t fee_minor;
  char error[160];
} charge_answer;

/* Form body for a charge; returns a malloc'd string. */
char *stripe_build_body(int64_t amount_minor, const char *currency, const char *payment_method,
                        const char *payment_id);

/* Maps an HTTP status and body to an answer. */
void stripe_map_response(long http_status, const char *body, size_t len, charge_answer *a);

const char *charge_kind_name(charge_kind k);

#endif
