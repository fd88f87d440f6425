/* rules: the fraud stage's deterministic rules and score combination. Pure
 * logic over signals the stage gathers (Redis velocity, the intent itself),
 * so every rule is unit-tested and a replay scores the same. */
#ifndef FRAUD_RULES_H
#define FRAUD_RULES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "event.h"

typedef struct rules_cfg {
  int64_t amount_limit_minor;     /* above: block outright */
  int64_t amount_high_minor;      /* above: adds risk, no block */
  int velocity_customer_1h_max;   /* more payments than this in 1 h: block */
  double weight_rules, weight_ml; /* combined = wr * rules + wm * ml */
  double block_above, review_above;
} rules_cfg;

void rules_cfg_default(rules_cfg *c);

/* Blocklists (Redis sets managed with `payctl blocklist`): what a payment is
 * matched on. Emails are compared lower-cased (blocklist_normalize). */
typedef enum blocklist_kind {
  BLOCKLIST_CARD,   /* payment method fingerprint */
  BLOCKLIST_IP,
  BLOCKLIST_EMAIL,
  BLOCKLIST_DEVICE,
  BLOCKLIST_KINDS
} blocklist_kind;

/* "card", "ip", "email", "device"; blocklist_parse returns -1 on others. */
const char *blocklist_name(blocklist_kind k);
int blocklist_parse(const char *name, blocklist_kind *out);
/* The Redis set holding a kind: "blocklist:<name>". */
const char *blocklist_key(blocklist_kind k);
/* Copies value into out (lower-cased for emails), for both adding and matching. */
void blocklist_normalize(blocklist_kind k, const char *value, char *out, size_t outlen);

typedef struct fraud_signals {
  int64_t amount_minor;
  long customer_count_1h;         /* payments by this customer in the hour up to this one */
  bool velocity_unavailable;      /* Redis could not answer: fail open, say so */
  bool blocklisted[BLOCKLIST_KINDS];
  bool blocklist_unavailable;     /* Redis could not answer: fail open, say so */
} fraud_signals;

#define RULES_MAX_REASONS 8

typedef struct rules_result {
  double rule_score;              /* 0..1 */
  bool block;                     /* a blocking rule fired: the model is skipped */
  const char *reasons[RULES_MAX_REASONS];
  size_t nreasons;
} rules_result;

void rules_evaluate(const rules_cfg *c, const fraud_signals *s, rules_result *r);

/* Combined score and decision (block when a rule blocks outright). */
Payments__V1__FraudDecision rules_decide(const rules_cfg *c, const rules_result *r,
                                         double ml_score, double *combined);

const char *rules_decision_name(Payments__V1__FraudDecision d); /* allow|review|block */

#endif
