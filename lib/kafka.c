/* kafka: producer and consumer construction. */
#include "kafka.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "clock.h"
#include "log.h"
#include "metrics.h"

/* The committed offsets at an assignment are asked in slices of
 * COMMITTED_SLICE_MS, the loop's heartbeat stamped between them, for up to
 * COMMITTED_WAIT_MS in all (kafka_committed). */
#define COMMITTED_SLICE_MS 1000
#define COMMITTED_WAIT_MS 20000

static int set(rd_kafka_conf_t *conf, const char *k, const char *v, char *err, size_t errlen) {
  char e[256];
  if (rd_kafka_conf_set(conf, k, v, e, sizeof e) != RD_KAFKA_CONF_OK) {
    snprintf(err, errlen, "kafka setting %s: %s", k, e);
    return -1;
  }
  return 0;
}

/* Applies one property. An error never echoes the value, nor librdkafka's
 * message (it quotes the value), nor a key librdkafka does not know: a
 * secret containing ';' split out of PAYSTREAM_KAFKA_PROPERTIES arrives
 * here as a "key", and must not reach a log either. */
static int set_prop(rd_kafka_conf_t *conf, const char *src, int entry, const char *k,
                    const char *v, char *err, size_t errlen) {
  char e[256];
  if (rd_kafka_conf_set(conf, k, v, e, sizeof e) == RD_KAFKA_CONF_OK) return 0;
  size_t size = 0;
  if (rd_kafka_conf_get(conf, k, NULL, &size) == RD_KAFKA_CONF_UNKNOWN)
    snprintf(err, errlen, "%s: entry %d: unknown property (not shown)", src, entry);
  else
    snprintf(err, errlen, "%s: %s: invalid value (not shown)", src, k);
  return -1;
}

/* Applies the entry-th "key=value" entry; surrounding blanks are ignored. */
static int apply_entry(rd_kafka_conf_t *conf, const char *src, int entry, char *kv, char *err,
                       size_t errlen) {
  while (*kv == ' ' || *kv == '\t') kv++;
  if (!*kv || *kv == '#') return 0;
  char *eq = strchr(kv, '=');
  if (!eq) {
    snprintf(err, errlen, "%s: entry without '=' (entry %d)", src, entry);
    return -1;
  }
  *eq = '\0';
  char *end = eq;
  while (end > kv && (end[-1] == ' ' || end[-1] == '\t')) *--end = '\0';
  char *v = eq + 1;
  while (*v == ' ' || *v == '\t') v++;
  return set_prop(conf, src, entry, kv, v, err, errlen);
}

int kafka_apply_properties(const cfg *c, rd_kafka_conf_t *conf, char *err, size_t errlen) {
  int rc = 0;
  if (c->kafka_properties && *c->kafka_properties) {
    char *copy = strdup(c->kafka_properties), *save = NULL;
    if (!copy) abort();
    int entry = 1;
    for (char *kv = strtok_r(copy, ";", &save); kv && rc == 0; kv = strtok_r(NULL, ";", &save))
      rc = apply_entry(conf, "PAYSTREAM_KAFKA_PROPERTIES", entry++, kv, err, errlen);
    free(copy);
  }
  /* A Java-style client.properties file: where secrets (sasl.password,
   * ssl.key.password) belong, mounted from a secret store. */
  const char *path = c->kafka_properties_file;
  if (rc == 0 && path && *path) {
    FILE *f = fopen(path, "r");
    if (!f) {
      snprintf(err, errlen, "PAYSTREAM_KAFKA_PROPERTIES_FILE: could not read %s", path);
      return -1;
    }
    char line[4096];
    for (int entry = 1; rc == 0 && fgets(line, sizeof line, f); entry++) {
      line[strcspn(line, "\r\n")] = '\0';
      rc = apply_entry(conf, "PAYSTREAM_KAFKA_PROPERTIES_FILE", entry, line, err, errlen);
    }
    fclose(f);
  }
  return rc;
}

int kafka_apply_extra(rd_kafka_conf_t *conf, char *err, size_t errlen) {
  cfg c = {0};
  c.kafka_properties = cfg_env_str("PAYSTREAM_KAFKA_PROPERTIES", NULL);
  c.kafka_properties_file = cfg_env_str("PAYSTREAM_KAFKA_PROPERTIES_FILE", NULL);
  return kafka_apply_properties(&c, conf, err, errlen);
}

static rd_kafka_conf_t *base_conf(const cfg *c, const char *role, char *err, size_t errlen) {
  rd_kafka_conf_t *conf = rd_kafka_conf_new();
  char client_id[128], host[64] = "host";
  gethostname(host, sizeof host - 1);
  snprintf(client_id, sizeof client_id, "paystream-%s-%s-%s-%d", c->stage, role, host,
           (int)getpid());
  if (set(conf, "bootstrap.servers", c->kafka_bootstrap, err, errlen) ||
      set(conf, "client.id", client_id, err, errlen) ||
      set(conf, "socket.nagle.disable", "true", err, errlen) ||
      /* Tuning an operator may override (PAYSTREAM_KAFKA_PROPERTIES): the
       * broker answers a fetch as soon as data arrives; this bounds only how
       * long an empty fetch waits, so it costs no latency, and a short one
       * costs broker CPU: an idle consumer re-fetches every fetch.wait.max.ms
       * (bench/idle.sh: 5 ms, 454 requests/s from 4 idle workers and 60 % of
       * a core in the broker; 500 ms, 13/s and 17 %). 100 ms bounds what a
       * rebalance, a resumed partition or a close waits for the fetch in
       * flight. */
      (strcmp(role, "consumer") == 0 && set(conf, "fetch.wait.max.ms", "100", err, errlen)) ||
      kafka_apply_properties(c, conf, err, errlen)) {
    rd_kafka_conf_destroy(conf);
    return NULL;
  }
  return conf;
}

rd_kafka_t *kafka_producer_new(const cfg *c,
                               void (*dr_msg_cb)(rd_kafka_t *, const rd_kafka_message_t *, void *),
                               char *err, size_t errlen) {
  rd_kafka_conf_t *conf = base_conf(c, "producer", err, errlen);
  if (!conf) return NULL;
  /* murmur2_random: a key lands where a Java producer would put it. */
  if (set(conf, "compression.type", "lz4", err, errlen) ||
      set(conf, "partitioner", "murmur2_random", err, errlen) ||
      set(conf, "enable.idempotence", "true", err, errlen) ||
      set(conf, "acks", "all", err, errlen) || set(conf, "linger.ms", "2", err, errlen) ||
      /* One produce request in flight per broker, whatever an operator set:
       * librdkafka 2.0.2 (Debian 12) loses messages without an error when a
       * new idempotent producer's first request to a partition fails with
       * NOT_LEADER (a leader not ready yet: a new topic, a leader election)
       * while a later one succeeds. The broker takes the later request as the
       * producer's first (sequence 1), and the client counts the failed one
       * delivered ("implicitly acked by subsequent batch success"): the
       * message is never written and its delivery report says success. Seen
       * on this stack (the partition's log began at sequence 1); with one
       * request in flight the failed one is retried before anything after
       * it is sent. Costs a round trip per batch cycle, not per message. */
      set(conf, "max.in.flight.requests.per.connection", "1", err, errlen) ||
      /* Exactly-once: one transactional.id per worker instance, stable
       * across restarts, so the restarted instance fences its zombie. */
      (c->transactional_id[0] && set(conf, "transactional.id", c->transactional_id, err, errlen))) {
    rd_kafka_conf_destroy(conf);
    return NULL;
  }
  if (dr_msg_cb) rd_kafka_conf_set_dr_msg_cb(conf, dr_msg_cb);
  char e[512];
  rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, e, sizeof e);
  if (!rk) {
    snprintf(err, errlen, "could not create kafka producer: %s", e);
    rd_kafka_conf_destroy(conf);
    return NULL;
  }
  return rk; /* conf now owned by rk */
}

/* Readiness needs partitions: a worker with none is idle (more consumers
 * than partitions, or mid-rebalance) and says so. */
static void assigned_set(int n) {
  metric_set(metrics_gauge("paystream_assigned_partitions", "Partitions this worker owns", NULL),
             n);
  metrics_set_check("partitions", n > 0, true, n > 0 ? "" : "no partitions assigned");
}

/* Broker reachability for readiness comes from fresh statistics only
 * (below). Error and statistics events wait in the consumer's queue until
 * the loop polls it: a loop held in a flush through an outage served, once
 * the broker was back, the outage's "all brokers down" and its statistics
 * and turned not ready again after it was ready (kafka_down, session 9). So
 * the error is only logged, and statistics older than two intervals are
 * not applied. */
static void error_cb(rd_kafka_t *rk, int err, const char *reason, void *opaque) {
  (void)rk, (void)opaque, (void)err;
  log_warn("kafka: %s", reason);
}

static int64_t stats_stale_ms = 2000; /* 2 intervals, set with the consumer */

/* librdkafka statistics (every PAYSTREAM_STATS_INTERVAL_MS): consumer lag
 * per owned partition, and whether any real broker connection is up. */
static void stats_partitions(const char *topic, json_t *parts) {
  const char *pid;
  json_t *p;
  json_object_foreach(parts, pid, p) {
    if (strcmp(pid, "-1") == 0) continue; /* the unassigned-messages pseudo partition */
    json_int_t lag = json_integer_value(json_object_get(p, "consumer_lag"));
    bool owned = json_is_true(json_object_get(p, "desired"));
    metric_set(metrics_gauge("paystream_consumer_lag",
                             "Messages behind the partition's high watermark (0 if not owned)",
                             "topic", topic, "partition", pid, NULL),
               owned && lag > 0 ? (double)lag : 0);
  }
}

static int stats_cb(rd_kafka_t *rk, char *json, size_t len, void *opaque) {
  (void)rk, (void)opaque;
  json_t *root = json_loadb(json, len, 0, NULL);
  if (!root) return 0;
  /* "ts": librdkafka's monotonic clock (CLOCK_MONOTONIC) in microseconds. */
  json_int_t ts_us = json_integer_value(json_object_get(root, "ts"));
  if (ts_us > 0 && ps_mono_ms() - ts_us / 1000 > stats_stale_ms) {
    json_decref(root);
    return 0; /* served late: says nothing about now */
  }
  bool up = false;
  const char *name;
  json_t *v;
  json_object_foreach(json_object_get(root, "brokers"), name, v) {
    const char *state = json_string_value(json_object_get(v, "state"));
    if (json_integer_value(json_object_get(v, "nodeid")) >= 0 && state &&
        strcmp(state, "UP") == 0)
      up = true;
  }
  metrics_set_check("kafka", up, true, up ? "" : "no broker connection up");
  json_object_foreach(json_object_get(root, "topics"), name, v)
      stats_partitions(name, json_object_get(v, "partitions"));
  json_decref(root);
  return 0; /* librdkafka frees json */
}

/* Partitions without a committed offset start at the beginning; all others
 * resume where the group left off. Doing it here, rather than with
 * auto.offset.reset=earliest, keeps auto.offset.reset=error for the case that
 * matters: a committed offset that no longer exists is reported, not skipped. */
typedef struct rebalance_hook {
  kafka_rebalance_fn fn;
  void *opaque;
} rebalance_hook;

rd_kafka_resp_err_t kafka_committed(rd_kafka_t *rk, rd_kafka_topic_partition_list_t *parts,
                                    int timeout_ms) {
  int64_t start = ps_mono_ms(), deadline = start + timeout_ms;
  rd_kafka_resp_err_t err;
  int asked = 0;
  do {
    metrics_heartbeat();
    int64_t left = deadline - ps_mono_ms();
    asked++;
    err = rd_kafka_committed(rk, parts, left < COMMITTED_SLICE_MS ? (int)(left > 0 ? left : 1)
                                                                   : COMMITTED_SLICE_MS);
  } while (err && ps_mono_ms() < deadline);
  metrics_heartbeat();
  if (asked > 1)
    log_warn("committed offsets: %s after %lld ms (asked %d times)",
             err ? rd_kafka_err2str(err) : "answered", (long long)(ps_mono_ms() - start), asked);
  return err;
}

static void rebalance_cb(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                         rd_kafka_topic_partition_list_t *parts, void *opaque) {
  const rebalance_hook *hook = opaque;
  if (err != RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
    log_info("partitions revoked: %d", parts->cnt);
    /* Still the owner: the hook may commit what is finished. */
    if (hook && hook->fn) hook->fn(hook->opaque, false, parts);
    rd_kafka_assign(rk, NULL);
    assigned_set(0);
    return;
  }
  rd_kafka_resp_err_t cerr = kafka_committed(rk, parts, COMMITTED_WAIT_MS);
  if (cerr) {
    log_error("could not fetch committed offsets: %s", rd_kafka_err2str(cerr));
  } else {
    /* A partition answered with an error of its own (a committed offset
     * still pending in an open transaction: UNSTABLE_OFFSET_COMMIT) has
     * no offset here but may well have one: it stays INVALID, so
     * librdkafka fetches it itself once it is stable. Only a partition
     * answered without error and without offset starts at the beginning. */
    for (int i = 0; i < parts->cnt; i++) {
      rd_kafka_topic_partition_t *p = &parts->elems[i];
      if (p->err)
        log_warn("committed offset of %s [%d] not known yet (%s): librdkafka fetches it",
                 p->topic, (int)p->partition, rd_kafka_err2str(p->err));
      else if (p->offset == RD_KAFKA_OFFSET_INVALID)
        p->offset = RD_KAFKA_OFFSET_BEGINNING;
      p->err = RD_KAFKA_RESP_ERR_NO_ERROR;
    }
  }
  log_info("partitions assigned: %d", parts->cnt);
  rd_kafka_assign(rk, parts);
  assigned_set(parts->cnt);
  if (hook && hook->fn) hook->fn(hook->opaque, true, parts);
}

rd_kafka_t *kafka_consumer_new(const cfg *c, const char *topic, kafka_rebalance_fn on_rebalance,
                               void *opaque, char *err, size_t errlen) {
  rd_kafka_conf_t *conf = base_conf(c, "consumer", err, errlen);
  if (!conf) return NULL;
  char session[32];
  snprintf(session, sizeof session, "%d", c->session_timeout_ms);
  if (set(conf, "group.id", c->group_id, err, errlen) ||
      set(conf, "enable.auto.commit", "false", err, errlen) ||
      set(conf, "enable.auto.offset.store", "false", err, errlen) ||
      set(conf, "auto.offset.reset", "error", err, errlen) ||
      /* Never read what an aborted transaction wrote (librdkafka's default,
       * stated: exactly-once depends on it). */
      set(conf, "isolation.level", "read_committed", err, errlen) ||
      set(conf, "session.timeout.ms", session, err, errlen) ||
      set(conf, "max.poll.interval.ms", "600000", err, errlen)) {
    rd_kafka_conf_destroy(conf);
    return NULL;
  }
  char stats_ms[32];
  snprintf(stats_ms, sizeof stats_ms, "%d", c->stats_interval_ms);
  stats_stale_ms = 2 * (int64_t)c->stats_interval_ms + 1000;
  if (set(conf, "statistics.interval.ms", stats_ms, err, errlen)) {
    rd_kafka_conf_destroy(conf);
    return NULL;
  }
  rd_kafka_conf_set_stats_cb(conf, stats_cb);
  rd_kafka_conf_set_error_cb(conf, error_cb);
  rd_kafka_conf_set_rebalance_cb(conf, rebalance_cb);
  /* One consumer per process: the hook outlives it. */
  static rebalance_hook hook;
  hook.fn = on_rebalance;
  hook.opaque = opaque;
  rd_kafka_conf_set_opaque(conf, &hook);
  char e[512];
  rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, e, sizeof e);
  if (!rk) {
    snprintf(err, errlen, "could not create kafka consumer: %s", e);
    rd_kafka_conf_destroy(conf);
    return NULL;
  }
  rd_kafka_poll_set_consumer(rk);
  rd_kafka_topic_partition_list_t *sub = rd_kafka_topic_partition_list_new(1);
  rd_kafka_topic_partition_list_add(sub, topic, RD_KAFKA_PARTITION_UA);
  rd_kafka_resp_err_t serr = rd_kafka_subscribe(rk, sub);
  rd_kafka_topic_partition_list_destroy(sub);
  if (serr) {
    snprintf(err, errlen, "could not subscribe to %s: %s", topic, rd_kafka_err2str(serr));
    rd_kafka_destroy(rk);
    return NULL;
  }
  return rk;
}
