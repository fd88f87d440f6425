/* fraud_features: signals and model features from an intent and its history. */
#include "fraud_features.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "money.h"

const char *const features_names[FEATURES_N] = {
    "log_amount_usd",     "amount_ratio",    "customer_count_1h", "customer_count_24h",
    "card_count_1h",      "card_count_24h",  "distinct_cards_24h", "history_count",
    "country_new",        "country_mismatch", "travel_kmh",        "pm_age_hours",
    "device_new",         "new_customer"};

static const char *str(const char *s) { return s ? s : ""; }

/* Copies s into out, cut to fit. */
static void set(char *out, size_t outlen, const char *s) {
  size_t n = strnlen(str(s), outlen - 1);
  memcpy(out, str(s), n);
  out[n] = '\0';
}

/* Copies s into out with '|' (the member separator) replaced. */
static void field(char *out, size_t outlen, const char *s) {
  set(out, outlen, s);
  for (char *c = out; *c; c++)
    if (*c == '|') *c = '_';
}

static bool has_location(const ps_intent *in) {
  return in->context && (in->context->latitude != 0.0 || in->context->longitude != 0.0) &&
         fabs(in->context->latitude) <= 90.0 && fabs(in->context->longitude) <= 180.0;
}

void hist_encode(const ps_intent *in, const char *payment_id, char *out, size_t outlen) {
  char id[72], country[4], device[72], card[72], cur[4];
  field(id, sizeof id, payment_id);
  field(country, sizeof country, in->context ? in->context->country : NULL);
  field(device, sizeof device, in->context ? in->context->device_id : NULL);
  field(card, sizeof card, in->payment_method ? in->payment_method->fingerprint : NULL);
  field(cur, sizeof cur, in->amount ? in->amount->currency : NULL);
  char loc[64] = "";
  /* Fixed precision (~10 m): the member stays identical however often it is built. */
  if (has_location(in))
    snprintf(loc, sizeof loc, "%.4f|%.4f", in->context->latitude, in->context->longitude);
  else
    snprintf(loc, sizeof loc, "|");
  snprintf(out, outlen, "v1|%s|%lld|%lld|%s|%s|%s|%s|%s", id, (long long)in->created_at_ms,
           (long long)(in->amount ? in->amount->amount_minor : 0), cur, country, loc, device,
           card);
}

int hist_decode(const char *member, hist_entry *e) {
  memset(e, 0, sizeof *e);
  char buf[512];
  if (!member || strncmp(member, "v1|", 3) != 0 || strlen(member) >= sizeof buf) return -1;
  snprintf(buf, sizeof buf, "%s", member + 3);
  char *f[9];
  int n = 0;
  char *p = buf;
  while (n < 9) {
    f[n++] = p;
    char *bar = strchr(p, '|');
    if (!bar) break;
    *bar = '\0';
    p = bar + 1;
  }
  if (n != 9) return -1;
  char *end;
  set(e->payment_id, sizeof e->payment_id, f[0]);
  e->at_ms = strtoll(f[1], &end, 10);
  if (*end) return -1;
  e->amount_minor = strtoll(f[2], &end, 10);
  if (*end) return -1;
  set(e->currency, sizeof e->currency, f[3]);
  set(e->country, sizeof e->country, f[4]);
  if (*f[5] && *f[6]) {
    e->lat = strtod(f[5], NULL);
    e->lon = strtod(f[6], NULL);
    e->has_loc = true;
  }
  set(e->device, sizeof e->device, f[7]);
  set(e->card, sizeof e->card, f[8]);
  return 0;
}

double features_haversine_km(double lat1, double lon1, double lat2, double lon2) {
  const double r = 6371.0, rad = M_PI / 180.0;
  double dlat = (lat2 - lat1) * rad, dlon = (lon2 - lon1) * rad;
  double a = sin(dlat / 2) * sin(dlat / 2) +
             cos(lat1 * rad) * cos(lat2 * rad) * sin(dlon / 2) * sin(dlon / 2);
  return 2 * r * atan2(sqrt(a), sqrt(1 - a));
}

/* Rough US dollars per major unit: the model sees one amount scale across
 * currencies. A feature, not money: nothing is ever paid from it. */
static double usd_rate(const char *cur) {
  static const struct { const char *code; double rate; } rates[] = {
      {"USD", 1.0}, {"EUR", 1.08}, {"GBP", 1.27}, {"JPY", 0.0067}, {"CHF", 1.12},
      {"CAD", 0.73}, {"AUD", 0.66}, {"SEK", 0.095}, {"INR", 0.012}, {"BRL", 0.2}};
  for (size_t i = 0; i < sizeof rates / sizeof rates[0]; i++)
    if (strcmp(cur, rates[i].code) == 0) return rates[i].rate;
  return 1.0;
}

void signals_from_intent(const ps_intent *in, fraud_signals *s) {
  memset(s, 0, sizeof *s);
  s->amount_minor = in->amount ? in->amount->amount_minor : 0;
  set(s->currency, sizeof s->currency, in->amount ? in->amount->currency : "");
  int exp = money_currency_exponent(s->currency);
  double major = (double)s->amount_minor / pow(10.0, exp < 0 ? 2 : exp);
  s->amount_usd = major * usd_rate(s->currency);
  const char *country = in->context ? str(in->context->country) : "";
  const char *card_country = in->payment_method ? str(in->payment_method->card_country) : "";
  s->country_mismatch = *country && *card_country && strcmp(country, card_country) != 0;
  int64_t pm_at = in->payment_method ? in->payment_method->created_at_ms : 0;
  s->pm_age_hours = pm_at > 0 ? (double)(in->created_at_ms - pm_at) / (double)HOUR_MS : -1.0;
  if (s->pm_age_hours < -1.0) s->pm_age_hours = 0.0; /* added "after" the payment: clock skew */
  s->customer_count_1h = s->customer_count_24h = 1;
  s->card_count_1h = s->card_count_24h = 1;
  s->distinct_cards_24h = 1;
}

static int newest_first(const void *a, const void *b) {
  const hist_entry *x = *(const hist_entry *const *)a, *y = *(const hist_entry *const *)b;
  if (x->at_ms != y->at_ms) return x->at_ms < y->at_ms ? 1 : -1;
  return strcmp(x->payment_id, y->payment_id);
}

/* Selects the entries that count: earlier than or as old as this payment,
 * within the window, not this payment; the newest HIST_MAX of them. */
static size_t select_history(const hist_entry *cust, size_t n, const char *payment_id, int64_t t,
                             const hist_entry **sel) {
  size_t k = 0;
  for (size_t i = 0; i < n; i++) {
    const hist_entry *e = &cust[i];
    if (strcmp(e->payment_id, str(payment_id)) == 0) continue;
    if (e->at_ms > t || e->at_ms < t - HIST_WINDOW_MS) continue;
    sel[k++] = e;
  }
  qsort(sel, k, sizeof *sel, newest_first);
  return k > HIST_MAX ? HIST_MAX : k;
}

void signals_from_history(const ps_intent *in, const char *payment_id, const hist_entry *cust,
                          size_t ncust, const int64_t *card_times, size_t ncard,
                          fraud_signals *s) {
  int64_t t = in->created_at_ms;
  const hist_entry **h = calloc(ncust + 1, sizeof *h);
  if (!h) abort();
  size_t n = select_history(cust, ncust, payment_id, t, h);
  const char *country = in->context ? str(in->context->country) : "";
  const char *device = in->context ? str(in->context->device_id) : "";
  const char *card = in->payment_method ? str(in->payment_method->fingerprint) : "";
  bool seen_country = false, seen_device = false;
  const char *cards[HIST_MAX + 1];
  size_t ncards = 0;
  if (*card) cards[ncards++] = card;
  double sum = 0;
  long same_cur = 0;
  s->history_count = (long)n;
  for (size_t i = 0; i < n; i++) {
    const hist_entry *e = h[i];
    if (e->at_ms > t - HOUR_MS) s->customer_count_1h++;
    if (e->at_ms > t - DAY_MS) {
      s->customer_count_24h++;
      bool known = !*e->card;
      for (size_t c = 0; c < ncards && !known; c++) known = strcmp(cards[c], e->card) == 0;
      if (!known) cards[ncards++] = e->card;
    }
    if (*country && strcmp(e->country, country) == 0) seen_country = true;
    if (*device && strcmp(e->device, device) == 0) seen_device = true;
    if (strcmp(e->currency, s->currency) == 0) {
      sum += (double)e->amount_minor;
      same_cur++;
    }
  }
  s->distinct_cards_24h = ncards > 0 ? (long)ncards : 1;
  s->country_new = n > 0 && *country && !seen_country;
  s->device_new = n > 0 && *device && !seen_device;
  s->amount_ratio = same_cur > 0 && sum > 0 ? (double)s->amount_minor / (sum / (double)same_cur) : 0;
  /* Impossible travel: from the newest earlier payment that has a location. */
  for (size_t i = 0; i < n && has_location(in); i++) {
    if (!h[i]->has_loc) continue;
    s->travel_km = features_haversine_km(h[i]->lat, h[i]->lon, in->context->latitude,
                                         in->context->longitude);
    double hours = (double)(t - h[i]->at_ms) / (double)HOUR_MS;
    if (hours < 1.0 / 60) hours = 1.0 / 60; /* a minute: no division by ~0 */
    s->travel_kmh = s->travel_km / hours;
    break;
  }
  for (size_t i = 0; i < ncard; i++) {
    if (card_times[i] > t || card_times[i] <= t - DAY_MS) continue;
    s->card_count_24h++;
    if (card_times[i] > t - HOUR_MS) s->card_count_1h++;
  }
  if (s->card_count_24h > HIST_MAX + 1) s->card_count_24h = HIST_MAX + 1;
  if (s->card_count_1h > HIST_MAX + 1) s->card_count_1h = HIST_MAX + 1;
  free(h);
}

static float clampf(double v, double hi) { return (float)(v > hi ? hi : v); }

void features_vector(const fraud_signals *s, float out[FEATURES_N]) {
  float na = NAN;
  bool h = !s->history_unavailable;
  out[0] = (float)log10(s->amount_usd + 1.0);
  out[1] = h ? clampf(s->amount_ratio, 100.0) : na;
  out[2] = h ? (float)s->customer_count_1h : na;
  out[3] = h ? (float)s->customer_count_24h : na;
  out[4] = h ? (float)s->card_count_1h : na;
  out[5] = h ? (float)s->card_count_24h : na;
  out[6] = h ? (float)s->distinct_cards_24h : na;
  out[7] = h ? (float)s->history_count : na;
  out[8] = h ? (float)s->country_new : na;
  out[9] = (float)s->country_mismatch;
  out[10] = h ? clampf(s->travel_kmh, 20000.0) : na;
  out[11] = s->pm_age_hours < 0 ? na : clampf(s->pm_age_hours, 24.0 * 365);
  out[12] = h ? (float)s->device_new : na;
  out[13] = h ? (float)(s->history_count == 0) : na;
}
