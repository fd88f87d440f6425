/* refund_status: see refund_status.h. */
#include "refund_status.h"

#include <stdio.h>
#include <string.h>

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

int refund_status_path(bool paypal, const char *refund_id, char *out, size_t len) {
  if (!refund_id || !*refund_id || strlen(refund_id) > 128) return -1;
  for (const char *p = refund_id; *p; p++)
    if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
          *p == '_' || *p == '-'))
      return -1;
  int n = snprintf(out, len, paypal ? "/v2/payments/refunds/%s" : "/v1/refunds/%s", refund_id);
  return n < 0 || (size_t)n >= len ? -1 : 0;
}

void refund_status_keep_id(stage_ctx *ctx, const log_ctx *lc, const char *op_id,
                           const char *refund_id) {
  if (!refund_id || !*refund_id) return;
  const char *v[] = {op_id, refund_id};
  char err[512];
  PGresult *r = pg_exec(&ctx->pg, SQL_KEEP_ID, 2, v, err, sizeof err);
  if (!r)
    log_at(LOG_WARN, lc, "refund %s pending at the processor as %s: id not kept (%s)", op_id,
           refund_id, err);
  else if (strcmp(PQcmdTuples(r), "1") == 0)
    log_at(LOG_INFO, lc, "refund %s pending at the processor as %s: its state is asked by id",
           op_id, refund_id);
  PQclear(r);
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

long refund_status_backoff_ms(int64_t held_ms, double jitter) {
  long base = held_ms < 60 * 1000 ? 2000 : held_ms < 3600 * 1000 ? 20 * 1000 : 300 * 1000;
  if (jitter < 0) jitter = 0;
  if (jitter >= 1) jitter = 0.999999;
  return base + (long)(jitter * (double)(base / 2));
}
