/* Unit tests for the fraud model as the worker uses it: the committed model
 * loads, a model trained on other features is refused, and a batch scores
 * in one call with the same result as row by row. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <unistd.h>
#include <string.h>
#include <xgboost/c_api.h>

#include "model.h"

#define MODEL PS_SOURCE_DIR "/models/fraud-model.json"

Test(model, committed_model_loads_with_the_current_feature_version) {
  char err[512];
  fraud_model *m = model_load(MODEL, 1, err, sizeof err);
  cr_assert_not_null(m, "%s", err);
  cr_assert(strncmp(model_version(m), "gbt-", 4) == 0, "%s", model_version(m));
  model_destroy(m);
}

/* An ordinary first payment ($50, card added 90 days ago, same country)
 * and a card-testing payment (9th small charge on a card in the hour, card
 * added minutes ago, another country). */
static void rows(float r[2][FEATURES_N]) {
  fraud_signals a = {.amount_usd = 50, .customer_count_1h = 1, .customer_count_24h = 1,
                     .card_count_1h = 1, .card_count_24h = 1, .distinct_cards_24h = 1,
                     .pm_age_hours = 2160};
  fraud_signals b = {.amount_usd = 2, .customer_count_1h = 9, .customer_count_24h = 9,
                     .card_count_1h = 9, .card_count_24h = 9, .distinct_cards_24h = 9,
                     .history_count = 8, .country_mismatch = true, .pm_age_hours = 0.1};
  features_vector(&a, r[0]);
  features_vector(&b, r[1]);
}

Test(model, scores_a_batch_in_one_call_like_row_by_row) {
  char err[512];
  fraud_model *m = model_load(MODEL, 1, err, sizeof err);
  cr_assert_not_null(m, "%s", err);
  float r[2][FEATURES_N];
  rows(r);
  double batch[2], one[2];
  cr_assert_eq(model_predict(m, &r[0][0], 2, batch, err, sizeof err), 0, "%s", err);
  cr_assert_eq(model_predict(m, r[0], 1, &one[0], err, sizeof err), 0);
  cr_assert_eq(model_predict(m, r[1], 1, &one[1], err, sizeof err), 0);
  cr_assert_float_eq(batch[0], one[0], 1e-9);
  cr_assert_float_eq(batch[1], one[1], 1e-9);
  cr_assert(batch[0] < 0.2, "an ordinary payment scores low: %f", batch[0]);
  cr_assert(batch[1] > 0.8, "card testing scores high: %f", batch[1]);
  cr_assert_eq(model_predict(m, NULL, 0, batch, err, sizeof err), 0, "an empty batch is no call");
  model_destroy(m);
}

Test(model, without_history_an_ordinary_payment_still_scores_low) {
  /* Redis down: the history features are missing (NaN); trained for that. */
  char err[512];
  fraud_model *m = model_load(MODEL, 1, err, sizeof err);
  cr_assert_not_null(m, "%s", err);
  fraud_signals a = {.amount_usd = 50, .pm_age_hours = 2160, .history_unavailable = true};
  fraud_signals b = {.amount_usd = 2, .pm_age_hours = 0.1, .country_mismatch = true,
                     .history_unavailable = true};
  float r[2][FEATURES_N];
  features_vector(&a, r[0]);
  features_vector(&b, r[1]);
  double p[2];
  cr_assert_eq(model_predict(m, &r[0][0], 2, p, err, sizeof err), 0, "%s", err);
  cr_assert(p[0] < 0.2, "ordinary, no history: %f", p[0]);
  cr_assert(p[1] > p[0], "a fresh foreign card still scores higher: %f vs %f", p[1], p[0]);
  model_destroy(m);
}

Test(model, model_of_other_features_is_refused) {
  char err[512], path[] = "/tmp/paystream-model-XXXXXX.json";
  int fd = mkstemps(path, 5);
  cr_assert(fd >= 0);
  close(fd);
  BoosterHandle b;
  cr_assert_eq(XGBoosterCreate(NULL, 0, &b), 0);
  cr_assert_eq(XGBoosterLoadModel(b, MODEL), 0);
  cr_assert_eq(XGBoosterSetAttr(b, MODEL_ATTR_FEATURES, "paystream-fraud-features-v0"), 0);
  cr_assert_eq(XGBoosterSaveModel(b, path), 0);
  XGBoosterFree(b);
  fraud_model *m = model_load(path, 1, err, sizeof err);
  cr_assert_null(m);
  cr_assert(strstr(err, "trained on features 'paystream-fraud-features-v0'"), "%s", err);
  cr_assert(strstr(err, FEATURES_VERSION), "%s", err);
  unlink(path);
}

Test(model, missing_model_file_is_a_clear_error) {
  char err[512];
  cr_assert_null(model_load("/nonexistent/model.json", 1, err, sizeof err));
  cr_assert(strstr(err, "/nonexistent/model.json"), "%s", err);
}

Test(model, committed_model_is_calibrated_and_explains_what_drove_a_score) {
  char err[512];
  fraud_model *m = model_load(MODEL, 1, err, sizeof err);
  cr_assert_not_null(m, "%s", err);
  float r[2][FEATURES_N];
  rows(r);
  const char *why[2 * MODEL_EXPLAIN_TOP];
  cr_assert_eq(model_explain(m, &r[0][0], 2, MODEL_EXPLAIN_MIN, why, err, sizeof err), 0, "%s", err);
  const char *top = why[MODEL_EXPLAIN_TOP];
  cr_assert_not_null(top, "card testing is explained");
  cr_assert(strncmp(top, "model:", 6) == 0, "%s", top);
  bool known = false;
  for (int f = 0; f < FEATURES_N; f++) known |= strcmp(top + 6, features_names[f]) == 0;
  cr_assert(known, "%s names a feature", top);
  /* The rule score maps through the stored calibration: monotone, and a
   * score with no rule firing is a low probability. */
  double r0 = model_calibrate_rules(m, 0.0), r1 = model_calibrate_rules(m, 0.9);
  cr_assert(r0 < 0.1 && r1 > r0, "%f %f", r0, r1);
  cr_assert_float_eq(model_calibrate_rules(NULL, 0.3), 0.3, 1e-12, "rules only: the raw score");
  model_destroy(m);
}

Test(model, a_bad_calibration_is_refused) {
  char err[512], path[] = "/tmp/paystream-model-XXXXXX.json";
  int fd = mkstemps(path, 5);
  cr_assert(fd >= 0);
  close(fd);
  BoosterHandle b;
  cr_assert_eq(XGBoosterCreate(NULL, 0, &b), 0);
  cr_assert_eq(XGBoosterLoadModel(b, MODEL), 0);
  cr_assert_eq(XGBoosterSetAttr(b, MODEL_ATTR_CALIBRATION, "1.5 nonsense"), 0);
  cr_assert_eq(XGBoosterSaveModel(b, path), 0);
  XGBoosterFree(b);
  cr_assert_null(model_load(path, 1, err, sizeof err));
  cr_assert(strstr(err, MODEL_ATTR_CALIBRATION), "%s", err);
  unlink(path);
}
