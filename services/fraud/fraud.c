/* fraud: rules over Redis history, then the model over the whole batch;
 * stored assessments and review decisions are re-emitted, never re-scored. */
#include "fraud.h"

#include <glib.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fraud_history.h"
#include "isolate.h"
#include "log.h"
#include "metrics.h"
#include "model.h"
#include "rules.h"
#include "rules_config.h"

typedef struct fraud_state {
  rules_cfg rules;
  fraud_model *model; /* NULL: rules only (PAYSTREAM_FRAUD_MODEL=none) */
  metric *m_model_rows, *m_model_seconds, *m_decisions[3];
  double last_model_s; /* the last batch's prediction (and explanation) time */
  double last_score_s; /* the last batch's rules + model time */
  double last_read_s, last_redis_s, last_store_s; /* its Postgres read, Redis, Postgres store */
  double last_score_cpu_s; /* rules + model as this thread's CPU time (what load cannot inflate) */
} fraud_state;

static double thread_cpu_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

typedef struct fitem {
  stage_msg *m;
  bool known;               /* payment row exists */
  bool assessed;            /* an assessment is stored */
  ps_fraud *stored;         /* decoded stored assessment */
  char *outcome_hex;        /* stored terminal outcome, if any */
  char review[8];           /* "approve", "reject" or "" */
  ps_fraud *approved;       /* the assessment forwarded on approval */
  fraud_signals sig;
  rules_result rr;
  double ml;
  const char *model_version;
  uint8_t *assessment;      /* packed new assessment */
  size_t assessment_len;
  Payments__V1__FraudDecision decision;
  double combined;
  char *block_outcome_hex;  /* outcome to store when blocking */
  bool dead;                /* refused by the database even when ending it: DLQ */
  char reason[256];         /* why, for the DLQ */
} fitem;

static const char SQL_READ[] =
    "SELECT u.ord, encode(a.assessment, 'hex'), encode(p.outcome, 'hex'), r.decision,"
    " encode(r.assessment, 'hex')"
    " FROM unnest($1::text[]) WITH ORDINALITY AS u(id, ord)"
    " JOIN payments p ON p.payment_id = u.id"
    " LEFT JOIN fraud_assessments a ON a.payment_id = u.id"
    " LEFT JOIN fraud_reviews r ON r.payment_id = u.id";

static const char SQL_STORE[] =
    "INSERT INTO fraud_assessments (payment_id, decision, rule_score, ml_score, combined_score,"
    " reasons, model_version, assessment)"
    " SELECT id, d, rs, ms, cs, string_to_array(r, ','), mv, decode(a, 'hex')"
    " FROM unnest($1::text[], $2::text[], $3::float8[], $4::float8[], $5::float8[], $6::text[],"
    " $7::text[], $8::text[]) AS u(id, d, rs, ms, cs, r, mv, a)"
    " ON CONFLICT (payment_id) DO NOTHING RETURNING payment_id";

/* Moves payments out of `received` according to their stored decision. */
static const char SQL_TRANSITION[] =
    "UPDATE payments p SET status = CASE a.decision WHEN 'allow' THEN 'scored'"
    "   WHEN 'review' THEN 'review' ELSE 'blocked' END,"
    " outcome = CASE a.decision WHEN 'block' THEN decode(u.o, 'hex') END,"
    " error_code = CASE a.decision WHEN 'block' THEN 'fraud_blocked' END,"
    " updated_at = now()"
    " FROM unnest($1::text[], $2::text[]) AS u(id, o), fraud_assessments a"
    " WHERE p.payment_id = u.id AND a.payment_id = u.id AND p.status = 'received'";

static void free_items(fitem *it, size_t n) {
  for (size_t i = 0; i < n; i++) {
    if (it[i].stored) payments__v1__fraud_assessment__free_unpacked(it[i].stored, NULL);
    if (it[i].approved) payments__v1__fraud_assessment__free_unpacked(it[i].approved, NULL);
    free(it[i].outcome_hex);
    free(it[i].assessment);
    free(it[i].block_outcome_hex);
  }
  free(it);
}

static ps_fraud *unpack_hex(const char *hex) {
  size_t len;
  uint8_t *b = hex_decode(hex, &len);
  ps_fraud *fa = b ? payments__v1__fraud_assessment__unpack(NULL, len, b) : NULL;
  free(b);
  return fa;
}

/* Reads stored assessments, outcomes and review decisions for the batch.
 * Returns 0 or -1. */
static int read_stored(stage_ctx *ctx, fitem *it, size_t n) {
  pg_array ids;
  pg_array_init(&ids);
  for (size_t i = 0; i < n; i++) pg_array_add_str(&ids, it[i].m->ev->payment_id);
  const char *p[] = {pg_array_finish(&ids)};
  char err[512];
  pg_stmt st = {SQL_READ, 1, p};
  PGresult *r;
  int rc = pg_pipeline(&ctx->pg, &st, 1, &r, err, sizeof err);
  pg_array_free(&ids);
  if (rc) {
    log_warn("reading assessments failed: %s", err);
    return -1;
  }
  for (int row = 0; row < PQntuples(r); row++) {
    long ord = strtol(PQgetvalue(r, row, 0), NULL, 10);
    if (ord < 1 || (size_t)ord > n) continue;
    fitem *x = &it[ord - 1];
    x->known = true;
    if (!PQgetisnull(r, row, 1) && !x->stored) {
      x->stored = unpack_hex(PQgetvalue(r, row, 1));
      x->assessed = x->stored != NULL;
    }
    free(x->outcome_hex);
    x->outcome_hex = PQgetisnull(r, row, 2) ? NULL : strdup(PQgetvalue(r, row, 2));
    /* Ended without an assessment (isolated): nothing to score, its stored
     * outcome is re-sent. */
    if (!x->stored && x->outcome_hex) x->assessed = true;
    snprintf(x->review, sizeof x->review, "%s", PQgetvalue(r, row, 3));
    if (!PQgetisnull(r, row, 4) && !x->approved) x->approved = unpack_hex(PQgetvalue(r, row, 4));
  }
  PQclear(r);
  return 0;
}

/* Every Redis signal of the batch's fresh payments (fraud_history.c). */
static void gather_signals(stage_ctx *ctx, fitem *it, size_t n) {
  const ps_event **evs = calloc(n + 1, sizeof *evs);
  fraud_signals **sigs = calloc(n + 1, sizeof *sigs);
  if (!evs || !sigs) abort();
  size_t k = 0;
  for (size_t i = 0; i < n; i++) {
    if (!it[i].known || it[i].assessed) continue;
    evs[k] = it[i].m->ev;
    sigs[k++] = &it[i].sig;
  }
  if (k > 0) history_gather(&ctx->redis, evs, sigs, k);
  free(evs);
  free(sigs);
}

/* Names the model features that drove each score the decision does not
 * allow (allowed payments need no explanation, and contributions cost
 * several times a prediction): "model:<feature>" reasons after the rules'. */
static void explain(fraud_state *st, fitem *it, const size_t *idx, size_t k, const float *rows) {
  float *sel = calloc(k * FEATURES_N + 1, sizeof *sel);
  size_t *which = calloc(k + 1, sizeof *which), m = 0;
  const char **why = calloc(k * MODEL_EXPLAIN_TOP + 1, sizeof *why);
  if (!sel || !which || !why) abort();
  for (size_t j = 0; j < k; j++) {
    fitem *x = &it[idx[j]];
    double combined;
    if (rules_decide(&st->rules, &x->rr, x->ml, &combined) ==
        PAYMENTS__V1__FRAUD_DECISION__FRAUD_DECISION_ALLOW)
      continue;
    memcpy(&sel[m * FEATURES_N], &rows[j * FEATURES_N], FEATURES_N * sizeof *sel);
    which[m++] = idx[j];
  }
  char err[512];
  if (m > 0 && model_explain(st->model, sel, m, MODEL_EXPLAIN_MIN, why, err, sizeof err) == 0) {
    for (size_t j = 0; j < m; j++) {
      rules_result *rr = &it[which[j]].rr;
      for (int t = 0; t < MODEL_EXPLAIN_TOP; t++)
        if (why[j * MODEL_EXPLAIN_TOP + t] && rr->nreasons < RULES_MAX_REASONS)
          rr->reasons[rr->nreasons++] = why[j * MODEL_EXPLAIN_TOP + t];
    }
  } else if (m > 0) {
    log_warn("fraud model explanation failed (scores kept): %s", err);
  }
  free(sel), free(which), free(why);
}

/* Rules for every fresh payment, then one model call for those no rule
 * blocked outright. The rule score goes through the model's calibration
 * (model.h) so both halves of the blend are probabilities. Returns 0, or
 * -1 when the model failed (retried). */
static int score(fraud_state *st, fitem *it, size_t n) {
  double t_rules = metrics_now(), c_rules = thread_cpu_now();
  float *rows = calloc(n * FEATURES_N + 1, sizeof *rows);
  double *out = calloc(n + 1, sizeof *out);
  size_t *idx = calloc(n + 1, sizeof *idx), k = 0;
  if (!rows || !out || !idx) abort();
  for (size_t i = 0; i < n; i++) {
    fitem *x = &it[i];
    if (!x->known || x->assessed) continue;
    rules_evaluate(&st->rules, &x->sig, &x->rr);
    x->model_version = x->rr.block ? "skipped" : st->model ? model_version(st->model) : "none";
    if (x->rr.block || !st->model) continue;
    x->rr.rule_score = model_calibrate_rules(st->model, x->rr.rule_score);
    features_vector(&x->sig, &rows[k * FEATURES_N]);
    idx[k++] = i;
  }
  int rc = 0;
  st->last_model_s = 0;
  if (k > 0) {
    char err[512];
    double t0 = metrics_now();
    rc = model_predict(st->model, rows, k, out, err, sizeof err);
    if (rc) log_error("fraud model failed: %s", err);
    for (size_t j = 0; rc == 0 && j < k; j++) it[idx[j]].ml = out[j];
    /* A model with no weight drove nothing: nothing to explain. */
    if (rc == 0 && st->rules.weight_ml > 0) explain(st, it, idx, k, rows);
    st->last_model_s = metrics_now() - t0;
    metric_observe(st->m_model_seconds, st->last_model_s);
    metric_add(st->m_model_rows, (double)k);
  }
  st->last_score_s = metrics_now() - t_rules;
  st->last_score_cpu_s = thread_cpu_now() - c_rules;
  free(rows);
  free(out);
  free(idx);
  return rc;
}

static void assess(fraud_state *st, fitem *x) {
  const ps_event *ev = x->m->ev;
  x->decision = rules_decide(&st->rules, &x->rr, x->ml, &x->combined);
  metric_add(st->m_decisions[x->decision == PAYMENTS__V1__FRAUD_DECISION__FRAUD_DECISION_BLOCK    ? 2
                             : x->decision == PAYMENTS__V1__FRAUD_DECISION__FRAUD_DECISION_REVIEW ? 1
                                                                                                  : 0],
             1);
  ps_fraud fa = PAYMENTS__V1__FRAUD_ASSESSMENT__INIT;
  fa.rule_score = x->rr.rule_score;
  fa.ml_score = x->ml;
  fa.combined_score = x->combined;
  fa.decision = x->decision;
  fa.n_reasons = x->rr.nreasons;
  fa.reasons = (char **)x->rr.reasons;
  fa.model_version = (char *)x->model_version;
  x->assessment_len = payments__v1__fraud_assessment__get_packed_size(&fa);
  x->assessment = malloc(x->assessment_len + 1);
  if (!x->assessment) abort();
  payments__v1__fraud_assessment__pack(&fa, x->assessment);

  if (x->decision == PAYMENTS__V1__FRAUD_DECISION__FRAUD_DECISION_BLOCK) {
    char msg[256] = "blocked by fraud rules:";
    if (!x->rr.block) snprintf(msg, sizeof msg, "blocked by fraud score %.3f:", x->combined);
    for (size_t i = 0; i < x->rr.nreasons; i++) {
      strncat(msg, " ", sizeof msg - strlen(msg) - 1);
      strncat(msg, x->rr.reasons[i], sizeof msg - strlen(msg) - 1);
    }
    outcome_buf ob;
    outcome_from_event(&ob, ev, OUTCOME_BLOCKED, "fraud_blocked", msg);
    x->block_outcome_hex = outcome_pack_hex(&ob.o);
  }
}

/* What our INSERT stored is what the database holds: the assessment as
 * packed, and (blocked) the outcome the transition wrote. */
static void adopt(fitem *x) {
  x->stored = payments__v1__fraud_assessment__unpack(NULL, x->assessment_len, x->assessment);
  x->assessed = x->stored != NULL;
  free(x->outcome_hex);
  x->outcome_hex = x->block_outcome_hex ? strdup(x->block_outcome_hex) : NULL;
}

/* Stores new assessments and moves payments on, in one transaction. Items
 * whose assessment was stored take it as theirs; *conflicts counts those
 * another instance assessed first (read back by the caller). */
static int store(stage_ctx *ctx, fitem *it, size_t n, size_t *conflicts, char *err,
                 size_t errlen) {
  pg_array a[8], t[2];
  pg_arrays_init(a, 8);
  pg_arrays_init(t, 2);
  for (size_t i = 0; i < n; i++) {
    fitem *x = &it[i];
    if (!x->known) continue;
    pg_array_add_str(&t[0], x->m->ev->payment_id);
    pg_array_add_str(&t[1], x->block_outcome_hex);
    if (x->assessed || !x->assessment) continue;
    char reasons[RULES_MAX_REASONS * 48] = "", num[3][32], *hex = malloc(2 * x->assessment_len + 1);
    if (!hex) abort();
    for (size_t k = 0; k < x->rr.nreasons; k++)
      snprintf(reasons + strlen(reasons), sizeof reasons - strlen(reasons), "%s%s", k ? "," : "",
               x->rr.reasons[k]);
    hex_encode(x->assessment, x->assessment_len, hex);
    snprintf(num[0], 32, "%.17g", x->rr.rule_score);
    snprintf(num[1], 32, "%.17g", x->ml);
    snprintf(num[2], 32, "%.17g", x->combined);
    pg_array_add_str(&a[0], x->m->ev->payment_id);
    pg_array_add_str(&a[1], rules_decision_name(x->decision));
    pg_array_add_str(&a[2], num[0]);
    pg_array_add_str(&a[3], num[1]);
    pg_array_add_str(&a[4], num[2]);
    pg_array_add_str(&a[5], reasons);
    pg_array_add_str(&a[6], x->model_version);
    pg_array_add_str(&a[7], hex);
    free(hex);
  }
  const char *pa[8], *pt[2];
  pg_arrays_finish(a, 8, pa);
  pg_arrays_finish(t, 2, pt);
  pg_stmt stmts[] = {{SQL_STORE, 8, pa}, {SQL_TRANSITION, 2, pt}};
  PGresult *res[2];
  int rc = pg_pipeline(&ctx->pg, stmts, 2, res, err, errlen);
  if (rc) log_warn("storing %zu assessments failed: %s", n, err);
  *conflicts = 0;
  if (rc == 0) {
    GHashTable *ours = g_hash_table_new(g_str_hash, g_str_equal);
    for (int row = 0; row < PQntuples(res[0]); row++)
      g_hash_table_add(ours, PQgetvalue(res[0], row, 0));
    for (size_t i = 0; i < n; i++) {
      fitem *x = &it[i];
      if (!x->known || x->assessed || !x->assessment) continue;
      if (g_hash_table_contains(ours, x->m->ev->payment_id)) adopt(x);
      else (*conflicts)++;
    }
    g_hash_table_destroy(ours);
  }
  pg_results_clear(res, 2);
  pg_arrays_free(a, 8);
  pg_arrays_free(t, 2);
  return rc;
}

/* The batch as isolate_bisect sees it: store() over a slice. */
typedef struct fbatch {
  stage_ctx *ctx;
  fitem *it;
  size_t conflicts;
} fbatch;

static int store_range(void *arg, size_t from, size_t n, char *err, size_t errlen) {
  fbatch *b = arg;
  size_t conflicts = 0;
  int rc = store(b->ctx, b->it + from, n, &conflicts, err, errlen);
  b->conflicts += conflicts;
  return rc;
}

/* A payment whose assessment the database refuses on its own. Nothing was
 * charged, so it ends `failed` with a code and an outcome (the client may
 * retry with a new key); when even that is refused it goes to the DLQ. */
static const char SQL_REFUSED[] =
    "UPDATE payments SET status = 'failed', error_code = 'fraud_store_refused',"
    " outcome = decode($2, 'hex'), updated_at = now()"
    " WHERE payment_id = $1 AND status = 'received'";

static int isolate_store(void *arg, size_t i, const char *why) {
  fbatch *b = arg;
  fitem *x = &b->it[i];
  const ps_event *ev = x->m->ev;
  log_ctx lc = {x->m->topic, x->m->partition, x->m->offset, ev->payment_id,
                ev->intent->idempotency_key};
  log_at(LOG_ERROR, &lc, "ALERT postgres refused this payment's assessment on its own: %s", why);
  outcome_buf ob;
  outcome_from_event(&ob, ev, OUTCOME_FAILED, "fraud_store_refused",
                     "the fraud assessment could not be stored; not charged");
  char *hex = outcome_pack_hex(&ob.o);
  const char *p[] = {ev->payment_id, hex};
  char err[512];
  PGresult *r = pg_exec(&b->ctx->pg, SQL_REFUSED, 2, p, err, sizeof err);
  free(hex);
  if (!r && !pg_err_is_data_error(err)) return -1;
  PQclear(r);
  free(x->assessment); /* never stored: never emitted */
  x->assessment = NULL;
  if (!r) {
    log_at(LOG_ERROR, &lc, "ALERT ending it was refused too (%s): dead-lettered", err);
    x->dead = true;
    snprintf(x->reason, sizeof x->reason, "postgres refused the assessment: %.200s", why);
    return 0;
  }
  return read_stored(b->ctx, x, 1); /* its outcome, whoever ended it */
}

static const isolate_ops store_ops = {store_range, isolate_store};

static int forward(stage_ctx *ctx, ps_event *ev, const ps_fraud *fa, outbox *out) {
  ps_fraud *saved = ev->fraud;
  ev->fraud = (ps_fraud *)fa;
  int rc = outbox_add_event(out, ctx->cfg->topics.fraud_scored, ev);
  ev->fraud = saved;
  return rc;
}

/* What a payment's stored state says to emit: allowed or approved go on to
 * charge, held ones answer `review`, blocked, rejected or ended ones re-send
 * their stored outcome. Returns 0, or -1 when an output could not be packed
 * (out of memory: the batch is retried, outbox.h); a payment with nothing
 * to emit is dead-lettered, never dropped. */
static int emit(stage_ctx *ctx, fitem *x, outbox *out) {
  ps_event *ev = x->m->ev;
  const ps_fraud *fa = x->stored;
  if (x->dead) {
    outbox_add_dlq(out, ctx->cfg->topics.dlq, "fraud", x->m, x->reason);
    return 0;
  }
  if (fa && fa->decision == PAYMENTS__V1__FRAUD_DECISION__FRAUD_DECISION_ALLOW)
    return forward(ctx, ev, fa, out);
  if (fa && fa->decision == PAYMENTS__V1__FRAUD_DECISION__FRAUD_DECISION_REVIEW &&
      strcmp(x->review, "approve") == 0 && x->approved)
    return forward(ctx, ev, x->approved, out);
  if (fa && fa->decision == PAYMENTS__V1__FRAUD_DECISION__FRAUD_DECISION_REVIEW &&
      !x->outcome_hex) {
    outcome_buf ob;
    outcome_from_event(&ob, ev, OUTCOME_REVIEW, "fraud_review", "held for manual review");
    return outbox_add_outcome(out, ctx->cfg->topics.outcomes, &ob.o);
  }
  if (outbox_add_stored(out, ctx->cfg->topics.outcomes, ev->intent->idempotency_key,
                        x->outcome_hex)) {
    log_error("payment %s has no stored outcome: dead-lettered", ev->payment_id);
    outbox_add_dlq(out, ctx->cfg->topics.dlq, "fraud", x->m, "no assessment or outcome stored");
  }
  return 0;
}

static int fraud_process(stage_ctx *ctx, stage_msg *msgs, size_t n, outbox *out) {
  fraud_state *st = ctx->state;
  fitem *it = calloc(n, sizeof *it);
  if (!it) abort();
  double t0 = metrics_now();
  st->last_model_s = st->last_score_s = st->last_redis_s = st->last_store_s = 0;
  st->last_score_cpu_s = 0;
  for (size_t i = 0; i < n; i++) it[i].m = &msgs[i];
  int rc = read_stored(ctx, it, n);
  st->last_read_s = metrics_now() - t0;
  bool fresh = false;
  for (size_t i = 0; rc == 0 && i < n; i++) fresh |= it[i].known && !it[i].assessed;
  if (rc == 0 && fresh) {
    double t1 = metrics_now();
    gather_signals(ctx, it, n);
    st->last_redis_s = metrics_now() - t1;
    rc = score(st, it, n);
    for (size_t i = 0; rc == 0 && i < n; i++)
      if (it[i].known && !it[i].assessed) assess(st, &it[i]);
    /* Store; where a racing instance stored first, read back: whatever is
     * stored is what we emit. */
    fbatch b = {ctx, it, 0};
    t1 = metrics_now();
    if (rc == 0) rc = isolate_bisect(&store_ops, &b, 0, n);
    st->last_store_s = metrics_now() - t1;
    if (rc == 0 && b.conflicts) rc = read_stored(ctx, it, n);
  }
  if (rc == 0) {
    for (size_t i = 0; i < n; i++) {
      if (!it[i].known) {
        outbox_add_dlq(out, ctx->cfg->topics.dlq, "fraud", it[i].m, "unknown payment_id");
        continue;
      }
      if (emit(ctx, &it[i], out)) rc = -1;
    }
    /* bench/fraud.sh reads these for exact per-batch percentiles. */
    log_debug("fraud batch: %zu payments scored in %.3f ms (model %.3f ms) (rules + model %.3f ms)"
              " (read %.3f ms, redis %.3f ms, store %.3f ms) (rules + model cpu %.3f ms)",
              n, (metrics_now() - t0) * 1000.0, st->last_model_s * 1000.0,
              st->last_score_s * 1000.0, st->last_read_s * 1000.0, st->last_redis_s * 1000.0,
              st->last_store_s * 1000.0, st->last_score_cpu_s * 1000.0);
  }
  free_items(it, n);
  return rc;
}

static const char *fraud_input(const cfg *c) { return c->topics.requests; }

static int fraud_init(stage_ctx *ctx, char *err, size_t errlen) {
  static fraud_state st;
  const char *rules = cfg_env_str("PAYSTREAM_FRAUD_RULES", "");
  if (*rules ? rules_config_load(rules, &st.rules, err, errlen) : (rules_cfg_default(&st.rules), 0))
    return -1;
  const char *path = cfg_env_str("PAYSTREAM_FRAUD_MODEL", "");
  long long threads;
  if (cfg_env_int("PAYSTREAM_FRAUD_MODEL_THREADS", 1, 0, 256, &threads, err, errlen)) return -1;
  if (!*path) {
    snprintf(err, errlen,
             "PAYSTREAM_FRAUD_MODEL is not set: the path of the model fraud-train wrote, or "
             "'none' to score with rules only");
    return -1;
  }
  if (strcmp(path, "none") != 0) {
    char merr[512];
    st.model = model_load(path, (int)threads, merr, sizeof merr);
    if (!st.model) {
      snprintf(err, errlen, "PAYSTREAM_FRAUD_MODEL: %s", merr);
      return -1;
    }
    log_info("fraud model %s loaded (features %s)", model_version(st.model), FEATURES_VERSION);
    if (!model_bind_rules(st.model, rules_cfg_hash(&st.rules)))
      log_warn("the model's rule calibration was fitted with other rules (or none): "
               "the rule score is used raw");
  } else {
    log_warn("PAYSTREAM_FRAUD_MODEL=none: scoring with rules only");
  }
  st.m_model_rows = metrics_counter("paystream_fraud_model_rows_total",
                                    "Payments scored by the fraud model", NULL);
  st.m_model_seconds =
      metrics_histogram("paystream_fraud_model_seconds", "Time of one batch prediction",
                        METRICS_LATENCY_BUCKETS, METRICS_LATENCY_NBUCKETS, NULL);
  const char *names[] = {"allow", "review", "block"};
  for (int i = 0; i < 3; i++)
    st.m_decisions[i] = metrics_counter("paystream_fraud_decisions_total",
                                        "Fresh fraud decisions", "decision", names[i], NULL);
  ctx->state = &st;
  return 0;
}

static void fraud_destroy(stage_ctx *ctx) {
  fraud_state *st = ctx->state;
  if (st) model_destroy(st->model), st->model = NULL;
}

const stage_def fraud_stage = {
    .name = "fraud",
    .input_topic = fraud_input,
    .requires_payment_id = true,
    .uses_redis = true,
    .init = fraud_init,
    .process = fraud_process,
    .destroy = fraud_destroy,
};
