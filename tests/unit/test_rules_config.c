/* Unit tests for the fraud rules file: the shipped file equals the
 * built-in defaults, overrides apply, and bad files are refused with an
 * error naming the key and line. */
#include <criterion/criterion.h>
#include <string.h>

#include "rules_config.h"

static int parse(const char *y, rules_cfg *c, char *err) {
  return rules_config_parse(y, strlen(y), c, err, 256);
}

Test(rules_config, shipped_file_is_the_built_in_defaults) {
  rules_cfg file, def;
  char err[256];
  cr_assert_eq(rules_config_load(PS_SOURCE_DIR "/config/fraud-rules.yaml", &file, err, sizeof err),
               0, "%s", err);
  rules_cfg_default(&def);
  cr_assert_eq(memcmp(&file, &def, sizeof def), 0, "config/fraud-rules.yaml drifted from the defaults");
}

Test(rules_config, overrides_apply_and_the_rest_stays_default) {
  rules_cfg c;
  char err[256];
  cr_assert_eq(parse("weights: {rules: 0.5, model: 0.5}\n"
                     "on_redis_unavailable: review\n"
                     "rules:\n"
                     "  velocity_customer_1h: {max: 3}\n"
                     "  country_new: {enabled: false}\n"
                     "  takeover_travel: {max_kmh: 500, review: false}\n"
                     "  recent_device_amount: {max_ratio: 6}\n"
                     "  amount_limit: {currencies: {EUR: 500000}}\n",
                     &c, err),
               0, "%s", err);
  cr_assert_float_eq(c.weight_rules, 0.5, 1e-12);
  cr_assert_eq(c.on_redis_unavailable, REDIS_FAIL_REVIEW);
  cr_assert_eq(c.rule[RULE_VELOCITY_CUSTOMER_1H].max, 3);
  cr_assert(c.rule[RULE_VELOCITY_CUSTOMER_1H].block, "unnamed fields keep their default");
  cr_assert_not(c.rule[RULE_COUNTRY_NEW].enabled);
  cr_assert_float_eq(c.rule[RULE_TAKEOVER_TRAVEL].max_kmh, 500, 1e-12);
  cr_assert_not(c.rule[RULE_TAKEOVER_TRAVEL].review);
  cr_assert_float_eq(c.rule[RULE_RECENT_DEVICE_AMOUNT].max_ratio, 6, 1e-12);
  cr_assert_eq(amount_limit_for(&c.rule[RULE_AMOUNT_LIMIT].amounts, "EUR"), 500000);
  cr_assert_eq(amount_limit_for(&c.rule[RULE_AMOUNT_LIMIT].amounts, "JPY"), 1500000);
  cr_assert_eq(amount_limit_for(&c.rule[RULE_AMOUNT_LIMIT].amounts, "USD"), 1000000);
  cr_assert_eq(amount_limit_for(&c.rule[RULE_AMOUNT_LIMIT].amounts, "INR"), 83000000,
               "a currency far from the dollar has its own default");
  cr_assert_float_eq(c.block_above, 0.8, 1e-12);
}

Test(rules_config, empty_file_is_the_defaults) {
  rules_cfg c, d;
  char err[256];
  cr_assert_eq(parse("", &c, err), 0);
  rules_cfg_default(&d);
  cr_assert_eq(memcmp(&c, &d, sizeof d), 0);
}

Test(rules_config, bad_files_are_refused_naming_the_key) {
  struct {
    const char *yaml, *expect;
  } bad[] = {
      {"rules:\n  velocity_customer_1h: {maxx: 3}\n", "rules.velocity_customer_1h.maxx: unknown key (line 2)"},
      {"rules:\n  no_such_rule: {score: 1}\n", "rules.no_such_rule: unknown rule"},
      {"rules:\n  recent_device_amount: {max: 3}\n", "rules.recent_device_amount.max: unknown key"},
      {"rules:\n  takeover_travel: {review: sometimes}\n", "rules.takeover_travel.review: not true or false"},
      {"rules:\n  country_new: {score: 1.5}\n", "rules.country_new.score: must be between 0 and 1"},
      {"rules:\n  country_new: {block: maybe}\n", "rules.country_new.block: not true or false"},
      {"rules:\n  velocity_card_1h: {max: 1000}\n", "rules.velocity_card_1h.max: must be between 1 and 64"},
      {"rules:\n  country_new: {max: 3}\n", "rules.country_new.max: unknown key"},
      {"rules:\n  amount_limit: {currencies: {XYZ: 5}}\n", "rules.amount_limit.currencies.XYZ: not an ISO-4217"},
      {"rules:\n  amount_limit: {default: -5}\n", "rules.amount_limit.default: must be between 1"},
      {"weights: {rules: abc}\n", "weights.rules: not a number"},
      {"thresholds: {review: 0.9, block: 0.8}\n", "thresholds: review must be below block"},
      {"on_redis_unavailable: maybe\n", "on_redis_unavailable: must be fail_open or review"},
      {"version: 2\n", "version: must be between 1 and 1"},
      {"colour: blue\n", "colour: unknown key"},
      {"rules: [1, 2]\n", "rules: not a mapping"},
      {"rules: {a: [\n", "not YAML"},
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    rules_cfg c;
    char err[256] = "";
    cr_assert_eq(parse(bad[i].yaml, &c, err), -1, "accepted: %s", bad[i].yaml);
    cr_assert(strstr(err, bad[i].expect), "'%s' does not say '%s'", err, bad[i].expect);
  }
}

Test(rules_config, missing_file_names_the_path) {
  rules_cfg c;
  char err[256];
  cr_assert_eq(rules_config_load("/nonexistent/rules.yaml", &c, err, sizeof err), -1);
  cr_assert(strstr(err, "/nonexistent/rules.yaml"));
}
