/* charge_resolve: see charge_resolve.h. */
#include "charge_resolve.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "charge.h"
#include "charge_http.h"
#include "log.h"
#include "metrics.h"
#include "pg.h"

#define HOUR_MS 3600000LL
/* The flavours' documented key lifetimes (Stripe: at least 24 h; PayPal
 * Orders v2: 6 h), less 027's margin least(1 h, lifetime / 10). */
#define STRIPE_WINDOW_MS (24 * HOUR_MS - HOUR_MS)
#define PAYPAL_WINDOW_MS (6 * HOUR_MS - 6 * HOUR_MS / 10)
/* This worker stops that much before the database would refuse the count. */
#define KEY_SLACK_MS 500
#define KEY_REREAD_MS 10000
/* A search that found nothing is asked again at most this far apart. */
#define SEARCH_MAX_BACKOFF_MS 60000

static const char SQL_WINDOW[] =
    "SELECT (extract(epoch FROM ps_key_resend_window($1)) * 1000)::bigint";

static const char SQL_ROLE[] = "SELECT current_user";

static const char SQL_NOTE_ATTEMPT[] =
    "UPDATE charge_attempts SET error = $3, updated_at = now()"
    " WHERE payment_id = $1 AND processor = $2 AND state = 'charging'"
    " AND error IS DISTINCT FROM $3";

/* The pending refund's 7-day reason (refund_status.c) is never overwritten:
 * rewritten after, its ALERT would repeat (s11 review 4). */
static const char SQL_NOTE_OPERATION[] =
    "UPDATE payment_operations SET error_message = $2, updated_at = now()"
    " WHERE operation_id = $1 AND state = 'processing' AND error_message IS DISTINCT FROM $2"
    " AND coalesce(error_message, '') NOT LIKE 'refund pending at the processor for more than %'";

/* What a re-send or a search needs to know, from Postgres. */
static const char SQL_OP_FACTS[] =
    "SELECT o.state, coalesce(o.processor, ''), o.kind, o.currency, o.sends > o.refused,"
    " (extract(epoch FROM now() - coalesce((to_jsonb(o)->>'first_sent_at')::timestamptz,"
    "   o.created_at)) * 1000)::bigint, o.amount_minor, coalesce(o.payment_id, '')"
    " FROM payment_operations o WHERE o.operation_id = $1";

int charge_resolve_op_facts(stage_ctx *ctx, const char *id, op_facts *f) {
  const char *v[] = {id};
  char err[512];
  PGresult *r = pg_exec(&ctx->pg, SQL_OP_FACTS, 1, v, err, sizeof err);
  if (!r || PQntuples(r) != 1) {
    PQclear(r);
    return -1;
  }
  snprintf(f->state, sizeof f->state, "%s", PQgetvalue(r, 0, 0));
  snprintf(f->processor, sizeof f->processor, "%s", PQgetvalue(r, 0, 1));
  snprintf(f->kind, sizeof f->kind, "%s", PQgetvalue(r, 0, 2));
  snprintf(f->currency, sizeof f->currency, "%s", PQgetvalue(r, 0, 3));
  f->may_have = PQgetvalue(r, 0, 4)[0] == 't';
  f->age_ms = strtoll(PQgetvalue(r, 0, 5), NULL, 10);
  f->amount_minor = strtoll(PQgetvalue(r, 0, 6), NULL, 10);
  snprintf(f->payment_id, sizeof f->payment_id, "%s", PQgetvalue(r, 0, 7));
  PQclear(r);
  return 0;
}

static int64_t flavour_window(const processor *pr) {
  return pr->paypal ? PAYPAL_WINDOW_MS : STRIPE_WINDOW_MS;
}

static void check_role(stage_ctx *ctx, charge_state *st) {
  char err[512];
  PGresult *r = pg_exec(&ctx->pg, SQL_ROLE, 0, NULL, err, sizeof err);
  if (!r) return; /* asked again next time */
  st->role_checked = true;
  const char *who = PQntuples(r) == 1 ? PQgetvalue(r, 0, 0) : "?";
  if (strcmp(who, "paystream_charge") != 0)
    log_error("ALERT charge is connected to Postgres as %s, not paystream_charge: the stage "
              "guards (009) and settled_by (021) do not know its writes as charge's",
              who);
  PQclear(r);
}

void charge_resolve_refresh(stage_ctx *ctx, charge_state *st, int64_t now) {
  if (st->key_read_ms && now - st->key_read_ms < KEY_REREAD_MS) return;
  bool first = !st->key_read_ms;
  st->key_read_ms = now;
  for (int p = 0; p < st->nproc; p++)
    if (first) st->key_window_ms[p] = flavour_window(&st->proc[p]);
  if (!st->role_checked) check_role(ctx, st);
  pg_stmt stmts[CHARGE_MAX_PROCESSORS];
  const char *names[CHARGE_MAX_PROCESSORS][1];
  for (int p = 0; p < st->nproc; p++) {
    names[p][0] = st->proc[p].name;
    stmts[p] = (pg_stmt){SQL_WINDOW, 1, names[p]};
  }
  PGresult *res[CHARGE_MAX_PROCESSORS] = {0};
  char err[512];
  if (pg_pipeline(&ctx->pg, stmts, st->nproc, res, err, sizeof err) != 0) {
    /* Before 027, or Postgres away: the last windows read (at first the
     * flavours') stay. */
    if (first) log_warn("processor key lifetimes not read (%s): the flavours' are used", err);
    return;
  }
  for (int p = 0; p < st->nproc; p++) {
    int64_t w = PQntuples(res[p]) == 1 ? strtoll(PQgetvalue(res[p], 0, 0), NULL, 10) : 0;
    int64_t cap = flavour_window(&st->proc[p]);
    w = w > 0 && w < cap ? w : cap;
    if (w != st->key_window_ms[p] || first)
      log_info("processor %s: no re-send later than %lld ms after the first send (key lifetime)",
               st->proc[p].name, (long long)w);
    st->key_window_ms[p] = w;
  }
  pg_results_clear(res, st->nproc);
}

bool charge_key_aged(const charge_state *st, int proc, int64_t age_ms) {
  if (proc < 0 || proc >= st->nproc) return false;
  return age_ms + KEY_SLACK_MS >= st->key_window_ms[proc];
}

bool charge_key_past(const charge_state *st, const citem *x, int64_t now) {
  const item_row *d = &x->db;
  return d->sends > d->refused && d->first_sent_ms &&
         charge_key_aged(st, d->proc, now - d->first_sent_ms);
}

bool charge_resolve_start(charge_state *st, citem *x, int64_t now) {
  const item_row *d = &x->db;
  x->search = charge_key_past(st, x, now);
  charge_request rq = {x->ev->payment_id, d->amount_minor, d->currency, d->payment_method,
                       d->authorize, true, x->search};
  if (charge_http_start(&st->http, &x->call, &st->proc[d->proc], &rq, x) != 0) {
    breaker_release(&st->proc[d->proc].br);
    x->next_try_ms = now + 500;
    return false;
  }
  metric_add(st->m_lookups, 1);
  x->st = IT_INFLIGHT;
  return true;
}

void charge_resolve_note_attempt(stage_ctx *ctx, const citem *x, const char *why) {
  const char *v[] = {x->ev->payment_id, x->db.proc_name ? x->db.proc_name : "", why};
  char err[512];
  PGresult *r = pg_exec(&ctx->pg, SQL_NOTE_ATTEMPT, 3, v, err, sizeof err);
  if (!r) log_warn("the reason an attempt is held was not written (%s)", err);
  PQclear(r);
}

void charge_resolve_note_operation(stage_ctx *ctx, const char *operation_id, const char *why) {
  const char *v[] = {operation_id, why};
  char err[512];
  PGresult *r = pg_exec(&ctx->pg, SQL_NOTE_OPERATION, 2, v, err, sizeof err);
  if (!r) log_warn("the reason operation %s is held was not written (%s)", operation_id, err);
  PQclear(r);
}

static log_ctx item_ctx(const stage_ctx *ctx, const citem *x) {
  log_ctx lc = {ctx->cfg->topics.fraud_scored, x->partition, x->offset, x->ev->payment_id, NULL};
  return lc;
}

/* The capped back-off (2 s), or, with a longer cap, doubling on past 2 s up
 * to cap_ms (a search that found nothing: asked again rarely). */
static long backoff(int *tries, long cap_ms) {
  int n = (*tries)++;
  long b = charge_backoff_ms(n, (double)rand() / ((double)RAND_MAX + 1));
  if (cap_ms > 2000 && n >= 5) {
    long e = 2000L << (n - 4 < 6 ? n - 4 : 6);
    b = e < cap_ms ? e : cap_ms;
  }
  return b;
}

resolve_said charge_resolve_answer(stage_ctx *ctx, charge_state *st, citem *x, int64_t now) {
  const processor *pr = &st->proc[x->db.proc];
  charge_kind k = x->ans.kind;
  log_ctx lc = item_ctx(ctx, x);
  const char *q = x->ans.searched ? "status search" : "status query";
  if (k == CHARGE_SUCCEEDED || k == CHARGE_DECLINED || k == CHARGE_REJECTED) {
    log_at(LOG_INFO, &lc, "%s at %s found the answer: %s", q, pr->name, charge_kind_name(k));
    x->lookup = false;
    return RESOLVE_RECORD;
  }
  if (x->ans.lookup_unknown && !charge_key_past(st, x, now)) {
    log_at(LOG_INFO, &lc, "%s never got the charge's key: sending it again, same key", pr->name);
    x->lookup = false;
    x->next_try_ms = now;
    return RESOLVE_SEND;
  }
  x->lookup = true;
  if (x->ans.lookup_unknown) {
    /* The key may have been forgotten: that proves nothing. */
    log_at(LOG_WARN, &lc,
           "%s does not know the charge's key, first sent past its key lifetime: never sent "
           "again; searching by payment id",
           pr->name);
    charge_resolve_note_attempt(ctx, x,
                                "past the processor's key lifetime: never re-sent; searching by "
                                "payment id");
    x->next_try_ms = now;
    return RESOLVE_AGAIN;
  }
  if (x->ans.search_none) {
    if (!x->escalated) {
      x->escalated = true;
      metric_add(st->m_key_unfound, 1);
      log_at(LOG_ERROR, &lc,
             "ALERT charge at %s past the processor's key lifetime and not found by a search: "
             "never re-sent; left charging, listed in charge_unresolved; settle it by webhook, "
             "settlement report or operator",
             pr->name);
      charge_resolve_note_attempt(ctx, x,
                                  "past the processor's key lifetime, not found by a search: "
                                  "never re-sent; settle by webhook, settlement report or operator");
    }
    x->next_try_ms = now + backoff(&x->tries, SEARCH_MAX_BACKOFF_MS);
    return RESOLVE_AGAIN;
  }
  log_at(LOG_WARN, &lc, "%s at %s: no verdict (%s); asking again later", q, pr->name,
         x->ans.error);
  x->next_try_ms = now + backoff(&x->tries, x->escalated ? SEARCH_MAX_BACKOFF_MS : 2000);
  return RESOLVE_AGAIN;
}
