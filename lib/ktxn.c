/* ktxn: exactly-once mode (PAYSTREAM_EXACTLY_ONCE=1). A commit is one Kafka
 * transaction holding the outputs and the input offsets they answer
 * (send_offsets_to_transaction with the consumer's group metadata, so a
 * zombie from an older group generation is fenced too); consumers read
 * read_committed. librdkafka's examples/transactions.c is the model:
 *   - retriable errors retry the same call;
 *   - abortable ones abort the transaction: nothing of it is visible, and
 *     the caller rewinds the consumer to the committed offsets and drops
 *     what it holds — the input comes again and Postgres re-derives the same
 *     outputs;
 *   - fatal ones (fenced: a newer instance with the same transactional.id
 *     started) end the worker with a non-zero exit for the supervisor. */
#include "clock.h"
#include "kafka.h"
#include "kloop_impl.h"
#include "log.h"

int ktxn_init(kloop *kl) {
  for (int attempt = 1;; attempt++) {
    rd_kafka_error_t *e = rd_kafka_init_transactions(kl->producer, 30000);
    if (!e) break;
    bool retry = rd_kafka_error_is_retriable(e) && attempt < 10 && !kloop_stop_now;
    log_at(retry ? LOG_WARN : LOG_ERROR, NULL, "%sexactly-once: init_transactions(%s): %s",
           retry ? "" : "FATAL ", kl->cfg.transactional_id, rd_kafka_error_string(e));
    rd_kafka_error_destroy(e);
    if (!retry) {
      kl->fatal = true;
      return -1;
    }
  }
  log_info("exactly-once: transactional.id %s, consumer read_committed",
           kl->cfg.transactional_id);
  return 0;
}

/* Classifies e (consumed): 0 retry the call, 1 abort, -1 fatal. */
static int classify(kloop *kl, const char *what, rd_kafka_error_t *e) {
  int rc;
  if (rd_kafka_error_is_fatal(e)) rc = -1;
  else if (rd_kafka_error_txn_requires_abort(e)) rc = 1;
  else if (rd_kafka_error_is_retriable(e) && !kloop_stop_now) rc = 0;
  else rc = 1;
  if (rc < 0) {
    kl->fatal = true;
    log_error("FATAL exactly-once: %s: %s (transactional.id %s; fenced means another instance "
              "now uses it): exiting for a restart",
              what, rd_kafka_error_string(e), kl->cfg.transactional_id);
  } else {
    log_warn("exactly-once: %s: %s%s", what, rd_kafka_error_string(e),
             rc ? ": aborting the transaction" : ": retrying");
  }
  if (rc == 0) { /* waiting on Kafka: alive, but not ready */
    metrics_heartbeat();
    metrics_set_check("kafka", false, true, "transaction retrying");
    kl->kafka_waiting = true;
  }
  rd_kafka_error_destroy(e);
  return rc;
}

/* Aborts the open transaction. Returns 1, or -1 if even that failed. */
static int abort_txn(kloop *kl) {
  metric_add(kl->m.txn_aborts, 1);
  for (;;) {
    rd_kafka_error_t *e = rd_kafka_abort_transaction(kl->producer, 30000);
    if (!e) return 1;
    int rc = classify(kl, "abort_transaction", e);
    if (rc < 0) return -1;
    if (rc == 1) { /* an abort that cannot abort: start afresh */
      kl->fatal = true;
      log_error("FATAL exactly-once: the transaction could not be aborted: exiting");
      return -1;
    }
  }
}

/* Runs call until it succeeds, retrying what is retriable. 0, 1 or -1. */
#define TXN_CALL(kl, what, expr)                     \
  for (;;) {                                         \
    rd_kafka_error_t *e_ = (expr);                   \
    if (!e_) break;                                  \
    int rc_ = classify((kl), (what), e_);            \
    if (rc_ > 0) return abort_txn(kl);               \
    if (rc_ < 0) return -1;                          \
  }

static int txn(kloop *kl, outbox *ob, rd_kafka_topic_partition_list_t *offs) {
  rd_kafka_error_t *e = rd_kafka_begin_transaction(kl->producer);
  if (e) {
    /* Only a fatal error or a misuse ends up here: both end the worker. */
    classify(kl, "begin_transaction", e);
    kl->fatal = true;
    return -1;
  }
  if (kloop_enqueue(kl, ob)) return abort_txn(kl);
  if (offs && offs->cnt) {
    rd_kafka_consumer_group_metadata_t *gm = rd_kafka_consumer_group_metadata(kl->consumer);
    rd_kafka_error_t *se = NULL;
    for (;;) {
      se = rd_kafka_send_offsets_to_transaction(kl->producer, offs, gm, 10000);
      if (!se) break;
      int rc = classify(kl, "send_offsets_to_transaction", se);
      if (rc) {
        rd_kafka_consumer_group_metadata_destroy(gm);
        return rc > 0 ? abort_txn(kl) : -1;
      }
    }
    rd_kafka_consumer_group_metadata_destroy(gm);
  }
  TXN_CALL(kl, "commit_transaction", rd_kafka_commit_transaction(kl->producer, 10000));
  kloop_kafka_done(kl);
  return 0;
}

int ktxn_commit(kloop *kl, outbox *ob, rd_kafka_topic_partition_list_t *offs) {
  if (kl->fatal) return -1;
  int rc = txn(kl, ob, offs);
  if (rc == 0) metric_add(kl->m.txn_commits, 1);
  return rc;
}

/* The committed offsets of a, each one stable: a partition answered with
 * an error of its own (UNSTABLE_OFFSET_COMMIT: another instance's
 * transaction holding an offset is still open) is asked again, for up to
 * 30 s, rather than taken for "never committed" (which would seek it to the
 * beginning and produce everything again). */
static rd_kafka_resp_err_t committed_stable(kloop *kl, rd_kafka_topic_partition_list_t *a) {
  int64_t deadline = ps_mono_ms() + 30000;
  for (;;) {
    rd_kafka_resp_err_t err = kafka_committed(kl->consumer, a, 10000);
    for (int i = 0; !err && i < a->cnt; i++) err = a->elems[i].err;
    if (!err || ps_mono_ms() >= deadline || kloop_stop_now) return err;
    metrics_heartbeat();
    kloop_sleep_ms(200);
  }
}

int ktxn_rewind(kloop *kl) {
  rd_kafka_topic_partition_list_t *a = NULL;
  if (rd_kafka_assignment(kl->consumer, &a) || !a) {
    kl->fatal = true;
    return -1;
  }
  int rc = 0;
  if (a->cnt) {
    rd_kafka_resp_err_t err = committed_stable(kl, a);
    if (!err) {
      for (int i = 0; i < a->cnt; i++)
        if (a->elems[i].offset == RD_KAFKA_OFFSET_INVALID)
          a->elems[i].offset = RD_KAFKA_OFFSET_BEGINNING;
      rd_kafka_error_t *e = rd_kafka_seek_partitions(kl->consumer, a, 10000);
      if (e) {
        log_error("FATAL exactly-once: rewind: %s", rd_kafka_error_string(e));
        rd_kafka_error_destroy(e);
        rc = -1;
      }
    } else {
      log_error("FATAL exactly-once: rewind: committed offsets: %s", rd_kafka_err2str(err));
      rc = -1;
    }
  }
  int n = a->cnt;
  rd_kafka_topic_partition_list_destroy(a);
  if (rc) kl->fatal = true;
  else log_info("exactly-once: rewound %d partitions to their committed offsets", n);
  return rc;
}
