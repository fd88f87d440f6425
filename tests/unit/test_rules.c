/* Unit tests for the fraud rules and score combination. */
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

Test(rules, ordinary_payment_is_allowed_without_reasons) {
  fraud_signals s = {.amount_minor = 5000, .customer_count_1h = 1};
  rules_result r;
  rules_evaluate(&c, &s, &r);
  double comb;
  cr_assert_eq(rules_decide(&c, &r, 0.0, &comb), PAYMENTS__V1__FRAUD_DECISION__FRAUD_DECISION_ALLOW);
  cr_assert_eq(r.nreasons, 0);
  cr_assert_float_eq(comb, 0.0, 1e-12);
}

Test(rules, amount_over_limit_blocks_outright) {
  fraud_signals s = {.amount_minor = c.amount_limit_minor + 1, .customer_count_1h = 1};
  rules_result r;
  rules_evaluate(&c, &s, &r);
  double comb;
  cr_assert(r.block);
  cr_assert(has_reason(&r, "amount_over_limit"));
  cr_assert_eq(rules_decide(&c, &r, 0.0, &comb), PAYMENTS__V1__FRAUD_DECISION__FRAUD_DECISION_BLOCK);
}

Test(rules, limit_itself_is_allowed) {
  fraud_signals s = {.amount_minor = c.amount_limit_minor, .customer_count_1h = 1};
  rules_result r;
  rules_evaluate(&c, &s, &r);
  cr_assert_not(r.block);
  cr_assert(has_reason(&r, "amount_high"));
}

Test(rules, velocity_over_limit_blocks) {
  fraud_signals s = {.amount_minor = 100, .customer_count_1h = c.velocity_customer_1h_max + 1};
  rules_result r;
  rules_evaluate(&c, &s, &r);
  cr_assert(r.block);
  cr_assert(has_reason(&r, "velocity_customer_1h"));
  s.customer_count_1h = c.velocity_customer_1h_max;
  rules_evaluate(&c, &s, &r);
  cr_assert_not(r.block);
}

Test(rules, redis_down_fails_open_with_a_reason) {
  fraud_signals s = {.amount_minor = 100, .customer_count_1h = 999, .velocity_unavailable = true};
  rules_result r;
  rules_evaluate(&c, &s, &r);
  cr_assert_not(r.block);
  cr_assert(has_reason(&r, "velocity_unavailable"));
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
}

Test(rules, each_blocklist_blocks_outright_with_its_reason) {
  const char *reasons[] = {"blocklist_card", "blocklist_ip", "blocklist_email",
                           "blocklist_device"};
  for (int k = 0; k < BLOCKLIST_KINDS; k++) {
    fraud_signals s = {.amount_minor = 100};
    s.blocklisted[k] = true;
    rules_result r;
    rules_evaluate(&c, &s, &r);
    cr_assert(r.block, "%s", reasons[k]);
    cr_assert(has_reason(&r, reasons[k]));
    cr_assert_eq(r.nreasons, 1);
  }
}

Test(rules, blocklists_unavailable_fail_open_with_a_reason) {
  fraud_signals s = {.amount_minor = 100, .blocklist_unavailable = true,
                     .velocity_unavailable = true};
  rules_result r;
  rules_evaluate(&c, &s, &r);
  cr_assert_not(r.block);
  cr_assert(has_reason(&r, "blocklist_unavailable"));
  cr_assert(has_reason(&r, "velocity_unavailable"));
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
