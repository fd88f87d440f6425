/* fraudgen: a labelled synthetic data set for the fraud model. Customers
 * with homes, devices, cards and spending habits pay over a period; into
 * that stream it mixes the fraud a payments team sees — card-testing
 * bursts, account takeover (new device + new country + high amount),
 * stolen cards (a method added minutes ago, card country not the request's)
 * — and the legitimate cases that look like fraud: travellers, big-ticket
 * regulars, customers adding a new card or device, expats paying with a
 * card from home, guests typing a card in at checkout. Writes JSON lines in time order:
 * {"label": 0|1, "pattern": "...", "intent": {...}} (intent_json.h).
 * Deterministic for a seed. */
#include <jansson.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fraud_features.h"
#include "intent_json.h"

#define MIN_MS 60000LL
#define HOUR_MS 3600000LL
#define DAY_MS (24 * HOUR_MS)
#define T0 1790812800000LL /* 2026-10-01T00:00:00Z */

typedef struct city {
  const char *name, *country, *currency;
  double lat, lon;
} city;

static const city CITIES[] = {
    {"new-york", "US", "USD", 40.71, -74.01},   {"chicago", "US", "USD", 41.88, -87.63},
    {"san-francisco", "US", "USD", 37.77, -122.42}, {"london", "GB", "GBP", 51.51, -0.13},
    {"manchester", "GB", "GBP", 53.48, -2.24},  {"paris", "FR", "EUR", 48.86, 2.35},
    {"berlin", "DE", "EUR", 52.52, 13.40},      {"madrid", "ES", "EUR", 40.42, -3.70},
    {"amsterdam", "NL", "EUR", 52.37, 4.90},    {"tokyo", "JP", "JPY", 35.68, 139.69},
    {"osaka", "JP", "JPY", 34.69, 135.50},      {"lagos", "NG", "USD", 6.52, 3.38},
    {"sao-paulo", "BR", "USD", -23.55, -46.63}, {"jakarta", "ID", "USD", -6.21, 106.85},
    {"moscow", "RU", "USD", 55.76, 37.62},      {"sydney", "AU", "USD", -33.87, 151.21}};
#define NCITIES (sizeof CITIES / sizeof CITIES[0])
#define NHOMES 11 /* customers live in the first cities; fraud comes from anywhere */

static uint64_t rng;
static uint64_t next_u64(void) { /* splitmix64 */
  uint64_t z = (rng += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}
static double uni(void) { return (double)(next_u64() >> 11) / 9007199254740992.0; }
static long pick(long n) { return (long)(uni() * (double)n); }
static double lognorm(double median, double sigma) {
  double u1 = uni() + 1e-12, u2 = uni();
  return median * exp(sigma * sqrt(-2 * log(u1)) * cos(2 * M_PI * u2));
}

typedef struct row {
  int64_t at;
  json_t *line;
} row;

static row *rows;
static size_t nrows, caprows;
static long seq;

typedef struct pay {
  const char *customer, *pattern, *device, *card, *card_country, *email;
  const city *where;
  int64_t at, pm_at, amount_usd_cents;
  int label;
} pay;

static int64_t to_minor(int64_t usd_cents, const char *currency) {
  if (strcmp(currency, "JPY") == 0) return usd_cents * 150 / 100 > 0 ? usd_cents * 150 / 100 : 1;
  if (strcmp(currency, "GBP") == 0) return usd_cents * 79 / 100 > 0 ? usd_cents * 79 / 100 : 1;
  if (strcmp(currency, "EUR") == 0) return usd_cents * 92 / 100 > 0 ? usd_cents * 92 / 100 : 1;
  return usd_cents > 0 ? usd_cents : 1;
}

static void emit(const pay *p, const char *currency) {
  char key[64], ip[32];
  snprintf(key, sizeof key, "gen-%08ld", seq++);
  snprintf(ip, sizeof ip, "203.0.%d.%d", (int)(p->where - CITIES), (int)pick(250) + 1);
  ps_money money = PAYMENTS__V1__MONEY__INIT;
  money.amount_minor = to_minor(p->amount_usd_cents, currency);
  money.currency = (char *)currency;
  Payments__V1__PaymentMethod pm = PAYMENTS__V1__PAYMENT_METHOD__INIT;
  pm.id = "pm_card_visa";
  pm.fingerprint = (char *)p->card;
  pm.created_at_ms = p->pm_at;
  pm.card_country = (char *)p->card_country;
  Payments__V1__RequestContext cx = PAYMENTS__V1__REQUEST_CONTEXT__INIT;
  cx.ip = ip;
  cx.country = (char *)p->where->country;
  /* a few km around the city centre */
  cx.latitude = round((p->where->lat + (uni() - 0.5) * 0.1) * 1e4) / 1e4;
  cx.longitude = round((p->where->lon + (uni() - 0.5) * 0.1) * 1e4) / 1e4;
  cx.device_id = (char *)p->device;
  cx.email = (char *)p->email;
  ps_intent in = PAYMENTS__V1__PAYMENT_INTENT__INIT;
  in.idempotency_key = key;
  in.merchant_id = "m_1";
  in.customer_id = (char *)p->customer;
  in.amount = &money;
  in.created_at_ms = p->at;
  in.payment_method = &pm;
  in.context = &cx;
  json_t *line = json_pack("{s:i,s:s,s:o}", "label", p->label, "pattern", p->pattern, "intent",
                           intent_to_json(&in));
  if (nrows == caprows) {
    caprows = caprows ? caprows * 2 : 4096;
    rows = realloc(rows, caprows * sizeof *rows);
    if (!rows) abort();
  }
  rows[nrows++] = (row){p->at, line};
}

typedef struct customer {
  char id[32], device[32], card[40], email[48];
  const city *home;
  const char *card_country; /* usually home's; expats keep a card from elsewhere */
  int64_t card_at;
  double median_usd, per_day;
} customer;

/* The customer's ordinary payments over the period, with the legitimate
 * look-alikes: a trip abroad, a new card. */
static void legit(customer *c, int days) {
  bool traveller = uni() < 0.10, new_card = uni() < 0.06, new_device = uni() < 0.05;
  int64_t trip_start = T0 + (int64_t)(uni() * (days - 5)) * DAY_MS + pick(12) * HOUR_MS;
  int64_t trip_end = trip_start + (2 + pick(5)) * DAY_MS;
  const city *dest = &CITIES[pick(NHOMES)];
  int64_t card_change = T0 + (int64_t)(uni() * days * DAY_MS);
  int64_t device_change = T0 + (int64_t)(uni() * days * DAY_MS);
  char card2[48], device2[48];
  snprintf(card2, sizeof card2, "%s_2", c->card);
  snprintf(device2, sizeof device2, "%s_2", c->device);
  for (int64_t t = T0 + (int64_t)(uni() * DAY_MS / c->per_day); t < T0 + days * DAY_MS;
       t += (int64_t)(-log(uni() + 1e-12) * DAY_MS / c->per_day) + MIN_MS) {
    pay p = {c->id, "legit", c->device, c->card, c->card_country, c->email, c->home, t,
             c->card_at, (int64_t)(lognorm(c->median_usd, 0.6) * 100), 0};
    /* Travellers: abroad with their own device and card, normal spending.
     * They pay there only after a plausible flight. */
    if (traveller && dest != c->home && t >= trip_start && t < trip_end) {
      double km = features_haversine_km(c->home->lat, c->home->lon, dest->lat, dest->lon);
      if (t < trip_start + (int64_t)(km / 700.0 * HOUR_MS) + 2 * HOUR_MS) continue;
      p.where = dest;
      p.pattern = "traveller";
    }
    if (new_card && t >= card_change) {
      p.card = card2;
      p.pm_at = card_change;
      if (strcmp(p.pattern, "legit") == 0) p.pattern = "new_card";
    }
    if (new_device && t >= device_change) {
      p.device = device2;
      if (strcmp(p.pattern, "legit") == 0) p.pattern = "new_device";
    }
    emit(&p, c->home->currency);
  }
}

static char *dupf(const char *fmt, long a) {
  char buf[64];
  snprintf(buf, sizeof buf, fmt, a);
  return strdup(buf);
}

/* Strings of fraudsters' payments live until the end of the run. */
static char **owned;
static size_t nowned;
static char *keep(char *s) {
  owned = realloc(owned, (nowned + 1) * sizeof *owned);
  if (!owned) abort();
  return owned[nowned++] = s;
}

/* Card testing: many small charges in minutes, from one device, on stolen
 * cards (rotating, or one card over and over). */
static void card_testing(long i, int days) {
  const city *from = &CITIES[pick(NCITIES)];
  const char *cus = keep(dupf("cus_ct_%ld", i)), *dev = keep(dupf("dev_ct_%ld", i));
  const char *email = keep(dupf("x%ld@mailinator.test", i));
  bool rotate = uni() < 0.5;
  int64_t t = T0 + (int64_t)(uni() * days * DAY_MS);
  long n = 5 + pick(20);
  const char *card = keep(dupf("fp_ct_%ld", i * 100));
  for (long k = 0; k < n; k++, t += MIN_MS / 2 + pick(3 * MIN_MS)) {
    if (rotate) card = keep(dupf("fp_ct_%ld", i * 100 + k));
    const char *cc = CITIES[pick(NCITIES)].country;
    pay p = {cus, "card_testing", dev, card, cc, email, from, t, t - pick(30) * MIN_MS,
             50 + pick(450), 1};
    emit(&p, "USD");
  }
}

/* Account takeover: a new device in a new country, soon after the owner
 * paid at home, spending far above the owner's habit. */
static void takeover(customer *c, long i, int days) {
  const city *from = uni() < 0.3 ? c->home : &CITIES[NHOMES + pick(NCITIES - NHOMES)];
  const char *dev = keep(dupf("dev_ato_%ld", i));
  int64_t t = T0 + (int64_t)((0.3 + 0.7 * uni()) * days * DAY_MS);
  long n = 1 + pick(3);
  for (long k = 0; k < n; k++, t += 5 * MIN_MS + pick(60 * MIN_MS)) {
    pay p = {c->id, "account_takeover", dev, c->card, c->card_country, c->email, from, t,
             c->card_at, (int64_t)(c->median_usd * (5 + 15 * uni()) * 100), 1};
    if (p.amount_usd_cents > 900000) p.amount_usd_cents = 900000; /* under the hard limit */
    emit(&p, c->home->currency);
  }
}

/* Stolen card: a card added minutes ago, issued in another country than
 * the request's, a purchase worth reselling. Guest or existing account. */
static void stolen_card(customer *c, long i, int days) {
  const city *from = uni() < 0.5 ? c->home : &CITIES[pick(NCITIES)];
  const char *card = keep(dupf("fp_sc_%ld", i));
  const city *issuer = &CITIES[pick(NCITIES)];
  if (uni() < 0.3) issuer = from; /* a card stolen at home */
  else if (strcmp(issuer->country, from->country) == 0) issuer = &CITIES[(issuer - CITIES + 5) % NCITIES];
  int64_t t = T0 + (int64_t)(uni() * days * DAY_MS);
  bool guest = uni() < 0.5;
  pay p = {guest ? keep(dupf("cus_guest_%ld", i)) : c->id, "stolen_card",
           guest ? keep(dupf("dev_sc_%ld", i)) : c->device, card, issuer->country,
           guest ? keep(dupf("buyer%ld@example.test", i)) : c->email, from, t,
           t - (5 + pick(90)) * MIN_MS, (int64_t)(lognorm(400, 0.7) * 100), 1};
  emit(&p, from->currency);
}

/* Guests: one purchase with a card typed in at checkout — what a stolen
 * card looks like, but honest. */
static void guest(long i, int days) {
  const city *home = &CITIES[pick(NHOMES)];
  int64_t t = T0 + (int64_t)(uni() * days * DAY_MS);
  pay p = {keep(dupf("cus_g_%ld", i)), "guest", keep(dupf("dev_g_%ld", i)),
           keep(dupf("fp_g_%ld", i)), uni() < 0.9 ? home->country : CITIES[pick(NCITIES)].country,
           keep(dupf("guest%ld@example.com", i)), home, t, t - pick(20) * MIN_MS,
           (int64_t)(lognorm(60, 0.9) * 100), 0};
  emit(&p, home->currency);
}

static int by_time(const void *a, const void *b) {
  const row *x = a, *y = b;
  return x->at < y->at ? -1 : x->at > y->at;
}

int main(int argc, char **argv) {
  long ncust = 3000, seed = 42;
  int days = 30;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (strcmp(argv[i], "--customers") == 0) ncust = atol(argv[i + 1]);
    else if (strcmp(argv[i], "--days") == 0) days = atoi(argv[i + 1]);
    else if (strcmp(argv[i], "--seed") == 0) seed = atol(argv[i + 1]);
    else argc = -1;
  }
  if (argc < 0 || argc % 2 == 0 || ncust < 10 || days < 7) {
    fprintf(stderr, "usage: fraudgen [--customers N>=10] [--days D>=7] [--seed S] > data.jsonl\n");
    return 2;
  }
  rng = (uint64_t)seed;
  customer *cs = calloc((size_t)ncust, sizeof *cs);
  if (!cs) abort();
  for (long i = 0; i < ncust; i++) {
    customer *c = &cs[i];
    snprintf(c->id, sizeof c->id, "cus_%ld", i);
    snprintf(c->device, sizeof c->device, "dev_%ld", i);
    snprintf(c->card, sizeof c->card, "fp_%ld", i);
    snprintf(c->email, sizeof c->email, "customer%ld@example.com", i);
    c->home = &CITIES[pick(NHOMES)];
    c->card_country = uni() < 0.05 ? CITIES[pick(NHOMES)].country : c->home->country;
    c->card_at = T0 - (30 + pick(700)) * DAY_MS;
    bool big = uni() < 0.08; /* big-ticket regulars */
    c->median_usd = big ? lognorm(1200, 0.3) : lognorm(40, 0.6);
    c->per_day = big ? 0.1 + 0.3 * uni() : 0.2 + 1.5 * uni();
    legit(c, days);
    if (big) /* their payments are legitimate but large: label them apart */
      for (size_t r = nrows; r-- > 0;) {
        json_t *cus = json_object_get(json_object_get(rows[r].line, "intent"), "customer_id");
        if (strcmp(json_string_value(cus), c->id) != 0) break;
        if (strcmp(json_string_value(json_object_get(rows[r].line, "pattern")), "legit") == 0)
          json_object_set_new(rows[r].line, "pattern", json_string("big_ticket"));
      }
  }
  for (long i = 0; i < ncust / 5; i++) guest(i, days);
  for (long i = 0; i < ncust / 25; i++) card_testing(i, days);
  for (long i = 0; i < ncust / 30; i++) takeover(&cs[pick(ncust)], i, days);
  for (long i = 0; i < ncust / 15; i++) stolen_card(&cs[pick(ncust)], i, days);
  qsort(rows, nrows, sizeof *rows, by_time);
  for (size_t r = 0; r < nrows; r++) {
    char *s = json_dumps(rows[r].line, JSON_COMPACT);
    puts(s);
    free(s);
    json_decref(rows[r].line);
  }
  for (size_t i = 0; i < nowned; i++) free(owned[i]);
  free(owned);
  free(rows);
  free(cs);
  return 0;
}
