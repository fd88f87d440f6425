/* dataset: a labelled data set (fraudgen's or scenariogen's JSON lines)
 * replayed in time order into feature rows. Each customer's, card's and
 * device's history and the card's merchants are kept in memory exactly as
 * the worker keeps them in Redis (same keys' scoping, same members, same
 * windows), and every row's signals come from the worker's own
 * signals_from_history, so training and serving share one code path. */
#ifndef FRAUD_TRAIN_DATASET_H
#define FRAUD_TRAIN_DATASET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "fraud_features.h"
#include "rules.h"

typedef struct dataset {
  float *x;         /* n x FEATURES_N */
  float *y;
  double *rule;     /* raw rule score */
  bool *rule_block; /* a blocking rule fired */
  bool *force_review;
  uint64_t *fired;  /* bit r: rule r fired */
  char **pattern;
  bool *test;       /* held out (a fifth of the customers) */
  bool *degraded;   /* a copy of the row as served with Redis down */
  size_t n, cap;
} dataset;

/* Reads path ("-": stdin). degraded_copies: also add every tenth row as
 * served without Redis (history features missing), outside the held-out
 * part. Returns 0, or -1 with a message printed. */
int dataset_load(const char *path, const rules_cfg *rc, bool degraded_copies, dataset *d);
void dataset_free(dataset *d);

#endif
