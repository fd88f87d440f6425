/* rules: fraud rules and score combination. */
#include "rules.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>

static const char *const BL_NAMES[BLOCKLIST_KINDS] = {"card", "ip", "email", "device"};
static const char *const BL_KEYS[BLOCKLIST_KINDS] = {"blocklist:card", "blocklist:ip",
                                                     "blocklist:email", "blocklist:device"};
static const char *const BL_REASONS[BLOCKLIST_KINDS] = {"blocklist_card", "blocklist_ip",
                                                        "blocklist_email", "blocklist_device"};

const char *blocklist_name(blocklist_kind k) { return BL_NAMES[k]; }
const char *blocklist_key(blocklist_kind k) { return BL_KEYS[k]; }

int blocklist_parse(const char *name, blocklist_kind *out) {
  for (int k = 0; k < BLOCKLIST_KINDS; k++)
    if (strcmp(name, BL_NAMES[k]) == 0) {
      *out = (blocklist_kind)k;
      return 0;
    }
  return -1;
}

void blocklist_normalize(blocklist_kind k, const char *value, char *out, size_t outlen) {
  snprintf(out, outlen, "%s", value ? value : "");
  if (k == BLOCKLIST_EMAIL)
    for (char *c = out; *c; c++) *c = (char)tolower((unsigned char)*c);
}

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
  /* A blocklisted card, IP, email or device blocks outright. */
  for (int k = 0; k < BLOCKLIST_KINDS; k++)
    if (s->blocklisted[k]) {
      add(r, BL_REASONS[k], 1.0);
      r->block = true;
    }
  if (s->blocklist_unavailable) add(r, "blocklist_unavailable", 0.0);
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
