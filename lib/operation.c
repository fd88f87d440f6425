/* operation: names, row reading and outcomes of payment operations. */
#include "operation.h"

#include <stdlib.h>
#include <string.h>

static const char *const KIND_NAMES[] = {"sale", "authorize", "capture", "void", "refund"};

const char *op_kind_name(ps_kind k) {
  return (int)k >= 0 && (size_t)k < sizeof KIND_NAMES / sizeof *KIND_NAMES ? KIND_NAMES[k] : NULL;
}

int op_kind_from_name(const char *name) {
  for (size_t i = 0; name && i < sizeof KIND_NAMES / sizeof *KIND_NAMES; i++)
    if (strcmp(name, KIND_NAMES[i]) == 0) return (int)i;
  return -1;
}

void op_row_read(const PGresult *r, int row, int col, op_row *o) {
#define S(i) PQgetvalue(r, row, col + (i))
#define I(i) strtoll(PQgetvalue(r, row, col + (i)), NULL, 10)
  *o = (op_row){.operation_id = S(0), .merchant_id = S(1), .idempotency_key = S(2),
                .fingerprint = S(3), .kind = S(4), .state = S(5), .payment_id = S(6),
                .payment_key = S(7), .error_code = S(8), .error_message = S(9),
                .currency = S(10), .processor = S(11), .processor_op_id = S(12),
                .decline_code = S(13), .source_topic = S(14), .amount_minor = I(15),
                .fee_minor = I(16), .authorized_minor = I(17), .captured_minor = I(18),
                .refunded_minor = I(19), .source_partition = (int32_t)I(20),
                .source_offset = I(21)};
#undef S
#undef I
}

void op_outcome(outcome_buf *ob, const op_row *r, int64_t published_at_ms) {
  payments__v1__payment_outcome__init(&ob->o);
  payments__v1__money__init(&ob->amount);
  Payments__V1__OutcomeStatus st = OUTCOME_PENDING;
  if (strcmp(r->state, "rejected") == 0) st = OUTCOME_REJECTED;
  else if (strcmp(r->state, "declined") == 0) st = OUTCOME_DECLINED;
  else if (strcmp(r->state, "posted") == 0) st = OUTCOME_SUCCEEDED;
  ob->o.status = st;
  ob->o.operation_id = (char *)r->operation_id;
  ob->o.payment_id = (char *)r->payment_id;
  ob->o.merchant_id = (char *)r->merchant_id;
  ob->o.idempotency_key = (char *)r->idempotency_key;
  ob->o.error_code = (char *)r->error_code;
  ob->o.error_message = (char *)r->error_message;
  ob->o.decline_code = (char *)r->decline_code;
  ob->o.processor = (char *)r->processor;
  ob->o.processor_charge_id = (char *)r->processor_op_id;
  int k = op_kind_from_name(r->kind);
  ob->o.kind = k < 0 ? KIND_SALE : (ps_kind)k;
  ob->amount.amount_minor = r->amount_minor;
  ob->amount.currency = (char *)r->currency;
  ob->o.amount = &ob->amount;
  ob->o.authorized_minor = r->authorized_minor;
  ob->o.captured_minor = r->captured_minor;
  ob->o.refunded_minor = r->refunded_minor;
  ob->o.published_at_ms = published_at_ms;
}
