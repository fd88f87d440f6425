/* Unit tests for the feature definition shared by training and serving:
 * the history member codec, every history-derived signal, and the vector. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "fraud_features.h"

#define T 1790812800000LL

typedef struct fixture {
  ps_intent in;
  ps_money money;
  Payments__V1__PaymentMethod pm;
  Payments__V1__RequestContext cx;
} fixture;

/* A $50 payment in New York on a card added 90 days ago. */
static void make(fixture *f, const char *id, int64_t at) {
  payments__v1__payment_intent__init(&f->in);
  payments__v1__money__init(&f->money);
  payments__v1__payment_method__init(&f->pm);
  payments__v1__request_context__init(&f->cx);
  f->money.amount_minor = 5000;
  f->money.currency = "USD";
  f->pm.fingerprint = "fp_1";
  f->pm.created_at_ms = at - 90 * DAY_MS;
  f->pm.card_country = "US";
  f->cx.country = "US";
  f->cx.latitude = 40.71;
  f->cx.longitude = -74.01;
  f->cx.device_id = "dev_1";
  f->in.idempotency_key = (char *)id;
  f->in.merchant_id = "m_1";
  f->in.customer_id = "cus_1";
  f->in.amount = &f->money;
  f->in.created_at_ms = at;
  f->in.payment_method = &f->pm;
  f->in.context = &f->cx;
}

static hist_entry entry(fixture *f, const char *id) {
  char member[512];
  hist_entry e;
  hist_encode(&f->in, id, member, sizeof member);
  cr_assert_eq(hist_decode(member, &e), 0, "%s", member);
  return e;
}

/* The signals with the customer's history h and the card's earlier
 * payments at these times (other devices and accounts unknown). */
static fraud_signals signals(fixture *f, const char *id, hist_entry *h, size_t n,
                             const int64_t *card, size_t ncard) {
  static link_entry links[128];
  for (size_t i = 0; i < ncard; i++) {
    char pid[32];
    snprintf(pid, sizeof pid, "pay_c%zu", i);
    cr_assert_eq(link_decode(pid, card[i], &links[i]), 0);
  }
  fraud_history hi = {.cust = h, .ncust = n, .card = links, .ncard = ncard};
  fraud_signals s;
  signals_from_intent(&f->in, &s);
  signals_from_history(&f->in, id, &hi, &s);
  return s;
}

Test(features, history_member_round_trips_and_is_deterministic) {
  fixture f;
  make(&f, "k1", T);
  f.pm.fingerprint = "fp|with|bars";
  char a[512], b[512];
  hist_encode(&f.in, "pay_1", a, sizeof a);
  hist_encode(&f.in, "pay_1", b, sizeof b);
  cr_assert_str_eq(a, b);
  hist_entry e;
  cr_assert_eq(hist_decode(a, &e), 0);
  cr_assert_str_eq(e.payment_id, "pay_1");
  cr_assert_eq(e.at_ms, T);
  cr_assert_eq(e.amount_minor, 5000);
  cr_assert_str_eq(e.currency, "USD");
  cr_assert_str_eq(e.country, "US");
  cr_assert(e.has_loc);
  cr_assert_float_eq(e.lat, 40.71, 1e-9);
  cr_assert_str_eq(e.device, "dev_1");
  cr_assert_str_eq(e.card, "fp_with_bars");
  cr_assert_eq(hist_decode("not a member", &e), -1);
  cr_assert_eq(hist_decode("v1|a|b|c", &e), -1);
  cr_assert_eq(hist_decode("v1|p|notanumber|1|USD|US|||d|c", &e), -1);
}

Test(features, first_payment_has_no_history) {
  fixture f;
  make(&f, "k1", T);
  fraud_signals s = signals(&f, "pay_1", NULL, 0, NULL, 0);
  cr_assert_eq(s.customer_count_1h, 1);
  cr_assert_eq(s.card_count_24h, 1);
  cr_assert_eq(s.distinct_cards_24h, 1);
  cr_assert_eq(s.history_count, 0);
  cr_assert_not(s.country_new, "no history: nothing is new");
  cr_assert_not(s.device_new);
  cr_assert_float_eq(s.pm_age_hours, 90 * 24.0, 1e-9);
  cr_assert_float_eq(s.amount_usd, 50.0, 1e-9);
}

Test(features, velocity_counts_by_event_time_windows_and_excludes_itself) {
  fixture f;
  hist_entry h[6];
  int64_t ago[] = {10 * 60000LL, 59 * 60000LL, 61 * 60000LL, 23 * HOUR_MS, 25 * HOUR_MS,
                   31 * DAY_MS};
  for (int i = 0; i < 6; i++) {
    make(&f, "x", T - ago[i]);
    char id[32];
    snprintf(id, sizeof id, "pay_h%d", i);
    h[i] = entry(&f, id);
  }
  make(&f, "k", T);
  hist_entry self = entry(&f, "pay_self");
  hist_entry all[7];
  memcpy(all, h, sizeof h);
  all[6] = self; /* Redis returns our own member too: it must not count twice */
  make(&f, "later", T + HOUR_MS);
  hist_entry later = entry(&f, "pay_later");
  (void)later;
  make(&f, "k", T);
  fraud_signals s = signals(&f, "pay_self", all, 7, NULL, 0);
  cr_assert_eq(s.customer_count_1h, 3, "10 and 59 min ago, and this one");
  cr_assert_eq(s.customer_count_24h, 5);
  cr_assert_eq(s.history_count, 5, "31 days ago is outside the 30-day window");
}

Test(features, a_later_payment_does_not_count_for_an_earlier_one) {
  fixture f;
  make(&f, "later", T + 60000);
  hist_entry later = entry(&f, "pay_later");
  make(&f, "k", T);
  fraud_signals s = signals(&f, "pay_self", &later, 1, NULL, 0);
  cr_assert_eq(s.customer_count_1h, 1);
  cr_assert_eq(s.history_count, 0);
}

Test(features, card_velocity_uses_the_card_times) {
  fixture f;
  make(&f, "k", T);
  int64_t card[] = {T - 1000, T - 30 * 60000LL, T - 2 * HOUR_MS, T - 30 * HOUR_MS, T + 1000};
  fraud_signals s = signals(&f, "pay_self", NULL, 0, card, 5);
  cr_assert_eq(s.card_count_1h, 3);
  cr_assert_eq(s.card_count_24h, 4);
}

Test(features, distinct_cards_new_country_new_device_and_amount_ratio) {
  fixture f;
  hist_entry h[3];
  const char *cards[] = {"fp_1", "fp_2", "fp_3"};
  for (int i = 0; i < 3; i++) {
    make(&f, "x", T - (i + 1) * HOUR_MS);
    f.pm.fingerprint = (char *)cards[i];
    f.money.amount_minor = 2000;
    char id[32];
    snprintf(id, sizeof id, "pay_h%d", i);
    h[i] = entry(&f, id);
  }
  make(&f, "k", T);
  f.pm.fingerprint = "fp_4";
  f.cx.country = "FR";
  f.cx.device_id = "dev_other";
  f.money.amount_minor = 10000;
  f.cx.latitude = 48.86, f.cx.longitude = 2.35; /* Paris, an hour after New York */
  fraud_signals s = signals(&f, "pay_self", h, 3, NULL, 0);
  cr_assert_eq(s.distinct_cards_24h, 4);
  cr_assert(s.country_new);
  cr_assert(s.device_new);
  cr_assert_float_eq(s.amount_ratio, 5.0, 1e-9);
  cr_assert(s.travel_km > 5800 && s.travel_km < 5900, "%f", s.travel_km);
  cr_assert(s.travel_kmh > 5000, "%f", s.travel_kmh);
}

Test(features, country_mismatch_and_new_payment_method) {
  fixture f;
  make(&f, "k", T);
  f.pm.card_country = "GB";
  f.pm.created_at_ms = T - 2 * HOUR_MS;
  fraud_signals s = signals(&f, "pay_self", NULL, 0, NULL, 0);
  cr_assert(s.country_mismatch);
  cr_assert_float_eq(s.pm_age_hours, 2.0, 1e-9);
  f.pm.created_at_ms = 0;
  s = signals(&f, "pay_self", NULL, 0, NULL, 0);
  cr_assert_float_eq(s.pm_age_hours, -1.0, 1e-9, "unknown creation time");
}

Test(features, only_the_newest_history_entries_count) {
  fixture f;
  static hist_entry h[HIST_MAX + 20];
  for (int i = 0; i < HIST_MAX + 20; i++) {
    make(&f, "x", T - (i + 1) * 30000LL);
    char id[32];
    snprintf(id, sizeof id, "pay_h%d", i);
    h[i] = entry(&f, id);
  }
  make(&f, "k", T);
  fraud_signals s = signals(&f, "pay_self", h, HIST_MAX + 20, NULL, 0);
  cr_assert_eq(s.history_count, HIST_MAX);
  cr_assert_eq(s.customer_count_1h, HIST_MAX + 1, "capped: history is the newest HIST_MAX");
}

Test(features, vector_marks_history_missing_when_redis_is_down) {
  fixture f;
  make(&f, "k", T);
  fraud_signals s = signals(&f, "pay_self", NULL, 0, NULL, 0);
  float v[FEATURES_N];
  features_vector(&s, v);
  cr_assert_float_eq(v[0], log10(51.0), 1e-6);
  cr_assert_float_eq(v[21], 1.0, 1e-9, "new customer");
  cr_assert_str_eq(features_names[21], "new_customer");
  s.history_unavailable = true;
  features_vector(&s, v);
  cr_assert(isnan(v[2]) && isnan(v[7]) && isnan(v[21]) && isnan(v[33]));
  cr_assert(!isnan(v[0]) && !isnan(v[28]) && !isnan(v[31]), "intent-only features stay");
  cr_assert_str_eq(features_names[28], "country_mismatch");
  cr_assert_str_eq(features_names[FEATURES_N - 1], "log_history_hours");
}

Test(features, amounts_compare_across_currencies) {
  fixture f;
  make(&f, "k", T);
  f.money.currency = "JPY";
  f.money.amount_minor = 7500; /* ~50 USD, no minor unit */
  fraud_signals s = signals(&f, "pay_self", NULL, 0, NULL, 0);
  cr_assert(s.amount_usd > 45 && s.amount_usd < 55, "%f", s.amount_usd);
}

Test(features, v1_members_still_decode_and_ip_blocks_are_kept) {
  hist_entry e;
  cr_assert_eq(hist_decode("v1|p|1000|5000|USD|US|40.7|-74.0|dev_1|fp_1", &e), 0);
  cr_assert_str_eq(e.card, "fp_1");
  cr_assert_str_eq(e.ipblock, "", "v1 members had no IP block");
  fixture f;
  make(&f, "k", T);
  f.cx.ip = "198.51.100.7";
  char m[512];
  hist_encode(&f.in, "pay_1", m, sizeof m);
  cr_assert_eq(hist_decode(m, &e), 0, "%s", m);
  cr_assert_str_eq(e.ipblock, "198.51.100");
  char b[48];
  features_ipblock("2001:db8:1:2::7", b, sizeof b);
  cr_assert_str_eq(b, "2001:db8:1");
  features_ipblock("not-an-ip", b, sizeof b);
  cr_assert_str_eq(b, "");
}

Test(features, link_members_round_trip_and_bare_ids_decode) {
  char m[256];
  link_encode("pay_1", "dev|x", "cus_1", m, sizeof m);
  link_entry l;
  cr_assert_eq(link_decode(m, T, &l), 0);
  cr_assert_str_eq(l.payment_id, "pay_1");
  cr_assert_str_eq(l.a, "dev_x");
  cr_assert_str_eq(l.b, "cus_1");
  cr_assert_eq(l.at_ms, T);
  cr_assert_eq(link_decode("pay_old", T, &l), 0, "a card member written before v2");
  cr_assert_str_eq(l.a, "");
  cr_assert_eq(link_decode("a|b", T, &l), -1);
}

/* A device and card seen at this merchant: several cards on one device,
 * several accounts on one card, the card at other merchants. */
Test(features, device_and_card_links_count_velocity_and_distinct_values) {
  fixture f;
  make(&f, "k", T);
  link_entry dev[4], card[3];
  const char *cards[] = {"fp_a", "fp_b", "fp_c", "fp_a"};
  int64_t ago[] = {2 * 60000LL, 8 * 60000LL, 30 * 60000LL, 25 * HOUR_MS};
  for (int i = 0; i < 4; i++) {
    char pid[16], mem[128];
    snprintf(pid, sizeof pid, "d%d", i);
    link_encode(pid, "cus_1", cards[i], mem, sizeof mem);
    cr_assert_eq(link_decode(mem, T - ago[i], &dev[i]), 0);
  }
  const char *accounts[] = {"cus_2", "cus_3", "cus_1"};
  for (int i = 0; i < 3; i++) {
    char pid[16], mem[128];
    snprintf(pid, sizeof pid, "c%d", i);
    link_encode(pid, "dev_9", accounts[i], mem, sizeof mem);
    cr_assert_eq(link_decode(mem, T - (i + 1) * 60000LL, &card[i]), 0);
  }
  merchant_seen ms[] = {{"m_2", T - HOUR_MS}, {"m_3", T - 2 * DAY_MS}, {"m_4", T + 1000}};
  fraud_history hi = {.device = dev, .ndevice = 4, .card = card, .ncard = 3, .merchants = ms,
                      .nmerchants = 3};
  fraud_signals s;
  signals_from_intent(&f.in, &s);
  signals_from_history(&f.in, "pay_self", &hi, &s);
  cr_assert_eq(s.device_count_10m, 3, "2 and 8 min ago, and this one");
  cr_assert_eq(s.device_count_1h, 4);
  cr_assert_eq(s.device_count_24h, 4, "25 h ago is outside");
  cr_assert_eq(s.device_cards_24h, 4, "fp_1 (this one), fp_a, fp_b, fp_c");
  cr_assert_eq(s.device_customers_24h, 1);
  cr_assert_eq(s.card_count_10m, 4);
  cr_assert_eq(s.card_customers_24h, 3, "cus_1, cus_2, cus_3");
  cr_assert_eq(s.card_devices_24h, 2, "dev_1 (this one) and dev_9");
  cr_assert_eq(s.card_merchants_24h, 2, "m_1 (this one) and m_2; m_3 too old, m_4 later");
}

Test(features, recent_device_amount_z_and_history_span) {
  fixture f;
  hist_entry h[4];
  int64_t amounts[] = {2000, 2500, 3000, 2200};
  for (int i = 0; i < 4; i++) {
    make(&f, "x", T - (4 - i) * DAY_MS);
    f.money.amount_minor = amounts[i];
    if (i == 3) f.cx.device_id = "dev_new", f.pm.created_at_ms = T - 200 * DAY_MS;
    char id[16];
    snprintf(id, sizeof id, "h%d", i);
    h[i] = entry(&f, id);
  }
  make(&f, "k", T);
  f.money.amount_minor = 40000;
  fraud_signals s = signals(&f, "self", h, 3, NULL, 0);
  cr_assert(s.device_recent == false, "the customer's own device");
  cr_assert(s.amount_z > 5, "%f", s.amount_z);
  cr_assert_float_eq(s.history_hours, 4 * 24.0, 1e-9);
  f.cx.device_id = "dev_other";
  s = signals(&f, "self", h, 3, NULL, 0);
  cr_assert(s.device_recent && s.device_new, "never seen");
  f.cx.device_id = "dev_new";
  s = signals(&f, "self", h, 4, NULL, 0);
  cr_assert_not(s.device_new, "seen yesterday");
  cr_assert_not(s.device_recent, "first seen more than 24 h ago");
  h[3].at_ms = T - HOUR_MS;
  s = signals(&f, "self", h, 4, NULL, 0);
  cr_assert(s.device_recent, "first seen an hour ago, after payments from another device");
  s = signals(&f, "self", &h[3], 1, NULL, 0);
  cr_assert_not(s.device_recent, "the only device the customer ever used");
}
