/* dead_letter: one dead letter at a time, acknowledged before the commit. */
#include "dead_letter.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>

#include "clock.h"
#include "kafka.h"
#include "log.h"
#include "metrics.h"
#include "outbox.h"

struct dead_letter {
  const cfg *cfg;
  rd_kafka_t *rk;
  metric *counter;
  uintptr_t seq;  /* the batch awaited; a late report of an abandoned one is ignored */
  size_t pending; /* its messages not reported yet */
  rd_kafka_resp_err_t err; /* its first failure */
};

/* A message's opaque: the handle's is not ours (kafka_producer_new owns the
 * conf). Freed by the delivery report, which always comes (d is freed only
 * after rd_kafka_destroy). */
typedef struct ticket {
  dead_letter *d;
  uintptr_t seq;
} ticket;

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque) {
  (void)rk, (void)opaque;
  ticket *t = m->_private;
  if (t->seq == t->d->seq) {
    if (m->err && !t->d->err) t->d->err = m->err;
    t->d->pending--;
  }
  free(t);
}

dead_letter *dead_letter_new(const cfg *c, char *err, size_t errlen) {
  dead_letter *d = calloc(1, sizeof *d);
  if (!d) abort();
  d->cfg = c;
  d->rk = kafka_producer_new(c, on_delivery, err, errlen);
  if (!d->rk) {
    free(d);
    return NULL;
  }
  /* The same series kloop's stages count their dead letters in. */
  d->counter = metrics_counter("paystream_messages_dead_lettered_total",
                               "Input messages sent to the DLQ (undecodable, oversized, poison)",
                               "topic", c->topics.processor_events, NULL);
  return d;
}

/* Produces every message of ob and waits for all their reports: 0 when
 * all were acknowledged. */
static int send_all(dead_letter *d, outbox *ob, volatile sig_atomic_t *stop) {
  d->seq++;
  d->pending = 0;
  d->err = RD_KAFKA_RESP_ERR_NO_ERROR;
  int rc = 0;
  for (size_t i = 0; i < ob->n && rc == 0; i++) {
    outbox_msg *o = &ob->v[i];
    ticket *t = malloc(sizeof *t);
    if (!t) abort();
    *t = (ticket){d, d->seq};
    rd_kafka_resp_err_t err;
    for (;;) {
      err = rd_kafka_producev(d->rk, RD_KAFKA_V_TOPIC(o->topic), RD_KAFKA_V_KEY(o->key, o->keylen),
                              RD_KAFKA_V_VALUE(o->val, o->vallen),
                              RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_HEADERS(o->hdrs),
                              RD_KAFKA_V_OPAQUE(t), RD_KAFKA_V_END);
      if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL) break;
      rd_kafka_poll(d->rk, 10);
    }
    if (err) {
      free(t);
      log_error("could not produce to %s: %s", o->topic, rd_kafka_err2str(err));
      rc = -1;
    } else {
      o->hdrs = NULL; /* now owned by the producer */
      d->pending++;
    }
  }
  int64_t deadline = -1;
  while (d->pending > 0) {
    rd_kafka_poll(d->rk, 100);
    if (*stop && deadline < 0) deadline = ps_mono_ms() + 5000;
    if (deadline >= 0 && ps_mono_ms() >= deadline) break;
  }
  if (d->pending == 0 && d->err) {
    log_error("not delivered: %s", rd_kafka_err2str(d->err));
    rc = -1;
  }
  return d->pending == 0 && rc == 0 ? 0 : -1;
}

int dead_letter_send(dead_letter *d, const rd_kafka_message_t *m, const char *reason,
                     volatile sig_atomic_t *stop) {
  stage_msg sm = {NULL, rd_kafka_topic_name(m->rkt), m->partition, m->offset, m->payload, m->len,
                  m->key, m->key_len};
  outbox ob = {0};
  outbox_add_dlq(&ob, d->cfg->topics.dlq, "events", &sm, reason);
  int rc = send_all(d, &ob, stop);
  if (rc == 0) outbox_count_delivered(&ob, d->cfg->topics.dlq, d->counter);
  else log_error("dead letter not delivered to %s", d->cfg->topics.dlq);
  outbox_free(&ob);
  return rc;
}

int events_publish(dead_letter *d, outbox *ob, volatile sig_atomic_t *stop) {
  return ob->n == 0 ? 0 : send_all(d, ob, stop);
}

void dead_letter_free(dead_letter *d) {
  if (!d) return;
  rd_kafka_flush(d->rk, 5000);
  rd_kafka_destroy(d->rk);
  free(d);
}
