/* scenariogen: a second, independent labelled data set for the fraud
 * stage, written to test whether what the model learned from fraudgen
 * generalises. It shares nothing with fraudgen but the output format
 * ({"label", "pattern", "intent"} JSON lines in time order, intent_json.h):
 * its own cities, currencies, merchants, random stream, habits and
 * amounts, and a structure built from published fraud typologies instead
 * of fraudgen's:
 *   fraud — BIN enumeration (a bot walks card numbers of one BIN at one
 *   merchant, seconds apart, cents each), card testing then cash-out (a
 *   few tiny tests on one card, then a large purchase), a stolen card on a
 *   freshly added payment method of a new account, account takeover with
 *   impossible travel (a normal purchase at home, then a new device on a
 *   distant IP spending far above habit minutes later), velocity abuse on
 *   an existing card (the customer's own card from a device the customer
 *   never used: mid-sized payments every few minutes), triangulation (one
 *   stolen card at several merchants within half an hour);
 *   legitimate look-alikes — guest checkouts (a card typed in minutes
 *   ago on a new account), travellers who pay at the airport and again
 *   after a plausible flight, households sharing one device, a new card
 *   used minutes after it was added, big-ticket regulars, salary-day
 *   bursts, a new phone, shoppers paying at several merchants in an hour.
 * Deterministic for a seed (xorshift128+, not fraudgen's splitmix). */
#include <jansson.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fraud_features.h"
#include "intent_json.h"

#define SEC 1000LL
#define MINUTE (60 * SEC)
#define HOUR (60 * MINUTE)
#define DAY (24 * HOUR)
#define EPOCH 1793491200000LL /* 2026-11-01T00:00:00Z: not fraudgen's period */

typedef struct place {
  const char *country, *currency;
  double lat, lon;
  double usd; /* dollars per major unit of the currency, to scale habits */
} place;

/* Homes of the population (first NHOME) and far-away places fraud comes from. */
static const place PLACES[] = {
    {"CA", "CAD", 43.65, -79.38, 0.73},  {"IE", "EUR", 53.35, -6.26, 1.08},
    {"IT", "EUR", 41.90, 12.50, 1.08},   {"SE", "SEK", 59.33, 18.07, 0.095},
    {"CH", "CHF", 47.37, 8.54, 1.12},    {"US", "USD", 34.05, -118.24, 1.0},
    {"US", "USD", 42.36, -71.06, 1.0},   {"AU", "AUD", -37.81, 144.96, 0.66},
    {"IN", "INR", 19.08, 72.88, 0.012},  {"GB", "GBP", 55.95, -3.19, 1.27},
    {"FR", "EUR", 45.76, 4.84, 1.08},    {"KR", "USD", 37.57, 126.98, 1.0},
    {"MX", "USD", 19.43, -99.13, 1.0},   {"SG", "USD", 1.35, 103.82, 1.0},
    {"VN", "USD", 10.82, 106.63, 1.0},   {"UA", "USD", 50.45, 30.52, 1.0},
    {"PH", "USD", 14.60, 120.98, 1.0},   {"CO", "USD", 4.71, -74.07, 1.0}};
#define NPLACES (sizeof PLACES / sizeof PLACES[0])
#define NHOME 11

static const char *const MERCHANTS[] = {"m_grocer", "m_fashion", "m_electro", "m_travel",
                                        "m_games", "m_pharmacy"};
#define NMERCH 6

static uint64_t s0, s1;
static uint64_t rnd(void) { /* xorshift128+ */
  uint64_t x = s0, y = s1;
  s0 = y;
  x ^= x << 23;
  s1 = x ^ y ^ (x >> 17) ^ (y >> 26);
  return s1 + y;
}
static double unif(void) { return (double)(rnd() >> 11) * (1.0 / 9007199254740992.0); }
static long below(long n) { return (long)(unif() * (double)n); }
static bool chance(double p) { return unif() < p; }
static double gauss(void) {
  double u = unif() + 1e-12, v = unif();
  return sqrt(-2 * log(u)) * sin(2 * M_PI * v);
}
/* Gamma-ish spend: a lognormal around median with spread sd. */
static double spend(double median, double sd) { return median * exp(sd * gauss()); }

typedef struct out {
  int64_t at;
  long order;
  char *line;
} out;
static out *outs;
static size_t nout, capout;
static long nkey;

/* One payment as the generator describes it. */
typedef struct tx {
  const char *merchant, *customer, *device, *card, *card_country, *email, *pattern;
  const place *at_place;
  int ip_a, ip_b; /* the /24 block: 100.<a>.<b>.x */
  int64_t at, card_added;
  double usd;
  int label;
} tx;

static int64_t minor_of(double usd, const place *p) {
  double major = usd / p->usd;
  int exp = strcmp(p->currency, "JPY") == 0 ? 0 : 2;
  int64_t m = (int64_t)llround(major * pow(10, exp));
  return m > 0 ? m : 1;
}

static void put(const tx *t) {
  char key[48], ip[40];
  snprintf(key, sizeof key, "sg-%09ld", nkey++);
  snprintf(ip, sizeof ip, "100.%d.%d.%d", t->ip_a, t->ip_b, 2 + (int)below(250));
  ps_money money = PAYMENTS__V1__MONEY__INIT;
  money.currency = (char *)t->at_place->currency;
  money.amount_minor = minor_of(t->usd, t->at_place);
  Payments__V1__PaymentMethod pm = PAYMENTS__V1__PAYMENT_METHOD__INIT;
  pm.id = "pm_card";
  pm.fingerprint = (char *)t->card;
  pm.created_at_ms = t->card_added;
  pm.card_country = (char *)t->card_country;
  Payments__V1__RequestContext cx = PAYMENTS__V1__REQUEST_CONTEXT__INIT;
  cx.ip = ip;
  cx.country = (char *)t->at_place->country;
  /* within ~15 km of the place */
  cx.latitude = round((t->at_place->lat + gauss() * 0.06) * 1e4) / 1e4;
  cx.longitude = round((t->at_place->lon + gauss() * 0.06) * 1e4) / 1e4;
  cx.device_id = (char *)t->device;
  cx.email = (char *)t->email;
  ps_intent in = PAYMENTS__V1__PAYMENT_INTENT__INIT;
  in.idempotency_key = key;
  in.merchant_id = (char *)t->merchant;
  in.customer_id = (char *)t->customer;
  in.amount = &money;
  in.created_at_ms = t->at;
  in.payment_method = &pm;
  in.context = &cx;
  json_t *o = json_pack("{s:i,s:s,s:o}", "label", t->label, "pattern", t->pattern, "intent",
                        intent_to_json(&in));
  if (nout == capout) {
    capout = capout ? 2 * capout : 8192;
    outs = realloc(outs, capout * sizeof *outs);
    if (!outs) abort();
  }
  outs[nout] = (out){t->at, (long)nout, json_dumps(o, JSON_COMPACT)};
  nout++;
  json_decref(o);
}

/* Interned strings: every id lives to the end of the run. */
static char **strs;
static size_t nstrs;
static const char *fmt(const char *f, long a, long b) {
  char buf[96];
  snprintf(buf, sizeof buf, f, a, b);
  strs = realloc(strs, (nstrs + 1) * sizeof *strs);
  if (!strs) abort();
  return strs[nstrs++] = strdup(buf);
}

typedef struct person {
  const char *id, *device, *card, *card2, *email;
  const place *home;
  int ip_a, ip_b;
  int64_t card_added;
  double median_usd, sd, weekly;
  const char *usual[3]; /* merchants they use */
} person;

static int64_t days_total;

/* A daytime moment of day d (local habits ignored: 07:00-23:00 UTC). */
static int64_t daytime(long d) { return EPOCH + d * DAY + 7 * HOUR + below(16 * HOUR); }

static void person_init(person *p, long i, const place *home) {
  p->id = fmt("sc_cus_%ld_%ld", i, 0);
  p->device = fmt("sc_dev_%ld_%ld", i, below(1000));
  p->card = fmt("sc_card_%ld_%ld", i, below(100000));
  p->card2 = fmt("sc_card_%ld_new%ld", i, below(1000));
  p->email = fmt("person%ld.%ld@mail.test", i, below(100));
  p->home = home;
  p->ip_a = 1 + (int)below(250);
  p->ip_b = 1 + (int)below(250);
  p->card_added = EPOCH - (40 + below(900)) * DAY;
  p->median_usd = spend(35, 0.7);
  p->sd = 0.5 + 0.3 * unif();
  p->weekly = 1 + 9 * unif();
  for (int k = 0; k < 3; k++) p->usual[k] = MERCHANTS[below(NMERCH)];
}

static tx usual_tx(const person *p, int64_t at, const char *pattern) {
  return (tx){p->usual[below(3)], p->id, p->device, p->card, p->home->country, p->email, pattern,
              p->home, p->ip_a, p->ip_b, at, p->card_added, spend(p->median_usd, p->sd), 0};
}

/* Ordinary payments over the period, Poisson per week; returns the count. */
static void routine(const person *p, const char *pattern) {
  for (int64_t t = EPOCH + (int64_t)(unif() * 7 * DAY / p->weekly); t < EPOCH + days_total * DAY;
       t += (int64_t)(-log(unif() + 1e-12) * 7.0 * DAY / p->weekly) + 3 * MINUTE) {
    int64_t h = (t - EPOCH) % DAY;
    if (h < 6 * HOUR && chance(0.7)) continue; /* people sleep */
    tx x = usual_tx(p, t, pattern);
    put(&x);
  }
}

/* --- legitimate look-alikes ------------------------------------------- */

/* A trip: pay at the airport, fly at ≤ 850 km/h plus airport time, pay at
 * the destination (a mobile IP there) for some days, fly home. */
static void trip(const person *p) {
  const place *dst = &PLACES[below(NHOME)];
  if (dst == p->home) dst = &PLACES[(dst - PLACES + 1) % NHOME];
  double km = features_haversine_km(p->home->lat, p->home->lon, dst->lat, dst->lon);
  int64_t flight = (int64_t)(km / 850.0 * HOUR) + 2 * HOUR + below(3 * HOUR);
  long d0 = below(days_total - 4);
  int64_t t = daytime(d0);
  tx x = usual_tx(p, t, "traveller");
  x.merchant = "m_travel";
  x.usd = spend(25, 0.4); /* a coffee at the airport */
  put(&x);
  int64_t arrive = t + flight, leave = arrive + (2 + below(6)) * DAY;
  int ip_b = 1 + (int)below(250);
  for (int64_t u = arrive + below(2 * HOUR); u < leave; u += (3 + below(10)) * HOUR) {
    tx y = usual_tx(p, u, "traveller");
    y.at_place = dst;
    y.ip_a = 180 + (int)(dst - PLACES);
    y.ip_b = ip_b;
    y.usd = spend(p->median_usd * 1.6, 0.6);
    if (u < EPOCH + days_total * DAY) put(&y);
  }
}

/* A household: 2-4 people on one tablet, each with their own account and card. */
static void household(long i) {
  const place *home = &PLACES[below(NHOME)];
  const char *dev = fmt("sc_tablet_%ld_%ld", i, below(100));
  int a = 1 + (int)below(250), b = 1 + (int)below(250);
  long n = 2 + below(3);
  for (long k = 0; k < n; k++) {
    person m;
    person_init(&m, 900000 + i * 10 + k, home);
    m.device = dev;
    m.ip_a = a, m.ip_b = b;
    m.weekly = 1 + 3 * unif();
    routine(&m, "family_shared_device");
  }
}

/* A new card: added, used within minutes, then the usual habits on it. */
static void new_card(person *p) {
  long d = below(days_total);
  int64_t added = daytime(d);
  for (int64_t t = added + (1 + below(30)) * MINUTE; t < EPOCH + days_total * DAY;
       t += (int64_t)(-log(unif() + 1e-12) * 7.0 * DAY / p->weekly) + 5 * MINUTE) {
    tx x = usual_tx(p, t, "new_card");
    x.card = p->card2;
    x.card_added = added;
    put(&x);
  }
}

/* Salary day (the 15th and the 25th): 4-9 payments in two hours, the
 * customer's own card, device and home, at several merchants. */
static void salary_days(const person *p) {
  for (long d = 0; d < days_total; d++) {
    long dom = d % 30;
    if (dom != 14 && dom != 24) continue;
    int64_t t = EPOCH + d * DAY + 17 * HOUR + below(3 * HOUR);
    long n = 4 + below(6);
    for (long k = 0; k < n; k++, t += (4 + below(25)) * MINUTE) {
      tx x = usual_tx(p, t, "salary_day");
      x.merchant = MERCHANTS[below(NMERCH)];
      x.usd = spend(p->median_usd * 2.0, 0.6);
      put(&x);
    }
  }
}

/* A new phone: from some day on, every payment is on the new device. */
static void new_phone(person *p, long i) {
  int64_t from = daytime(below(days_total));
  const char *dev = fmt("sc_phone_%ld_%ld", i, below(1000));
  for (int64_t t = from; t < EPOCH + days_total * DAY;
       t += (int64_t)(-log(unif() + 1e-12) * 7.0 * DAY / p->weekly) + 5 * MINUTE) {
    tx x = usual_tx(p, t, "new_phone");
    x.device = dev;
    put(&x);
  }
}

/* Guest checkouts: a one-off buyer types a card in at checkout (a method
 * minutes old, no account history) — what a stolen card looks like. Mostly
 * the card's own country; some cross-border buyers. */
static void guest_checkout(long i) {
  const place *home = &PLACES[below(NHOME)];
  int64_t t = daytime(below(days_total));
  const char *issuer = chance(0.9) ? home->country : PLACES[below(NHOME)].country;
  tx x = {MERCHANTS[below(NMERCH)], fmt("sc_guest_%ld_%ld", i, 0), fmt("sc_gdev_%ld_%ld", i, 0),
          fmt("sc_gcard_%ld_%ld", i, below(1000)), issuer, fmt("guest%ld.%ld@mail.test", i, 0),
          "guest_checkout", home, 1 + (int)below(250), 1 + (int)below(250), t,
          t - (1 + below(15)) * MINUTE, spend(70, 0.9), 0};
  put(&x);
}

/* A shopping spree: three to five merchants within an hour, at home. */
static void spree(const person *p) {
  int64_t t = daytime(below(days_total));
  long n = 3 + below(3);
  for (long k = 0; k < n; k++, t += (5 + below(15)) * MINUTE) {
    tx x = usual_tx(p, t, "multi_merchant_shopper");
    x.merchant = MERCHANTS[(k + below(2)) % NMERCH];
    x.usd = spend(p->median_usd * 1.5, 0.5);
    put(&x);
  }
}

/* --- fraud -------------------------------------------------------------- */

static const place *far_from(const place *home) {
  for (;;) {
    const place *p = &PLACES[below(NPLACES)];
    if (features_haversine_km(home->lat, home->lon, p->lat, p->lon) > 2500) return p;
  }
}

/* BIN enumeration: a bot walks card numbers of one BIN at one merchant,
 * seconds apart, a dollar or less, each card "added" just before. */
static void bin_enumeration(long i) {
  const place *from = &PLACES[below(NPLACES)];
  const char *m = MERCHANTS[below(NMERCH)], *dev = fmt("sc_bot_%ld_%ld", i, below(100));
  bool one_account = chance(0.4);
  long bin = 400000 + below(99999), n = 8 + below(30);
  int a = 1 + (int)below(250), b = 1 + (int)below(250);
  const char *acct = fmt("sc_guest_bin_%ld_%ld", i, 0);
  int64_t t = daytime(below(days_total)) - 5 * HOUR; /* often at night */
  for (long k = 0; k < n; k++, t += (3 + below(40)) * SEC) {
    tx x = {m, one_account ? acct : fmt("sc_guest_bin_%ld_%ld", i, k + 1), dev,
            fmt("sc_bin_%ld_%ld", bin, k), PLACES[below(NPLACES)].country,
            fmt("bot%ld+%ld@tempmail.test", i, k), "bin_enumeration", from, a, b, t,
            t - below(20) * SEC, 0.3 + 2.5 * unif(), 1};
    put(&x);
  }
}

/* Card testing then cash-out: 2-4 tiny charges on one stolen card, then a
 * purchase worth reselling on the same card and device. */
static void test_then_cashout(long i) {
  const place *from = &PLACES[below(NPLACES)];
  const char *m = MERCHANTS[below(NMERCH)];
  const char *card = fmt("sc_stolen_tc_%ld_%ld", i, below(1000));
  const char *dev = fmt("sc_dev_tc_%ld_%ld", i, 0), *cus = fmt("sc_cus_tc_%ld_%ld", i, 0);
  const char *issuer = PLACES[below(NPLACES)].country;
  int a = 1 + (int)below(250), b = 1 + (int)below(250);
  int64_t t = daytime(below(days_total)), added = t - below(60) * MINUTE;
  long n = 2 + below(3);
  for (long k = 0; k <= n; k++, t += (1 + below(15)) * MINUTE) {
    bool cash = k == n;
    tx x = {m, cus, dev, card, issuer, fmt("tc%ld@mail.test", i, 0),
            cash ? "card_test_cashout" : "card_test_cashout", from, a, b, t, added,
            cash ? spend(600, 0.5) : 0.5 + 4 * unif(), 1};
    put(&x);
  }
}

/* A stolen card on a fresh payment method of a new account. */
static void stolen_fresh_pm(long i) {
  const place *from = &PLACES[below(NPLACES)];
  const place *issuer = chance(0.6) ? &PLACES[below(NHOME)] : from;
  int64_t t = daytime(below(days_total));
  long n = 1 + below(2);
  const char *cus = fmt("sc_new_%ld_%ld", i, 0), *dev = fmt("sc_dev_sf_%ld_%ld", i, 0);
  const char *card = fmt("sc_stolen_%ld_%ld", i, below(1000));
  int a = 1 + (int)below(250), b = 1 + (int)below(250);
  int64_t added = t - (1 + below(40)) * MINUTE;
  for (long k = 0; k < n; k++, t += (5 + below(40)) * MINUTE) {
    tx x = {MERCHANTS[below(NMERCH)], cus, dev, card, issuer->country,
            fmt("new%ld@mail.test", i, 0), "stolen_card_fresh_pm", from, a, b, t, added,
            spend(250, 0.8), 1};
    put(&x);
  }
}

/* Account takeover: the owner pays at home; 10-90 minutes later a new
 * device on an IP in a distant country spends 4-20x the owner's habit. */
static void takeover(const person *p, long i) {
  int64_t t = daytime(below(days_total));
  tx own = usual_tx(p, t, "legit");
  own.merchant = p->usual[0]; /* the account taken over is the one at this merchant */
  put(&own);
  const place *from = far_from(p->home);
  const char *dev = fmt("sc_ato_dev_%ld_%ld", i, 0);
  int a = 1 + (int)below(250), b = 1 + (int)below(250);
  t += (10 + below(80)) * MINUTE;
  long n = 1 + below(3);
  for (long k = 0; k < n; k++, t += (3 + below(30)) * MINUTE) {
    tx x = usual_tx(p, t, "ato_impossible_travel");
    x.device = dev, x.at_place = from, x.ip_a = a, x.ip_b = b, x.label = 1;
    x.merchant = p->usual[0];
    double mult = 4 + 16 * unif();
    x.usd = p->median_usd * mult < 150 ? 150 + 300 * unif() : p->median_usd * mult;
    if (x.usd > 8000) x.usd = 8000;
    put(&x);
  }
}

/* Velocity abuse: the customer's own card, from a device the customer
 * never used, in the customer's country: mid-sized payments every few
 * minutes (the card details were skimmed; the account is not needed). */
static void velocity_abuse(const person *p, long i) {
  int64_t t = daytime(below(days_total));
  const char *dev = fmt("sc_va_dev_%ld_%ld", i, 0);
  bool same_account = chance(0.5);
  const char *cus = same_account ? p->id : fmt("sc_va_cus_%ld_%ld", i, 0);
  int a = 1 + (int)below(250), b = 1 + (int)below(250);
  long n = 4 + below(10);
  /* the account's merchant, or anywhere the card details are accepted */
  const char *m = same_account ? p->usual[0] : MERCHANTS[below(NMERCH)];
  int64_t added = t - (1 + below(10)) * MINUTE;
  for (long k = 0; k < n; k++, t += (2 + below(7)) * MINUTE) {
    tx x = usual_tx(p, t, "velocity_abuse");
    x.customer = cus, x.device = dev, x.ip_a = a, x.ip_b = b, x.label = 1, x.merchant = m;
    if (!same_account) x.card_added = added; /* the card entered on the new account */
    x.usd = 60 + 240 * unif();
    put(&x);
  }
}

/* Triangulation: one stolen card at 3-6 merchants within half an hour,
 * each as a new guest account (the goods ship to the fraudster's buyers). */
static void triangulation(long i) {
  const place *from = &PLACES[below(NPLACES)];
  const char *card = fmt("sc_tri_card_%ld_%ld", i, below(1000));
  const char *issuer = PLACES[below(NHOME)].country;
  const char *dev = fmt("sc_tri_dev_%ld_%ld", i, 0);
  int a = 1 + (int)below(250), b = 1 + (int)below(250);
  int64_t t = daytime(below(days_total));
  long n = 3 + below(4);
  for (long k = 0; k < n; k++, t += (2 + below(8)) * MINUTE) {
    /* typed in at each guest checkout: the method is as new as the account */
    tx x = {MERCHANTS[(k + i) % NMERCH], fmt("sc_tri_guest_%ld_%ld", i, k), dev, card, issuer,
            fmt("buyer%ld.%ld@mail.test", i, k), "triangulation", from, a, b, t,
            t - (1 + below(5)) * MINUTE,
            spend(180, 0.5), 1};
    put(&x);
  }
}

static int by_at(const void *a, const void *b) {
  const out *x = a, *y = b;
  if (x->at != y->at) return x->at < y->at ? -1 : 1;
  return x->order < y->order ? -1 : x->order > y->order;
}

int main(int argc, char **argv) {
  long people = 2000, seed = 1;
  days_total = 28;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (strcmp(argv[i], "--people") == 0) people = atol(argv[i + 1]);
    else if (strcmp(argv[i], "--days") == 0) days_total = atol(argv[i + 1]);
    else if (strcmp(argv[i], "--seed") == 0) seed = atol(argv[i + 1]);
    else argc = -1;
  }
  if (argc < 0 || argc % 2 == 0 || people < 20 || days_total < 7) {
    fprintf(stderr, "usage: scenariogen [--people N>=20] [--days D>=7] [--seed S] > data.jsonl\n");
    return 2;
  }
  s0 = 0x2545f4914f6cdd1dULL ^ (uint64_t)seed * 0x9e3779b97f4a7c15ULL;
  s1 = 0x5851f42d4c957f2dULL + (uint64_t)seed;
  for (int k = 0; k < 20; k++) rnd();
  person *ps = calloc((size_t)people, sizeof *ps);
  if (!ps) abort();
  for (long i = 0; i < people; i++) {
    person *p = &ps[i];
    person_init(p, i, &PLACES[below(NHOME)]);
    double r = unif();
    if (r < 0.06) { /* big-ticket regulars */
      p->median_usd = spend(900, 0.4);
      p->weekly = 0.5 + unif();
      routine(p, "big_ticket_regular");
      continue;
    }
    routine(p, "legit");
    if (r < 0.16) trip(p);
    else if (r < 0.22) new_card(p);
    else if (r < 0.30) salary_days(p);
    else if (r < 0.35) new_phone(p, i);
    else if (r < 0.40) spree(p);
  }
  for (long i = 0; i < people / 40; i++) household(i);
  for (long i = 0; i < people / 2; i++) guest_checkout(i);
  for (long i = 0; i < people / 120; i++) bin_enumeration(i);
  for (long i = 0; i < people / 100; i++) test_then_cashout(i);
  for (long i = 0; i < people / 50; i++) stolen_fresh_pm(i);
  for (long i = 0; i < people / 50; i++) takeover(&ps[below(people)], i);
  for (long i = 0; i < people / 60; i++) velocity_abuse(&ps[below(people)], i);
  for (long i = 0; i < people / 100; i++) triangulation(i);
  qsort(outs, nout, sizeof *outs, by_at);
  for (size_t k = 0; k < nout; k++) {
    puts(outs[k].line);
    free(outs[k].line);
  }
  for (size_t k = 0; k < nstrs; k++) free(strs[k]);
  free(strs);
  free(outs);
  free(ps);
  return 0;
}
