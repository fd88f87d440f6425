/* model: loading and batch scoring with XGBoost. */
#include "model.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xgboost/c_api.h>

struct fraud_model {
  BoosterHandle booster;
  char version[128];
};

static void xgb_err(char *err, size_t errlen, const char *what) {
  snprintf(err, errlen, "%s: %s", what, XGBGetLastError());
}

fraud_model *model_load(const char *path, int nthread, char *err, size_t errlen) {
  fraud_model *m = calloc(1, sizeof *m);
  if (!m) abort();
  const char *attr = NULL;
  char features[128] = "", version[128] = "";
  int have_f = 0, have_v = 0;
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

int model_predict(fraud_model *m, const float *rows, size_t n, double *out, char *err,
                  size_t errlen) {
  if (n == 0) return 0;
  DMatrixHandle d;
  if (XGDMatrixCreateFromMat(rows, (bst_ulong)n, FEATURES_N, NAN, &d)) {
    xgb_err(err, errlen, "could not build the feature matrix");
    return -1;
  }
  bst_ulong len = 0;
  const float *res = NULL;
  int rc = XGBoosterPredict(m->booster, d, 0, 0, 0, &len, &res);
  if (rc || len != n) {
    xgb_err(err, errlen, "prediction failed");
    XGDMatrixFree(d);
    return -1;
  }
  for (size_t i = 0; i < n; i++) out[i] = res[i] < 0 ? 0 : res[i] > 1 ? 1 : (double)res[i];
  XGDMatrixFree(d);
  return 0;
}
