/* outbox: the outputs of one batch, held until the batch's work is done and
 * then produced in order. Every stage appends to it; kloop produces it,
 * waits for every acknowledgement and only then commits the input offsets,
 * so an output is never lost and a crash re-creates it (at-least-once).
 *
 * Failure policy (the same in every stage): an outbox_add_* that returns -1
 * (out of memory while packing, or a stored outcome that is not hex) is a
 * failure of the whole attempt, never a silent drop: the stage returns -1
 * from process, kloop discards what the attempt appended (outbox_truncate)
 * and retries the batch with back-off, exactly as for Postgres being down. */
#ifndef PS_OUTBOX_H
#define PS_OUTBOX_H

#include <librdkafka/rdkafka.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "event.h"
#include "metrics.h"

/* One input message as a stage sees it. ev and the source fields are owned
 * by kloop and valid for the duration of the process call; a dead letter
 * carries raw and the source coordinates. */
typedef struct stage_msg {
  ps_event *ev;
  const char *topic;
  int32_t partition;
  int64_t offset;
  const void *raw; /* the undecoded value, for the DLQ */
  size_t rawlen;
  const void *key;
  size_t keylen;
} stage_msg;

/* One output. */
typedef struct outbox_msg {
  const char *topic; /* points into cfg */
  char *key;
  size_t keylen;
  uint8_t *val;
  size_t vallen;
  rd_kafka_headers_t *hdrs;
  int status; /* an outcome's status (for metrics), or -1 */
  /* The input message it answers, or -1/-1 (outbox_tag). In exactly-once
   * mode a continuous stage's output waits until its input is below the
   * offsets committed with it, so a committed output never comes again. */
  int32_t src_partition;
  int64_t src_offset;
} outbox_msg;

typedef struct outbox {
  outbox_msg *v;
  size_t n, cap;
} outbox;

/* Takes ownership of val and hdrs; copies key. Aborts on out of memory. */
void outbox_add(outbox *ob, const char *topic, const void *key, size_t keylen, uint8_t *val,
                size_t vallen, rd_kafka_headers_t *hdrs);
/* Packs ev with key = its idempotency key. Returns 0 or -1 (out of memory). */
int outbox_add_event(outbox *ob, const char *topic, const ps_event *ev);
/* Packs an outcome with key = its idempotency key. Returns 0 or -1. */
int outbox_add_outcome(outbox *ob, const char *topic, const ps_outcome *o);
/* The same under another key (a rejection keeps the raw, invalid key so it
 * lands on the request's partition). */
int outbox_add_outcome_keyed(outbox *ob, const char *topic, const void *key, size_t keylen,
                             const ps_outcome *o);
/* Re-sends a stored, hex-encoded outcome verbatim (outcomes re-emitted after
 * a crash or replay are byte-identical). Returns 0, or -1 if hex is NULL or
 * corrupt. */
int outbox_add_stored(outbox *ob, const char *topic, const char *key, const char *hex);
/* Dead-letters m's raw bytes with headers naming the reason and source
 * (dlq.reason, dlq.stage, dlq.source.topic|partition|offset). A value over
 * OUTBOX_DLQ_MAX_PAYLOAD bytes is cut to that prefix, with
 * dlq.payload.truncated=true, dlq.payload.size and dlq.payload.sha256 of
 * the whole (our producer could not re-send it: message.max.bytes is 1 MB);
 * a key over OUTBOX_DLQ_MAX_KEY bytes is cut too. */
#define OUTBOX_DLQ_MAX_PAYLOAD (512 * 1024)
#define OUTBOX_DLQ_MAX_KEY 4096
void outbox_add_dlq(outbox *ob, const char *dlq_topic, const char *stage, const stage_msg *m,
                    const char *reason);

/* Counts what a delivered outbox produced: paystream_messages_produced_total
 * per topic, paystream_outcomes_total per status, and dead letters on
 * dlq_counter. Called once every output is acknowledged. */
void outbox_count_delivered(const outbox *ob, const char *dlq_topic, metric *dlq_counter);

/* Marks the outputs from index from on as answers to input message
 * (partition, offset). */
void outbox_tag(outbox *ob, size_t from, int32_t partition, int64_t offset);

/* Moves to dst (appended, in order) the outputs for which stays() is
 * false; the others stay in ob, in order. */
void outbox_split(outbox *ob, outbox *dst, bool (*stays)(const outbox_msg *m, void *arg),
                  void *arg);

/* Drops the outputs from index n on (what a failed attempt appended). */
void outbox_truncate(outbox *ob, size_t n);
/* Drops every output, keeping the storage. */
void outbox_reset(outbox *ob);
/* Drops every output and frees the storage. */
void outbox_free(outbox *ob);

#endif
