/* kcommit: at-least-once offset commits that never block the loop.
 *
 * A synchronous commit waits for the group coordinator without bound: during
 * a broker outage a worker sat in one past the heartbeat timeout, failed
 * /healthz and was restarted for nothing. Instead each commit is sent with
 * rd_kafka_commit_queue to the loop's own queue and its answer read on a
 * later turn of the loop (kloop_commit_results), so the loop and its
 * heartbeat go on; /readyz still says Kafka is not ok once the commit in
 * flight has waited 2 s (metrics_kafka_call).
 *
 * The loop waits for a commit's answer up to WAIT_MS (the normal case:
 * milliseconds, so the committed offset is where a synchronous commit left
 * it), and not at all while an earlier one is still unanswered.
 *
 * At most one commit is in flight, so commits reach the broker in order.
 * What the loop commits meanwhile is merged (the highest offset per
 * partition) and sent when the answer comes. A commit that fails is merged
 * back and sent again after RETRY_MS, unless a later one already carries a
 * higher offset for its partition. Every offset sent is one whose messages'
 * outputs are all acknowledged, so a commit applied late, or never, only
 * means re-delivery, which at-least-once allows. Before partitions are
 * revoked and at exit the loop waits for the answer, bounded
 * (kloop_commit_wait), then forgets what is left: the next owner re-reads it.
 *
 * An answer that never comes must not stop every later commit (and hold
 * /readyz false for good): a commit unanswered for SENT_TIMEOUT_MS is
 * abandoned and its offsets sent again, and one in flight at a revoke is
 * abandoned with the rest. Each commit carries a sequence number as its
 * opaque, so a late answer to an abandoned one is recognised and ignored. */
#include "clock.h"
#include "kloop_impl.h"
#include "log.h"

#define RETRY_MS 500
#define WAIT_MS 1000
#define SENT_TIMEOUT_MS 10000

/* into[p] = max(into[p], from[p]) for every partition of from. */
static void merge(rd_kafka_topic_partition_list_t **into,
                  const rd_kafka_topic_partition_list_t *from, bool failed_only) {
  for (int i = 0; i < from->cnt; i++) {
    const rd_kafka_topic_partition_t *e = &from->elems[i];
    if (e->offset < 0 || (failed_only && !e->err)) continue;
    if (!*into) *into = rd_kafka_topic_partition_list_new(from->cnt);
    rd_kafka_topic_partition_t *p =
        rd_kafka_topic_partition_list_find(*into, e->topic, e->partition);
    if (!p) p = rd_kafka_topic_partition_list_add(*into, e->topic, e->partition);
    else if (p->offset >= e->offset) continue;
    p->offset = e->offset;
  }
}

static void send_next(kloop *kl) {
  if (kl->commit_sent || !kl->commit_next || ps_mono_ms() < kl->commit_retry_ms) return;
  if (!kl->commit_q) kl->commit_q = rd_kafka_queue_new(kl->consumer);
  kl->commit_seq++;
  rd_kafka_resp_err_t err = rd_kafka_commit_queue(kl->consumer, kl->commit_next, kl->commit_q,
                                                  NULL, (void *)kl->commit_seq);
  if (err) {
    log_warn("offset commit not sent (kept, sent again later): %s", rd_kafka_err2str(err));
    kl->commit_retry_ms = ps_mono_ms() + RETRY_MS;
    return;
  }
  kl->commit_sent = kl->commit_next;
  kl->commit_next = NULL;
  kl->commit_sent_ms = ps_mono_ms();
  metrics_kafka_call(true);
}

/* Stops waiting for the commit in flight; with resend, its offsets go again. */
static void abandon_sent(kloop *kl, bool resend) {
  if (!kl->commit_sent) return;
  if (resend) merge(&kl->commit_next, kl->commit_sent, false);
  rd_kafka_topic_partition_list_destroy(kl->commit_sent);
  kl->commit_sent = NULL;
  kl->commit_seq++; /* its answer, if it ever comes, is stale */
  metrics_kafka_call(false);
}

void kloop_commit(kloop *kl, const rd_kafka_topic_partition_list_t *offs) {
  bool stuck = kl->commit_sent != NULL; /* the previous one is still unanswered */
  merge(&kl->commit_next, offs, false);
  kloop_commit_results(kl, 0);
  /* Normally the answer comes in milliseconds: wait for it (bounded), so
   * the committed offset is where it was with a synchronous commit and a
   * crash re-delivers no more than before. Not while one is stuck. */
  if (!stuck) kloop_commit_wait(kl, WAIT_MS);
}

bool kloop_commit_results(kloop *kl, int timeout_ms) {
  if (kl->commit_sent) {
    rd_kafka_event_t *ev = rd_kafka_queue_poll(kl->commit_q, timeout_ms);
    if (ev && rd_kafka_event_type(ev) == RD_KAFKA_EVENT_OFFSET_COMMIT &&
        (uintptr_t)rd_kafka_event_opaque(ev) == kl->commit_seq) {
      rd_kafka_resp_err_t err = rd_kafka_event_error(ev);
      const rd_kafka_topic_partition_list_t *done = rd_kafka_event_topic_partition_list(ev);
      bool failed = err != RD_KAFKA_RESP_ERR_NO_ERROR;
      if (!failed && done)
        for (int i = 0; i < done->cnt; i++) failed |= done->elems[i].err != 0;
      if (failed) {
        log_warn("offset commit failed (sent again; meanwhile a crash re-delivers, harmlessly): %s",
                 rd_kafka_err2str(err ? err : RD_KAFKA_RESP_ERR__FAIL));
        /* A whole-request error may come without the list: resend all. */
        merge(&kl->commit_next, err || !done ? kl->commit_sent : done, !err && done);
        kl->commit_retry_ms = ps_mono_ms() + RETRY_MS;
      }
      rd_kafka_topic_partition_list_destroy(kl->commit_sent);
      kl->commit_sent = NULL;
      metrics_kafka_call(false);
    }
    if (ev) rd_kafka_event_destroy(ev);
    if (kl->commit_sent && ps_mono_ms() - kl->commit_sent_ms >= SENT_TIMEOUT_MS) {
      log_warn("offset commit unanswered for %d s: sent again", SENT_TIMEOUT_MS / 1000);
      abandon_sent(kl, true);
    }
  } else if (kl->commit_q) {
    /* Late answers to abandoned commits: drained, ignored. */
    rd_kafka_event_t *ev;
    while ((ev = rd_kafka_queue_poll(kl->commit_q, 0))) rd_kafka_event_destroy(ev);
  }
  send_next(kl);
  return !kl->commit_sent && !kl->commit_next;
}

bool kloop_commit_wait(kloop *kl, int timeout_ms) {
  int64_t deadline = ps_mono_ms() + timeout_ms;
  bool done;
  while (!(done = kloop_commit_results(kl, 100)) && ps_mono_ms() < deadline) {
    metrics_heartbeat();
    if (!kl->commit_sent) kloop_sleep_ms(50); /* a failed one waits RETRY_MS */
  }
  return done;
}

void kloop_commit_forget(kloop *kl) {
  abandon_sent(kl, false);
  if (kl->commit_next) {
    log_warn("%d partitions' offsets not committed (re-delivered to their next owner)",
             kl->commit_next->cnt);
    rd_kafka_topic_partition_list_destroy(kl->commit_next);
    kl->commit_next = NULL;
  }
  kl->commit_retry_ms = 0;
}

void kloop_commit_close(kloop *kl) {
  kloop_commit_forget(kl);
  if (kl->commit_sent) {
    rd_kafka_topic_partition_list_destroy(kl->commit_sent);
    kl->commit_sent = NULL;
    metrics_kafka_call(false);
  }
  if (kl->commit_q) rd_kafka_queue_destroy(kl->commit_q);
  kl->commit_q = NULL;
}
