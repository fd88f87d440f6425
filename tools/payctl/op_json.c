/* op_json: see op_json.h. */
#include "op_json.h"

#include <stdio.h>
#include <string.h>

#include "clock.h"
#include "operation.h"

static char *jstr(const json_t *o, const char *k) {
  json_t *v = json_object_get(o, k);
  return json_is_string(v) ? (char *)json_string_value(v) : "";
}

int op_from_json(const json_t *o, ps_operation *op, ps_money *money, char *err, size_t errlen) {
  payments__v1__payment_operation__init(op);
  payments__v1__money__init(money);
  if (!json_is_object(o)) return snprintf(err, errlen, "\"operation\" is not an object"), -1;
  int kind = op_kind_from_name(jstr(o, "kind"));
  if (kind != KIND_CAPTURE && kind != KIND_VOID && kind != KIND_REFUND)
    return snprintf(err, errlen, "operation kind must be capture, void or refund"), -1;
  op->kind = (ps_kind)kind;
  op->idempotency_key = jstr(o, "idempotency_key");
  op->merchant_id = jstr(o, "merchant_id");
  op->payment_key = jstr(o, "payment_key");
  op->payment_id = jstr(o, "payment_id");
  op->reason = jstr(o, "reason");
  op->final_capture = json_is_true(json_object_get(o, "final_capture"));
  json_t *at = json_object_get(o, "created_at_ms");
  op->created_at_ms = json_is_integer(at) ? json_integer_value(at) : ps_now_ms();
  json_t *amt = json_object_get(o, "amount_minor");
  if (json_is_integer(amt)) {
    money->amount_minor = json_integer_value(amt);
    money->currency = jstr(o, "currency");
    op->amount = money;
  }
  return 0;
}
