/* Unit tests for the lifecycle processor requests and answers
 * (lifecycle_proc.h), both flavours, per the procsim contract. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "lifecycle_proc.h"

#define MAP_OP(pp, k, st, body, a) lc_map_operation(pp, k, st, body, strlen(body), "USD", NULL, a)

Test(lifecycle_proc, stripe_authorize_is_a_manual_capture_payment_intent) {
  lc_request rq;
  cr_assert_eq(lc_authorize_request(false, 1000, "USD", "pm_card_visa", "pay_1", &rq), 0);
  cr_assert_str_eq(rq.path, "/v1/payment_intents");
  cr_assert_not_null(strstr(rq.body, "capture_method=manual"));
  cr_assert_not_null(strstr(rq.body, "amount=1000&currency=usd"));
  cr_assert_not_null(strstr(rq.body, "metadata%5Bpayment_id%5D=pay_1"));
  free(rq.body);
  charge_answer a;
  const char *ok = "{\"id\":\"pi_1\",\"status\":\"requires_capture\",\"amount_capturable\":1000}";
  lc_map_authorize(false, 200, ok, strlen(ok), &a);
  cr_assert_eq(a.kind, CHARGE_SUCCEEDED);
  cr_assert_str_eq(a.charge_id, "pi_1");
  charge_answer_clear(&a);
  const char *no = "{\"error\":{\"type\":\"card_error\",\"code\":\"card_declined\",\"decline_code\":\"insufficient_funds\"}}";
  lc_map_authorize(false, 402, no, strlen(no), &a);
  cr_assert_eq(a.kind, CHARGE_DECLINED);
  cr_assert_str_eq(a.decline_code, "insufficient_funds");
  const char *odd = "{\"id\":\"pi_1\",\"status\":\"processing\"}";
  lc_map_authorize(false, 200, odd, strlen(odd), &a);
  cr_assert_eq(a.kind, CHARGE_UNKNOWN, "a 200 that is no authorization is ambiguous");
}

Test(lifecycle_proc, paypal_authorize_takes_the_authorization_id) {
  lc_request rq;
  cr_assert_eq(lc_authorize_request(true, 1050, "USD", "pm_card_visa", "pay_1", &rq), 0);
  cr_assert_str_eq(rq.path, "/v2/checkout/orders");
  cr_assert_not_null(strstr(rq.body, "\"intent\":\"AUTHORIZE\""));
  cr_assert_not_null(strstr(rq.body, "\"value\":\"10.50\""));
  free(rq.body);
  charge_answer a;
  const char *ok = "{\"id\":\"ORDER-1\",\"status\":\"COMPLETED\",\"purchase_units\":[{\"payments\":"
                   "{\"authorizations\":[{\"id\":\"AUTH-9\",\"status\":\"CREATED\"}]}}]}";
  lc_map_authorize(true, 201, ok, strlen(ok), &a);
  cr_assert_eq(a.kind, CHARGE_SUCCEEDED);
  cr_assert_str_eq(a.charge_id, "AUTH-9");
  charge_answer_clear(&a);
  const char *no = "{\"name\":\"UNPROCESSABLE_ENTITY\",\"details\":[{\"issue\":\"INSTRUMENT_DECLINED\"}]}";
  lc_map_authorize(true, 422, no, strlen(no), &a);
  cr_assert_eq(a.kind, CHARGE_DECLINED);
  cr_assert_str_eq(a.decline_code, "INSTRUMENT_DECLINED");
}

Test(lifecycle_proc, stripe_operations_address_the_payment_intent_or_charge) {
  lc_request rq;
  cr_assert_eq(lc_operation_request(false, KIND_CAPTURE, "pi_1", 400, "USD", false, "pay_1", "op_1", &rq), 0);
  cr_assert_str_eq(rq.path, "/v1/payment_intents/pi_1/capture");
  cr_assert_str_eq(rq.body, "amount_to_capture=400&final_capture=false");
  free(rq.body);
  cr_assert_eq(lc_operation_request(false, KIND_CAPTURE, "pi_1", 400, "USD", true, "pay_1", "op_1", &rq), 0);
  cr_assert_str_eq(rq.body, "amount_to_capture=400");
  free(rq.body);
  cr_assert_eq(lc_operation_request(false, KIND_VOID, "pi_1", 0, "", false, "pay_1", "op_2", &rq), 0);
  cr_assert_str_eq(rq.path, "/v1/payment_intents/pi_1/cancel");
  free(rq.body);
  cr_assert_eq(lc_operation_request(false, KIND_REFUND, "ch_7", 250, "USD", false, "pay_1", "op_3", &rq), 0);
  cr_assert_str_eq(rq.path, "/v1/refunds");
  cr_assert_str_eq(rq.body, "charge=ch_7&amount=250&metadata%5Bpayment_id%5D=pay_1&metadata%5Brefund_id%5D=op_3");
  free(rq.body);
  cr_assert_eq(lc_operation_request(false, KIND_REFUND, "pi_1", 250, "USD", false, "pay_1", "op_3", &rq), 0);
  cr_assert(strncmp(rq.body, "payment_intent=pi_1&", 20) == 0);
  free(rq.body);
  cr_assert_eq(lc_operation_request(false, KIND_CAPTURE, "pi_1/../x", 1, "USD", false, "p", "o", &rq), -1,
               "a target that is not one path segment is refused");
  cr_assert_eq(lc_operation_request(false, KIND_REFUND, "ch_1", 0, "USD", false, "p", "o", &rq), -1);
}

Test(lifecycle_proc, stripe_operation_answers) {
  charge_answer a;
  MAP_OP(false, KIND_CAPTURE, 200, "{\"id\":\"pi_1\",\"status\":\"requires_capture\",\"capture_id\":\"py_5\",\"fee\":12}", &a);
  cr_assert_eq(a.kind, CHARGE_SUCCEEDED);
  cr_assert_str_eq(a.charge_id, "py_5");
  cr_assert_eq(a.fee_minor, 12);
  charge_answer_clear(&a);
  MAP_OP(false, KIND_CAPTURE, 400, "{\"error\":{\"code\":\"amount_too_large\"}}", &a);
  cr_assert_eq(a.kind, CHARGE_DECLINED);
  cr_assert_str_eq(a.error_code, "amount_too_large");
  MAP_OP(false, KIND_VOID, 200, "{\"id\":\"pi_1\",\"status\":\"canceled\"}", &a);
  cr_assert_eq(a.kind, CHARGE_SUCCEEDED);
  charge_answer_clear(&a);
  MAP_OP(false, KIND_VOID, 400, "{\"error\":{\"code\":\"payment_intent_unexpected_state\"}}", &a);
  cr_assert_eq(a.kind, CHARGE_DECLINED);
  MAP_OP(false, KIND_REFUND, 200, "{\"id\":\"re_1\",\"status\":\"succeeded\",\"amount\":250}", &a);
  cr_assert_eq(a.kind, CHARGE_SUCCEEDED);
  cr_assert_str_eq(a.charge_id, "re_1");
  charge_answer_clear(&a);
  MAP_OP(false, KIND_REFUND, 200, "{\"id\":\"re_1\",\"status\":\"failed\",\"failure_reason\":\"insufficient_funds\"}", &a);
  cr_assert_eq(a.kind, CHARGE_DECLINED);
  cr_assert_str_eq(a.decline_code, "insufficient_funds");
  MAP_OP(false, KIND_REFUND, 402, "{\"error\":{\"code\":\"insufficient_funds\"}}", &a);
  cr_assert_eq(a.kind, CHARGE_DECLINED);
  MAP_OP(false, KIND_REFUND, 400, "{\"error\":{\"code\":\"idempotency_error\"}}", &a);
  cr_assert_neq(a.kind, CHARGE_DECLINED, "an idempotency error is not the processor's decision");
  MAP_OP(false, KIND_REFUND, 503, "oops", &a);
  cr_assert_eq(a.kind, CHARGE_UNKNOWN);
  MAP_OP(false, KIND_REFUND, 409, "{}", &a);
  cr_assert_eq(a.kind, CHARGE_RETRYABLE);
}

Test(lifecycle_proc, paypal_operations) {
  lc_request rq;
  cr_assert_eq(lc_operation_request(true, KIND_CAPTURE, "AUTH-9", 400, "USD", true, "pay_1", "op_1", &rq), 0);
  cr_assert_str_eq(rq.path, "/v2/payments/authorizations/AUTH-9/capture");
  cr_assert_not_null(strstr(rq.body, "\"final_capture\":true"));
  cr_assert_not_null(strstr(rq.body, "\"value\":\"4.00\""));
  free(rq.body);
  cr_assert_eq(lc_operation_request(true, KIND_VOID, "AUTH-9", 0, "", false, "pay_1", "op_2", &rq), 0);
  cr_assert_str_eq(rq.path, "/v2/payments/authorizations/AUTH-9/void");
  free(rq.body);
  cr_assert_eq(lc_operation_request(true, KIND_REFUND, "CAP-3", 250, "USD", false, "pay_1", "op_3", &rq), 0);
  cr_assert_str_eq(rq.path, "/v2/payments/captures/CAP-3/refund");
  cr_assert_not_null(strstr(rq.body, "\"custom_id\":\"pay_1\""));
  free(rq.body);
  charge_answer a;
  MAP_OP(true, KIND_CAPTURE, 201, "{\"id\":\"CAP-4\",\"status\":\"COMPLETED\",\"seller_receivable_breakdown\":{\"paypal_fee\":{\"currency_code\":\"USD\",\"value\":\"0.42\"}}}", &a);
  cr_assert_eq(a.kind, CHARGE_SUCCEEDED);
  cr_assert_str_eq(a.charge_id, "CAP-4");
  cr_assert_eq(a.fee_minor, 42);
  charge_answer_clear(&a);
  MAP_OP(true, KIND_CAPTURE, 422, "{\"details\":[{\"issue\":\"MAX_CAPTURE_AMOUNT_EXCEEDED\"}]}", &a);
  cr_assert_eq(a.kind, CHARGE_DECLINED);
  cr_assert_str_eq(a.error_code, "MAX_CAPTURE_AMOUNT_EXCEEDED");
  MAP_OP(true, KIND_VOID, 200, "{\"id\":\"AUTH-9\",\"status\":\"VOIDED\"}", &a);
  cr_assert_eq(a.kind, CHARGE_SUCCEEDED);
  charge_answer_clear(&a);
  MAP_OP(true, KIND_REFUND, 422, "{\"details\":[{\"issue\":\"REFUND_FAILED_INSUFFICIENT_FUNDS\"}]}", &a);
  cr_assert_eq(a.kind, CHARGE_DECLINED);
  MAP_OP(true, KIND_REFUND, 422, "{\"details\":[{\"issue\":\"DUPLICATE_REQUEST_ID\"}]}", &a);
  cr_assert_neq(a.kind, CHARGE_DECLINED, "a reused request id is not a decision");
  MAP_OP(true, KIND_REFUND, 201, "{\"id\":\"REF-1\",\"status\":\"PENDING\"}", &a);
  cr_assert_eq(a.kind, CHARGE_UNKNOWN);
}

/* s11 review 2: PayPal answers a void without Prefer 204 No Content (no
 * body): that is VOIDED, the authorization (the request's target) its id —
 * not an unknown answer polled every few seconds as a breaker failure. */
Test(lifecycle_proc, a_paypal_void_answered_204_is_voided) {
  charge_answer a;
  lc_map_operation(true, KIND_VOID, 204, "", 0, "USD", "AUTH-9", &a);
  cr_assert_eq(a.kind, CHARGE_SUCCEEDED);
  cr_assert_str_eq(a.charge_id, "AUTH-9");
  cr_assert_eq(a.fee_minor, 0);
  charge_answer_clear(&a);
  lc_map_operation(true, KIND_CAPTURE, 204, "", 0, "USD", "AUTH-9", &a);
  cr_assert_neq(a.kind, CHARGE_SUCCEEDED, "a capture has a body: 204 is no verdict");
  charge_answer_clear(&a);
  lc_map_operation(true, KIND_REFUND, 204, "", 0, "USD", "CAP-1", &a);
  cr_assert_neq(a.kind, CHARGE_SUCCEEDED, "a refund has a body: 204 is no verdict");
  charge_answer_clear(&a);
}

Test(lifecycle_proc, no_such_object_is_refused_with_the_processors_code) {
  charge_answer a;
  MAP_OP(false, KIND_REFUND, 404, "{\"error\":{\"type\":\"invalid_request_error\",\"code\":\"resource_missing\"}}", &a);
  cr_assert_eq(a.kind, CHARGE_REJECTED);
  cr_assert(a.resource_missing);
  cr_assert_str_eq(a.error_code, "resource_missing");
  MAP_OP(true, KIND_CAPTURE, 404, "{\"name\":\"RESOURCE_NOT_FOUND\",\"details\":[{\"issue\":\"INVALID_RESOURCE_ID\"}]}", &a);
  cr_assert_eq(a.kind, CHARGE_REJECTED);
  cr_assert(a.resource_missing);
  cr_assert_str_eq(a.error_code, "INVALID_RESOURCE_ID");
  /* a 404 without the processor's code (a proxy's) decides nothing */
  MAP_OP(false, KIND_REFUND, 404, "{\"error\":{\"type\":\"invalid_request_error\"}}", &a);
  cr_assert_not(a.resource_missing);
  MAP_OP(true, KIND_REFUND, 404, "<html>not found</html>", &a);
  cr_assert_not(a.resource_missing);
}

/* A refund the processor holds pending: no verdict, but its id is kept to ask
 * its current state by id (refund_status.h); its later state by id decides. */
Test(lifecycle_proc, pending_refunds_keep_the_processors_id) {
  charge_answer a;
  MAP_OP(false, KIND_REFUND, 200, "{\"id\":\"re_2\",\"status\":\"pending\"}", &a);
  cr_assert_eq(a.kind, CHARGE_UNKNOWN);
  cr_assert(a.pending_ref);
  cr_assert_str_eq(a.charge_id, "re_2");
  charge_answer_clear(&a);
  MAP_OP(false, KIND_REFUND, 200, "{\"id\":\"re_2\",\"status\":\"canceled\"}", &a);
  cr_assert_eq(a.kind, CHARGE_DECLINED);
  cr_assert_str_eq(a.error_code, "refund_failed");
  cr_assert_str_eq(a.decline_code, "canceled");
  cr_assert_str_eq(a.charge_id, "re_2");
  charge_answer_clear(&a);
  MAP_OP(false, KIND_CAPTURE, 200, "{\"id\":\"pi_2\",\"status\":\"pending\"}", &a);
  cr_assert_not(a.pending_ref, "only a refund is asked by its id");
  charge_answer_clear(&a);
  MAP_OP(true, KIND_REFUND, 201, "{\"id\":\"REF-1\",\"status\":\"PENDING\"}", &a);
  cr_assert_eq(a.kind, CHARGE_UNKNOWN);
  cr_assert(a.pending_ref);
  cr_assert_str_eq(a.charge_id, "REF-1");
  charge_answer_clear(&a);
  MAP_OP(true, KIND_REFUND, 200, "{\"id\":\"REF-1\",\"status\":\"FAILED\",\"status_details\":{\"reason\":\"expired_or_canceled_card\"}}", &a);
  cr_assert_eq(a.kind, CHARGE_DECLINED);
  cr_assert_str_eq(a.decline_code, "expired_or_canceled_card");
  cr_assert_str_eq(a.charge_id, "REF-1");
  charge_answer_clear(&a);
  MAP_OP(true, KIND_REFUND, 200, "{\"id\":\"REF-1\",\"status\":\"CANCELLED\"}", &a);
  cr_assert_eq(a.kind, CHARGE_DECLINED);
  charge_answer_clear(&a);
}

/* A by-id status query (GET /v1/refunds/{id}, /v2/payments/refunds/{id}):
 * its non-2xx is never a verdict (review HIGH 1), and a 2xx is one only
 * when it names the refund asked for: that id, that amount (and currency),
 * our operation id when it carries one (review MEDIUM 2). */
#define BY_ID(pp, st, body, a)                                                                 \
  do {                                                                                         \
    lc_refund_ask ask_ = {(pp) ? "REF-1" : "re_2", "USD", "op-1", 1000, "pay-1", NULL};      \
    lc_map_refund_by_id(pp, st, body, strlen(body), &ask_, a);                                 \
  } while (0)

Test(lifecycle_proc, a_by_id_queries_refusal_is_no_verdict) {
  charge_answer a;
  BY_ID(false, 400, "{\"error\":{\"type\":\"invalid_request_error\",\"code\":\"parameter_unknown\"}}", &a);
  cr_assert_eq(a.kind, CHARGE_UNKNOWN, "a 400 to the query does not decline the refund");
  BY_ID(false, 402, "{\"error\":{\"code\":\"card_declined\",\"decline_code\":\"generic_decline\"}}", &a);
  cr_assert_eq(a.kind, CHARGE_UNKNOWN);
  cr_assert_str_eq(a.error_code, "");
  BY_ID(false, 404, "{\"error\":{\"type\":\"invalid_request_error\",\"code\":\"resource_missing\"}}", &a);
  cr_assert_eq(a.kind, CHARGE_UNKNOWN);
  cr_assert_not(a.resource_missing);
  BY_ID(false, 429, "{\"error\":{\"code\":\"rate_limit\"}}", &a);
  cr_assert_eq(a.kind, CHARGE_UNKNOWN);
  BY_ID(true, 422, "{\"name\":\"UNPROCESSABLE_ENTITY\",\"details\":[{\"issue\":\"REFUND_FAILED_INSUFFICIENT_FUNDS\"}]}", &a);
  cr_assert_eq(a.kind, CHARGE_UNKNOWN, "a PayPal 422 to the query does not decline the refund");
  BY_ID(true, 400, "{\"details\":[{\"issue\":\"INVALID_PARAMETER_SYNTAX\"}]}", &a);
  cr_assert_eq(a.kind, CHARGE_UNKNOWN);
  BY_ID(true, 404, "{\"details\":[{\"issue\":\"INVALID_RESOURCE_ID\"}]}", &a);
  cr_assert_eq(a.kind, CHARGE_UNKNOWN);
  cr_assert_not(a.resource_missing);
}

Test(lifecycle_proc, a_by_id_answer_decides_only_for_the_refund_asked) {
  charge_answer a;
  /* ours: decides */
  BY_ID(false, 200, "{\"id\":\"re_2\",\"status\":\"failed\",\"amount\":1000,\"currency\":\"usd\",\"failure_reason\":\"lost_or_stolen_card\",\"metadata\":{\"refund_id\":\"op-1\"}}", &a);
  cr_assert_eq(a.kind, CHARGE_DECLINED);
  cr_assert_str_eq(a.decline_code, "lost_or_stolen_card");
  charge_answer_clear(&a);
  BY_ID(true, 200, "{\"id\":\"REF-1\",\"status\":\"COMPLETED\",\"invoice_id\":\"op-1\",\"amount\":{\"currency_code\":\"USD\",\"value\":\"10.00\"}}", &a);
  cr_assert_eq(a.kind, CHARGE_SUCCEEDED);
  charge_answer_clear(&a);
  BY_ID(true, 200, "{\"id\":\"REF-1\",\"status\":\"CANCELLED\",\"invoice_id\":\"op-1\",\"amount\":{\"currency_code\":\"USD\",\"value\":\"10\"}}", &a);
  cr_assert_eq(a.kind, CHARGE_DECLINED);
  charge_answer_clear(&a);
  /* another refund's object, or ours misread: no verdict, nothing kept */
  BY_ID(false, 200, "{\"id\":\"re_3\",\"status\":\"failed\",\"amount\":1000,\"currency\":\"usd\"}", &a);
  cr_assert_eq(a.kind, CHARGE_UNKNOWN, "another refund's failure is not ours");
  cr_assert_null(a.charge_id);
  BY_ID(false, 200, "{\"status\":\"canceled\",\"amount\":1000}", &a);
  cr_assert_eq(a.kind, CHARGE_UNKNOWN, "no id: not ours");
  BY_ID(false, 200, "{\"id\":\"re_2\",\"status\":\"canceled\",\"amount\":999,\"currency\":\"usd\"}", &a);
  cr_assert_eq(a.kind, CHARGE_UNKNOWN, "another amount");
  BY_ID(false, 200, "{\"id\":\"re_2\",\"status\":\"canceled\",\"currency\":\"usd\"}", &a);
  cr_assert_eq(a.kind, CHARGE_UNKNOWN, "no amount");
  BY_ID(false, 200, "{\"id\":\"re_2\",\"status\":\"canceled\",\"amount\":1000,\"currency\":\"eur\"}", &a);
  cr_assert_eq(a.kind, CHARGE_UNKNOWN, "another currency");
  BY_ID(false, 200, "{\"id\":\"re_2\",\"status\":\"succeeded\",\"amount\":1000,\"metadata\":{\"refund_id\":\"op-2\"}}", &a);
  cr_assert_eq(a.kind, CHARGE_UNKNOWN, "another operation's refund");
  cr_assert_null(a.charge_id);
  BY_ID(false, 200, "{\"id\":\"re_3\",\"status\":\"pending\",\"amount\":1000}", &a);
  cr_assert_not(a.pending_ref, "another refund's id is never kept");
  BY_ID(true, 200, "{\"id\":\"REF-2\",\"status\":\"FAILED\",\"amount\":{\"currency_code\":\"USD\",\"value\":\"10.00\"}}", &a);
  cr_assert_eq(a.kind, CHARGE_UNKNOWN);
  BY_ID(true, 200, "{\"id\":\"REF-1\",\"status\":\"FAILED\",\"amount\":{\"currency_code\":\"USD\",\"value\":\"1.00\"}}", &a);
  cr_assert_eq(a.kind, CHARGE_UNKNOWN);
  BY_ID(true, 200, "{\"id\":\"REF-1\",\"status\":\"FAILED\",\"amount\":{\"currency_code\":\"USD\",\"value\":\"10.00x\"}}", &a);
  cr_assert_eq(a.kind, CHARGE_UNKNOWN, "an unreadable amount");
  BY_ID(true, 200, "{\"id\":\"REF-1\",\"status\":\"FAILED\",\"invoice_id\":\"op-9\",\"amount\":{\"currency_code\":\"USD\",\"value\":\"10.00\"}}", &a);
  cr_assert_eq(a.kind, CHARGE_UNKNOWN, "another operation's refund");
  BY_ID(true, 200, "not json", &a);
  cr_assert_eq(a.kind, CHARGE_UNKNOWN);
}

/* review2 MEDIUM B: an id we kept may be another refund's of the same
 * amount; its answer decides for ours only when it names our operation
 * (metadata[refund_id] / invoice_id required) and, when it names a payment,
 * ours. */
Test(lifecycle_proc, a_by_id_answer_without_our_operation_is_no_verdict) {
  charge_answer a;
  BY_ID(false, 200, "{\"id\":\"re_2\",\"status\":\"failed\",\"amount\":1000,\"currency\":\"usd\"}", &a);
  cr_assert_eq(a.kind, CHARGE_UNKNOWN, "no metadata[refund_id]: not known to be ours");
  cr_assert(a.query_answered, "the processor answered: no breaker failure");
  BY_ID(false, 200, "{\"id\":\"re_2\",\"status\":\"failed\",\"amount\":1000,\"metadata\":{\"refund_id\":\"\"}}", &a);
  cr_assert_eq(a.kind, CHARGE_UNKNOWN, "an empty metadata[refund_id]");
  BY_ID(true, 200, "{\"id\":\"REF-1\",\"status\":\"FAILED\",\"amount\":{\"currency_code\":\"USD\",\"value\":\"10.00\"}}", &a);
  cr_assert_eq(a.kind, CHARGE_UNKNOWN, "no invoice_id: not known to be ours");
  BY_ID(false, 200, "{\"id\":\"re_2\",\"status\":\"failed\",\"amount\":1000,\"metadata\":{\"refund_id\":\"op-1\",\"payment_id\":\"pay-2\"}}", &a);
  cr_assert_eq(a.kind, CHARGE_UNKNOWN, "another payment's refund");
  BY_ID(true, 200, "{\"id\":\"REF-1\",\"status\":\"FAILED\",\"invoice_id\":\"op-1\",\"custom_id\":\"pay-2\",\"amount\":{\"currency_code\":\"USD\",\"value\":\"10.00\"}}", &a);
  cr_assert_eq(a.kind, CHARGE_UNKNOWN, "another payment's refund");
  BY_ID(false, 200, "{\"id\":\"re_2\",\"status\":\"failed\",\"amount\":1000,\"metadata\":{\"refund_id\":\"op-1\",\"payment_id\":\"pay-1\"}}", &a);
  cr_assert_eq(a.kind, CHARGE_DECLINED, "ours: decides");
  charge_answer_clear(&a);
  BY_ID(true, 200, "{\"id\":\"REF-1\",\"status\":\"FAILED\",\"invoice_id\":\"op-1\",\"custom_id\":\"pay-1\",\"amount\":{\"currency_code\":\"USD\",\"value\":\"10.00\"}}", &a);
  cr_assert_eq(a.kind, CHARGE_DECLINED, "ours: decides");
  charge_answer_clear(&a);
  BY_ID(false, 502, "bad gateway", &a);
  cr_assert_not(a.query_answered, "a 5xx is a breaker failure");
  BY_ID(false, 429, "{}", &a);
  cr_assert_not(a.query_answered, "a 429 is a breaker failure");
  BY_ID(false, 400, "{\"error\":{\"code\":\"parameter_unknown\"}}", &a);
  cr_assert(a.query_answered, "a 400 to the query: no breaker failure (review2 LOW D)");
}

/* review2 MEDIUM B: a pending reply's (or replay's) refund id is kept only
 * when the body names our refund: our operation id and its amount. */
#define PENDING(pp, body, a)                                                                   \
  do {                                                                                         \
    lc_refund_ask ask_ = {NULL, "USD", "op-1", 1000, "pay-1", NULL};                           \
    MAP_OP(pp, KIND_REFUND, 200, body, a);                                                     \
    lc_check_pending(pp, body, strlen(body), &ask_, a);                                        \
  } while (0)

Test(lifecycle_proc, a_pending_refunds_id_is_kept_only_when_it_names_our_operation) {
  charge_answer a;
  PENDING(false, "{\"id\":\"re_2\",\"status\":\"pending\",\"amount\":1000,\"currency\":\"usd\",\"metadata\":{\"refund_id\":\"op-1\",\"payment_id\":\"pay-1\"}}", &a);
  cr_assert(a.pending_ref);
  cr_assert(a.ref_named, "ours: its id is kept");
  charge_answer_clear(&a);
  PENDING(false, "{\"id\":\"re_2\",\"status\":\"pending\",\"amount\":1000,\"currency\":\"usd\"}", &a);
  cr_assert(a.pending_ref);
  cr_assert_not(a.ref_named, "no metadata[refund_id]: its id is not kept");
  charge_answer_clear(&a);
  PENDING(false, "{\"id\":\"re_2\",\"status\":\"pending\",\"amount\":1000,\"metadata\":{\"refund_id\":\"op-2\"}}", &a);
  cr_assert_not(a.ref_named, "another operation's refund");
  charge_answer_clear(&a);
  PENDING(false, "{\"id\":\"re_2\",\"status\":\"pending\",\"amount\":999,\"metadata\":{\"refund_id\":\"op-1\"}}", &a);
  cr_assert_not(a.ref_named, "another amount");
  charge_answer_clear(&a);
  PENDING(true, "{\"id\":\"REF-1\",\"status\":\"PENDING\",\"invoice_id\":\"op-1\",\"custom_id\":\"pay-1\",\"amount\":{\"currency_code\":\"USD\",\"value\":\"10.00\"}}", &a);
  cr_assert(a.ref_named, "ours: its id is kept");
  charge_answer_clear(&a);
  PENDING(true, "{\"id\":\"REF-1\",\"status\":\"PENDING\",\"amount\":{\"currency_code\":\"USD\",\"value\":\"10.00\"}}", &a);
  cr_assert(a.pending_ref);
  cr_assert_not(a.ref_named, "no invoice_id: its id is not kept");
  charge_answer_clear(&a);
}

/* review3 3: our refund answered pending (by its send, the replay, the
 * search or by id) is the processor answering, not a breaker failure — ten
 * of them polled in a quiet hour opened the circuit; to our send or the
 * replay of our key even in the minimal form (s11 review 1); a search's
 * pending answer that is not ours (or a garbled 2xx) and a timeout still count. */
Test(lifecycle_proc, our_pending_refund_is_no_breaker_failure) {
  charge_answer a;
  PENDING(true, "{\"id\":\"REF-1\",\"status\":\"PENDING\",\"invoice_id\":\"op-1\",\"custom_id\":\"pay-1\",\"amount\":{\"currency_code\":\"USD\",\"value\":\"10.00\"}}", &a);
  cr_assert_not(charge_op_answer_failed(&a), "our refund, pending: the processor answered");
  charge_answer_clear(&a);
  PENDING(false, "{\"id\":\"re_2\",\"status\":\"pending\",\"amount\":1000,\"currency\":\"usd\",\"metadata\":{\"refund_id\":\"op-1\"}}", &a);
  cr_assert_not(charge_op_answer_failed(&a));
  charge_answer_clear(&a);
  BY_ID(false, 200, "{\"id\":\"re_2\",\"status\":\"pending\",\"amount\":1000,\"currency\":\"usd\",\"metadata\":{\"refund_id\":\"op-1\"}}", &a);
  cr_assert(a.pending_ref && a.ref_named);
  cr_assert_not(charge_op_answer_failed(&a), "pending by id: the processor answered");
  charge_answer_clear(&a);
  PENDING(true, "{\"id\":\"REF-1\",\"status\":\"PENDING\",\"links\":[]}", &a);
  cr_assert(a.pending_ref && !a.ref_named, "a minimal reply names nothing");
  cr_assert_not(charge_op_answer_failed(&a),
                "our send (or key's replay) answered pending, minimal: the processor answered");
  charge_answer_clear(&a);
  PENDING(false, "{\"id\":\"re_2\",\"status\":\"pending\",\"amount\":999,\"metadata\":{\"refund_id\":\"op-1\"}}", &a);
  a.searched = true;
  cr_assert(charge_op_answer_failed(&a), "a search's pending refund not ours: as before");
  charge_answer_clear(&a);
  MAP_OP(true, KIND_REFUND, 500, "{\"name\":\"INTERNAL_SERVER_ERROR\"}", &a);
  cr_assert(charge_op_answer_failed(&a), "a 5xx is a failure");
  charge_answer_clear(&a);
  MAP_OP(true, KIND_REFUND, 201, "{\"id\":\"REF-1\",\"status\":\"COMPLETED\"}", &a);
  cr_assert_not(charge_op_answer_failed(&a), "a verdict");
  charge_answer_clear(&a);
}

/* s11 review 3: a search's verdict decides our refund only when the body
 * is our refund (its amount, our operation id, our payment) and a 2xx, as
 * a pending one must. */
#define SEARCH(pp, st, body, a)                                                                \
  do {                                                                                         \
    lc_refund_ask ask_ = {NULL, "USD", "op-1", 1000, "pay-1", NULL};                           \
    MAP_OP(pp, KIND_REFUND, st, body, a);                                                      \
    lc_check_search(pp, st, body, strlen(body), &ask_, a);                                     \
  } while (0)

Test(lifecycle_proc, a_search_verdict_decides_only_for_our_refund) {
  charge_answer a;
  SEARCH(false, 200, "{\"id\":\"re_2\",\"status\":\"succeeded\",\"amount\":1000,\"currency\":\"usd\",\"metadata\":{\"refund_id\":\"op-1\",\"payment_id\":\"pay-1\"}}", &a);
  cr_assert_eq(a.kind, CHARGE_SUCCEEDED, "ours: decides");
  cr_assert_str_eq(a.charge_id, "re_2");
  charge_answer_clear(&a);
  SEARCH(true, 200, "{\"id\":\"REF-1\",\"status\":\"FAILED\",\"invoice_id\":\"op-1\",\"custom_id\":\"pay-1\",\"amount\":{\"currency_code\":\"USD\",\"value\":\"10.00\"}}", &a);
  cr_assert_eq(a.kind, CHARGE_DECLINED, "ours: decides");
  charge_answer_clear(&a);
  SEARCH(false, 200, "{\"id\":\"re_2\",\"status\":\"succeeded\",\"amount\":999,\"currency\":\"usd\",\"metadata\":{\"refund_id\":\"op-1\"}}", &a);
  cr_assert_eq(a.kind, CHARGE_UNKNOWN, "another amount: no verdict");
  cr_assert_null(a.charge_id);
  charge_answer_clear(&a);
  SEARCH(false, 200, "{\"id\":\"re_2\",\"status\":\"succeeded\",\"amount\":1000,\"metadata\":{\"refund_id\":\"op-2\"}}", &a);
  cr_assert_eq(a.kind, CHARGE_UNKNOWN, "another operation's refund: no verdict");
  charge_answer_clear(&a);
  SEARCH(true, 201, "{\"id\":\"REF-1\",\"status\":\"COMPLETED\",\"invoice_id\":\"op-1\",\"custom_id\":\"pay-2\",\"amount\":{\"currency_code\":\"USD\",\"value\":\"10.00\"}}", &a);
  cr_assert_eq(a.kind, CHARGE_UNKNOWN, "another payment's refund: no verdict");
  charge_answer_clear(&a);
  SEARCH(true, 200, "{\"id\":\"REF-1\",\"status\":\"COMPLETED\"}", &a);
  cr_assert_eq(a.kind, CHARGE_UNKNOWN, "names nothing: no verdict");
  charge_answer_clear(&a);
  SEARCH(false, 402, "{\"error\":{\"code\":\"card_declined\"}}", &a);
  cr_assert_eq(a.kind, CHARGE_UNKNOWN, "a refusal of the search is no decline of the refund");
  cr_assert_str_eq(a.error_code, "");
  charge_answer_clear(&a);
}
