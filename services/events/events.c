/* events: payments.processor-events -> processor_events, once per event. */
#include "events.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "clock.h"
#include "config.h"
#include "dead_letter.h"
#include "hex.h"
#include "kafka.h"
#include "log.h"
#include "metrics.h"
#include "payments.pb-c.h"
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

events_result events_record(pg_conn *pg, const rd_kafka_message_t *m, char *reason,
                            size_t reasonlen) {
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
  PGresult *r = pg_exec(pg, INSERT, 17, params, err, sizeof err);
  if (r) {
    res = strcmp(PQcmdTuples(r), "1") == 0 ? EVENTS_RECORDED : EVENTS_DUPLICATE;
    PQclear(r);
  } else if (pg_err_is_data_error(err)) {
    /* The first line: the SQLSTATE and the constraint, not libpq's DETAIL,
     * which repeats the whole row. */
    snprintf(reason, reasonlen, "postgres refused the event: %.*s", (int)strcspn(err, "\n"), err);
    log_at(LOG_WARN, &lc, "dead-lettering processor event %s: %s", e->event_id, reason);
    res = EVENTS_POISON;
  } else {
    char pub[128];
    pg_err_public(err, pub, sizeof pub);
    metrics_set_check("postgres", false, true, pub);
    res = EVENTS_RETRY;
  }
  if (res != EVENTS_RETRY) metrics_set_check("postgres", true, true, "");
  free(body);
  payments__v1__processor_event__free_unpacked(e, NULL);
  return res;
}

/* Readiness when idle: Postgres answers (an event would also say so). */
static void check_postgres(pg_conn *pg) {
  char err[512], pub[128];
  PGresult *r = pg_exec(pg, "SELECT 1", 0, NULL, err, sizeof err);
  if (r) PQclear(r);
  else pg_err_public(err, pub, sizeof pub);
  metrics_set_check("postgres", r != NULL, true, r ? "" : pub);
}

static metric *counter(const char *result) {
  return metrics_counter("paystream_processor_events_total",
                         "Processor events consumed, by result", "result", result, NULL);
}

static void back_off(int *ms) {
  usleep((useconds_t)*ms * 1000);
  if (*ms < 5000) *ms *= 2;
}

/* One message: recorded (or known, or dead-lettered) and its offset
 * committed; while Postgres or the DLQ is away the same message is retried,
 * nothing skipped. */
static void handle(rd_kafka_t *rk, dead_letter *dl, pg_conn *pg, rd_kafka_message_t *m) {
  static const char *names[] = {"recorded", "duplicate", "poison"};
  events_result res;
  char reason[256] = "";
  int backoff_ms = 100;
  while ((res = events_record(pg, m, reason, sizeof reason)) == EVENTS_RETRY && !stop)
    back_off(&backoff_ms);
  if (res == EVENTS_RETRY) return; /* stopping: not committed, read again next time */
  backoff_ms = 100;
  while (res == EVENTS_POISON && dead_letter_send(dl, m, reason, &stop) != 0) {
    if (stop) return; /* not acknowledged: not committed, dead-lettered again next time */
    back_off(&backoff_ms);
  }
  metric_add(counter(names[res]), 1);
  rd_kafka_resp_err_t err = rd_kafka_commit_message(rk, m, 0);
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
  while (!stop) {
    rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 200);
    if (!m) {
      if (ps_mono_ms() >= next_check) {
        check_postgres(&pg);
        next_check = ps_mono_ms() + 5000;
      }
      continue;
    }
    if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
      rd_kafka_message_destroy(m);
      continue;
    }
    if (m->err) {
      log_warn("consume: %s", rd_kafka_message_errstr(m));
      rd_kafka_message_destroy(m);
      continue;
    }
    handle(rk, dl, &pg, m);
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
