/* rules_config: the fraud rules file. */
#include "rules_config.h"

#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "money.h"

typedef struct loader {
  yaml_document_t *doc;
  char *err;
  size_t errlen;
} loader;

static int fail(loader *l, const yaml_node_t *n, const char *path, const char *what) {
  snprintf(l->err, l->errlen, "fraud rules: %s: %s (line %lu)", path, what,
           n ? (unsigned long)n->start_mark.line + 1 : 0UL);
  return -1;
}

static const char *scalar(const yaml_node_t *n) {
  return n && n->type == YAML_SCALAR_NODE ? (const char *)n->data.scalar.value : NULL;
}

static int get_double(loader *l, const yaml_node_t *n, const char *path, double lo, double hi,
                      double *out) {
  const char *s = scalar(n);
  char *end;
  errno = 0;
  double v = s ? strtod(s, &end) : 0;
  if (!s || !*s || *end || errno || !isfinite(v)) return fail(l, n, path, "not a number");
  if (v < lo || v > hi) {
    char what[96];
    snprintf(what, sizeof what, "must be between %g and %g", lo, hi);
    return fail(l, n, path, what);
  }
  *out = v;
  return 0;
}

static int get_int(loader *l, const yaml_node_t *n, const char *path, long long lo, long long hi,
                   long long *out) {
  const char *s = scalar(n);
  char *end;
  errno = 0;
  long long v = s ? strtoll(s, &end, 10) : 0;
  if (!s || !*s || *end || errno) return fail(l, n, path, "not an integer");
  if (v < lo || v > hi) {
    char what[96];
    snprintf(what, sizeof what, "must be between %lld and %lld", lo, hi);
    return fail(l, n, path, what);
  }
  *out = v;
  return 0;
}

static int get_bool(loader *l, const yaml_node_t *n, const char *path, bool *out) {
  const char *s = scalar(n);
  if (s && (strcmp(s, "true") == 0 || strcmp(s, "yes") == 0)) *out = true;
  else if (s && (strcmp(s, "false") == 0 || strcmp(s, "no") == 0)) *out = false;
  else return fail(l, n, path, "not true or false");
  return 0;
}

/* Iterates a mapping: calls fn for each key/value; unknown keys are fn's to refuse. */
typedef int (*pair_fn)(loader *l, const char *key, yaml_node_t *val, const char *path, void *arg);

static int each_pair(loader *l, yaml_node_t *map, const char *path, pair_fn fn, void *arg) {
  if (!map || map->type != YAML_MAPPING_NODE) return fail(l, map, path, "not a mapping");
  for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top; p++) {
    yaml_node_t *k = yaml_document_get_node(l->doc, p->key);
    yaml_node_t *v = yaml_document_get_node(l->doc, p->value);
    const char *key = scalar(k);
    if (!key) return fail(l, k, path, "keys must be plain words");
    char sub[256];
    snprintf(sub, sizeof sub, "%s%s%s", path, *path ? "." : "", key);
    if (fn(l, key, v, sub, arg)) return -1;
  }
  return 0;
}

static int currency_pair(loader *l, const char *key, yaml_node_t *v, const char *path, void *arg) {
  amount_limits *a = arg;
  if (!money_currency_valid(key)) return fail(l, v, path, "not an ISO-4217 currency code");
  long long minor;
  if (get_int(l, v, path, 1, MONEY_MAX_PAYMENT_MINOR, &minor)) return -1;
  size_t i = 0;
  while (i < a->n && strcmp(a->by[i].currency, key) != 0) i++;
  if (i == RULES_MAX_CURRENCIES) return fail(l, v, path, "too many currencies");
  snprintf(a->by[i].currency, sizeof a->by[i].currency, "%s", key);
  a->by[i].minor = minor;
  if (i == a->n) a->n++;
  return 0;
}

typedef struct rule_arg {
  rule_id id;
  rule_cfg *r;
} rule_arg;

static bool is_velocity(rule_id id) {
  return id <= RULE_DISTINCT_CARDS_24H || (id >= RULE_VELOCITY_DEVICE_10M && id <= RULE_RECENT_DEVICE_BURST) ||
         id == RULE_RECENT_DEVICE_COUNTRIES || id == RULE_NEW_ACCOUNT_CARD_ELSEWHERE ||
         id == RULE_DORMANT_BURST;
}
static bool is_amount(rule_id id) { return id == RULE_AMOUNT_LIMIT || id == RULE_AMOUNT_HIGH; }

static int rule_pair(loader *l, const char *key, yaml_node_t *v, const char *path, void *arg) {
  rule_arg *a = arg;
  rule_cfg *r = a->r;
  long long n;
  if (strcmp(key, "enabled") == 0) return get_bool(l, v, path, &r->enabled);
  if (strcmp(key, "block") == 0) return get_bool(l, v, path, &r->block);
  if (strcmp(key, "review") == 0) return get_bool(l, v, path, &r->review);
  if (strcmp(key, "score") == 0) return get_double(l, v, path, 0, 1, &r->score);
  if (is_velocity(a->id) && strcmp(key, "max") == 0) {
    if (get_int(l, v, path, 1, HIST_MAX, &n)) return -1;
    r->max = (long)n;
    return 0;
  }
  bool travel = a->id == RULE_IMPOSSIBLE_TRAVEL || a->id == RULE_TAKEOVER_TRAVEL;
  if (travel && strcmp(key, "max_kmh") == 0) return get_double(l, v, path, 1, 1e6, &r->max_kmh);
  if (travel && strcmp(key, "min_km") == 0) return get_double(l, v, path, 0, 40000, &r->min_km);
  if (a->id == RULE_RECENT_DEVICE_AMOUNT && strcmp(key, "max_ratio") == 0)
    return get_double(l, v, path, 1, 1e6, &r->max_ratio);
  if ((a->id == RULE_NEW_PAYMENT_METHOD || a->id == RULE_FRESH_METHOD_MISMATCH) &&
      strcmp(key, "max_age_hours") == 0)
    return get_double(l, v, path, 0, 24.0 * 3650, &r->max_age_hours);
  if (is_amount(a->id) && strcmp(key, "default") == 0) {
    if (get_int(l, v, path, 1, MONEY_MAX_PAYMENT_MINOR, &n)) return -1;
    r->amounts.default_minor = n;
    return 0;
  }
  if (is_amount(a->id) && strcmp(key, "currencies") == 0)
    return each_pair(l, v, path, currency_pair, &r->amounts);
  return fail(l, v, path, "unknown key");
}

static int rules_pair(loader *l, const char *key, yaml_node_t *v, const char *path, void *arg) {
  rules_cfg *c = arg;
  rule_id id;
  if (rule_parse(key, &id)) return fail(l, v, path, "unknown rule");
  rule_arg a = {id, &c->rule[id]};
  return each_pair(l, v, path, rule_pair, &a);
}

static int weights_pair(loader *l, const char *key, yaml_node_t *v, const char *path, void *arg) {
  rules_cfg *c = arg;
  if (strcmp(key, "rules") == 0) return get_double(l, v, path, 0, 1, &c->weight_rules);
  if (strcmp(key, "model") == 0) return get_double(l, v, path, 0, 1, &c->weight_ml);
  return fail(l, v, path, "unknown key");
}

static int thresholds_pair(loader *l, const char *key, yaml_node_t *v, const char *path,
                           void *arg) {
  rules_cfg *c = arg;
  if (strcmp(key, "block") == 0) return get_double(l, v, path, 0, 1, &c->block_above);
  if (strcmp(key, "review") == 0) return get_double(l, v, path, 0, 1, &c->review_above);
  return fail(l, v, path, "unknown key");
}

static int top_pair(loader *l, const char *key, yaml_node_t *v, const char *path, void *arg) {
  rules_cfg *c = arg;
  if (strcmp(key, "version") == 0) {
    long long n;
    if (get_int(l, v, path, 1, 1, &n)) return -1;
    return 0;
  }
  if (strcmp(key, "weights") == 0) return each_pair(l, v, path, weights_pair, c);
  if (strcmp(key, "thresholds") == 0) return each_pair(l, v, path, thresholds_pair, c);
  if (strcmp(key, "rules") == 0) return each_pair(l, v, path, rules_pair, c);
  if (strcmp(key, "on_redis_unavailable") == 0) {
    const char *s = scalar(v);
    if (s && strcmp(s, "fail_open") == 0) c->on_redis_unavailable = REDIS_FAIL_OPEN;
    else if (s && strcmp(s, "review") == 0) c->on_redis_unavailable = REDIS_FAIL_REVIEW;
    else return fail(l, v, path, "must be fail_open or review");
    return 0;
  }
  return fail(l, v, path, "unknown key");
}

int rules_config_parse(const char *yaml, size_t len, rules_cfg *c, char *err, size_t errlen) {
  rules_cfg_default(c);
  yaml_parser_t parser;
  yaml_document_t doc;
  if (!yaml_parser_initialize(&parser)) {
    snprintf(err, errlen, "fraud rules: could not start the YAML parser");
    return -1;
  }
  yaml_parser_set_input_string(&parser, (const unsigned char *)yaml, len);
  if (!yaml_parser_load(&parser, &doc)) {
    snprintf(err, errlen, "fraud rules: not YAML: %s (line %lu)",
             parser.problem ? parser.problem : "parse error",
             (unsigned long)parser.problem_mark.line + 1);
    yaml_parser_delete(&parser);
    return -1;
  }
  loader l = {&doc, err, errlen};
  yaml_node_t *root = yaml_document_get_root_node(&doc);
  int rc = root ? each_pair(&l, root, "", top_pair, c) : 0; /* empty file: the defaults */
  if (rc == 0 && c->review_above >= c->block_above)
    rc = fail(&l, NULL, "thresholds", "review must be below block");
  if (rc == 0 && c->weight_rules + c->weight_ml <= 0)
    rc = fail(&l, NULL, "weights", "rules + model must be above 0");
  yaml_document_delete(&doc);
  yaml_parser_delete(&parser);
  return rc;
}

int rules_config_load(const char *path, rules_cfg *c, char *err, size_t errlen) {
  FILE *f = fopen(path, "rb");
  if (!f) {
    snprintf(err, errlen, "fraud rules: could not open %s: %s", path, strerror(errno));
    return -1;
  }
  char *buf = NULL;
  size_t cap = 0, len = 0;
  for (;;) {
    if (len + 4096 > cap) {
      cap = cap ? cap * 2 : 8192;
      char *nb = realloc(buf, cap);
      if (!nb) abort();
      buf = nb;
    }
    size_t got = fread(buf + len, 1, cap - len, f);
    len += got;
    if (got == 0) break;
  }
  fclose(f);
  int rc = rules_config_parse(buf, len, c, err, errlen);
  free(buf);
  return rc;
}
