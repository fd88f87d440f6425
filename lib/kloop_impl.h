/* kloop_impl: the worker loop's state, shared by the files that make up the
 * stage runtime (not a public API: stages see kloop.h only).
 *   kloop.c       init, the cycle, produce, exit
 *   kconsume.c    polling, batching, decoding, offsets of a batch
 *   kcontinuous.c continuous stages: floors, back-pressure, rebalance, drain
 *   ktxn.c        exactly-once: one Kafka transaction per commit
 *   kcommit.c     at-least-once: offset commits that never block the loop
 *   health.c      readiness probes and the loop's heartbeat */
#ifndef PS_KLOOP_IMPL_H
#define PS_KLOOP_IMPL_H

#include <signal.h>

#include "kloop.h"
#include "metrics.h"

extern volatile sig_atomic_t kloop_stop_requested; /* finish the batch, commit, leave */
extern volatile sig_atomic_t kloop_stop_now;       /* second signal: leave at once */

/* Per input partition, for continuous stages. */
typedef struct part_track {
  int64_t high;      /* highest offset consumed and handled, or -1 */
  int64_t committed; /* what we last committed, or -1 */
  bool alert_paused; /* paused by an out-of-range alert: stays paused */
} part_track;

typedef struct kloop {
  const stage_def *def;
  cfg cfg;
  stage_ctx ctx;
  rd_kafka_t *consumer;
  rd_kafka_t *producer;
  const char *input_topic;
  rd_kafka_message_t **batch; /* raw messages, owned until committed */
  stage_msg *msgs;            /* decoded subset passed to process */
  size_t nbatch;
  outbox out;
  outbox held;                /* exactly-once, continuous: outputs whose input is
                                 not yet below the committable floor */
  int delivery_failures;      /* counted by the delivery report callback */
  char delivery_error[256];
  uint64_t processed, batches;
  int64_t next_health_ms;
  part_track *parts; /* indexed by partition */
  int32_t nparts;
  bool flow_paused;  /* partitions paused because the stage is full */
  bool outputs_lost; /* a produce failed: nothing may be committed again (not
                        even by the revoke on close), the next owner redoes it */
  bool fatal;        /* exactly-once: fenced or otherwise fatal: exit non-zero */
  bool kafka_waiting; /* readiness says Kafka is not acknowledging */
  bool schema_warned;
  int64_t next_commit_ms;
  /* At-least-once offset commits (kcommit.c): the one in flight, what
   * waits to be sent after it, their answers' queue, a failed one's pause. */
  rd_kafka_topic_partition_list_t *commit_sent, *commit_next;
  rd_kafka_queue_t *commit_q;
  int64_t commit_retry_ms;
  int64_t commit_sent_ms; /* when commit_sent left */
  uintptr_t commit_seq;   /* tags each commit: a late answer to an abandoned one is ignored */
  rd_kafka_topic_t *outputs[8]; /* topics the producer knows from the start */
  int noutputs;
  struct {
    metric *consumed, *batch_size, *batch_seconds, *retries, *out_of_range, *dlq;
    metric *txn_commits, *txn_aborts;
  } m;
} kloop;

/* kloop.c */
/* Queues every output of ob (no wait). Returns 0, or -1 if one was refused. */
int kloop_enqueue(kloop *kl, outbox *ob);
/* Queues ob and waits until Kafka acknowledged all of it (at-least-once).
 * Returns 0, or -1 (kl->outputs_lost: nothing may be committed again). */
int kloop_produce(kloop *kl, outbox *ob);
int kloop_run_batch(kloop *kl);
void kloop_sleep_ms(int ms);

/* kconsume.c */
part_track *kloop_track(kloop *kl, int32_t p);
void kloop_collect(kloop *kl, size_t limit, bool block);
size_t kloop_decode(kloop *kl, outbox *dlq);
void kloop_free_decoded(kloop *kl, size_t n);
rd_kafka_topic_partition_list_t *kloop_batch_offsets(kloop *kl);
void kloop_commit_batch(kloop *kl);
void kloop_release_batch(kloop *kl);
extern kloop *kloop_running; /* for kloop_msg_timestamp */

/* kcontinuous.c */
void kloop_note_handled(kloop *kl);
void kloop_commit_floors(kloop *kl, bool force);
void kloop_on_rebalance(void *opaque, bool assigned, const rd_kafka_topic_partition_list_t *parts);
int kloop_cycle_continuous(kloop *kl);
void kloop_drain_continuous(kloop *kl);
/* Exactly-once, after an abort: drops everything kept and held (it all
 * comes again from the committed offsets). */
void kloop_abandon(kloop *kl);

/* kcommit.c: at-least-once offset commits, never waited for in the loop. */
/* Sends offs (merged with what waits) or keeps it for when the commit in
 * flight is answered. */
void kloop_commit(kloop *kl, const rd_kafka_topic_partition_list_t *offs);
/* Reads the answer to the commit in flight (waiting up to timeout_ms; a
 * failure is kept to be sent again) and sends what waits. Returns true
 * when nothing is in flight or waiting. */
bool kloop_commit_results(kloop *kl, int timeout_ms);
/* Until everything is answered or timeout_ms passed (stamping the
 * heartbeat). Returns true when everything was answered. */
bool kloop_commit_wait(kloop *kl, int timeout_ms);
/* Drops what waits to be sent (the partitions are going). */
void kloop_commit_forget(kloop *kl);
/* Before the consumer is destroyed. */
void kloop_commit_close(kloop *kl);

/* ktxn.c: exactly-once (cfg.exactly_once). */
/* Registers the transactional.id with the coordinator (fencing any earlier
 * instance with the same id). Returns 0, or -1 (fatal: exit). */
int ktxn_init(kloop *kl);
/* Produces ob and commits it together with offs (may be NULL or empty) in
 * one transaction. Returns 0 when committed; 1 when the transaction was
 * aborted (the caller drops what it holds and calls ktxn_rewind: it all
 * comes again); -1 on a fatal error (kl->fatal). */
int ktxn_commit(kloop *kl, outbox *ob, rd_kafka_topic_partition_list_t *offs);
/* Seeks every assigned partition back to its committed offset (after an
 * abort). Returns 0, or -1 (fatal). */
int ktxn_rewind(kloop *kl);

/* health.c */
void kloop_metrics_init(kloop *kl);
/* Once a second at most: Postgres, schema, Redis; stamps the heartbeat. */
void kloop_health_tick(kloop *kl);
/* A wait on Kafka (flush, transaction) going on since since_ms: stamps the
 * heartbeat; past 2 s readiness says "kafka not ok: WHAT for N s" (the
 * consumer's statistics are not served while the loop waits). */
void kloop_kafka_waiting(kloop *kl, int64_t since_ms, const char *what);
/* The wait ended: readiness as before it. */
void kloop_kafka_done(kloop *kl);

#endif
