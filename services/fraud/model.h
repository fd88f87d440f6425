/* model: the gradient-boosted fraud model (XGBoost C API). fraud-train
 * writes it with the feature version it was trained on; the fraud worker
 * loads it at start, refuses one trained on other features, and scores a
 * whole batch in one prediction call. */
#ifndef FRAUD_MODEL_H
#define FRAUD_MODEL_H

#include <stddef.h>

#include "fraud_features.h"

/* Attributes stored in the model file. */
#define MODEL_ATTR_FEATURES "paystream_features"
#define MODEL_ATTR_VERSION "paystream_model_version"

typedef struct fraud_model fraud_model;

/* Loads path; refuses a model whose feature version is not FEATURES_VERSION
 * or whose feature count differs. nthread: prediction threads (0: all).
 * Returns NULL with a message in err. */
fraud_model *model_load(const char *path, int nthread, char *err, size_t errlen);
void model_destroy(fraud_model *m);

/* The model's version (set by fraud-train), e.g. "gbt-20261129-s42". */
const char *model_version(const fraud_model *m);

/* Scores n rows of FEATURES_N features (row-major, NaN = missing) in one
 * call; out receives n probabilities in [0, 1]. Returns 0 or -1. */
int model_predict(fraud_model *m, const float *rows, size_t n, double *out, char *err,
                  size_t errlen);

#endif
