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
