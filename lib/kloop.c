/* kloop: poll -> batch -> decode/DLQ -> process -> produce -> flush -> commit.
 * Offsets are committed only once every output of the batch is acknowledged
 * by Kafka, so a crash anywhere re-delivers the batch (at-least-once); each
 * stage makes its effects idempotent, so re-delivery changes nothing. In
 * exactly-once mode (ktxn.c) the outputs and the offsets commit in one Kafka
 * transaction instead. This file: signals, the cycle, producing, start and
 * stop; kconsume.c, kcontinuous.c, ktxn.c and health.c hold the rest. */
#include <signal.h>
#include <sys/resource.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "clock.h"
#include "kafka.h"
#include "kloop_impl.h"
#include "log.h"
#include "stop_signals.h"

volatile sig_atomic_t kloop_stop_requested;
volatile sig_atomic_t kloop_stop_now;

static void on_signal(int sig) {
  (void)sig;
  if (kloop_stop_requested) kloop_stop_now = 1;
  kloop_stop_requested = 1;
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

void kloop_sleep_ms(int ms) {
  struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
  nanosleep(&ts, NULL);
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
    if (kloop_stop_now || kloop_stop_requested) return -1;
    metric_add(kl->m.retries, 1);
    kloop_health_tick(kl);
    log_warn("batch failed, retrying in %d ms", backoff);
    for (int waited = 0; waited < backoff && !kloop_stop_now; waited += 50) kloop_sleep_ms(50);
    backoff = backoff * 2 > 5000 ? 5000 : backoff * 2;
  }
}

int kloop_enqueue(kloop *kl, outbox *ob) {
  kl->delivery_failures = 0;
  for (size_t i = 0; i < ob->n; i++) {
    outbox_msg *m = &ob->v[i];
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
        return -1;
      }
      rd_kafka_poll(kl->producer, 10);
    }
  }
  return 0;
}

int kloop_produce(kloop *kl, outbox *ob) {
  if (kloop_enqueue(kl, ob)) kl->delivery_failures++;
  int64_t since = ps_mono_ms();
  while (rd_kafka_outq_len(kl->producer) > 0 && !kloop_stop_now) {
    rd_kafka_flush(kl->producer, 500);
    kloop_kafka_waiting(kl, since, "outputs not acknowledged");
  }
  kloop_kafka_done(kl);
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

/* Commits the cycle's work. At-least-once: produce, wait for every
 * acknowledgement, then commit the batch's offsets or a continuous stage's
 * floors. Exactly-once: one transaction (a continuous stage's through its
 * floors, kcontinuous.c). Returns 0, or -1 to stop without committing. */
static int commit_cycle(kloop *kl) {
  if (kl->def->progress) {
    kloop_note_handled(kl);
    if (!kl->cfg.exactly_once) {
      if (kloop_produce(kl, &kl->out)) return -1;
      outbox_count_delivered(&kl->out, kl->cfg.topics.dlq, kl->m.dlq);
      outbox_reset(&kl->out);
    }
    kloop_commit_floors(kl, kl->def->pending(&kl->ctx) == 0);
    return kl->fatal ? -1 : 0;
  }
  if (!kl->cfg.exactly_once) {
    if (kloop_produce(kl, &kl->out)) return -1;
    outbox_count_delivered(&kl->out, kl->cfg.topics.dlq, kl->m.dlq);
    kloop_commit_batch(kl);
    return 0;
  }
  rd_kafka_topic_partition_list_t *offs = kloop_batch_offsets(kl);
  int rc = ktxn_commit(kl, &kl->out, offs);
  rd_kafka_topic_partition_list_destroy(offs);
  if (rc == 0) outbox_count_delivered(&kl->out, kl->cfg.topics.dlq, kl->m.dlq);
  if (rc > 0) rc = ktxn_rewind(kl); /* the batch comes again */
  return rc < 0 ? -1 : 0;
}

/* The tail every cycle shares: decode (dead-lettering what does not),
 * process with retries, let a continuous stage advance its work, then
 * commit (commit_cycle) and count. Returns 0, or -1 to stop the worker
 * without committing: outputs may be half-delivered, so the whole batch is
 * re-delivered to whoever owns the partitions next. */
int kloop_run_batch(kloop *kl) {
  const stage_def *d = kl->def;
  double t0 = metrics_now();
  size_t n = kloop_decode(kl, &kl->out);
  int rc = process_with_retry(kl, n);
  kloop_free_decoded(kl, n); /* what a continuous stage did not keep */
  if (rc == 0 && d->progress) d->progress(&kl->ctx, &kl->out, kl->nbatch ? 0 : 5);
  if (rc == 0) rc = commit_cycle(kl);
  outbox_reset(&kl->out);
  if (rc == 0 && kl->nbatch) {
    kl->processed += kl->nbatch;
    kl->batches++;
    metric_add(kl->m.consumed, (double)kl->nbatch);
    metric_observe(kl->m.batch_size, (double)kl->nbatch);
    metric_observe(kl->m.batch_seconds, metrics_now() - t0);
  }
  kloop_release_batch(kl);
  if (rc) {
    log_error("stopping without committing");
    return -1;
  }
  return 0;
}

/* One cycle. Returns 0 to continue, -1 to stop the worker. */
static int cycle(kloop *kl) {
  if (!kl->cfg.exactly_once) kloop_commit_results(kl, 0);
  if (kl->def->progress) return kloop_cycle_continuous(kl);
  kloop_collect(kl, (size_t)kl->cfg.batch_max, true);
  if (kl->nbatch == 0) return 0;
  return kloop_run_batch(kl);
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
  if (kl->cfg.exactly_once && cfg_transactional_id(&kl->cfg, err, sizeof err)) {
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
  kloop_metrics_init(kl);
  kl->producer = kafka_producer_new(&kl->cfg, on_delivery, err, sizeof err);
  if (!kl->producer) {
    log_error("%s", err);
    return -1;
  }
  know_outputs(kl);
  if (kl->cfg.exactly_once && ktxn_init(kl)) return -1;
  kl->consumer =
      kafka_consumer_new(&kl->cfg, kl->input_topic, kloop_on_rebalance, kl, err, sizeof err);
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
    /* The last commit's answer, bounded: a broker that is away gets 5 s. */
    if (!kl->cfg.exactly_once && !kloop_commit_wait(kl, 5000))
      log_warn("offset commit unanswered at exit (re-delivered to the next owner)");
    /* Leave the group now, not at session timeout: the partitions move on. */
    rd_kafka_resp_err_t err = rd_kafka_consumer_close(kl->consumer);
    if (err) log_warn("could not leave the consumer group cleanly: %s", rd_kafka_err2str(err));
    else log_info("left the consumer group");
    kloop_commit_close(kl); /* after the revoke on close, which may commit */
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
  outbox_free(&kl->held);
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
  stop_signals_install(on_signal);

  static kloop kl;
  kloop_running = &kl;
  int code = 0;
  if (kloop_init(&kl, def) == 0) {
    log_info("started: consuming %s as group %s", kl.input_topic, kl.cfg.group_id);
    while (!kloop_stop_requested) {
      metrics_heartbeat();
      if (cycle(&kl)) {
        code = 1;
        break;
      }
    }
    if (def->progress && code == 0 && !kloop_stop_now) kloop_drain_continuous(&kl);
    log_info("stopping after %llu messages in %llu batches", (unsigned long long)kl.processed,
             (unsigned long long)kl.batches);
  } else {
    code = 2;
  }
  kloop_exit(&kl);
  return code;
}
