/* Unit tests for operation intake rules (validate_op.h). */
#include <criterion/criterion.h>
#include <string.h>

#include "operation.h"
#include "validate_op.h"

static ps_money money;
static ps_operation op;

static void base(ps_kind kind) {
  payments__v1__money__init(&money);
  payments__v1__payment_operation__init(&op);
  money.amount_minor = 100;
  money.currency = "usd";
  op.kind = kind;
  op.idempotency_key = "op-1";
  op.merchant_id = "m1";
  op.payment_key = "pay-key";
  op.amount = kind == KIND_VOID ? NULL : &money;
  op.created_at_ms = 1;
}

static const char *code(void) {
  validation_error e;
  return validate_operation(&op, &e) == 0 ? "ok" : e.code;
}

Test(validate_op, valid_operations_pass) {
  base(KIND_CAPTURE);
  cr_assert_str_eq(code(), "ok");
  base(KIND_REFUND);
  cr_assert_str_eq(code(), "ok");
  base(KIND_VOID);
  cr_assert_str_eq(code(), "ok");
}

Test(validate_op, each_rule_has_its_code) {
  base(KIND_REFUND);
  money.amount_minor = 0;
  cr_assert_str_eq(code(), "amount_invalid");
  base(KIND_REFUND);
  op.amount = NULL;
  cr_assert_str_eq(code(), "amount_invalid");
  base(KIND_VOID);
  op.amount = &money;
  cr_assert_str_eq(code(), "amount_invalid", "a void takes no amount");
  base(KIND_CAPTURE);
  money.currency = "XYZ";
  cr_assert_str_eq(code(), "currency_invalid");
  base(KIND_AUTHORIZE);
  cr_assert_str_eq(code(), "kind_invalid");
  base(KIND_REFUND);
  op.final_capture = true;
  cr_assert_str_eq(code(), "kind_invalid");
  base(KIND_REFUND);
  op.payment_id = "pay_x";
  cr_assert_str_eq(code(), "payment_ref_invalid", "key and id both");
  base(KIND_REFUND);
  op.payment_key = "";
  cr_assert_str_eq(code(), "payment_ref_invalid", "neither");
  base(KIND_REFUND);
  op.idempotency_key = "";
  cr_assert_str_eq(code(), "idempotency_key_invalid");
  base(KIND_REFUND);
  op.created_at_ms = 0;
  cr_assert_str_eq(code(), "created_at_invalid");
}

Test(validate_op, fingerprint_and_ids) {
  char a[65], b[65], id1[PS_ID_LEN], id2[PS_ID_LEN];
  base(KIND_REFUND);
  ingest_operation_fingerprint(&op, a);
  money.currency = "USD";
  ingest_operation_fingerprint(&op, b);
  cr_assert_str_eq(a, b, "currency case is not part of the request");
  money.amount_minor = 101;
  ingest_operation_fingerprint(&op, b);
  cr_assert_str_neq(a, b);
  base(KIND_REFUND);
  op.payment_key = "";
  op.payment_id = "pay-key";
  ingest_operation_fingerprint(&op, b);
  cr_assert_str_neq(a, b, "by id is another request than by key");
  ingest_operation_id("m1", "k", id1);
  ingest_operation_id("m2", "k", id2);
  cr_assert(strncmp(id1, "op_", 3) == 0);
  cr_assert_str_neq(id1, id2);
}

/* Intents: SALE (the default) or AUTHORIZE, and an authorization is another
 * request than a sale under the same key. */
Test(validate_op, intent_kinds) {
  ps_money m = PAYMENTS__V1__MONEY__INIT;
  Payments__V1__PaymentMethod pm = PAYMENTS__V1__PAYMENT_METHOD__INIT;
  ps_intent in = PAYMENTS__V1__PAYMENT_INTENT__INIT;
  m.amount_minor = 100;
  m.currency = "USD";
  pm.id = "pm_card_visa";
  in.idempotency_key = "k";
  in.merchant_id = "m1";
  in.customer_id = "c1";
  in.amount = &m;
  in.created_at_ms = 1;
  in.payment_method = &pm;
  validation_error e;
  cr_assert_eq(validate_intent(&in, &e), 0);
  char sale[65], auth[65];
  ingest_fingerprint(&in, sale);
  in.kind = KIND_AUTHORIZE;
  cr_assert_eq(validate_intent(&in, &e), 0);
  ingest_fingerprint(&in, auth);
  cr_assert_str_neq(sale, auth);
  in.kind = KIND_REFUND;
  cr_assert_eq(validate_intent(&in, &e), -1);
  cr_assert_str_eq(e.code, "kind_invalid");
}
