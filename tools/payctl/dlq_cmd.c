/* payctl dlq list | show | redrive: list the dead letters, inspect one, and
 * re-publish dead letters to the topic they came from once the cause is
 * fixed. Redrive consumes payments.dlq as its own consumer group
 * (PAYSTREAM_DLQ_REDRIVE_GROUP, default paystream-dlq-redrive), so each dead
 * letter is redriven once; redriving is safe to repeat anyway, because every
 * stage is idempotent. */
#include <stdio.h>
#include <stdlib.h>
#include <stdbool.h>
#include <string.h>

#include "clock.h"
#include "commands.h"
#include "event.h"
#include "kafka.h"
#include "kafka_util.h"
#include "opt.h"

static const char *header(rd_kafka_message_t *m, const char *name, char *buf, size_t len) {
  rd_kafka_headers_t *h = NULL;
  const void *val;
  size_t size;
  if (rd_kafka_message_headers(m, &h) || rd_kafka_header_get_last(h, name, &val, &size)) return NULL;
  snprintf(buf, len, "%.*s", (int)size, (const char *)val);
  return buf;
}

static int show(payctl *p, int32_t partition, int64_t offset) {
  rd_kafka_t *rk = kutil_consumer(&p->cfg, "payctl-dlq-show", false);
  if (!rk) return PAYCTL_UNAVAILABLE;
  rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
  rd_kafka_topic_partition_list_add(l, p->cfg.topics.dlq, partition)->offset = offset;
  rd_kafka_assign(rk, l);
  rd_kafka_topic_partition_list_destroy(l);
  int rc = PAYCTL_NOT_FOUND;
  int64_t deadline = ps_mono_ms() + 10000;
  while (ps_mono_ms() < deadline) {
    rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 500);
    if (!m) continue;
    if (m->err || m->offset != offset) {
      rd_kafka_message_destroy(m);
      continue;
    }
    char b[512];
    printf("dlq %s[%d]@%lld key %.*s, %zu bytes\n", p->cfg.topics.dlq, partition,
           (long long)offset, (int)m->key_len, m->key ? (const char *)m->key : "", m->len);
    const char *names[] = {"dlq.reason", "dlq.stage", "dlq.source.topic", "dlq.source.partition",
                           "dlq.source.offset"};
    for (size_t i = 0; i < 5; i++)
      printf("%-22s %s\n", names[i], header(m, names[i], b, sizeof b) ? b : "-");
    char reason[128];
    ps_event *ev = event_decode(m->payload, m->len, reason, sizeof reason);
    if (ev) printf("decodes as a PaymentEvent: key %s, payment %s\n", ev->intent->idempotency_key,
                   *ev->payment_id ? ev->payment_id : "(none yet)");
    else printf("does not decode: %s\n", reason);
    event_free(ev);
    size_t n = m->len < 128 ? m->len : 128;
    char hex[257];
    hex_encode(m->payload, n, hex);
    printf("first %zu bytes: %s\n", n, hex);
    rd_kafka_message_destroy(m);
    rc = PAYCTL_OK;
    break;
  }
  if (rc) fprintf(stderr, "payctl: no message at %s[%d]@%lld\n", p->cfg.topics.dlq, partition,
                  (long long)offset);
  rd_kafka_consumer_close(rk);
  rd_kafka_destroy(rk);
  return rc;
}

static int redrive_failures;
static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque) {
  (void)rk;
  (void)opaque;
  if (m->err) redrive_failures++;
}

/* Re-publishes every dead letter not yet redriven to its source topic, then
 * commits the redrive group's offsets. */
static int redrive(payctl *p, bool dry_run) {
  const char *group = cfg_env_str("PAYSTREAM_DLQ_REDRIVE_GROUP", "paystream-dlq-redrive");
  const char *dlq = p->cfg.topics.dlq;
  rd_kafka_t *rk = kutil_consumer(&p->cfg, group, false);
  if (!rk) return PAYCTL_UNAVAILABLE;
  char err[512];
  /* The workers' producer (lib/kafka.c): idempotent, acks=all, one request
   * in flight — a dead letter counted re-published must be on its topic
   * before the redrive group's offset moves past it. */
  redrive_failures = 0;
  rd_kafka_t *prod = kafka_producer_new(&p->cfg, on_delivery, err, sizeof err);
  rd_kafka_topic_partition_list_t *mine = prod ? kutil_join_group(rk, dlq, 60) : NULL;
  if (!prod || !mine) {
    fprintf(stderr, "payctl: could not %s\n", prod ? "join the redrive group" : "create a producer");
    if (prod) rd_kafka_destroy(prod);
    rd_kafka_destroy(rk);
    return PAYCTL_UNAVAILABLE;
  }
  /* Read up to the end as it is now; committed positions say where to start. */
  long remaining = 0, sent = 0;
  rd_kafka_committed(rk, mine, 10000);
  int64_t *end = calloc((size_t)mine->cnt, sizeof *end);
  for (int i = 0; i < mine->cnt; i++) {
    int64_t lo, hi;
    rd_kafka_query_watermark_offsets(rk, dlq, mine->elems[i].partition, &lo, &hi, 10000);
    int64_t from = mine->elems[i].offset < 0 ? lo : mine->elems[i].offset;
    mine->elems[i].offset = from; /* never redriven: from the oldest kept */
    end[i] = hi;
    remaining += hi - from;
  }
  rd_kafka_assign(rk, mine); /* resume from the committed offsets */
  int64_t deadline = ps_mono_ms() + 60000;
  while (remaining > 0 && ps_mono_ms() < deadline) {
    rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 500);
    if (!m) continue;
    int idx = -1;
    for (int i = 0; i < mine->cnt; i++)
      if (mine->elems[i].partition == m->partition) idx = i;
    if (!m->err && idx >= 0 && m->offset < end[idx]) {
      char topic[256], reason[256];
      remaining--;
      if (!header(m, "dlq.source.topic", topic, sizeof topic)) snprintf(topic, sizeof topic, "?");
      header(m, "dlq.reason", reason, sizeof reason);
      printf("%s %s[%d]@%lld -> %s (%s)\n", dry_run ? "would redrive" : "redrive", dlq,
             m->partition, (long long)m->offset, topic, reason);
      if (!dry_run && strcmp(topic, "?") != 0) {
        rd_kafka_producev(prod, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_KEY(m->key, m->key_len),
                          RD_KAFKA_V_VALUE(m->payload, m->len),
                          RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END);
      }
      sent++;
      mine->elems[idx].offset = m->offset + 1;
    }
    rd_kafka_message_destroy(m);
  }
  while (rd_kafka_outq_len(prod) > 0) rd_kafka_flush(prod, 1000);
  int rc = remaining > 0 ? PAYCTL_FAILED : redrive_failures ? PAYCTL_UNAVAILABLE : PAYCTL_OK;
  if (!dry_run && rc == PAYCTL_OK) {
    /* Only after every re-published message is acknowledged. */
    rd_kafka_topic_partition_list_t *commit = rd_kafka_topic_partition_list_new(mine->cnt);
    for (int i = 0; i < mine->cnt; i++)
      if (mine->elems[i].offset >= 0)
        rd_kafka_topic_partition_list_add(commit, dlq, mine->elems[i].partition)->offset =
            mine->elems[i].offset;
    if (commit->cnt && rd_kafka_commit(rk, commit, 0)) rc = PAYCTL_UNAVAILABLE;
    rd_kafka_topic_partition_list_destroy(commit);
  }
  printf("%s %ld dead letters%s\n", dry_run ? "would redrive" : "redrove", sent,
         rc ? " (incomplete: run again)" : "");
  free(end);
  rd_kafka_topic_partition_list_destroy(mine);
  rd_kafka_consumer_close(rk);
  rd_kafka_destroy(rk);
  rd_kafka_destroy(prod);
  return rc;
}

static const char DLQ_USAGE[] =
    "usage: payctl dlq list | show <partition> <offset> | redrive [--dry-run]";

int cmd_dlq(payctl *p, int argc, char **argv) {
  static const struct option longopts[] = {{"dry-run", no_argument, NULL, 'n'}, {0, 0, 0, 0}};
  bool dry_run = false;
  opt_begin();
  for (int c; (c = opt_next(argc, argv, longopts)) != -1;) {
    if (c != 'n') return opt_usage("dlq", DLQ_USAGE);
    dry_run = true;
  }
  const char *verb = optind < argc ? argv[optind] : "";
  int n = argc - optind; /* the verb and its arguments */
  if (n == 1 && strcmp(verb, "redrive") == 0) return redrive(p, dry_run);
  if (dry_run) return opt_usage("dlq", DLQ_USAGE);
  if (n == 1 && strcmp(verb, "list") == 0) return topic_dump(p, p->cfg.topics.dlq, true);
  if (n == 3 && strcmp(verb, "show") == 0) {
    long long partition, offset;
    if (opt_long("<partition>", argv[optind + 1], 0, INT32_MAX, &partition) ||
        opt_long("<offset>", argv[optind + 2], 0, INT64_MAX, &offset))
      return opt_usage("dlq", DLQ_USAGE);
    return show(p, (int32_t)partition, offset);
  }
  return opt_usage("dlq", DLQ_USAGE);
}
