/* rules: the fraud stage's deterministic rules and score combination. Pure
 * logic over the signals the stage gathers (fraud_features.h), configured by the
 * rules file (rules_config.c), so every rule is unit-tested and a replay
 * scores the same. */
#ifndef FRAUD_RULES_H
#define FRAUD_RULES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "event.h"
#include "fraud_features.h"

/* Every rule, by the name it has in the rules file and as a reason code. */
typedef enum rule_id {
  RULE_VELOCITY_CUSTOMER_1H,
  RULE_VELOCITY_CUSTOMER_24H,
  RULE_VELOCITY_CARD_1H,
  RULE_VELOCITY_CARD_24H,
  RULE_DISTINCT_CARDS_24H,
  RULE_AMOUNT_LIMIT,
  RULE_AMOUNT_HIGH,
  RULE_COUNTRY_NEW,
  RULE_COUNTRY_MISMATCH,
  RULE_IMPOSSIBLE_TRAVEL,
  RULE_NEW_PAYMENT_METHOD,
  RULE_BLOCKLIST_CARD,
  RULE_BLOCKLIST_IP,
  RULE_BLOCKLIST_EMAIL,
  RULE_BLOCKLIST_DEVICE,
  /* Behaviour rules (features v2): usually `review: true`. */
  RULE_VELOCITY_DEVICE_10M,     /* one device's payments at the merchant in 10 min, on a new method */
  RULE_DEVICE_CARDS_24H,        /* cards tried on one device at the merchant, this one new */
  RULE_CARD_ACCOUNTS_24H,       /* accounts one card paid for at the merchant */
  RULE_CARD_SPREAD_FRESH_METHOD, /* a card at several merchants, here as a method added < 24 h ago */
  RULE_NEW_ACCOUNT_BURST,       /* no history before the hour, a method added today, paying again here */
  RULE_RECENT_DEVICE_BURST,     /* several payments in the hour from a device new to the customer */
  RULE_RECENT_DEVICE_AMOUNT,    /* far above the customer's habit from a device new to them */
  RULE_TAKEOVER_TRAVEL,         /* impossible travel onto a device new to the customer */
  RULE_RECENT_DEVICE_COUNTRIES, /* a device new to the customer, who paid from 2+ countries in 24 h */
  RULE_FRESH_METHOD_MISMATCH,   /* a method added < max_age_hours ago, issued in another country */
  RULE_NEW_ACCOUNT_CARD_ELSEWHERE, /* no history here, a method added today, the card at other merchants today */
  RULE_DORMANT_BURST,           /* no payment here before the hour, a burst spread over 10+ minutes */
  RULES_N
} rule_id;

#define RULES_MAX_CURRENCIES 32

/* A per-currency amount threshold (minor units), with a default. */
typedef struct amount_limits {
  struct { char currency[4]; int64_t minor; } by[RULES_MAX_CURRENCIES];
  size_t n;
  int64_t default_minor;
} amount_limits;

int64_t amount_limit_for(const amount_limits *l, const char *currency);

typedef struct rule_cfg {
  bool enabled;
  double score;      /* 0..1, its contribution when it fires */
  bool block;        /* fires -> blocked outright, the model is skipped */
  bool review;       /* fires -> held for review at least, whatever the score */
  long max;          /* velocity and distinct-card rules: fires above this */
  double max_kmh;    /* impossible_travel: fires above this speed ... */
  double min_km;     /* ... over at least this distance */
  double max_age_hours; /* new_payment_method, fresh_method_mismatch: fires below this age */
  double max_ratio;  /* recent_device_amount: fires above this amount / habit ratio */
  amount_limits amounts; /* amount_limit, amount_high: fires above this */
} rule_cfg;

typedef enum redis_policy {
  REDIS_FAIL_OPEN,   /* score without history/blocklists, say so in the reasons */
  REDIS_FAIL_REVIEW  /* hold every payment scored without Redis for review */
} redis_policy;

typedef struct rules_cfg {
  rule_cfg rule[RULES_N];
  double weight_rules, weight_ml; /* combined = wr * rules + wm * ml */
  double block_above, review_above;
  redis_policy on_redis_unavailable;
} rules_cfg;

/* The built-in configuration; config/fraud-rules.yaml spells it out. */
void rules_cfg_default(rules_cfg *c);
const char *rule_name(rule_id r);
/* A hash of everything in c (FNV-1a over the struct, which the loader
 * zero-fills): the rules a calibration was fitted with. */
uint64_t rules_cfg_hash(const rules_cfg *c);
int rule_parse(const char *name, rule_id *out);

/* "card", "ip", "email", "device"; blocklist_parse returns -1 on others. */
const char *blocklist_name(blocklist_kind k);
int blocklist_parse(const char *name, blocklist_kind *out);
/* The Redis set holding a kind: "blocklist:<name>". */
const char *blocklist_key(blocklist_kind k);
/* Copies value into out (lower-cased for emails), for both adding and matching. */
void blocklist_normalize(blocklist_kind k, const char *value, char *out, size_t outlen);

#define RULES_MAX_REASONS 40

typedef struct rules_result {
  double rule_score;              /* 0..1: 1 - prod(1 - score) over the rules that fired */
  bool block;                     /* a blocking rule fired: the model is skipped */
  bool force_review;              /* a review rule fired, or Redis down under REDIS_FAIL_REVIEW */
  const char *reasons[RULES_MAX_REASONS];
  size_t nreasons;
} rules_result;

void rules_evaluate(const rules_cfg *c, const fraud_signals *s, rules_result *r);

/* Combined score and decision: block when a rule blocks outright or the
 * combined score is above block_above; review above review_above or when
 * Redis policy says so; else allow. */
Payments__V1__FraudDecision rules_decide(const rules_cfg *c, const rules_result *r,
                                         double ml_score, double *combined);

const char *rules_decision_name(Payments__V1__FraudDecision d); /* allow|review|block */

#endif
