/* Unit tests for the fraud rules and score combination: every rule fires
 * on its signal and not below its threshold, blocking rules block, the
 * score combination and thresholds, and Redis-down policies. */
#include <criterion/criterion.h>
#include <string.h>

#include "rules.h"

static rules_cfg c;
static void setup(void) { rules_cfg_default(&c); }
TestSuite(rules, .init = setup);

static bool has_reason(const rules_result *r, const char *reason) {
  for (size_t i = 0; i < r->nreasons; i++)
    if (strcmp(r->reasons[i], reason) == 0) return true;
  return false;
}

/* An ordinary payment: one a customer with history makes at home. */
static fraud_signals ordinary(void) {
  fraud_signals s = {.amount_minor = 5000, .currency = "USD", .customer_count_1h = 1,
                     .customer_count_24h = 1, .card_count_1h = 1, .card_count_24h = 1,
                     .distinct_cards_24h = 1, .history_count = 5, .pm_age_hours = 2000,
                     .history_hours = 100, .device_count_10m = 1, .device_cards_24h = 1,
                     .card_customers_24h = 1, .card_merchants_24h = 1,
                     .distinct_countries_24h = 1, .amount_ratio = 1};
  return s;
}

static rules_result eval(const fraud_signals *s) {
  rules_result r;
  rules_evaluate(&c, s, &r);
  return r;
}

Test(rules, ordinary_payment_is_allowed_without_reasons) {
  fraud_signals s = ordinary();
  rules_result r = eval(&s);
  double comb;
  cr_assert_eq(rules_decide(&c, &r, 0.0, &comb), PAYMENTS__V1__FRAUD_DECISION__FRAUD_DECISION_ALLOW);
  cr_assert_eq(r.nreasons, 0);
  cr_assert_float_eq(comb, 0.0, 1e-12);
}

Test(rules, amount_over_the_currency_limit_blocks_outright) {
  fraud_signals s = ordinary();
  s.amount_minor = 1000001;
  rules_result r = eval(&s);
  cr_assert(r.block);
  cr_assert(has_reason(&r, "amount_limit"));
  cr_assert_not(has_reason(&r, "amount_high"), "over the limit is not also 'high'");
  s.amount_minor = 1000000; /* the limit itself */
  r = eval(&s);
  cr_assert_not(r.block);
  cr_assert(has_reason(&r, "amount_high"));
}

Test(rules, amount_limits_are_per_currency) {
  fraud_signals s = ordinary();
  strcpy(s.currency, "JPY");
  s.amount_minor = 1200000; /* over the default, under JPY's 1,500,000 */
  rules_result r = eval(&s);
  cr_assert_not(r.block);
  s.amount_minor = 1500001;
  r = eval(&s);
  cr_assert(r.block);
}

Test(rules, customer_velocity_1h_blocks_above_max) {
  fraud_signals s = ordinary();
  s.customer_count_1h = 11;
  rules_result r = eval(&s);
  cr_assert(r.block);
  cr_assert(has_reason(&r, "velocity_customer_1h"));
  s.customer_count_1h = 10;
  r = eval(&s);
  cr_assert_not(r.block);
  cr_assert_eq(r.nreasons, 0);
}

Test(rules, each_scoring_rule_fires_on_its_signal_only) {
  fraud_signals s;
  rules_result r;
#define FIRES(field_stmt, id)                                                     \
  s = ordinary();                                                                 \
  field_stmt;                                                                     \
  r = eval(&s);                                                                   \
  cr_assert(has_reason(&r, rule_name(id)), "%s", rule_name(id));                  \
  cr_assert_eq(r.nreasons, 1, "%s alone", rule_name(id));                         \
  cr_assert_not(r.block, "%s does not block by default", rule_name(id));          \
  cr_assert_float_eq(r.rule_score, c.rule[id].score, 1e-12, "%s", rule_name(id));
  FIRES(s.customer_count_24h = 31, RULE_VELOCITY_CUSTOMER_24H);
  FIRES(s.card_count_1h = 6, RULE_VELOCITY_CARD_1H);
  FIRES(s.card_count_24h = 21, RULE_VELOCITY_CARD_24H);
  FIRES(s.distinct_cards_24h = 4, RULE_DISTINCT_CARDS_24H);
  FIRES(s.amount_minor = 200001, RULE_AMOUNT_HIGH);
  FIRES(s.country_new = true, RULE_COUNTRY_NEW);
  FIRES(s.country_mismatch = true, RULE_COUNTRY_MISMATCH);
  FIRES((s.travel_km = 5800, s.travel_kmh = 2900), RULE_IMPOSSIBLE_TRAVEL);
  FIRES(s.pm_age_hours = 2, RULE_NEW_PAYMENT_METHOD);
#undef FIRES
}

/* The behaviour rules: each fires on its behaviour alone (not on its
 * parts), and holds the payment for review whatever the score says. */
Test(rules, each_behaviour_rule_fires_on_its_behaviour_and_holds_for_review) {
  fraud_signals s;
  rules_result r;
  double combined;
#define HOLDS(field_stmt, id)                                                              \
  s = ordinary();                                                                          \
  field_stmt;                                                                              \
  r = eval(&s);                                                                            \
  cr_assert(has_reason(&r, rule_name(id)), "%s", rule_name(id));                           \
  cr_assert(r.force_review, "%s holds for review", rule_name(id));                         \
  cr_assert_eq(rules_decide(&c, &r, 0.0, &combined),                                       \
               PAYMENTS__V1__FRAUD_DECISION__FRAUD_DECISION_REVIEW, "%s", rule_name(id));
  HOLDS((s.device_count_10m = 6, s.pm_age_hours = 0.1), RULE_VELOCITY_DEVICE_10M);
  HOLDS((s.device_cards_24h = 4, s.pm_age_hours = 0.1), RULE_DEVICE_CARDS_24H);
  HOLDS(s.card_customers_24h = 2, RULE_CARD_ACCOUNTS_24H);
  HOLDS((s.card_merchants_24h = 3, s.pm_age_hours = 0.1), RULE_CARD_SPREAD_FRESH_METHOD);
  HOLDS((s.history_hours = 0.5, s.pm_age_hours = 0.2, s.card_count_1h = 2), RULE_NEW_ACCOUNT_BURST);
  HOLDS((s.device_recent = true, s.customer_count_1h = 2), RULE_RECENT_DEVICE_BURST);
  HOLDS((s.device_recent = true, s.amount_ratio = 3.5), RULE_RECENT_DEVICE_AMOUNT);
  HOLDS((s.device_recent = true, s.travel_km = 5800, s.travel_kmh = 2900), RULE_TAKEOVER_TRAVEL);
  HOLDS((s.device_recent = true, s.distinct_countries_24h = 2), RULE_RECENT_DEVICE_COUNTRIES);
  HOLDS((s.country_mismatch = true, s.pm_age_hours = 2), RULE_FRESH_METHOD_MISMATCH);
  HOLDS((s.history_count = 0, s.pm_age_hours = 0.1, s.card_merchants_24h = 2),
        RULE_NEW_ACCOUNT_CARD_ELSEWHERE);
  HOLDS((s.history_count = 4, s.history_hours = 0.5, s.customer_count_1h = 5), RULE_DORMANT_BURST);
#undef HOLDS
#define QUIET(field_stmt, id)                                                              \
  s = ordinary();                                                                          \
  field_stmt;                                                                              \
  r = eval(&s);                                                                            \
  cr_assert_not(has_reason(&r, rule_name(id)), "%s", rule_name(id));
  QUIET(s.card_merchants_24h = 3, RULE_CARD_SPREAD_FRESH_METHOD); /* a saved card, a shopper */
  QUIET((s.pm_age_hours = 0.2, s.card_count_1h = 3), RULE_NEW_ACCOUNT_BURST); /* with history */
  QUIET((s.history_hours = 0.5, s.card_count_1h = 5), RULE_NEW_ACCOUNT_BURST); /* a card on file */
  QUIET(s.device_count_10m = 60, RULE_VELOCITY_DEVICE_10M); /* a shop's terminal */
  QUIET(s.device_cards_24h = 60, RULE_DEVICE_CARDS_24H);
  QUIET(s.customer_count_1h = 3, RULE_RECENT_DEVICE_BURST);       /* their own device */
  QUIET(s.amount_ratio = 5, RULE_RECENT_DEVICE_AMOUNT);
  QUIET((s.travel_km = 5800, s.travel_kmh = 2900), RULE_TAKEOVER_TRAVEL);
  QUIET(s.distinct_countries_24h = 2, RULE_RECENT_DEVICE_COUNTRIES); /* a traveller */
  QUIET((s.country_mismatch = true, s.pm_age_hours = 30), RULE_FRESH_METHOD_MISMATCH);
  /* a returning customer's new card, already used elsewhere today */
  QUIET((s.pm_age_hours = 0.1, s.card_merchants_24h = 2), RULE_NEW_ACCOUNT_CARD_ELSEWHERE);
  /* a card on file seen at another merchant: a shopper's day */
  QUIET((s.history_count = 0, s.card_merchants_24h = 3), RULE_NEW_ACCOUNT_CARD_ELSEWHERE);
  /* a customer with payments here before the hour */
  QUIET((s.history_count = 9, s.customer_count_1h = 5), RULE_DORMANT_BURST);
  /* one checkout's retries or a split basket: within minutes */
  QUIET((s.history_count = 4, s.history_hours = 0.05, s.customer_count_1h = 5), RULE_DORMANT_BURST);
  /* three in the hour is not more than max (3) */
  QUIET((s.history_count = 2, s.history_hours = 0.5, s.customer_count_1h = 3), RULE_DORMANT_BURST);
#undef QUIET
}

Test(rules, thresholds_are_exclusive) {
  fraud_signals s[5];
  for (int i = 0; i < 5; i++) s[i] = ordinary();
  s[0].customer_count_24h = 30;
  s[1].card_count_1h = 5;
  s[2].distinct_cards_24h = 3;
  s[3].pm_age_hours = 24;
  s[4].pm_age_hours = -1; /* unknown age */
  for (int i = 0; i < 5; i++) {
    rules_result r = eval(&s[i]);
    cr_assert_eq(r.nreasons, 0, "case %d", i);
  }
}

Test(rules, impossible_travel_needs_speed_and_distance) {
  fraud_signals s = ordinary();
  s.travel_km = 100, s.travel_kmh = 6000; /* fast but short: GPS noise, a neighbour town */
  rules_result r = eval(&s);
  cr_assert_not(has_reason(&r, "impossible_travel"));
  s.travel_km = 5800, s.travel_kmh = 700; /* a flight */
  r = eval(&s);
  cr_assert_not(has_reason(&r, "impossible_travel"));
}

Test(rules, fired_scores_combine_as_independent_evidence) {
  fraud_signals s = ordinary();
  s.country_new = true;      /* 0.4 */
  s.country_mismatch = true; /* 0.3 */
  rules_result r = eval(&s);
  cr_assert_float_eq(r.rule_score, 1 - 0.6 * 0.7, 1e-12);
}

Test(rules, a_disabled_rule_never_fires) {
  c.rule[RULE_AMOUNT_LIMIT].enabled = false;
  fraud_signals s = ordinary();
  s.amount_minor = 5000000;
  rules_result r = eval(&s);
  cr_assert_not(r.block);
  cr_assert(has_reason(&r, "amount_high"), "high still fires when the limit is off");
}

Test(rules, combined_score_thresholds) {
  rules_result r = {.rule_score = 0.5};
  double comb;
  /* 0.4*0.5 + 0.6*0.9 = 0.74 -> review */
  cr_assert_eq(rules_decide(&c, &r, 0.9, &comb), PAYMENTS__V1__FRAUD_DECISION__FRAUD_DECISION_REVIEW);
  cr_assert_float_eq(comb, 0.74, 1e-9);
  r.rule_score = 1.0; /* 0.4 + 0.6 = 1.0 -> block */
  cr_assert_eq(rules_decide(&c, &r, 1.0, &comb), PAYMENTS__V1__FRAUD_DECISION__FRAUD_DECISION_BLOCK);
  r.rule_score = 0.0; /* exactly 0.5 is not above 0.5 */
  cr_assert_eq(rules_decide(&c, &r, 0.5 / 0.6, &comb), PAYMENTS__V1__FRAUD_DECISION__FRAUD_DECISION_ALLOW);
  c.weight_rules = 1.0, c.weight_ml = 0.0; /* weights are configuration */
  r.rule_score = 0.9;
  cr_assert_eq(rules_decide(&c, &r, 0.0, &comb), PAYMENTS__V1__FRAUD_DECISION__FRAUD_DECISION_BLOCK);
}

Test(rules, a_blocking_rule_blocks_whatever_the_model_says) {
  rules_result r = {.rule_score = 1.0, .block = true};
  double comb;
  cr_assert_eq(rules_decide(&c, &r, 0.0, &comb), PAYMENTS__V1__FRAUD_DECISION__FRAUD_DECISION_BLOCK);
}

Test(rules, each_blocklist_blocks_outright_with_its_reason) {
  const char *reasons[] = {"blocklist_card", "blocklist_ip", "blocklist_email",
                           "blocklist_device"};
  for (int k = 0; k < BLOCKLIST_KINDS; k++) {
    fraud_signals s = ordinary();
    s.blocklisted[k] = true;
    rules_result r = eval(&s);
    cr_assert(r.block, "%s", reasons[k]);
    cr_assert(has_reason(&r, reasons[k]));
    cr_assert_eq(r.nreasons, 1);
  }
}

Test(rules, redis_down_fails_open_with_reasons_and_no_history_rules) {
  fraud_signals s = ordinary();
  s.history_unavailable = true;
  s.blocklist_unavailable = true;
  s.customer_count_1h = 999; /* meaningless without history */
  s.country_new = true;
  rules_result r = eval(&s);
  cr_assert_not(r.block);
  cr_assert_not(r.force_review);
  cr_assert(has_reason(&r, "velocity_unavailable"));
  cr_assert(has_reason(&r, "blocklist_unavailable"));
  cr_assert_not(has_reason(&r, "velocity_customer_1h"));
  cr_assert_not(has_reason(&r, "country_new"));
  double comb;
  cr_assert_eq(rules_decide(&c, &r, 0.0, &comb), PAYMENTS__V1__FRAUD_DECISION__FRAUD_DECISION_ALLOW);
}

Test(rules, redis_down_under_review_policy_holds_for_review) {
  c.on_redis_unavailable = REDIS_FAIL_REVIEW;
  fraud_signals s = ordinary();
  s.history_unavailable = true;
  s.blocklist_unavailable = true;
  rules_result r = eval(&s);
  cr_assert(r.force_review);
  cr_assert(has_reason(&r, "redis_unavailable_review"));
  double comb;
  cr_assert_eq(rules_decide(&c, &r, 0.0, &comb), PAYMENTS__V1__FRAUD_DECISION__FRAUD_DECISION_REVIEW);
  s.amount_minor = 5000000; /* a blocking rule still blocks */
  r = eval(&s);
  cr_assert_eq(rules_decide(&c, &r, 0.0, &comb), PAYMENTS__V1__FRAUD_DECISION__FRAUD_DECISION_BLOCK);
}

Test(rules, blocklist_kinds_parse_and_emails_compare_lower_cased) {
  blocklist_kind k;
  cr_assert_eq(blocklist_parse("device", &k), 0);
  cr_assert_eq(k, BLOCKLIST_DEVICE);
  cr_assert_str_eq(blocklist_key(k), "blocklist:device");
  cr_assert_eq(blocklist_parse("phone", &k), -1);
  char out[64];
  blocklist_normalize(BLOCKLIST_EMAIL, "Fraud@Example.COM", out, sizeof out);
  cr_assert_str_eq(out, "fraud@example.com");
  blocklist_normalize(BLOCKLIST_IP, "10.0.0.1", out, sizeof out);
  cr_assert_str_eq(out, "10.0.0.1");
}
