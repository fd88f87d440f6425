/* fraud-train: trains the fraud model from a labelled data set (fraudgen's
 * or scenariogen's) through the XGBoost C API, calibrates it, and measures
 * it — on a held-out fifth of the same data set's customers and, with
 * --eval, on a data set from the other generator (the test that matters:
 * patterns the model never saw). --model evaluates an existing model
 * without training. Rows come from dataset.c, which replays the data set
 * through the worker's own feature code. Monotone constraints
 * (features_monotone) keep the trees from learning a generator's
 * accidents; Platt scaling fitted on the held-out rows makes the model's
 * probability mean what it says, and a second fit does the same for the
 * rule score; both are stored in the model file (model.h). */
#include <glib.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <xgboost/c_api.h>

#include "dataset.h"
#include "fraud_features.h"
#include "model.h"
#include "rules.h"
#include "rules_config.h"

/* The rows of d with test == test (and, when test, not degraded copies). */
static DMatrixHandle matrix(const dataset *d, bool test, size_t *idx, size_t *n) {
  float *x = malloc((d->n + 1) * FEATURES_N * sizeof *x), *y = malloc((d->n + 1) * sizeof *y);
  if (!x || !y) abort();
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
  const char *data, *out, *rules, *report, *eval, *model;
  int rounds, depth;
  long seed;
} opts;

static int parse_args(int argc, char **argv, opts *o) {
  *o = (opts){.rounds = 150, .depth = 5, .seed = 42};
  for (int i = 1; i + 1 < argc; i += 2) {
    const char *a = argv[i], *v = argv[i + 1];
    if (strcmp(a, "--data") == 0) o->data = v;
    else if (strcmp(a, "--out") == 0) o->out = v;
    else if (strcmp(a, "--rules") == 0) o->rules = v;
    else if (strcmp(a, "--report") == 0) o->report = v;
    else if (strcmp(a, "--eval") == 0) o->eval = v;
    else if (strcmp(a, "--model") == 0) o->model = v;
    else if (strcmp(a, "--rounds") == 0) o->rounds = atoi(v);
    else if (strcmp(a, "--depth") == 0) o->depth = atoi(v);
    else if (strcmp(a, "--seed") == 0) o->seed = atol(v);
    else return -1;
  }
  if (argc % 2 == 0 || o->rounds < 1 || o->depth < 1) return -1;
  if (o->model) return o->eval && !o->data && !o->out ? 0 : -1; /* evaluation only */
  return o->data && o->out ? 0 : -1;
}

/* Platt scaling: a, b minimising the log loss of sigmoid(a * s + b) against
 * y, with Platt's smoothed targets (no certainty from finite data). Newton
 * steps on the two parameters. */
static void platt(const double *s, const float *y, size_t n, double *a, double *b) {
  double pos = 0;
  for (size_t i = 0; i < n; i++) pos += y[i];
  double tp = (pos + 1) / (pos + 2), tn = 1 / ((double)n - pos + 2);
  *a = 1, *b = 0;
  for (int it = 0; it < 100; it++) {
    double ga = 0, gb = 0, haa = 1e-9, hab = 0, hbb = 1e-9;
    for (size_t i = 0; i < n; i++) {
      double p = 1 / (1 + exp(-(*a * s[i] + *b))), t = y[i] > 0.5f ? tp : tn, w = p * (1 - p);
      ga += (p - t) * s[i], gb += p - t;
      haa += w * s[i] * s[i], hab += w * s[i], hbb += w;
    }
    double det = haa * hbb - hab * hab;
    if (fabs(det) < 1e-12) break;
    double da = (hbb * ga - hab * gb) / det, db = (haa * gb - hab * ga) / det;
    *a -= da, *b -= db;
    if (fabs(da) < 1e-9 && fabs(db) < 1e-9) break;
  }
}

/* Margins of rows idx[0..n) of d under booster b. */
static void margins(BoosterHandle b, const dataset *d, const size_t *idx, size_t n, double *out) {
  float *x = malloc((n + 1) * FEATURES_N * sizeof *x);
  if (!x) abort();
  for (size_t i = 0; i < n; i++)
    memcpy(&x[i * FEATURES_N], &d->x[idx[i] * FEATURES_N], FEATURES_N * sizeof *x);
  DMatrixHandle m;
  bst_ulong len;
  const float *r;
  if (XGDMatrixCreateFromMat(x, n, FEATURES_N, NAN, &m) || XGBoosterPredict(b, m, 1, 0, 0, &len, &r)) {
    fprintf(stderr, "fraud-train: %s\n", XGBGetLastError());
    exit(1);
  }
  for (size_t i = 0; i < n; i++) out[i] = r[i];
  XGDMatrixFree(m);
  free(x);
}

/* Trains on the training rows, calibrates on the held-out rows (model)
 * and the training rows (rule score), writes the model with its feature
 * version, model version and calibrations. Returns 0 or -1. */
static int train(const opts *o, const rules_cfg *rcfg, const dataset *d, const char *version) {
  size_t *tr = malloc((d->n + 1) * sizeof *tr), *te = malloc((d->n + 1) * sizeof *te), ntr, nte;
  if (!tr || !te) abort();
  DMatrixHandle dtr = matrix(d, false, tr, &ntr), dte = matrix(d, true, te, &nte);
  BoosterHandle b = NULL;
  char sd[24], dp[24], mono[4 * FEATURES_N + 4] = "(";
  snprintf(sd, sizeof sd, "%ld", o->seed);
  snprintf(dp, sizeof dp, "%d", o->depth);
  for (int f = 0; f < FEATURES_N; f++)
    snprintf(mono + strlen(mono), sizeof mono - strlen(mono), "%s%d", f ? "," : "",
             features_monotone[f]);
  strcat(mono, ")");
  const char *params[][2] = {{"objective", "binary:logistic"}, {"eta", "0.1"}, {"max_depth", dp},
                             {"min_child_weight", "3"}, {"subsample", "0.8"},
                             {"colsample_bytree", "0.7"}, {"tree_method", "hist"},
                             {"monotone_constraints", mono}, {"eval_metric", "auc"},
                             {"seed", sd}, {"nthread", "2"}};
  int rc = ntr && nte ? XGBoosterCreate(&dtr, 1, &b) : -1;
  for (size_t i = 0; rc == 0 && i < sizeof params / sizeof params[0]; i++)
    rc = XGBoosterSetParam(b, params[i][0], params[i][1]);
  for (int it = 0; rc == 0 && it < o->rounds; it++) rc = XGBoosterUpdateOneIter(b, it, dtr);
  if (rc == 0) {
    double *mg = malloc((nte + 1) * sizeof *mg), *rs = malloc((ntr + 1) * sizeof *rs), a, c;
    float *y = malloc((nte + ntr + 1) * sizeof *y);
    if (!mg || !rs || !y) abort();
    margins(b, d, te, nte, mg);
    for (size_t i = 0; i < nte; i++) y[i] = d->y[te[i]];
    platt(mg, y, nte, &a, &c);
    char cal[96];
    snprintf(cal, sizeof cal, "%.6f %.6f", a, c);
    rc = XGBoosterSetAttr(b, MODEL_ATTR_CALIBRATION, cal);
    size_t k = 0;
    for (size_t i = 0; i < ntr; i++)
      if (!d->degraded[tr[i]]) rs[k] = d->rule[tr[i]], y[k++] = d->y[tr[i]];
    platt(rs, y, k, &a, &c);
    snprintf(cal, sizeof cal, "%.6f %.6f %016llx", a, c,
             (unsigned long long)rules_cfg_hash(rcfg));
    if (rc == 0) rc = XGBoosterSetAttr(b, MODEL_ATTR_RULE_CALIBRATION, cal);
    free(mg), free(rs), free(y);
  }
  if (rc == 0) rc = XGBoosterSetAttr(b, MODEL_ATTR_FEATURES, FEATURES_VERSION);
  if (rc == 0) rc = XGBoosterSetAttr(b, MODEL_ATTR_VERSION, version);
  if (rc == 0) rc = XGBoosterSaveModel(b, o->out);
  if (rc) fprintf(stderr, "fraud-train: %s\n", ntr && nte ? XGBGetLastError() : "the data set is too small to split");
  if (b) XGBoosterFree(b);
  XGDMatrixFree(dtr);
  XGDMatrixFree(dte);
  free(tr), free(te);
  return rc ? -1 : 0;
}

/* What the worker decides for row k with model probability ml: the rule
 * score mapped through the model's rule calibration, then rules_decide. */
static Payments__V1__FraudDecision decision_of(const rules_cfg *rc, const fraud_model *m,
                                               const dataset *d, size_t k, double ml,
                                               double *combined) {
  rules_result rr = {.rule_score = model_calibrate_rules(m, d->rule[k]), .block = d->rule_block[k],
                     .force_review = d->force_review[k]};
  return rules_decide(rc, &rr, ml, combined);
}

typedef struct evalset {
  const char *title, *model_path;
  const dataset *d;
  size_t *rows, n;
  double *p; /* calibrated model probability per row */
} evalset;

/* The decision as an index: 0 allow, 1 review, 2 block. */
static int decision_index(Payments__V1__FraudDecision d) {
  return d == PAYMENTS__V1__FRAUD_DECISION__FRAUD_DECISION_BLOCK    ? 2
         : d == PAYMENTS__V1__FRAUD_DECISION__FRAUD_DECISION_REVIEW ? 1
                                                                    : 0;
}

/* Per pattern: allowed, held for review, blocked, and the rules that fire
 * most often on its payments (the ones it is caught by, or, for a
 * legitimate pattern, wrongly held by). */
static void report_patterns(FILE *r, const rules_cfg *rc, const fraud_model *m, const evalset *e) {
  fprintf(r, "\n| pattern | label | payments | allowed | review | blocked | rules firing most (share of its payments) |\n"
             "|---|---|---|---|---|---|---|\n");
  GHashTable *seen = g_hash_table_new(g_str_hash, g_str_equal);
  for (int label = 1; label >= 0; label--)
    for (size_t i = 0; i < e->n; i++) {
      const char *pat = e->d->pattern[e->rows[i]];
      if ((int)e->d->y[e->rows[i]] != label || g_hash_table_contains(seen, pat)) continue;
      g_hash_table_add(seen, (gpointer)pat);
      size_t n = 0, dec[3] = {0}, fired[RULES_N] = {0};
      for (size_t j = 0; j < e->n; j++) {
        size_t k = e->rows[j];
        if (strcmp(e->d->pattern[k], pat) != 0) continue;
        double c;
        n++;
        dec[decision_index(decision_of(rc, m, e->d, k, e->p[j], &c))]++;
        for (int id = 0; id < RULES_N; id++) fired[id] += (e->d->fired[k] >> id) & 1;
      }
      char top[256] = "";
      for (int t = 0; t < 3; t++) {
        int best = -1;
        for (int id = 0; id < RULES_N; id++)
          if (fired[id] && (best < 0 || fired[id] > fired[best])) best = id;
        if (best < 0 || fired[best] * 100 < n) break;
        snprintf(top + strlen(top), sizeof top - strlen(top), "%s%s %.0f %%", t ? ", " : "",
                 rule_name((rule_id)best), 100.0 * (double)fired[best] / (double)n);
        fired[best] = 0;
      }
      fprintf(r, "| %s | %d | %zu | %.1f %% | %.1f %% | %.1f %% | %s |\n", pat, label, n,
              100.0 * (double)dec[0] / (double)n, 100.0 * (double)dec[1] / (double)n,
              100.0 * (double)dec[2] / (double)n, top);
    }
  g_hash_table_destroy(seen);
}

/* Observed fraud rate per band of the calibrated model probability and of
 * the combined score: do 0.5 and 0.8 mean what they say? */
static void report_calibration(FILE *r, const rules_cfg *rc, const fraud_model *m, const evalset *e) {
  const double edges[] = {0, 0.1, 0.3, 0.5, 0.8, 1.0001};
  fprintf(r, "\n| band | rows (model) | fraud rate (model) | rows (combined) | fraud rate (combined) |\n"
             "|---|---|---|---|---|\n");
  for (int b = 0; b < 5; b++) {
    double n[2] = {0}, f[2] = {0};
    for (size_t i = 0; i < e->n; i++) {
      size_t k = e->rows[i];
      double c;
      decision_of(rc, m, e->d, k, e->p[i], &c);
      double v[2] = {e->p[i], e->d->rule_block[k] ? 1.0 : c};
      for (int s = 0; s < 2; s++)
        if (v[s] >= edges[b] && v[s] < edges[b + 1]) n[s]++, f[s] += e->d->y[k];
    }
    fprintf(r, "| %.1f-%.1f | %.0f | %s%.1f %% | %.0f | %.1f %% |\n", edges[b],
            edges[b + 1] > 1 ? 1.0 : edges[b + 1], n[0], "", n[0] ? 100 * f[0] / n[0] : 0, n[1],
            n[1] ? 100 * f[1] / n[1] : 0);
  }
}

static double cpu_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int by_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

/* The worker's per-batch model work, as CPU time (what the machine's load
 * cannot inflate): batches of 500 rows, one prediction thread, one
 * prediction call plus the explanation of the rows the decision holds or
 * blocks. p50 / p99 over the batches. */
static void report_batch_cost(FILE *r, const rules_cfg *rc, const evalset *e,
                              const float *x) {
  char err[512];
  fraud_model *m = model_load(e->model_path, 1, err, sizeof err);
  if (!m) return;
  model_bind_rules(m, rules_cfg_hash(rc));
  const size_t B = 500;
  size_t nb = (e->n + B - 1) / B;
  double *cost = malloc((nb + 1) * sizeof *cost), *p = malloc(B * sizeof *p);
  float *sel = malloc(B * FEATURES_N * sizeof *sel);
  const char **why = malloc(B * MODEL_EXPLAIN_TOP * sizeof *why);
  if (!cost || !p || !sel || !why) abort();
  for (size_t b = 0; b < nb; b++) {
    size_t lo = b * B, n = e->n - lo < B ? e->n - lo : B, k = 0;
    double t0 = cpu_now();
    model_predict(m, &x[lo * FEATURES_N], n, p, err, sizeof err);
    for (size_t i = 0; i < n; i++) {
      double c;
      if (decision_index(decision_of(rc, m, e->d, e->rows[lo + i], p[i], &c)) == 0) continue;
      memcpy(&sel[k++ * FEATURES_N], &x[(lo + i) * FEATURES_N], FEATURES_N * sizeof *sel);
    }
    if (k) model_explain(m, sel, k, MODEL_EXPLAIN_MIN, why, err, sizeof err);
    cost[b] = (cpu_now() - t0) * 1000.0;
  }
  qsort(cost, nb, sizeof *cost, by_double);
  fprintf(r, "Per batch of %zu (one prediction thread, prediction + explanations of the held "
             "and blocked), CPU time over %zu batches: p50 %.2f ms, p99 %.2f ms.\n",
          B, nb, cost[nb / 2], cost[(size_t)(0.99 * (double)(nb - 1) + 0.5)]);
  free(cost), free(p), free(sel), free(why);
  model_destroy(m);
}

/* Scores e's rows with m; writes the summary, per-pattern and calibration
 * tables. Returns the model's ROC-AUC. */
static double report_set(FILE *r, const rules_cfg *rc, fraud_model *m, evalset *e) {
  float *x = malloc((e->n + 1) * FEATURES_N * sizeof *x);
  scored *ml = malloc((e->n + 1) * sizeof *ml), *comb = malloc((e->n + 1) * sizeof *comb);
  const char **why = malloc((e->n * MODEL_EXPLAIN_TOP + 1) * sizeof *why);
  e->p = malloc((e->n + 1) * sizeof *e->p);
  if (!x || !ml || !comb || !why || !e->p) abort();
  for (size_t i = 0; i < e->n; i++)
    memcpy(&x[i * FEATURES_N], &e->d->x[e->rows[i] * FEATURES_N], FEATURES_N * sizeof *x);
  char err[512];
  struct timespec t0, t1, t2;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  if (model_predict(m, x, e->n, e->p, err, sizeof err)) {
    fprintf(stderr, "fraud-train: %s\n", err);
    exit(1);
  }
  clock_gettime(CLOCK_MONOTONIC, &t1);
  if (model_explain(m, x, e->n, MODEL_EXPLAIN_MIN, why, err, sizeof err)) {
    fprintf(stderr, "fraud-train: %s\n", err);
    exit(1);
  }
  clock_gettime(CLOCK_MONOTONIC, &t2);
  double tp = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
  double tx = (double)(t2.tv_sec - t1.tv_sec) + (double)(t2.tv_nsec - t1.tv_nsec) / 1e9;
  size_t pos = 0, neg = 0, caught = 0, lblock = 0, lreview = 0;
  for (size_t i = 0; i < e->n; i++) {
    size_t k = e->rows[i];
    double c;
    Payments__V1__FraudDecision dec = decision_of(rc, m, e->d, k, e->p[i], &c);
    int y = (int)e->d->y[k];
    ml[i] = (scored){e->p[i], y};
    comb[i] = (scored){e->d->rule_block[k] ? 1.0 : c, y};
    bool flagged = dec != PAYMENTS__V1__FRAUD_DECISION__FRAUD_DECISION_ALLOW;
    bool blocked = dec == PAYMENTS__V1__FRAUD_DECISION__FRAUD_DECISION_BLOCK;
    if (y) pos++, caught += flagged;
    else neg++, lblock += blocked, lreview += flagged && !blocked;
  }
  fprintf(r, "\n## %s\n\n%zu payments, %zu fraud (%.2f %%). Fraud held or blocked: **%.1f %%**; "
             "legitimate blocked: **%.2f %%**, held for review: **%.2f %%**.\n\n",
          e->title, e->n, pos, 100.0 * (double)pos / (double)e->n,
          pos ? 100.0 * (double)caught / (double)pos : 0, neg ? 100.0 * (double)lblock / (double)neg : 0,
          neg ? 100.0 * (double)lreview / (double)neg : 0);
  fprintf(r, "| scorer | ROC-AUC | PR-AUC | precision > %.2f | recall > %.2f | precision > %.2f | "
             "recall > %.2f |\n|---|---|---|---|---|---|---|\n",
          rc->review_above, rc->review_above, rc->block_above, rc->block_above);
  const char *names[] = {"model alone (calibrated)", "decision: rules + model"};
  scored *sets[] = {ml, comb};
  double auc_ml = 0;
  for (int s = 0; s < 2; s++) {
    double roc, pr, p1, r1, p2, r2;
    pr_at(sets[s], e->n, rc->review_above, &p1, &r1);
    pr_at(sets[s], e->n, rc->block_above, &p2, &r2);
    aucs(sets[s], e->n, &roc, &pr);
    if (s == 0) auc_ml = roc;
    fprintf(r, "| %s | %.4f | %.4f | %.3f | %.3f | %.3f | %.3f |\n", names[s], roc, pr, p1, r1,
            p2, r2);
  }
  report_patterns(r, rc, m, e);
  report_calibration(r, rc, m, e);
  /* FRAUD_TRAIN_DUMP: every row's pattern, label, decision (0 allow, 1
   * review, 2 block), model probability, combined score, rules and
   * features, in the data set's order (fraud_pipeline.sh compares columns 3
   * and 4 with the live assessments, payment by payment). */
  const char *dump = getenv("FRAUD_TRAIN_DUMP");
  FILE *df = dump && *dump ? fopen(dump, "w") : NULL;
  for (size_t i = 0; df && i < e->n; i++) {
    size_t k = e->rows[i];
    double c;
    int dec = decision_index(decision_of(rc, m, e->d, k, e->p[i], &c)); /* before c is read */
    fprintf(df, "%s\t%d\t%d\t%.3f\t%.3f\t", e->d->pattern[k], (int)e->d->y[k], dec, e->p[i], c);
    for (int id = 0; id < RULES_N; id++)
      if ((e->d->fired[k] >> id) & 1) fprintf(df, "%s,", rule_name((rule_id)id));
    for (int f = 0; f < FEATURES_N; f++) fprintf(df, "\t%s=%.3g", features_names[f], e->d->x[k * FEATURES_N + f]);
    fputc('\n', df);
  }
  if (df) fclose(df);
  fprintf(r, "\nScoring cost on these %zu rows (2 threads): prediction %.1f µs/row, "
             "explanation (approximate contributions, every row) %.1f µs/row.\n",
          e->n, 1e6 * tp / (double)e->n, 1e6 * tx / (double)e->n);
  report_batch_cost(r, rc, e, x);
  free(x), free(ml), free(comb), free(why), free(e->p);
  e->p = NULL;
  return auc_ml;
}

int main(int argc, char **argv) {
  opts o;
  if (parse_args(argc, argv, &o)) {
    fprintf(stderr,
            "usage: fraud-train --data FILE|- --out MODEL.json [--eval OTHER.jsonl]\n"
            "         [--rules RULES.yaml] [--report REPORT.md] [--rounds N] [--depth D] [--seed S]\n"
            "       fraud-train --model MODEL.json --eval DATA.jsonl [--rules RULES.yaml] [--report REPORT.md]\n");
    return 2;
  }
  rules_cfg rc;
  char err[512], version[128] = "";
  if (o.rules ? rules_config_load(o.rules, &rc, err, sizeof err) : (rules_cfg_default(&rc), 0)) {
    fprintf(stderr, "fraud-train: %s\n", err);
    return 1;
  }
  dataset d = {0}, e = {0};
  if (o.data && dataset_load(o.data, &rc, true, &d)) return 1;
  if (o.eval && dataset_load(o.eval, &rc, false, &e)) return 1;
  size_t ntr = 0;
  for (size_t i = 0; i < d.n; i++) ntr += !d.test[i];
  if (o.data) {
    snprintf(version, sizeof version, "gbt-d%d-r%d-s%ld-n%zu", o.depth, o.rounds, o.seed, ntr);
    if (train(&o, &rc, &d, version)) return 1;
  }
  const char *path = o.model ? o.model : o.out;
  fraud_model *m = model_load(path, 2, err, sizeof err);
  if (!m) {
    fprintf(stderr, "fraud-train: %s\n", err);
    return 1;
  }
  if (!model_bind_rules(m, rules_cfg_hash(&rc)))
    fprintf(stderr, "fraud-train: the model's rule calibration is not for these rules: raw rule score\n");
  FILE *r = o.report ? fopen(o.report, "w") : stdout;
  if (!r) r = stdout;
  fprintf(r, "# Fraud model evaluation\n\nCommand: `fraud-train");
  for (int i = 1; i < argc; i++) fprintf(r, " %s", argv[i]);
  fprintf(r, "`\n\nModel `%s`, features `%s` (%d). Decision: combined = %.1f × rule score + "
             "%.1f × model probability (both calibrated); > %.2f block, > %.2f review.\n",
          model_version(m), FEATURES_VERSION, FEATURES_N, rc.weight_rules, rc.weight_ml,
          rc.block_above, rc.review_above);
  double auc = -1;
  if (o.data) {
    evalset h = {"Held out: a fifth of the training data set's customers", path, &d, NULL, 0, NULL};
    h.rows = malloc((d.n + 1) * sizeof *h.rows);
    for (size_t i = 0; i < d.n; i++)
      if (d.test[i]) h.rows[h.n++] = i;
    fprintf(r, "\nTrained on `%s`: %zu rows (a tenth repeated as served without Redis).\n", o.data, ntr);
    auc = report_set(r, &rc, m, &h);
    free(h.rows);
  }
  if (o.eval) {
    char title[512];
    snprintf(title, sizeof title, "Evaluated on `%s`, every payment", o.eval);
    evalset x = {title, path, &e, NULL, 0, NULL};
    x.rows = malloc((e.n + 1) * sizeof *x.rows);
    for (size_t i = 0; i < e.n; i++) x.rows[x.n++] = i;
    double a2 = report_set(r, &rc, m, &x);
    if (auc < 0) auc = a2;
    free(x.rows);
  }
  if (r != stdout) fclose(r);
  fprintf(stderr, "fraud-train: %s %s (ROC-AUC %.4f)\n", o.data ? "wrote" : "evaluated", path, auc);
  model_destroy(m);
  dataset_free(&d);
  dataset_free(&e);
  return 0;
}
