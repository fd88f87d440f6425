/* payctl replay | lag: a stage's consumer-group offsets. replay moves them
 * back (to the earliest retained offset, a given offset, or the first
 * message produced at or after a time) so the stage re-processes its input
 * — every stage re-emits its stored results and changes nothing. It joins
 * the group to commit (as a member, which every broker accepts) and refuses
 * when other members are alive — they would overwrite the new offsets with
 * their own commits — unless --force. lag prints committed offset, end
 * offset and lag per partition. */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <glib.h>

#include "clock.h"
#include "commands.h"
#include "kafka_util.h"
#include "opt.h"
#include "pg.h" /* ps_mono_ms */

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
    if (!m->err && m->partition == partition && m->offset >= offset)
      ts = rd_kafka_message_timestamp(m, NULL);
    rd_kafka_message_destroy(m);
  }
  rd_kafka_assign(reader, NULL);
  return ts;
}

/* The first offset in [lo, hi) whose message was produced at or after
 * when_ms: the broker's time index (offsets_for_times); should the lookup
 * fail or answer outside the partition's range, a binary search over message
 * timestamps (a partition's timestamps are assumed to grow, as producer
 * timestamps do). */
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

#define MAX_PARTITIONS 1024

typedef struct replay_opts {
  const char *stage, *topic, *to_time;
  bool to_earliest, have_offset, force;
  int64_t to_offset, when_ms;
  int npart;                     /* 0: every partition */
  int32_t parts[MAX_PARTITIONS]; /* --partitions */
} replay_opts;

static bool wanted(const replay_opts *o, int32_t partition) {
  for (int i = 0; i < o->npart; i++)
    if (o->parts[i] == partition) return true;
  return o->npart == 0;
}

/* --partitions 0,1,...: each a whole number. */
static int parse_partitions(replay_opts *o, const char *list) {
  gchar **items = g_strsplit(list, ",", -1);
  int rc = 0;
  for (gchar **it = items; *it && rc == 0; it++) {
    long long v;
    if (o->npart == MAX_PARTITIONS || opt_long("--partitions", *it, 0, MAX_PARTITIONS - 1, &v))
      rc = -1;
    else o->parts[o->npart++] = (int32_t)v;
  }
  g_strfreev(items);
  return rc;
}

static const char REPLAY_USAGE[] =
    "usage: payctl replay --stage ingest|fraud|charge|ledger\n"
    "         (--to-offset earliest|<n> | --to-time 2026-11-25T10:00:00Z)\n"
    "         [--partitions 0,1,...] [--force]\n";

static int parse_replay(const payctl *p, int argc, char **argv, replay_opts *o) {
  static const struct option longopts[] = {
      {"stage", required_argument, NULL, 's'},      {"to-offset", required_argument, NULL, 'o'},
      {"to-time", required_argument, NULL, 't'},    {"partitions", required_argument, NULL, 'p'},
      {"force", no_argument, NULL, 'f'},            {0, 0, 0, 0}};
  opt_begin();
  for (int c; (c = opt_next(argc, argv, longopts)) != -1;) {
    long long v;
    switch (c) {
    case 's': o->stage = optarg; break;
    case 'o':
      o->have_offset = true;
      o->to_earliest = strcmp(optarg, "earliest") == 0;
      if (!o->to_earliest && opt_long("--to-offset", optarg, 0, INT64_MAX, &v)) return -1;
      o->to_offset = o->to_earliest ? 0 : v;
      break;
    case 't':
      o->to_time = optarg;
      if (opt_time_ms("--to-time", optarg, &o->when_ms)) return -1;
      break;
    case 'p':
      if (parse_partitions(o, optarg)) return -1;
      break;
    case 'f': o->force = true; break;
    default: return -1;
    }
  }
  if (optind < argc) return opt_usage("replay", "takes no positional arguments"), -1;
  o->topic = o->stage ? kutil_stage_topic(&p->cfg, o->stage) : NULL;
  if (!o->topic) return opt_usage("replay", "--stage must be ingest, fraud, charge or ledger"), -1;
  if (o->have_offset == !!o->to_time)
    return opt_usage("replay", "give exactly one of --to-offset and --to-time"), -1;
  return 0;
}

/* Commits the new offsets of the partitions we were given. */
static int move_offsets(rd_kafka_t *rk, rd_kafka_t *reader, const replay_opts *o,
                        const char *group, int np, rd_kafka_topic_partition_list_t *mine) {
  rd_kafka_topic_partition_list_t *offs = rd_kafka_topic_partition_list_new(np);
  int rc = PAYCTL_OK;
  for (int i = 0; i < np && rc == PAYCTL_OK; i++) {
    if (!wanted(o, i) || !rd_kafka_topic_partition_list_find(mine, o->topic, i)) continue;
    int64_t lo = 0, hi = 0;
    rd_kafka_query_watermark_offsets(rk, o->topic, i, &lo, &hi, 10000);
    int64_t to = o->to_time       ? offset_for_time(rk, reader, o->topic, i, lo, hi, o->when_ms)
                 : o->to_earliest ? lo
                                  : o->to_offset;
    if (to < 0) {
      fprintf(stderr, "payctl: could not find %s in %s[%d]\n", o->to_time, o->topic, i);
      rc = PAYCTL_FAILED;
      break;
    }
    if (to < lo) to = lo; /* older messages are gone: start at the oldest kept */
    if (to > hi) to = hi;
    rd_kafka_topic_partition_list_add(offs, o->topic, i)->offset = to;
    printf("%s[%d]: group %s moves to offset %lld (retained %lld..%lld)\n", o->topic, i, group,
           (long long)to, (long long)lo, (long long)hi);
  }
  if (rc == PAYCTL_OK) {
    rd_kafka_resp_err_t err = rd_kafka_commit(rk, offs, 0);
    if (err) {
      fprintf(stderr, "payctl: could not commit offsets: %s\n", rd_kafka_err2str(err));
      rc = PAYCTL_UNAVAILABLE;
    } else {
      printf("replay of %s set: the next %s workers re-process from there\n", o->topic, o->stage);
    }
  }
  rd_kafka_topic_partition_list_destroy(offs);
  return rc;
}

int cmd_replay(payctl *p, int argc, char **argv) {
  static replay_opts o;
  memset(&o, 0, sizeof o);
  if (parse_replay(p, argc, argv, &o)) {
    fputs(REPLAY_USAGE, stderr);
    return PAYCTL_USAGE;
  }
  const char *group = cfg_env_str("PAYSTREAM_GROUP_ID", o.stage);
  rd_kafka_t *rk = kutil_consumer(&p->cfg, group, false);
  if (!rk) return PAYCTL_UNAVAILABLE;
  int np = kutil_partition_count(rk, o.topic);
  printf("joining group %s to move its offsets...\n", group);
  rd_kafka_topic_partition_list_t *mine = np > 0 ? kutil_join_group(rk, o.topic, 60) : NULL;
  rd_kafka_t *reader = o.to_time ? kutil_consumer(&p->cfg, "payctl-replay-reader", false) : NULL;
  int missing = 0;
  for (int i = 0; mine && i < np; i++)
    if (wanted(&o, i) && !rd_kafka_topic_partition_list_find(mine, o.topic, i)) missing++;
  int rc;
  if (np < 1) {
    fprintf(stderr, np == -1 ? "payctl: no such topic %s\n" : "payctl: no metadata for %s\n",
            o.topic);
    rc = np == -1 ? PAYCTL_NOT_FOUND : PAYCTL_UNAVAILABLE;
  } else if (!mine || (o.to_time && !reader)) {
    fprintf(stderr, "payctl: could not join group %s\n", group);
    rc = PAYCTL_UNAVAILABLE;
  } else if (missing && !o.force) {
    fprintf(stderr,
            "payctl: group %s has live members holding %d of the partitions; stop the %s "
            "workers first (or --force to move only the partitions given to us)\n",
            group, missing, o.stage);
    rc = PAYCTL_REFUSED;
  } else {
    rc = move_offsets(rk, reader, &o, group, np, mine);
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
  static const struct option longopts[] = {{"stage", required_argument, NULL, 's'},
                                            {0, 0, 0, 0}};
  const char *stage = NULL;
  opt_begin();
  for (int c; (c = opt_next(argc, argv, longopts)) != -1;) {
    if (c != 's') return opt_usage("lag", "usage: payctl lag --stage ingest|fraud|charge|ledger");
    stage = optarg;
  }
  const char *topic = stage && optind == argc ? kutil_stage_topic(&p->cfg, stage) : NULL;
  if (!topic) return opt_usage("lag", "usage: payctl lag --stage ingest|fraud|charge|ledger");
  rd_kafka_t *rk = kutil_consumer(&p->cfg, cfg_env_str("PAYSTREAM_GROUP_ID", stage), false);
  if (!rk) return PAYCTL_UNAVAILABLE;
  int np = kutil_partition_count(rk, topic);
  rd_kafka_topic_partition_list_t *parts = rd_kafka_topic_partition_list_new(np > 0 ? np : 1);
  for (int i = 0; i < np; i++) rd_kafka_topic_partition_list_add(parts, topic, i);
  int rc = PAYCTL_UNAVAILABLE;
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
    rc = PAYCTL_OK;
  } else if (np == -1) {
    fprintf(stderr, "payctl: no such topic %s\n", topic);
    rc = PAYCTL_NOT_FOUND;
  } else {
    fprintf(stderr, "payctl: could not read committed offsets\n");
  }
  rd_kafka_topic_partition_list_destroy(parts);
  rd_kafka_destroy(rk);
  return rc;
}
