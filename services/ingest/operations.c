/* ingest/operations: see operations.h. One pipelined transaction per batch
 * (bisected on data errors like intents). */
#include "operations.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "hex.h"
#include "ingest.h"
#include "isolate.h"
#include "log.h"
#include "operation.h"
#include "rejection.h"
#include "validate_op.h"

typedef struct op_item {
  stage_msg *m;
  bool valid;
  validation_error verr;
  char fp[65];
  char operation_id[PS_ID_LEN];
  char rejection_id[PS_ID_LEN];
  PGresult *res; /* the lookup that holds its row (not owned) */
  int row;       /* -1: not read */
  bool refused;  /* Postgres refused it on its own: rejected storage_refused */
} op_item;

typedef struct op_batch {
  stage_ctx *ctx;
  op_item *it;
  size_t n;
  PGresult **keep; /* lookups to clear at the end */
  size_t nkeep;
} op_batch;

static const char SQL_INSERT[] =
    "INSERT INTO payment_operations (operation_id, merchant_id, idempotency_key, fingerprint,"
    " kind, payment_ref, amount_minor, currency, final_capture, request, source_topic,"
    " source_partition, source_offset, payment_ref_by)"
    " SELECT id, m, k, f, kind, ref, a, cur, fin, decode(req, 'hex'), t, sp, so, rb FROM unnest("
    "$1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::bigint[],"
    " $8::text[], $9::boolean[], $10::text[], $11::text[], $12::int[], $13::bigint[],"
    " $14::text[]) AS u(id, m, k, f, kind, ref, a, cur, fin, req, t, sp, so, rb)"
    " ON CONFLICT (merchant_id, idempotency_key) DO NOTHING";

/* The conditional writes that decide, one operation after the other. */
static const char SQL_ACCEPT[] =
    "SELECT u.ord, a.state FROM unnest($1::text[]) WITH ORDINALITY AS u(id, ord)"
    " CROSS JOIN LATERAL ps_accept_operation(u.id) AS a ORDER BY u.ord";

static const char SQL_LOOKUP[] =
    "SELECT u.ord, " OP_ROW_COLUMNS
    " FROM unnest($1::text[]) WITH ORDINALITY AS u(id, ord)"
    " JOIN payment_operations o ON o.operation_id = u.id"
    " LEFT JOIN payments p ON p.payment_id = o.payment_id";

static void add_rejection(pg_array *r, const op_item *x, const char *code, const char *msg) {
  const ps_operation *op = x->m->ev->operation;
  rejection_add(r, x->rejection_id, op->merchant_id, op->idempotency_key, code, msg, x->m);
}

static char *pack_request_hex(const op_item *x) {
  ps_event *ev = x->m->ev;
  char *saved = ev->operation_id;
  ev->operation_id = (char *)x->operation_id;
  size_t len;
  uint8_t *buf = event_pack(ev, &len);
  ev->operation_id = saved;
  char *hex = malloc(2 * len + 1);
  if (!buf || !hex) abort();
  hex_encode(buf, len, hex);
  free(buf);
  return hex;
}

static int attempt(void *arg, size_t lo, size_t n, char *err, size_t errlen) {
  op_batch *b = arg;
  pg_array a[14], r[8], ids[1];
  pg_arrays_init(a, 14);
  pg_arrays_init(r, 8);
  pg_arrays_init(ids, 1);
  for (size_t i = lo; i < lo + n; i++) {
    op_item *x = &b->it[i];
    const ps_operation *op = x->m->ev->operation;
    if (!x->valid) {
      add_rejection(r, x, x->verr.code, x->verr.message);
      continue;
    }
    char *hex = pack_request_hex(x);
    char num[32];
    pg_array_add_str(&a[0], x->operation_id);
    pg_array_add_str(&a[1], op->merchant_id);
    pg_array_add_str(&a[2], op->idempotency_key);
    pg_array_add_str(&a[3], x->fp);
    pg_array_add_str(&a[4], op_kind_name(op->kind));
    pg_array_add_str(&a[5], *op->payment_key ? op->payment_key : op->payment_id);
    pg_array_add_int(&a[6], op->amount ? op->amount->amount_minor : 0);
    pg_array_add_str(&a[7], op->amount ? op->amount->currency : "");
    snprintf(num, sizeof num, "%s", op->final_capture ? "true" : "false");
    pg_array_add_str(&a[8], num);
    pg_array_add_str(&a[9], hex);
    pg_array_add_str(&a[10], x->m->topic);
    pg_array_add_int(&a[11], x->m->partition);
    pg_array_add_int(&a[12], x->m->offset);
    pg_array_add_str(&a[13], *op->payment_key ? "key" : "id");
    pg_array_add_str(&ids[0], x->operation_id);
    free(hex);
  }
  const char *pa[14], *pr[8], *pi[1];
  pg_arrays_finish(a, 14, pa);
  pg_arrays_finish(r, 8, pr);
  pg_arrays_finish(ids, 1, pi);
  pg_stmt st[] = {{SQL_INSERT, 14, pa}, {SQL_ACCEPT, 1, pi}, {SQL_REJECT, 8, pr},
                  {SQL_LOOKUP, 1, pi}};
  PGresult *res[4];
  int rc = pg_pipeline(&b->ctx->pg, st, 4, res, err, errlen);
  pg_arrays_free(a, 14);
  pg_arrays_free(r, 8);
  pg_arrays_free(ids, 1);
  if (rc) {
    log_warn("operation batch of %zu failed: %s", n, err);
    return -1;
  }
  PGresult *q = res[3];
  res[3] = NULL;
  pg_results_clear(res, 4);
  /* ordinals count the valid items of the range, in order */
  size_t *valid = calloc(n + 1, sizeof *valid), nv = 0;
  if (!valid) abort();
  for (size_t i = lo; i < lo + n; i++)
    if (b->it[i].valid) valid[nv++] = i;
  for (int row = 0; row < PQntuples(q); row++) {
    long ord = strtol(PQgetvalue(q, row, 0), NULL, 10);
    if (ord < 1 || (size_t)ord > nv) continue;
    b->it[valid[ord - 1]].res = q;
    b->it[valid[ord - 1]].row = row;
  }
  free(valid);
  b->keep[b->nkeep++] = q;
  return 0;
}

static int isolate_one(void *arg, size_t i, const char *why) {
  op_batch *b = arg;
  op_item *x = &b->it[i];
  pg_array r[REJECTION_NCOLS];
  rejection_refused_begin(r, x->m, "operation", why);
  add_rejection(r, x, x->valid ? REFUSED_CODE : x->verr.code,
                x->valid ? REFUSED_MESSAGE : x->verr.message);
  char err[512];
  if (rejection_store(&b->ctx->pg, r, err, sizeof err)) return -1; /* transient: retried */
  if (x->valid) {
    x->refused = true;
    x->verr.code = REFUSED_CODE;
    snprintf(x->verr.message, sizeof x->verr.message, "%s", REFUSED_MESSAGE);
  }
  return 0;
}

static const isolate_ops ops = {attempt, isolate_one};

static int emit_outcome(stage_ctx *ctx, const op_item *x, const op_row *row, bool replayed,
                        outbox *out) {
  outcome_buf ob;
  op_outcome(&ob, row, x->m->ev->published_at_ms);
  ob.o.replayed = replayed;
  const char *key = x->m->ev->operation->idempotency_key;
  return outbox_add_outcome_keyed(out, ctx->cfg->topics.outcomes, key, strlen(key), &ob.o);
}

/* An operation refused before it had a row: its outcome from the message. */
static int emit_rejected(stage_ctx *ctx, const op_item *x, const char *code, const char *msg,
                         outbox *out) {
  const ps_operation *op = x->m->ev->operation;
  const char *kind = op_kind_name(op->kind);
  op_row row = {.operation_id = x->rejection_id, .payment_id = "",
                .merchant_id = validate_text(op->merchant_id, 255) ? op->merchant_id : "",
                .idempotency_key =
                    validate_text(op->idempotency_key, 255) ? op->idempotency_key : "",
                .kind = kind ? kind : "", .state = "rejected", .error_code = code,
                .error_message = msg, .currency = "", .processor = "", .processor_op_id = "",
                .decline_code = ""};
  if (op->amount && validate_text(op->amount->currency, 3)) {
    row.amount_minor = op->amount->amount_minor;
    row.currency = op->amount->currency;
  }
  outcome_buf ob;
  op_outcome(&ob, &row, x->m->ev->published_at_ms);
  const char *key = op->idempotency_key;
  return outbox_add_outcome_keyed(out, ctx->cfg->topics.outcomes, key, strlen(key), &ob.o);
}

static bool finished(const char *state) {
  return strcmp(state, "rejected") == 0 || strcmp(state, "declined") == 0 ||
         strcmp(state, "posted") == 0;
}

static int emit(stage_ctx *ctx, op_item *x, outbox *out) {
  if (!x->valid || x->refused) return emit_rejected(ctx, x, x->verr.code, x->verr.message, out);
  if (!x->res) return -1; /* no row read back: retry the batch */
  op_row row;
  op_row_read(x->res, x->row, 1, &row);
  log_ctx lc = {x->m->topic, x->m->partition, x->m->offset, row.payment_id, row.idempotency_key};
  if (strcmp(row.fingerprint, x->fp) != 0) {
    log_at(LOG_INFO, &lc, "operation key reused with other parameters");
    return emit_rejected(ctx, x, "idempotency_key_reused", REUSED_MESSAGE, out);
  }
  bool origin = row.source_partition == x->m->partition && row.source_offset == x->m->offset &&
                strcmp(row.source_topic, x->m->topic) == 0;
  if (finished(row.state)) return emit_outcome(ctx, x, &row, !origin, out);
  if (!origin) {
    log_at(LOG_DEBUG, &lc, "duplicate of an operation in flight absorbed");
    return 0;
  }
  /* accepted (or further along: a redelivery re-forwards; charge and the
   * ledger re-derive what they did from Postgres) */
  ps_event *ev = x->m->ev;
  char *s_pid = ev->payment_id, *s_oid = ev->operation_id, *s_key = ev->payment_key;
  uint32_t s_ver = ev->schema_version;
  ev->payment_id = (char *)row.payment_id;
  ev->operation_id = (char *)row.operation_id;
  ev->payment_key = (char *)row.payment_key;
  ev->schema_version = PS_SCHEMA_VERSION;
  int rc = outbox_add_event(out, ctx->cfg->topics.fraud_scored, ev);
  ev->payment_id = s_pid;
  ev->operation_id = s_oid;
  ev->payment_key = s_key;
  ev->schema_version = s_ver;
  return rc;
}

int ingest_operations(stage_ctx *ctx, stage_msg **msgs, size_t n, outbox *out) {
  if (n == 0) return 0;
  op_item *it = calloc(n, sizeof *it);
  PGresult **keep = calloc(2 * n + 2, sizeof *keep);
  if (!it || !keep) abort();
  for (size_t i = 0; i < n; i++) {
    op_item *x = &it[i];
    x->m = msgs[i];
    x->row = -1;
    ps_operation *op = x->m->ev->operation;
    ingest_rejection_id(x->m->topic, x->m->partition, x->m->offset, x->m->raw, x->m->rawlen,
                        x->rejection_id);
    int64_t ref = kloop_msg_timestamp(x->m);
    if (ref <= 0) ref = ps_now_ms();
    x->valid = validate_operation_intake(x->m->ev, &x->verr) == 0 &&
               validate_operation(op, &x->verr) == 0 &&
               validate_created_at(op->created_at_ms, ref, &x->verr) == 0;
    if (!x->valid) continue;
    validate_operation_normalise(op);
    ingest_operation_fingerprint(op, x->fp);
    ingest_operation_id(op->merchant_id, op->idempotency_key, x->operation_id);
  }
  op_batch b = {ctx, it, n, keep, 0};
  int rc = isolate_bisect(&ops, &b, 0, n);
  for (size_t i = 0; i < n && rc == 0; i++) rc = emit(ctx, &it[i], out);
  for (size_t i = 0; i < b.nkeep; i++) PQclear(keep[i]);
  free(keep);
  free(it);
  return rc;
}
