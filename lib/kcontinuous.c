/* kcontinuous: the runtime of a continuous stage (charge: requests in
 * flight across cycles). Offsets are committed per partition up to the
 * stage's floor (its lowest kept offset), back-pressure pauses the
 * partitions, a rebalance commits what is finished and drops the rest.
 *
 * Exactly-once: an item's outputs are produced when it finishes, which may
 * be before an older item of its partition. Committing them then, with the
 * floor still below their input, would send them a second time after a
 * crash (the input comes again). So every output is tagged with its input
 * (outbox_tag) and held until that input is below the offset committed in
 * the same transaction: committed outputs and committed offsets always
 * cover the same inputs. Untagged outputs (interim notices) go at once. */
#include <stdlib.h>

#include "clock.h"
#include "kloop_impl.h"
#include "log.h"

/* Records the batch's messages as consumed and handled. */
void kloop_note_handled(kloop *kl) {
  for (size_t i = 0; i < kl->nbatch; i++) {
    part_track *t = kloop_track(kl, kl->batch[i]->partition);
    if (t && kl->batch[i]->offset > t->high) t->high = kl->batch[i]->offset;
  }
}

/* Per partition, what may be committed now (the floor, or past the last
 * message handled when nothing is kept), or -1. malloc'd, kl->nparts long. */
static int64_t *committable(kloop *kl) {
  int64_t *off = malloc((size_t)(kl->nparts ? kl->nparts : 1) * sizeof *off);
  if (!off) abort();
  for (int32_t p = 0; p < kl->nparts; p++) off[p] = -1;
  kl->def->floors(&kl->ctx, off, kl->nparts);
  for (int32_t p = 0; p < kl->nparts; p++) {
    part_track *t = &kl->parts[p];
    off[p] = t->high < 0 ? -1 : off[p] >= 0 ? off[p] : t->high + 1;
  }
  return off;
}

/* The partitions whose committable offset moved past the last commit. */
static rd_kafka_topic_partition_list_t *advanced(kloop *kl, const int64_t *off) {
  rd_kafka_topic_partition_list_t *offs = rd_kafka_topic_partition_list_new(4);
  for (int32_t p = 0; p < kl->nparts; p++)
    if (off[p] >= 0 && off[p] > kl->parts[p].committed)
      rd_kafka_topic_partition_list_add(offs, kl->input_topic, p)->offset = off[p];
  return offs;
}

static void note_committed(kloop *kl, const rd_kafka_topic_partition_list_t *offs) {
  for (int i = 0; i < offs->cnt; i++)
    kloop_track(kl, offs->elems[i].partition)->committed = offs->elems[i].offset;
}

typedef struct hold_arg {
  const int64_t *off;
  int32_t n;
} hold_arg;

/* Held while its input is not below the offset committed with it. */
static bool stays_held(const outbox_msg *m, void *arg) {
  const hold_arg *h = arg;
  if (m->src_partition < 0) return false;
  if (m->src_partition >= h->n || h->off[m->src_partition] < 0) return true;
  return m->src_offset >= h->off[m->src_partition];
}

static bool moves(const outbox_msg *m, void *arg) {
  (void)m, (void)arg;
  return false;
}

static bool not_revoked(const outbox_msg *m, void *arg) {
  return m->src_partition != *(const int32_t *)arg;
}

void kloop_abandon(kloop *kl) {
  for (int32_t p = 0; kl->def->progress && p < kl->nparts; p++) {
    part_track *t = &kl->parts[p];
    if (t->high >= 0 || t->committed >= 0) kl->def->revoked(&kl->ctx, p);
    *t = (part_track){-1, -1, t->alert_paused};
  }
  outbox_reset(&kl->held);
}

/* Exactly-once: one transaction with the outputs now releasable and the
 * advanced offsets. Outputs never wait for the 100 ms pace; offsets alone
 * do. An abort drops everything (rewind_after: and re-reads it). */
static void commit_floors_txn(kloop *kl, bool force, bool rewind_after) {
  outbox_split(&kl->out, &kl->held, moves, NULL);
  int64_t now = ps_mono_ms();
  int64_t *off = committable(kl);
  hold_arg h = {off, kl->nparts};
  outbox rel = {0};
  outbox_split(&kl->held, &rel, stays_held, &h);
  rd_kafka_topic_partition_list_t *offs = advanced(kl, off);
  free(off);
  if (rel.n || (offs->cnt && (force || now >= kl->next_commit_ms))) {
    kl->next_commit_ms = now + 100;
    int rc = ktxn_commit(kl, &rel, offs);
    if (rc == 0) {
      note_committed(kl, offs);
      outbox_count_delivered(&rel, kl->cfg.topics.dlq, kl->m.dlq);
    } else if (rc > 0) {
      kloop_abandon(kl);
      if (rewind_after) ktxn_rewind(kl);
    }
  } else {
    outbox_split(&rel, &kl->held, moves, NULL); /* nothing released: back, in order */
  }
  outbox_free(&rel);
  rd_kafka_topic_partition_list_destroy(offs);
}

/* Commits, per partition, the lowest offset the stage still keeps, or past
 * the last message handled when it keeps none. Called only when every
 * output so far is acknowledged (or, exactly-once, held). At most every
 * 100 ms unless forced (idle, rebalance, stop). */
void kloop_commit_floors(kloop *kl, bool force) {
  /* A continuous stage frees an item once its outputs are queued; if they
   * were then not delivered, the item no longer holds its floor down, so a
   * commit now (the revoke on close included) would skip it for good. */
  if (kl->outputs_lost || kl->fatal || kl->nparts == 0) return;
  if (kl->cfg.exactly_once) {
    commit_floors_txn(kl, force, true);
    return;
  }
  int64_t now = ps_mono_ms();
  if (!force && now < kl->next_commit_ms) return;
  kl->next_commit_ms = now + 100;
  int64_t *off = committable(kl);
  rd_kafka_topic_partition_list_t *offs = advanced(kl, off);
  free(off);
  if (offs->cnt) {
    /* Sent, not waited for (kcommit.c): a failed commit is sent again. */
    kloop_commit(kl, offs);
    note_committed(kl, offs);
  }
  rd_kafka_topic_partition_list_destroy(offs);
}

/* Back-pressure: a full stage pauses its partitions (so the consumer keeps
 * polling — rebalances, liveness — without taking more) and resumes them
 * when there is room. A partition paused by an alert stays paused. */
static void flow_control(kloop *kl, bool room) {
  if (room != kl->flow_paused) return;
  rd_kafka_topic_partition_list_t *a = NULL;
  if (rd_kafka_assignment(kl->consumer, &a) || !a) return;
  rd_kafka_topic_partition_list_t *b = rd_kafka_topic_partition_list_new(a->cnt ? a->cnt : 1);
  for (int i = 0; i < a->cnt; i++) {
    part_track *t = kloop_track(kl, a->elems[i].partition);
    if (!t || !t->alert_paused)
      rd_kafka_topic_partition_list_add(b, a->elems[i].topic, a->elems[i].partition);
  }
  if (room) rd_kafka_resume_partitions(kl->consumer, b);
  else rd_kafka_pause_partitions(kl->consumer, b);
  kl->flow_paused = !room;
  log_debug("%s %d partitions: %zu kept", room ? "resumed" : "paused (full)", b->cnt,
            kl->def->pending(&kl->ctx));
  rd_kafka_topic_partition_list_destroy(b);
  rd_kafka_topic_partition_list_destroy(a);
}

/* Before partitions are revoked: commit what is finished, let the stage drop
 * what it keeps from them, forget them, and drop collected messages of
 * theirs (the next owner reads them from the committed offset). */
void kloop_on_rebalance(void *opaque, bool assigned, const rd_kafka_topic_partition_list_t *parts) {
  kloop *kl = opaque;
  if (!kl->def->progress) {
    /* The next owner starts from what is committed: the answer first. */
    if (!assigned && !kl->cfg.exactly_once) {
      kloop_commit_wait(kl, 5000);
      kloop_commit_forget(kl);
    }
    return;
  }
  kl->flow_paused = false; /* a new assignment starts unpaused */
  if (assigned) {
    for (int i = 0; i < parts->cnt; i++) {
      part_track *t = kloop_track(kl, parts->elems[i].partition);
      if (t) *t = (part_track){-1, -1, false};
    }
    return;
  }
  /* Exactly-once: no rewind inside the revoke; the partitions go anyway. */
  if (kl->cfg.exactly_once && !kl->outputs_lost && !kl->fatal && kl->nparts)
    commit_floors_txn(kl, true, false);
  else
    kloop_commit_floors(kl, true);
  if (!kl->cfg.exactly_once) {
    kloop_commit_wait(kl, 5000);
    kloop_commit_forget(kl);
  }
  for (int i = 0; i < parts->cnt; i++) {
    int32_t p = parts->elems[i].partition;
    kl->def->revoked(&kl->ctx, p);
    part_track *t = kloop_track(kl, p);
    if (t) *t = (part_track){-1, -1, false};
    outbox gone = {0};
    outbox_split(&kl->held, &gone, not_revoked, &p);
    outbox_free(&gone);
    size_t k = 0;
    for (size_t j = 0; j < kl->nbatch; j++) {
      if (kl->batch[j]->partition == p) rd_kafka_message_destroy(kl->batch[j]);
      else kl->batch[k++] = kl->batch[j];
    }
    kl->nbatch = k;
  }
}

/* One cycle of a continuous stage: admit what arrived (without waiting when
 * work is in progress), advance the work, produce, commit the floors. */
int kloop_cycle_continuous(kloop *kl) {
  const stage_def *d = kl->def;
  size_t pending = d->pending(&kl->ctx), room = d->capacity(&kl->ctx);
  flow_control(kl, room > 0);
  size_t limit = (size_t)kl->cfg.batch_max;
  if (room && room < limit) limit = room;
  kloop_collect(kl, limit, pending == 0 && kl->held.n == 0);
  if (kl->nbatch == 0 && pending == 0 && kl->held.n == 0) return 0;
  return kloop_run_batch(kl);
}

/* On SIGTERM a continuous stage takes nothing new and finishes what it
 * holds for up to 5 s; what is left is re-delivered to the next owner. */
void kloop_drain_continuous(kloop *kl) {
  int64_t until = ps_mono_ms() + 5000;
  while (kl->def->pending(&kl->ctx) && ps_mono_ms() < until && !kloop_stop_now && !kl->fatal) {
    kl->def->progress(&kl->ctx, &kl->out, 20);
    if (!kl->cfg.exactly_once) {
      int rc = kloop_produce(kl, &kl->out);
      if (rc == 0) outbox_count_delivered(&kl->out, kl->cfg.topics.dlq, kl->m.dlq);
      outbox_reset(&kl->out);
      if (rc) return;
    }
    kloop_commit_floors(kl, false);
  }
  kloop_commit_floors(kl, true);
  size_t left = kl->def->pending(&kl->ctx);
  if (left) log_warn("%zu messages unfinished at shutdown: left to the next owner", left);
}
