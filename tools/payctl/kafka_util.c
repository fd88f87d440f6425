/* kafka_util: see kafka_util.h. */
#include "kafka_util.h"

#include <stdio.h>
#include <string.h>

#include "kafka.h"
#include "clock.h"

rd_kafka_t *kutil_consumer(const cfg *c, const char *group, bool partition_eof) {
  char err[512];
  rd_kafka_conf_t *conf = rd_kafka_conf_new();
  if (rd_kafka_conf_set(conf, "bootstrap.servers", c->kafka_bootstrap, err, sizeof err) ||
      rd_kafka_conf_set(conf, "enable.partition.eof", partition_eof ? "true" : "false", err,
                        sizeof err) ||
      rd_kafka_conf_set(conf, "group.id", group, err, sizeof err) ||
      rd_kafka_conf_set(conf, "enable.auto.commit", "false", err, sizeof err) ||
      rd_kafka_conf_set(conf, "socket.nagle.disable", "true", err, sizeof err) ||
      rd_kafka_conf_set(conf, "session.timeout.ms", "6000", err, sizeof err) ||
      rd_kafka_conf_set(conf, "fetch.wait.max.ms", "10", err, sizeof err) ||
      kafka_apply_extra(conf, err, sizeof err)) {
    fprintf(stderr, "payctl: %s\n", err);
    rd_kafka_conf_destroy(conf);
    return NULL;
  }
  rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof err);
  if (!rk) {
    fprintf(stderr, "payctl: %s\n", err);
    rd_kafka_conf_destroy(conf); /* rd_kafka_new owns conf only when it succeeds */
  }
  return rk; /* conf is now owned by rk */
}

int kutil_partition_count(rd_kafka_t *rk, const char *topic) {
  const rd_kafka_metadata_t *md = NULL;
  rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topic, NULL);
  int n = -2;
  if (rd_kafka_metadata(rk, 0, rkt, &md, 10000) == 0)
    n = md->topic_cnt == 1 && !md->topics[0].err ? md->topics[0].partition_cnt : -1;
  if (md) rd_kafka_metadata_destroy(md);
  rd_kafka_topic_destroy(rkt);
  return n;
}

/* Committing as a member is what every broker accepts (the development
 * broker refuses commits from outside the group), and the assignment
 * answers the safety question: if we are not given every partition, other
 * members are alive. */
rd_kafka_topic_partition_list_t *kutil_join_group(rd_kafka_t *rk, const char *topic,
                                                  int timeout_s) {
  rd_kafka_topic_partition_list_t *sub = rd_kafka_topic_partition_list_new(1);
  rd_kafka_topic_partition_list_add(sub, topic, RD_KAFKA_PARTITION_UA);
  rd_kafka_resp_err_t err = rd_kafka_subscribe(rk, sub);
  rd_kafka_topic_partition_list_destroy(sub);
  if (err) return NULL;
  int64_t deadline = ps_mono_ms() + timeout_s * 1000LL;
  rd_kafka_topic_partition_list_t *assigned = NULL;
  while (ps_mono_ms() < deadline) {
    rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 200);
    if (m) rd_kafka_message_destroy(m); /* never processed, never committed */
    if (rd_kafka_assignment(rk, &assigned) == 0 && assigned->cnt > 0) return assigned;
    if (assigned) rd_kafka_topic_partition_list_destroy(assigned);
    assigned = NULL;
  }
  return NULL;
}

const char *kutil_stage_topic(const cfg *c, const char *stage) {
  if (strcmp(stage, "ingest") == 0) return c->topics.intents;
  if (strcmp(stage, "fraud") == 0) return c->topics.requests;
  if (strcmp(stage, "charge") == 0) return c->topics.fraud_scored;
  if (strcmp(stage, "ledger") == 0) return c->topics.charged;
  return NULL;
}
