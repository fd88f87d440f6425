/* outbox: a batch's outputs, in order, until kloop produces them. */
#include "outbox.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hash.h"
#include "metrics.h"

/* A new last entry. Aborts on out of memory. */
static outbox_msg *slot(outbox *ob) {
  if (ob->n == ob->cap) {
    size_t cap = ob->cap ? ob->cap * 2 : 64;
    outbox_msg *nv = realloc(ob->v, cap * sizeof *nv);
    if (!nv) abort();
    ob->v = nv;
    ob->cap = cap;
  }
  return &ob->v[ob->n++];
}

void outbox_add(outbox *ob, const char *topic, const void *key, size_t keylen, uint8_t *val,
                size_t vallen, rd_kafka_headers_t *hdrs) {
  outbox_msg *m = slot(ob);
  m->topic = topic;
  m->key = malloc(keylen + 1);
  if (!m->key) abort();
  if (keylen) memcpy(m->key, key, keylen);
  m->key[keylen] = '\0';
  m->keylen = keylen;
  m->val = val;
  m->vallen = vallen;
  m->hdrs = hdrs;
  m->status = -1;
  m->src_partition = -1;
  m->src_offset = -1;
}

void outbox_tag(outbox *ob, size_t from, int32_t partition, int64_t offset) {
  for (size_t i = from; i < ob->n; i++) {
    ob->v[i].src_partition = partition;
    ob->v[i].src_offset = offset;
  }
}

void outbox_split(outbox *ob, outbox *dst, bool (*stays)(const outbox_msg *m, void *arg),
                  void *arg) {
  size_t k = 0;
  for (size_t i = 0; i < ob->n; i++) {
    if (stays(&ob->v[i], arg)) ob->v[k++] = ob->v[i];
    else *slot(dst) = ob->v[i];
  }
  ob->n = k;
}

int outbox_add_event(outbox *ob, const char *topic, const ps_event *ev) {
  size_t len;
  uint8_t *buf = event_pack(ev, &len);
  if (!buf) return -1;
  const char *key = ev->intent      ? ev->intent->idempotency_key
                    : ev->operation ? ev->payment_key /* the payment's key: its events stay ordered */
                                    : "";
  outbox_add(ob, topic, key, strlen(key), buf, len, NULL);
  return 0;
}

int outbox_add_outcome_keyed(outbox *ob, const char *topic, const void *key, size_t keylen,
                             const ps_outcome *o) {
  size_t len;
  uint8_t *buf = outcome_pack(o, &len);
  if (!buf) return -1;
  outbox_add(ob, topic, key, keylen, buf, len, NULL);
  ob->v[ob->n - 1].status = (int)o->status;
  return 0;
}

int outbox_add_outcome(outbox *ob, const char *topic, const ps_outcome *o) {
  const char *key = o->idempotency_key ? o->idempotency_key : "";
  return outbox_add_outcome_keyed(ob, topic, key, strlen(key), o);
}

int outbox_add_stored(outbox *ob, const char *topic, const char *key, const char *hex) {
  size_t len;
  uint8_t *b = hex ? hex_decode(hex, &len) : NULL;
  if (!b) return -1;
  ps_outcome *o = outcome_decode(b, len);
  outbox_add(ob, topic, key, strlen(key), b, len, NULL);
  if (o) ob->v[ob->n - 1].status = (int)o->status;
  outcome_free(o);
  return 0;
}

void outbox_add_dlq(outbox *ob, const char *dlq_topic, const char *stage, const stage_msg *m,
                    const char *reason) {
  rd_kafka_headers_t *h = rd_kafka_headers_new(8);
  char part[16], off[24];
  snprintf(part, sizeof part, "%d", m->partition);
  snprintf(off, sizeof off, "%lld", (long long)m->offset);
  rd_kafka_header_add(h, "dlq.reason", -1, reason, -1);
  rd_kafka_header_add(h, "dlq.stage", -1, stage, -1);
  rd_kafka_header_add(h, "dlq.source.topic", -1, m->topic, -1);
  rd_kafka_header_add(h, "dlq.source.partition", -1, part, -1);
  rd_kafka_header_add(h, "dlq.source.offset", -1, off, -1);
  /* A message larger than our producer may send (the broker accepted it
   * from a producer with a higher limit) is kept as a prefix with the
   * whole's size and hash: re-sending it whole would fail every time, and
   * the batch with it (a crash loop). The source coordinates find the
   * original while the topic retains it. */
  size_t len = m->rawlen;
  if (len > OUTBOX_DLQ_MAX_PAYLOAD) {
    char size[24], sha[65];
    snprintf(size, sizeof size, "%zu", m->rawlen);
    hash_sha256_hex(m->raw, m->rawlen, sha);
    rd_kafka_header_add(h, "dlq.payload.truncated", -1, "true", -1);
    rd_kafka_header_add(h, "dlq.payload.size", -1, size, -1);
    rd_kafka_header_add(h, "dlq.payload.sha256", -1, sha, -1);
    len = OUTBOX_DLQ_MAX_PAYLOAD;
  }
  uint8_t *val = malloc(len ? len : 1);
  if (!val) abort();
  if (len) memcpy(val, m->raw, len);
  /* The key too: a key is never legitimately this large. */
  size_t keylen = m->keylen > OUTBOX_DLQ_MAX_KEY ? OUTBOX_DLQ_MAX_KEY : m->keylen;
  outbox_add(ob, dlq_topic, m->key, keylen, val, len, h);
}

void outbox_truncate(outbox *ob, size_t n) {
  for (size_t i = n; i < ob->n; i++) {
    free(ob->v[i].key);
    free(ob->v[i].val);
    if (ob->v[i].hdrs) rd_kafka_headers_destroy(ob->v[i].hdrs);
  }
  if (n < ob->n) ob->n = n;
}

void outbox_reset(outbox *ob) { outbox_truncate(ob, 0); }

void outbox_free(outbox *ob) {
  outbox_reset(ob);
  free(ob->v);
  ob->v = NULL;
  ob->cap = 0;
}

/* Counts what a delivered batch produced: messages per topic, outcomes per
 * status, dead letters — summed over the batch first, so the registry is
 * touched once per topic and status, not once per message. Topics are few,
 * so a short scan beats a map. */
#define MAX_STATUS 16

void outbox_count_delivered(const outbox *ob, const char *dlq_topic, metric *dlq_counter) {
  const char *topics[8];
  double counts[8], status[MAX_STATUS] = {0}, dlq = 0;
  int nt = 0;
  for (size_t i = 0; i < ob->n; i++) {
    const outbox_msg *m = &ob->v[i];
    int t = 0;
    while (t < nt && topics[t] != m->topic) t++;
    if (t == nt && nt < 8) {
      topics[nt] = m->topic;
      counts[nt++] = 0;
    }
    if (t < nt) counts[t]++;
    if (strcmp(m->topic, dlq_topic) == 0) dlq++;
    if (m->status >= 0 && m->status < MAX_STATUS) status[m->status]++;
  }
  for (int t = 0; t < nt; t++)
    metric_add(metrics_counter("paystream_messages_produced_total",
                               "Messages produced and acknowledged by Kafka", "topic", topics[t],
                               NULL),
               counts[t]);
  for (int st = 0; st < MAX_STATUS; st++)
    if (status[st])
      metric_add(metrics_counter("paystream_outcomes_total", "Outcomes published, by status",
                                 "status", outcome_status_name((Payments__V1__OutcomeStatus)st),
                                 NULL),
                 status[st]);
  if (dlq) metric_add(dlq_counter, dlq);
}
