/* refund_status: see refund_status.h. */
#include "refund_status.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "charge_http.h"
#include "pg.h"

static const char SQL_KEEP_ID[] =
    "UPDATE payment_operations SET processor_op_id = $2, updated_at = now()"
    " WHERE operation_id = $1 AND state = 'processing' AND kind = 'refund'"
    " AND processor_op_id IS NULL";

/* Postgres decides the age (the first counted send; before 027, created_at). */
static const char SQL_PAST_BOUND[] =
    "UPDATE payment_operations o SET error_message = $2, updated_at = now()"
    " WHERE operation_id = $1 AND state = 'processing' AND kind = 'refund'"
    " AND coalesce((to_jsonb(o)->>'first_sent_at')::timestamptz, o.created_at)"
    "     < now() - make_interval(days => $3::int)"
    " AND error_message IS DISTINCT FROM $2";

/* Once per operation (Postgres decides: its reason changes once; the
 * pending bound's reason, written later, is not overwritten). */
static const char SQL_UNUSABLE[] =
    "UPDATE payment_operations SET error_message = $2, updated_at = now()"
    " WHERE operation_id = $1 AND state = 'processing' AND kind = 'refund'"
    " AND error_message IS DISTINCT FROM $2"
    " AND coalesce(error_message, '') NOT LIKE 'refund pending at the processor for more than %'";

bool refund_status_id_usable(const char *refund_id) {
  if (!refund_id || !*refund_id || strlen(refund_id) > REFUND_ID_MAX) return false;
  for (const char *p = refund_id; *p; p++)
    if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
          *p == '_' || *p == '-'))
      return false;
  return true;
}

int refund_status_path(bool paypal, const char *refund_id, char *out, size_t len) {
  if (!refund_status_id_usable(refund_id)) return -1;
  int n = snprintf(out, len, paypal ? "/v2/payments/refunds/%s" : "/v1/refunds/%s", refund_id);
  return n < 0 || (size_t)n >= len ? -1 : 0;
}

bool refund_status_keep_id(stage_ctx *ctx, const log_ctx *lc, const char *op_id,
                           const char *refund_id) {
  if (!refund_id || !*refund_id) return false;
  char err[512];
  if (!refund_status_id_usable(refund_id)) { /* never kept: the replay query goes on */
    const char *u[] = {op_id, "the processor's refund id is not a plain id: its state is asked "
                              "by the replay query only (pending until settled by hand)"};
    PGresult *r = pg_exec(&ctx->pg, SQL_UNUSABLE, 2, u, err, sizeof err);
    if (r && strcmp(PQcmdTuples(r), "1") == 0)
      log_at(LOG_ERROR, lc,
             "ALERT refund %s pending at the processor under an unusable id (%zu bytes): not "
             "asked by id; held, asked by the replay query",
             op_id, strlen(refund_id));
    else if (!r)
      log_at(LOG_WARN, lc, "refund %s: an unusable processor id not noted (%s)", op_id, err);
    PQclear(r);
    return false;
  }
  const char *v[] = {op_id, refund_id};
  PGresult *r = pg_exec(&ctx->pg, SQL_KEEP_ID, 2, v, err, sizeof err);
  if (!r)
    log_at(LOG_WARN, lc, "refund %s pending at the processor as %s: id not kept (%s)", op_id,
           refund_id, err);
  bool kept = r && strcmp(PQcmdTuples(r), "1") == 0;
  if (kept)
    log_at(LOG_INFO, lc, "refund %s pending at the processor as %s: its state is asked by id",
           op_id, refund_id);
  PQclear(r);
  return kept;
}

bool refund_status_past_bound(stage_ctx *ctx, const char *op_id) {
  char why[160], days[16];
  snprintf(days, sizeof days, "%d", REFUND_PENDING_BOUND_DAYS);
  snprintf(why, sizeof why,
           "refund pending at the processor for more than %d days: not decided by us; settle it "
           "with the processor",
           REFUND_PENDING_BOUND_DAYS);
  const char *v[] = {op_id, why, days};
  char err[512];
  PGresult *r = pg_exec(&ctx->pg, SQL_PAST_BOUND, 3, v, err, sizeof err);
  bool past = r && strcmp(PQcmdTuples(r), "1") == 0;
  if (!r) log_warn("refund %s: its pending bound not checked (%s)", op_id, err);
  PQclear(r);
  return past;
}

int refund_status_start(charge_http *h, http_call *c, const processor *pr, lc_request *rq,
                        const char *key, int kind, const lc_refund_ask *ask, bool lookup,
                        void *owner) {
  /* a refund the processor named while pending (a usable id): its state by id, else replay */
  if (!lookup || kind != KIND_REFUND || !refund_status_id_usable(ask->refund_id))
    return charge_http_start_op(h, c, pr, rq, key, kind, ask, lookup, owner);
  free(rq->body);
  rq->body = NULL;
  return charge_http_start_refund_status(h, c, pr, ask, owner);
}

long refund_status_on_answer(stage_ctx *ctx, const log_ctx *lc, const char *op_id,
                             const char *proc, const charge_answer *a, int64_t held_ms,
                             bool *kept) {
  /* from now on asked by the processor's refund id — one its body names as ours */
  *kept = a->pending_ref && a->ref_named && refund_status_keep_id(ctx, lc, op_id, a->charge_id);
  if (refund_status_past_bound(ctx, op_id))
    log_at(LOG_ERROR, lc,
           "ALERT refund %s pending at %s for more than %d days: not decided by us; held, "
           "listed in charge_unresolved",
           op_id, proc, REFUND_PENDING_BOUND_DAYS);
  if (!a->pending_ref && !a->by_id) return -1; /* a 429/5xx by id too: not polled hardest */
  return refund_status_backoff_ms(held_ms, (double)rand() / ((double)RAND_MAX + 1));
}

long refund_status_backoff_ms(int64_t held_ms, double jitter) {
  long base = held_ms < 60 * 1000 ? 2000 : held_ms < 3600 * 1000 ? 20 * 1000 : 300 * 1000;
  if (jitter < 0) jitter = 0;
  if (jitter >= 1) jitter = 0.999999;
  return base + (long)(jitter * (double)(base / 2));
}
