/* validate_op: field rules, ids and fingerprints of operations. */
#include "validate_op.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hash.h"
#include "money.h"
#include "operation.h"

static int fail(validation_error *err, const char *code, const char *msg) {
  err->code = code;
  snprintf(err->message, sizeof err->message, "%s", msg);
  return -1;
}

static bool unknown(const ProtobufCMessage *m) { return m && m->n_unknown_fields > 0; }

int validate_operation_intake(const ps_event *ev, validation_error *err) {
  if ((ev->payment_id && *ev->payment_id) || (ev->operation_id && *ev->operation_id) ||
      (ev->payment_key && *ev->payment_key) || ev->fraud || ev->charge || ev->ledger)
    return fail(err, "stage_fields_set",
                "payment_id, operation_id, payment_key, fraud, charge and ledger are set by the "
                "stages, never upstream");
  const ps_operation *op = ev->operation;
  if (unknown(&ev->base) || unknown(&op->base) || (op->amount && unknown(&op->amount->base)))
    return fail(err, "unknown_fields", "the event holds fields this schema does not know");
  return 0;
}

int validate_operation(const ps_operation *op, validation_error *err) {
  if (!validate_idempotency_key(op->idempotency_key))
    return fail(err, "idempotency_key_invalid",
                "idempotency_key must be 1-255 printable ASCII characters");
  if (!validate_id(op->merchant_id))
    return fail(err, "merchant_id_invalid", "merchant_id must be 1-64 characters of [A-Za-z0-9_.:-]");
  if (op->kind != KIND_CAPTURE && op->kind != KIND_VOID && op->kind != KIND_REFUND)
    return fail(err, "kind_invalid", "an operation's kind is CAPTURE, VOID or REFUND");
  bool by_key = op->payment_key && *op->payment_key, by_id = op->payment_id && *op->payment_id;
  if (by_key == by_id)
    return fail(err, "payment_ref_invalid", "name the payment by payment_key or payment_id (one)");
  if ((by_key && !validate_idempotency_key(op->payment_key)) ||
      (by_id && !validate_idempotency_key(op->payment_id)))
    return fail(err, "payment_ref_invalid", "payment_key/payment_id must be 1-255 printable ASCII");
  if (op->kind == KIND_VOID) {
    if (op->amount)
      return fail(err, "amount_invalid", "a void releases what is left: it takes no amount");
  } else {
    if (!op->amount || op->amount->amount_minor <= 0)
      return fail(err, "amount_invalid", "amount.amount_minor must be a positive number of minor units");
    if (op->amount->amount_minor > MONEY_MAX_PAYMENT_MINOR)
      return fail(err, "amount_invalid", "amount.amount_minor exceeds the largest payment accepted");
    char up[4] = {0};
    const char *cur = op->amount->currency;
    if (!cur || strlen(cur) != 3)
      return fail(err, "currency_invalid", "amount.currency must be an ISO-4217 code we settle");
    for (int i = 0; i < 3; i++) up[i] = (char)toupper((unsigned char)cur[i]);
    if (!money_currency_valid(up))
      return fail(err, "currency_invalid", "amount.currency must be an ISO-4217 code we settle");
  }
  if (op->final_capture && op->kind != KIND_CAPTURE)
    return fail(err, "kind_invalid", "final_capture is for captures only");
  if (op->created_at_ms <= 0)
    return fail(err, "created_at_invalid", "created_at_ms must be a positive epoch time in ms");
  if (!validate_text(op->reason, 500))
    return fail(err, "reason_invalid", "reason must be UTF-8 text of at most 500 bytes");
  return 0;
}

void validate_operation_normalise(ps_operation *op) {
  if (op->amount && op->amount->currency)
    for (char *c = op->amount->currency; *c; c++) *c = (char)toupper((unsigned char)*c);
}

void ingest_operation_id(const char *merchant, const char *key, char out[PS_ID_LEN]) {
  char buf[600], hex[65];
  int n = snprintf(buf, sizeof buf, "operation\x1f%s\x1f%s", merchant, key);
  hash_sha256_hex(buf, (size_t)n < sizeof buf ? (size_t)n : sizeof buf - 1, hex);
  snprintf(out, PS_ID_LEN, "op_%.24s", hex);
}

static void add(char **buf, size_t *len, const char *s) {
  size_t n = s ? strlen(s) : 0;
  char *p = realloc(*buf, *len + n + 32);
  if (!p) abort();
  *buf = p;
  *len += (size_t)snprintf(p + *len, 32, "%zu:", n);
  if (n) memcpy(p + *len, s, n);
  *len += n;
  p[(*len)++] = ';';
}

void ingest_operation_fingerprint(const ps_operation *op, char out[65]) {
  char *buf = NULL, num[32];
  size_t len = 0;
  add(&buf, &len, "paystream.operation.v1");
  add(&buf, &len, op_kind_name(op->kind));
  add(&buf, &len, op->merchant_id);
  bool by_key = op->payment_key && *op->payment_key;
  add(&buf, &len, by_key ? "key" : "id");
  add(&buf, &len, by_key ? op->payment_key : op->payment_id);
  snprintf(num, sizeof num, "%lld", op->amount ? (long long)op->amount->amount_minor : 0LL);
  add(&buf, &len, num);
  char cur[4] = {0};
  if (op->amount && op->amount->currency)
    for (int i = 0; i < 3 && op->amount->currency[i]; i++)
      cur[i] = (char)toupper((unsigned char)op->amount->currency[i]);
  add(&buf, &len, cur);
  add(&buf, &len, op->final_capture ? "final" : "");
  const char *r = op->reason ? op->reason : "";
  while (*r == ' ' || *r == '\t' || *r == '\n' || *r == '\r') r++;
  size_t n = strlen(r);
  while (n && (r[n - 1] == ' ' || r[n - 1] == '\t' || r[n - 1] == '\n' || r[n - 1] == '\r')) n--;
  char *t = strndup(r, n);
  if (!t) abort();
  add(&buf, &len, t);
  free(t);
  hash_sha256_hex(buf, len, out);
  free(buf);
}
