/* model: loading and batch scoring with XGBoost. */
#include "model.h"

#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xgboost/c_api.h>

struct fraud_model {
  BoosterHandle booster;
  char version[128];
  bool calibrated, rules_calibrated;
  uint64_t rules_hash; /* rules_cfg_hash of the rules the rule calibration was fitted with */
  double a, b, ra, rb; /* Platt: model margin, rule score */
};

/* "model:<feature>", the reason a feature gives. */
static char reason_names[FEATURES_N][64];

/* "A B" (model) */
static int parse_platt(const char *s, double *a, double *b) {
  char *end;
  *a = strtod(s, &end);
  if (end == s) return -1;
  const char *p = end;
  *b = strtod(p, &end);
  return end == p || *end || !isfinite(*a) || !isfinite(*b) ? -1 : 0;
}

/* "A B HASH" (rule score; HASH: 16 hex digits) */
static int parse_rule_platt(const char *s, double *a, double *b, uint64_t *hash) {
  char ab[128];
  const char *sp = strrchr(s, ' ');
  if (!sp || (size_t)(sp - s) >= sizeof ab || strlen(sp + 1) != 16) return -1;
  memcpy(ab, s, (size_t)(sp - s));
  ab[sp - s] = '\0';
  char *end;
  *hash = strtoull(sp + 1, &end, 16);
  return *end ? -1 : parse_platt(ab, a, b);
}

static void xgb_err(char *err, size_t errlen, const char *what) {
  snprintf(err, errlen, "%s: %s", what, XGBGetLastError());
}

fraud_model *model_load(const char *path, int nthread, char *err, size_t errlen) {
  fraud_model *m = calloc(1, sizeof *m);
  if (!m) abort();
  const char *attr = NULL;
  char features[128] = "", version[128] = "";
  int have_f = 0, have_v = 0, have_c = 0, have_r = 0;
  bst_ulong nfeat = 0;
  char threads[16];
  snprintf(threads, sizeof threads, "%d", nthread);
  if (XGBoosterCreate(NULL, 0, &m->booster)) {
    xgb_err(err, errlen, "could not create a booster");
    goto err;
  }
  if (XGBoosterLoadModel(m->booster, path)) {
    snprintf(err, errlen, "could not load fraud model %s: %s", path, XGBGetLastError());
    goto err;
  }
  /* GetAttr answers in a buffer the next call reuses: copy each answer. */
  if (XGBoosterGetAttr(m->booster, MODEL_ATTR_FEATURES, &attr, &have_f)) goto attr_err;
  if (have_f) snprintf(features, sizeof features, "%s", attr);
  if (XGBoosterGetAttr(m->booster, MODEL_ATTR_VERSION, &attr, &have_v)) goto attr_err;
  if (have_v) snprintf(version, sizeof version, "%s", attr);
  if (XGBoosterGetAttr(m->booster, MODEL_ATTR_CALIBRATION, &attr, &have_c)) goto attr_err;
  if (have_c && parse_platt(attr, &m->a, &m->b)) {
    snprintf(err, errlen, "fraud model %s: bad %s '%s'", path, MODEL_ATTR_CALIBRATION, attr);
    goto err;
  }
  m->calibrated = have_c;
  if (XGBoosterGetAttr(m->booster, MODEL_ATTR_RULE_CALIBRATION, &attr, &have_r)) goto attr_err;
  if (have_r && parse_rule_platt(attr, &m->ra, &m->rb, &m->rules_hash)) {
    snprintf(err, errlen, "fraud model %s: bad %s '%s'", path, MODEL_ATTR_RULE_CALIBRATION, attr);
    goto err;
  }
  m->rules_calibrated = have_r;
  if (XGBoosterGetNumFeature(m->booster, &nfeat)) goto attr_err;
  if (!have_f || strcmp(features, FEATURES_VERSION) != 0) {
    snprintf(err, errlen,
             "fraud model %s was trained on features '%s', this worker computes '%s': retrain "
             "it with fraud-train",
             path, have_f ? features : "(none)", FEATURES_VERSION);
    goto err;
  }
  if (nfeat != FEATURES_N) {
    snprintf(err, errlen, "fraud model %s expects %lu features, not %d", path,
             (unsigned long)nfeat, FEATURES_N);
    goto err;
  }
  snprintf(m->version, sizeof m->version, "%s", have_v ? version : "unnamed");
  for (int f = 0; f < FEATURES_N; f++)
    snprintf(reason_names[f], sizeof reason_names[f], "model:%s", features_names[f]);
  if (XGBoosterSetParam(m->booster, "nthread", threads)) {
    xgb_err(err, errlen, "could not set nthread");
    goto err;
  }
  return m;
attr_err:
  xgb_err(err, errlen, "could not read the model's attributes");
err:
  model_destroy(m);
  return NULL;
}

void model_destroy(fraud_model *m) {
  if (!m) return;
  if (m->booster) XGBoosterFree(m->booster);
  free(m);
}

const char *model_version(const fraud_model *m) { return m->version; }

static double sigmoid(double x) { return 1.0 / (1.0 + exp(-x)); }

bool model_bind_rules(fraud_model *m, uint64_t rules_hash) {
  if (m->rules_calibrated && m->rules_hash != rules_hash) m->rules_calibrated = false;
  return m->rules_calibrated;
}

double model_calibrate_rules(const fraud_model *m, double r) {
  return m && m->rules_calibrated ? sigmoid(m->ra * r + m->rb) : r;
}

/* Runs one prediction of the kind mask (XGBoost's option_mask: 0
 * probability, 1 margin, 4 contributions); *res is valid until the next
 * call on the booster. Returns 0 or -1. */
static int predict(fraud_model *m, const float *rows, size_t n, int mask, bst_ulong want,
                   const float **res, char *err, size_t errlen) {
  DMatrixHandle d;
  if (XGDMatrixCreateFromMat(rows, (bst_ulong)n, FEATURES_N, NAN, &d)) {
    xgb_err(err, errlen, "could not build the feature matrix");
    return -1;
  }
  bst_ulong len = 0;
  int rc = XGBoosterPredict(m->booster, d, mask, 0, 0, &len, res);
  XGDMatrixFree(d);
  if (rc || len != want) {
    xgb_err(err, errlen, "prediction failed");
    return -1;
  }
  return 0;
}

int model_predict(fraud_model *m, const float *rows, size_t n, double *out, char *err,
                  size_t errlen) {
  if (n == 0) return 0;
  const float *res = NULL;
  if (predict(m, rows, n, m->calibrated ? 1 : 0, n, &res, err, errlen)) return -1;
  for (size_t i = 0; i < n; i++) {
    double p = m->calibrated ? sigmoid(m->a * (double)res[i] + m->b) : (double)res[i];
    out[i] = p < 0 ? 0 : p > 1 ? 1 : p;
  }
  return 0;
}

int model_explain(fraud_model *m, const float *rows, size_t n, double min_contrib,
                  const char **out, char *err, size_t errlen) {
  if (n == 0) return 0;
  const float *res = NULL;
  const size_t w = FEATURES_N + 1; /* the last column is the bias */
  /* 4: contributions; 8: approximate them (Saabas: the path each row takes,
   * O(trees x depth)) instead of TreeSHAP (exact, ~150x slower here). */
  if (predict(m, rows, n, 4 | 8, n * w, &res, err, errlen)) return -1;
  for (size_t i = 0; i < n; i++) {
    const float *c = &res[i * w];
    const char **o = &out[i * MODEL_EXPLAIN_TOP];
    int used[MODEL_EXPLAIN_TOP];
    for (int k = 0; k < MODEL_EXPLAIN_TOP; k++) {
      int best = -1;
      for (int f = 0; f < FEATURES_N; f++) {
        bool taken = false;
        for (int j = 0; j < k; j++) taken |= used[j] == f;
        if (!taken && c[f] >= min_contrib && (best < 0 || c[f] > c[best])) best = f;
      }
      used[k] = best;
      o[k] = best >= 0 ? reason_names[best] : NULL;
    }
  }
  return 0;
}
