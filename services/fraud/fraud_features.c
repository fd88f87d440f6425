/* fraud_features: signals and model features from an intent and its history. */
#include "fraud_features.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "money.h"

const char *const features_names[FEATURES_N] = {
    "log_amount_usd",       "amount_ratio",         "amount_z",
    "customer_count_10m",   "customer_count_1h",    "customer_count_24h",
    "card_count_10m",       "card_count_1h",        "card_count_24h",
    "device_count_10m",     "device_count_1h",      "device_count_24h",
    "distinct_cards_24h",   "distinct_devices_24h", "distinct_countries_24h",
    "card_devices_24h",     "card_customers_24h",   "card_merchants_24h",
    "device_customers_24h", "device_cards_24h",     "history_count",
    "new_customer",         "log_spend_1h_usd",     "log_minutes_since_prev",
    "card_new",             "ipblock_new",          "country_new",
    "device_new",           "country_mismatch",     "log_travel_kmh",
    "log_travel_km",        "log_pm_age_hours",     "device_recent",
    "log_history_hours"};

/* More of a behaviour never makes a payment safer (1), or never riskier
 * (-1; an older payment method), or either (0). Training enforces it, so a
 * model cannot learn a generator's accident (say, "exactly 3 payments in
 * the hour is fraud, 4 is fine") that no real fraud would follow. */
const signed char features_monotone[FEATURES_N] = {0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
                                                   1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0,
                                                   1, 0, 1, 1, 1, 1, 1, 1, 0, -1, 1, 0};

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

void features_ipblock(const char *ip, char *out, size_t outlen) {
  set(out, outlen, ip);
  char sep = strchr(out, ':') ? ':' : '.';
  int seen = 0;
  for (char *c = out; *c; c++)
    if (*c == sep && ++seen == 3) {
      *c = '\0';
      return;
    }
  if (seen < 3 && sep == '.') *out = '\0'; /* not an IPv4 address */
}

void hist_encode(const ps_intent *in, const char *payment_id, char *out, size_t outlen) {
  char id[72], country[4], device[72], card[72], cur[4], ipb[48], raw[48];
  field(id, sizeof id, payment_id);
  field(country, sizeof country, in->context ? in->context->country : NULL);
  field(device, sizeof device, in->context ? in->context->device_id : NULL);
  field(card, sizeof card, in->payment_method ? in->payment_method->fingerprint : NULL);
  field(cur, sizeof cur, in->amount ? in->amount->currency : NULL);
  features_ipblock(in->context ? in->context->ip : NULL, raw, sizeof raw);
  field(ipb, sizeof ipb, raw);
  char loc[64] = "";
  /* Fixed precision (~10 m): the member stays identical however often it is built. */
  if (has_location(in))
    snprintf(loc, sizeof loc, "%.4f|%.4f", in->context->latitude, in->context->longitude);
  else
    snprintf(loc, sizeof loc, "|");
  snprintf(out, outlen, "v2|%s|%lld|%lld|%s|%s|%s|%s|%s|%s", id, (long long)in->created_at_ms,
           (long long)(in->amount ? in->amount->amount_minor : 0), cur, country, loc, device,
           card, ipb);
}

/* Splits buf on '|' into at most max fields; returns how many. */
static int split(char *buf, char **f, int max) {
  int n = 0;
  char *p = buf;
  while (n < max) {
    f[n++] = p;
    char *bar = strchr(p, '|');
    if (!bar) break;
    *bar = '\0';
    p = bar + 1;
  }
  return n;
}

int hist_decode(const char *member, hist_entry *e) {
  memset(e, 0, sizeof *e);
  char buf[512];
  if (!member || strlen(member) >= sizeof buf) return -1;
  int want = strncmp(member, "v2|", 3) == 0 ? 10 : strncmp(member, "v1|", 3) == 0 ? 9 : 0;
  if (!want) return -1;
  snprintf(buf, sizeof buf, "%s", member + 3);
  char *f[10];
  if (split(buf, f, want) != want) return -1;
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
  if (want == 10) set(e->ipblock, sizeof e->ipblock, f[9]);
  return 0;
}

void link_encode(const char *payment_id, const char *a, const char *b, char *out, size_t outlen) {
  char id[72], fa[72], fb[72];
  field(id, sizeof id, payment_id);
  field(fa, sizeof fa, a);
  field(fb, sizeof fb, b);
  snprintf(out, outlen, "%s|%s|%s", id, fa, fb);
}

int link_decode(const char *member, int64_t at, link_entry *e) {
  memset(e, 0, sizeof *e);
  char buf[256];
  if (!member || !*member || strlen(member) >= sizeof buf) return -1;
  snprintf(buf, sizeof buf, "%s", member);
  char *f[3];
  int n = split(buf, f, 3);
  if (n == 2) return -1;
  set(e->payment_id, sizeof e->payment_id, f[0]);
  if (n == 3) {
    set(e->a, sizeof e->a, f[1]);
    set(e->b, sizeof e->b, f[2]);
  }
  e->at_ms = at;
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

/* An amount in approximate US dollars (a feature, never money). */
static double usd_of(int64_t minor, const char *cur) {
  int exp = money_currency_exponent(cur);
  return (double)minor / pow(10.0, exp < 0 ? 2 : exp) * usd_rate(cur);
}

void signals_from_intent(const ps_intent *in, fraud_signals *s) {
  memset(s, 0, sizeof *s);
  s->amount_minor = in->amount ? in->amount->amount_minor : 0;
  set(s->currency, sizeof s->currency, in->amount ? in->amount->currency : "");
  s->amount_usd = usd_of(s->amount_minor, s->currency);
  const char *country = in->context ? str(in->context->country) : "";
  const char *card_country = in->payment_method ? str(in->payment_method->card_country) : "";
  s->country_mismatch = *country && *card_country && strcmp(country, card_country) != 0;
  int64_t pm_at = in->payment_method ? in->payment_method->created_at_ms : 0;
  s->pm_age_hours = pm_at > 0 ? (double)(in->created_at_ms - pm_at) / (double)HOUR_MS : -1.0;
  if (s->pm_age_hours < -1.0) s->pm_age_hours = 0.0; /* added "after" the payment: clock skew */
  s->customer_count_10m = s->customer_count_1h = s->customer_count_24h = 1;
  s->card_count_10m = s->card_count_1h = s->card_count_24h = 1;
  s->device_count_10m = s->device_count_1h = s->device_count_24h = 1;
  s->distinct_cards_24h = s->distinct_devices_24h = s->distinct_countries_24h = 1;
  s->card_devices_24h = s->card_customers_24h = s->card_merchants_24h = 1;
  s->device_customers_24h = s->device_cards_24h = 1;
  s->spend_1h_usd = s->amount_usd;
  s->minutes_since_prev = -1;
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

/* A small set of distinct strings (at most HIST_MAX + 1 kept). */
typedef struct strset {
  const char *v[HIST_MAX + 1];
  size_t n;
} strset;

static void strset_add(strset *x, const char *s) {
  if (!s || !*s) return;
  for (size_t i = 0; i < x->n; i++)
    if (strcmp(x->v[i], s) == 0) return;
  if (x->n < HIST_MAX + 1) x->v[x->n++] = s;
}

static long capped(long v) { return v > HIST_MAX + 1 ? HIST_MAX + 1 : v; }

/* Counts a card's or device's links in their windows; a and b collect the
 * distinct values of the entries' two fields in 24 h. */
static void count_links(const link_entry *l, size_t n, const char *payment_id, int64_t t,
                        long *c10m, long *c1h, long *c24h, strset *a, strset *b) {
  for (size_t i = 0; i < n; i++) {
    if (strcmp(l[i].payment_id, str(payment_id)) == 0) continue;
    if (l[i].at_ms > t || l[i].at_ms <= t - LINK_WINDOW_MS) continue;
    (*c24h)++;
    if (l[i].at_ms > t - HOUR_MS) (*c1h)++;
    if (l[i].at_ms > t - 10 * MINUTE_MS) (*c10m)++;
    strset_add(a, l[i].a);
    strset_add(b, l[i].b);
  }
  *c10m = capped(*c10m), *c1h = capped(*c1h), *c24h = capped(*c24h);
}

static void customer_signals(const ps_intent *in, const hist_entry *const *h, size_t n,
                             fraud_signals *s) {
  int64_t t = in->created_at_ms;
  const char *country = in->context ? str(in->context->country) : "";
  const char *device = in->context ? str(in->context->device_id) : "";
  const char *card = in->payment_method ? str(in->payment_method->fingerprint) : "";
  char ipb[48];
  features_ipblock(in->context ? in->context->ip : NULL, ipb, sizeof ipb);
  bool seen_country = false, seen_device = false, seen_card = false, seen_ipb = false;
  int64_t device_first = t;
  strset cards = {0}, devices = {0}, countries = {0};
  strset_add(&cards, card), strset_add(&devices, device), strset_add(&countries, country);
  double sum = 0, lsum = 0, lsq = 0;
  long same_cur = 0, with_ipb = 0;
  s->history_count = (long)n;
  for (size_t i = 0; i < n; i++) {
    const hist_entry *e = h[i];
    if (e->at_ms > t - 10 * MINUTE_MS) s->customer_count_10m++;
    if (e->at_ms > t - HOUR_MS) {
      s->customer_count_1h++;
      s->spend_1h_usd += usd_of(e->amount_minor, e->currency);
    }
    if (e->at_ms > t - DAY_MS) {
      s->customer_count_24h++;
      strset_add(&cards, e->card), strset_add(&devices, e->device);
      strset_add(&countries, e->country);
    }
    seen_country |= *country && strcmp(e->country, country) == 0;
    if (*device && strcmp(e->device, device) == 0) {
      seen_device = true;
      if (e->at_ms < device_first) device_first = e->at_ms;
    }
    seen_card |= *card && strcmp(e->card, card) == 0;
    seen_ipb |= *ipb && strcmp(e->ipblock, ipb) == 0;
    with_ipb += *e->ipblock != '\0';
    if (strcmp(e->currency, s->currency) == 0 && e->amount_minor > 0) {
      sum += (double)e->amount_minor;
      lsum += log((double)e->amount_minor);
      lsq += log((double)e->amount_minor) * log((double)e->amount_minor);
      same_cur++;
    }
  }
  s->distinct_cards_24h = cards.n > 0 ? (long)cards.n : 1;
  s->distinct_devices_24h = devices.n > 0 ? (long)devices.n : 1;
  s->distinct_countries_24h = countries.n > 0 ? (long)countries.n : 1;
  s->country_new = n > 0 && *country && !seen_country;
  s->device_new = n > 0 && *device && !seen_device;
  s->card_new = n > 0 && *card && !seen_card;
  s->ipblock_new = with_ipb > 0 && *ipb && !seen_ipb;
  s->amount_ratio = same_cur > 0 && sum > 0 ? (double)s->amount_minor / (sum / (double)same_cur) : 0;
  if (same_cur >= 3 && s->amount_minor > 0) {
    double mean = lsum / (double)same_cur, var = lsq / (double)same_cur - mean * mean;
    /* A floor on the spread: a customer who always pays the same is not
     * infinitely surprised by a cent more. */
    double sd = sqrt(var > 0.0625 ? var : 0.0625);
    s->amount_z = (log((double)s->amount_minor) - mean) / sd;
  }
  if (n > 0) {
    s->minutes_since_prev = (double)(t - h[0]->at_ms) / (double)MINUTE_MS;
    s->history_hours = (double)(t - h[n - 1]->at_ms) / (double)HOUR_MS;
    /* New to the customer: never seen, or first seen in the last day by a
     * customer who paid from something else before it. */
    s->device_recent = *device && (!seen_device || (device_first > t - DAY_MS &&
                                                    h[n - 1]->at_ms < device_first));
  }
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
}

void signals_from_history(const ps_intent *in, const char *payment_id, const fraud_history *hi,
                          fraud_signals *s) {
  int64_t t = in->created_at_ms;
  const hist_entry **h = calloc(hi->ncust + 1, sizeof *h);
  if (!h) abort();
  size_t n = select_history(hi->cust, hi->ncust, payment_id, t, h);
  customer_signals(in, h, n, s);
  free(h);
  const char *device = in->context ? str(in->context->device_id) : "";
  const char *card = in->payment_method ? str(in->payment_method->fingerprint) : "";
  const char *cus = str(in->customer_id), *merchant = str(in->merchant_id);
  strset a = {0}, b = {0};
  strset_add(&a, device), strset_add(&b, cus);
  count_links(hi->card, hi->ncard, payment_id, t, &s->card_count_10m, &s->card_count_1h,
              &s->card_count_24h, &a, &b);
  s->card_devices_24h = a.n ? (long)a.n : 1;
  s->card_customers_24h = b.n ? (long)b.n : 1;
  strset c = {0}, d = {0};
  strset_add(&c, cus), strset_add(&d, card);
  count_links(hi->device, hi->ndevice, payment_id, t, &s->device_count_10m, &s->device_count_1h,
              &s->device_count_24h, &c, &d);
  s->device_customers_24h = c.n ? (long)c.n : 1;
  s->device_cards_24h = d.n ? (long)d.n : 1;
  strset m = {0};
  strset_add(&m, merchant);
  for (size_t i = 0; i < hi->nmerchants; i++) {
    const merchant_seen *x = &hi->merchants[i];
    if (x->at_ms <= t && x->at_ms > t - DAY_MS) strset_add(&m, x->merchant);
  }
  s->card_merchants_24h = m.n ? (long)m.n : 1;
}

static float clampf(double v, double hi) { return (float)(v > hi ? hi : v); }

void features_vector(const fraud_signals *s, float out[FEATURES_N]) {
  float na = NAN;
  bool h = !s->history_unavailable;
  const double hv[] = {
      clampf(s->amount_ratio, 100.0), s->amount_z < -20 ? -20 : clampf(s->amount_z, 20.0),
      (double)s->customer_count_10m, (double)s->customer_count_1h, (double)s->customer_count_24h,
      (double)s->card_count_10m, (double)s->card_count_1h, (double)s->card_count_24h,
      (double)s->device_count_10m, (double)s->device_count_1h, (double)s->device_count_24h,
      (double)s->distinct_cards_24h, (double)s->distinct_devices_24h,
      (double)s->distinct_countries_24h, (double)s->card_devices_24h,
      (double)s->card_customers_24h, (double)s->card_merchants_24h,
      (double)s->device_customers_24h, (double)s->device_cards_24h, (double)s->history_count,
      (double)(s->history_count == 0), log10(s->spend_1h_usd + 1.0),
      s->minutes_since_prev < 0 ? NAN : log10(s->minutes_since_prev + 1.0), (double)s->card_new,
      (double)s->ipblock_new, (double)s->country_new, (double)s->device_new};
  out[0] = (float)log10(s->amount_usd + 1.0);
  for (size_t i = 0; i < sizeof hv / sizeof hv[0]; i++) out[1 + i] = h ? (float)hv[i] : na;
  out[28] = (float)s->country_mismatch;
  out[29] = h ? (float)log10(clampf(s->travel_kmh, 20000.0) + 1.0) : na;
  out[30] = h ? (float)log10(clampf(s->travel_km, 20000.0) + 1.0) : na;
  out[31] = s->pm_age_hours < 0 ? na : (float)log10(clampf(s->pm_age_hours, 24.0 * 3650) + 1.0);
  out[32] = h ? (float)s->device_recent : na;
  out[33] = h ? (float)log10(s->history_hours + 1.0) : na;
}
