/* charge_ops: see charge_ops.h. */
#include "charge_ops.h"

#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lifecycle_proc.h"
#include "log.h"
#include "operation.h"

static const char SQL_READ[] =
    "SELECT " OP_ROW_COLUMNS ", o.final_capture, coalesce(p.kind, ''),"
    " coalesce(p.processor_charge_id, ''),"
    " coalesce((SELECT c.processor_op_id FROM payment_operations c"
    "   WHERE c.payment_id = o.payment_id AND c.kind = 'capture'"
    "     AND c.state IN ('succeeded', 'posted') ORDER BY c.created_at DESC, c.operation_id DESC"
    "   LIMIT 1), ''), coalesce(o.processor_target, '')"
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

static const char SQL_ROW[] =
    "SELECT " OP_ROW_COLUMNS " FROM payment_operations o"
    " LEFT JOIN payments p ON p.payment_id = o.payment_id WHERE o.operation_id = $1";

typedef struct body_buf {
  char *p;
  size_t n;
} body_buf;

static size_t on_body(char *data, size_t size, size_t nmemb, void *ud) {
  body_buf *b = ud;
  size_t n = size * nmemb;
  if (b->n + n > 1 << 20) return 0;
  char *nb = realloc(b->p, b->n + n + 1);
  if (!nb) return 0;
  memcpy(nb + b->n, data, n);
  b->p = nb;
  b->n += n;
  b->p[b->n] = '\0';
  return n;
}

/* One blocking exchange. Returns the HTTP status, 0 when nothing came back
 * (*sent says whether a byte may have left). */
static long exchange(const processor *pr, const lc_request *rq, const char *key, body_buf *resp,
                     bool *sent, char *err, size_t errlen) {
  CURL *e = curl_easy_init();
  if (!e) abort();
  char url[1024], hdr[512], errbuf[CURL_ERROR_SIZE] = "";
  struct curl_slist *h = NULL;
  snprintf(url, sizeof url, "%s%s", pr->url, rq->path);
  snprintf(hdr, sizeof hdr, "%s: %s", pr->paypal ? "PayPal-Request-Id" : "Idempotency-Key", key);
  h = curl_slist_append(h, hdr);
  h = curl_slist_append(h, rq->json ? "Content-Type: application/json"
                                    : "Content-Type: application/x-www-form-urlencoded");
  snprintf(hdr, sizeof hdr, "Authorization: Bearer %s", pr->api_key ? pr->api_key : "");
  h = curl_slist_append(h, hdr);
  curl_easy_setopt(e, CURLOPT_URL, url);
  curl_easy_setopt(e, CURLOPT_POSTFIELDS, rq->body);
  curl_easy_setopt(e, CURLOPT_HTTPHEADER, h);
  curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
  curl_easy_setopt(e, CURLOPT_WRITEDATA, resp);
  curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, 10000L);
  curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, 2000L);
  curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(e, CURLOPT_ERRORBUFFER, errbuf);
  CURLcode rc = curl_easy_perform(e);
  long status = 0, reqsize = 0;
  curl_easy_getinfo(e, CURLINFO_REQUEST_SIZE, &reqsize);
  *sent = reqsize > 0;
  if (rc == CURLE_OK) curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &status);
  else snprintf(err, errlen, "%s", *errbuf ? errbuf : curl_easy_strerror(rc));
  curl_slist_free_all(h);
  curl_easy_cleanup(e);
  return status;
}

static int emit_outcome_row(stage_ctx *ctx, const ps_event *ev, const char *op_id, outbox *out) {
  const char *v[] = {op_id};
  pg_stmt st = {SQL_ROW, 1, v};
  PGresult *r = NULL;
  char err[512];
  if (pg_pipeline(&ctx->pg, &st, 1, &r, err, sizeof err)) return -1;
  int rc = 0;
  if (PQntuples(r) == 1) {
    op_row row;
    op_row_read(r, 0, 0, &row);
    outcome_buf ob;
    op_outcome(&ob, &row, ev->published_at_ms);
    rc = outbox_add_outcome_keyed(out, ctx->cfg->topics.outcomes, row.idempotency_key,
                                  strlen(row.idempotency_key), &ob.o);
  }
  PQclear(r);
  return rc;
}

/* Forwards a succeeded operation to the ledger with what the processor said. */
static int forward(stage_ctx *ctx, stage_msg *m, const op_row *row, outbox *out) {
  ps_charge ch = PAYMENTS__V1__CHARGE_RESULT__INIT;
  ch.status = PAYMENTS__V1__CHARGE_STATUS__CHARGE_STATUS_SUCCEEDED;
  ch.processor = (char *)row->processor;
  ch.processor_charge_id = (char *)row->processor_op_id;
  ch.fee_minor = row->fee_minor;
  ps_event *ev = m->ev;
  ps_charge *saved = ev->charge;
  ev->charge = &ch;
  int rc = outbox_add_event(out, ctx->cfg->topics.charged, ev);
  ev->charge = saved;
  return rc;
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

static int run_one(stage_ctx *ctx, charge_state *st, stage_msg *m, outbox *out) {
  const ps_event *ev = m->ev;
  log_ctx lc = {m->topic, m->partition, m->offset, ev->payment_id, ev->payment_key};
  char err[512];
  const char *v[] = {ev->operation_id};
  pg_stmt rd = {SQL_READ, 1, v};
  PGresult *r = NULL;
  if (pg_pipeline(&ctx->pg, &rd, 1, &r, err, sizeof err)) return -1;
  if (PQntuples(r) != 1) {
    PQclear(r);
    outbox_add_dlq(out, ctx->cfg->topics.dlq, "charge", m, "operation unknown to Postgres");
    return 0;
  }
  op_row row;
  op_row_read(r, 0, 0, &row);
  bool final = strcmp(PQgetvalue(r, 0, OP_ROW_NCOLS), "t") == 0;
  const char *pkind = PQgetvalue(r, 0, OP_ROW_NCOLS + 1);
  const char *holder = PQgetvalue(r, 0, OP_ROW_NCOLS + 2);
  const char *capture_id = PQgetvalue(r, 0, OP_ROW_NCOLS + 3);
  const char *fixed = PQgetvalue(r, 0, OP_ROW_NCOLS + 4); /* the target of its first send */
  int rc = 0;
  if (strcmp(row.state, "succeeded") == 0 || strcmp(row.state, "posted") == 0) {
    rc = forward(ctx, m, &row, out); /* again: the ledger re-derives from Postgres */
    goto done;
  }
  if (strcmp(row.state, "declined") == 0) {
    rc = emit_outcome_row(ctx, ev, row.operation_id, out);
    goto done;
  }
  if (strcmp(row.state, "accepted") != 0 && strcmp(row.state, "processing") != 0) {
    outbox_add_dlq(out, ctx->cfg->topics.dlq, "charge", m, "operation not accepted by ingest");
    goto done;
  }
  int pi = processor_index(st->proc, st->nproc, row.processor);
  if (pi < 0) {
    metric_add(st->m_unconfigured, 1);
    char msg[256];
    snprintf(msg, sizeof msg, "processor %s is not configured", row.processor);
    if (abandon(ctx, &lc, row.operation_id, "processor_unavailable", msg) < 0) {
      rc = -1;
      goto done;
    }
    PQclear(r);
    return run_one(ctx, st, m, out); /* declined: its outcome */
  }
  const processor *pr = &st->proc[pi];
  int kind = op_kind_from_name(row.kind);
  /* What holds the money: the authorization or the sale's charge; a PayPal
   * refund of an authorization goes to its latest capture. */
  const char *target = holder;
  if (pr->paypal && kind == KIND_REFUND && strcmp(pkind, "authorize") == 0) target = capture_id;
  if (*fixed) target = fixed; /* a retry names what the first send named */
  lc_request rq;
  if (lc_operation_request(pr->paypal, (ps_kind)kind, target, row.amount_minor, row.currency,
                           final, row.payment_id, row.operation_id, &rq)) {
    char msg[256];
    snprintf(msg, sizeof msg, "the request cannot be built (target '%s')", target);
    if (abandon(ctx, &lc, row.operation_id, "request_invalid", msg) < 0) {
      rc = -1;
      goto done;
    }
    PQclear(r);
    return run_one(ctx, st, m, out);
  }
  char key[64];
  snprintf(key, sizeof key, "op_%s", row.operation_id);
  const char *sv[] = {row.operation_id, key, target};
  pg_stmt snd = {SQL_SENDING, 3, sv};
  PGresult *s = NULL;
  /* The stored target differs only if another send fixed it meanwhile: retry. */
  if (pg_pipeline(&ctx->pg, &snd, 1, &s, err, sizeof err) || PQntuples(s) != 1 ||
      strcmp(PQgetvalue(s, 0, 0), target) != 0) {
    PQclear(s);
    free(rq.body);
    rc = -1;
    goto done;
  }
  PQclear(s);
  body_buf resp = {0};
  bool sent = false;
  long status = exchange(pr, &rq, key, &resp, &sent, err, sizeof err);
  free(rq.body);
  charge_answer a;
  if (status == 0) {
    memset(&a, 0, sizeof a);
    a.kind = CHARGE_UNKNOWN;
    charge_answer_error(&a, "%s", err);
  } else {
    lc_map_operation(pr->paypal, (ps_kind)kind, status, resp.p, resp.n, row.currency, &a);
  }
  free(resp.p);
  if (a.kind != CHARGE_SUCCEEDED && a.kind != CHARGE_DECLINED) {
    log_at(LOG_WARN, &lc, "operation %s at %s: %s (%s); retrying with the same key",
           row.operation_id, pr->name, charge_kind_name(a.kind), a.error);
    charge_answer_clear(&a);
    rc = -1;
    goto done;
  }
  char fee[32];
  snprintf(fee, sizeof fee, "%lld", (long long)a.fee_minor);
  bool ok = a.kind == CHARGE_SUCCEEDED;
  const char *pv[] = {row.operation_id, ok ? "true" : "false", a.charge_id ? a.charge_id : "",
                      fee, a.error_code, a.decline_code, a.error};
  pg_stmt settle = {SQL_SETTLE, 7, pv};
  PGresult *q = NULL;
  int src = pg_pipeline(&ctx->pg, &settle, 1, &q, err, sizeof err);
  PQclear(q);
  charge_answer_clear(&a);
  if (src) {
    log_at(LOG_WARN, &lc, "operation %s answered but not recorded (%s): retrying", row.operation_id,
           err);
    rc = -1;
    goto done;
  }
  log_at(LOG_INFO, &lc, "operation %s %s at %s", row.operation_id, ok ? "succeeded" : "declined",
         pr->name);
  /* Re-read and go on from the recorded state (forward or outcome). */
  PQclear(r);
  r = NULL;
  return run_one(ctx, st, m, out);
done:
  PQclear(r);
  return rc;
}

int charge_operations(stage_ctx *ctx, charge_state *st, stage_msg *msgs, size_t n, outbox *out) {
  for (size_t i = 0; i < n; i++) {
    if (!msgs[i].ev || !msgs[i].ev->operation) continue;
    size_t before = out->n;
    if (run_one(ctx, st, &msgs[i], out)) return -1;
    outbox_tag(out, before, msgs[i].partition, msgs[i].offset); /* exactly-once holds it */
  }
  return 0;
}
