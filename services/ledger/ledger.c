/* ledger: batch posting. */
#include "ledger.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "isolate.h"
#include "ledger_lifecycle.h"
#include "log.h"
#include "metrics.h"
#include "posting.h"

typedef struct litem {
  stage_msg *m;
  bool first;            /* first message of its payment in this batch */
  bool known;
  char status[16];
  char *outcome_hex;
  int64_t transaction_id;
  bool isolated;         /* its posting failed on its own: dead-lettered */
  char reason[256];
  /* What Postgres recorded (read before posting; never the event's word). */
  bool recorded;         /* the payment exists */
  bool charged;          /* it has a succeeded attempt */
  int64_t amount_minor, fee_minor;
  char currency[8];
  char processor[64];
  /* The event disagreed with Postgres about a charged payment: it is posted
   * from Postgres's facts (these, pointed at by the event while it is
   * processed; the originals saved to be put back). */
  bool corrected;
  char *rec_merchant, *rec_key, *rec_charge_id;
  struct {
    char *merchant, *key, *currency, *processor, *charge_id;
    int64_t amount_minor, fee_minor;
  } orig;
} litem;

static const char SQL_ACCOUNTS[] =
    "INSERT INTO ledger_accounts (name, currency, type)"
    " SELECT DISTINCT n, c, split_part(n, ':', 1) FROM unnest($1::text[], $2::text[]) AS u(n, c)"
    " ON CONFLICT (name, currency) DO NOTHING";

/* New transactions only (ON CONFLICT: posted at most once) and their
 * entries, in the currency the payment was recorded in. Balances move with
 * the entries in the database itself (migration 011: once per statement,
 * per account, by the summed delta). A payment the ledger isolated earlier
 * (`ledger_failed`) is posted when its event is redriven. */
static const char SQL_POST[] =
    "WITH tx AS ("
    "  INSERT INTO ledger_transactions (payment_id, kind)"
    "  SELECT DISTINCT u.pid, 'payment' FROM unnest($1::text[]) AS u(pid)"
    "  JOIN payments p ON p.payment_id = u.pid AND p.status IN ('charged', 'ledger_failed')"
    "   AND p.kind = 'sale'"
    "  ON CONFLICT (payment_id, kind) WHERE operation_id IS NULL DO NOTHING"
    "  RETURNING transaction_id, payment_id),"
    " e AS ("
    "  INSERT INTO ledger_entries (transaction_id, account_id, currency, direction, amount_minor)"
    "  SELECT tx.transaction_id, a.account_id, u.c, u.d, u.amt"
    "  FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::bigint[])"
    "    AS u(pid, n, c, d, amt)"
    "  JOIN tx ON tx.payment_id = u.pid"
    "  JOIN payments p ON p.payment_id = u.pid AND p.currency = u.c"
    "  JOIN ledger_accounts a ON a.name = u.n AND a.currency = u.c"
    "  RETURNING 1)"
    " SELECT count(*) FROM e";

static const char SQL_FINISH[] =
    "UPDATE payments p SET status = 'succeeded', outcome = decode(u.o, 'hex'), error_code = NULL,"
    " updated_at = now() FROM unnest($1::text[], $2::text[]) AS u(pid, o)"
    " WHERE p.payment_id = u.pid AND p.status IN ('charged', 'ledger_failed')"
    " AND EXISTS (SELECT 1 FROM ledger_transactions t WHERE t.payment_id = p.payment_id"
    "   AND t.kind = 'payment' AND t.operation_id IS NULL)";

/* The money facts the posting is made of: the payment's amount and
 * currency, the succeeded attempt's processor, fee and charge id. */
static const char SQL_FACTS[] =
    "SELECT u.ord, p.merchant_id, p.idempotency_key, p.amount_minor, p.currency, a.processor,"
    " coalesce(a.fee_minor, 0), coalesce(a.processor_charge_id, '')"
    " FROM unnest($1::text[]) WITH ORDINALITY AS u(pid, ord)"
    " JOIN payments p ON p.payment_id = u.pid"
    " LEFT JOIN charge_attempts a ON a.payment_id = u.pid AND a.state = 'succeeded'";

/* A payment's own posting is the row of the partial unique index
 * ledger_transactions_payment_once (013: operation_id IS NULL): the
 * predicate lets the join use it (without it, every batch scanned the whole
 * table: 260 ms per batch at 10,000 payments, growing). */
static const char SQL_READ[] =
    "SELECT u.ord, encode(p.outcome, 'hex'), t.transaction_id, p.status"
    " FROM unnest($1::text[]) WITH ORDINALITY AS u(pid, ord)"
    " JOIN payments p ON p.payment_id = u.pid"
    " LEFT JOIN ledger_transactions t ON t.payment_id = u.pid AND t.kind = 'payment'"
    "  AND t.operation_id IS NULL";

static char *success_outcome_hex(const ps_event *ev) {
  outcome_buf ob;
  outcome_from_event(&ob, ev, OUTCOME_SUCCEEDED, NULL, NULL);
  return outcome_pack_hex(&ob.o);
}

/* A payment whose posting the database refuses on its own. It was charged,
 * so the outcome says so: operators reconcile it (payctl reconcile lists the
 * charge without a posting), fix the cause and redrive its dead letter:
 * `ledger_failed` is still postable (README, Operations). */
static const char SQL_ISOLATE[] =
    "UPDATE payments SET status = 'ledger_failed', error_code = 'ledger_posting_failed',"
    " outcome = decode($2, 'hex'), updated_at = now()"
    " WHERE payment_id = $1 AND status = 'charged'";

/* Posts the batch and finishes its payments in one transaction. Returns 0,
 * or -1 with the database's error in err. */
static int post_batch(stage_ctx *ctx, litem *it, size_t n, char *err, size_t errlen) {
  pg_array e[5], acc[2], fin[2], ids;
  pg_arrays_init(e, 5);
  for (int i = 0; i < 2; i++) pg_array_init(&acc[i]), pg_array_init(&fin[i]);
  pg_array_init(&ids);
  /* A payment delivered twice in the same slice posts once. */
  for (size_t i = 0; i < n; i++) {
    it[i].first = true;
    for (size_t j = 0; j < i && it[i].first; j++)
      if (strcmp(it[j].m->ev->payment_id, it[i].m->ev->payment_id) == 0) it[i].first = false;
  }
  for (size_t i = 0; i < n; i++) {
    const ps_event *ev = it[i].m->ev;
    pg_array_add_str(&ids, ev->payment_id);
    if (!it[i].first) continue;
    posting_entry pe[POSTING_MAX_ENTRIES];
    /* The recorded facts, checked postable in ledger_process. */
    int ne = posting_for_payment(it[i].processor, it[i].amount_minor, it[i].fee_minor, pe);
    for (int k = 0; k < ne; k++) {
      char dir[2] = {pe[k].direction, 0};
      pg_array_add_str(&e[0], ev->payment_id);
      pg_array_add_str(&e[1], pe[k].account);
      pg_array_add_str(&e[2], it[i].currency);
      pg_array_add_str(&e[3], dir);
      pg_array_add_int(&e[4], pe[k].amount_minor);
      pg_array_add_str(&acc[0], pe[k].account);
      pg_array_add_str(&acc[1], it[i].currency);
    }
    char *hex = success_outcome_hex(ev);
    pg_array_add_str(&fin[0], ev->payment_id);
    pg_array_add_str(&fin[1], hex);
    free(hex);
  }
  const char *pe_[5], *pa[2], *pf[2], *pi[1];
  pg_arrays_finish(e, 5, pe_);
  for (int i = 0; i < 2; i++) pa[i] = pg_array_finish(&acc[i]), pf[i] = pg_array_finish(&fin[i]);
  pi[0] = pg_array_finish(&ids);
  pg_stmt stmts[] = {{SQL_ACCOUNTS, 2, pa}, {SQL_POST, 5, pe_}, {SQL_FINISH, 2, pf},
                     {SQL_READ, 1, pi}};
  PGresult *res[4];
  int rc = pg_pipeline(&ctx->pg, stmts, 4, res, err, errlen);
  if (rc) {
    log_error("posting batch of %zu failed, rolled back: %s", n, err);
  } else {
    PGresult *r = res[3];
    for (int row = 0; row < PQntuples(r); row++) {
      long ord = strtol(PQgetvalue(r, row, 0), NULL, 10);
      if (ord < 1 || (size_t)ord > n) continue;
      litem *x = &it[ord - 1];
      x->known = true;
      x->outcome_hex = PQgetisnull(r, row, 1) ? NULL : strdup(PQgetvalue(r, row, 1));
      x->transaction_id = PQgetisnull(r, row, 2) ? 0 : strtoll(PQgetvalue(r, row, 2), NULL, 10);
      snprintf(x->status, sizeof x->status, "%s", PQgetvalue(r, row, 3));
    }
  }
  pg_results_clear(res, 4);
  pg_arrays_free(e, 5);
  for (int i = 0; i < 2; i++) pg_array_free(&acc[i]), pg_array_free(&fin[i]);
  pg_array_free(&ids);
  return rc;
}

/* Ends one payment whose posting failed alone: `failed`, with an outcome,
 * in its own transaction. Returns 0 or -1 (transient: retry the batch). */
static int isolate(stage_ctx *ctx, litem *x, const char *why) {
  const ps_event *ev = x->m->ev;
  log_ctx lc = {x->m->topic, x->m->partition, x->m->offset, ev->payment_id,
                ev->intent->idempotency_key};
  log_at(LOG_ERROR, &lc, "ALERT ledger refused the posting of a charged payment: %s", why);
  outcome_buf ob;
  outcome_from_event(&ob, ev, OUTCOME_FAILED, "ledger_posting_failed",
                     "charged at the processor but not posted to the ledger; held for "
                     "reconciliation, do not retry with a new key");
  char *hex = outcome_pack_hex(&ob.o);
  const char *pi[] = {ev->payment_id, hex};
  pg_array ids;
  pg_array_init(&ids);
  pg_array_add_str(&ids, ev->payment_id);
  const char *pids[] = {pg_array_finish(&ids)};
  pg_stmt stmts[] = {{SQL_ISOLATE, 2, pi}, {SQL_READ, 1, pids}};
  PGresult *res[2];
  char err[512];
  int rc = pg_pipeline(&ctx->pg, stmts, 2, res, err, sizeof err);
  free(hex);
  pg_array_free(&ids);
  if (rc) {
    log_warn("isolating %s failed: %s", ev->payment_id, err);
    return -1;
  }
  if (PQntuples(res[1]) == 1) {
    x->known = true;
    free(x->outcome_hex);
    x->outcome_hex = PQgetisnull(res[1], 0, 1) ? NULL : strdup(PQgetvalue(res[1], 0, 1));
    snprintf(x->status, sizeof x->status, "%s", PQgetvalue(res[1], 0, 3));
  }
  pg_results_clear(res, 2);
  x->isolated = true;
  snprintf(x->reason, sizeof x->reason, "ledger posting failed: %.200s", why);
  return 0;
}

/* The batch as isolate_bisect sees it. */
typedef struct post_run {
  stage_ctx *ctx;
  litem *it;
} post_run;

static int post_range(void *arg, size_t from, size_t n, char *err, size_t errlen) {
  post_run *r = arg;
  return post_batch(r->ctx, r->it + from, n, err, errlen);
}

static int isolate_one(void *arg, size_t i, const char *err) {
  post_run *r = arg;
  return isolate(r->ctx, &r->it[i], err);
}

static const isolate_ops post_ops = {post_range, isolate_one};

/* Posts the batch; when the database refuses it because of some row's data,
 * bisects (lib/isolate.c, the policy every stage shares) to find the
 * payments it refuses on their own and isolates them, so one poison payment
 * does not stop the ledger. Each half is its own transaction; posting is
 * idempotent, so a half that succeeded stays posted if the batch is retried. */
static int post_isolating(stage_ctx *ctx, litem *it, size_t n) {
  post_run r = {ctx, it};
  return isolate_bisect(&post_ops, &r, 0, n);
}

/* Re-sends x's stored outcome; one that is missing or corrupt is
 * dead-lettered, never skipped (the failure policy in outbox.h). */
static void emit_stored(stage_ctx *ctx, litem *x, outbox *out) {
  if (outbox_add_stored(out, ctx->cfg->topics.outcomes, x->m->ev->intent->idempotency_key,
                        x->outcome_hex))
    outbox_add_dlq(out, ctx->cfg->topics.dlq, "ledger", x->m, "stored outcome is corrupt");
}

/* Returns 0, or -1 when an output could not be packed (out of memory: the
 * batch is retried, outbox.h). */
static int emit(stage_ctx *ctx, litem *x, outbox *out) {
  ps_event *ev = x->m->ev;
  if (x->isolated) {
    emit_stored(ctx, x, out);
    outbox_add_dlq(out, ctx->cfg->topics.dlq, "ledger", x->m, x->reason);
    return 0;
  }
  if (x->outcome_hex && !x->transaction_id) {
    /* Ended without a posting (isolated earlier): re-send its outcome. */
    emit_stored(ctx, x, out);
    return 0;
  }
  if (!x->outcome_hex || !x->transaction_id) {
    /* Not charged (no `charged` state to post from): never silently. */
    outbox_add_dlq(out, ctx->cfg->topics.dlq, "ledger", x->m, "payment not postable");
    return 0;
  }
  emit_stored(ctx, x, out);
  Payments__V1__LedgerPosting lp = PAYMENTS__V1__LEDGER_POSTING__INIT;
  lp.transaction_id = x->transaction_id;
  Payments__V1__LedgerPosting *saved = ev->ledger;
  ev->ledger = &lp;
  int rc = outbox_add_event(out, ctx->cfg->topics.ledgered, ev);
  ev->ledger = saved;
  return rc;
}

static bool postable(const ps_event *ev, char *why, size_t len) {
  if (!ev->charge || ev->charge->status != PAYMENTS__V1__CHARGE_STATUS__CHARGE_STATUS_SUCCEEDED) {
    snprintf(why, len, "charge not succeeded");
    return false;
  }
  if (!ev->intent->amount || !ev->intent->amount->currency || !ev->charge->processor) {
    snprintf(why, len, "no amount, currency or processor");
    return false;
  }
  return true;
}

/* Reads what Postgres recorded for each item's payment. Returns 0, or -1
 * (transient: retry the batch). */
static int read_facts(stage_ctx *ctx, litem *it, size_t n) {
  pg_array ids;
  pg_array_init(&ids);
  for (size_t i = 0; i < n; i++) pg_array_add_str(&ids, it[i].m->ev->payment_id);
  const char *pi[] = {pg_array_finish(&ids)};
  pg_stmt st[] = {{SQL_FACTS, 1, pi}};
  PGresult *r;
  char err[512];
  int rc = pg_pipeline(&ctx->pg, st, 1, &r, err, sizeof err);
  pg_array_free(&ids);
  if (rc) {
    log_warn("reading recorded payments failed: %s", err);
    return -1;
  }
  for (int row = 0; row < PQntuples(r); row++) {
    long ord = strtol(PQgetvalue(r, row, 0), NULL, 10);
    if (ord < 1 || (size_t)ord > n) continue;
    litem *x = &it[ord - 1];
    const ps_event *ev = x->m->ev;
    x->recorded = true;
    x->amount_minor = strtoll(PQgetvalue(r, row, 3), NULL, 10);
    snprintf(x->currency, sizeof x->currency, "%s", PQgetvalue(r, row, 4));
    x->charged = !PQgetisnull(r, row, 5);
    snprintf(x->processor, sizeof x->processor, "%s", PQgetvalue(r, row, 5));
    x->fee_minor = strtoll(PQgetvalue(r, row, 6), NULL, 10);
    /* The event must say what Postgres says; the outcome and the ledgered
     * event are built from it. */
    const char *cid = ev->charge->processor_charge_id ? ev->charge->processor_charge_id : "";
    free(x->rec_merchant), free(x->rec_key), free(x->rec_charge_id);
    x->rec_merchant = strdup(PQgetvalue(r, row, 1));
    x->rec_key = strdup(PQgetvalue(r, row, 2));
    x->rec_charge_id = strdup(PQgetvalue(r, row, 7));
    if (!x->rec_merchant || !x->rec_key || !x->rec_charge_id) abort();
    if (!x->charged)
      snprintf(x->reason, sizeof x->reason, "payment has no succeeded charge attempt");
    else if (strcmp(PQgetvalue(r, row, 1), ev->intent->merchant_id) != 0 ||
             strcmp(PQgetvalue(r, row, 2), ev->intent->idempotency_key) != 0)
      snprintf(x->reason, sizeof x->reason, "event disagrees with postgres: merchant or key");
    else if (ev->intent->amount->amount_minor != x->amount_minor ||
             strcmp(ev->intent->amount->currency, x->currency) != 0)
      snprintf(x->reason, sizeof x->reason,
               "event disagrees with postgres: amount %lld %.8s, recorded %lld %s",
               (long long)ev->intent->amount->amount_minor, ev->intent->amount->currency,
               (long long)x->amount_minor, x->currency);
    else if (ev->charge->fee_minor != x->fee_minor || strcmp(ev->charge->processor, x->processor) ||
             strcmp(cid, PQgetvalue(r, row, 7)) != 0)
      snprintf(x->reason, sizeof x->reason,
               "event disagrees with postgres: processor %.40s fee %lld, recorded %s fee %lld",
               ev->charge->processor, (long long)ev->charge->fee_minor, x->processor,
               (long long)x->fee_minor);
  }
  PQclear(r);
  return 0;
}

/* An event that disagrees with Postgres: an alert, the counter and a dead
 * letter with the reason (evidence: something upstream forged or corrupted
 * it). A charged payment is still posted, from what Postgres recorded (the
 * ledger never trusts the message's money), so the books hold the truth and
 * the payment ends; one that is not charged posts nothing. */
static metric *refused_events(void) {
  return metrics_counter("paystream_ledger_events_refused_total",
                         "payments.charged events that disagree with postgres", NULL);
}

static void refuse_event(stage_ctx *ctx, litem *x, outbox *out) {
  const ps_event *ev = x->m->ev;
  log_ctx lc = {x->m->topic, x->m->partition, x->m->offset, ev->payment_id,
                ev->intent->idempotency_key};
  log_at(LOG_ERROR, &lc, "ALERT ledger refused an event: %s", x->reason);
  metric_add(refused_events(), 1);
  outbox_add_dlq(out, ctx->cfg->topics.dlq, "ledger", x->m, x->reason);
}

/* Points x's event at Postgres's facts (for its posting, its outcome and
 * its ledgered event), saving what it said. */
static void correct_event(litem *x) {
  ps_event *ev = x->m->ev;
  ps_intent *in = ev->intent;
  x->orig.merchant = in->merchant_id;
  x->orig.key = in->idempotency_key;
  x->orig.amount_minor = in->amount->amount_minor;
  x->orig.currency = in->amount->currency;
  x->orig.processor = ev->charge->processor;
  x->orig.charge_id = ev->charge->processor_charge_id;
  x->orig.fee_minor = ev->charge->fee_minor;
  in->merchant_id = x->rec_merchant;
  in->idempotency_key = x->rec_key;
  in->amount->amount_minor = x->amount_minor;
  in->amount->currency = x->currency;
  ev->charge->processor = x->processor;
  ev->charge->processor_charge_id = x->rec_charge_id;
  ev->charge->fee_minor = x->fee_minor;
  x->corrected = true;
}

/* Puts back what the event said (the message is the caller's). */
static void restore_event(litem *x) {
  if (!x->corrected) return;
  ps_event *ev = x->m->ev;
  ev->intent->merchant_id = x->orig.merchant;
  ev->intent->idempotency_key = x->orig.key;
  ev->intent->amount->amount_minor = x->orig.amount_minor;
  ev->intent->amount->currency = x->orig.currency;
  ev->charge->processor = x->orig.processor;
  ev->charge->processor_charge_id = x->orig.charge_id;
  ev->charge->fee_minor = x->orig.fee_minor;
  x->corrected = false;
}

static void litem_free(litem *x) {
  restore_event(x);
  free(x->outcome_hex);
  free(x->rec_merchant), free(x->rec_key), free(x->rec_charge_id);
}

static int ledger_process(stage_ctx *ctx, stage_msg *msgs, size_t n, outbox *out) {
  if (ledger_lifecycle(ctx, msgs, n, out)) return -1; /* authorizations, operations */
  litem *it = calloc(n, sizeof *it);
  if (!it) abort();
  size_t nv = 0;
  for (size_t i = 0; i < n; i++) {
    char why[128];
    if (ledger_lifecycle_takes(msgs[i].ev)) continue;
    if (!postable(msgs[i].ev, why, sizeof why)) {
      outbox_add_dlq(out, ctx->cfg->topics.dlq, "ledger", &msgs[i], why);
      continue;
    }
    litem *x = &it[nv++];
    x->m = &msgs[i];
  }
  if (nv && read_facts(ctx, it, nv)) {
    for (size_t i = 0; i < nv; i++) litem_free(&it[i]);
    free(it);
    return -1;
  }
  /* Charged payments go on to be posted, from Postgres's facts. */
  size_t np = 0;
  for (size_t i = 0; i < nv; i++) {
    bool keep = it[i].recorded && it[i].charged;
    if (!it[i].recorded)
      outbox_add_dlq(out, ctx->cfg->topics.dlq, "ledger", it[i].m, "unknown payment_id");
    else if (it[i].reason[0])
      refuse_event(ctx, &it[i], out);
    if (!keep) {
      litem_free(&it[i]);
      continue;
    }
    it[i].reason[0] = 0;
    it[np++] = it[i];
  }
  for (size_t i = 0; i < np; i++) correct_event(&it[i]); /* where it sits now */
  int rc = np ? post_isolating(ctx, it, np) : 0;
  if (rc == 0)
    for (size_t i = 0; i < np; i++) {
      if (!it[i].known) {
        outbox_add_dlq(out, ctx->cfg->topics.dlq, "ledger", it[i].m, "unknown payment_id");
        continue;
      }
      if (emit(ctx, &it[i], out)) rc = -1;
    }
  for (size_t i = 0; i < np; i++) litem_free(&it[i]);
  free(it);
  return rc;
}

static const char *ledger_input(const cfg *c) { return c->topics.charged; }

/* Exports the refusal counter at 0 from the start, so an alert rule and a
 * scrape see the series before the first refusal (absent is not zero). */
static int ledger_init(stage_ctx *ctx, char *err, size_t errlen) {
  (void)ctx, (void)err, (void)errlen;
  return refused_events() ? 0 : -1;
}

const stage_def ledger_stage = {
    .name = "ledger",
    .input_topic = ledger_input,
    .requires_payment_id = true,
    .takes_operations = true,
    .init = ledger_init,
    .process = ledger_process,
    .destroy = NULL,
};
