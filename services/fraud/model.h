/* model: the gradient-boosted fraud model (XGBoost C API). fraud-train
 * writes it with the feature version it was trained on; the fraud worker
 * loads it at start, refuses one trained on other features, and scores a
 * whole batch in one prediction call. */
#ifndef FRAUD_MODEL_H
#define FRAUD_MODEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "fraud_features.h"

/* Attributes stored in the model file. */
#define MODEL_ATTR_FEATURES "paystream_features"
#define MODEL_ATTR_VERSION "paystream_model_version"
/* Platt scaling fitted by fraud-train: "A B", p = 1 / (1 + exp(-(A *
 * margin + B))) for the model's margin (on held-out rows), and "A B HASH",
 * p = 1 / (1 + exp(-(A * rule_score + B))) for the rule score, valid only
 * for the rules it was fitted with (HASH: rules_cfg_hash, hex). Absent:
 * the model's own probability and the raw rule score. */
#define MODEL_ATTR_CALIBRATION "paystream_calibration"
#define MODEL_ATTR_RULE_CALIBRATION "paystream_rule_calibration"

typedef struct fraud_model fraud_model;

/* Loads path; refuses a model whose feature version is not FEATURES_VERSION
 * or whose feature count differs. nthread: prediction threads (0: all).
 * Returns NULL with a message in err. */
fraud_model *model_load(const char *path, int nthread, char *err, size_t errlen);
void model_destroy(fraud_model *m);

/* The model's version (set by fraud-train), e.g. "gbt-20261129-s42". */
const char *model_version(const fraud_model *m);

/* Scores n rows of FEATURES_N features (row-major, NaN = missing) in one
 * call; out receives n calibrated probabilities in [0, 1]. Returns 0 or -1. */
int model_predict(fraud_model *m, const float *rows, size_t n, double *out, char *err,
                  size_t errlen);

/* Keeps the rule calibration only if it was fitted with these rules
 * (rules_cfg_hash); a rules file that differs gets the raw rule score.
 * Returns whether the rule score is calibrated. */
bool model_bind_rules(fraud_model *m, uint64_t rules_hash);

/* The rule score mapped through the model's rule calibration (identity
 * when the model has none or m is NULL). */
double model_calibrate_rules(const fraud_model *m, double rule_score);

#define MODEL_EXPLAIN_TOP 3
/* A feature is named when it moved the margin by at least this much. */
#define MODEL_EXPLAIN_MIN 0.5

/* For each of n rows, the (at most MODEL_EXPLAIN_TOP) features that pushed
 * its score up most (approximate contributions, margin units, at least
 * min_contrib), strongest first, as static reason strings
 * "model:<feature>"; unused slots NULL. out: n * MODEL_EXPLAIN_TOP.
 * Returns 0 or -1. */
int model_explain(fraud_model *m, const float *rows, size_t n, double min_contrib,
                  const char **out, char *err, size_t errlen);

#endif
