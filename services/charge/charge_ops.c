/* charge_ops: see charge_ops.h. */
#include "charge_ops.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "charge.h"
#include "charge_http.h"
#include "charge_lookup.h"
#include "charge_resolve.h"
#include "lifecycle_proc.h"
#include "log.h"
#include "operation.h"
#include "refund_status.h"

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

/* A counted send that provably wrote nothing (connection refused, curl
 * refused to start it) is counted as refused, as for sales (charge_db.c), so
 * a later "no such object" decides (SQL_DECLINE_MISSING). Conditional, in
 * Postgres: only while processing, never past sends (013's CHECK). */
static const char SQL_COUNT_REFUSED[] =
    "UPDATE payment_operations SET refused = refused + 1, updated_at = now()"
    " WHERE operation_id = $1 AND state = 'processing' AND refused < sends";

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
  bool check_resend;   /* a re-send is next: allowed only within the key's lifetime */
  bool search;         /* past the key's lifetime: only searched for, never sent again */
  bool escalated;      /* alerted once: not found past the key's lifetime */
  bool refund;         /* a refund: its answers without a verdict go by refund_status */
  int missing;         /* "no such object" answers after an earlier send may have arrived */
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

/* Returns whether the refused send was counted (else it may have arrived). */
static bool count_refused(stage_ctx *ctx, const log_ctx *lc, const char *op_id) {
  const char *v[] = {op_id};
  char err[512];
  PGresult *r = pg_exec(&ctx->pg, SQL_COUNT_REFUSED, 1, v, err, sizeof err);
  bool ok = r && strcmp(PQcmdTuples(r), "1") == 0;
  if (!r) log_at(LOG_WARN, lc, "operation %s: refused send not counted (%s)", op_id, err);
  PQclear(r);
  return ok;
}

/* query: a status query's answer (breaker_record_query: neutral unless a failure) */
static void learn_breaker(processor *pr, int64_t now, bool query, bool failure) {
  if (query) breaker_record_query(&pr->br, now, failure);
  else breaker_record(&pr->br, now, failure);
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

static void on_missing(stage_ctx *ctx, charge_state *st, citem *x, int64_t now);
static void on_search_answer(stage_ctx *ctx, charge_state *st, citem *x, int64_t now,
                             long slow_ms, bool kept);

/* An answer (to the request, a status query or a search). */
static void on_op_answer(stage_ctx *ctx, charge_state *st, citem *x, int64_t now) {
  struct op_item *o = x->op;
  processor *pr = &st->proc[x->db.proc];
  charge_kind k = x->ans.kind;
  bool decided = k == CHARGE_SUCCEEDED || k == CHARGE_DECLINED;
  log_ctx lc = op_ctx(ctx, x);
  learn_breaker(pr, now, x->ans.looked_up, charge_op_answer_failed(&x->ans));
  if (!x->ans.looked_up) o->check_resend = false; /* a send was answered */
  /* a refund without a verdict, by any path: its id kept when the answer
   * names it pending, the pending bound checked; the refund back-off */
  bool kept = false;
  long slow_ms = -1;
  if (!decided && o->refund)
    slow_ms = refund_status_on_answer(ctx, &lc, o->id, pr->name, &x->ans,
                                      charge_op_unresolved_ms(x, now), &kept);
  if (x->ans.searched) {
    on_search_answer(ctx, st, x, now, slow_ms, kept);
    return;
  }
  if (x->ans.looked_up && x->ans.lookup_unknown) {
    /* Sent again with the same key — if still within the key's lifetime
     * (checked against Postgres before the send: resolve_step). */
    log_at(LOG_INFO, &lc, "%s never got op_%s: sending it again, same key", pr->name, o->id);
    o->lookup = false;
    o->check_resend = true;
    x->st = IT_READ;
    x->next_try_ms = now;
    return;
  }
  if (decided) {
    o->lookup = false;
    record(ctx, x, now);
    return;
  }
  if (k == CHARGE_REJECTED && x->ans.resource_missing) {
    on_missing(ctx, st, x, now);
    return;
  }
  /* No verdict: a timeout, 5xx, 409, a `pending` refund, a 4xx that decides
   * nothing (401 after a key rotation, a proxy's 404, DUPLICATE_REQUEST_ID).
   * It may have been carried out: never re-sent blindly, asked about. */
  if (k == CHARGE_NOT_SENT && !x->ans.looked_up) count_refused(ctx, &lc, o->id);
  if (k != CHARGE_NOT_SENT || x->ans.looked_up) o->lookup = true;
  else o->check_resend = true; /* nothing written: re-sent, within the key's lifetime */
  log_at(LOG_WARN, &lc, "operation %s at %s%s: %s (%s); held, asking again later", o->id,
         pr->name, x->ans.looked_up ? " (status query)" : "", charge_kind_name(k), x->ans.error);
  double j = (double)rand() / ((double)RAND_MAX + 1);
  hold(x, now, slow_ms >= 0 ? slow_ms : charge_backoff_ms(o->tries++, j));
}

/* ---- no such object; past the key's lifetime (#20 review 6 and 2) --------------- */

/* "No such object" (404 resource_missing / INVALID_RESOURCE_ID) ends the
 * operation `declined` with the processor's code only when no earlier send
 * may have arrived: Postgres decides (sends <= refused + 1: this answer's
 * send is the only one that may have reached the processor), under the row's
 * lock, and ps_settle_operation gives the reservation back. */
static const char SQL_DECLINE_MISSING[] =
    "WITH o AS MATERIALIZED (SELECT operation_id FROM payment_operations"
    "   WHERE operation_id = $1 AND state = 'processing' AND sends <= refused + 1 FOR UPDATE)"
    " SELECT ps_settle_operation(o.operation_id, false, '', 0, $2, '', $3) FROM o";

/* After this many "no such object" answers (to sends and status queries)
 * with an earlier send that may have arrived, the worker stops asking. */
#define OP_MISSING_MAX 5
/* A search that found nothing (or an operation that cannot be searched for)
 * is looked at again this far apart. */
#define OP_SEARCH_AGAIN_MS 30000

static void on_missing(stage_ctx *ctx, charge_state *st, citem *x, int64_t now) {
  struct op_item *o = x->op;
  const charge_answer *a = &x->ans;
  log_ctx lc = op_ctx(ctx, x);
  const char *v[] = {o->id, a->error_code, a->error};
  char err[512];
  PGresult *r = pg_exec(&ctx->pg, SQL_DECLINE_MISSING, 3, v, err, sizeof err);
  bool ended = r && PQntuples(r) == 1 && strcmp(PQgetvalue(r, 0, 0), "declined") == 0;
  PQclear(r);
  if (!r) { /* not written: the same answer is asked for again */
    log_at(LOG_WARN, &lc, "operation %s: no such object, not recorded (%s)", o->id, err);
    o->lookup = true;
    hold(x, now, 500);
    return;
  }
  if (ended) {
    log_at(LOG_WARN, &lc, "operation %s: %s has no such object to act on (%s): declined",
           o->id, st->proc[x->db.proc].name, a->error_code);
    charge_answer_clear(&x->ans);
    o->held_since = 0;
    x->st = IT_READ; /* read again: its outcome */
    x->next_try_ms = now;
    return;
  }
  /* An earlier send may have arrived (and acted): ambiguous, asked a
   * bounded number of times, then escalated. */
  o->lookup = true;
  if (++o->missing < OP_MISSING_MAX) {
    log_at(LOG_WARN, &lc,
           "operation %s: no such object (%s) after an earlier send that may have arrived: held, "
           "asking again (%d of %d)",
           o->id, a->error_code, o->missing, OP_MISSING_MAX);
    hold(x, now, charge_backoff_ms(o->tries++, (double)rand() / ((double)RAND_MAX + 1)));
    return;
  }
  char why[200];
  snprintf(why, sizeof why,
           "no such object (%s) %d times after an earlier send that may have arrived: escalated, "
           "not asked again",
           a->error_code, o->missing);
  charge_resolve_note_operation(ctx, o->id, why);
  metric_add(st->m_op_escalated, 1);
  log_at(LOG_ERROR, &lc,
         "ALERT operation %s: %s; dead-lettered, left processing, listed in charge_unresolved "
         "(settle it with the processor; a redrive asks again)",
         o->id, why);
  snprintf(x->reason, sizeof x->reason, "operation escalated: %.200s", why);
  x->st = IT_DONE;
}

/* Past the key's lifetime: only a search may settle it. */
static void to_search(stage_ctx *ctx, citem *x, int64_t now) {
  struct op_item *o = x->op;
  log_ctx lc = op_ctx(ctx, x);
  log_at(LOG_WARN, &lc,
         "operation %s: first sent past the processor's key lifetime: never sent again; "
         "searching by operation id",
         o->id);
  charge_resolve_note_operation(ctx, o->id,
                                "past the processor's key lifetime: never re-sent; searching");
  o->search = o->lookup = true;
  o->check_resend = false;
  hold(x, now, 0);
}

static void escalate_unfound(stage_ctx *ctx, charge_state *st, citem *x, const char *why) {
  struct op_item *o = x->op;
  if (o->escalated) return;
  o->escalated = true;
  log_ctx lc = op_ctx(ctx, x);
  metric_add(st->m_key_unfound, 1);
  log_at(LOG_ERROR, &lc,
         "ALERT operation %s past the processor's key lifetime, %s: never re-sent; left "
         "processing, listed in charge_unresolved; settle it by webhook, settlement report or "
         "operator",
         o->id, why);
  char note[200];
  snprintf(note, sizeof note, "past the processor's key lifetime, %s: never re-sent", why);
  charge_resolve_note_operation(ctx, o->id, note);
}

/* slow_ms, kept: refund_status_on_answer's (a refund found pending). */
static void on_search_answer(stage_ctx *ctx, charge_state *st, citem *x, int64_t now,
                             long slow_ms, bool kept) {
  struct op_item *o = x->op;
  charge_kind k = x->ans.kind;
  log_ctx lc = op_ctx(ctx, x);
  if (k == CHARGE_SUCCEEDED || k == CHARGE_DECLINED) {
    log_at(LOG_INFO, &lc, "operation %s found by a search: %s", o->id, charge_kind_name(k));
    o->search = false;
    record(ctx, x, now);
    return;
  }
  /* found pending, its id kept: asked by id from now on (the search only
   * ever repeats the first answer: pending for ever) */
  if (kept) o->search = false;
  if (x->ans.search_none) {
    escalate_unfound(ctx, st, x, "not found by a search");
  } else if (x->ans.query_answered) {
    /* The processor answered the search, but not with a verdict on our
     * operation (a 4xx naming none, another object): nothing decides it,
     * asking every 2 s will not change that. ALERT once, asked slowly. */
    char why[160];
    snprintf(why, sizeof why, "its search answered without a verdict for it (%.100s)",
             x->ans.error);
    escalate_unfound(ctx, st, x, why);
  } else {
    log_at(LOG_WARN, &lc, "operation %s: search without a verdict (%s)", o->id, x->ans.error);
  }
  hold(x, now,
       slow_ms >= 0  ? slow_ms
       : o->escalated ? OP_SEARCH_AGAIN_MS
                      : charge_backoff_ms(o->tries++, (double)rand() / ((double)RAND_MAX + 1)));
}

static void read_and_go(stage_ctx *ctx, charge_state *st, citem *x, int64_t now, size_t *room);

/* Before read_and_go: a re-send only within the key's lifetime (asked of
 * Postgres; 027's guard refuses a late count anyway), and past it the
 * search instead. Returns whether it took the step. */
static bool resolve_step(stage_ctx *ctx, charge_state *st, citem *x, int64_t now, size_t *room) {
  struct op_item *o = x->op;
  if (!o->search && !(o->check_resend && !o->lookup)) return false;
  op_facts f;
  if (charge_resolve_op_facts(ctx, o->id, &f)) {
    x->next_try_ms = now + 500;
    return true;
  }
  int pi = processor_index(st->proc, st->nproc, f.processor);
  bool live = strcmp(f.state, "processing") == 0;
  if (!live || pi < 0 || !f.may_have) { /* settled meanwhile, or read_and_go's case */
    o->search = o->check_resend = false;
    return false;
  }
  if (!o->search) {
    if (!charge_key_aged(st, pi, f.age_ms)) return false; /* read_and_go re-sends */
    to_search(ctx, x, now);
    return true;
  }
  if (strcmp(f.kind, "refund") != 0) { /* a capture or void carries no id of ours */
    escalate_unfound(ctx, st, x, "a capture or void cannot be searched for");
    hold(x, now, OP_SEARCH_AGAIN_MS);
    return true;
  }
  processor *pr = &st->proc[pi];
  if (!*room || !breaker_allow(&pr->br, now)) {
    x->next_try_ms = now + 100;
    return true;
  }
  x->db.proc = pi;
  lc_refund_ask ask = {NULL, f.currency, o->id, f.amount_minor, f.payment_id, NULL};
  if (charge_http_start_search_op(&st->http, &x->call, pr, SEARCH_REFUND, o->id, KIND_REFUND,
                                  &ask, x)) {
    breaker_release(&pr->br);
    x->next_try_ms = now + 500;
    return true;
  }
  metric_add(st->m_lookups, 1);
  (*room)--;
  x->st = IT_INFLIGHT;
  return true;
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
  o->refund = kind == KIND_REFUND;
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
  lc_refund_ask ask = {row.processor_op_id, row.currency, row.operation_id, row.amount_minor,
                       row.payment_id, target};
  if (refund_status_start(&st->http, &x->call, pr, &rq, key, kind, &ask, o->lookup, x)) {
    breaker_release(&pr->br);
    free(rq.body);
    /* a counted send that left nothing: refused, re-sent; if that is not
     * booked, the query says so */
    if (o->lookup || !count_refused(ctx, &lc, row.operation_id)) o->lookup = true;
    else o->check_resend = true;
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
  else if (!resolve_step(ctx, st, x, now, room)) read_and_go(ctx, st, x, now, room);
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
