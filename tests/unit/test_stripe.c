/* Unit tests for the Stripe-like adapter's request and response mapping. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "charge.h"
#include "stripe.h"

static charge_answer map(long status, const char *body) {
  charge_answer a;
  stripe_map_response(status, body, body ? strlen(body) : 0, &a);
  return a;
}

Test(stripe, success_carries_charge_id_and_fee) {
  charge_answer a = map(200, "{\"id\":\"ch_1\",\"status\":\"succeeded\",\"fee\":175}");
  cr_assert_eq(a.kind, CHARGE_SUCCEEDED);
  cr_assert_str_eq(a.charge_id, "ch_1");
  cr_assert_eq(a.fee_minor, 175);
  charge_answer_clear(&a);
}

Test(stripe, decline_code_is_kept) {
  charge_answer a = map(402, "{\"error\":{\"type\":\"card_error\",\"code\":\"card_declined\","
                             "\"decline_code\":\"insufficient_funds\"}}");
  cr_assert_eq(a.kind, CHARGE_DECLINED);
  cr_assert_str_eq(a.decline_code, "insufficient_funds");
  a = map(402, "{\"error\":{\"type\":\"card_error\",\"code\":\"expired_card\"}}");
  cr_assert_str_eq(a.decline_code, "expired_card");
}

Test(stripe, garbled_or_error_200_is_ambiguous) {
  cr_assert_eq(map(200, "{not json").kind, CHARGE_UNKNOWN);
  cr_assert_eq(map(200, "{\"error\":{\"message\":\"oops\"}}").kind, CHARGE_UNKNOWN);
  cr_assert_eq(map(200, "{\"id\":\"ch_1\",\"status\":\"pending\"}").kind, CHARGE_UNKNOWN);
  cr_assert_eq(map(200, "{\"id\":\"ch_1\",\"status\":\"succeeded\",\"fee\":-3}").kind,
               CHARGE_UNKNOWN);
  cr_assert_eq(map(200, NULL).kind, CHARGE_UNKNOWN);
}

Test(stripe, server_errors_are_ambiguous_and_429_retryable) {
  cr_assert_eq(map(500, "{\"error\":{}}").kind, CHARGE_UNKNOWN);
  cr_assert_eq(map(503, "").kind, CHARGE_UNKNOWN);
  cr_assert_eq(map(429, "").kind, CHARGE_RETRYABLE);
  cr_assert_eq(map(409, "{\"error\":{}}").kind, CHARGE_RETRYABLE);
}

Test(stripe, client_errors_are_refusals) {
  charge_answer a = map(400, "{\"error\":{\"type\":\"invalid_request_error\",\"message\":\"bad\"}}");
  cr_assert_eq(a.kind, CHARGE_REJECTED);
  cr_assert(strstr(a.error, "bad"));
  cr_assert_eq(map(401, "").kind, CHARGE_REJECTED);
}

Test(stripe, body_is_form_encoded_with_lower_case_currency) {
  char *b = stripe_build_body(1234, "USD", "pm_card_visa", "pay_abc");
  cr_assert_str_eq(b, "amount=1234&currency=usd&payment_method=pm_card_visa&confirm=true"
                      "&metadata%5Bpayment_id%5D=pay_abc");
  free(b);
  b = stripe_build_body(1, "EUR", "pm a&b", "p");
  cr_assert(strstr(b, "payment_method=pm%20a%26b"), "values are escaped: %s", b);
  free(b);
}

Test(stripe, idempotency_key_is_derived_from_payment_and_processor) {
  char k1[128], k2[128];
  charge_idempotency_key("pay_1", "stripe", k1, sizeof k1);
  charge_idempotency_key("pay_1", "paypal", k2, sizeof k2);
  cr_assert_str_eq(k1, "paystream:pay_1:stripe");
  cr_assert_str_neq(k1, k2);
}

Test(stripe, error_code_and_decline_code_are_apart) {
  /* Stripe's shape (issue 17.15): code card_declined, decline_code the reason. */
  charge_answer a = map(402, "{\"error\":{\"type\":\"card_error\",\"code\":\"card_declined\","
                             "\"decline_code\":\"insufficient_funds\"}}");
  cr_assert_str_eq(a.error_code, "card_declined");
  cr_assert_str_eq(a.decline_code, "insufficient_funds");
  a = map(402, "{\"error\":{\"type\":\"card_error\",\"code\":\"expired_card\","
               "\"decline_code\":\"expired_card\"}}");
  cr_assert_str_eq(a.error_code, "expired_card");
}

Test(stripe, a_long_charge_id_is_kept_whole) {
  /* Issue 17.5: ids were cut at 127 bytes. */
  char id[301], body[512];
  memset(id, 'c', 300);
  id[300] = '\0';
  snprintf(body, sizeof body, "{\"id\":\"%s\",\"status\":\"succeeded\",\"fee\":1}", id);
  charge_answer a = map(200, body);
  cr_assert_eq(a.kind, CHARGE_SUCCEEDED);
  cr_assert_str_eq(a.charge_id, id);
  charge_answer_clear(&a);
}
