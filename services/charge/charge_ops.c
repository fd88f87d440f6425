/* charge_ops: see charge_ops.h. */
#include "charge_ops.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "charge.h"
#include "charge_http.h"
#include "lifecycle_proc.h"
#include "log.h"
#include "operation.h"

static const char SQL_READ[] =
    "SELECT " OP_ROW_COLUMNS ", o.final_capture, coalesce(p.kind, ''),"
    " coalesce(p.processor_charge_id, ''),"
    " coalesce((SELECT c.processor_op_id FROM payment_operations c"
    "   WHERE c.payment_id = o.payment_id AND c.kind = 'capture'"
    "     AND c.state IN ('succeeded', 'posted') ORDER BY c.created_at DESC, c.operation_id DESC"
    "   LIMIT 1), ''), coalesce(o.processor_target, ''), o.sends, o.refused,"
    /* 028's columns, read so that this charge also runs before it is applied */
    " coalesce(to_jsonb(o)->>'settled_by', ''), coalesce(to_jsonb(o)->>'reversed', 'false')"
    " FROM payment_operations o LEFT JOIN payments p ON p.payment_id = o.payment_id"
    " WHERE o.operation_id = $1";

/* Durable before the send: the move (or the count of one more send). */
static const char SQL_SENDING[] =
    "UPDATE payment_operations SET state = 'processing', sends = sends + 1,"
    " processor_key = coalesce(processor_key, $2),"
    " processor_target = coalesce(processor_target, nullif($3, '')), updated_at = now()"
    " WHERE operation_id = $1 AND state IN ('accepted', 'processing')"
    " RETURNING coalesce(processor_target, '')";

static const char SQL_SETTLE[] = "SELECT ps_settle_operation($1, $2, $3, $4, $5, $6, $7)";

static const char SQL_ABANDON[] = "SELECT ps_abandon_operation($1, $2, $3)";

/* Forwards a succeeded operation to the ledger with what the processor said. */
static void forward(stage_ctx *ctx, stage_msg *m, const op_row *row, outbox *out) {
  ps_charge ch = PAYMENTS__V1__CHARGE_RESULT__INIT;
  ch.status = PAYMENTS__V1__CHARGE_STATUS__CHARGE_STATUS_SUCCEEDED;
  ch.processor = (char *)row->processor;
  ch.processor_charge_id = (char *)row->processor_op_id;
  ch.fee_minor = row->fee_minor;
  ps_event *ev = m->ev;
  ps_charge *saved = ev->charge;
  ev->charge = &ch;
  outbox_add_event(out, ctx->cfg->topics.charged, ev);
  ev->charge = saved;
}

/* An operation that cannot be sent at all: ended `declined` with code when
 * Postgres proves it was never sent (1: go on from its recorded state), else
 * held (-1: it may be at the processor; only its answer may end it). */
static int abandon(stage_ctx *ctx, const log_ctx *lc, const char *op_id, const char *code,
                   const char *msg) {
  const char *v[] = {op_id, code, msg};
  pg_stmt ab = {SQL_ABANDON, 3, v};
  PGresult *r = NULL;
  char err[512];
  int rc = -1;
  if (pg_pipeline(&ctx->pg, &ab, 1, &r, err, sizeof err) == 0 && PQntuples(r) == 1 &&
      strcmp(PQgetvalue(r, 0, 0), "declined") == 0) {
    log_at(LOG_ERROR, lc, "ALERT operation %s never sent: ended declined (%s: %s)", op_id, code,
           msg);
    rc = 1;
  } else {
    log_at(LOG_ERROR, lc, "ALERT operation %s (%s) may have been sent: held", op_id, msg);
  }
  PQclear(r);
  return rc;
}

/* ---- an operation as an item of the state machine ------------------------------ */

/* EMIT_FAILED: a refund charge settled as succeeded while the processor's
 * failure of it was kept (028): it was posted and reversed in Postgres, and
 * its one outcome is `failed` / refund_failed. */
typedef enum op_emit { EMIT_NOTHING, EMIT_FORWARD, EMIT_OUTCOME, EMIT_FAILED } op_emit;

struct op_item {
  char id[64];
  PGresult *row;       /* its last read: op_row points into it */
  op_emit emit;        /* what it publishes once DONE */
  bool seen;           /* read once: a send before ours is asked about first */
  bool lookup;         /* ask the processor what op_<id> got before any re-send */
  int tries;           /* answers without a verdict so far, for the back-off */
  int64_t held_since;  /* when it first went without a definite answer (0: not held) */
};

struct op_item *charge_op_new(const char *operation_id) {
  struct op_item *o = calloc(1, sizeof *o);
  if (!o) abort();
  snprintf(o->id, sizeof o->id, "%s", operation_id ? operation_id : "");
  return o;
}

void charge_op_free(struct op_item *o) {
  if (!o) return;
  PQclear(o->row);
  free(o);
}

int64_t charge_op_unresolved_ms(const citem *x, int64_t now) {
  return x->op && x->op->held_since && x->st != IT_DONE ? now - x->op->held_since : 0;
}

static log_ctx op_ctx(const stage_ctx *ctx, const citem *x) {
  log_ctx lc = {ctx->cfg->topics.fraud_scored, x->partition, x->offset, x->ev->payment_id,
                x->ev->payment_key};
  return lc;
}

static void learn_breaker(processor *pr, int64_t now, bool failure) {
  breaker_record(&pr->br, now, failure);
  processor_export_breaker(pr, breaker_get_state(&pr->br, now));
}

/* Held: the processor may have it and gave no verdict. Only this payment
 * waits (its later events behind it); it is asked again on the back-off. */
static void hold(citem *x, int64_t now, long delay_ms) {
  if (!x->op->held_since) x->op->held_since = now;
  x->st = IT_READ;
  x->next_try_ms = now + delay_ms;
}

/* Records a definite answer (ps_settle_operation: conditional, so a second
 * record of the same answer changes nothing); then it is read again. */
static void record(stage_ctx *ctx, citem *x, int64_t now) {
  const charge_answer *a = &x->ans;
  char fee[32], err[512];
  snprintf(fee, sizeof fee, "%lld", (long long)a->fee_minor);
  bool ok = a->kind == CHARGE_SUCCEEDED;
  const char *pv[] = {x->op->id, ok ? "true" : "false", a->charge_id ? a->charge_id : "",
                      fee, a->error_code, a->decline_code, a->error};
  pg_stmt settle = {SQL_SETTLE, 7, pv};
  PGresult *q = NULL;
  int rc = pg_pipeline(&ctx->pg, &settle, 1, &q, err, sizeof err);
  PQclear(q);
  log_ctx lc = op_ctx(ctx, x);
  if (rc) {
    log_at(LOG_WARN, &lc, "operation %s answered but not recorded (%s): recorded later", x->op->id,
           err);
    x->st = IT_RECORD;
    x->next_try_ms = now + 500;
    return;
  }
  log_at(LOG_INFO, &lc, "operation %s %s", x->op->id, ok ? "succeeded" : "declined");
  charge_answer_clear(&x->ans);
  x->op->held_since = 0;
  x->st = IT_READ; /* re-read: forward or outcome from the recorded state */
  x->next_try_ms = now;
}

/* An answer (to the request or to a status query). */
static void on_op_answer(stage_ctx *ctx, charge_state *st, citem *x, int64_t now) {
  struct op_item *o = x->op;
  processor *pr = &st->proc[x->db.proc];
  charge_kind k = x->ans.kind;
  bool decided = k == CHARGE_SUCCEEDED || k == CHARGE_DECLINED;
  log_ctx lc = op_ctx(ctx, x);
  learn_breaker(pr, now, !decided && k != CHARGE_REJECTED && !x->ans.lookup_unknown);
  if (x->ans.looked_up && x->ans.lookup_unknown) {
    log_at(LOG_INFO, &lc, "%s never got op_%s: sending it again, same key", pr->name, o->id);
    o->lookup = false;
    x->st = IT_READ;
    x->next_try_ms = now;
    return;
  }
  if (decided) {
    o->lookup = false;
    record(ctx, x, now);
    return;
  }
  /* No verdict: a timeout, 5xx, 409, a `pending` refund, a 4xx that decides
   * nothing (401 after a key rotation, 404, DUPLICATE_REQUEST_ID). It may
   * have been carried out: never re-sent blindly, asked about. */
  if (k != CHARGE_NOT_SENT || x->ans.looked_up) o->lookup = true;
  log_at(LOG_WARN, &lc, "operation %s at %s%s: %s (%s); held, asking again later", o->id,
         pr->name, x->ans.looked_up ? " (status query)" : "", charge_kind_name(k), x->ans.error);
  hold(x, now, charge_backoff_ms(o->tries++, (double)rand() / ((double)RAND_MAX + 1)));
}

/* Reads the operation and does what its state says: done (emit), ended by
 * us when provably never sent, or its request (or status query) started. */
static void read_and_go(stage_ctx *ctx, charge_state *st, citem *x, int64_t now, size_t *room) {
  struct op_item *o = x->op;
  log_ctx lc = op_ctx(ctx, x);
  char err[512];
  const char *v[] = {o->id};
  pg_stmt rd = {SQL_READ, 1, v};
  PGresult *r = NULL;
  if (pg_pipeline(&ctx->pg, &rd, 1, &r, err, sizeof err)) {
    PQclear(r);
    x->next_try_ms = now + 500;
    return;
  }
  PQclear(o->row);
  o->row = r;
  x->st = IT_DONE;
  if (PQntuples(r) != 1) {
    snprintf(x->reason, sizeof x->reason, "operation unknown to Postgres");
    return;
  }
  op_row row;
  op_row_read(r, 0, 0, &row);
  bool settled = strcmp(row.state, "succeeded") == 0 || strcmp(row.state, "posted") == 0;
  if ((settled || strcmp(row.state, "declined") == 0) &&
      strcmp(PQgetvalue(r, 0, OP_ROW_NCOLS + 7), "events") == 0) {
    /* Settled by the processor-events stage from a webhook: it forwarded
     * or published it, acknowledged before its commit. Nothing again. */
    log_at(LOG_INFO, &lc, "operation %s was settled %s by processor events: they emit it", o->id,
           row.state);
    metric_add(st->m_elsewhere, 1);
    o->emit = EMIT_NOTHING;
    return;
  }
  if (settled) {
    /* again on a redelivery: the ledger re-derives from Postgres */
    o->emit = strcmp(row.state, "posted") == 0 &&
                      strcmp(PQgetvalue(r, 0, OP_ROW_NCOLS + 8), "true") == 0
                  ? EMIT_FAILED
                  : EMIT_FORWARD;
    return;
  }
  if (strcmp(row.state, "declined") == 0) {
    o->emit = EMIT_OUTCOME;
    return;
  }
  if (strcmp(row.state, "accepted") != 0 && strcmp(row.state, "processing") != 0) {
    snprintf(x->reason, sizeof x->reason, "operation not accepted by ingest");
    return;
  }
  x->st = IT_READ;
  bool final = strcmp(PQgetvalue(r, 0, OP_ROW_NCOLS), "t") == 0;
  const char *pkind = PQgetvalue(r, 0, OP_ROW_NCOLS + 1);
  const char *holder = PQgetvalue(r, 0, OP_ROW_NCOLS + 2);
  const char *capture_id = PQgetvalue(r, 0, OP_ROW_NCOLS + 3);
  const char *fixed = PQgetvalue(r, 0, OP_ROW_NCOLS + 4); /* the target of its first send */
  int sends = atoi(PQgetvalue(r, 0, OP_ROW_NCOLS + 5));
  int refused = atoi(PQgetvalue(r, 0, OP_ROW_NCOLS + 6));
  if (!o->seen) { /* taken up with a send that may have arrived (restart, rebalance) */
    o->seen = true;
    if (sends > refused) {
      o->lookup = true;
      o->held_since = now;
    }
  }
  int pi = processor_index(st->proc, st->nproc, row.processor);
  char msg[256];
  if (pi < 0) {
    metric_add(st->m_unconfigured, 1);
    snprintf(msg, sizeof msg, "processor %s is not configured", row.processor);
    if (abandon(ctx, &lc, row.operation_id, "processor_unavailable", msg) > 0) x->next_try_ms = now;
    else hold(x, now, 5000); /* it may be there: only its answer may end it */
    return;
  }
  processor *pr = &st->proc[pi];
  int kind = op_kind_from_name(row.kind);
  /* What holds the money: the authorization or the sale's charge; a PayPal
   * refund of an authorization goes to its latest capture. */
  const char *target = holder;
  if (pr->paypal && kind == KIND_REFUND && strcmp(pkind, "authorize") == 0) target = capture_id;
  if (*fixed) target = fixed; /* a retry names what the first send named */
  lc_request rq;
  if (lc_operation_request(pr->paypal, (ps_kind)kind, target, row.amount_minor, row.currency,
                           final, row.payment_id, row.operation_id, &rq)) {
    snprintf(msg, sizeof msg, "the request cannot be built (target '%s')", target);
    if (abandon(ctx, &lc, row.operation_id, "request_invalid", msg) > 0) x->next_try_ms = now;
    else hold(x, now, 5000);
    return;
  }
  if (!*room || !breaker_allow(&pr->br, now)) { /* no slot, or its circuit is open: wait */
    free(rq.body);
    x->next_try_ms = now + 100;
    return;
  }
  char key[80];
  snprintf(key, sizeof key, "op_%s", row.operation_id);
  if (!o->lookup) {
    /* Durable before the send. The stored target differs only if another
     * send fixed it meanwhile: read again. */
    const char *sv[] = {row.operation_id, key, target};
    pg_stmt snd = {SQL_SENDING, 3, sv};
    PGresult *s = NULL;
    bool counted = pg_pipeline(&ctx->pg, &snd, 1, &s, err, sizeof err) == 0 &&
                   PQntuples(s) == 1 && strcmp(PQgetvalue(s, 0, 0), target) == 0;
    PQclear(s);
    if (!counted) {
      breaker_release(&pr->br);
      free(rq.body);
      x->next_try_ms = now + 500;
      return;
    }
  }
  x->db.proc = pi;
  if (charge_http_start_op(&st->http, &x->call, pr, &rq, key, kind, row.currency, o->lookup, x)) {
    breaker_release(&pr->br);
    free(rq.body);
    o->lookup = true; /* a counted send that left nothing: the query says so */
    x->next_try_ms = now + 500;
    return;
  }
  if (o->lookup) metric_add(st->m_lookups, 1);
  (*room)--;
  x->st = IT_INFLIGHT;
}

void charge_op_step(stage_ctx *ctx, charge_state *st, citem *x, bool answer, int64_t now,
                    size_t *room) {
  if (answer) {
    if (x->st == IT_INFLIGHT) on_op_answer(ctx, st, x, now);
    return;
  }
  if (x->st == IT_INFLIGHT || x->st == IT_DONE || x->next_try_ms > now) return;
  if (x->st == IT_RECORD) record(ctx, x, now);
  else read_and_go(ctx, st, x, now, room);
}

void charge_op_emit(stage_ctx *ctx, citem *x, stage_msg *m, outbox *out) {
  struct op_item *o = x->op;
  if (x->reason[0]) {
    outbox_add_dlq(out, ctx->cfg->topics.dlq, "charge", m, x->reason);
    return;
  }
  if (!o->row || PQntuples(o->row) != 1 || o->emit == EMIT_NOTHING) return;
  op_row row;
  op_row_read(o->row, 0, 0, &row);
  if (o->emit == EMIT_FORWARD) {
    forward(ctx, m, &row, out);
    return;
  }
  outcome_buf ob;
  op_outcome(&ob, &row, x->ev->published_at_ms);
  if (o->emit == EMIT_FAILED) {
    ob.o.status = PAYMENTS__V1__OUTCOME_STATUS__OUTCOME_STATUS_FAILED;
    ob.o.error_code = (char *)"refund_failed";
    ob.o.error_message = (char *)"the processor failed the refund after it had succeeded: "
                                 "its amount is refundable again";
    ob.o.processor_event = (char *)"refund_reversed";
  }
  outbox_add_outcome_keyed(out, ctx->cfg->topics.outcomes, row.idempotency_key,
                           strlen(row.idempotency_key), &ob.o);
}
