/* Unit tests for the PayPal-like adapter's request and response mapping. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "paypal.h"

static charge_answer map(long status, const char *body) {
  charge_answer a;
  paypal_map_response(status, body, body ? strlen(body) : 0, &a);
  return a;
}

Test(paypal, amounts_use_the_currency_exponent_without_floats) {
  char v[32];
  cr_assert_eq(paypal_format_amount(1234, "USD", v, sizeof v), 0);
  cr_assert_str_eq(v, "12.34");
  cr_assert_eq(paypal_format_amount(5, "EUR", v, sizeof v), 0);
  cr_assert_str_eq(v, "0.05");
  cr_assert_eq(paypal_format_amount(1234, "JPY", v, sizeof v), 0);
  cr_assert_str_eq(v, "1234");
  cr_assert_eq(paypal_format_amount(1234, "KWD", v, sizeof v), 0);
  cr_assert_str_eq(v, "1.234");
  cr_assert_eq(paypal_format_amount(100000000000000LL, "USD", v, sizeof v), 0);
  cr_assert_str_eq(v, "1000000000000.00");
  cr_assert_eq(paypal_format_amount(1, "XXX", v, sizeof v), -1);
}

Test(paypal, body_is_json_with_the_payment_as_custom_id) {
  char *b = paypal_build_body(1999, "GBP", "pm_card_visa", "pay_1");
  cr_assert_not_null(b);
  cr_assert(strstr(b, "\"value\":\"19.99\""), "%s", b);
  cr_assert(strstr(b, "\"currency_code\":\"GBP\""));
  cr_assert(strstr(b, "\"custom_id\":\"pay_1\""));
  free(b);
}

Test(paypal, completed_capture_succeeds) {
  charge_answer a = map(201, "{\"id\":\"CAP-1\",\"status\":\"COMPLETED\",\"fee_minor\":88}");
  cr_assert_eq(a.kind, CHARGE_SUCCEEDED);
  cr_assert_str_eq(a.charge_id, "CAP-1");
  cr_assert_eq(a.fee_minor, 88);
  charge_answer_clear(&a);
}

Test(paypal, declined_status_word_keeps_the_reason) {
  charge_answer a = map(422, "{\"id\":\"CAP-2\",\"status\":\"DECLINED\",\"reason\":\"INSUFFICIENT_FUNDS\"}");
  cr_assert_eq(a.kind, CHARGE_DECLINED);
  cr_assert_str_eq(a.decline_code, "INSUFFICIENT_FUNDS");
}

Test(paypal, pending_or_garbled_success_is_ambiguous) {
  cr_assert_eq(map(201, "{\"id\":\"CAP-3\",\"status\":\"PENDING\"}").kind, CHARGE_UNKNOWN);
  cr_assert_eq(map(200, "not json").kind, CHARGE_UNKNOWN);
  cr_assert_eq(map(201, "{\"status\":\"COMPLETED\"}").kind, CHARGE_UNKNOWN, "no id");
  cr_assert_eq(map(503, NULL).kind, CHARGE_UNKNOWN);
}

Test(paypal, refusals_and_throttling) {
  cr_assert_eq(map(400, "{\"name\":\"INVALID_REQUEST\"}").kind, CHARGE_REJECTED);
  cr_assert_eq(map(429, "").kind, CHARGE_RETRYABLE);
}
