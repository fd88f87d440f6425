/* payctl load: open-loop load with end-to-end latency. Publishes N intents
 * from the generator (gen.h) at a fixed rate — each stamped with its
 * scheduled time, so a slow pipeline shows as latency, not as a slower
 * publisher — reads payments.outcomes from its end, and reports throughput
 * and latency percentiles (overall and per second of publication) as JSON.
 * --mix adds the lifecycle (load_mix.h): authorizations, captures, refunds
 * and voids, each operation published once its payment succeeded; every
 * request (payment or operation) counts with its own latency. */
#include <glib.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "clock.h"
#include "commands.h"
#include "event.h"
#include "gen.h"
#include "kafka_util.h"
#include "load_mix.h"
#include "opt.h"

static int cmp_i64(const void *a, const void *b) {
  int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
  return x < y ? -1 : x > y;
}

static double pct(const int64_t *v, size_t n, double p) {
  if (!n) return 0;
  size_t i = (size_t)(p / 100.0 * (double)(n - 1) + 0.5);
  return (double)v[i < n ? i : n - 1];
}

/* One answer: the second of the run it was published in, its latency. */
typedef struct timed {
  int64_t sec, ms;
} timed;

static int cmp_timed(const void *a, const void *b) {
  const timed *x = a, *y = b;
  if (x->sec != y->sec) return x->sec < y->sec ? -1 : 1;
  return x->ms < y->ms ? -1 : x->ms > y->ms;
}

/* Latency percentiles per second of publication: how latency moves during
 * a run (a pipeline that keeps up stays flat; one that falls behind, or a
 * broker whose cost grows with its log, climbs). */
static json_t *by_second(timed *t, size_t n) {
  qsort(t, n, sizeof *t, cmp_timed);
  json_t *arr = json_array();
  int64_t *v = malloc((n + 1) * sizeof *v);
  if (!v) abort();
  for (size_t i = 0; i < n;) {
    size_t j = i, k = 0;
    while (j < n && t[j].sec == t[i].sec) v[k++] = t[j++].ms;
    json_array_append_new(arr, json_pack("{s:I,s:I,s:f,s:f,s:f}", "second", (json_int_t)t[i].sec,
                                         "outcomes", (json_int_t)k, "p50", pct(v, k, 50), "p99",
                                         pct(v, k, 99), "max", (double)v[k - 1]));
    i = j;
  }
  free(v);
  return arr;
}

typedef struct load_opts {
  long long count, rate, timeout_s, seed;
  double declines, fraud, duplicates, repeat;
  const char *run, *json;
  load_mix mix;
} load_opts;

static const char LOAD_USAGE[] =
    "usage: payctl load [--count N] [--rate PER_S (0: as fast as possible)] [--run NAME]\n"
    "         [--declines PCT] [--fraud PCT] [--duplicates PCT] [--repeat-customers PCT]\n"
    "         [--timeout S] [--seed S] [--json FILE]\n"
    "         [--mix sale=60,authcap=25,refund=10,void=5]\n"
    "Publishes N intents open-loop (at a fixed rate, each stamped with its scheduled\n"
    "time, so a slow pipeline shows as latency, not as a slower publisher), reads\n"
    "payments.outcomes, and reports throughput and end-to-end latency percentiles.\n";

static int parse_load(int argc, char **argv, load_opts *o) {
  static const struct option longopts[] = {
      {"count", required_argument, NULL, 'n'},     {"rate", required_argument, NULL, 'r'},
      {"timeout", required_argument, NULL, 't'},   {"declines", required_argument, NULL, 'd'},
      {"fraud", required_argument, NULL, 'f'},     {"duplicates", required_argument, NULL, 'u'},
      {"repeat-customers", required_argument, NULL, 'c'},
      {"run", required_argument, NULL, 'R'},       {"json", required_argument, NULL, 'j'},
      {"seed", required_argument, NULL, 's'},      {"mix", required_argument, NULL, 'm'},
      {0, 0, 0, 0}};
  *o = (load_opts){.count = 20000, .rate = 0, .timeout_s = 120, .declines = 3, .fraud = 1,
                   .duplicates = 2, .repeat = 30, .run = "load", .seed = 42};
  opt_begin();
  for (int c; (c = opt_next(argc, argv, longopts)) != -1;) {
    int bad = 0;
    switch (c) {
    case 'n': bad = opt_long("--count", optarg, 1, 100000000, &o->count); break;
    case 'r': bad = opt_long("--rate", optarg, 0, 10000000, &o->rate); break;
    case 't': bad = opt_long("--timeout", optarg, 1, 86400, &o->timeout_s); break;
    case 's': bad = opt_long("--seed", optarg, 0, UINT32_MAX, &o->seed); break;
    case 'd': bad = opt_double("--declines", optarg, 0, 100, &o->declines); break;
    case 'f': bad = opt_double("--fraud", optarg, 0, 100, &o->fraud); break;
    case 'u': bad = opt_double("--duplicates", optarg, 0, 100, &o->duplicates); break;
    case 'c': bad = opt_double("--repeat-customers", optarg, 0, 100, &o->repeat); break;
    case 'R': o->run = optarg; break;
    case 'j': o->json = optarg; break;
    case 'm': bad = load_mix_parse(optarg, &o->mix); break;
    default: bad = 1;
    }
    if (bad) return -1;
  }
  if (optind != argc) return opt_usage("load", "takes no positional arguments"), -1;
  if (o->repeat >= 100)
    return opt_usage("load", "--repeat-customers must be below 100 %"), -1;
  if (o->declines + o->fraud > 100)
    return opt_usage("load", "--declines and --fraud add up to more than 100 %"), -1;
  return 0;
}

/* Consumer of payments.outcomes from its current end, so only this run's
 * outcomes (and later ones) are read. */
static rd_kafka_t *outcome_reader(payctl *p) {
  char group[64];
  snprintf(group, sizeof group, "payctl-load-%d", (int)getpid());
  rd_kafka_t *rk = kutil_consumer(&p->cfg, group, true);
  if (!rk) return NULL;
  const char *t = p->cfg.topics.outcomes;
  int np = kutil_partition_count(rk, t);
  if (np < 1) {
    rd_kafka_destroy(rk);
    return NULL;
  }
  rd_kafka_topic_partition_list_t *parts = rd_kafka_topic_partition_list_new(np);
  for (int i = 0; i < np; i++) {
    int64_t lo = 0, hi = 0;
    rd_kafka_query_watermark_offsets(rk, t, i, &lo, &hi, 10000);
    rd_kafka_topic_partition_list_add(parts, t, i)->offset = hi;
  }
  rd_kafka_assign(rk, parts);
  rd_kafka_topic_partition_list_destroy(parts);
  /* Fetching before the clock starts: every partition reports its end. */
  int eofs = 0;
  for (int64_t until = ps_mono_ms() + 15000; eofs < np && ps_mono_ms() < until;) {
    rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 100);
    if (!m) continue;
    if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) eofs++;
    rd_kafka_message_destroy(m);
  }
  return rk;
}

/* A run in progress: what was published, what came back. */
typedef struct run {
  load_opts o;
  gen g;
  gen_mix m;
  rd_kafka_t *reader;
  long ndup, nbase;
  gen_intent *bases;
  int64_t *arrived; /* monotonic, in order */
  timed *per;
  GHashTable *seen;
  long status[8], replayed, got, published, made;
  GHashTable *index;     /* --mix: payment key -> its index + 1 */
  unsigned char *flavour; /* --mix: each payment's flavour */
  long ops, flavours[MIX_N];
  unsigned rs;
  int64_t t0, w0, last_out, last_pub;
} run;

/* Publishes every message due by now: at the rate, or everything (in
 * slices, so the reader keeps up) as fast as possible. */
static void publish_due(run *r) {
  const load_opts *o = &r->o;
  long due = o->rate ? (long)((ps_mono_ms() - r->t0) * o->rate / 1000) + 1 : r->published + 2000;
  if (due > o->count) due = (long)o->count;
  while (r->published < due) {
    gen_intent *in;
    bool dup = r->made > 0 && r->ndup > 0 && (r->published - r->made) < r->ndup &&
               (r->made >= r->nbase || rand_r(&r->rs) % (unsigned)o->count < (unsigned)r->ndup);
    if (dup) {
      in = &r->bases[rand_r(&r->rs) % (unsigned)r->made]; /* a repeated request */
    } else {
      in = &r->bases[r->made];
      gen_base(in, &r->m, r->made, &r->rs);
      double x = (double)rand_r(&r->rs) / ((double)RAND_MAX + 1) * 100.0;
      if (x < o->declines) snprintf(in->pm, sizeof in->pm, "%s", gen_decline_pms[r->made % 3]);
      else if (x < o->declines + o->fraud) in->amount = 5000000; /* over the rules' limit */
      if (o->mix.on) {
        int f = load_mix_pick(&o->mix, &r->rs);
        r->flavour[r->made] = (unsigned char)f;
        r->flavours[f]++;
        in->kind = load_mix_kind(f);
        g_hash_table_insert(r->index, in->key, GSIZE_TO_POINTER(r->made + 1));
      }
      r->made++;
    }
    /* Open loop: the scheduled time, not when we got round to it. */
    r->g.stamp_ms = o->rate ? r->w0 + r->published * 1000 / o->rate : 0;
    gen_publish_intent(&r->g, in, false, RD_KAFKA_PARTITION_UA, NULL);
    r->published++;
    r->last_pub = ps_mono_ms();
  }
}

/* Reads the outcomes that arrived; the first answer per key counts,
 * `review` (held for an operator) included: it is what the merchant hears. */
static void read_outcomes(run *r) {
  size_t prefix = strlen(r->o.run);
  for (int k = 0; k < 5000; k++) {
    rd_kafka_message_t *msg = rd_kafka_consumer_poll(r->reader, k ? 0 : 1);
    if (!msg) break;
    ps_outcome *oc = msg->err ? NULL : outcome_decode(msg->payload, msg->len); /* EOFs too */
    if (oc && oc->idempotency_key && strncmp(oc->idempotency_key, r->o.run, prefix) == 0 &&
        oc->idempotency_key[prefix] == '-') {
      int64_t wall = ps_now_ms();
      if (oc->replayed) {
        r->replayed++;
      } else if (!g_hash_table_contains(r->seen, oc->idempotency_key) &&
                 r->got < 2 * r->nbase) {
        g_hash_table_add(r->seen, g_strdup(oc->idempotency_key));
        r->arrived[r->got] = ps_mono_ms();
        r->per[r->got].sec = oc->published_at_ms > r->w0 ? (oc->published_at_ms - r->w0) / 1000 : 0;
        r->per[r->got++].ms = wall - oc->published_at_ms;
        if ((int)oc->status >= 0 && oc->status < 8) r->status[oc->status]++;
        r->last_out = ps_mono_ms();
      }
      /* --mix: the payment succeeded (after a pending or review answer,
       * too); its operation follows, once (0x80: sent). */
      gsize i = r->index ? GPOINTER_TO_SIZE(g_hash_table_lookup(r->index, oc->idempotency_key)) : 0;
      if (i && oc->status == OUTCOME_SUCCEEDED && !oc->operation_id[0] &&
          !(r->flavour[i - 1] & 0x80) &&
          load_mix_follow(&r->g, &r->bases[i - 1], r->flavour[i - 1])) {
        r->flavour[i - 1] |= 0x80;
        r->ops++;
      }
    }
    outcome_free(oc);
    rd_kafka_message_destroy(msg);
  }
}

/* The run's result as one JSON object. */
static json_t *result(run *r) {
  long got = r->got;
  int64_t *lat = calloc((size_t)got + 1, sizeof *lat);
  if (!lat) abort();
  for (long i = 0; i < got; i++) lat[i] = r->per[i].ms;
  qsort(lat, (size_t)got, sizeof *lat, cmp_i64);
  double secs = (double)(r->last_out - r->t0) / 1000.0;
  double pub_secs = (double)(r->last_pub - r->t0) / 1000.0;
  /* Sustained: the rate between the 10th and the 90th percentile of
   * arrivals, without the pipeline filling up and draining. */
  long i10 = got / 10, i90 = got * 9 / 10;
  int64_t span = got >= 10 ? r->arrived[i90] - r->arrived[i10] : 0;
  double sustained = span > 0 ? (double)(i90 - i10) * 1000.0 / (double)span : 0.0;
  double mean = 0;
  for (long i = 0; i < got; i++) mean += (double)lat[i];
  mean = got ? mean / (double)got : 0;
  const long *st = r->status;
  json_t *res = json_pack(
      "{s:s,s:I,s:I,s:I,s:I,s:I,s:f,s:f,s:f,s:{s:f,s:f,s:f,s:f,s:f,s:f},"
      "s:{s:I,s:I,s:I,s:I,s:I,s:I},s:f}",
      "run", r->o.run, "rate_target", (json_int_t)r->o.rate, "published", (json_int_t)r->published,
      "payments", (json_int_t)r->nbase, "outcomes", (json_int_t)got, "replayed",
      (json_int_t)r->replayed, "publish_rate", pub_secs > 0 ? (double)r->published / pub_secs : 0.0,
      "seconds", secs, "throughput", secs > 0 ? (double)got / secs : 0.0, "latency_ms", "p50",
      pct(lat, (size_t)got, 50), "p90", pct(lat, (size_t)got, 90), "p99", pct(lat, (size_t)got, 99),
      "p99_9", pct(lat, (size_t)got, 99.9), "max", got ? (double)lat[got - 1] : 0.0, "mean", mean,
      "status", "succeeded", (json_int_t)st[PAYMENTS__V1__OUTCOME_STATUS__OUTCOME_STATUS_SUCCEEDED],
      "declined", (json_int_t)st[PAYMENTS__V1__OUTCOME_STATUS__OUTCOME_STATUS_DECLINED],
      "blocked", (json_int_t)st[PAYMENTS__V1__OUTCOME_STATUS__OUTCOME_STATUS_BLOCKED],
      "failed", (json_int_t)st[PAYMENTS__V1__OUTCOME_STATUS__OUTCOME_STATUS_FAILED],
      "rejected", (json_int_t)st[PAYMENTS__V1__OUTCOME_STATUS__OUTCOME_STATUS_REJECTED],
      "review", (json_int_t)st[PAYMENTS__V1__OUTCOME_STATUS__OUTCOME_STATUS_REVIEW],
      "sustained", sustained);
  json_object_set_new(json_object_get(res, "latency_ms"), "p95", json_real(pct(lat, (size_t)got, 95)));
  json_object_set_new(res, "latency_by_second", by_second(r->per, (size_t)got));
  if (r->o.mix.on) {
    json_t *mx = json_object();
    for (int f = 0; f < MIX_N; f++)
      json_object_set_new(mx, load_mix_name(f), json_integer(r->flavours[f]));
    json_object_set_new(mx, "operations", json_integer(r->ops));
    json_object_set_new(res, "mix", mx);
    json_object_set_new(res, "expired", json_integer(st[OUTCOME_EXPIRED]));
  }
  free(lat);
  return res;
}

/* Publishes and reads until every payment has its answer or the timeout
 * after the last publication passes. */
static void drive(run *r) {
  int64_t deadline = 0, next_report = r->t0 + 1000;
  while (r->got < r->nbase + r->ops) {
    publish_due(r);
    if (r->published == r->o.count && !deadline)
      deadline = ps_mono_ms() + r->o.timeout_s * 1000;
    rd_kafka_poll(r->g.producer, 0);
    read_outcomes(r);
    int64_t now = ps_mono_ms();
    if (now >= next_report) {
      fprintf(stderr, "load: %6.1f s  published %ld (%.0f/s)  outcomes %ld (%.0f/s)\n",
              (double)(now - r->t0) / 1000, r->published,
              (double)r->published * 1000 / (double)(now - r->t0 + 1), r->got,
              (double)r->got * 1000 / (double)(now - r->t0 + 1));
      next_report = now + 1000;
    }
    if (deadline && now > deadline) {
      fprintf(stderr, "load: timed out with %ld of %ld outcomes\n", r->got, r->nbase + r->ops);
      break;
    }
  }
  gen_flush(&r->g);
}

static void write_result(const run *r, const char *js) {
  printf("%s\n", js);
  if (!r->o.json) return;
  FILE *f = fopen(r->o.json, "w");
  if (!f) {
    fprintf(stderr, "payctl: could not write %s\n", r->o.json);
    return;
  }
  fprintf(f, "%s\n", js);
  fclose(f);
}

int cmd_load(payctl *p, int argc, char **argv) {
  static run r;
  memset(&r, 0, sizeof r);
  if (parse_load(argc, argv, &r.o)) {
    fputs(LOAD_USAGE, stderr);
    return PAYCTL_USAGE;
  }
  char err[512];
  if (gen_open(&r.g, &p->cfg, NULL, err, sizeof err)) {
    fprintf(stderr, "payctl: %s\n", err);
    return PAYCTL_UNAVAILABLE;
  }
  r.reader = outcome_reader(p);
  if (!r.reader) {
    fprintf(stderr, "payctl: could not read %s\n", p->cfg.topics.outcomes);
    gen_close(&r.g);
    return PAYCTL_UNAVAILABLE;
  }
  /* Connected, with the topic's metadata, before the clock starts. */
  if (kutil_partition_count(r.g.producer, r.g.topic) < 1)
    fprintf(stderr, "payctl: no metadata for %s\n", r.g.topic);
  r.m = (gen_mix){.run = r.o.run, .seed = (unsigned)r.o.seed};
  r.m.customers = (long)((double)r.o.count * (1 - r.o.repeat / 100.0));
  if (r.m.customers < 1) r.m.customers = 1;
  r.ndup = (long)((double)r.o.count * r.o.duplicates / 100.0);
  r.nbase = (long)r.o.count - r.ndup;
  r.bases = calloc((size_t)r.nbase + 1, sizeof *r.bases);
  r.arrived = calloc(2 * (size_t)r.nbase + 1, sizeof *r.arrived); /* payments + operations */
  r.per = calloc(2 * (size_t)r.nbase + 1, sizeof *r.per);
  r.flavour = calloc((size_t)r.nbase + 1, 1);
  if (r.o.mix.on) r.index = g_hash_table_new(g_str_hash, g_str_equal);
  r.seen = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
  if (!r.bases || !r.arrived || !r.per || !r.flavour) abort();
  r.rs = r.m.seed;
  r.t0 = ps_mono_ms();
  r.w0 = ps_now_ms();
  drive(&r);
  json_t *res = result(&r);
  char *js = json_dumps(res, JSON_COMPACT);
  write_result(&r, js);
  free(js);
  json_decref(res);
  g_hash_table_destroy(r.seen);
  free(r.bases);
  free(r.arrived);
  free(r.per);
  free(r.flavour);
  if (r.index) g_hash_table_destroy(r.index);
  rd_kafka_destroy(r.reader);
  int rc = r.got == r.nbase + r.ops ? PAYCTL_OK : PAYCTL_FAILED;
  if (r.g.failed) rc = PAYCTL_UNAVAILABLE;
  gen_close(&r.g);
  return rc;
}
