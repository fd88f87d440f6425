/* topic-ids: a test tool that reads a whole topic of PaymentEvents as a
 * read_committed consumer (every partition, from the beginning up to the
 * high watermark at start, no group commit) and prints one line per
 * committed message: its payment id (exactly_once.sh counts duplicates).
 * An event without a payment id (an operation named by its payment's key)
 * prints "key:KEY"; a message that does not decode prints "undecodable
 * PARTITION:OFFSET".
 *   topic-ids TOPIC
 * Configuration (broker) comes from the PAYSTREAM_* variables. Exit 0 when
 * every partition was read to its end within 120 s, else 1. */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "clock.h"
#include "config.h"
#include "event.h"
#include "kafka.h"
#include "kafka_util.h"

int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: topic-ids TOPIC\n");
    return 2;
  }
  const char *topic = argv[1];
  cfg c;
  char err[512];
  if (cfg_load(&c, "topic-ids", err, sizeof err)) {
    fprintf(stderr, "topic-ids: %s\n", err);
    return 1;
  }
  /* payctl's reader: no group commits, librdkafka's default
   * isolation.level, read_committed (an aborted transaction's messages and
   * an open one's are never returned). */
  char group[64];
  snprintf(group, sizeof group, "topic-ids-%d", (int)getpid());
  rd_kafka_t *rk = kutil_consumer(&c, group, true);
  cfg_close(&c);
  if (!rk) return 1;
  int np = kutil_partition_count(rk, topic);
  if (np < 1) {
    fprintf(stderr, "topic-ids: no metadata for %s\n", topic);
    rd_kafka_destroy(rk);
    return 1;
  }
  /* Done with a partition at its end-of-partition event at or past the
   * high watermark (transaction markers and aborted messages take offsets
   * a read_committed reader never sees). */
  int64_t *high = calloc((size_t)np, sizeof *high);
  if (!high) abort();
  int remaining = 0;
  rd_kafka_topic_partition_list_t *parts = rd_kafka_topic_partition_list_new(np);
  for (int i = 0; i < np; i++) {
    int64_t lo = 0, hi = 0;
    if (rd_kafka_query_watermark_offsets(rk, topic, i, &lo, &hi, 10000)) {
      fprintf(stderr, "topic-ids: could not read offsets of %s[%d]\n", topic, i);
      return 1;
    }
    high[i] = hi > lo ? hi : -1;
    if (hi > lo) remaining++;
    rd_kafka_topic_partition_list_add(parts, topic, i)->offset = RD_KAFKA_OFFSET_BEGINNING;
  }
  rd_kafka_assign(rk, parts);
  rd_kafka_topic_partition_list_destroy(parts);
  int64_t deadline = ps_mono_ms() + 120000;
  while (remaining > 0 && ps_mono_ms() < deadline) {
    rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 500);
    if (!m) continue;
    int32_t p = m->partition;
    int64_t end = -1; /* the offset reached, when this message says so */
    if (!m->err && p >= 0 && p < np) {
      char why[128];
      ps_event *ev = event_decode(m->payload, m->len, why, sizeof why);
      if (ev && ev->payment_id && *ev->payment_id) printf("%s\n", ev->payment_id);
      else if (ev) printf("key:%.*s\n", (int)m->key_len, m->key ? (const char *)m->key : "");
      else printf("undecodable %d:%lld\n", (int)p, (long long)m->offset);
      if (ev) event_free(ev);
      end = m->offset + 1;
    } else if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF && p >= 0 && p < np) {
      end = m->offset;
    }
    if (end >= 0 && high[p] >= 0 && end >= high[p]) {
      high[p] = -1;
      remaining--;
    }
    rd_kafka_message_destroy(m);
  }
  free(high);
  rd_kafka_consumer_close(rk);
  rd_kafka_destroy(rk);
  fflush(stdout);
  if (remaining > 0) {
    fprintf(stderr, "topic-ids: %d partitions of %s not read to their end in time\n", remaining,
                    topic);
    return 1;
  }
  return 0;
}
