/* charge_stage: the charge worker's wiring into the stage runtime —
 * configuration, admission of messages, the kloop callbacks (pending,
 * capacity, floors, revoked), metrics, start and stop. The item state
 * machine is in charge.c. */
#include <curl/curl.h>
#include <glib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "charge.h"
#include "charge_db.h"
#include "charge_item.h"
#include "charge_ops.h"
#include "config.h"
#include "log.h"

/* Admits new messages without a round trip: they are read (and, with a
 * healthy primary, sent) in the next cycle's trip; an operation is an item
 * too (charge_ops.c), read in the next cycle. Never fails. */
static int charge_process(stage_ctx *ctx, stage_msg *msgs, size_t n, outbox *out) {
  charge_state *st = ctx->state;
  for (size_t i = 0; i < n; i++) {
    const ps_event *ev = msgs[i].ev;
    if (!ev->operation && (!ev->fraud || ev->fraud->decision != PAYMENTS__V1__FRAUD_DECISION__FRAUD_DECISION_ALLOW ||
        !ev->intent->amount || !ev->intent->payment_method)) {
      size_t before = out->n;
      outbox_add_dlq(out, ctx->cfg->topics.dlq, "charge", &msgs[i], "not allowed by fraud");
      outbox_tag(out, before, msgs[i].partition, msgs[i].offset); /* exactly-once holds it */
      continue;
    }
    citem *x = calloc(1, sizeof *x);
    if (!x) abort();
    x->ev = msgs[i].ev;
    msgs[i].ev = NULL; /* ours now */
    x->partition = msgs[i].partition;
    x->offset = msgs[i].offset;
    x->db.proc = -1;
    if (ev->operation) x->op = charge_op_new(ev->operation_id); /* charge_ops.c */
    /* Kept for the DLQ, should Postgres not know the payment. */
    x->raw = malloc(msgs[i].rawlen + 1);
    x->key = malloc(msgs[i].keylen + 1);
    if (!x->raw || !x->key) abort();
    memcpy(x->raw, msgs[i].raw, msgs[i].rawlen);
    memcpy(x->key, msgs[i].key, msgs[i].keylen);
    x->rawlen = msgs[i].rawlen;
    x->keylen = msgs[i].keylen;
    charge__keep(st, x);
    if (g_hash_table_contains(st->active, x->ev->payment_id)) {
      x->st = IT_WAIT_DUP; /* per-payment order: after the one in progress */
      continue;
    }
    g_hash_table_add(st->active, x->ev->payment_id);
    x->st = IT_READ;
  }
  return 0;
}

static size_t charge_pending(stage_ctx *ctx) { return ((charge_state *)ctx->state)->n; }

/* Keeps up to twice the in-flight limit: a slot that frees is refilled at
 * once from items already read. */
static size_t charge_capacity(stage_ctx *ctx) {
  const charge_state *st = ctx->state;
  size_t max = 2 * (size_t)st->max_inflight;
  return st->n < max ? max - st->n : 0;
}

static void charge_floors(stage_ctx *ctx, int64_t *floor, int32_t nparts) {
  const charge_state *st = ctx->state;
  for (size_t i = 0; i < st->n; i++) {
    const citem *x = st->items[i];
    if (x->partition < nparts && (floor[x->partition] < 0 || x->offset < floor[x->partition]))
      floor[x->partition] = x->offset;
  }
}

/* A lost partition's payments are dropped mid-flight: their attempts are
 * durable, and the next owner resends with the same key. */
static void charge_revoked(stage_ctx *ctx, int32_t partition) {
  charge_state *st = ctx->state;
  size_t k = 0, dropped = 0;
  for (size_t i = 0; i < st->n; i++) {
    citem *x = st->items[i];
    if (x->partition == partition) {
      charge__item_free(st, x);
      dropped++;
    } else {
      st->items[k++] = x;
    }
  }
  st->n = k;
  if (dropped) log_info("partition %d revoked: %zu payments left to the next owner", partition, dropped);
}

static const char *charge_input(const cfg *c) { return c->topics.fraud_scored; }

/* The breaker's settings (PAYSTREAM_BREAKER_*). Returns 0 or -1 with err. */
static int load_breaker(breaker_cfg *bc, char *err, size_t errlen) {
  long long window, min, cool, probes;
  breaker_cfg_default(bc);
  if (cfg_env_int("PAYSTREAM_BREAKER_WINDOW", bc->window, 1, BREAKER_MAX_WINDOW, &window, err,
                  errlen) ||
      cfg_env_int("PAYSTREAM_BREAKER_MIN_REQUESTS", bc->min_requests, 1, 100000, &min, err,
                  errlen) ||
      cfg_env_int("PAYSTREAM_BREAKER_COOL_DOWN_MS", bc->cool_down_ms, 1, 3600000, &cool, err,
                  errlen) ||
      cfg_env_int("PAYSTREAM_BREAKER_HALF_OPEN_PROBES", bc->half_open_probes, 1, 1000, &probes,
                  err, errlen) ||
      cfg_env_double("PAYSTREAM_BREAKER_FAILURE_RATE", bc->failure_rate, 0.01, 1,
                     &bc->failure_rate, err, errlen))
    return -1;
  bc->window = (int)window;
  bc->min_requests = (int)min;
  bc->cool_down_ms = cool;
  bc->half_open_probes = (int)probes;
  return 0;
}

static void charge_metrics(charge_state *st) {
  st->m_inflight = metrics_gauge("paystream_charges_in_flight", "Processor requests in flight", NULL);
  st->m_pending = metrics_gauge("paystream_charges_pending",
                               "Payments the charge worker holds (in flight, waiting to retry, "
                               "being recorded); their offsets are not committed yet",
                               NULL);
  st->m_isolated = metrics_counter("paystream_charge_isolated_total",
                                   "Payments isolated because Postgres refused their data (alert)",
                                   NULL);
  st->m_unresolved_age = metrics_gauge(
      "paystream_charge_unresolved_oldest_seconds",
      "Age of the oldest attempt this worker holds that the processor may have received and has "
      "not answered definitely (0: none)", NULL);
  st->m_interim = metrics_counter("paystream_charge_pending_outcomes_total",
                                  "Interim pending outcomes published past the deadline", NULL);
  st->m_unconfigured = metrics_counter(
      "paystream_charge_unconfigured_processor_total",
      "Attempts found at a processor that is not configured (alert)", NULL);
  st->m_mismatch = metrics_counter("paystream_charge_event_mismatch_total",
                                   "Events whose money disagrees with Postgres (alert)", NULL);
  st->m_lookups = metrics_counter("paystream_charge_status_queries_total",
                                  "Status queries asked of a processor for an attempt or operation "
                                  "without a definite answer (instead of a blind re-send)",
                                  NULL);
  st->m_elsewhere = metrics_counter(
      "paystream_charge_settled_elsewhere_total",
      "Attempts someone else (processor events) settled while charge held them: not emitted by "
      "charge", NULL);
  st->m_key_unfound = metrics_counter(
      "paystream_charge_key_unfound_total",
      "Attempts and operations first sent longer ago than the processor's idempotency-key "
      "lifetime that a search did not find (alert: never re-sent; settle by webhook, settlement "
      "report or operator)",
      NULL);
  st->m_op_escalated = metrics_counter(
      "paystream_charge_operations_escalated_total",
      "Operations answered 'no such object' after an earlier send that may have arrived, given "
      "up after a bounded number of queries (alert: dead-lettered, listed in charge_unresolved)",
      NULL);
  st->m_not_started = metrics_counter("paystream_charge_not_started_total",
                                      "Requests libcurl refused to start (nothing sent)", NULL);
}

static int charge_init(stage_ctx *ctx, char *err, size_t errlen) {
  static charge_state st;
  long long timeout_ms;
  breaker_cfg bc;
  if (cfg_env_int("PAYSTREAM_PROCESSOR_TIMEOUT_MS", 10000, 1, 600000, &timeout_ms, err, errlen) ||
      cfg_env_int("PAYSTREAM_CHARGE_MAX_INFLIGHT", 1000, 1, 10000, &st.max_inflight, err, errlen) ||
      cfg_env_int("PAYSTREAM_CHARGE_DEADLINE_MS", 600000, 1000, 7 * 86400000LL, &st.deadline_ms,
                  err, errlen) ||
      load_breaker(&bc, err, errlen) ||
      processor_load(&st.proc[0], "PAYSTREAM_PROCESSOR", "stripe", "http://127.0.0.1:12111", &bc,
                     err, errlen) < 0)
    return -1;
  st.nproc = 1;
  int backup = processor_load(&st.proc[1], "PAYSTREAM_BACKUP_PROCESSOR", "backup", NULL, &bc, err,
                              errlen);
  if (backup < 0) return -1;
  if (backup) {
    if (strcmp(st.proc[1].name, st.proc[0].name) == 0) {
      snprintf(err, errlen, "PAYSTREAM_BACKUP_PROCESSOR_NAME must differ from the primary's");
      return -1;
    }
    st.nproc = 2;
  }
  curl_global_init(CURL_GLOBAL_DEFAULT);
  if (charge_http_init(&st.http, st.max_inflight, timeout_ms, err, errlen)) return -1;
  st.active = g_hash_table_new(g_str_hash, g_str_equal);
  charge_metrics(&st);
  srand((unsigned)time(NULL));
  ctx->state = &st;
  log_info("charging at %s%s%s", st.proc[0].name, st.nproc > 1 ? ", failing over to " : "",
           st.nproc > 1 ? st.proc[1].name : "");
  return 0;
}

static void charge_destroy(stage_ctx *ctx) {
  charge_state *st = ctx->state;
  if (!st) return;
  for (size_t i = 0; i < st->n; i++) charge__item_free(st, st->items[i]);
  free(st->items);
  g_hash_table_destroy(st->active);
  charge_http_close(&st->http);
  for (int i = 0; i < st->nproc; i++) free(st->proc[i].api_key);
  curl_global_cleanup();
}

const stage_def charge_stage = {
    .name = "charge",
    .input_topic = charge_input,
    .requires_payment_id = true,
    .takes_operations = true,
    .init = charge_init,
    .process = charge_process,
    .destroy = charge_destroy,
    .progress = charge__progress,
    .pending = charge_pending,
    .capacity = charge_capacity,
    .floors = charge_floors,
    .revoked = charge_revoked,
};
