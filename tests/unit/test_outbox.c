/* Unit tests for the outbox: what each add puts in (topic, key, bytes,
 * headers, status), that a stored outcome is re-sent byte-identical or
 * refused, and that truncation drops exactly a failed attempt's outputs
 * (ASan checks that nothing dropped leaks). */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hex.h"
#include "outbox.h"

static ps_outcome *outcome(ps_outcome *o, Payments__V1__OutcomeStatus st) {
  payments__v1__payment_outcome__init(o);
  o->payment_id = "pay_1";
  o->idempotency_key = "order-1";
  o->status = st;
  return o;
}

Test(outbox, add_copies_the_key_and_owns_the_value) {
  outbox ob = {0};
  char key[] = "k1";
  uint8_t *val = malloc(3);
  memcpy(val, "abc", 3);
  outbox_add(&ob, "t", key, 2, val, 3, NULL);
  key[0] = 'X'; /* the outbox has its own copy */
  cr_assert_eq(ob.n, 1);
  cr_assert_str_eq(ob.v[0].key, "k1");
  cr_assert_eq(ob.v[0].val, val);
  cr_assert_eq(ob.v[0].status, -1);
  outbox_free(&ob);
  cr_assert_eq(ob.v, NULL);
}

Test(outbox, outcome_is_keyed_by_its_idempotency_key_with_its_status) {
  outbox ob = {0};
  ps_outcome o;
  cr_assert_eq(outbox_add_outcome(&ob, "outcomes", outcome(&o, OUTCOME_DECLINED)), 0);
  cr_assert_str_eq(ob.v[0].key, "order-1");
  cr_assert_eq(ob.v[0].status, (int)OUTCOME_DECLINED);
  ps_outcome *back = outcome_decode(ob.v[0].val, ob.v[0].vallen);
  cr_assert_str_eq(back->payment_id, "pay_1");
  outcome_free(back);
  outbox_free(&ob);
}

Test(outbox, stored_outcome_is_resent_byte_identical) {
  outbox ob = {0};
  ps_outcome o;
  char *hex = outcome_pack_hex(outcome(&o, OUTCOME_SUCCEEDED));
  cr_assert_eq(outbox_add_stored(&ob, "outcomes", "order-1", hex), 0);
  char *again = malloc(2 * ob.v[0].vallen + 1);
  hex_encode(ob.v[0].val, ob.v[0].vallen, again);
  cr_assert_str_eq(again, hex);
  cr_assert_eq(ob.v[0].status, (int)OUTCOME_SUCCEEDED);
  free(again);
  free(hex);
  outbox_free(&ob);
}

Test(outbox, missing_or_corrupt_stored_outcome_is_refused_and_adds_nothing) {
  outbox ob = {0};
  cr_assert_eq(outbox_add_stored(&ob, "outcomes", "k", NULL), -1);
  cr_assert_eq(outbox_add_stored(&ob, "outcomes", "k", "abc"), -1, "odd length");
  cr_assert_eq(outbox_add_stored(&ob, "outcomes", "k", "zz"), -1, "not hex");
  cr_assert_eq(ob.n, 0);
  outbox_free(&ob);
}

Test(outbox, dead_letter_carries_the_raw_bytes_and_the_reason_headers) {
  outbox ob = {0};
  stage_msg m = {NULL, "payments.intents", 3, 1234, "\x01\x02junk", 6, "key-9", 5};
  outbox_add_dlq(&ob, "payments.dlq", "ingest", &m, "not a payments.v1.PaymentEvent");
  cr_assert_eq(ob.n, 1);
  cr_assert_str_eq(ob.v[0].key, "key-9");
  cr_assert_eq(ob.v[0].vallen, 6);
  cr_assert(memcmp(ob.v[0].val, "\x01\x02junk", 6) == 0);
  struct { const char *name, *want; } h[] = {{"dlq.reason", "not a payments.v1.PaymentEvent"},
                                             {"dlq.stage", "ingest"},
                                             {"dlq.source.topic", "payments.intents"},
                                             {"dlq.source.partition", "3"},
                                             {"dlq.source.offset", "1234"}};
  for (size_t i = 0; i < sizeof h / sizeof h[0]; i++) {
    const void *v;
    size_t len;
    cr_assert_eq(rd_kafka_header_get_last(ob.v[0].hdrs, h[i].name, &v, &len), 0, "%s", h[i].name);
    cr_assert_eq(len, strlen(h[i].want));
    cr_assert(memcmp(v, h[i].want, len) == 0, "%s", h[i].name);
  }
  outbox_free(&ob);
}

Test(outbox, truncate_drops_only_what_came_after) {
  outbox ob = {0};
  stage_msg m = {NULL, "in", 0, 1, "x", 1, "k", 1};
  for (int i = 0; i < 100; i++) outbox_add_dlq(&ob, "dlq", "s", &m, "r"); /* grows past 64 */
  outbox_truncate(&ob, 40);
  cr_assert_eq(ob.n, 40);
  cr_assert_str_eq(ob.v[39].key, "k");
  outbox_truncate(&ob, 50); /* past the end: nothing to drop */
  cr_assert_eq(ob.n, 40);
  outbox_reset(&ob);
  cr_assert_eq(ob.n, 0);
  cr_assert_neq(ob.cap, 0, "reset keeps the storage");
  outbox_free(&ob);
  cr_assert_eq(ob.cap, 0);
}

Test(outbox, a_dead_letter_too_large_to_resend_keeps_a_prefix_its_size_and_hash) {
  outbox ob = {0};
  size_t big = OUTBOX_DLQ_MAX_PAYLOAD + 1000;
  uint8_t *raw = malloc(big);
  for (size_t i = 0; i < big; i++) raw[i] = (uint8_t)(i * 31);
  stage_msg m = {NULL, "payments.intents", 0, 7, raw, big, "k", 1};
  outbox_add_dlq(&ob, "payments.dlq", "ingest", &m, "oversized message");
  cr_assert_eq(ob.v[0].vallen, OUTBOX_DLQ_MAX_PAYLOAD);
  cr_assert(memcmp(ob.v[0].val, raw, OUTBOX_DLQ_MAX_PAYLOAD) == 0, "a prefix of the original");
  const void *v;
  size_t len;
  cr_assert_eq(rd_kafka_header_get_last(ob.v[0].hdrs, "dlq.payload.truncated", &v, &len), 0);
  cr_assert_eq(rd_kafka_header_get_last(ob.v[0].hdrs, "dlq.payload.size", &v, &len), 0);
  char size[24];
  snprintf(size, sizeof size, "%zu", big);
  cr_assert(len == strlen(size) && memcmp(v, size, len) == 0);
  cr_assert_eq(rd_kafka_header_get_last(ob.v[0].hdrs, "dlq.payload.sha256", &v, &len), 0);
  cr_assert_eq(len, 64);
  cr_assert_eq(rd_kafka_header_get_last(ob.v[0].hdrs, "dlq.source.offset", &v, &len), 0,
               "the usual headers too");
  outbox_free(&ob);
  /* Under the limit: whole, no truncation headers. */
  m.rawlen = OUTBOX_DLQ_MAX_PAYLOAD;
  outbox_add_dlq(&ob, "payments.dlq", "ingest", &m, "oversized message");
  cr_assert_eq(ob.v[0].vallen, OUTBOX_DLQ_MAX_PAYLOAD);
  cr_assert_neq(rd_kafka_header_get_last(ob.v[0].hdrs, "dlq.payload.truncated", &v, &len), 0);
  outbox_free(&ob);
  free(raw);
}

/* Exactly-once holds a continuous stage's outputs by their input: outbox_tag
 * marks them, outbox_split moves what may go, both keep the order. */
static bool below_5(const outbox_msg *m, void *arg) {
  (void)arg;
  return m->src_offset >= 5; /* stays */
}

Test(outbox, tag_marks_only_the_new_outputs_and_split_keeps_the_order) {
  outbox ob = {0}, rel = {0};
  for (int i = 0; i < 4; i++) {
    char k[16];
    snprintf(k, sizeof k, "k%d", i);
    size_t before = ob.n;
    outbox_add(&ob, "t", k, strlen(k), NULL, 0, NULL);
    if (i > 0) outbox_tag(&ob, before, 2, i == 1 ? 7 : i); /* k1@7, k2@2, k3@3 */
  }
  cr_assert_eq(ob.v[0].src_partition, -1);
  cr_assert_eq(ob.v[0].src_offset, -1);
  cr_assert_eq(ob.v[1].src_offset, 7);
  outbox_split(&ob, &rel, below_5, NULL);
  cr_assert_eq(rel.n, 3);
  cr_assert_str_eq(rel.v[0].key, "k0");
  cr_assert_str_eq(rel.v[1].key, "k2");
  cr_assert_str_eq(rel.v[2].key, "k3");
  cr_assert_eq(ob.n, 1);
  cr_assert_str_eq(ob.v[0].key, "k1");
  outbox_free(&ob);
  outbox_free(&rel);
}
