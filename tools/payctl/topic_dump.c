/* payctl outcomes | dlq list: reads a whole topic (every partition, from the
 * beginning up to the high watermark at start) without joining a consumer
 * group or committing anything, and prints one JSON object per message. */
#include <inttypes.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "clock.h"
#include "commands.h"
#include "event.h"
#include "kafka_util.h"
#include "operation.h"
#include "opt.h"

static json_t *outcome_json(const rd_kafka_message_t *m) {
  ps_outcome *o = outcome_decode(m->payload, m->len);
  if (!o) return json_pack("{s:s}", "error", "undecodable outcome");
  json_t *j = json_pack("{s:s,s:s,s:s,s:s,s:s,s:s,s:b,s:s,s:s,s:I,s:i,s:I}", "payment_id",
                        o->payment_id, "merchant_id", o->merchant_id, "idempotency_key",
                        o->idempotency_key, "status", outcome_status_name(o->status),
                        "error_code", o->error_code, "error_message", o->error_message,
                        "replayed", o->replayed, "processor", o->processor,
                        "processor_charge_id", o->processor_charge_id, "published_at_ms",
                        (json_int_t)o->published_at_ms, "partition", (int)m->partition, "offset",
                        (json_int_t)m->offset);
  if (o->amount) {
    json_object_set_new(j, "amount", json_integer(o->amount->amount_minor));
    json_object_set_new(j, "currency", json_string(o->amount->currency));
  }
  if (*o->operation_id || o->kind) { /* lifecycle requests (#19) */
    json_object_set_new(j, "operation_id", json_string(o->operation_id));
    json_object_set_new(j, "kind", json_string(op_kind_name(o->kind) ? op_kind_name(o->kind) : ""));
    json_object_set_new(j, "authorized", json_integer(o->authorized_minor));
    json_object_set_new(j, "captured", json_integer(o->captured_minor));
    json_object_set_new(j, "refunded", json_integer(o->refunded_minor));
  }
  if (*o->processor_event) { /* an outcome of a processor event (#20) */
    json_object_set_new(j, "processor_event", json_string(o->processor_event));
    json_object_set_new(j, "dispute_id", json_string(o->dispute_id));
    json_object_set_new(j, "dispute_status", json_string(o->dispute_status));
    json_object_set_new(j, "dispute_amount", json_integer(o->dispute_amount_minor));
    json_object_set_new(j, "disputed", json_integer(o->disputed_minor));
  }
  rd_kafka_timestamp_type_t tt;
  json_object_set_new(j, "timestamp_ms", json_integer(rd_kafka_message_timestamp(m, &tt)));
  /* The raw bytes, so consumers can check re-sent outcomes are identical. */
  char *hex = malloc(2 * m->len + 1);
  hex_encode(m->payload, m->len, hex);
  json_object_set_new(j, "raw", json_string(hex));
  free(hex);
  outcome_free(o);
  return j;
}

static json_t *dlq_json(const rd_kafka_message_t *m) {
  json_t *j = json_pack("{s:i,s:I,s:s%}", "partition", (int)m->partition, "offset",
                        (json_int_t)m->offset, "key", m->key ? (const char *)m->key : "",
                        m->key ? m->key_len : 0);
  rd_kafka_headers_t *h = NULL;
  if (rd_kafka_message_headers(m, &h) == 0) {
    const char *name;
    const void *val;
    size_t size;
    for (size_t i = 0; rd_kafka_header_get_all(h, i, &name, &val, &size) == 0; i++)
      json_object_set_new(j, name, json_stringn(val ? val : "", val ? size : 0));
  }
  json_object_set_new(j, "bytes", json_integer((json_int_t)m->len));
  return j;
}

int cmd_outcomes(payctl *p, int argc, char **argv) {
  static const struct option none[] = {{0, 0, 0, 0}};
  opt_begin();
  if (opt_next(argc, argv, none) != -1 || optind != argc)
    return opt_usage("outcomes", "takes no arguments");
  return topic_dump(p, p->cfg.topics.outcomes, false);
}

int topic_dump(payctl *p, const char *topic, bool dlq) {
  char group[64];
  snprintf(group, sizeof group, "payctl-dump-%d", (int)getpid());
  rd_kafka_t *rk = kutil_consumer(&p->cfg, group, true);
  if (!rk) return PAYCTL_UNAVAILABLE;
  int np = kutil_partition_count(rk, topic);
  if (np < 1) {
    fprintf(stderr, np == -1 ? "payctl: no such topic %s\n" : "payctl: no metadata for topic %s\n",
            topic);
    rd_kafka_destroy(rk);
    return np == -1 ? PAYCTL_NOT_FOUND : PAYCTL_UNAVAILABLE;
  }

  /* Read each partition to its end at start: the high watermark as a
   * read_committed reader sees it (ListOffsets answers the last stable
   * offset). Offsets below it that are transaction markers or aborted
   * messages are never delivered, so a partition is done at the first of:
   * a message at high - 1 or beyond, the end-of-partition event (the reader
   * is at the partition's stable end now: nothing below high can follow),
   * or its position at or past high when nothing arrives (a marker at
   * high - 1 skipped, no event yet). */
  int64_t *high = calloc((size_t)np, sizeof *high);
  long remaining = 0; /* partitions not read to their end */
  rd_kafka_topic_partition_list_t *parts = rd_kafka_topic_partition_list_new(np);
  for (int i = 0; i < np; i++) {
    int64_t lo = 0, hi = 0;
    if (rd_kafka_query_watermark_offsets(rk, topic, i, &lo, &hi, 10000)) {
      fprintf(stderr, "payctl: could not read offsets of %s[%d]\n", topic, i);
      rd_kafka_topic_partition_list_destroy(parts);
      free(high);
      rd_kafka_destroy(rk);
      return PAYCTL_UNAVAILABLE;
    }
    /* An empty partition is done already: its end-of-partition event must
     * not count down another partition's remaining work. */
    high[i] = hi > lo ? hi : -1;
    if (hi > lo) remaining++;
    rd_kafka_topic_partition_list_add(parts, topic, i)->offset = RD_KAFKA_OFFSET_BEGINNING;
  }
  rd_kafka_assign(rk, parts);

  int64_t deadline = ps_mono_ms() + 60000;
  while (remaining > 0 && ps_mono_ms() < deadline) {
    rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 500);
    if (!m) {
      rd_kafka_position(rk, parts);
      for (int i = 0; i < np; i++)
        if (high[i] >= 0 && parts->elems[i].offset >= high[i]) {
          high[i] = -1;
          remaining--;
        }
      continue;
    }
    int32_t part = m->partition;
    bool at_end = false;
    if (!m->err && part >= 0 && part < np && high[part] >= 0) {
      if (m->offset < high[part]) {
        json_t *j = dlq ? dlq_json(m) : outcome_json(m);
        char *s = json_dumps(j, JSON_COMPACT);
        printf("%s\n", s);
        free(s);
        json_decref(j);
      }
      at_end = m->offset + 1 >= high[part];
    } else if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF && part >= 0 && part < np) {
      at_end = true;
    }
    if (at_end && high[part] >= 0) {
      high[part] = -1; /* done */
      remaining--;
    }
    rd_kafka_message_destroy(m);
  }
  if (remaining > 0) { /* where each partition stands: the next look starts there */
    rd_kafka_position(rk, parts);
    for (int i = 0; i < np; i++)
      if (high[i] >= 0)
        fprintf(stderr, "payctl: %s[%d] read to offset %" PRId64 " of %" PRId64 "\n", topic, i,
                parts->elems[i].offset, high[i]);
  }
  rd_kafka_topic_partition_list_destroy(parts);
  free(high);
  rd_kafka_consumer_close(rk);
  rd_kafka_destroy(rk);
  if (remaining > 0) {
    fprintf(stderr, "payctl: %ld partitions of %s not read to their end in time\n", remaining,
            topic);
    return PAYCTL_FAILED;
  }
  return PAYCTL_OK;
}
