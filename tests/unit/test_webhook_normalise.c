/* Unit tests for webhook normalisation: both flavours' events become the
 * same ProcessorEvent shape, keyed by the payment id, with the body kept
 * byte for byte; bodies that cannot be keyed or mean two things are refused. */
#include <criterion/criterion.h>
#include <string.h>

#include "normalise.h"
#include "payments.pb-c.h"

typedef Payments__V1__ProcessorEvent proc_event;

static proc_event *normalise_ok(wh_flavour fl, const char *body, wh_event *ev) {
  char err[256] = "";
  int rc = wh_normalise(fl, fl == WH_PAYPAL ? "paypal" : "stripe", body, strlen(body), 42, ev,
                        err, sizeof err);
  cr_assert_eq(rc, 0, "refused: %s", err);
  proc_event *e = payments__v1__processor_event__unpack(NULL, ev->packed_len, ev->packed);
  cr_assert_not_null(e);
  return e;
}

static void refused(wh_flavour fl, const char *body, const char *why) {
  wh_event ev;
  char err[256] = "";
  cr_assert_eq(wh_normalise(fl, "p", body, strlen(body), 42, &ev, err, sizeof err), -1, "%s",
               body);
  cr_assert(strstr(err, why), "reason '%s' should mention '%s'", err, why);
}

Test(webhook_normalise, stripe_charge_succeeded) {
  const char *body =
      "{\"id\":\"evt_1\",\"object\":\"event\",\"type\":\"charge.succeeded\",\"created\":1764615600,"
      "\"data\":{\"object\":{\"id\":\"ch_9\",\"object\":\"charge\",\"status\":\"succeeded\","
      "\"amount\":1999,\"currency\":\"usd\",\"payment_intent\":\"pi_3\","
      "\"metadata\":{\"payment_id\":\"pay_abc\"}}}}";
  wh_event ev;
  proc_event *e = normalise_ok(WH_STRIPE, body, &ev);
  cr_assert_str_eq(ev.payment_id, "pay_abc");
  cr_assert_str_eq(ev.event_id, "evt_1");
  cr_assert_eq(e->schema_version, 1);
  cr_assert_str_eq(e->processor, "stripe");
  cr_assert_eq(e->flavour, PAYMENTS__V1__PROCESSOR_FLAVOUR__PROCESSOR_FLAVOUR_STRIPE);
  cr_assert_str_eq(e->type, "charge.succeeded");
  cr_assert_str_eq(e->object_id, "ch_9");
  cr_assert_str_eq(e->object_type, "charge");
  cr_assert_str_eq(e->charge_id, "ch_9");
  cr_assert_str_eq(e->payment_intent_id, "pi_3");
  cr_assert_str_eq(e->status, "succeeded");
  cr_assert_not_null(e->amount);
  cr_assert_eq(e->amount->amount_minor, 1999);
  cr_assert_str_eq(e->amount->currency, "USD");
  cr_assert_eq(e->occurred_at_ms, 1764615600000LL);
  cr_assert_eq(e->received_at_ms, 42);
  cr_assert_eq(e->raw_body.len, strlen(body));
  cr_assert(memcmp(e->raw_body.data, body, strlen(body)) == 0);
  payments__v1__processor_event__free_unpacked(e, NULL);
  wh_event_clear(&ev);
}

Test(webhook_normalise, stripe_dispute_names_its_charge) {
  const char *body =
      "{\"id\":\"evt_2\",\"type\":\"charge.dispute.closed\",\"created\":1,"
      "\"data\":{\"object\":{\"id\":\"dp_1\",\"object\":\"dispute\",\"charge\":\"ch_9\","
      "\"amount\":500,\"currency\":\"jpy\",\"status\":\"lost\","
      "\"metadata\":{\"payment_id\":\"pay_abc\"}}}}";
  wh_event ev;
  proc_event *e = normalise_ok(WH_STRIPE, body, &ev);
  cr_assert_str_eq(e->object_id, "dp_1");
  cr_assert_str_eq(e->charge_id, "ch_9");
  cr_assert_str_eq(e->status, "lost");
  cr_assert_eq(e->amount->amount_minor, 500);
  cr_assert_str_eq(e->amount->currency, "JPY");
  payments__v1__processor_event__free_unpacked(e, NULL);
  wh_event_clear(&ev);
}

Test(webhook_normalise, stripe_intent_without_amount_has_none) {
  const char *body = "{\"id\":\"evt_3\",\"type\":\"payment_intent.canceled\","
                     "\"data\":{\"object\":{\"id\":\"pi_3\",\"object\":\"payment_intent\","
                     "\"latest_charge\":\"ch_7\",\"metadata\":{\"payment_id\":\"pay_x\"}}}}";
  wh_event ev;
  proc_event *e = normalise_ok(WH_STRIPE, body, &ev);
  cr_assert_str_eq(e->payment_intent_id, "pi_3");
  cr_assert_str_eq(e->charge_id, "ch_7");
  cr_assert_null(e->amount);
  cr_assert_eq(e->occurred_at_ms, 0);
  payments__v1__processor_event__free_unpacked(e, NULL);
  wh_event_clear(&ev);
}

Test(webhook_normalise, paypal_capture_completed) {
  const char *body =
      "{\"id\":\"WH-77\",\"event_type\":\"PAYMENT.CAPTURE.COMPLETED\","
      "\"create_time\":\"2025-12-01T19:00:00Z\",\"resource\":{\"id\":\"CAP-1\","
      "\"status\":\"COMPLETED\",\"amount\":{\"currency_code\":\"EUR\",\"value\":\"12.30\"},"
      "\"custom_id\":\"pay_def\",\"supplementary_data\":{\"related_ids\":"
      "{\"authorization_id\":\"AUTH-5\"}}}}";
  wh_event ev;
  proc_event *e = normalise_ok(WH_PAYPAL, body, &ev);
  cr_assert_str_eq(ev.payment_id, "pay_def");
  cr_assert_str_eq(ev.event_id, "WH-77");
  cr_assert_eq(e->flavour, PAYMENTS__V1__PROCESSOR_FLAVOUR__PROCESSOR_FLAVOUR_PAYPAL);
  cr_assert_str_eq(e->type, "PAYMENT.CAPTURE.COMPLETED");
  cr_assert_str_eq(e->object_id, "CAP-1");
  cr_assert_str_eq(e->charge_id, "CAP-1");
  cr_assert_str_eq(e->payment_intent_id, "AUTH-5");
  cr_assert_str_eq(e->status, "COMPLETED");
  cr_assert_eq(e->amount->amount_minor, 1230);
  cr_assert_str_eq(e->amount->currency, "EUR");
  cr_assert_eq(e->occurred_at_ms, 1764615600000LL);
  payments__v1__processor_event__free_unpacked(e, NULL);
  wh_event_clear(&ev);
}

Test(webhook_normalise, paypal_dispute_uses_disputed_amount) {
  const char *body = "{\"id\":\"WH-78\",\"event_type\":\"CUSTOMER.DISPUTE.CREATED\","
                     "\"resource\":{\"id\":\"PP-D-1\",\"capture_id\":\"CAP-1\","
                     "\"disputed_amount\":{\"currency_code\":\"JPY\",\"value\":\"500\"},"
                     "\"custom_id\":\"pay_def\"}}";
  wh_event ev;
  proc_event *e = normalise_ok(WH_PAYPAL, body, &ev);
  cr_assert_str_eq(e->charge_id, "CAP-1");
  cr_assert_eq(e->amount->amount_minor, 500);
  payments__v1__processor_event__free_unpacked(e, NULL);
  wh_event_clear(&ev);
}

/* procsim's (and PayPal's dispute resource's) field is dispute_amount. */
Test(webhook_normalise, paypal_dispute_uses_dispute_amount) {
  const char *body = "{\"id\":\"WH-79\",\"event_type\":\"CUSTOMER.DISPUTE.RESOLVED\","
                     "\"resource\":{\"id\":\"PP-D-2\",\"capture_id\":\"CAP-2\",\"status\":\"RESOLVED\","
                     "\"dispute_amount\":{\"currency_code\":\"USD\",\"value\":\"40.00\"},"
                     "\"outcome\":\"lost\",\"custom_id\":\"pay_ghi\"}}";
  wh_event ev;
  proc_event *e = normalise_ok(WH_PAYPAL, body, &ev);
  cr_assert_str_eq(e->object_id, "PP-D-2");
  cr_assert_not_null(e->amount);
  cr_assert_eq(e->amount->amount_minor, 4000);
  payments__v1__processor_event__free_unpacked(e, NULL);
  wh_event_clear(&ev);
}

Test(webhook_normalise, decimal_amounts_are_exact) {
  int64_t v;
  cr_assert_eq(wh_decimal_to_minor("12.3", 2, &v), 0);
  cr_assert_eq(v, 1230);
  cr_assert_eq(wh_decimal_to_minor("0.01", 2, &v), 0);
  cr_assert_eq(v, 1);
  cr_assert_eq(wh_decimal_to_minor("7", 0, &v), 0);
  cr_assert_eq(v, 7);
  cr_assert_eq(wh_decimal_to_minor("1.005", 2, &v), -1, "more precise than the currency");
  cr_assert_eq(wh_decimal_to_minor("1.5", 0, &v), -1);
  cr_assert_eq(wh_decimal_to_minor("-1.00", 2, &v), -1);
  cr_assert_eq(wh_decimal_to_minor("1e3", 2, &v), -1);
  cr_assert_eq(wh_decimal_to_minor(".5", 2, &v), -1);
  cr_assert_eq(wh_decimal_to_minor("5.", 2, &v), -1);
  cr_assert_eq(wh_decimal_to_minor("99999999999999999999", 2, &v), -1, "overflow");
}

Test(webhook_normalise, garbage_and_unkeyable_bodies_are_refused) {
  refused(WH_STRIPE, "", "JSON");
  refused(WH_STRIPE, "not json", "JSON");
  refused(WH_STRIPE, "[1,2]", "JSON");
  refused(WH_STRIPE, "{\"id\":\"evt_1\",\"type\":\"x\"}", "data.object");
  refused(WH_STRIPE, "{\"id\":\"evt_1\",\"type\":\"x\",\"data\":{\"object\":{}}}", "payment id");
  refused(WH_STRIPE,
          "{\"type\":\"x\",\"data\":{\"object\":{\"metadata\":{\"payment_id\":\"p\"}}}}",
          "event id");
  refused(WH_STRIPE,
          "{\"id\":\"e\",\"data\":{\"object\":{\"metadata\":{\"payment_id\":\"p\"}}}}", "type");
  refused(WH_PAYPAL, "{\"id\":\"WH-1\",\"event_type\":\"X\"}", "resource");
  refused(WH_PAYPAL, "{\"id\":\"WH-1\",\"event_type\":\"X\",\"resource\":{}}", "payment id");
}

Test(webhook_normalise, a_repeated_key_is_refused) {
  /* Two readers could disagree about which "payment_id" the signature covered. */
  refused(WH_STRIPE,
          "{\"id\":\"e\",\"type\":\"x\",\"data\":{\"object\":{\"metadata\":"
          "{\"payment_id\":\"pay_a\",\"payment_id\":\"pay_b\"}}}}",
          "JSON");
}

Test(webhook_normalise, bad_amounts_are_refused) {
  refused(WH_STRIPE,
          "{\"id\":\"e\",\"type\":\"x\",\"data\":{\"object\":{\"amount\":\"12\",\"currency\":"
          "\"usd\",\"metadata\":{\"payment_id\":\"p\"}}}}",
          "amount");
  refused(WH_STRIPE,
          "{\"id\":\"e\",\"type\":\"x\",\"data\":{\"object\":{\"amount\":12,\"currency\":"
          "\"zzz\",\"metadata\":{\"payment_id\":\"p\"}}}}",
          "amount");
  refused(WH_PAYPAL,
          "{\"id\":\"WH\",\"event_type\":\"X\",\"resource\":{\"custom_id\":\"p\",\"amount\":"
          "{\"currency_code\":\"USD\",\"value\":12}}}",
          "amount");
}
