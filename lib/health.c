/* health: the worker loop's metrics, liveness and readiness. Postgres (and
 * Redis, for stages that use it) is probed once a second even when idle, so
 * /readyz turns unready when a dependency goes away, not only when the next
 * batch fails; the schema check reads what payctl migrate recorded; a
 * producer waiting on Kafka says so. Every call stamps the heartbeat that
 * /healthz reports. /readyz is public: it names no host and no user. */
#include <stdio.h>
#include <string.h>

#include "clock.h"
#include "kloop_impl.h"
#include "log.h"
#include "schema_check.h"

void kloop_metrics_init(kloop *kl) {
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
  if (kl->cfg.exactly_once) {
    kl->m.txn_commits = metrics_counter("paystream_kafka_transactions_committed_total",
                                        "Exactly-once: Kafka transactions committed", NULL);
    kl->m.txn_aborts = metrics_counter(
        "paystream_kafka_transactions_aborted_total",
        "Exactly-once: Kafka transactions aborted (the input is re-read from the committed "
        "offsets)",
        NULL);
  }
  metrics_set_check("kafka", false, true, "connecting");
  metrics_set_check("partitions", false, true, "waiting for assignment");
  metrics_set_check("schema", false, true, "not checked yet");
  metrics_set_heartbeat_timeout(kl->cfg.heartbeat_timeout_s);
}

void kloop_kafka_waiting(kloop *kl, int64_t since_ms, const char *what) {
  metrics_heartbeat();
  int64_t waited = ps_mono_ms() - since_ms;
  if (waited < 2000) return;
  char why[96];
  snprintf(why, sizeof why, "%s for %lld s", what, (long long)(waited / 1000));
  metrics_set_check("kafka", false, true, why);
  kl->kafka_waiting = true;
}

/* Not ready until the consumer's next fresh statistics say so: the
 * producer's outputs being acknowledged does not mean the consumer has its
 * connections back, and what it knew before the wait is old (it said ready,
 * then "no broker connection up", after an outage). */
void kloop_kafka_done(kloop *kl) {
  if (!kl->kafka_waiting) return;
  kl->kafka_waiting = false;
  metrics_set_check("kafka", false, true, "waiting for the consumer's next statistics");
}

void kloop_health_tick(kloop *kl) {
  metrics_heartbeat();
  int64_t now = ps_mono_ms();
  if (now < kl->next_health_ms) return;
  kl->next_health_ms = now + 1000;
  char err[256];
  PGresult *r = pg_exec(&kl->ctx.pg, "SELECT 1", 0, NULL, err, sizeof err);
  char what[64] = "";
  if (!r) pg_err_public(err, what, sizeof what); /* /readyz is public: no hosts, no users */
  metrics_set_check("postgres", r != NULL, true, what);
  if (r) schema_check(&kl->ctx.pg, &kl->schema_warned);
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
