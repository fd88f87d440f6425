/* kadmin: the local stack's Kafka topic admin (deploy/local/stack). Talks to
 * a real broker through librdkafka's Admin API; the broker comes from
 * PAYSTREAM_KAFKA_BOOTSTRAP and topic names from PAYSTREAM_TOPIC_*.
 *
 *   kadmin wait [--timeout S] [--brokers N]
 *       exits 0 once the cluster answers metadata with N brokers (default 1)
 *   kadmin create [--partitions N] [--replication R] [--timeout S]
 *                 [--topic-config TOPIC KEY=VALUE]...
 *       creates the pipeline's eight topics (an existing one is kept), then
 *       waits until metadata shows every partition of each with a leader
 *   kadmin leaders TOPIC
 *       prints "partition leader" lines, one per partition
 *   kadmin offsets TOPIC
 *       prints "partition low high" lines: the oldest retained offset (it
 *       moves when retention deletes a segment) and the end
 *
 * Exit status: 0 done, 1 broker error or deadline passed, 2 usage. */
#include <librdkafka/rdkafka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "config.h"

#define MAX_TOPIC_CONFIGS 16

typedef struct topic_config {
  const char *topic;
  char key[128], value[256];
} topic_config;

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static rd_kafka_t *connect_admin(const char *bootstrap) {
  char err[512];
  rd_kafka_conf_t *conf = rd_kafka_conf_new();
  if (rd_kafka_conf_set(conf, "bootstrap.servers", bootstrap, err, sizeof err) ||
      rd_kafka_conf_set(conf, "socket.nagle.disable", "true", err, sizeof err) ||
      /* A stopped broker is expected while waiting: keep its noise short. */
      rd_kafka_conf_set(conf, "log.connection.close", "false", err, sizeof err) ||
      rd_kafka_conf_set(conf, "reconnect.backoff.max.ms", "200", err, sizeof err)) {
    fprintf(stderr, "kadmin: %s\n", err);
    rd_kafka_conf_destroy(conf);
    return NULL;
  }
  rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err);
  if (!rk) fprintf(stderr, "kadmin: could not create handle: %s\n", err);
  return rk;
}

/* Brokers in the cluster's metadata, or -1 when it does not answer. */
static int broker_count(rd_kafka_t *rk) {
  const struct rd_kafka_metadata *md;
  if (rd_kafka_metadata(rk, 0, NULL, &md, 1000) != RD_KAFKA_RESP_ERR_NO_ERROR) return -1;
  int n = md->broker_cnt;
  rd_kafka_metadata_destroy(md);
  return n;
}

/* 1 when metadata shows TOPIC with `partitions` partitions, each led. */
static int topic_ready(rd_kafka_t *rk, const char *topic, int partitions) {
  const struct rd_kafka_metadata *md;
  rd_kafka_topic_t *t = rd_kafka_topic_new(rk, topic, NULL);
  rd_kafka_resp_err_t e = rd_kafka_metadata(rk, 0, t, &md, 1000);
  rd_kafka_topic_destroy(t);
  if (e) return 0;
  int ok = md->topic_cnt == 1 && md->topics[0].err == RD_KAFKA_RESP_ERR_NO_ERROR &&
           md->topics[0].partition_cnt >= partitions;
  for (int p = 0; ok && p < md->topics[0].partition_cnt; p++)
    if (md->topics[0].partitions[p].err || md->topics[0].partitions[p].leader < 0) ok = 0;
  rd_kafka_metadata_destroy(md);
  return ok;
}

static int cmd_wait(rd_kafka_t *rk, double deadline, int brokers) {
  int n;
  while ((n = broker_count(rk)) < brokers) {
    if (now_s() > deadline) {
      fprintf(stderr, "kadmin: cluster serves %d of %d brokers; deadline passed\n", n < 0 ? 0 : n,
              brokers);
      return 1;
    }
    struct timespec ts = {0, 100 * 1000 * 1000};
    nanosleep(&ts, NULL);
  }
  return 0;
}

static int cmd_create(rd_kafka_t *rk, const cfg_topics *tp, int partitions, int replication,
                      const topic_config *tc, int ntc, double deadline) {
  const char *names[] = {tp->intents, tp->requests, tp->fraud_scored, tp->charged,
                         tp->ledgered, tp->outcomes, tp->dlq,
                         tp->processor_events};
  enum { N = sizeof names / sizeof names[0] };
  char err[512];
  for (int i = 0; i < ntc; i++) {
    int known = 0;
    for (int j = 0; j < N; j++) known |= strcmp(tc[i].topic, names[j]) == 0;
    if (!known) {
      fprintf(stderr, "kadmin: --topic-config names %s, not a pipeline topic\n", tc[i].topic);
      return 2;
    }
  }
  rd_kafka_NewTopic_t *nt[N];
  for (int j = 0; j < N; j++) {
    nt[j] = rd_kafka_NewTopic_new(names[j], partitions, replication, err, sizeof err);
    if (!nt[j]) {
      fprintf(stderr, "kadmin: topic %s: %s\n", names[j], err);
      return 2;
    }
    for (int i = 0; i < ntc; i++)
      if (strcmp(tc[i].topic, names[j]) == 0 &&
          rd_kafka_NewTopic_set_config(nt[j], tc[i].key, tc[i].value)) {
        fprintf(stderr, "kadmin: bad config %s=%s\n", tc[i].key, tc[i].value);
        return 2;
      }
  }
  rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
  rd_kafka_AdminOptions_t *opt = rd_kafka_AdminOptions_new(rk, RD_KAFKA_ADMIN_OP_CREATETOPICS);
  int timeout_ms = (int)((deadline - now_s()) * 1000);
  if (timeout_ms < 1000) timeout_ms = 1000;
  rd_kafka_AdminOptions_set_request_timeout(opt, timeout_ms, err, sizeof err);
  rd_kafka_AdminOptions_set_operation_timeout(opt, timeout_ms, err, sizeof err);
  rd_kafka_CreateTopics(rk, nt, N, opt, q);
  rd_kafka_event_t *ev = rd_kafka_queue_poll(q, timeout_ms + 2000);
  int rc = 0;
  if (!ev) {
    fprintf(stderr, "kadmin: CreateTopics got no answer in %d ms\n", timeout_ms);
    rc = 1;
  } else if (rd_kafka_event_error(ev)) {
    fprintf(stderr, "kadmin: CreateTopics: %s\n", rd_kafka_event_error_string(ev));
    rc = 1;
  } else {
    size_t cnt;
    const rd_kafka_topic_result_t **res =
        rd_kafka_CreateTopics_result_topics(rd_kafka_event_CreateTopics_result(ev), &cnt);
    for (size_t i = 0; i < cnt; i++) {
      rd_kafka_resp_err_t e = rd_kafka_topic_result_error(res[i]);
      if (e && e != RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS) {
        fprintf(stderr, "kadmin: create %s: %s\n", rd_kafka_topic_result_name(res[i]),
                rd_kafka_topic_result_error_string(res[i]));
        rc = 1;
      }
    }
  }
  if (ev) rd_kafka_event_destroy(ev);
  rd_kafka_AdminOptions_destroy(opt);
  rd_kafka_queue_destroy(q);
  rd_kafka_NewTopic_destroy_array(nt, N);
  /* Creation is acknowledged by the controller; producers and consumers need
   * every partition's leader in the metadata they will fetch. */
  for (int j = 0; rc == 0 && j < N; j++) {
    while (!topic_ready(rk, names[j], partitions)) {
      if (now_s() > deadline) {
        fprintf(stderr, "kadmin: %s has no leader for every partition; deadline passed\n",
                names[j]);
        return 1;
      }
      struct timespec ts = {0, 50 * 1000 * 1000};
      nanosleep(&ts, NULL);
    }
  }
  return rc;
}

static int cmd_offsets(rd_kafka_t *rk, const char *topic) {
  const struct rd_kafka_metadata *md;
  rd_kafka_topic_t *t = rd_kafka_topic_new(rk, topic, NULL);
  rd_kafka_resp_err_t e = rd_kafka_metadata(rk, 0, t, &md, 5000);
  rd_kafka_topic_destroy(t);
  if (e) {
    fprintf(stderr, "kadmin: metadata for %s: %s\n", topic, rd_kafka_err2str(e));
    return 1;
  }
  int rc = md->topic_cnt == 1 && md->topics[0].err == 0 ? 0 : 1;
  for (int p = 0; rc == 0 && p < md->topics[0].partition_cnt; p++) {
    int64_t lo, hi;
    int32_t id = md->topics[0].partitions[p].id;
    e = rd_kafka_query_watermark_offsets(rk, topic, id, &lo, &hi, 5000);
    if (e) {
      fprintf(stderr, "kadmin: offsets of %s[%d]: %s\n", topic, id, rd_kafka_err2str(e));
      rc = 1;
    } else {
      printf("%d %lld %lld\n", id, (long long)lo, (long long)hi);
    }
  }
  rd_kafka_metadata_destroy(md);
  return rc;
}

static int cmd_leaders(rd_kafka_t *rk, const char *topic) {
  const struct rd_kafka_metadata *md;
  rd_kafka_topic_t *t = rd_kafka_topic_new(rk, topic, NULL);
  rd_kafka_resp_err_t e = rd_kafka_metadata(rk, 0, t, &md, 5000);
  rd_kafka_topic_destroy(t);
  if (e) {
    fprintf(stderr, "kadmin: metadata for %s: %s\n", topic, rd_kafka_err2str(e));
    return 1;
  }
  int rc = md->topic_cnt == 1 && md->topics[0].err == 0 ? 0 : 1;
  for (int p = 0; rc == 0 && p < md->topics[0].partition_cnt; p++)
    printf("%d %d\n", md->topics[0].partitions[p].id, md->topics[0].partitions[p].leader);
  if (rc) fprintf(stderr, "kadmin: no metadata for topic %s\n", topic);
  rd_kafka_metadata_destroy(md);
  return rc;
}

static int usage(void) {
  fprintf(stderr,
          "usage: kadmin wait [--timeout S] [--brokers N]\n"
          "       kadmin create [--partitions N] [--replication R] [--timeout S]\n"
          "                     [--topic-config TOPIC KEY=VALUE]...\n"
          "       kadmin leaders TOPIC\n"
          "       kadmin offsets TOPIC\n");
  return 2;
}

int main(int argc, char **argv) {
  if (argc < 2) return usage();
  const char *cmd = argv[1];
  int partitions = 4, replication = 1, brokers = 1, ntc = 0;
  double timeout = 60;
  const char *topic = NULL;
  topic_config tc[MAX_TOPIC_CONFIGS];
  for (int i = 2; i < argc; i++) {
    if (strcmp(argv[i], "--partitions") == 0 && i + 1 < argc) partitions = atoi(argv[++i]);
    else if (strcmp(argv[i], "--replication") == 0 && i + 1 < argc) replication = atoi(argv[++i]);
    else if (strcmp(argv[i], "--brokers") == 0 && i + 1 < argc) brokers = atoi(argv[++i]);
    else if (strcmp(argv[i], "--timeout") == 0 && i + 1 < argc) timeout = atof(argv[++i]);
    else if (strcmp(argv[i], "--topic-config") == 0 && i + 2 < argc && ntc < MAX_TOPIC_CONFIGS) {
      const char *kv = argv[i + 2], *eq = strchr(kv, '=');
      if (!eq || eq == kv || (size_t)(eq - kv) >= sizeof tc[ntc].key ||
          strlen(eq + 1) >= sizeof tc[ntc].value)
        return usage();
      tc[ntc].topic = argv[i + 1];
      snprintf(tc[ntc].key, sizeof tc[ntc].key, "%.*s", (int)(eq - kv), kv);
      snprintf(tc[ntc].value, sizeof tc[ntc].value, "%s", eq + 1);
      ntc++;
      i += 2;
    } else if ((strcmp(cmd, "leaders") == 0 || strcmp(cmd, "offsets") == 0) && !topic &&
               argv[i][0] != '-')
      topic = argv[i];
    else return usage();
  }
  if (partitions < 1 || partitions > 1000 || replication < 1 || replication > 9 || brokers < 1 ||
      timeout <= 0)
    return usage();
  char err[512];
  cfg c;
  if (cfg_load(&c, "kadmin", err, sizeof err)) {
    fprintf(stderr, "kadmin: %s\n", err);
    return 2;
  }
  rd_kafka_t *rk = connect_admin(c.kafka_bootstrap);
  if (!rk) return 1;
  double deadline = now_s() + timeout;
  int rc;
  if (strcmp(cmd, "wait") == 0) rc = cmd_wait(rk, deadline, brokers);
  else if (strcmp(cmd, "create") == 0)
    rc = cmd_create(rk, &c.topics, partitions, replication, tc, ntc, deadline);
  else if (strcmp(cmd, "leaders") == 0 && topic) rc = cmd_leaders(rk, topic);
  else if (strcmp(cmd, "offsets") == 0 && topic) rc = cmd_offsets(rk, topic);
  else rc = usage();
  rd_kafka_destroy(rk);
  cfg_close(&c);
  return rc;
}
