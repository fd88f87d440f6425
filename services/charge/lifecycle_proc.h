/* lifecycle_proc: processor requests for the payment lifecycle, both
 * flavours (/work/notes/procsim-contract.md): authorize (Stripe-like
 * PaymentIntent with capture_method=manual, PayPal-like order with intent
 * AUTHORIZE), and the operations capture, void and refund on the processor
 * object that holds the payment (pi_/ch_ at Stripe, AUTH-/CAP- at PayPal).
 * Pure request building and response mapping, unit-tested without a
 * network (tests/unit/test_lifecycle_proc.c); the answer says what the
 * charge stage does (processor.h): SUCCEEDED with the processor's id of the
 * new object (payment intent / authorization for an authorize, capture id,
 * refund id, the voided object) and the fee; DECLINED (the processor
 * refused it for good: over capturable, voided, expired, insufficient
 * balance) with the processor's code; RETRYABLE; UNKNOWN (retry, same key). */
#ifndef CHARGE_LIFECYCLE_PROC_H
#define CHARGE_LIFECYCLE_PROC_H

#include <stdbool.h>
#include <stdint.h>

#include "operation.h"
#include "processor.h"

/* An HTTP request: path below the processor's base URL, body (malloc'd),
 * content type. */
typedef struct lc_request {
  char path[512];
  char *body;
  bool json;
} lc_request;

/* Authorization of amount (the sales path with kind AUTHORIZE). Returns 0,
 * or -1 (nothing allocated) for an amount that does not format. */
int lc_authorize_request(bool paypal, int64_t amount_minor, const char *currency,
                         const char *payment_method, const char *payment_id, lc_request *rq);
void lc_map_authorize(bool paypal, long http_status, const char *body, size_t len,
                      charge_answer *a);

/* An operation (KIND_CAPTURE, KIND_VOID, KIND_REFUND) on target, the
 * processor's id of what holds the money: the authorization (pi_/AUTH-)
 * for capture and void; for a refund the sale's charge (ch_ / the PayPal
 * capture) or, for an authorization, the payment intent (Stripe) or one
 * capture (PayPal). Returns 0 or -1 (bad kind or amount). */
int lc_operation_request(bool paypal, ps_kind kind, const char *target, int64_t amount_minor,
                         const char *currency, bool final_capture, const char *payment_id,
                         const char *operation_id, lc_request *rq);
/* Its answer. target: what the request named (NULL: unknown); a PayPal
 * void answered 204 No Content (PayPal's answer without Prefer) is VOIDED,
 * with target as its id (s11 review 2). */
void lc_map_operation(bool paypal, ps_kind kind, long http_status, const char *body, size_t len,
                      const char *currency, const char *target, charge_answer *a);

/* The refund a by-id status query asks for: the processor's refund id, its
 * amount and currency, our operation id, our payment id (NULL: unchecked);
 * target: what the operation's request names (NULL: unknown). */
typedef struct lc_refund_ask {
  const char *refund_id, *currency, *operation_id;
  int64_t amount_minor;
  const char *payment_id;
  const char *target;
} lc_refund_ask;

/* The answer to GET /v1/refunds/{id} / /v2/payments/refunds/{id}, read as
 * a refund's reply (lc_map_operation) — and a verdict only when it is one
 * for the refund asked: a non-2xx (400, 402, 422, 404, ...) is no verdict
 * (a proxy's or API version's refusal of the query, not of the refund);
 * nor is a body whose id is not the one asked, whose amount (or currency)
 * is not the refund's, whose metadata[refund_id] / invoice_id is not our
 * operation id (required: an id we kept may be another refund's, review2
 * MEDIUM B), or whose metadata[payment_id] / custom_id, when present, is
 * not our payment (a misrouted answer). Those are CHARGE_UNKNOWN, nothing
 * kept; one the processor gave (HTTP 2xx-4xx but 408/429) sets
 * query_answered: not a failure for the breaker (review2 LOW D). */
void lc_map_refund_by_id(bool paypal, long http_status, const char *body, size_t len,
                         const lc_refund_ask *ask, charge_answer *a);

/* A refund's reply or replay read by lc_map_operation as pending
 * (a->pending_ref): a->ref_named is set only when the body names our
 * refund as a by-id answer must (ask->refund_id ignored: the body's own id,
 * its amount, currency, our operation id — required — and payment id):
 * only such an id is kept and asked by (review2 MEDIUM B). */
void lc_check_pending(bool paypal, const char *body, size_t len, const lc_refund_ask *ask,
                      charge_answer *a);

/* A search's answer read by lc_map_operation as a verdict (succeeded or
 * declined) is one only when it is for our refund as lc_check_pending
 * checks (its own id, amount, currency, our operation id — required — and
 * payment id) and a 2xx; otherwise CHARGE_UNKNOWN, nothing kept, and
 * query_answered as lc_map_refund_by_id sets it (s11 review 3). */
void lc_check_search(bool paypal, long http_status, const char *body, size_t len,
                     const lc_refund_ask *ask, charge_answer *a);

#endif
