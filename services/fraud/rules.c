/* rules: fraud rules and score combination. */
#include "rules.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>

static const char *const RULE_NAMES[RULES_N] = {
    "velocity_customer_1h", "velocity_customer_24h", "velocity_card_1h", "velocity_card_24h",
    "distinct_cards_24h",   "amount_limit",          "amount_high",      "country_new",
    "country_mismatch",     "impossible_travel",     "new_payment_method", "blocklist_card",
    "blocklist_ip",         "blocklist_email",       "blocklist_device",
    "velocity_device_10m",  "device_cards_24h",      "card_accounts_24h",
    "card_spread_fresh_method", "new_account_burst",  "recent_device_burst",
    "recent_device_amount", "takeover_travel",       "recent_device_countries",
    "fresh_method_mismatch", "new_account_card_elsewhere", "dormant_burst"};

static const char *const BL_NAMES[BLOCKLIST_KINDS] = {"card", "ip", "email", "device"};
static const char *const BL_KEYS[BLOCKLIST_KINDS] = {"blocklist:card", "blocklist:ip",
                                                     "blocklist:email", "blocklist:device"};

const char *rule_name(rule_id r) { return RULE_NAMES[r]; }

uint64_t rules_cfg_hash(const rules_cfg *c) {
  uint64_t h = 0xcbf29ce484222325ULL;
  const unsigned char *p = (const unsigned char *)c;
  for (size_t i = 0; i < sizeof *c; i++) h = (h ^ p[i]) * 0x100000001b3ULL;
  return h;
}

/* The index of name in names[0..n), or -1. */
static int index_of(const char *const *names, int n, const char *name) {
  for (int i = 0; i < n; i++)
    if (strcmp(name, names[i]) == 0) return i;
  return -1;
}

int rule_parse(const char *name, rule_id *out) {
  int i = index_of(RULE_NAMES, RULES_N, name);
  if (i >= 0) *out = (rule_id)i;
  return i >= 0 ? 0 : -1;
}

const char *blocklist_name(blocklist_kind k) { return BL_NAMES[k]; }
const char *blocklist_key(blocklist_kind k) { return BL_KEYS[k]; }

int blocklist_parse(const char *name, blocklist_kind *out) {
  int i = index_of(BL_NAMES, BLOCKLIST_KINDS, name);
  if (i >= 0) *out = (blocklist_kind)i;
  return i >= 0 ? 0 : -1;
}

void blocklist_normalize(blocklist_kind k, const char *value, char *out, size_t outlen) {
  snprintf(out, outlen, "%s", value ? value : "");
  if (k == BLOCKLIST_EMAIL)
    for (char *c = out; *c; c++) *c = (char)tolower((unsigned char)*c);
}

int64_t amount_limit_for(const amount_limits *l, const char *currency) {
  for (size_t i = 0; i < l->n; i++)
    if (strcmp(l->by[i].currency, currency) == 0) return l->by[i].minor;
  return l->default_minor;
}

/* A limit of usd minor units, with the currencies whose unit is far from
 * a dollar's converted (roughly: a limit, not money). */
static void set_amounts(amount_limits *l, int64_t usd) {
  static const struct { const char *code; int64_t per_100_usd; } far[] = {
      {"JPY", 150}, {"INR", 8300}, {"SEK", 1050}, {"KRW", 1350}};
  l->n = 0;
  l->default_minor = usd;
  for (size_t i = 0; i < sizeof far / sizeof far[0]; i++) {
    snprintf(l->by[l->n].currency, 4, "%s", far[i].code);
    l->by[l->n++].minor = usd / 100 * far[i].per_100_usd;
  }
}

void rules_cfg_default(rules_cfg *c) {
  memset(c, 0, sizeof *c);
  rule_cfg *x = c->rule;
  x[RULE_VELOCITY_CUSTOMER_1H] = (rule_cfg){.enabled = true, .score = 1.0, .block = true, .max = 10};
  x[RULE_VELOCITY_CUSTOMER_24H] = (rule_cfg){.enabled = true, .score = 0.5, .max = 30};
  x[RULE_VELOCITY_CARD_1H] = (rule_cfg){.enabled = true, .score = 0.8, .max = 5};
  x[RULE_VELOCITY_CARD_24H] = (rule_cfg){.enabled = true, .score = 0.5, .max = 20};
  x[RULE_DISTINCT_CARDS_24H] = (rule_cfg){.enabled = true, .score = 0.7, .max = 3};
  x[RULE_AMOUNT_LIMIT] = (rule_cfg){.enabled = true, .score = 1.0, .block = true};
  set_amounts(&x[RULE_AMOUNT_LIMIT].amounts, 1000000);
  x[RULE_AMOUNT_HIGH] = (rule_cfg){.enabled = true, .score = 0.4};
  set_amounts(&x[RULE_AMOUNT_HIGH].amounts, 200000);
  x[RULE_COUNTRY_NEW] = (rule_cfg){.enabled = true, .score = 0.4};
  x[RULE_COUNTRY_MISMATCH] = (rule_cfg){.enabled = true, .score = 0.3};
  x[RULE_IMPOSSIBLE_TRAVEL] =
      (rule_cfg){.enabled = true, .score = 0.7, .max_kmh = 900, .min_km = 300};
  x[RULE_NEW_PAYMENT_METHOD] = (rule_cfg){.enabled = true, .score = 0.3, .max_age_hours = 24};
  for (int r = RULE_BLOCKLIST_CARD; r <= RULE_BLOCKLIST_DEVICE; r++)
    x[r] = (rule_cfg){.enabled = true, .score = 1.0, .block = true};
  x[RULE_VELOCITY_DEVICE_10M] = (rule_cfg){.enabled = true, .score = 0.6, .review = true, .max = 5};
  x[RULE_DEVICE_CARDS_24H] = (rule_cfg){.enabled = true, .score = 0.7, .review = true, .max = 3};
  x[RULE_CARD_ACCOUNTS_24H] = (rule_cfg){.enabled = true, .score = 0.6, .review = true, .max = 1};
  x[RULE_CARD_SPREAD_FRESH_METHOD] =
      (rule_cfg){.enabled = true, .score = 0.6, .review = true, .max = 2};
  x[RULE_NEW_ACCOUNT_BURST] = (rule_cfg){.enabled = true, .score = 0.6, .review = true, .max = 1};
  x[RULE_RECENT_DEVICE_BURST] = (rule_cfg){.enabled = true, .score = 0.6, .review = true, .max = 1};
  x[RULE_RECENT_DEVICE_AMOUNT] =
      (rule_cfg){.enabled = true, .score = 0.6, .review = true, .max_ratio = 3};
  x[RULE_TAKEOVER_TRAVEL] =
      (rule_cfg){.enabled = true, .score = 0.9, .review = true, .max_kmh = 900, .min_km = 300};
  x[RULE_RECENT_DEVICE_COUNTRIES] =
      (rule_cfg){.enabled = true, .score = 0.7, .review = true, .max = 1};
  x[RULE_FRESH_METHOD_MISMATCH] =
      (rule_cfg){.enabled = true, .score = 0.6, .review = true, .max_age_hours = 24};
  x[RULE_NEW_ACCOUNT_CARD_ELSEWHERE] =
      (rule_cfg){.enabled = true, .score = 0.6, .review = true, .max = 1};
  x[RULE_DORMANT_BURST] = (rule_cfg){.enabled = true, .score = 0.6, .review = true, .max = 3};
  c->weight_rules = 0.4;
  c->weight_ml = 0.6;
  c->block_above = 0.8;
  c->review_above = 0.5;
  c->on_redis_unavailable = REDIS_FAIL_OPEN;
}

static void reason(rules_result *r, const char *code) {
  if (r->nreasons < RULES_MAX_REASONS) r->reasons[r->nreasons++] = code;
}

#define DORMANT_BURST_MIN_HOURS (10.0 / 60)

/* Whether rule id fires on s (an enabled rule only). */
static bool fires(const rules_cfg *c, rule_id id, const fraud_signals *s) {
  const rule_cfg *x = &c->rule[id];
  bool h = !s->history_unavailable;
  bool fresh = s->pm_age_hours >= 0 && s->pm_age_hours < 24; /* method added today */
  switch (id) {
  case RULE_VELOCITY_CUSTOMER_1H: return h && s->customer_count_1h > x->max;
  case RULE_VELOCITY_CUSTOMER_24H: return h && s->customer_count_24h > x->max;
  case RULE_VELOCITY_CARD_1H: return h && s->card_count_1h > x->max;
  case RULE_VELOCITY_CARD_24H: return h && s->card_count_24h > x->max;
  case RULE_DISTINCT_CARDS_24H: return h && s->distinct_cards_24h > x->max;
  case RULE_AMOUNT_LIMIT:
  case RULE_AMOUNT_HIGH: return s->amount_minor > amount_limit_for(&x->amounts, s->currency);
  case RULE_COUNTRY_NEW: return h && s->country_new;
  case RULE_COUNTRY_MISMATCH: return s->country_mismatch;
  case RULE_IMPOSSIBLE_TRAVEL:
    return h && s->travel_km >= x->min_km && s->travel_kmh > x->max_kmh;
  case RULE_NEW_PAYMENT_METHOD: return s->pm_age_hours >= 0 && s->pm_age_hours < x->max_age_hours;
  case RULE_BLOCKLIST_CARD: return s->blocklisted[BLOCKLIST_CARD];
  case RULE_BLOCKLIST_IP: return s->blocklisted[BLOCKLIST_IP];
  case RULE_BLOCKLIST_EMAIL: return s->blocklisted[BLOCKLIST_EMAIL];
  case RULE_BLOCKLIST_DEVICE: return s->blocklisted[BLOCKLIST_DEVICE];
  /* Card testing from one device: the cards are new (a shop's terminal or a
   * call centre enters established customers' cards all day). */
  case RULE_VELOCITY_DEVICE_10M: return h && fresh && s->device_count_10m > x->max;
  case RULE_DEVICE_CARDS_24H: return h && fresh && s->device_cards_24h > x->max;
  case RULE_CARD_ACCOUNTS_24H: return h && s->card_customers_24h > x->max;
  case RULE_CARD_SPREAD_FRESH_METHOD:
    return h && s->card_merchants_24h > x->max && s->pm_age_hours >= 0 && s->pm_age_hours < 24;
  /* A method on file for long means an account as old: only one added
   * today makes the account new. */
  case RULE_NEW_ACCOUNT_BURST: return h && fresh && s->history_hours < 1.0 && s->card_count_1h > x->max;
  case RULE_RECENT_DEVICE_BURST: return h && s->device_recent && s->customer_count_1h > x->max;
  case RULE_RECENT_DEVICE_AMOUNT: return h && s->device_recent && s->amount_ratio > x->max_ratio;
  case RULE_TAKEOVER_TRAVEL:
    return h && s->device_recent && s->travel_km >= x->min_km && s->travel_kmh > x->max_kmh;
  case RULE_RECENT_DEVICE_COUNTRIES: return h && s->device_recent && s->distinct_countries_24h > x->max;
  case RULE_FRESH_METHOD_MISMATCH:
    return s->country_mismatch && s->pm_age_hours >= 0 && s->pm_age_hours < x->max_age_hours;
  /* A card typed in today on an account with no payment here in the
   * history window, which other merchants saw today: one card carried from
   * shop to shop (triangulation, a stolen card being cashed out). */
  case RULE_NEW_ACCOUNT_CARD_ELSEWHERE:
    return h && fresh && s->history_count == 0 && s->card_merchants_24h > x->max;
  /* No payment of the customer here before the hour, then more than max in
   * it, the first at least DORMANT_BURST_MIN_HOURS ago: repeated purchases
   * kept up for many minutes on an account that was silent for the whole
   * window (velocity abuse with the card on file). One checkout's retries
   * or a split basket fall within minutes and do not fire. */
  case RULE_DORMANT_BURST:
    return h && s->history_hours < 1.0 && s->history_hours >= DORMANT_BURST_MIN_HOURS &&
           s->customer_count_1h > x->max;
  default: return false;
  }
}

void rules_evaluate(const rules_cfg *c, const fraud_signals *s, rules_result *r) {
  memset(r, 0, sizeof *r);
  double keep = 1.0; /* probability that none of the fired rules is right */
  for (int id = 0; id < RULES_N; id++) {
    if (!c->rule[id].enabled || !fires(c, (rule_id)id, s)) continue;
    /* A payment over the hard limit is not also "high". */
    if (id == RULE_AMOUNT_HIGH && c->rule[RULE_AMOUNT_LIMIT].enabled &&
        fires(c, RULE_AMOUNT_LIMIT, s))
      continue;
    reason(r, RULE_NAMES[id]);
    keep *= 1.0 - c->rule[id].score;
    if (c->rule[id].block) r->block = true;
    if (c->rule[id].review) r->force_review = true;
  }
  r->rule_score = 1.0 - keep;
  if (s->history_unavailable) reason(r, "velocity_unavailable");
  if (s->blocklist_unavailable) reason(r, "blocklist_unavailable");
  if ((s->history_unavailable || s->blocklist_unavailable) &&
      c->on_redis_unavailable == REDIS_FAIL_REVIEW) {
    r->force_review = true;
    reason(r, "redis_unavailable_review");
  }
}

Payments__V1__FraudDecision rules_decide(const rules_cfg *c, const rules_result *r,
                                         double ml_score, double *combined) {
  *combined = c->weight_rules * r->rule_score + c->weight_ml * ml_score;
  if (r->block || *combined > c->block_above) return PAYMENTS__V1__FRAUD_DECISION__FRAUD_DECISION_BLOCK;
  if (r->force_review || *combined > c->review_above)
    return PAYMENTS__V1__FRAUD_DECISION__FRAUD_DECISION_REVIEW;
  return PAYMENTS__V1__FRAUD_DECISION__FRAUD_DECISION_ALLOW;
}

const char *rules_decision_name(Payments__V1__FraudDecision d) {
  switch (d) {
  case PAYMENTS__V1__FRAUD_DECISION__FRAUD_DECISION_BLOCK: return "block";
  case PAYMENTS__V1__FRAUD_DECISION__FRAUD_DECISION_REVIEW: return "review";
  default: return "allow";
  }
}
