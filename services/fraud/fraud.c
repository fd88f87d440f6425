/* fraud: rule evaluation with Redis velocity, stored assessments. */
#include "fraud.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "rules.h"

#define HOUR_MS 3600000LL

typedef struct fraud_state {
  rules_cfg rules;
} fraud_state;

typedef struct fitem {
  stage_msg *m;
  bool known;               /* payment row exists */
  bool assessed;            /* an assessment is stored */
  ps_fraud *stored;         /* decoded stored assessment */
  char *outcome_hex;        /* stored terminal outcome, if any */
  fraud_signals sig;
  uint8_t *assessment;      /* packed new assessment */
  size_t assessment_len;
  Payments__V1__FraudDecision decision;
  rules_result rr;
  double combined;
  char *block_outcome_hex;  /* outcome to store when blocking */
} fitem;

static const char SQL_READ[] =
    "SELECT u.ord, encode(a.assessment, 'hex'), encode(p.outcome, 'hex')"
    " FROM unnest($1::text[]) WITH ORDINALITY AS u(id, ord)"
    " JOIN payments p ON p.payment_id = u.id"
    " LEFT JOIN fraud_assessments a ON a.payment_id = u.id";

static const char SQL_STORE[] =
    "INSERT INTO fraud_assessments (payment_id, decision, rule_score, ml_score, combined_score,"
    " reasons, model_version, assessment)"
    " SELECT id, d, rs, ms, cs, string_to_array(r, ','), mv, decode(a, 'hex')"
    " FROM unnest($1::text[], $2::text[], $3::float8[], $4::float8[], $5::float8[], $6::text[],"
    " $7::text[], $8::text[]) AS u(id, d, rs, ms, cs, r, mv, a)"
    " ON CONFLICT (payment_id) DO NOTHING";

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
    free(it[i].outcome_hex);
    free(it[i].assessment);
    free(it[i].block_outcome_hex);
  }
  free(it);
}

/* Reads stored assessments and outcomes for the batch. Returns 0 or -1. */
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
      size_t len;
      uint8_t *b = hex_decode(PQgetvalue(r, row, 1), &len);
      if (b) x->stored = payments__v1__fraud_assessment__unpack(NULL, len, b);
      free(b);
      x->assessed = x->stored != NULL;
    }
    free(x->outcome_hex);
    x->outcome_hex = PQgetisnull(r, row, 2) ? NULL : strdup(PQgetvalue(r, row, 2));
  }
  PQclear(r);
  return 0;
}

/* The values a payment is matched against blocklists on (NULL: absent). */
static const char *blocklist_value(const ps_intent *in, blocklist_kind k) {
  const char *v = NULL;
  switch (k) {
  case BLOCKLIST_CARD: v = in->payment_method ? in->payment_method->fingerprint : NULL; break;
  case BLOCKLIST_IP: v = in->context ? in->context->ip : NULL; break;
  case BLOCKLIST_EMAIL: v = in->context ? in->context->email : NULL; break;
  case BLOCKLIST_DEVICE: v = in->context ? in->context->device_id : NULL; break;
  default: break;
  }
  return v && *v ? v : NULL;
}

#define SIGNAL_CMDS (3 + BLOCKLIST_KINDS)

/* Every Redis signal of the batch in one pipelined round trip. Velocity is
 * a sorted set of payment ids scored by event time, so a payment counted
 * twice (retry, replay, two instances) is still one member; blocklists are
 * sets. Redis down: both fail open, each with its reason code. */
static void gather_signals(stage_ctx *ctx, fitem *it, size_t n) {
  size_t ncmd = 0;
  rds_cmd *cmds = calloc(SIGNAL_CMDS * n + 1, sizeof *cmds);
  char(*keys)[160] = calloc(n + 1, sizeof *keys);
  char(*nums)[3][24] = calloc(n + 1, sizeof *nums);
  char(*vals)[BLOCKLIST_KINDS][256] = calloc(n + 1, sizeof *vals);
  int(*slot)[BLOCKLIST_KINDS] = calloc(n + 1, sizeof *slot);
  size_t *first = calloc(n + 1, sizeof *first);
  redisReply **rep = calloc(SIGNAL_CMDS * n + 1, sizeof *rep);
  if (!cmds || !keys || !nums || !vals || !slot || !first || !rep) abort();
  for (size_t i = 0; i < n; i++) {
    fitem *x = &it[i];
    first[i] = ncmd;
    if (!x->known || x->assessed) continue;
    const ps_intent *in = x->m->ev->intent;
    int64_t t = in->created_at_ms;
    snprintf(keys[i], sizeof keys[i], "velocity:customer:{%s}:%s", in->merchant_id,
             in->customer_id);
    snprintf(nums[i][0], 24, "%lld", (long long)t);
    snprintf(nums[i][1], 24, "%lld", (long long)(t - HOUR_MS));
    snprintf(nums[i][2], 24, "%lld", 25 * HOUR_MS);
    const char *zadd[] = {"ZADD", keys[i], nums[i][0], x->m->ev->payment_id};
    const char *zcount[] = {"ZCOUNT", keys[i], nums[i][1], nums[i][0]};
    const char *expire[] = {"PEXPIRE", keys[i], nums[i][2]};
    rds_cmd_set(&cmds[ncmd++], 4, zadd);
    rds_cmd_set(&cmds[ncmd++], 4, zcount);
    rds_cmd_set(&cmds[ncmd++], 3, expire);
    for (int k = 0; k < BLOCKLIST_KINDS; k++) {
      const char *v = blocklist_value(in, (blocklist_kind)k);
      slot[i][k] = -1;
      if (!v) continue;
      blocklist_normalize((blocklist_kind)k, v, vals[i][k], sizeof vals[i][k]);
      const char *ismember[] = {"SISMEMBER", blocklist_key((blocklist_kind)k), vals[i][k]};
      slot[i][k] = (int)ncmd;
      rds_cmd_set(&cmds[ncmd++], 3, ismember);
    }
  }
  bool ok = rds_pipeline(&ctx->redis, cmds, (int)ncmd, rep) == 0;
  for (size_t i = 0; i < n; i++) {
    fitem *x = &it[i];
    if (!x->known || x->assessed) continue;
    redisReply *c = ok ? rep[first[i] + 1] : NULL;
    x->sig.velocity_unavailable = !(c && c->type == REDIS_REPLY_INTEGER);
    x->sig.customer_count_1h = x->sig.velocity_unavailable ? 0 : (long)c->integer;
    x->sig.blocklist_unavailable = !ok;
    for (int k = 0; ok && k < BLOCKLIST_KINDS; k++) {
      redisReply *b = slot[i][k] >= 0 ? rep[slot[i][k]] : NULL;
      x->sig.blocklisted[k] = b && b->type == REDIS_REPLY_INTEGER && b->integer == 1;
    }
  }
  for (size_t j = 0; ok && j < ncmd; j++) freeReplyObject(rep[j]);
  free(cmds);
  free(keys);
  free(nums);
  free(vals);
  free(slot);
  free(first);
  free(rep);
}

static void assess(const fraud_state *st, stage_ctx *ctx, fitem *x) {
  const ps_event *ev = x->m->ev;
  x->sig.amount_minor = ev->intent->amount ? ev->intent->amount->amount_minor : 0;
  rules_evaluate(&st->rules, &x->sig, &x->rr);
  double ml = 0.0;
  x->decision = rules_decide(&st->rules, &x->rr, ml, &x->combined);

  ps_fraud fa = PAYMENTS__V1__FRAUD_ASSESSMENT__INIT;
  fa.rule_score = x->rr.rule_score;
  fa.ml_score = ml;
  fa.combined_score = x->combined;
  fa.decision = x->decision;
  fa.n_reasons = x->rr.nreasons;
  fa.reasons = (char **)x->rr.reasons;
  fa.model_version = "none";
  x->assessment_len = payments__v1__fraud_assessment__get_packed_size(&fa);
  x->assessment = malloc(x->assessment_len + 1);
  if (!x->assessment) abort();
  payments__v1__fraud_assessment__pack(&fa, x->assessment);

  if (x->decision == PAYMENTS__V1__FRAUD_DECISION__FRAUD_DECISION_BLOCK) {
    char msg[256] = "blocked by fraud rules:";
    for (size_t i = 0; i < x->rr.nreasons; i++) {
      strncat(msg, " ", sizeof msg - strlen(msg) - 1);
      strncat(msg, x->rr.reasons[i], sizeof msg - strlen(msg) - 1);
    }
    outcome_buf ob;
    outcome_from_event(&ob, ev, OUTCOME_BLOCKED, "fraud_blocked", msg);
    x->block_outcome_hex = outcome_pack_hex(&ob.o);
  }
  (void)ctx;
}

/* Stores new assessments and moves payments on, in one transaction. */
static int store(stage_ctx *ctx, fitem *it, size_t n) {
  pg_array a[8], t[2];
  pg_arrays_init(a, 8);
  pg_arrays_init(t, 2);
  for (size_t i = 0; i < n; i++) {
    fitem *x = &it[i];
    if (!x->known) continue;
    pg_array_add_str(&t[0], x->m->ev->payment_id);
    pg_array_add_str(&t[1], x->block_outcome_hex);
    if (x->assessed || !x->assessment) continue;
    char reasons[512] = "", num[3][32], *hex = malloc(2 * x->assessment_len + 1);
    if (!hex) abort();
    for (size_t k = 0; k < x->rr.nreasons; k++) {
      if (k) strcat(reasons, ",");
      strcat(reasons, x->rr.reasons[k]);
    }
    hex_encode(x->assessment, x->assessment_len, hex);
    snprintf(num[0], 32, "%.17g", x->rr.rule_score);
    snprintf(num[1], 32, "%.17g", 0.0);
    snprintf(num[2], 32, "%.17g", x->combined);
    pg_array_add_str(&a[0], x->m->ev->payment_id);
    pg_array_add_str(&a[1], rules_decision_name(x->decision));
    pg_array_add_str(&a[2], num[0]);
    pg_array_add_str(&a[3], num[1]);
    pg_array_add_str(&a[4], num[2]);
    pg_array_add_str(&a[5], reasons);
    pg_array_add_str(&a[6], "none");
    pg_array_add_str(&a[7], hex);
    free(hex);
  }
  const char *pa[8], *pt[2];
  pg_arrays_finish(a, 8, pa);
  pg_arrays_finish(t, 2, pt);
  pg_stmt stmts[] = {{SQL_STORE, 8, pa}, {SQL_TRANSITION, 2, pt}};
  PGresult *res[2];
  char err[512];
  int rc = pg_pipeline(&ctx->pg, stmts, 2, res, err, sizeof err);
  if (rc) log_warn("storing assessments failed: %s", err);
  pg_results_clear(res, 2);
  pg_arrays_free(a, 8);
  pg_arrays_free(t, 2);
  return rc;
}

static void emit(stage_ctx *ctx, fitem *x, outbox *out) {
  ps_event *ev = x->m->ev;
  const ps_fraud *fa = x->stored;
  if (!fa) return; /* read back failed to find it: unreachable after store */
  switch (fa->decision) {
  case PAYMENTS__V1__FRAUD_DECISION__FRAUD_DECISION_ALLOW: {
    ps_fraud *saved = ev->fraud;
    ev->fraud = (ps_fraud *)fa;
    outbox_add_event(out, ctx->cfg->topics.fraud_scored, ev);
    ev->fraud = saved;
    break;
  }
  case PAYMENTS__V1__FRAUD_DECISION__FRAUD_DECISION_REVIEW: {
    outcome_buf ob;
    outcome_from_event(&ob, ev, OUTCOME_REVIEW, "fraud_review", "held for manual review");
    outbox_add_outcome(out, ctx->cfg->topics.outcomes, &ob.o);
    break;
  }
  default:
    if (outbox_add_stored(out, ctx->cfg->topics.outcomes, ev->intent->idempotency_key,
                          x->outcome_hex))
      log_error("blocked payment %s has no stored outcome", ev->payment_id);
  }
}

static int fraud_process(stage_ctx *ctx, stage_msg *msgs, size_t n, outbox *out) {
  fraud_state *st = ctx->state;
  fitem *it = calloc(n, sizeof *it);
  if (!it) abort();
  for (size_t i = 0; i < n; i++) it[i].m = &msgs[i];
  int rc = read_stored(ctx, it, n);
  if (rc == 0) {
    gather_signals(ctx, it, n);
    bool fresh = false;
    for (size_t i = 0; i < n; i++)
      if (it[i].known && !it[i].assessed) {
        assess(st, ctx, &it[i]);
        fresh = true;
      }
    /* Store, then read back: whatever is stored (ours or a racing
     * instance's) is what we emit. */
    if (fresh) rc = store(ctx, it, n);
    if (rc == 0 && fresh) rc = read_stored(ctx, it, n);
  }
  if (rc == 0) {
    for (size_t i = 0; i < n; i++) {
      if (!it[i].known) {
        outbox_add_dlq(out, ctx->cfg->topics.dlq, "fraud", it[i].m, "unknown payment_id");
        continue;
      }
      emit(ctx, &it[i], out);
    }
  }
  free_items(it, n);
  return rc;
}

static const char *fraud_input(const cfg *c) { return c->topics.requests; }

static int fraud_init(stage_ctx *ctx, char *err, size_t errlen) {
  static fraud_state st;
  rules_cfg_default(&st.rules);
  long long v;
  if (cfg_env_int("PAYSTREAM_FRAUD_AMOUNT_LIMIT_MINOR", st.rules.amount_limit_minor, 1,
                  INT64_MAX / 2, &v, err, errlen))
    return -1;
  st.rules.amount_limit_minor = v;
  if (cfg_env_int("PAYSTREAM_FRAUD_VELOCITY_1H_MAX", st.rules.velocity_customer_1h_max, 1,
                  1000000, &v, err, errlen))
    return -1;
  st.rules.velocity_customer_1h_max = (int)v;
  if (cfg_env_double("PAYSTREAM_FRAUD_WEIGHT_RULES", 0.4, 0, 1, &st.rules.weight_rules, err,
                     errlen) ||
      cfg_env_double("PAYSTREAM_FRAUD_WEIGHT_ML", 0.6, 0, 1, &st.rules.weight_ml, err, errlen))
    return -1;
  ctx->state = &st;
  return 0;
}

const stage_def fraud_stage = {
    .name = "fraud",
    .input_topic = fraud_input,
    .requires_payment_id = true,
    .uses_redis = true,
    .init = fraud_init,
    .process = fraud_process,
    .destroy = NULL,
};
