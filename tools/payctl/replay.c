/* payctl replay | lag: a stage's consumer-group offsets. replay moves them
 * back (to the earliest retained offset or a given offset) so the stage
 * re-processes its input — every stage re-emits its stored results and
 * changes nothing. It joins the group to commit (as a member, which every
 * broker accepts) and refuses when other members are alive — they would
 * overwrite the new offsets with their own commits — unless --force. lag prints committed offset, end offset and lag per partition. */
#include <stdbool.h>
#include <time.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kafka.h"
#include "payctl.h"

static const char *stage_topic(const cfg *c, const char *stage) {
  if (strcmp(stage, "ingest") == 0) return c->topics.intents;
  if (strcmp(stage, "fraud") == 0) return c->topics.requests;
  if (strcmp(stage, "charge") == 0) return c->topics.fraud_scored;
  if (strcmp(stage, "ledger") == 0) return c->topics.charged;
  return NULL;
}

/* A consumer handle in the stage's group; it never processes a message. */
rd_kafka_t *payctl_group_handle(payctl *p, const char *group) {
  return payctl_consumer(p, group, false);
}

rd_kafka_t *payctl_consumer(payctl *p, const char *group, bool partition_eof) {
  char err[512];
  rd_kafka_conf_t *conf = rd_kafka_conf_new();
  if (rd_kafka_conf_set(conf, "bootstrap.servers", p->cfg.kafka_bootstrap, err, sizeof err) ||
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
  if (!rk) fprintf(stderr, "payctl: %s\n", err);
  return rk;
}

int payctl_partition_count(rd_kafka_t *rk, const char *topic) {
  const rd_kafka_metadata_t *md = NULL;
  rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topic, NULL);
  int n = -1;
  if (rd_kafka_metadata(rk, 0, rkt, &md, 10000) == 0 && md->topic_cnt == 1 && !md->topics[0].err)
    n = md->topics[0].partition_cnt;
  if (md) rd_kafka_metadata_destroy(md);
  rd_kafka_topic_destroy(rkt);
  return n;
}

/* Joins the group and waits for the assignment. Committing as a member is
 * what every broker accepts (the development broker refuses commits from
 * outside the group), and the assignment answers the safety question: if we
 * are not given every partition, other members are alive. Returns the
 * assigned list (caller destroys) or NULL on timeout. */
rd_kafka_topic_partition_list_t *payctl_join_group(rd_kafka_t *rk, const char *topic,
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

/* Reads the timestamp of the first message at or after offset (reader is a
 * handle that never joins the group). Returns -1 if none arrives. */
static int64_t timestamp_at(rd_kafka_t *reader, const char *topic, int32_t partition,
                            int64_t offset) {
  rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
  rd_kafka_topic_partition_list_add(l, topic, partition)->offset = offset;
  rd_kafka_assign(reader, l);
  rd_kafka_topic_partition_list_destroy(l);
  int64_t ts = -1, deadline = ps_mono_ms() + 10000;
  while (ts < 0 && ps_mono_ms() < deadline) {
    rd_kafka_message_t *m = rd_kafka_consumer_poll(reader, 200);
    if (!m) continue;
    if (!m->err && m->partition == partition && m->offset >= offset) ts = rd_kafka_message_timestamp(m, NULL);
    rd_kafka_message_destroy(m);
  }
  rd_kafka_assign(reader, NULL);
  return ts;
}

/* The first offset in [lo, hi) whose message was produced at or after
 * when_ms: the broker's own index when it has one (offsets_for_times), else
 * a binary search over message timestamps (devbroker has no index; a
 * partition's timestamps are assumed to grow, as producer timestamps do). */
static int64_t offset_for_time(rd_kafka_t *rk, rd_kafka_t *reader, const char *topic,
                               int32_t partition, int64_t lo, int64_t hi, int64_t when_ms) {
  rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
  rd_kafka_topic_partition_list_add(l, topic, partition)->offset = when_ms;
  rd_kafka_resp_err_t err = rd_kafka_offsets_for_times(rk, l, 10000);
  int64_t found = err ? -1 : l->elems[0].offset;
  rd_kafka_topic_partition_list_destroy(l);
  if (found >= lo && found <= hi) return found;
  int64_t a = lo, b = hi; /* invariant: answer in [a, b] */
  while (a < b) {
    int64_t mid = a + (b - a) / 2;
    int64_t ts = timestamp_at(reader, topic, partition, mid);
    if (ts < 0) return -1;
    if (ts >= when_ms) b = mid;
    else a = mid + 1;
  }
  return a;
}

/* RFC 3339 (2026-11-25T10:00:00Z, optional fraction, Z or +hh:mm) to epoch ms. */
static int64_t parse_rfc3339(const char *s) {
  struct tm tm;
  memset(&tm, 0, sizeof tm);
  const char *rest = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm);
  if (!rest) return -1;
  int64_t ms = 0;
  if (*rest == '.') {
    int digits = 0;
    for (rest++; *rest >= '0' && *rest <= '9'; rest++, digits++)
      if (digits < 3) ms = ms * 10 + (*rest - '0');
    for (; digits < 3; digits++) ms *= 10;
  }
  int64_t offset_s = 0;
  if (*rest == 'Z') {
    rest++;
  } else if (*rest == '+' || *rest == '-') {
    int hh, mm;
    if (sscanf(rest + 1, "%2d:%2d", &hh, &mm) != 2) return -1;
    offset_s = (hh * 3600 + mm * 60) * (*rest == '+' ? 1 : -1);
    rest += 6;
  } else {
    return -1;
  }
  if (*rest) return -1;
  return ((int64_t)timegm(&tm) - offset_s) * 1000 + ms;
}

typedef struct opts {
  const char *stage, *to_offset, *to_time, *partitions;
  bool force;
} opts;

static bool wanted(const char *list, int partition) {
  if (!list) return true;
  char *copy = strdup(list), *save = NULL;
  bool yes = false;
  for (char *t = strtok_r(copy, ",", &save); t && !yes; t = strtok_r(NULL, ",", &save))
    yes = atoi(t) == partition;
  free(copy);
  return yes;
}

int cmd_replay(payctl *p, int argc, char **argv) {
  opts o = {0};
  for (int i = 0; i < argc; i++) {
    if (strcmp(argv[i], "--stage") == 0 && i + 1 < argc) o.stage = argv[++i];
    else if (strcmp(argv[i], "--to-offset") == 0 && i + 1 < argc) o.to_offset = argv[++i];
    else if (strcmp(argv[i], "--to-time") == 0 && i + 1 < argc) o.to_time = argv[++i];
    else if (strcmp(argv[i], "--partitions") == 0 && i + 1 < argc) o.partitions = argv[++i];
    else if (strcmp(argv[i], "--force") == 0) o.force = true;
    else o.stage = NULL, i = argc;
  }
  const char *topic = o.stage ? stage_topic(&p->cfg, o.stage) : NULL;
  int64_t when_ms = o.to_time ? parse_rfc3339(o.to_time) : 0;
  if (!topic || !o.to_offset == !o.to_time || when_ms < 0) {
    fprintf(stderr, "usage: payctl replay --stage ingest|fraud|charge|ledger\n"
                    "         (--to-offset earliest|<n> | --to-time 2026-11-25T10:00:00Z)\n"
                    "         [--partitions 0,1,...] [--force]\n");
    return 2;
  }
  const char *group = cfg_env_str("PAYSTREAM_GROUP_ID", o.stage);
  rd_kafka_t *rk = payctl_group_handle(p, group);
  if (!rk) return 1;
  int rc = 1;
  int np = payctl_partition_count(rk, topic);
  printf("joining group %s to move its offsets...\n", group);
  rd_kafka_topic_partition_list_t *mine = np > 0 ? payctl_join_group(rk, topic, 60) : NULL;
  rd_kafka_t *reader = o.to_time ? payctl_group_handle(p, "payctl-replay-reader") : NULL;
  int missing = 0;
  for (int i = 0; mine && i < np; i++)
    if (wanted(o.partitions, i) && !rd_kafka_topic_partition_list_find(mine, topic, i)) missing++;
  if (np < 1) {
    fprintf(stderr, "payctl: no such topic %s\n", topic);
  } else if (!mine) {
    fprintf(stderr, "payctl: could not join group %s\n", group);
  } else if (missing && !o.force) {
    fprintf(stderr,
            "payctl: group %s has live members holding %d of the partitions; stop the %s "
            "workers first (or --force to move only the partitions given to us)\n",
            group, missing, o.stage);
  } else {
    rd_kafka_topic_partition_list_t *offs = rd_kafka_topic_partition_list_new(np);
    for (int i = 0; i < np; i++) {
      if (!wanted(o.partitions, i) || !rd_kafka_topic_partition_list_find(mine, topic, i))
        continue;
      int64_t lo = 0, hi = 0;
      rd_kafka_query_watermark_offsets(rk, topic, i, &lo, &hi, 10000);
      int64_t to = o.to_time ? offset_for_time(rk, reader, topic, i, lo, hi, when_ms)
                   : strcmp(o.to_offset, "earliest") == 0 ? lo
                                                          : atoll(o.to_offset);
      if (to < 0) {
        fprintf(stderr, "payctl: could not find %s in %s[%d]\n", o.to_time, topic, i);
        missing = 1;
        break;
      }
      if (to < lo) to = lo; /* older messages are gone: start at the oldest kept */
      if (to > hi) to = hi;
      rd_kafka_topic_partition_list_add(offs, topic, i)->offset = to;
      printf("%s[%d]: group %s moves to offset %lld (retained %lld..%lld)\n", topic, i, group,
             (long long)to, (long long)lo, (long long)hi);
    }
    rd_kafka_resp_err_t err = missing && !o.force ? RD_KAFKA_RESP_ERR__FAIL : rd_kafka_commit(rk, offs, 0);
    if (err) fprintf(stderr, "payctl: could not commit offsets: %s\n", rd_kafka_err2str(err));
    else printf("replay of %s set: the next %s workers re-process from there\n", topic, o.stage);
    rc = err ? 1 : 0;
    rd_kafka_topic_partition_list_destroy(offs);
  }
  if (mine) rd_kafka_topic_partition_list_destroy(mine);
  if (reader) {
    rd_kafka_consumer_close(reader);
    rd_kafka_destroy(reader);
  }
  rd_kafka_consumer_close(rk);
  rd_kafka_destroy(rk);
  return rc;
}

int cmd_lag(payctl *p, int argc, char **argv) {
  const char *stage = argc == 2 && strcmp(argv[0], "--stage") == 0 ? argv[1] : NULL;
  const char *topic = stage ? stage_topic(&p->cfg, stage) : NULL;
  if (!topic) {
    fprintf(stderr, "usage: payctl lag --stage ingest|fraud|charge|ledger\n");
    return 2;
  }
  rd_kafka_t *rk = payctl_group_handle(p, cfg_env_str("PAYSTREAM_GROUP_ID", stage));
  if (!rk) return 1;
  int np = payctl_partition_count(rk, topic);
  rd_kafka_topic_partition_list_t *parts = rd_kafka_topic_partition_list_new(np > 0 ? np : 1);
  for (int i = 0; i < np; i++) rd_kafka_topic_partition_list_add(parts, topic, i);
  int rc = 1;
  if (np > 0 && rd_kafka_committed(rk, parts, 10000) == 0) {
    long long total = 0;
    for (int i = 0; i < np; i++) {
      int64_t lo = 0, hi = 0;
      rd_kafka_query_watermark_offsets(rk, topic, i, &lo, &hi, 10000);
      int64_t at = parts->elems[i].offset < 0 ? lo : parts->elems[i].offset;
      printf("%s[%d] committed %lld end %lld lag %lld\n", topic, i, (long long)at, (long long)hi,
             (long long)(hi - at));
      total += hi - at;
    }
    printf("total lag %lld\n", total);
    rc = 0;
  } else {
    fprintf(stderr, "payctl: could not read committed offsets\n");
  }
  rd_kafka_topic_partition_list_destroy(parts);
  rd_kafka_destroy(rk);
  return rc;
}
