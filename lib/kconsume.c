/* kconsume: the consuming half of the worker loop — poll a batch, decode it
 * (dead-lettering what does not decode), and the offsets a batch commits.
 * An offset out of range is an alert and a paused partition, never a skip. */
#include <stdio.h>
#include <stdlib.h>

#include "clock.h"
#include "kloop_impl.h"
#include "log.h"

kloop *kloop_running;

part_track *kloop_track(kloop *kl, int32_t p) {
  if (p < 0) return NULL;
  if (p >= kl->nparts) {
    int32_t n = p + 1 > kl->nparts * 2 ? p + 1 : kl->nparts * 2;
    part_track *nv = realloc(kl->parts, (size_t)n * sizeof *nv);
    if (!nv) abort();
    for (int32_t i = kl->nparts; i < n; i++) nv[i] = (part_track){-1, -1, false};
    kl->parts = nv;
    kl->nparts = n;
  }
  return &kl->parts[p];
}

/* A committed offset that no longer exists (retention deleted it, or the
 * topic was re-created) must never be skipped silently: the partition is
 * paused, the error is an alert with what to do, and it stays paused until
 * an operator moves the group (payctl replay) and the partition is
 * re-assigned. Other consumer errors are logged and librdkafka retries. */
static void consumer_error(kloop *kl, rd_kafka_message_t *m) {
  if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) return;
  const char *topic = m->rkt ? rd_kafka_topic_name(m->rkt) : NULL;
  log_ctx lc = {topic, m->partition, m->offset, NULL, NULL};
  if (topic && (m->err == RD_KAFKA_RESP_ERR__AUTO_OFFSET_RESET ||
                m->err == RD_KAFKA_RESP_ERR_OFFSET_OUT_OF_RANGE)) {
    metric_add(kl->m.out_of_range, 1);
    rd_kafka_topic_partition_list_t *p = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(p, topic, m->partition);
    rd_kafka_pause_partitions(kl->consumer, p);
    rd_kafka_topic_partition_list_destroy(p);
    part_track *t = kloop_track(kl, m->partition);
    if (t) t->alert_paused = true;
    log_at(LOG_ERROR, &lc,
           "ALERT committed offset out of range (messages were deleted before they were "
           "processed); partition paused, nothing skipped. Investigate, then move the group "
           "with: payctl replay --stage %s --to-offset earliest|<n> --partitions %d (%s)",
           kl->def->name, m->partition, rd_kafka_message_errstr(m));
    return;
  }
  log_at(LOG_ERROR, &lc, "consumer error: %s", rd_kafka_message_errstr(m));
}

/* Collects up to limit messages, waiting at most batch_wait_ms after the
 * first one arrives — or, when !block, only what is already fetched.
 * Consumer errors are logged; an offset out of range is an error the
 * operator must see (we never reset past messages). */
void kloop_collect(kloop *kl, size_t limit, bool block) {
  kl->nbatch = 0;
  int64_t deadline = 0;
  while (!kloop_stop_requested && kl->nbatch < limit) {
    if (kl->nbatch == 0) kloop_health_tick(kl);
    int timeout = block ? 100 : 0;
    bool draining = !block; /* take only what is already fetched */
    if (kl->nbatch && block) {
      /* Past the wait, still take everything already fetched: batches
       * grow with load on their own and stay small when traffic is light. */
      int64_t left = deadline - ps_mono_ms();
      timeout = left > 0 ? (int)left : 0;
      draining = left <= 0;
    }
    rd_kafka_message_t *m = rd_kafka_consumer_poll(kl->consumer, timeout);
    if (!m) {
      if (draining) break;
      continue;
    }
    if (m->err) {
      consumer_error(kl, m);
      rd_kafka_message_destroy(m);
      continue;
    }
    if (kl->nbatch == 0) deadline = ps_mono_ms() + kl->cfg.batch_wait_ms;
    kl->batch[kl->nbatch++] = m;
  }
}

/* Decodes the batch; undecodable messages go to the outbox's DLQ entries,
 * tagged with their source (exactly-once holds them like any output). */
size_t kloop_decode(kloop *kl, outbox *dlq) {
  size_t n = 0;
  for (size_t i = 0; i < kl->nbatch; i++) {
    rd_kafka_message_t *m = kl->batch[i];
    stage_msg sm = {NULL, rd_kafka_topic_name(m->rkt), m->partition, m->offset, m->payload, m->len,
                    m->key, m->key_len};
    char reason[128];
    if (m->len > (size_t)kl->cfg.max_message_bytes) {
      snprintf(reason, sizeof reason, "oversized message: %zu bytes, limit %d", m->len,
               kl->cfg.max_message_bytes);
      sm.ev = NULL;
    } else {
      sm.ev = event_decode(m->payload, m->len, reason, sizeof reason);
    }
    if (sm.ev && kl->def->requires_payment_id && !*sm.ev->payment_id) {
      snprintf(reason, sizeof reason, "missing payment_id");
      event_free(sm.ev);
      sm.ev = NULL;
    }
    if (sm.ev && sm.ev->operation && !kl->def->takes_operations) {
      snprintf(reason, sizeof reason, "an operation on a stage that takes none");
      event_free(sm.ev);
      sm.ev = NULL;
    }
    if (!sm.ev) {
      log_ctx lc = {sm.topic, sm.partition, sm.offset, NULL, NULL};
      log_at(LOG_WARN, &lc, "dead-lettering message: %s", reason);
      size_t before = dlq->n;
      outbox_add_dlq(dlq, kl->cfg.topics.dlq, kl->def->name, &sm, reason);
      outbox_tag(dlq, before, sm.partition, sm.offset);
      continue;
    }
    kl->msgs[n++] = sm;
  }
  return n;
}

void kloop_free_decoded(kloop *kl, size_t n) {
  for (size_t i = 0; i < n; i++) event_free(kl->msgs[i].ev);
}

int64_t kloop_msg_timestamp(const stage_msg *m) {
  for (size_t i = 0; kloop_running && i < kloop_running->nbatch; i++) {
    const rd_kafka_message_t *k = kloop_running->batch[i];
    if (k->payload == m->raw && k->offset == m->offset && k->partition == m->partition)
      return rd_kafka_message_timestamp(k, NULL);
  }
  return -1;
}

/* Per partition, the offset after the batch's last message. */
rd_kafka_topic_partition_list_t *kloop_batch_offsets(kloop *kl) {
  rd_kafka_topic_partition_list_t *offs =
      rd_kafka_topic_partition_list_new(kl->nbatch ? (int)kl->nbatch : 1);
  for (size_t i = 0; i < kl->nbatch; i++) {
    rd_kafka_message_t *m = kl->batch[i];
    rd_kafka_topic_partition_t *p =
        rd_kafka_topic_partition_list_find(offs, rd_kafka_topic_name(m->rkt), m->partition);
    if (!p) p = rd_kafka_topic_partition_list_add(offs, rd_kafka_topic_name(m->rkt), m->partition);
    if (m->offset + 1 > p->offset) p->offset = m->offset + 1;
  }
  return offs;
}

/* Commits the batch's offsets (at-least-once mode; kcommit.c: sent, not
 * waited for). */
void kloop_commit_batch(kloop *kl) {
  rd_kafka_topic_partition_list_t *offs = kloop_batch_offsets(kl);
  kloop_commit(kl, offs);
  rd_kafka_topic_partition_list_destroy(offs);
}

void kloop_release_batch(kloop *kl) {
  for (size_t i = 0; i < kl->nbatch; i++) rd_kafka_message_destroy(kl->batch[i]);
  kl->nbatch = 0;
}
