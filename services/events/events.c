/* events: payments.processor-events -> processor_events, recorded and applied once per event. */
#include "events.h"

#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "clock.h"
#include "config.h"
#include "apply.h"
#include "dead_letter.h"
#include "event_map.h"
#include "hex.h"
#include "kafka.h"
#include "log.h"
#include "metrics.h"
#include "payments.pb-c.h"
#include "schema_check.h"
#include "stop_signals.h"

typedef Payments__V1__ProcessorEvent proc_event;

static volatile sig_atomic_t stop;
static void on_signal(int sig) {
  (void)sig;
  stop = 1;
}

static const char *INSERT =
    "INSERT INTO processor_events (processor, event_id, flavour, type, payment_id, object_id,"
    " object_type, charge_id, payment_intent_id, status, amount_minor, currency, occurred_at,"
    " received_at, raw_body, kafka_partition, kafka_offset)"
    " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11::bigint, $12,"
    " CASE WHEN $13::bigint > 0 THEN to_timestamp($13::bigint / 1000.0) END,"
    " to_timestamp($14::bigint / 1000.0), $15::bytea, $16::int, $17::bigint)"
    " ON CONFLICT (processor, event_id) DO NOTHING";

static const char *flavour_name(Payments__V1__ProcessorFlavour f) {
  return f == PAYMENTS__V1__PROCESSOR_FLAVOUR__PROCESSOR_FLAVOUR_PAYPAL ? "paypal"
         : f == PAYMENTS__V1__PROCESSOR_FLAVOUR__PROCESSOR_FLAVOUR_STRIPE ? "stripe"
                                                                         : "";
}

static metric *effect_counter(const char *effect) {
  return metrics_counter("paystream_processor_events_applied_total",
                         "Processor events applied, by effect (first application only)", "effect",
                         effect, NULL);
}

events_result events_record(pg_conn *pg, const cfg *c, const rd_kafka_message_t *m, outbox *out,
                            char *reason, size_t reasonlen) {
  log_ctx lc = {rd_kafka_topic_name(m->rkt), m->partition, m->offset, NULL, NULL};
  proc_event *e = payments__v1__processor_event__unpack(NULL, m->len, m->payload);
  if (!e || e->schema_version != 1) {
    if (e) snprintf(reason, reasonlen, "unsupported schema_version %u (this stage reads 1)",
                    (unsigned)e->schema_version);
    else snprintf(reason, reasonlen, "undecodable processor event");
    log_at(LOG_WARN, &lc, "dead-lettering message: %s", reason);
    if (e) payments__v1__processor_event__free_unpacked(e, NULL);
    return EVENTS_POISON;
  }
  lc.payment_id = e->payment_id;
  char amount[32] = "", occurred[32], received[32], part[16], off[32];
  if (e->amount) snprintf(amount, sizeof amount, "%lld", (long long)e->amount->amount_minor);
  snprintf(occurred, sizeof occurred, "%lld", (long long)e->occurred_at_ms);
  snprintf(received, sizeof received, "%lld", (long long)e->received_at_ms);
  snprintf(part, sizeof part, "%d", (int)m->partition);
  snprintf(off, sizeof off, "%lld", (long long)m->offset);
  char *body = malloc(2 * e->raw_body.len + 3);
  if (!body) abort();
  memcpy(body, "\\x", 2);
  hex_encode(e->raw_body.data, e->raw_body.len, body + 2);
  const char *params[17] = {
      e->processor, e->event_id, flavour_name(e->flavour), e->type, e->payment_id, e->object_id,
      e->object_type, e->charge_id, e->payment_intent_id, e->status,
      e->amount ? amount : NULL, e->amount ? e->amount->currency : NULL, occurred, received,
      body, part, off};
  char err[512];
  events_result res;
  ev_map map;
  if (ev_map_event(e, &map) != 0)
    log_at(LOG_WARN, &lc, "processor event %s (%s): a status this stage does not know; recorded, not applied",
           e->event_id, e->type);
  if (map.partial)
    log_at(LOG_WARN, &lc, "processor event %s (%s): a dispute movement of part of its amount, "
           "counted as one movement of the dispute's amount", e->event_id, e->type);
  char *decline = NULL, fee[32] = "", wd[16] = "", rs[16] = "";
  int rc = 0;
  if (map.action == EV_CHARGE_FAILED) rc = events_decline_outcome(pg, e, &map, &decline, err, sizeof err);
  if (map.fee_minor >= 0) snprintf(fee, sizeof fee, "%lld", (long long)map.fee_minor);
  if (map.withdrawals >= 0) snprintf(wd, sizeof wd, "%d", map.withdrawals);
  if (map.reinstatements >= 0) snprintf(rs, sizeof rs, "%d", map.reinstatements);
  const char *ap[EVENTS_APPLY_NPARAMS] = {e->processor, e->event_id, ev_action_name(map.action),
                                         map.dispute_status, fee[0] ? fee : NULL, decline,
                                         map.decline_code, map.operation_id,
                                         wd[0] ? wd : NULL, rs[0] ? rs : NULL};
  pg_stmt stmts[2] = {{INSERT, 17, params}, {EVENTS_SQL_APPLY, EVENTS_APPLY_NPARAMS, ap}};
  PGresult *r[2] = {0};
  if (rc == 0) rc = pg_pipeline(pg, stmts, 2, r, err, sizeof err);
  const char *effect = NULL;
  if (rc == 0) {
    res = strcmp(PQcmdTuples(r[0]), "1") == 0 ? EVENTS_RECORDED : EVENTS_DUPLICATE;
    if (PQntuples(r[1]) != 1 || events_outputs(pg, c, r[1], out, &effect, err, sizeof err) != 0) {
      if (PQntuples(r[1]) != 1) snprintf(err, sizeof err, "XX000: no effect returned");
      rc = -1;
    } else {
      if (res == EVENTS_RECORDED) metric_add(effect_counter(effect), 1);
      const char *note = PQgetvalue(r[1], 0, 1);
      /* The usual case (the charge worker's own answer settled it first, a
       * refund declined when asked) is not news; anything else is. */
      bool usual = strncmp(note, "no unsettled attempt", 20) == 0 ||
                   strncmp(note, "the refund is ", 14) == 0 || strcmp(note, "already reversed") == 0 ||
                   strcmp(note, "a failure is already kept") == 0;
      /* The processor says a refund went out that we ended declined (its
       * reservation given back): the money may leave twice. Never usual. */
      if (map.action == EV_REFUND_SUCCEEDED && strcmp(note, "the refund is declined") == 0) {
        usual = false;
        log_at(LOG_ERROR, &lc,
               "ALERT processor event %s: the processor refunded operation %s, which we hold "
               "declined (reconcile the refund; its amount is refundable here again)",
               e->event_id, PQgetvalue(r[1], 0, 3));
      }
      /* The processor holds more than the payment had left (029): the
       * posting is the processor's amount, the hold capped. An operator
       * looks at it (view disputes_held_short). */
      if (res == EVENTS_RECORDED && strcmp(effect, "dispute") == 0 &&
          strncmp(note, "hold capped", 11) == 0) {
        metric_add(metrics_counter("paystream_disputes_held_short_total",
                                   "Dispute events that left a dispute held short of its amount",
                                   NULL),
                   1);
        log_at(LOG_ERROR, &lc, "ALERT dispute %s on payment %s: %s (listed in disputes_held_short)",
               PQgetvalue(r[1], 0, 4), e->payment_id, note);
      }
      if (strcmp(PQgetvalue(r[1], 0, 0), "ignored") == 0 && map.action != EV_NONE)
        log_at(usual ? LOG_DEBUG : LOG_WARN, &lc, "processor event %s (%s) not applied: %s",
               e->event_id, e->type, note);
    }
    pg_results_clear(r, 2);
  }
  if (rc != 0 && pg_err_is_data_error(err)) {
    /* The first line: the SQLSTATE and the constraint, not libpq's DETAIL,
     * which repeats the whole row. */
    snprintf(reason, reasonlen, "postgres refused the event: %.*s", (int)strcspn(err, "\n"), err);
    log_at(LOG_WARN, &lc, "dead-lettering processor event %s: %s", e->event_id, reason);
    res = EVENTS_POISON;
  } else if (rc != 0) {
    char pub[128];
    pg_err_public(err, pub, sizeof pub);
    metrics_set_check("postgres", false, true, pub);
    log_at(LOG_WARN, &lc, "processor event %s: will retry: %s", e->event_id, pub);
    res = EVENTS_RETRY;
  }
  free(decline);
  if (res != EVENTS_RETRY) metrics_set_check("postgres", true, true, "");
  free(body);
  payments__v1__processor_event__free_unpacked(e, NULL);
  return res;
}

/* Readiness every few seconds, busy or idle: Postgres answers, and holds
 * the migration this build needs. */
static void check_postgres(pg_conn *pg, bool *schema_warned) {
  char err[512], pub[128];
  PGresult *r = pg_exec(pg, "SELECT 1", 0, NULL, err, sizeof err);
  if (r) PQclear(r);
  else pg_err_public(err, pub, sizeof pub);
  metrics_set_check("postgres", r != NULL, true, r ? "" : pub);
  if (r) schema_check(pg, schema_warned);
}

static metric *counter(const char *result) {
  return metrics_counter("paystream_processor_events_total",
                         "Processor events consumed, by result", "result", result, NULL);
}

/* A bounded wait: the loop is alive (the heartbeat says so), only waiting. */
static void back_off(int *ms) {
  metrics_heartbeat();
  usleep((useconds_t)*ms * 1000);
  metrics_heartbeat();
  if (*ms < 5000) *ms *= 2;
}

/* One message: recorded (or known, or dead-lettered) and its offset
 * committed; while Postgres or the DLQ is away the same message is retried,
 * nothing skipped. */
static void handle(rd_kafka_t *rk, const cfg *c, dead_letter *dl, pg_conn *pg,
                   rd_kafka_message_t *m) {
  static const char *names[] = {"recorded", "duplicate", "poison"};
  events_result res;
  char reason[256] = "";
  int backoff_ms = 100;
  outbox out = {0};
  int pub = -1;
  for (;;) {
    outbox_reset(&out);
    res = events_record(pg, c, m, &out, reason, sizeof reason);
    if (res == EVENTS_RETRY) {
      if (stop) break;
      back_off(&backoff_ms);
      continue;
    }
    /* Outputs acknowledged before the offset moves; if not, the same
     * message again: its effect is already Postgres's, its outputs the same. */
    if ((pub = events_publish(dl, &out, &stop)) == 0 || stop) break;
    back_off(&backoff_ms);
  }
  outbox_free(&out);
  if (res == EVENTS_RETRY || pub != 0) return; /* stopping: not committed, read again next time */
  backoff_ms = 100;
  while (res == EVENTS_POISON && dead_letter_send(dl, m, reason, &stop) != 0) {
    if (stop) return; /* not acknowledged: not committed, dead-lettered again next time */
    back_off(&backoff_ms);
  }
  metric_add(counter(names[res]), 1);
  /* Asynchronous: a broker outage must not hold the loop in a commit (the
   * heartbeat would stop and /healthz restart a healthy stage). A commit
   * lost to the outage is covered by the next one; at worst the events are
   * read again and found recorded. */
  rd_kafka_resp_err_t err = rd_kafka_commit_message(rk, m, 1);
  if (err) log_warn("could not commit offset: %s", rd_kafka_err2str(err));
}

int events_main(void) {
  cfg c;
  char err[512] = "";
  log_level lvl;
  if (cfg_load(&c, "events", err, sizeof err) != 0 || log_level_parse(c.log_level, &lvl) != 0) {
    fprintf(stderr, "ps-events: %s\n", err[0] ? err : "PAYSTREAM_LOG_LEVEL is not a level");
    cfg_close(&c);
    return 2;
  }
  log_init("events", lvl);
  if (metrics_serve("events", c.metrics_addr, c.metrics_port_file, err, sizeof err) != 0) {
    log_error("%s", err);
    cfg_close(&c);
    return 2;
  }
  stop_signals_install(on_signal);
  metrics_set_check("schema", false, true, "not checked yet");
  metrics_set_heartbeat_timeout(c.heartbeat_timeout_s);
  pg_conn pg;
  pg_init(&pg, c.pg_dsn, "paystream-events", false);
  rd_kafka_t *rk = kafka_consumer_new(&c, c.topics.processor_events, NULL, NULL, err, sizeof err);
  if (!rk) {
    log_error("%s", err);
    metrics_stop();
    cfg_close(&c);
    return 1;
  }
  dead_letter *dl = dead_letter_new(&c, err, sizeof err);
  if (!dl) {
    log_error("%s", err);
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
    pg_close(&pg);
    metrics_stop();
    cfg_close(&c);
    return 1;
  }
  int64_t next_check = 0;
  bool schema_warned = false;
  while (!stop) {
    metrics_heartbeat();
    if (ps_mono_ms() >= next_check) {
      check_postgres(&pg, &schema_warned);
      next_check = ps_mono_ms() + 5000;
    }
    rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 200);
    if (!m) continue;
    if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
      rd_kafka_message_destroy(m);
      continue;
    }
    if (m->err) {
      log_warn("consume: %s", rd_kafka_message_errstr(m));
      rd_kafka_message_destroy(m);
      continue;
    }
    handle(rk, &c, dl, &pg, m);
    rd_kafka_message_destroy(m);
  }
  log_info("stopping");
  rd_kafka_consumer_close(rk);
  rd_kafka_destroy(rk);
  dead_letter_free(dl);
  pg_close(&pg);
  metrics_stop();
  cfg_close(&c);
  return 0;
}
