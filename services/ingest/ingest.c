/* ingest: idempotent intake — see ingest.h for the contract. One pipelined
 * Redis round trip and one Postgres round trip per batch. */
#include "clock.h"
#include "ingest.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "isolate.h"
#include "log.h"
#include "operation.h"
#include "operations.h"
#include "rejection.h"
#include "validate.h"

/* ---- the batch ---------------------------------------------------------- */

typedef struct ingest_state {
  long long ttl_s;
} ingest_state;

typedef struct item {
  stage_msg *m;
  bool valid;
  validation_error verr;
  char fp[65];
  char payment_id[PS_ID_LEN];
  char rejection_id[PS_ID_LEN];
  size_t leader;      /* index of the batch's first message with this scope */
  claim_record rec;   /* leaders only */
  bool resolved;      /* leaders: rec is known (cache or Postgres) */
  bool from_cache;
  bool not_final;     /* leaders: its stored outcome may still be superseded: not cached */
  bool refused;       /* leaders: Postgres refused its claim on its own: rejected */
  bool dead;          /* leaders: not even its rejection could be stored: DLQ */
  char reason[256];   /* why, for the DLQ */
} item;

/* The batch as isolate_bisect sees it. */
typedef struct batch {
  stage_ctx *ctx;
  item *it;
  size_t n;
} batch;

/* Sales as every release claims them (a database before 013 takes them
 * too: workers may be upgraded before the migration); a batch with an
 * authorization names the payment's kind (013). */
static const char SQL_CLAIM[] =
    "INSERT INTO payments (payment_id, merchant_id, idempotency_key, fingerprint, customer_id,"
    " amount_minor, currency, payment_method, intent, source_topic, source_partition,"
    " source_offset)"
    " SELECT p, m, k, f, c, a, cur, pm, decode(ih, 'hex'), t, sp, so FROM unnest($1::text[],"
    " $2::text[], $3::text[], $4::text[], $5::text[], $6::bigint[], $7::text[], $8::text[],"
    " $9::text[], $10::text[], $11::int[], $12::bigint[])"
    " AS u(p, m, k, f, c, a, cur, pm, ih, t, sp, so)"
    " ON CONFLICT (merchant_id, idempotency_key) DO NOTHING";
static const char SQL_CLAIM_KIND[] =
    "INSERT INTO payments (payment_id, merchant_id, idempotency_key, fingerprint, customer_id,"
    " amount_minor, currency, payment_method, intent, source_topic, source_partition,"
    " source_offset, kind)"
    " SELECT p, m, k, f, c, a, cur, pm, decode(ih, 'hex'), t, sp, so, kind FROM unnest($1::text[],"
    " $2::text[], $3::text[], $4::text[], $5::text[], $6::bigint[], $7::text[], $8::text[],"
    " $9::text[], $10::text[], $11::int[], $12::bigint[], $13::text[])"
    " AS u(p, m, k, f, c, a, cur, pm, ih, t, sp, so, kind)"
    " ON CONFLICT (merchant_id, idempotency_key) DO NOTHING";



static const char SQL_REJECT_REUSED[] =
    "INSERT INTO rejections (rejection_id, merchant_id, idempotency_key, error_code,"
    " error_message, source_topic, source_partition, source_offset)"
    " SELECT u.r, u.m, u.k, 'idempotency_key_reused', '" REUSED_MESSAGE "', u.t, u.sp, u.so"
    " FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::int[],"
    " $7::bigint[]) AS u(r, m, k, f, t, sp, so)"
    " JOIN payments p ON p.merchant_id = u.m AND p.idempotency_key = u.k"
    " WHERE p.fingerprint <> u.f"
    " ON CONFLICT (rejection_id) DO NOTHING";

static const char SQL_LOOKUP[] =
    "SELECT u.ord, p.payment_id, p.fingerprint, p.source_topic, p.source_partition,"
    " p.source_offset, encode(p.outcome, 'hex'), p.status = 'ledger_failed'"
    " FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS u(m, k, ord)"
    " JOIN payments p ON p.merchant_id = u.m AND p.idempotency_key = u.k";

static int scope_cmp(const item *a, const item *b) {
  int c = strcmp(a->m->ev->intent->merchant_id, b->m->ev->intent->merchant_id);
  return c ? c : strcmp(a->m->ev->intent->idempotency_key, b->m->ev->intent->idempotency_key);
}

/* Links every valid item to the first item of the batch with its scope. */
static void find_leaders(item *it, size_t n) {
  for (size_t i = 0; i < n; i++) {
    it[i].leader = i;
    if (!it[i].valid) continue;
    for (size_t j = 0; j < i; j++)
      if (it[j].valid && it[j].leader == j && scope_cmp(&it[i], &it[j]) == 0) {
        it[i].leader = j;
        break;
      }
  }
}

static void cache_key(const ps_intent *in, char *buf, size_t len) {
  snprintf(buf, len, "idempotency:{%s}:%s", in->merchant_id, in->idempotency_key);
}

/* Resolves leaders from the Redis cache where the cache can answer for good:
 * a stored terminal outcome, or a different fingerprint. Anything else asks
 * Postgres. Redis being down just means every leader asks Postgres. */
static void resolve_from_cache(stage_ctx *ctx, item *it, size_t n) {
  size_t nl = 0;
  rds_cmd *cmds = calloc(n, sizeof *cmds);
  size_t *who = calloc(n, sizeof *who);
  char(*keys)[600] = calloc(n, sizeof *keys);
  redisReply **rep = calloc(n, sizeof *rep);
  if (!cmds || !who || !keys || !rep) abort();
  for (size_t i = 0; i < n; i++) {
    if (!it[i].valid || it[i].leader != i) continue;
    cache_key(it[i].m->ev->intent, keys[nl], sizeof keys[nl]);
    const char *argv[] = {"GET", keys[nl]};
    rds_cmd_set(&cmds[nl], 2, argv);
    who[nl++] = i;
  }
  if (rds_pipeline(&ctx->redis, cmds, (int)nl, rep) == 0) {
    for (size_t j = 0; j < nl; j++) {
      item *x = &it[who[j]];
      if (rep[j]->type == REDIS_REPLY_STRING &&
          ingest_cache_decode(rep[j]->str, rep[j]->len, &x->rec) == 0) {
        if (x->rec.terminal || strcmp(x->rec.fingerprint, x->fp) != 0) {
          x->resolved = x->from_cache = true;
        } else {
          free(x->rec.outcome_hex);
          memset(&x->rec, 0, sizeof x->rec);
        }
      }
      freeReplyObject(rep[j]);
    }
  }
  free(cmds);
  free(who);
  free(keys);
  free(rep);
}

/* Packs the event to forward: the intent, normalised, with its payment id. */
static uint8_t *pack_forward(const item *x, size_t *len) {
  ps_event *ev = x->m->ev;
  char *saved = ev->payment_id;
  uint32_t saved_ver = ev->schema_version;
  ev->payment_id = (char *)x->payment_id;
  ev->schema_version = PS_SCHEMA_VERSION;
  uint8_t *buf = event_pack(ev, len);
  ev->payment_id = saved; /* the unpacked message owns its own strings */
  ev->schema_version = saved_ver;
  return buf;
}

static void add_rejection(pg_array *r, const item *x, const char *code, const char *message) {
  const ps_intent *in = x->m->ev->intent;
  rejection_add(r, x->rejection_id, in->merchant_id, in->idempotency_key, code, message, x->m);
}

/* Claims the unresolved leaders among items [lo, lo + n), records their
 * rejections and reads the claims back, all in one pipelined transaction.
 * Returns 0, or -1 with the database's error in err (isolate_ops.attempt). */
static int claim_range(void *arg, size_t lo, size_t n, char *err, size_t errlen) {
  batch *b = arg;
  stage_ctx *ctx = b->ctx;
  item *it = b->it;
  pg_array a[13], r[8], u[7], l[2];
  pg_arrays_init(a, 13);
  pg_arrays_init(r, 8);
  pg_arrays_init(u, 7);
  pg_arrays_init(l, 2);
  size_t *lookup = calloc(n + 1, sizeof *lookup), nlookup = 0;
  if (!lookup) abort();
  bool kinds = false; /* an authorization among the claims */

  for (size_t i = lo; i < lo + n; i++) {
    item *x = &it[i];
    const ps_intent *in = x->m->ev->intent;
    if (!x->valid) {
      add_rejection(r, x, x->verr.code, x->verr.message);
      continue;
    }
    pg_array_add_str(&u[0], x->rejection_id);
    pg_array_add_str(&u[1], in->merchant_id);
    pg_array_add_str(&u[2], in->idempotency_key);
    pg_array_add_str(&u[3], x->fp);
    pg_array_add_str(&u[4], x->m->topic);
    pg_array_add_int(&u[5], x->m->partition);
    pg_array_add_int(&u[6], x->m->offset);
    if (x->leader != i || x->resolved) continue;
    size_t len;
    uint8_t *packed = pack_forward(x, &len);
    char *hex = malloc(2 * len + 1);
    if (!packed || !hex) abort();
    hex_encode(packed, len, hex);
    pg_array_add_str(&a[0], x->payment_id);
    pg_array_add_str(&a[1], in->merchant_id);
    pg_array_add_str(&a[2], in->idempotency_key);
    pg_array_add_str(&a[3], x->fp);
    pg_array_add_str(&a[4], in->customer_id);
    pg_array_add_int(&a[5], in->amount->amount_minor);
    pg_array_add_str(&a[6], in->amount->currency);
    pg_array_add_str(&a[7], in->payment_method->id);
    pg_array_add_str(&a[8], hex);
    pg_array_add_str(&a[9], x->m->topic);
    pg_array_add_int(&a[10], x->m->partition);
    pg_array_add_int(&a[11], x->m->offset);
    pg_array_add_str(&a[12], op_kind_name(in->kind));
    kinds |= in->kind != KIND_SALE;
    free(hex);
    free(packed);
    pg_array_add_str(&l[0], in->merchant_id);
    pg_array_add_str(&l[1], in->idempotency_key);
    lookup[nlookup++] = i;
  }

  const char *pa[13], *pr[8], *pu[7], *pl[2];
  pg_arrays_finish(a, 13, pa);
  pg_arrays_finish(r, 8, pr);
  pg_arrays_finish(u, 7, pu);
  pg_arrays_finish(l, 2, pl);
  pg_stmt stmts[] = {{kinds ? SQL_CLAIM_KIND : SQL_CLAIM, kinds ? 13 : 12, pa},
                     {SQL_REJECT, 8, pr},
                     {SQL_REJECT_REUSED, 7, pu},
                     {SQL_LOOKUP, 2, pl}};
  PGresult *res[4];
  int rc = pg_pipeline(&ctx->pg, stmts, 4, res, err, errlen);
  if (rc) log_warn("claim batch of %zu failed: %s", n, err);

  if (rc == 0) {
    PGresult *q = res[3];
    for (int row = 0; row < PQntuples(q); row++) {
      long ord = strtol(PQgetvalue(q, row, 0), NULL, 10);
      if (ord < 1 || (size_t)ord > nlookup) continue;
      item *x = &it[lookup[ord - 1]];
      claim_record *rec = &x->rec;
      snprintf(rec->payment_id, sizeof rec->payment_id, "%s", PQgetvalue(q, row, 1));
      snprintf(rec->fingerprint, sizeof rec->fingerprint, "%s", PQgetvalue(q, row, 2));
      snprintf(rec->origin_topic, sizeof rec->origin_topic, "%s", PQgetvalue(q, row, 3));
      rec->origin_partition = (int32_t)strtol(PQgetvalue(q, row, 4), NULL, 10);
      rec->origin_offset = strtoll(PQgetvalue(q, row, 5), NULL, 10);
      rec->terminal = !PQgetisnull(q, row, 6);
      rec->outcome_hex = rec->terminal ? strdup(PQgetvalue(q, row, 6)) : NULL;
      /* ledger_failed: a redrive that posts it replaces its `failed` with
       * `succeeded`; a duplicate must replay whichever Postgres holds. */
      x->not_final = PQgetvalue(q, row, 7)[0] == 't';
      x->resolved = true;
    }
    for (size_t j = 0; j < nlookup; j++)
      if (!it[lookup[j]].resolved) {
        log_error("claim for %s vanished; retrying batch", it[lookup[j]].payment_id);
        snprintf(err, errlen, "claim vanished"); /* transient: not a data error */
        rc = -1;
      }
  }
  pg_results_clear(res, 4);
  pg_arrays_free(a, 13);
  pg_arrays_free(r, 8);
  pg_arrays_free(u, 7);
  pg_arrays_free(l, 2);
  free(lookup);
  return rc;
}

/* Ends a message whose claim (or rejection) Postgres refuses on its own
 * (isolate_ops.isolate): `rejected` with REFUSED_CODE, recorded with the
 * other messages of its scope in this batch, so the key stays unclaimed and
 * the client may send it again after the fix. When even the rejection is
 * refused, the scope's messages go to the DLQ with the reason. */
static int isolate_claim(void *arg, size_t i, const char *why) {
  batch *b = arg;
  item *x = &b->it[i];
  log_ctx lc = {x->m->topic, x->m->partition, x->m->offset, NULL, NULL};
  pg_array r[REJECTION_NCOLS];
  rejection_refused_begin(r, x->m, "message", why);
  if (!x->valid) add_rejection(r, x, x->verr.code, x->verr.message);
  for (size_t j = i; x->valid && j < b->n; j++)
    if (b->it[j].valid && b->it[j].leader == i)
      add_rejection(r, &b->it[j], REFUSED_CODE, REFUSED_MESSAGE);
  char err[512];
  int rc = rejection_store(&b->ctx->pg, r, err, sizeof err);
  if (rc && !pg_err_is_data_error(err)) return -1;
  x->refused = rc == 0;
  x->dead = rc != 0;
  snprintf(x->reason, sizeof x->reason, "postgres refused the message: %.200s", why);
  if (x->dead) log_at(LOG_ERROR, &lc, "ALERT its rejection was refused too (%s): dead-lettered", err);
  return 0;
}

static const isolate_ops claim_ops = {claim_range, isolate_claim};

/* Writes claims learned from Postgres back to the cache (best effort). */
static void cache_claims(stage_ctx *ctx, const ingest_state *st, item *it, size_t n) {
  rds_cmd *cmds = calloc(n, sizeof *cmds);
  char **vals = calloc(n, sizeof *vals);
  char(*keys)[600] = calloc(n, sizeof *keys);
  redisReply **rep = calloc(n, sizeof *rep);
  char ttl[32];
  snprintf(ttl, sizeof ttl, "%lld", st->ttl_s);
  if (!cmds || !vals || !keys || !rep) abort();
  size_t nc = 0;
  for (size_t i = 0; i < n; i++) {
    if (!it[i].valid || it[i].leader != i || it[i].from_cache || !it[i].resolved ||
        it[i].not_final)
      continue;
    cache_key(it[i].m->ev->intent, keys[nc], sizeof keys[nc]);
    vals[nc] = ingest_cache_encode(&it[i].rec);
    const char *argv[] = {"SET", keys[nc], vals[nc], "EX", ttl};
    rds_cmd_set(&cmds[nc], 5, argv);
    nc++;
  }
  if (rds_pipeline(&ctx->redis, cmds, (int)nc, rep) == 0)
    for (size_t j = 0; j < nc; j++) freeReplyObject(rep[j]);
  for (size_t j = 0; j < nc; j++) free(vals[j]);
  free(cmds);
  free(vals);
  free(keys);
  free(rep);
}

/* Emitters return 0, or -1 when an output could not be packed (out of
 * memory): the attempt fails and the batch is retried (outbox.h). */
static int emit_rejection(stage_ctx *ctx, const item *x, const char *code, const char *message,
                          outbox *out) {
  const ps_intent *in = x->m->ev->intent;
  outcome_buf ob;
  outcome_from_event(&ob, x->m->ev, OUTCOME_REJECTED, code, message);
  ob.o.payment_id = (char *)x->rejection_id;
  /* Only well-formed text goes back out; the raw key still keys the message. */
  ob.o.merchant_id = (char *)(validate_text(in->merchant_id, 255) ? in->merchant_id : "");
  ob.o.idempotency_key =
      (char *)(validate_text(in->idempotency_key, 255) ? in->idempotency_key : "");
  return outbox_add_outcome_keyed(out, ctx->cfg->topics.outcomes, in->idempotency_key,
                                  strlen(in->idempotency_key), &ob.o);
}

/* A stored outcome that cannot be read is never skipped silently: the
 * message goes to the DLQ saying so. */
static void dead_letter(stage_ctx *ctx, const item *x, const log_ctx *lc, const char *reason,
                        outbox *out) {
  log_at(LOG_ERROR, lc, "ALERT %s: dead-lettered", reason);
  outbox_add_dlq(out, ctx->cfg->topics.dlq, "ingest", x->m, reason);
}

/* Answers a duplicate request with the payment's stored outcome, marked
 * replayed and stamped with the duplicate's publication time. */
static int emit_replayed(stage_ctx *ctx, const item *x, const claim_record *rec,
                         const log_ctx *lc, outbox *out) {
  size_t len;
  uint8_t *bytes = hex_decode(rec->outcome_hex, &len);
  ps_outcome *o = bytes ? outcome_decode(bytes, len) : NULL;
  free(bytes);
  if (!o) {
    dead_letter(ctx, x, lc, "stored outcome is corrupt", out);
    return 0;
  }
  o->replayed = 1;
  o->published_at_ms = x->m->ev->published_at_ms;
  const char *key = x->m->ev->intent->idempotency_key;
  int rc = outbox_add_outcome_keyed(out, ctx->cfg->topics.outcomes, key, strlen(key), o);
  outcome_free(o);
  return rc;
}

static int emit(stage_ctx *ctx, item *it, size_t i, outbox *out) {
  item *x = &it[i];
  const item *lead = &it[x->leader]; /* x itself when invalid */
  log_ctx lc = {x->m->topic, x->m->partition, x->m->offset, NULL, NULL};
  if (lead->dead) {
    outbox_add_dlq(out, ctx->cfg->topics.dlq, "ingest", x->m, lead->reason);
    return 0;
  }
  if (lead->refused && x->valid) return emit_rejection(ctx, x, REFUSED_CODE, REFUSED_MESSAGE, out);
  if (!x->valid) return emit_rejection(ctx, x, x->verr.code, x->verr.message, out);
  const claim_record *rec = &lead->rec;
  lc.payment_id = rec->payment_id;
  lc.idempotency_key = x->m->ev->intent->idempotency_key;
  switch (ingest_decide(x->fp, x->m->topic, x->m->partition, x->m->offset, rec)) {
  case INGEST_FORWARD: {
    size_t len;
    uint8_t *buf = pack_forward(x, &len);
    if (!buf) return -1;
    const char *key = x->m->ev->intent->idempotency_key;
    outbox_add(out, ctx->cfg->topics.requests, key, strlen(key), buf, len, NULL);
    return 0;
  }
  case INGEST_EMIT_STORED: /* byte-identical to the first time */
    if (outbox_add_stored(out, ctx->cfg->topics.outcomes,
                          x->m->ev->intent->idempotency_key, rec->outcome_hex))
      dead_letter(ctx, x, &lc, "stored outcome is corrupt", out);
    return 0;
  case INGEST_REPLAY_STORED:
    log_at(LOG_DEBUG, &lc, "duplicate of a finished payment: replaying its outcome");
    return emit_replayed(ctx, x, rec, &lc, out);
  case INGEST_ABSORB:
    log_at(LOG_DEBUG, &lc, "duplicate of an in-flight payment absorbed");
    return 0;
  case INGEST_REJECT_REUSED:
    log_at(LOG_INFO, &lc, "idempotency key reused with other parameters");
    return emit_rejection(ctx, x, "idempotency_key_reused", REUSED_MESSAGE, out);
  }
  return 0;
}

static int ingest_intents(stage_ctx *ctx, stage_msg *msgs, size_t n, outbox *out) {
  ingest_state *st = ctx->state;
  item *it = calloc(n, sizeof *it);
  if (!it) abort();
  for (size_t i = 0; i < n; i++) {
    item *x = &it[i];
    x->m = &msgs[i];
    ps_intent *in = x->m->ev->intent;
    ingest_rejection_id(x->m->topic, x->m->partition, x->m->offset, x->m->raw, x->m->rawlen,
                        x->rejection_id);
    /* A replay decides as the first time: event time is checked against
     * the message's own timestamp. */
    int64_t ref = kloop_msg_timestamp(x->m);
    if (ref <= 0) ref = ps_now_ms();
    x->valid = validate_intake(x->m->ev, &x->verr) == 0 && validate_intent(in, &x->verr) == 0 &&
               validate_created_at(in->created_at_ms, ref, &x->verr) == 0;
    if (!x->valid) continue;
    validate_normalise(in);
    ingest_fingerprint(in, x->fp);
    ingest_payment_id(in->merchant_id, in->idempotency_key, x->payment_id);
  }
  find_leaders(it, n);
  resolve_from_cache(ctx, it, n);
  batch b = {ctx, it, n};
  int rc = isolate_bisect(&claim_ops, &b, 0, n);
  if (rc == 0) {
    cache_claims(ctx, st, it, n);
    for (size_t i = 0; i < n && rc == 0; i++) rc = emit(ctx, it, i, out);
  }
  for (size_t i = 0; i < n; i++) free(it[i].rec.outcome_hex);
  free(it);
  return rc;
}

/* Intents (sales, authorizations) and operations (capture, void, refund:
 * operations.c) of one batch, each their own way. */
static int ingest_process(stage_ctx *ctx, stage_msg *msgs, size_t n, outbox *out) {
  size_t nops = 0;
  for (size_t i = 0; i < n; i++) nops += msgs[i].ev->operation != NULL;
  if (nops == 0) return ingest_intents(ctx, msgs, n, out);
  stage_msg *intents = calloc(n, sizeof *intents);
  stage_msg **ops = calloc(n, sizeof *ops);
  if (!intents || !ops) abort();
  size_t ni = 0, no = 0;
  for (size_t i = 0; i < n; i++) {
    if (msgs[i].ev->operation) ops[no++] = &msgs[i];
    else intents[ni++] = msgs[i];
  }
  int rc = ni ? ingest_intents(ctx, intents, ni, out) : 0;
  if (rc == 0) rc = ingest_operations(ctx, ops, no, out);
  free(intents);
  free(ops);
  return rc;
}

static const char *ingest_input(const cfg *c) { return c->topics.intents; }

static int ingest_init(stage_ctx *ctx, char *err, size_t errlen) {
  static ingest_state st;
  if (cfg_env_int("PAYSTREAM_IDEMPOTENCY_TTL_S", 86400, 1, 365LL * 86400, &st.ttl_s, err, errlen))
    return -1;
  ctx->state = &st;
  return 0;
}

const stage_def ingest_stage = {
    .name = "ingest",
    .input_topic = ingest_input,
    .requires_payment_id = false,
    .uses_redis = true,
    .takes_operations = true,
    .init = ingest_init,
    .process = ingest_process,
    .destroy = NULL,
};
