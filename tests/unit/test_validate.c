/* Unit tests for ingest's intent validation: every rejected field. */
#include <criterion/criterion.h>
#include <string.h>

#include "helpers.h"
#include "money.h"
#include "validate.h"

static test_intent t;
static validation_error err;

static void setup(void) { test_intent_init(&t); }

TestSuite(validate, .init = setup);

#define EXPECT_REJECTED(code_)                                     \
  do {                                                             \
    cr_assert_eq(validate_intent(&t.in, &err), -1);                \
    cr_assert_str_eq(err.code, code_);                             \
    cr_assert(strlen(err.message) > 0, "message names the field"); \
  } while (0)

Test(validate, valid_intent_passes) { cr_assert_eq(validate_intent(&t.in, &err), 0); }

Test(validate, missing_key_is_rejected) {
  t.in.idempotency_key = "";
  EXPECT_REJECTED("idempotency_key_invalid");
}

Test(validate, oversize_key_is_rejected) {
  char key[300];
  memset(key, 'k', 256);
  key[256] = '\0';
  t.in.idempotency_key = key;
  EXPECT_REJECTED("idempotency_key_invalid");
  key[255] = '\0';
  cr_assert_eq(validate_intent(&t.in, &err), 0, "255 characters is the maximum, allowed");
}

Test(validate, key_with_control_or_space_is_rejected) {
  t.in.idempotency_key = "order\n1";
  EXPECT_REJECTED("idempotency_key_invalid");
  t.in.idempotency_key = "order 1";
  EXPECT_REJECTED("idempotency_key_invalid");
}

Test(validate, bad_merchant_and_customer_are_rejected) {
  t.in.merchant_id = "bad merchant!";
  EXPECT_REJECTED("merchant_id_invalid");
  t.in.merchant_id = "m_1";
  t.in.customer_id = "";
  EXPECT_REJECTED("customer_id_invalid");
}

Test(validate, amounts_must_be_positive_and_bounded) {
  t.in.amount = NULL;
  EXPECT_REJECTED("amount_missing");
  t.in.amount = &t.money;
  t.money.amount_minor = 0;
  EXPECT_REJECTED("amount_invalid");
  t.money.amount_minor = -1;
  EXPECT_REJECTED("amount_invalid");
  t.money.amount_minor = INT64_MAX;
  EXPECT_REJECTED("amount_too_large");
  t.money.amount_minor = MONEY_MAX_PAYMENT_MINOR;
  cr_assert_eq(validate_intent(&t.in, &err), 0);
}

Test(validate, unknown_currency_is_rejected_and_case_is_normalised) {
  strcpy(t.currency, "XXX");
  EXPECT_REJECTED("currency_invalid");
  strcpy(t.currency, "US");
  EXPECT_REJECTED("currency_invalid");
  strcpy(t.currency, "usd");
  cr_assert_eq(validate_intent(&t.in, &err), 0);
  validate_normalise(&t.in);
  cr_assert_str_eq(t.in.amount->currency, "USD");
}

Test(validate, payment_method_and_time_are_required) {
  t.pm.id = "";
  EXPECT_REJECTED("payment_method_invalid");
  t.pm.id = "pm_card_visa";
  t.in.created_at_ms = 0;
  EXPECT_REJECTED("created_at_invalid");
}

Test(validate, malformed_utf8_is_rejected) {
  t.in.description = "caf\xc3";
  EXPECT_REJECTED("description_invalid");
  t.in.description = "\xc0\xaf"; /* overlong */
  EXPECT_REJECTED("description_invalid");
  t.in.description = "caf\xc3\xa9";
  cr_assert_eq(validate_intent(&t.in, &err), 0);
}

Test(validate, impossible_location_is_rejected) {
  t.cx.latitude = 91;
  EXPECT_REJECTED("context_invalid");
}
