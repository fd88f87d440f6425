/* Unit tests for ingest's trust boundary (issue 17.11, 17.13): upstream sets
 * only the request — no stage-owned fields, no fields the schema does not
 * know, bounded metadata, event time within bounds — and decoding a hostile
 * message cannot take a worker's memory. Messages are built as bytes on the
 * wire, the way upstream sends them. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "event.h"
#include "helpers.h"
#include "validate.h"

static test_intent t;
static validation_error err;
static void setup(void) { test_intent_init(&t); }
TestSuite(intake, .init = setup);

/* Packs {intent: t.in} plus extra raw bytes appended at the event level. */
static uint8_t *wire(const ps_event *ev, const uint8_t *extra, size_t extralen, size_t *len) {
  size_t n = payments__v1__payment_event__get_packed_size(ev);
  uint8_t *b = malloc(n + extralen + 1);
  payments__v1__payment_event__pack(ev, b);
  if (extralen) memcpy(b + n, extra, extralen);
  *len = n + extralen;
  return b;
}

static ps_event *decode(const uint8_t *b, size_t len) {
  char reason[128];
  return event_decode(b, len, reason, sizeof reason);
}

Test(intake, a_plain_request_passes) {
  ps_event ev = PAYMENTS__V1__PAYMENT_EVENT__INIT;
  ev.schema_version = 1;
  ev.intent = &t.in;
  size_t len;
  uint8_t *b = wire(&ev, NULL, 0, &len);
  ps_event *d = decode(b, len);
  cr_assert_not_null(d);
  cr_assert_eq(validate_intake(d, &err), 0);
  event_free(d);
  free(b);
}

Test(intake, stage_owned_fields_are_refused) {
  ps_fraud fa = PAYMENTS__V1__FRAUD_ASSESSMENT__INIT;
  ps_charge ch = PAYMENTS__V1__CHARGE_RESULT__INIT;
  Payments__V1__LedgerPosting lp = PAYMENTS__V1__LEDGER_POSTING__INIT;
  for (int which = 0; which < 4; which++) {
    ps_event ev = PAYMENTS__V1__PAYMENT_EVENT__INIT;
    ev.intent = &t.in;
    if (which == 0) ev.payment_id = "pay_chosen_by_upstream";
    if (which == 1) ev.fraud = &fa;
    if (which == 2) ev.charge = &ch;
    if (which == 3) ev.ledger = &lp;
    size_t len;
    uint8_t *b = wire(&ev, NULL, 0, &len);
    ps_event *d = decode(b, len);
    cr_assert_not_null(d);
    cr_assert_eq(validate_intake(d, &err), -1, "field %d", which);
    cr_assert_str_eq(err.code, "stage_fields_set");
    event_free(d);
    free(b);
  }
}

Test(intake, unknown_fields_anywhere_are_refused) {
  ps_event ev = PAYMENTS__V1__PAYMENT_EVENT__INIT;
  ev.intent = &t.in;
  /* field 99, length-delimited, 3 bytes: at the event level */
  const uint8_t unknown[] = {0x9a, 0x06, 0x03, 'a', 'b', 'c'};
  size_t len;
  uint8_t *b = wire(&ev, unknown, sizeof unknown, &len);
  ps_event *d = decode(b, len);
  cr_assert_not_null(d, "unknown fields decode");
  cr_assert_eq(validate_intake(d, &err), -1);
  cr_assert_str_eq(err.code, "unknown_fields");
  event_free(d);
  free(b);
  /* inside the intent's payment method */
  uint8_t pmx[] = {0x9a, 0x06, 0x01, 'z'};
  t.pm.base.n_unknown_fields = 0;
  /* data: the bytes after the tag, length prefix included */
  ProtobufCMessageUnknownField uf = {99, PROTOBUF_C_WIRE_TYPE_LENGTH_PREFIXED, 2, pmx + 2};
  t.pm.base.n_unknown_fields = 1;
  t.pm.base.unknown_fields = &uf;
  b = wire(&ev, NULL, 0, &len);
  t.pm.base.n_unknown_fields = 0;
  t.pm.base.unknown_fields = NULL;
  d = decode(b, len);
  cr_assert_not_null(d);
  cr_assert_eq(validate_intake(d, &err), -1);
  cr_assert_str_eq(err.code, "unknown_fields");
  event_free(d);
  free(b);
}

Test(intake, hostile_metadata_cannot_take_the_memory) {
  /* 131,072 empty metadata entries (2 bytes each on the wire): refused by
   * the decode budget, not allocated 24 times over. */
  size_t ilen = payments__v1__payment_intent__get_packed_size(&t.in);
  size_t n = 131072, extra = n * 2;
  uint8_t *in = malloc(ilen + extra);
  payments__v1__payment_intent__pack(&t.in, in);
  for (size_t i = 0; i < n; i++) in[ilen + 2 * i] = 0x4a, in[ilen + 2 * i + 1] = 0x00; /* field 9, len 0 */
  size_t total = ilen + extra;
  /* event: field 2 (intent), length-delimited, varint length */
  uint8_t *b = malloc(total + 16);
  size_t k = 0;
  b[k++] = 0x12;
  for (size_t v = total; ; v >>= 7) {
    b[k++] = (uint8_t)((v & 0x7f) | (v >= 0x80 ? 0x80 : 0));
    if (v < 0x80) break;
  }
  memcpy(b + k, in, total);
  char reason[128];
  ps_event *d = event_decode(b, k + total, reason, sizeof reason);
  cr_assert_null(d);
  cr_assert(strstr(reason, "memory") != NULL, "%s", reason);
  free(in);
  free(b);
}

Test(intake, metadata_is_bounded_and_keys_unique) {
  Payments__V1__PaymentIntent__MetadataEntry e[51], *m[51];
  char keys[51][16];
  for (int i = 0; i < 51; i++) {
    payments__v1__payment_intent__metadata_entry__init(&e[i]);
    snprintf(keys[i], sizeof keys[i], "k%d", i);
    e[i].key = keys[i];
    e[i].value = "v";
    m[i] = &e[i];
  }
  t.in.metadata = m;
  t.in.n_metadata = 50;
  cr_assert_eq(validate_intent(&t.in, &err), 0, "50 entries is the bound, allowed");
  t.in.n_metadata = 51;
  cr_assert_eq(validate_intent(&t.in, &err), -1);
  cr_assert_str_eq(err.code, "metadata_invalid");
  t.in.n_metadata = 2;
  e[1].key = "k0";
  cr_assert_eq(validate_intent(&t.in, &err), -1, "a key twice");
  cr_assert_str_eq(err.code, "metadata_invalid");
}

Test(intake, created_at_is_bounded_around_the_message_time) {
  int64_t ref = 1764547200000; /* 2025-12-01 */
  cr_assert_eq(validate_created_at(ref, ref, &err), 0);
  cr_assert_eq(validate_created_at(ref + CREATED_AT_MAX_AHEAD_MS, ref, &err), 0);
  cr_assert_eq(validate_created_at(ref - 400LL * 86400 * 1000, ref, &err), 0, "the past is fine");
  cr_assert_eq(validate_created_at(ref + CREATED_AT_MAX_AHEAD_MS + 1, ref, &err), -1);
  cr_assert_str_eq(err.code, "created_at_invalid");
  cr_assert_eq(validate_created_at(ref + 365LL * 86400 * 1000, ref, &err), -1, "a year ahead");
}
