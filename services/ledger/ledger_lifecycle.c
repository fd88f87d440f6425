/* ledger_lifecycle: see ledger_lifecycle.h. */
#include "ledger_lifecycle.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hex.h"
#include "log.h"
#include "metrics.h"
#include "operation.h"
#include "pg.h"
#include "posting_lifecycle.h"

static const char SQL_ACCOUNTS[] =
    "INSERT INTO ledger_accounts (name, currency, type)"
    " SELECT DISTINCT n, $2, split_part(n, ':', 1) FROM unnest($1::text[]) AS n"
    " ON CONFLICT (name, currency) DO NOTHING";

/* The transaction and its entries in one statement (011). */
static const char SQL_POST[] =
    "WITH tx AS (INSERT INTO ledger_transactions (payment_id, kind, operation_id)"
    "  VALUES ($1, $2, $3) ON CONFLICT DO NOTHING RETURNING transaction_id),"
    " e AS (INSERT INTO ledger_entries (transaction_id, account_id, currency, direction,"
    "  amount_minor) SELECT tx.transaction_id, a.account_id, $7, u.d, u.amt"
    "  FROM tx CROSS JOIN unnest($4::text[], $5::text[], $6::bigint[]) AS u(n, d, amt)"
    "  JOIN ledger_accounts a ON a.name = u.n AND a.currency = $7 RETURNING 1)"
    " SELECT count(*) FROM e";

static const char SQL_AUTH_FACTS[] =
    "SELECT p.status, p.kind, p.authorized_minor, p.currency, coalesce(a.processor, ''),"
    " coalesce(encode(p.outcome, 'hex'), ''), p.idempotency_key"
    " FROM payments p LEFT JOIN charge_attempts a ON a.payment_id = p.payment_id"
    "  AND a.state = 'succeeded' WHERE p.payment_id = $1";

static const char SQL_AUTH_FINISH[] =
    "UPDATE payments SET status = 'authorized', outcome = decode($2, 'hex'), error_code = NULL,"
    " updated_at = now() WHERE payment_id = $1 AND status IN ('charged', 'ledger_failed')"
    " AND kind = 'authorize' AND EXISTS (SELECT 1 FROM ledger_transactions t"
    "  WHERE t.payment_id = $1 AND t.kind = 'authorization' AND t.operation_id IS NULL)";

static const char SQL_OP_FACTS[] =
    "SELECT " OP_ROW_COLUMNS ", o.released_minor, p.currency FROM payment_operations o"
    " JOIN payments p ON p.payment_id = o.payment_id WHERE o.operation_id = $1";

static const char SQL_OP_FINISH[] =
    "UPDATE payment_operations SET state = 'posted', updated_at = now()"
    " WHERE operation_id = $1 AND state = 'succeeded' AND EXISTS (SELECT 1 FROM"
    " ledger_transactions t WHERE t.operation_id = $1)";

bool ledger_lifecycle_takes(const ps_event *ev) {
  return ev->operation || (ev->intent && ev->intent->kind == KIND_AUTHORIZE);
}

/* A posting Postgres refuses for its data (pg_err_is_data_error): retrying
 * cannot help, so the message is dead-lettered with the reason, alerted and
 * counted, and the batch goes on (as isolate_bisect does for sales). */
static void refuse_posting(stage_ctx *ctx, stage_msg *m, const char *id, const char *err,
                           outbox *out) {
  const ps_event *ev = m->ev;
  log_ctx lc = {m->topic, m->partition, m->offset, ev->payment_id, ev->payment_key};
  char reason[600];
  snprintf(reason, sizeof reason, "postgres refused the posting of %s: %s", id, err);
  log_at(LOG_ERROR, &lc, "ALERT ledger %s; dead-lettered", reason);
  metric_add(metrics_counter("paystream_ledger_postings_refused_total",
                             "lifecycle postings postgres refused for their data (alert)", NULL),
             1);
  outbox_add_dlq(out, ctx->cfg->topics.dlq, "ledger", m, reason);
}

/* Accounts, posting and the finishing move, one transaction. Returns 0, -1
 * (transient: retry) or -2 (refused for its data; err says why). */
static int post(stage_ctx *ctx, const char *payment_id, const char *kind, const char *op_id,
                const char *currency, const posting_entry *e, int n, const char *finish_sql,
                int nfinish, const char *const *finish_params, char *err, size_t errlen) {
  pg_array names, dirs, amts;
  pg_array_init(&names);
  pg_array_init(&dirs);
  pg_array_init(&amts);
  for (int i = 0; i < n; i++) {
    char d[2] = {e[i].direction, 0};
    pg_array_add_str(&names, e[i].account);
    pg_array_add_str(&dirs, d);
    pg_array_add_int(&amts, e[i].amount_minor);
  }
  const char *pn = pg_array_finish(&names), *pd = pg_array_finish(&dirs),
             *pa = pg_array_finish(&amts);
  const char *acc[] = {pn, currency};
  const char *pp[] = {payment_id, kind, op_id, pn, pd, pa, currency};
  pg_stmt st[] = {{SQL_ACCOUNTS, 2, acc}, {SQL_POST, 7, pp}, {finish_sql, nfinish, finish_params}};
  PGresult *r[3];
  int rc = pg_pipeline(&ctx->pg, st, 3, r, err, errlen);
  if (rc) {
    log_warn("lifecycle posting for %s failed: %s", payment_id, err);
    rc = pg_err_is_data_error(err) ? -2 : -1;
  } else {
    pg_results_clear(r, 3);
  }
  pg_array_free(&names);
  pg_array_free(&dirs);
  pg_array_free(&amts);
  return rc;
}

static int emit_ledgered(stage_ctx *ctx, ps_event *ev, outbox *out) {
  return outbox_add_event(out, ctx->cfg->topics.ledgered, ev);
}

static PGresult *query(stage_ctx *ctx, const char *sql, const char *param) {
  const char *v[] = {param};
  pg_stmt st = {sql, 1, v};
  PGresult *r = NULL;
  char err[512];
  if (pg_pipeline(&ctx->pg, &st, 1, &r, err, sizeof err)) {
    log_warn("lifecycle read failed: %s", err);
    return NULL;
  }
  return r;
}

static int authorization(stage_ctx *ctx, stage_msg *m, outbox *out) {
  ps_event *ev = m->ev;
  PGresult *r = query(ctx, SQL_AUTH_FACTS, ev->payment_id);
  if (!r) return -1;
  int rc = 0;
  if (PQntuples(r) != 1 || strcmp(PQgetvalue(r, 0, 1), "authorize") != 0 ||
      !*PQgetvalue(r, 0, 4)) {
    outbox_add_dlq(out, ctx->cfg->topics.dlq, "ledger", m,
                   "not an authorization with a succeeded attempt in postgres");
    PQclear(r);
    return 0;
  }
  const char *status = PQgetvalue(r, 0, 0);
  const char *key = PQgetvalue(r, 0, 6);
  if (strcmp(status, "charged") == 0 || strcmp(status, "ledger_failed") == 0) {
    int64_t authorized = strtoll(PQgetvalue(r, 0, 2), NULL, 10);
    posting_entry e[POSTING_LC_MAX_ENTRIES];
    int n = posting_for_authorization(PQgetvalue(r, 0, 4), authorized, e);
    if (n < 0) {
      outbox_add_dlq(out, ctx->cfg->topics.dlq, "ledger", m, "authorization not postable");
      PQclear(r);
      return 0;
    }
    outcome_buf ob;
    outcome_from_event(&ob, ev, OUTCOME_SUCCEEDED, NULL, NULL);
    ob.o.kind = KIND_AUTHORIZE;
    ob.o.authorized_minor = authorized;
    ob.amount.amount_minor = authorized;
    ob.amount.currency = PQgetvalue(r, 0, 3);
    ob.o.amount = &ob.amount;
    char *hex = outcome_pack_hex(&ob.o);
    const char *fp[] = {ev->payment_id, hex};
    char err[512] = "";
    rc = post(ctx, ev->payment_id, "authorization", NULL, PQgetvalue(r, 0, 3), e, n,
              SQL_AUTH_FINISH, 2, fp, err, sizeof err);
    free(hex);
    PQclear(r);
    if (rc == -2) {
      refuse_posting(ctx, m, ev->payment_id, err, out);
      return 0;
    }
    if (rc) return -1;
    return authorization(ctx, m, out); /* re-read: emit what is stored */
  }
  if (*PQgetvalue(r, 0, 5)) {
    if (outbox_add_stored(out, ctx->cfg->topics.outcomes, key, PQgetvalue(r, 0, 5)))
      outbox_add_dlq(out, ctx->cfg->topics.dlq, "ledger", m, "stored outcome is corrupt");
    rc = emit_ledgered(ctx, ev, out);
  } else {
    outbox_add_dlq(out, ctx->cfg->topics.dlq, "ledger", m, "authorization not charged");
  }
  PQclear(r);
  return rc;
}

static int operation(stage_ctx *ctx, stage_msg *m, outbox *out) {
  ps_event *ev = m->ev;
  PGresult *r = query(ctx, SQL_OP_FACTS, ev->operation_id);
  if (!r) return -1;
  if (PQntuples(r) != 1) {
    outbox_add_dlq(out, ctx->cfg->topics.dlq, "ledger", m, "operation unknown to postgres");
    PQclear(r);
    return 0;
  }
  op_row row;
  op_row_read(r, 0, 0, &row);
  int64_t released = strtoll(PQgetvalue(r, 0, OP_ROW_NCOLS), NULL, 10);
  const char *currency = PQgetvalue(r, 0, OP_ROW_NCOLS + 1);
  int rc = 0;
  if (strcmp(row.state, "succeeded") == 0) {
    posting_entry e[POSTING_LC_MAX_ENTRIES];
    int kind = op_kind_from_name(row.kind), n = -1;
    const char *tx_kind = "refund";
    if (kind == KIND_CAPTURE) {
      n = posting_for_capture(row.processor, row.amount_minor, row.fee_minor, released, e);
      tx_kind = "capture";
    } else if (kind == KIND_VOID) {
      n = posting_for_release(row.processor, row.amount_minor, e);
      tx_kind = "release";
    } else if (kind == KIND_REFUND) {
      n = posting_for_refund(row.processor, row.amount_minor, e);
    }
    if (n < 0) {
      outbox_add_dlq(out, ctx->cfg->topics.dlq, "ledger", m, "operation not postable");
      PQclear(r);
      return 0;
    }
    const char *fp[] = {row.operation_id};
    char err[512] = "", id[128];
    snprintf(id, sizeof id, "operation %s", row.operation_id);
    rc = post(ctx, row.payment_id, tx_kind, row.operation_id, currency, e, n, SQL_OP_FINISH, 1,
              fp, err, sizeof err);
    PQclear(r);
    if (rc == -2) {
      refuse_posting(ctx, m, id, err, out);
      return 0;
    }
    return rc ? -1 : operation(ctx, m, out);
  }
  if (strcmp(row.state, "posted") == 0) {
    outcome_buf ob;
    op_outcome(&ob, &row, ev->published_at_ms);
    rc = outbox_add_outcome_keyed(out, ctx->cfg->topics.outcomes, row.idempotency_key,
                                  strlen(row.idempotency_key), &ob.o);
    if (rc == 0) rc = emit_ledgered(ctx, ev, out);
  } else {
    outbox_add_dlq(out, ctx->cfg->topics.dlq, "ledger", m, "operation has not succeeded");
  }
  PQclear(r);
  return rc;
}

int ledger_lifecycle(stage_ctx *ctx, stage_msg *msgs, size_t n, outbox *out) {
  for (size_t i = 0; i < n; i++) {
    const ps_event *ev = msgs[i].ev;
    if (!ledger_lifecycle_takes(ev)) continue;
    if (!ev->charge ||
        ev->charge->status != PAYMENTS__V1__CHARGE_STATUS__CHARGE_STATUS_SUCCEEDED) {
      outbox_add_dlq(out, ctx->cfg->topics.dlq, "ledger", &msgs[i], "charge not succeeded");
      continue;
    }
    if ((ev->operation ? operation(ctx, &msgs[i], out) : authorization(ctx, &msgs[i], out)))
      return -1;
  }
  return 0;
}
