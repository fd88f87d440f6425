/* producer: the receiver's Kafka side — send, delivery reports, readiness,
 * liveness. */
#include "producer.h"

#include <librdkafka/rdkafka.h>
#include <pthread.h>
#include <stdatomic.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kafka.h"
#include "log.h"
#include "metrics.h"

struct wh_producer {
  rd_kafka_t *rk;
  rd_kafka_topic_t *rkt;
  char *topic;
  volatile sig_atomic_t stop;
  pthread_t poller, checker;
  bool poller_running, checker_running;
};

/* One producer per process: the delivery callback finds its receiver here
 * (kafka_producer_new owns the conf, and with it the handle's opaque). */
static wh_delivered_fn delivered_fn;
/* Delivery reports served so far (the liveness check watches it move). */
static atomic_long reports;

/* librdkafka calls this from rd_kafka_poll, i.e. on the poller thread (or
 * the draining one). */
static void dr_msg_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque) {
  (void)rk, (void)opaque;
  if (m->err) log_warn("processor event not delivered: %s", rd_kafka_err2str(m->err));
  delivered_fn(m->_private, m->err == RD_KAFKA_RESP_ERR_NO_ERROR,
               m->err ? rd_kafka_err2str(m->err) : "");
  atomic_fetch_add(&reports, 1);
}

/* Serves the delivery reports, and is the receiver's heartbeat (/healthz,
 * PAYSTREAM_HEARTBEAT_TIMEOUT_S): alive while nothing waits for Kafka or
 * reports keep coming. librdkafka reports every event within the delivery
 * timeout, delivered or failed, even with the broker away; events waiting
 * with no report for the heartbeat timeout mean this thread or the
 * producer is stuck, and every processor's delivery would hang until its
 * own timeout — a restart is the cure. */
static void *poller(void *arg) {
  wh_producer *p = arg;
  long seen = atomic_load(&reports);
  while (!p->stop) {
    rd_kafka_poll(p->rk, 100);
    long now = atomic_load(&reports);
    if (now != seen || rd_kafka_outq_len(p->rk) == 0) metrics_heartbeat();
    seen = now;
  }
  return NULL;
}

/* Ready when the broker answers metadata for our topic and every one of
 * its partitions has a leader: a send can then be acknowledged. */
static void check_topic(wh_producer *p) {
  const struct rd_kafka_metadata *md = NULL;
  rd_kafka_resp_err_t err = rd_kafka_metadata(p->rk, 0, p->rkt, &md, 2000);
  if (err) {
    metrics_set_check("kafka", false, true, rd_kafka_err2str(err));
    return;
  }
  bool ok = md->topic_cnt == 1 && !md->topics[0].err && md->topics[0].partition_cnt > 0;
  for (int i = 0; ok && i < md->topics[0].partition_cnt; i++)
    ok = md->topics[0].partitions[i].leader >= 0;
  metrics_set_check("kafka", ok, true,
                    ok ? "" : md->topic_cnt == 1 && md->topics[0].err
                                  ? rd_kafka_err2str(md->topics[0].err)
                                  : "a partition has no leader");
  rd_kafka_metadata_destroy(md);
}

static void *checker(void *arg) {
  wh_producer *p = arg;
  while (!p->stop) {
    check_topic(p);
    for (int i = 0; i < 20 && !p->stop; i++) usleep(100 * 1000);
  }
  return NULL;
}

wh_producer *wh_producer_new(const cfg *c, const char *topic, int delivery_timeout_ms,
                             wh_delivered_fn on_delivered, char *err, size_t errlen) {
  wh_producer *p = calloc(1, sizeof *p);
  if (!p) abort();
  delivered_fn = on_delivered;
  p->topic = strdup(topic);
  p->rk = kafka_producer_new(c, dr_msg_cb, err, errlen);
  if (!p->rk) goto err;
  /* Webhook senders wait for the answer: an event not durable within the
   * timeout is answered 503 and the processor retries. */
  rd_kafka_topic_conf_t *tconf = rd_kafka_topic_conf_new();
  char ms[32], e[256];
  snprintf(ms, sizeof ms, "%d", delivery_timeout_ms);
  if (rd_kafka_topic_conf_set(tconf, "message.timeout.ms", ms, e, sizeof e) != RD_KAFKA_CONF_OK) {
    snprintf(err, errlen, "PAYSTREAM_WEBHOOK_DELIVERY_TIMEOUT_MS: %s", e);
    rd_kafka_topic_conf_destroy(tconf);
    goto err;
  }
  p->rkt = rd_kafka_topic_new(p->rk, topic, tconf); /* tconf now owned by rkt */
  if (!p->rkt) {
    snprintf(err, errlen, "kafka topic %s: %s", topic, rd_kafka_err2str(rd_kafka_last_error()));
    goto err;
  }
  metrics_set_check("kafka", false, true, "not checked yet");
  /* Liveness needs a heartbeat timeout longer than the delivery timeout:
   * during a broker outage reports come only as events time out. */
  if ((long long)c->heartbeat_timeout_s * 1000 <= delivery_timeout_ms)
    log_warn("PAYSTREAM_HEARTBEAT_TIMEOUT_S (%d s) is not longer than "
             "PAYSTREAM_WEBHOOK_DELIVERY_TIMEOUT_MS (%d ms): a Kafka outage fails /healthz",
             c->heartbeat_timeout_s, delivery_timeout_ms);
  metrics_set_heartbeat_timeout(c->heartbeat_timeout_s);
  if (pthread_create(&p->poller, NULL, poller, p) != 0) goto err;
  p->poller_running = true;
  if (pthread_create(&p->checker, NULL, checker, p) != 0) goto err;
  p->checker_running = true;
  return p;
err:
  wh_producer_destroy(p);
  return NULL;
}

int wh_producer_send(wh_producer *p, const wh_event *ev, const char *processor, void *opaque,
                     char *err, size_t errlen) {
  rd_kafka_resp_err_t e = rd_kafka_producev(
      p->rk, RD_KAFKA_V_RKT(p->rkt), RD_KAFKA_V_KEY(ev->payment_id, strlen(ev->payment_id)),
      RD_KAFKA_V_VALUE(ev->packed, ev->packed_len), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
      RD_KAFKA_V_HEADER("event_id", ev->event_id, -1),
      RD_KAFKA_V_HEADER("processor", processor, -1), RD_KAFKA_V_HEADER("type", ev->type, -1),
      RD_KAFKA_V_OPAQUE(opaque), RD_KAFKA_V_END);
  if (e) {
    snprintf(err, errlen, "could not enqueue: %s", rd_kafka_err2str(e));
    return -1;
  }
  return 0;
}

static void join_threads(wh_producer *p) {
  p->stop = 1;
  if (p->poller_running) pthread_join(p->poller, NULL);
  if (p->checker_running) pthread_join(p->checker, NULL);
  p->poller_running = p->checker_running = false;
}

int wh_producer_drain(wh_producer *p, int timeout_ms) {
  join_threads(p);
  /* flush polls: the remaining delivery callbacks run on this thread. */
  rd_kafka_flush(p->rk, timeout_ms);
  int left = rd_kafka_outq_len(p->rk);
  if (left > 0) {
    /* Purged events are reported failed (503): their senders retry. */
    rd_kafka_purge(p->rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
    rd_kafka_poll(p->rk, 100);
  }
  return left;
}

void wh_producer_destroy(wh_producer *p) {
  if (!p) return;
  join_threads(p);
  if (p->rkt) rd_kafka_topic_destroy(p->rkt);
  if (p->rk) rd_kafka_destroy(p->rk);
  free(p->topic);
  free(p);
}
