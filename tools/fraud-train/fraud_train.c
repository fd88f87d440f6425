/* fraud-train: trains the fraud model from a fraudgen data set through the
 * XGBoost C API. It replays the data set in time order, keeping each
 * customer's and card's history in memory exactly as the worker keeps it
 * in Redis, and computes every row's features with the worker's own code
 * (features.c), so the model is served the features it was trained on.
 * Splits by customer (80/20, no customer on both sides), trains on the
 * first part, and reports on the held-out part: ROC-AUC, PR-AUC, and
 * precision/recall at the review and block thresholds — for the model
 * alone and for the worker's decision (rules + model). Writes the model
 * with its feature version. A tenth of the training rows is repeated as
 * served without Redis (history features missing). */
#include <glib.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xgboost/c_api.h>

#include "fraud_features.h"
#include "intent_json.h"
#include "model.h"
#include "rules.h"
#include "rules_config.h"

#define TAIL 256 /* history handed to signals_from_history: a superset of what counts */

typedef struct hist {
  hist_entry *e;
  size_t n, cap;
} hist;
typedef struct times {
  int64_t *t;
  size_t n, cap;
} times;

typedef struct dataset {
  float *x;         /* n x FEATURES_N */
  float *y;
  double *rule;     /* rule score */
  bool *rule_block; /* a blocking rule fired */
  bool *force_review;
  char **pattern;
  bool *test;
  size_t n, cap;
} dataset;

static void grow(dataset *d) {
  if (d->n < d->cap) return;
  d->cap = d->cap ? d->cap * 2 : 8192;
  d->x = realloc(d->x, d->cap * FEATURES_N * sizeof *d->x);
  d->y = realloc(d->y, d->cap * sizeof *d->y);
  d->rule = realloc(d->rule, d->cap * sizeof *d->rule);
  d->rule_block = realloc(d->rule_block, d->cap * sizeof *d->rule_block);
  d->force_review = realloc(d->force_review, d->cap * sizeof *d->force_review);
  d->pattern = realloc(d->pattern, d->cap * sizeof *d->pattern);
  d->test = realloc(d->test, d->cap * sizeof *d->test);
  if (!d->x || !d->y || !d->rule || !d->rule_block || !d->force_review || !d->pattern || !d->test)
    abort();
}

static void free_hist(void *p) {
  hist *h = p;
  free(h->e);
  free(h);
}
static void free_times(void *p) {
  times *t = p;
  free(t->t);
  free(t);
}

/* Reads the data set and computes every row's features and rule result. */
static int load(const char *path, const rules_cfg *rc, dataset *d) {
  FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "r");
  if (!f) {
    fprintf(stderr, "fraud-train: could not open %s\n", path);
    return -1;
  }
  GHashTable *cust = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, free_hist);
  GHashTable *card = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, free_times);
  char *line = NULL;
  size_t lcap = 0;
  long lineno = 0;
  int rc_ = 0;
  while (getline(&line, &lcap, f) > 0) {
    lineno++;
    json_error_t je;
    json_t *o = json_loads(line, 0, &je);
    char err[256];
    ps_intent *in = o ? intent_from_json(json_object_get(o, "intent"), err, sizeof err) : NULL;
    if (!in) {
      fprintf(stderr, "fraud-train: %s:%ld: %s\n", path, lineno, o ? err : je.text);
      json_decref(o);
      rc_ = -1;
      break;
    }
    char ckey[160];
    snprintf(ckey, sizeof ckey, "%s/%s", in->merchant_id, in->customer_id);
    hist *h = g_hash_table_lookup(cust, ckey);
    if (!h) {
      h = calloc(1, sizeof *h);
      g_hash_table_insert(cust, g_strdup(ckey), h);
    }
    const char *fp = in->payment_method ? in->payment_method->fingerprint : "";
    times *ct = g_hash_table_lookup(card, fp);
    if (!ct) {
      ct = calloc(1, sizeof *ct);
      g_hash_table_insert(card, g_strdup(fp), ct);
    }
    fraud_signals s;
    signals_from_intent(in, &s);
    size_t hs = h->n > TAIL ? h->n - TAIL : 0, cs = ct->n > TAIL ? ct->n - TAIL : 0;
    signals_from_history(in, in->idempotency_key, h->e + hs, h->n - hs, ct->t + cs, ct->n - cs,
                         &s);
    /* Every tenth payment also as the worker sees it with Redis down (no
     * history: those features missing), so the model has learned what to
     * say then, instead of guessing down the default branches. */
    bool test = g_str_hash(in->customer_id) % 5 == 0;
    const char *pattern = json_string_value(json_object_get(o, "pattern"));
    float label = (float)json_integer_value(json_object_get(o, "label"));
    for (int pass = 0; pass < (lineno % 10 == 0 ? 2 : 1); pass++) {
      fraud_signals sp = s;
      if (pass) {
        sp.history_unavailable = sp.blocklist_unavailable = true;
        if (test) break; /* the held-out set stays as served normally */
      }
      rules_result rr;
      rules_evaluate(rc, &sp, &rr);
      grow(d);
      features_vector(&sp, &d->x[d->n * FEATURES_N]);
      d->y[d->n] = label;
      d->rule[d->n] = rr.rule_score;
      d->rule_block[d->n] = rr.block;
      d->force_review[d->n] = rr.force_review;
      d->pattern[d->n] = g_strdup(pattern);
      d->test[d->n] = test;
      d->n++;
    }
    /* Then it joins the history, as ZADD puts it in Redis. */
    if (h->n == h->cap) {
      h->cap = h->cap ? h->cap * 2 : 16;
      h->e = realloc(h->e, h->cap * sizeof *h->e);
    }
    char member[512];
    hist_encode(in, in->idempotency_key, member, sizeof member);
    hist_decode(member, &h->e[h->n++]);
    if (ct->n == ct->cap) {
      ct->cap = ct->cap ? ct->cap * 2 : 16;
      ct->t = realloc(ct->t, ct->cap * sizeof *ct->t);
    }
    ct->t[ct->n++] = in->created_at_ms;
    payments__v1__payment_intent__free_unpacked(in, NULL);
    json_decref(o);
  }
  free(line);
  if (f != stdin) fclose(f);
  g_hash_table_destroy(cust);
  g_hash_table_destroy(card);
  return rc_;
}

static DMatrixHandle matrix(const dataset *d, bool test, size_t *idx, size_t *n) {
  float *x = malloc((d->n + 1) * FEATURES_N * sizeof *x), *y = malloc((d->n + 1) * sizeof *y);
  *n = 0;
  for (size_t i = 0; i < d->n; i++) {
    if (d->test[i] != test) continue;
    memcpy(&x[*n * FEATURES_N], &d->x[i * FEATURES_N], FEATURES_N * sizeof *x);
    y[*n] = d->y[i];
    idx[(*n)++] = i;
  }
  DMatrixHandle m;
  if (XGDMatrixCreateFromMat(x, *n, FEATURES_N, NAN, &m) ||
      XGDMatrixSetFloatInfo(m, "label", y, *n)) {
    fprintf(stderr, "fraud-train: %s\n", XGBGetLastError());
    exit(1);
  }
  free(x);
  free(y);
  return m;
}

typedef struct scored {
  double s;
  int y;
} scored;
static int by_score_desc(const void *a, const void *b) {
  const scored *x = a, *y = b;
  return x->s < y->s ? 1 : x->s > y->s ? -1 : 0;
}

/* ROC-AUC (ties counted half) and PR-AUC (average precision). */
static void aucs(scored *v, size_t n, double *roc, double *pr) {
  qsort(v, n, sizeof *v, by_score_desc);
  double pos = 0, neg = 0;
  for (size_t i = 0; i < n; i++) v[i].y ? pos++ : neg++;
  double tp = 0, fp = 0, area = 0, ap = 0;
  for (size_t i = 0; i < n;) {
    size_t j = i;
    double tp_g = 0, fp_g = 0;
    while (j < n && v[j].s == v[i].s) v[j++].y ? tp_g++ : fp_g++;
    area += fp_g * (tp + tp_g / 2);
    tp += tp_g;
    fp += fp_g;
    if (tp_g > 0) ap += tp_g / pos * (tp / (tp + fp));
    i = j;
  }
  *roc = pos && neg ? area / (pos * neg) : 0;
  *pr = pos ? ap : 0;
}

static void pr_at(const scored *v, size_t n, double thr, double *prec, double *rec) {
  double tp = 0, fp = 0, pos = 0;
  for (size_t i = 0; i < n; i++) {
    pos += v[i].y;
    if (v[i].s > thr) v[i].y ? tp++ : fp++;
  }
  *prec = tp + fp > 0 ? tp / (tp + fp) : 0;
  *rec = pos > 0 ? tp / pos : 0;
}

typedef struct opts {
  const char *data, *out, *rules, *report;
  int rounds, depth;
  long seed;
} opts;

static int parse_args(int argc, char **argv, opts *o) {
  *o = (opts){.rounds = 150, .depth = 6, .seed = 42};
  for (int i = 1; i + 1 < argc; i += 2) {
    const char *a = argv[i], *v = argv[i + 1];
    if (strcmp(a, "--data") == 0) o->data = v;
    else if (strcmp(a, "--out") == 0) o->out = v;
    else if (strcmp(a, "--rules") == 0) o->rules = v;
    else if (strcmp(a, "--report") == 0) o->report = v;
    else if (strcmp(a, "--rounds") == 0) o->rounds = atoi(v);
    else if (strcmp(a, "--depth") == 0) o->depth = atoi(v);
    else if (strcmp(a, "--seed") == 0) o->seed = atol(v);
    else return -1;
  }
  return o->data && o->out && o->rounds >= 1 && o->depth >= 1 && argc % 2 == 1 ? 0 : -1;
}

/* Trains on dtr and writes the model with its feature and model versions.
 * Returns 0, or -1 with XGBoost's error printed. */
static int train(const opts *o, DMatrixHandle dtr, const char *version) {
  BoosterHandle b = NULL;
  char sd[24], dp[24];
  snprintf(sd, sizeof sd, "%ld", o->seed);
  snprintf(dp, sizeof dp, "%d", o->depth);
  const char *params[][2] = {{"objective", "binary:logistic"}, {"eta", "0.1"}, {"max_depth", dp},
                             {"min_child_weight", "2"}, {"subsample", "0.9"},
                             {"tree_method", "hist"}, {"eval_metric", "auc"}, {"seed", sd},
                             {"nthread", "2"}};
  int rc = XGBoosterCreate(&dtr, 1, &b);
  for (size_t i = 0; rc == 0 && i < sizeof params / sizeof params[0]; i++)
    rc = XGBoosterSetParam(b, params[i][0], params[i][1]);
  for (int it = 0; rc == 0 && it < o->rounds; it++) rc = XGBoosterUpdateOneIter(b, it, dtr);
  if (rc == 0) rc = XGBoosterSetAttr(b, MODEL_ATTR_FEATURES, FEATURES_VERSION);
  if (rc == 0) rc = XGBoosterSetAttr(b, MODEL_ATTR_VERSION, version);
  if (rc == 0) rc = XGBoosterSaveModel(b, o->out);
  if (rc) fprintf(stderr, "fraud-train: %s\n", XGBGetLastError());
  if (b) XGBoosterFree(b);
  return rc ? -1 : 0;
}

/* The worker's decision for row k with model score ml. */
static Payments__V1__FraudDecision decision_of(const rules_cfg *rc, const dataset *d, size_t k,
                                               double ml, double *combined) {
  rules_result rr = {.rule_score = d->rule[k], .block = d->rule_block[k],
                     .force_review = d->force_review[k]};
  return rules_decide(rc, &rr, ml, combined);
}

/* Per pattern: what share of the held-out payments the decision holds for
 * review or blocks. */
static void report_patterns(FILE *r, const rules_cfg *rc, const dataset *d, const size_t *te,
                            size_t nte, const double *p) {
  fprintf(r, "\nShare of held-out payments the decision holds for review or blocks, by pattern:\n\n"
             "| pattern | label | payments | review or block | block |\n|---|---|---|---|---|\n");
  GHashTable *seen = g_hash_table_new(g_str_hash, g_str_equal);
  for (size_t i = 0; i < nte; i++) {
    const char *pat = d->pattern[te[i]];
    if (g_hash_table_contains(seen, pat)) continue;
    g_hash_table_add(seen, (gpointer)pat);
    size_t n = 0, flagged = 0, blocked = 0;
    for (size_t j = 0; j < nte; j++) {
      if (strcmp(d->pattern[te[j]], pat) != 0) continue;
      double c;
      Payments__V1__FraudDecision dec = decision_of(rc, d, te[j], p[j], &c);
      n++;
      flagged += dec != PAYMENTS__V1__FRAUD_DECISION__FRAUD_DECISION_ALLOW;
      blocked += dec == PAYMENTS__V1__FRAUD_DECISION__FRAUD_DECISION_BLOCK;
    }
    fprintf(r, "| %s | %d | %zu | %.1f %% | %.1f %% |\n", pat, (int)d->y[te[i]], n,
            100.0 * (double)flagged / (double)n, 100.0 * (double)blocked / (double)n);
  }
  g_hash_table_destroy(seen);
}

/* Scores the held-out rows with the saved model (loaded as the worker
 * loads it) and writes the report. Returns the model's ROC-AUC, or -1. */
static double evaluate(int argc, char **argv, const opts *o, const rules_cfg *rc,
                       const dataset *d, const size_t *te, size_t nte, size_t ntr,
                       const char *version) {
  char err[512];
  fraud_model *m = model_load(o->out, 2, err, sizeof err);
  if (!m) {
    fprintf(stderr, "fraud-train: %s\n", err);
    return -1;
  }
  float *x = malloc(nte * FEATURES_N * sizeof *x);
  double *p = malloc(nte * sizeof *p);
  scored *ml = malloc(nte * sizeof *ml), *comb = malloc(nte * sizeof *comb);
  if (!x || !p || !ml || !comb) abort();
  for (size_t i = 0; i < nte; i++)
    memcpy(&x[i * FEATURES_N], &d->x[te[i] * FEATURES_N], FEATURES_N * sizeof *x);
  double auc_ml = -1;
  if (model_predict(m, x, nte, p, err, sizeof err)) {
    fprintf(stderr, "fraud-train: %s\n", err);
    goto out;
  }
  size_t pos = 0;
  for (size_t i = 0; i < nte; i++) {
    size_t k = te[i];
    double c;
    Payments__V1__FraudDecision dec = decision_of(rc, d, k, p[i], &c);
    ml[i] = (scored){p[i], (int)d->y[k]};
    /* The decision as a score: a rule block counts as certain. */
    comb[i] = (scored){dec == PAYMENTS__V1__FRAUD_DECISION__FRAUD_DECISION_BLOCK && d->rule_block[k] ? 1.0 : c,
                       (int)d->y[k]};
    pos += (size_t)d->y[k];
  }
  FILE *r = o->report ? fopen(o->report, "w") : stdout;
  if (!r) r = stdout;
  fprintf(r, "# Fraud model evaluation\n\nCommand: `fraud-train");
  for (int i = 1; i < argc; i++) fprintf(r, " %s", argv[i]);
  fprintf(r, "` (data set: `fraudgen`, see README \"Fraud\").\n\n");
  fprintf(r, "Model `%s`, features `%s` (%d), %zu training rows, %zu held-out rows "
             "(%zu fraud, %.2f %%), split by customer.\n\n",
          version, FEATURES_VERSION, FEATURES_N, ntr, nte, pos, 100.0 * (double)pos / (double)nte);
  fprintf(r, "| scorer | ROC-AUC | PR-AUC | precision > %.2f | recall > %.2f | precision > %.2f | "
             "recall > %.2f |\n|---|---|---|---|---|---|---|\n",
          rc->review_above, rc->review_above, rc->block_above, rc->block_above);
  const char *names[] = {"model alone", "decision: rules + model"};
  scored *sets[] = {ml, comb};
  for (int s = 0; s < 2; s++) {
    double roc, pr, p1, r1, p2, r2;
    pr_at(sets[s], nte, rc->review_above, &p1, &r1);
    pr_at(sets[s], nte, rc->block_above, &p2, &r2);
    aucs(sets[s], nte, &roc, &pr);
    if (s == 0) auc_ml = roc;
    fprintf(r, "| %s | %.4f | %.4f | %.3f | %.3f | %.3f | %.3f |\n", names[s], roc, pr, p1, r1,
            p2, r2);
  }
  report_patterns(r, rc, d, te, nte, p);
  if (r != stdout) fclose(r);
out:
  model_destroy(m);
  free(x), free(p), free(ml), free(comb);
  return auc_ml;
}

static void dataset_free(dataset *d) {
  for (size_t i = 0; i < d->n; i++) g_free(d->pattern[i]);
  free(d->x), free(d->y), free(d->rule), free(d->rule_block), free(d->force_review),
      free(d->pattern), free(d->test);
}

int main(int argc, char **argv) {
  opts o;
  if (parse_args(argc, argv, &o)) {
    fprintf(stderr, "usage: fraud-train --data FILE|- --out MODEL.json [--rules RULES.yaml]\n"
                    "         [--report REPORT.md] [--rounds N] [--depth D] [--seed S]\n");
    return 2;
  }
  rules_cfg rc;
  char err[512];
  if (o.rules ? rules_config_load(o.rules, &rc, err, sizeof err) : (rules_cfg_default(&rc), 0)) {
    fprintf(stderr, "fraud-train: %s\n", err);
    return 1;
  }
  dataset d = {0};
  if (load(o.data, &rc, &d)) return 1;
  size_t *tr = malloc((d.n + 1) * sizeof *tr), *te = malloc((d.n + 1) * sizeof *te);
  size_t ntr, nte;
  DMatrixHandle dtr = matrix(&d, false, tr, &ntr), dte = matrix(&d, true, te, &nte);
  int rc_ = 1;
  char version[128];
  snprintf(version, sizeof version, "gbt-d%d-r%d-s%ld-n%zu", o.depth, o.rounds, o.seed, ntr);
  if (ntr == 0 || nte == 0) {
    fprintf(stderr, "fraud-train: the data set is too small to split\n");
  } else if (train(&o, dtr, version) == 0) {
    double auc = evaluate(argc, argv, &o, &rc, &d, te, nte, ntr, version);
    if (auc >= 0) {
      fprintf(stderr, "fraud-train: wrote %s (held-out ROC-AUC %.4f)\n", o.out, auc);
      rc_ = 0;
    }
  }
  XGDMatrixFree(dtr);
  XGDMatrixFree(dte);
  dataset_free(&d);
  free(tr);
  free(te);
  return rc_;
}
