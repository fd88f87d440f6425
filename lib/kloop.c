/* kloop: poll -> batch -> decode/DLQ -> process -> produce -> flush -> commit.
 * Offsets are committed only once every output of the batch is acknowledged
 * by Kafka, so a crash anywhere re-delivers the batch (at-least-once); each
 * stage makes its effects idempotent, so re-delivery changes nothing. */
#include "kloop.h"

#include <signal.h>
#include <sys/resource.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kafka.h"
#include "log.h"
#include "metrics.h"

static volatile sig_atomic_t stop_requested; /* finish the batch, commit, leave */
static volatile sig_atomic_t stop_now;       /* second signal: leave at once */

static void on_signal(int sig) {
  (void)sig;
  if (stop_requested) stop_now = 1;
  stop_requested = 1;
}

/* ---- the worker cycle --------------------------------------------------- */

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
  int delivery_failures;      /* counted by the delivery report callback */
  char delivery_error[256];
  uint64_t processed, batches;
  int64_t next_health_ms;
  part_track *parts; /* indexed by partition */
  int32_t nparts;
  bool flow_paused;  /* partitions paused because the stage is full */
  bool outputs_lost; /* a produce failed: nothing may be committed again (not
                        even by the revoke on close), the next owner redoes it */
  int64_t next_commit_ms;
  rd_kafka_topic_t *outputs[8]; /* topics the producer knows from the start */
  int noutputs;
  struct {
    metric *consumed, *batch_size, *batch_seconds, *retries, *out_of_range, *dlq;
  } m;
} kloop;

static void metrics_init_loop(kloop *kl) {
  kl->m.consumed = metrics_counter("paystream_messages_consumed_total",
                                   "Messages consumed and committed", "topic", kl->input_topic,
                                   NULL);
  kl->m.dlq = metrics_counter("paystream_messages_dead_lettered_total",
                              "Input messages sent to the DLQ (undecodable, oversized, poison)",
                              "topic", kl->input_topic, NULL);
  kl->m.batch_size = metrics_histogram("paystream_batch_size", "Messages per batch",
                                       METRICS_SIZE_BUCKETS, METRICS_SIZE_NBUCKETS, NULL);
  kl->m.batch_seconds = metrics_histogram(
      "paystream_batch_seconds", "Batch processing time: decode, process, produce, commit",
      METRICS_LATENCY_BUCKETS, METRICS_LATENCY_NBUCKETS, NULL);
  kl->m.retries = metrics_counter("paystream_batch_retries_total",
                                  "Batches retried after a transient failure", NULL);
  kl->m.out_of_range = metrics_counter(
      "paystream_offsets_out_of_range_total",
      "Committed offsets found deleted (partition paused, operator action needed)", "topic",
      kl->input_topic, NULL);
  metrics_set_check("kafka", false, true, "connecting");
  metrics_set_check("partitions", false, true, "waiting for assignment");
}

/* Once a second: is Postgres (and Redis, for stages that use it) reachable?
 * Probing even when idle means /readyz turns unready when Postgres goes
 * away, not only when the next batch fails. */
static void health_tick(kloop *kl) {
  int64_t now = ps_mono_ms();
  if (now < kl->next_health_ms) return;
  kl->next_health_ms = now + 1000;
  char err[256];
  PGresult *r = pg_exec(&kl->ctx.pg, "SELECT 1", 0, NULL, err, sizeof err);
  char what[64] = "";
  if (!r) pg_err_public(err, what, sizeof what); /* /readyz is public: no hosts, no users */
  metrics_set_check("postgres", r != NULL, true, what);
  PQclear(r);
  if (kl->def->uses_redis) {
    rds_cmd ping;
    const char *argv[] = {"PING"};
    rds_cmd_set(&ping, 1, argv);
    redisReply *rep;
    int rc = rds_pipeline(&kl->ctx.redis, &ping, 1, &rep);
    if (rep) freeReplyObject(rep);
    metrics_set_check("redis", rc == 0, false,
                      rc == 0 ? "" : "unavailable: degraded mode, see README");
  }
}

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque) {
  (void)rk;
  (void)opaque; /* the producer's conf opaque is not set: each message carries its loop */
  kloop *kl = m->_private;
  if (m->err) {
    kl->delivery_failures++;
    snprintf(kl->delivery_error, sizeof kl->delivery_error, "%s: %s",
             rd_kafka_topic_name(m->rkt), rd_kafka_err2str(m->err));
  }
}

static void sleep_ms(int ms) {
  struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
  nanosleep(&ts, NULL);
}

static part_track *track(kloop *kl, int32_t p) {
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
    part_track *t = track(kl, m->partition);
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
static void collect_batch(kloop *kl, size_t limit, bool block) {
  kl->nbatch = 0;
  int64_t deadline = 0;
  while (!stop_requested && kl->nbatch < limit) {
    if (kl->nbatch == 0) health_tick(kl);
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

/* Decodes the batch; undecodable messages go to the outbox's DLQ entries. */
static size_t decode_batch(kloop *kl, outbox *dlq) {
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
      outbox_add_dlq(dlq, kl->cfg.topics.dlq, kl->def->name, &sm, reason);
      continue;
    }
    kl->msgs[n++] = sm;
  }
  return n;
}

static void free_decoded(kloop *kl, size_t n) {
  for (size_t i = 0; i < n; i++) event_free(kl->msgs[i].ev);
}

static kloop *running; /* the worker's loop, for kloop_msg_timestamp */

int64_t kloop_msg_timestamp(const stage_msg *m) {
  for (size_t i = 0; running && i < running->nbatch; i++) {
    const rd_kafka_message_t *k = running->batch[i];
    if (k->payload == m->raw && k->offset == m->offset && k->partition == m->partition)
      return rd_kafka_message_timestamp(k, NULL);
  }
  return -1;
}

/* Calls the stage until it succeeds; transient failures back off. Returns
 * 0, or -1 if a fast stop interrupted the retries. */
static int process_with_retry(kloop *kl, size_t n) {
  int backoff = 100;
  for (;;) {
    size_t before = kl->out.n;
    if (n == 0 || kl->def->process(&kl->ctx, kl->msgs, n, &kl->out) == 0) return 0;
    /* Drop partial outputs of the failed attempt, keep the DLQ entries. */
    outbox_truncate(&kl->out, before);
    /* On shutdown give up: the uncommitted batch is re-delivered later. */
    if (stop_now || stop_requested) return -1;
    metric_add(kl->m.retries, 1);
    health_tick(kl);
    log_warn("batch failed, retrying in %d ms", backoff);
    for (int waited = 0; waited < backoff && !stop_now; waited += 50) sleep_ms(50);
    backoff = backoff * 2 > 5000 ? 5000 : backoff * 2;
  }
}

/* Produces every output and waits until Kafka has acknowledged all of them.
 * Returns 0, or -1 if any delivery failed (the batch must not be committed). */
static int produce_outbox(kloop *kl) {
  kl->delivery_failures = 0;
  for (size_t i = 0; i < kl->out.n; i++) {
    outbox_msg *m = &kl->out.v[i];
    for (;;) {
      rd_kafka_resp_err_t err = rd_kafka_producev(
          kl->producer, RD_KAFKA_V_TOPIC(m->topic), RD_KAFKA_V_KEY(m->key, m->keylen),
          RD_KAFKA_V_VALUE(m->val, m->vallen), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
          RD_KAFKA_V_HEADERS(m->hdrs), RD_KAFKA_V_OPAQUE(kl), RD_KAFKA_V_END);
      if (!err) {
        m->hdrs = NULL; /* now owned by the producer */
        break;
      }
      if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL) {
        log_error("could not produce to %s: %s", m->topic, rd_kafka_err2str(err));
        kl->delivery_failures++;
        break;
      }
      rd_kafka_poll(kl->producer, 10);
    }
  }
  while (rd_kafka_outq_len(kl->producer) > 0 && !stop_now) rd_kafka_flush(kl->producer, 500);
  if (kl->delivery_failures) {
    log_error("%d outputs not delivered (%s)", kl->delivery_failures, kl->delivery_error);
    kl->outputs_lost = true;
    return -1;
  }
  if (rd_kafka_outq_len(kl->producer) > 0) {
    kl->outputs_lost = true;
    return -1;
  }
  return 0;
}

/* Commits, per partition, the offset after the batch's last message. */
static void commit_batch(kloop *kl) {
  rd_kafka_topic_partition_list_t *offs = rd_kafka_topic_partition_list_new((int)kl->nbatch);
  for (size_t i = 0; i < kl->nbatch; i++) {
    rd_kafka_message_t *m = kl->batch[i];
    rd_kafka_topic_partition_t *p =
        rd_kafka_topic_partition_list_find(offs, rd_kafka_topic_name(m->rkt), m->partition);
    if (!p) p = rd_kafka_topic_partition_list_add(offs, rd_kafka_topic_name(m->rkt), m->partition);
    if (m->offset + 1 > p->offset) p->offset = m->offset + 1;
  }
  rd_kafka_resp_err_t err = rd_kafka_commit(kl->consumer, offs, 0);
  if (err)
    log_warn("offset commit failed (the batch will be re-delivered, harmlessly): %s",
             rd_kafka_err2str(err));
  rd_kafka_topic_partition_list_destroy(offs);
}

static void release_batch(kloop *kl) {
  for (size_t i = 0; i < kl->nbatch; i++) rd_kafka_message_destroy(kl->batch[i]);
  kl->nbatch = 0;
}

/* ---- continuous stages ----------------------------------------------------- */

/* Commits, per partition, the lowest offset the stage still keeps, or past
 * the last message handled when it keeps none. Called only when every
 * output so far is acknowledged. At most every 100 ms unless forced (idle,
 * rebalance, stop). */
static void commit_floors(kloop *kl, bool force) {
  /* A continuous stage frees an item once its outputs are queued; if they
   * were then not delivered, the item no longer holds its floor down, so a
   * commit now (the revoke on close included) would skip it for good. */
  if (kl->outputs_lost) return;
  int64_t now = ps_mono_ms();
  if ((!force && now < kl->next_commit_ms) || kl->nparts == 0) return;
  kl->next_commit_ms = now + 100;
  int64_t *floor = malloc((size_t)kl->nparts * sizeof *floor);
  if (!floor) abort();
  for (int32_t p = 0; p < kl->nparts; p++) floor[p] = -1;
  kl->def->floors(&kl->ctx, floor, kl->nparts);
  rd_kafka_topic_partition_list_t *offs = rd_kafka_topic_partition_list_new(4);
  for (int32_t p = 0; p < kl->nparts; p++) {
    part_track *t = &kl->parts[p];
    if (t->high < 0) continue;
    int64_t off = floor[p] >= 0 ? floor[p] : t->high + 1;
    if (off > t->committed) rd_kafka_topic_partition_list_add(offs, kl->input_topic, p)->offset = off;
  }
  free(floor);
  if (offs->cnt) {
    rd_kafka_resp_err_t err = rd_kafka_commit(kl->consumer, offs, 0);
    if (err)
      log_warn("offset commit failed (messages will be re-delivered, harmlessly): %s",
               rd_kafka_err2str(err));
    else
      for (int i = 0; i < offs->cnt; i++) track(kl, offs->elems[i].partition)->committed =
                                              offs->elems[i].offset;
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
    part_track *t = track(kl, a->elems[i].partition);
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
static void on_rebalance(void *opaque, bool assigned, const rd_kafka_topic_partition_list_t *parts) {
  kloop *kl = opaque;
  if (!kl->def->progress) return;
  kl->flow_paused = false; /* a new assignment starts unpaused */
  if (assigned) {
    for (int i = 0; i < parts->cnt; i++) {
      part_track *t = track(kl, parts->elems[i].partition);
      if (t) *t = (part_track){-1, -1, false};
    }
    return;
  }
  commit_floors(kl, true);
  for (int i = 0; i < parts->cnt; i++) {
    int32_t p = parts->elems[i].partition;
    kl->def->revoked(&kl->ctx, p);
    part_track *t = track(kl, p);
    if (t) *t = (part_track){-1, -1, false};
    size_t k = 0;
    for (size_t j = 0; j < kl->nbatch; j++) {
      if (kl->batch[j]->partition == p) rd_kafka_message_destroy(kl->batch[j]);
      else kl->batch[k++] = kl->batch[j];
    }
    kl->nbatch = k;
  }
}

/* The tail every cycle shares: decode (dead-lettering what does not),
 * process with retries, let a continuous stage advance its work, produce
 * and wait for every acknowledgement, then commit — the batch's offsets, or
 * a continuous stage's floors — and count. Returns 0, or -1 to stop the
 * worker without committing: outputs may be half-delivered, so the whole
 * batch is re-delivered to whoever owns the partitions next. */
static int run_batch(kloop *kl) {
  const stage_def *d = kl->def;
  double t0 = metrics_now();
  size_t n = decode_batch(kl, &kl->out);
  int rc = process_with_retry(kl, n);
  free_decoded(kl, n); /* what a continuous stage did not keep */
  if (rc == 0 && d->progress) d->progress(&kl->ctx, &kl->out, kl->nbatch ? 0 : 5);
  if (rc == 0) rc = produce_outbox(kl);
  if (rc == 0) outbox_count_delivered(&kl->out, kl->cfg.topics.dlq, kl->m.dlq);
  outbox_reset(&kl->out);
  if (rc == 0) {
    if (d->progress) {
      for (size_t i = 0; i < kl->nbatch; i++) {
        part_track *t = track(kl, kl->batch[i]->partition);
        if (t && kl->batch[i]->offset > t->high) t->high = kl->batch[i]->offset;
      }
      commit_floors(kl, d->pending(&kl->ctx) == 0);
    } else {
      commit_batch(kl);
    }
    if (kl->nbatch) {
      kl->processed += kl->nbatch;
      kl->batches++;
      metric_add(kl->m.consumed, (double)kl->nbatch);
      metric_observe(kl->m.batch_size, (double)kl->nbatch);
      metric_observe(kl->m.batch_seconds, metrics_now() - t0);
    }
  }
  release_batch(kl);
  if (rc) {
    log_error("stopping without committing");
    return -1;
  }
  return 0;
}

/* One cycle of a continuous stage: admit what arrived (without waiting when
 * work is in progress), advance the work, produce, commit the floors. */
static int cycle_continuous(kloop *kl) {
  const stage_def *d = kl->def;
  size_t pending = d->pending(&kl->ctx), room = d->capacity(&kl->ctx);
  flow_control(kl, room > 0);
  size_t limit = (size_t)kl->cfg.batch_max;
  if (room && room < limit) limit = room;
  collect_batch(kl, limit, pending == 0);
  if (kl->nbatch == 0 && pending == 0) return 0;
  return run_batch(kl);
}

/* On SIGTERM a continuous stage takes nothing new and finishes what it
 * holds for up to 5 s; what is left is re-delivered to the next owner. */
static void drain_continuous(kloop *kl) {
  int64_t until = ps_mono_ms() + 5000;
  while (kl->def->pending(&kl->ctx) && ps_mono_ms() < until && !stop_now) {
    kl->def->progress(&kl->ctx, &kl->out, 20);
    int rc = produce_outbox(kl);
    if (rc == 0) outbox_count_delivered(&kl->out, kl->cfg.topics.dlq, kl->m.dlq);
    outbox_reset(&kl->out);
    if (rc) return;
    commit_floors(kl, false);
  }
  commit_floors(kl, true);
  size_t left = kl->def->pending(&kl->ctx);
  if (left) log_warn("%zu messages unfinished at shutdown: left to the next owner", left);
}

/* One cycle. Returns 0 to continue, -1 to stop the worker. */
static int cycle(kloop *kl) {
  if (kl->def->progress) return cycle_continuous(kl);
  collect_batch(kl, (size_t)kl->cfg.batch_max, true);
  if (kl->nbatch == 0) return 0;
  return run_batch(kl);
}

/* Every topic a stage may write to is known to the producer, leaders
 * included, before its first message: otherwise librdkafka learns a topic
 * on the first produce to it and that batch's flush waits for the metadata
 * — measured 0.7-1 s, the first time a stage answered a duplicate or
 * dead-lettered a message, every payment of the batch held with it. */
static void know_outputs(kloop *kl) {
  const cfg_topics *t = &kl->cfg.topics;
  const char *names[] = {t->requests, t->fraud_scored, t->charged, t->ledgered, t->outcomes, t->dlq};
  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
    if (names[i] && *names[i])
      kl->outputs[kl->noutputs++] = rd_kafka_topic_new(kl->producer, names[i], NULL);
  const rd_kafka_metadata_t *md = NULL;
  rd_kafka_resp_err_t err = rd_kafka_metadata(kl->producer, 0, NULL, &md, 5000);
  if (err) log_warn("output topics' metadata not fetched at start: %s", rd_kafka_err2str(err));
  if (md) rd_kafka_metadata_destroy(md);
}

static int kloop_init(kloop *kl, const stage_def *def) {
  char err[512];
  memset(kl, 0, sizeof *kl);
  kl->def = def;
  if (cfg_load(&kl->cfg, def->name, err, sizeof err)) {
    fprintf(stderr, "paystream %s: %s\n", def->name, err);
    return -1;
  }
  log_level lvl = LOG_INFO;
  if (log_level_parse(kl->cfg.log_level, &lvl)) {
    fprintf(stderr, "paystream %s: PAYSTREAM_LOG_LEVEL must be debug|info|warn|error\n",
            def->name);
    return -1;
  }
  log_init(def->name, lvl);
  if (metrics_serve(def->name, kl->cfg.metrics_addr, kl->cfg.metrics_port_file, err,
                    sizeof err)) {
    log_error("%s", err);
    return -1;
  }
  kl->ctx.cfg = &kl->cfg;
  pg_init(&kl->ctx.pg, kl->cfg.pg_dsn, def->name, kl->cfg.pg_prepare != 0);
  kl->ctx.pg.serializable = kl->cfg.pg_serializable != 0;
  rds_init(&kl->ctx.redis, kl->cfg.redis_host, kl->cfg.redis_port, kl->cfg.redis_timeout_ms);
  rds_set_auth(&kl->ctx.redis, kl->cfg.redis_user, kl->cfg.redis_password);
  if (def->init && def->init(&kl->ctx, err, sizeof err)) {
    log_error("%s", err);
    return -1;
  }
  kl->input_topic = def->input_topic(&kl->cfg);
  metrics_init_loop(kl);
  kl->producer = kafka_producer_new(&kl->cfg, on_delivery, err, sizeof err);
  if (!kl->producer) {
    log_error("%s", err);
    return -1;
  }
  know_outputs(kl);
  kl->consumer =
      kafka_consumer_new(&kl->cfg, kl->input_topic, on_rebalance, kl, err, sizeof err);
  if (!kl->consumer) {
    log_error("%s", err);
    return -1;
  }
  kl->batch = calloc((size_t)kl->cfg.batch_max, sizeof *kl->batch);
  kl->msgs = calloc((size_t)kl->cfg.batch_max, sizeof *kl->msgs);
  if (!kl->batch || !kl->msgs) return -1;
  return 0;
}

static void kloop_exit(kloop *kl) {
  if (kl->consumer) {
    /* Leave the group now, not at session timeout: the partitions move on. */
    rd_kafka_resp_err_t err = rd_kafka_consumer_close(kl->consumer);
    if (err) log_warn("could not leave the consumer group cleanly: %s", rd_kafka_err2str(err));
    else log_info("left the consumer group");
    rd_kafka_destroy(kl->consumer);
  }
  for (int i = 0; i < kl->noutputs; i++)
    if (kl->outputs[i]) rd_kafka_topic_destroy(kl->outputs[i]);
  if (kl->producer) {
    rd_kafka_flush(kl->producer, 5000);
    rd_kafka_destroy(kl->producer);
  }
  if (kl->def->destroy) kl->def->destroy(&kl->ctx);
  pg_close(&kl->ctx.pg);
  rds_close(&kl->ctx.redis);
  outbox_free(&kl->out);
  metrics_stop();
  cfg_close(&kl->cfg);
  free(kl->batch);
  free(kl->msgs);
  free(kl->parts);
}

/* A charge worker keeps a connection per request in flight: take the hard
 * limit on open files, not the (often 1024) soft one. */
static void raise_nofile(void) {
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
}

int stage_main(const stage_def *def) {
  raise_nofile();
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_signal;
  sigaction(SIGTERM, &sa, NULL);
  sigaction(SIGINT, &sa, NULL);
  signal(SIGPIPE, SIG_IGN);

  static kloop kl;
  running = &kl;
  int code = 0;
  if (kloop_init(&kl, def) == 0) {
    log_info("started: consuming %s as group %s", kl.input_topic, kl.cfg.group_id);
    while (!stop_requested)
      if (cycle(&kl)) {
        code = 1;
        break;
      }
    if (def->progress && code == 0 && !stop_now) drain_continuous(&kl);
    log_info("stopping after %llu messages in %llu batches", (unsigned long long)kl.processed,
             (unsigned long long)kl.batches);
  } else {
    code = 2;
  }
  kloop_exit(&kl);
  return code;
}
