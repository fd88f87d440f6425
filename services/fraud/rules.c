/* rules: fraud rules and score combination. */
#include "rules.h"

void rules_cfg_default(rules_cfg *c) {
  c->amount_limit_minor = 1000000; /* 10,000.00 in a two-decimal currency */
  c->amount_high_minor = 200000;
  c->velocity_customer_1h_max = 10;
  c->weight_rules = 0.4;
  c->weight_ml = 0.6;
  c->block_above = 0.8;
  c->review_above = 0.5;
}

static void add(rules_result *r, const char *reason, double score) {
  if (r->nreasons < RULES_MAX_REASONS) r->reasons[r->nreasons++] = reason;
  if (score > r->rule_score) r->rule_score = score;
}

void rules_evaluate(const rules_cfg *c, const fraud_signals *s, rules_result *r) {
  r->rule_score = 0;
  r->block = false;
  r->nreasons = 0;
  if (s->amount_minor > c->amount_limit_minor) {
    add(r, "amount_over_limit", 1.0);
    r->block = true;
  } else if (s->amount_minor > c->amount_high_minor) {
    add(r, "amount_high", 0.5);
  }
  if (s->velocity_unavailable) {
    add(r, "velocity_unavailable", 0.0);
  } else if (s->customer_count_1h > c->velocity_customer_1h_max) {
    add(r, "velocity_customer_1h", 1.0);
    r->block = true;
  }
}

Payments__V1__FraudDecision rules_decide(const rules_cfg *c, const rules_result *r,
                                         double ml_score, double *combined) {
  *combined = c->weight_rules * r->rule_score + c->weight_ml * ml_score;
  if (r->block || *combined > c->block_above) return PAYMENTS__V1__FRAUD_DECISION__FRAUD_DECISION_BLOCK;
  if (*combined > c->review_above) return PAYMENTS__V1__FRAUD_DECISION__FRAUD_DECISION_REVIEW;
  return PAYMENTS__V1__FRAUD_DECISION__FRAUD_DECISION_ALLOW;
}

const char *rules_decision_name(Payments__V1__FraudDecision d) {
  switch (d) {
  case PAYMENTS__V1__FRAUD_DECISION__FRAUD_DECISION_BLOCK: return "block";
  case PAYMENTS__V1__FRAUD_DECISION__FRAUD_DECISION_REVIEW: return "review";
  default: return "allow";
  }
}
