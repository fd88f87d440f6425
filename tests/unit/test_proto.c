/* Unit tests for the wire format: round trips and decode failures. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "event.h"
#include "helpers.h"

Test(proto, event_round_trips_every_field) {
  test_intent t;
  test_intent_init(&t);
  Payments__V1__PaymentIntent__MetadataEntry e = PAYMENTS__V1__PAYMENT_INTENT__METADATA_ENTRY__INIT;
  e.key = "order";
  e.value = "42";
  Payments__V1__PaymentIntent__MetadataEntry *meta[] = {&e};
  t.in.metadata = meta;
  t.in.n_metadata = 1;
  ps_event ev = PAYMENTS__V1__PAYMENT_EVENT__INIT;
  ev.schema_version = 1;
  ev.intent = &t.in;
  ev.payment_id = "pay_0123";
  ps_charge ch = PAYMENTS__V1__CHARGE_RESULT__INIT;
  ch.status = PAYMENTS__V1__CHARGE_STATUS__CHARGE_STATUS_SUCCEEDED;
  ch.fee_minor = 175;
  ch.processor = "stripe";
  ev.charge = &ch;

  size_t len;
  uint8_t *buf = event_pack(&ev, &len);
  char reason[128];
  ps_event *back = event_decode(buf, len, reason, sizeof reason);
  cr_assert_not_null(back, "decodes: %s", reason);
  cr_assert_str_eq(back->payment_id, "pay_0123");
  cr_assert_str_eq(back->intent->idempotency_key, "order-1");
  cr_assert_eq(back->intent->amount->amount_minor, 5000);
  cr_assert_str_eq(back->intent->amount->currency, "USD");
  cr_assert_eq(back->charge->fee_minor, 175);
  cr_assert_eq(back->intent->n_metadata, 1);
  cr_assert_str_eq(back->intent->metadata[0]->value, "42");
  event_free(back);
  free(buf);
}

Test(proto, garbage_is_not_an_event) {
  uint8_t junk[] = {0x07, 0xff, 0x13, 0x00};
  char reason[128] = "";
  cr_assert_null(event_decode(junk, sizeof junk, reason, sizeof reason));
  cr_assert(strlen(reason) > 0);
  cr_assert_null(event_decode(NULL, 0, reason, sizeof reason));
  cr_assert_str_eq(reason, "empty message");
}

Test(proto, unknown_schema_version_and_missing_intent_are_refused) {
  ps_event ev = PAYMENTS__V1__PAYMENT_EVENT__INIT;
  ev.schema_version = 2;
  test_intent t;
  test_intent_init(&t);
  ev.intent = &t.in;
  size_t len;
  uint8_t *buf = event_pack(&ev, &len);
  char reason[128];
  cr_assert_null(event_decode(buf, len, reason, sizeof reason));
  cr_assert_str_eq(reason, "unsupported schema_version 2");
  free(buf);
  ev.schema_version = 1;
  ev.intent = NULL;
  buf = event_pack(&ev, &len);
  cr_assert_null(event_decode(buf, len, reason, sizeof reason));
  cr_assert_str_eq(reason, "missing intent");
  free(buf);
}

Test(proto, outcome_from_event_carries_identity) {
  test_intent t;
  test_intent_init(&t);
  ps_event ev = PAYMENTS__V1__PAYMENT_EVENT__INIT;
  ev.intent = &t.in;
  ev.payment_id = "pay_x";
  ev.published_at_ms = 99;
  outcome_buf ob;
  outcome_from_event(&ob, &ev, OUTCOME_DECLINED, "insufficient_funds", "no");
  size_t len;
  uint8_t *buf = outcome_pack(&ob.o, &len);
  ps_outcome *o = outcome_decode(buf, len);
  cr_assert_str_eq(o->payment_id, "pay_x");
  cr_assert_str_eq(o->idempotency_key, "order-1");
  cr_assert_eq(o->status, OUTCOME_DECLINED);
  cr_assert_str_eq(o->error_code, "insufficient_funds");
  cr_assert_eq(o->amount->amount_minor, 5000);
  cr_assert_eq(o->published_at_ms, 99);
  cr_assert_str_eq(outcome_status_name(o->status), "declined");
  outcome_free(o);
  free(buf);
}

Test(proto, hex_round_trip_and_postgres_prefix) {
  uint8_t data[] = {0x00, 0xab, 0xff, 0x10};
  char hex[9];
  hex_encode(data, 4, hex);
  cr_assert_str_eq(hex, "00abff10");
  size_t len;
  uint8_t *back = hex_decode("\\x00abff10", &len);
  cr_assert_eq(len, 4);
  cr_assert_eq(memcmp(back, data, 4), 0);
  free(back);
  cr_assert_null(hex_decode("abc", &len));
  cr_assert_null(hex_decode("zz", &len));
}
