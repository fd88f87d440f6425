/* payctl publish: generates intents as upstream would publish them, with a
 * chosen mix of duplicates, reused keys, declines, fraud, invalid and
 * undecodable messages, and writes a manifest (JSON lines: what each
 * message is and what it must end as) that tests and the demo check
 * against. */
#include <glib.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "event.h"
#include "intent_json.h"
#include "kafka.h"
#include "payctl.h"

typedef struct mix {
  long count, duplicates, conflicts, declines, fraud, slow, invalid, garbage;
  long cross; /* duplicates produced to another partition than their original */
  long customers; /* distinct customers (repeat customers trip velocity rules) */
  long fuzz;      /* valid intents with random damage: bit flips, cuts, junk */
  long padding;   /* bytes of metadata added to every valid intent */
  unsigned seed;
  const char *manifest, *run;
} mix;

typedef struct gen_intent {
  char key[320], merchant[32], customer[32], pm[64], currency[4];
  int64_t amount;
  int64_t created_at_ms;
  int32_t partition; /* where the original landed (from the delivery report) */
} gen_intent;

static rd_kafka_t *producer;
static const char *topic;
static FILE *manifest;
static long produced;

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque) {
  (void)rk;
  (void)opaque;
  if (m->err) fprintf(stderr, "payctl: delivery failed: %s\n", rd_kafka_err2str(m->err));
  else if (m->_private) ((gen_intent *)m->_private)->partition = m->partition;
}

/* Produces to partition (RD_KAFKA_PARTITION_UA: the partitioner decides);
 * the delivery report writes the partition into track when set. */
static void produce(const char *key, const void *val, size_t len, int32_t partition,
                    gen_intent *track) {
  for (;;) {
    rd_kafka_resp_err_t e = rd_kafka_producev(
        producer, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_KEY(key, strlen(key)),
        RD_KAFKA_V_PARTITION(partition), RD_KAFKA_V_OPAQUE(track),
        RD_KAFKA_V_VALUE((void *)val, len), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
        RD_KAFKA_V_END);
    if (!e) break;
    if (e != RD_KAFKA_RESP_ERR__QUEUE_FULL) {
      fprintf(stderr, "payctl: produce failed: %s\n", rd_kafka_err2str(e));
      exit(1);
    }
    rd_kafka_poll(producer, 10);
  }
  rd_kafka_poll(producer, 0);
  produced++;
}

static void record(const char *kind, const gen_intent *g, const char *expect, const char *code) {
  json_t *o = json_pack("{s:s,s:s,s:s,s:s,s:I,s:s}", "kind", kind, "merchant", g->merchant, "key",
                        g->key, "currency", g->currency, "amount", (json_int_t)g->amount,
                        "expect", expect);
  if (code) json_object_set_new(o, "code", json_string(code));
  char *s = json_dumps(o, JSON_COMPACT);
  if (manifest) fprintf(manifest, "%s\n", s);
  free(s);
  json_decref(o);
}

/* Packs g as a PaymentEvent carrying an intent, and publishes it. */
/* Publishes g; track (may be NULL) receives the partition it landed on and
 * must outlive the delivery report. */
static long padding_bytes; /* --padding: metadata bytes per intent */
static int64_t stamp_ms;    /* published_at_ms to stamp (0: now) */

static void publish_intent(const gen_intent *g, bool omit_amount, int32_t partition,
                           gen_intent *track) {
  ps_money money = PAYMENTS__V1__MONEY__INIT;
  money.amount_minor = g->amount;
  money.currency = (char *)g->currency;
  Payments__V1__PaymentMethod pm = PAYMENTS__V1__PAYMENT_METHOD__INIT;
  pm.id = (char *)g->pm;
  /* One card per customer: the magic method names (pm_card_visa, ...) steer
   * procsim, the fingerprint is what fraud's card velocity counts. */
  char fp[64];
  snprintf(fp, sizeof fp, "fp_%s", g->customer);
  pm.fingerprint = fp;
  pm.created_at_ms = g->created_at_ms - 90LL * 86400 * 1000;
  pm.card_country = "US";
  Payments__V1__RequestContext cx = PAYMENTS__V1__REQUEST_CONTEXT__INIT;
  cx.ip = "198.51.100.7";
  cx.country = "US";
  cx.latitude = 40.7;
  cx.longitude = -74.0;
  cx.device_id = "dev_demo";
  cx.email = "customer@example.com";
  ps_intent in = PAYMENTS__V1__PAYMENT_INTENT__INIT;
  in.idempotency_key = (char *)g->key;
  in.merchant_id = (char *)g->merchant;
  in.customer_id = (char *)g->customer;
  in.amount = omit_amount ? NULL : &money;
  in.created_at_ms = g->created_at_ms;
  in.payment_method = &pm;
  in.context = &cx;
  in.description = "paystream demo order";
  /* Padding: metadata entries of up to 400 bytes (validation allows 500). */
  Payments__V1__PaymentIntent__MetadataEntry pads[50], *padp[50];
  char padv[50][401], padk[50][16];
  size_t npad = 0;
  for (long left = padding_bytes; left > 0 && npad < 50; npad++, left -= 400) {
    payments__v1__payment_intent__metadata_entry__init(&pads[npad]);
    snprintf(padk[npad], sizeof padk[npad], "pad%zu", npad);
    size_t n = left > 400 ? 400 : (size_t)left;
    /* Random letters: padding that compression cannot shrink. */
    static const char letters[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    for (size_t k = 0; k < n; k++) padv[npad][k] = letters[rand() % 62];
    padv[npad][n] = '\0';
    pads[npad].key = padk[npad];
    pads[npad].value = padv[npad];
    padp[npad] = &pads[npad];
  }
  in.metadata = padp;
  in.n_metadata = npad;
  ps_event ev = PAYMENTS__V1__PAYMENT_EVENT__INIT;
  ev.schema_version = PS_SCHEMA_VERSION;
  ev.intent = &in;
  ev.published_at_ms = stamp_ms ? stamp_ms : ps_now_ms();
  size_t len;
  uint8_t *buf = event_pack(&ev, &len);
  produce(g->key, buf, len, partition, track);
  free(buf);
}

static int partition_count(rd_kafka_t *rk, const char *t) {
  const rd_kafka_metadata_t *md = NULL;
  rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, t, NULL);
  int n = 1;
  if (rd_kafka_metadata(rk, 0, rkt, &md, 10000) == 0 && md->topic_cnt == 1)
    n = md->topics[0].partition_cnt;
  if (md) rd_kafka_metadata_destroy(md);
  rd_kafka_topic_destroy(rkt);
  return n;
}

static const char *decline_pms[] = {"pm_card_chargeDeclined",
                                    "pm_card_chargeDeclinedInsufficientFunds",
                                    "pm_card_chargeDeclinedExpiredCard"};
static const char *currencies[] = {"USD", "EUR", "GBP", "USD", "JPY"};

static void make_base(gen_intent *g, const mix *m, long i, unsigned *rs) {
  memset(g, 0, sizeof *g);
  snprintf(g->key, sizeof g->key, "%s-%06ld", m->run, i);
  snprintf(g->merchant, sizeof g->merchant, "m_%ld", i % 3 + 1);
  snprintf(g->customer, sizeof g->customer, "cus_%s_%ld", m->run,
           (long)(rand_r(rs) % (unsigned)m->customers));
  snprintf(g->currency, sizeof g->currency, "%s", currencies[rand_r(rs) % 5]);
  g->amount = 100 + rand_r(rs) % 50000;
  snprintf(g->pm, sizeof g->pm, "%s", rand_r(rs) % 2 ? "pm_card_visa" : "pm_card_mastercard");
  g->created_at_ms = ps_now_ms() - rand_r(rs) % 60000;
}

/* Invalid intents, one rule each, in rotation. */
static void publish_invalid(const mix *m, long i) {
  gen_intent g;
  unsigned rs = m->seed + 7 * (unsigned)i;
  make_base(&g, m, 900000 + i, &rs);
  const char *code = NULL;
  bool omit_amount = false;
  switch (i % 8) {
  case 0: g.key[0] = '\0'; code = "idempotency_key_invalid"; break;
  case 1: memset(g.key, 'k', 300); g.key[300] = '\0'; code = "idempotency_key_invalid"; break;
  case 2: g.amount = 0; code = "amount_invalid"; break;
  case 3: g.amount = -500; code = "amount_invalid"; break;
  case 4: snprintf(g.currency, sizeof g.currency, "XXX"); code = "currency_invalid"; break;
  case 5: omit_amount = true; code = "amount_missing"; break;
  case 6: g.amount = INT64_MAX; code = "amount_too_large"; break;
  default: snprintf(g.merchant, sizeof g.merchant, "bad merchant!"); code = "merchant_id_invalid";
  }
  publish_intent(&g, omit_amount, RD_KAFKA_PARTITION_UA, NULL);
  record("invalid", &g, "rejected", code);
}

static void publish_garbage(const mix *m, long i) {
  unsigned rs = m->seed + 13 * (unsigned)i;
  uint8_t buf[64];
  buf[0] = 0x07; /* field 0, wire type 7: never a valid protobuf */
  for (size_t k = 1; k < sizeof buf; k++) buf[k] = (uint8_t)rand_r(&rs);
  char key[64];
  snprintf(key, sizeof key, "garbage-%s-%ld", m->run, i);
  produce(key, buf, sizeof buf, RD_KAFKA_PARTITION_UA, NULL);
  gen_intent g = {0};
  snprintf(g.key, sizeof g.key, "%s", key);
  record("garbage", &g, "dlq", "undecodable");
}

/* A valid intent, packed, then damaged in one of several ways. Each keeps
 * its own Kafka key so the DLQ and the logs can name it. */
static void publish_fuzz(const mix *m, long i) {
  unsigned rs = m->seed * 31u + (unsigned)i;
  gen_intent g;
  make_base(&g, m, 800000 + i, &rs);
  ps_money money = PAYMENTS__V1__MONEY__INIT;
  money.amount_minor = g.amount;
  money.currency = g.currency;
  Payments__V1__PaymentMethod pm = PAYMENTS__V1__PAYMENT_METHOD__INIT;
  pm.id = g.pm;
  ps_intent in = PAYMENTS__V1__PAYMENT_INTENT__INIT;
  in.idempotency_key = g.key;
  in.merchant_id = g.merchant;
  in.customer_id = g.customer;
  in.amount = &money;
  in.created_at_ms = g.created_at_ms;
  in.payment_method = &pm;
  ps_event ev = PAYMENTS__V1__PAYMENT_EVENT__INIT;
  ev.schema_version = PS_SCHEMA_VERSION;
  ev.intent = &in;
  size_t len;
  uint8_t *buf = event_pack(&ev, &len);
  uint8_t *out = malloc(len + 64);
  memcpy(out, buf, len);
  switch (rand_r(&rs) % 4) {
  case 0: /* flip a few bits */
    for (int k = 0, n = 1 + rand_r(&rs) % 4; k < n; k++) out[rand_r(&rs) % len] ^= (uint8_t)(1u << (rand_r(&rs) % 8));
    break;
  case 1: /* cut it short */
    len = (size_t)rand_r(&rs) % len;
    break;
  case 2: /* overwrite a run with junk */
    for (size_t k = (size_t)rand_r(&rs) % len, e = k + 1 + (size_t)rand_r(&rs) % 8; k < e && k < len; k++)
      out[k] = (uint8_t)rand_r(&rs);
    break;
  default: /* append junk */
    for (int k = 0, n = 1 + rand_r(&rs) % 32; k < n; k++) out[len++] = (uint8_t)rand_r(&rs);
  }
  char key[64];
  snprintf(key, sizeof key, "fuzz-%s-%ld", m->run, i);
  produce(key, out, len, RD_KAFKA_PARTITION_UA, NULL);
  free(buf);
  free(out);
  snprintf(g.key, sizeof g.key, "%s", key);
  record("fuzz", &g, "any", NULL);
}

static int parse_mix(int argc, char **argv, mix *m) {
  memset(m, 0, sizeof *m);
  m->count = 1000;
  m->seed = 42;
  m->run = "demo";
  for (int i = 0; i < argc; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (!v) return -1;
    if (strcmp(a, "--count") == 0) m->count = atol(v);
    else if (strcmp(a, "--duplicates") == 0) m->duplicates = atol(v);
    else if (strcmp(a, "--conflicts") == 0) m->conflicts = atol(v);
    else if (strcmp(a, "--declines") == 0) m->declines = atol(v);
    else if (strcmp(a, "--fraud") == 0) m->fraud = atol(v);
    else if (strcmp(a, "--slow") == 0) m->slow = atol(v);
    else if (strcmp(a, "--invalid") == 0) m->invalid = atol(v);
    else if (strcmp(a, "--garbage") == 0) m->garbage = atol(v);
    else if (strcmp(a, "--cross-partition") == 0) m->cross = atol(v);
    else if (strcmp(a, "--customers") == 0) m->customers = atol(v);
    else if (strcmp(a, "--fuzz") == 0) m->fuzz = atol(v);
    else if (strcmp(a, "--padding") == 0) m->padding = atol(v);
    else if (strcmp(a, "--seed") == 0) m->seed = (unsigned)atol(v);
    else if (strcmp(a, "--manifest") == 0) m->manifest = v;
    else if (strcmp(a, "--run") == 0) m->run = v;
    else return -1;
    i++;
  }
  /* By default about one payment per customer, so only deliberate fraud
   * trips the velocity rule. */
  if (m->customers <= 0) m->customers = m->count > 1000 ? m->count : 1000;
  long base = m->count - m->duplicates - m->conflicts - m->invalid - m->garbage - m->fuzz;
  if (base < 0 || (base == 0 && m->duplicates + m->conflicts + m->declines + m->fraud > 0) || m->declines + m->fraud + m->slow > base || m->cross > m->duplicates || (m->duplicates + m->conflicts > 0 && base < 1))
    return -1;
  return 0;
}

/* payctl publish --json FILE|- [--run PREFIX]: publishes the intents of a
 * JSON-lines file as they are (intent_json.h; a fraudgen line's "intent"
 * is taken), keys prefixed with PREFIX- when given. Upstream's payments,
 * crafted by a test or generated by fraudgen. */
static int publish_json(payctl *p, const char *path, const char *run) {
  FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "r");
  if (!f) {
    fprintf(stderr, "payctl: could not open %s\n", path);
    return 1;
  }
  char err[512];
  producer = kafka_producer_new(&p->cfg, on_delivery, err, sizeof err);
  if (!producer) {
    fprintf(stderr, "payctl: %s\n", err);
    if (f != stdin) fclose(f);
    return 1;
  }
  topic = p->cfg.topics.intents;
  char *line = NULL;
  size_t cap = 0;
  long lineno = 0;
  int rc = 0;
  while (rc == 0 && getline(&line, &cap, f) > 0) {
    lineno++;
    json_error_t je;
    json_t *o = json_loads(line, 0, &je);
    json_t *jin = o && json_object_get(o, "intent") ? json_object_get(o, "intent") : o;
    ps_intent *in = o ? intent_from_json(jin, err, sizeof err) : NULL;
    if (!in) {
      fprintf(stderr, "payctl: %s:%ld: %s\n", path, lineno, o ? err : je.text);
      rc = 1;
    } else {
      char key[320];
      snprintf(key, sizeof key, "%s%s%s", run ? run : "", run ? "-" : "", in->idempotency_key);
      char *orig = in->idempotency_key;
      in->idempotency_key = key;
      ps_event ev = PAYMENTS__V1__PAYMENT_EVENT__INIT;
      ev.schema_version = PS_SCHEMA_VERSION;
      ev.intent = in;
      ev.published_at_ms = ps_now_ms();
      size_t len;
      uint8_t *buf = event_pack(&ev, &len);
      produce(key, buf, len, RD_KAFKA_PARTITION_UA, NULL);
      free(buf);
      in->idempotency_key = orig;
      payments__v1__payment_intent__free_unpacked(in, NULL);
    }
    json_decref(o);
  }
  free(line);
  if (f != stdin) fclose(f);
  while (rd_kafka_outq_len(producer) > 0) rd_kafka_flush(producer, 1000);
  printf("published %ld intents to %s\n", produced, topic);
  rd_kafka_destroy(producer);
  return rc;
}

int cmd_publish(payctl *p, int argc, char **argv) {
  if (argc >= 2 && strcmp(argv[0], "--json") == 0)
    return publish_json(p, argv[1], argc >= 4 && strcmp(argv[2], "--run") == 0 ? argv[3] : NULL);
  mix m;
  if (parse_mix(argc, argv, &m)) {
    fprintf(stderr,
            "usage: payctl publish --json FILE|- [--run PREFIX]\n"
            "       payctl publish [--count N] [--duplicates N] [--conflicts N] [--declines N]\n"
            "         [--fraud N] [--slow N] [--invalid N] [--garbage N] [--fuzz N] [--cross-partition N]\n"
            "         [--customers N] [--padding BYTES]\n"
            "         [--seed S] [--run NAME] [--manifest FILE]\n"
            "count is the total number of messages; declines, fraud and slow (procsim's\n"
            "pm_card_slow: answered after slow_ms) are among the\n"
            "valid ones; duplicates and conflicts re-use keys of valid ones.\n");
    return 2;
  }
  char err[512];
  producer = kafka_producer_new(&p->cfg, on_delivery, err, sizeof err);
  if (!producer) {
    fprintf(stderr, "payctl: %s\n", err);
    return 1;
  }
  topic = p->cfg.topics.intents;
  padding_bytes = m.padding;
  manifest = m.manifest ? fopen(m.manifest, "w") : NULL;
  if (m.manifest && !manifest) {
    fprintf(stderr, "payctl: could not write %s\n", m.manifest);
    return 1;
  }
  long base = m.count - m.duplicates - m.conflicts - m.invalid - m.garbage - m.fuzz;
  gen_intent *bases = calloc((size_t)base + 1, sizeof *bases);
  unsigned rs = m.seed;
  int64_t t0 = ps_mono_ms();
  long extra_i = 0, invalid_left = m.invalid, garbage_left = m.garbage;
  for (long i = 0; i < base; i++) {
    gen_intent *g = &bases[i];
    make_base(g, &m, i, &rs);
    const char *expect = "succeeded", *code = NULL, *kind = "valid";
    if (i < m.declines) {
      snprintf(g->pm, sizeof g->pm, "%s", decline_pms[i % 3]);
      expect = "declined";
      kind = "decline";
    } else if (i < m.declines + m.fraud) {
      g->amount = 5000000; /* above the default amount limit: blocked by rules */
      expect = "blocked";
      kind = "fraud";
      code = "fraud_blocked";
    } else if (i < m.declines + m.fraud + m.slow) {
      snprintf(g->pm, sizeof g->pm, "pm_card_slow"); /* procsim answers after slow_ms */
      kind = "slow";
    }
    publish_intent(g, false, RD_KAFKA_PARTITION_UA, g);
    record(kind, g, expect, code);
    /* Interleave bad input through the stream. */
    if (invalid_left && (i % 17 == 5)) publish_invalid(&m, extra_i++), invalid_left--;
    if (garbage_left && (i % 23 == 7)) publish_garbage(&m, extra_i++), garbage_left--;
  }
  while (invalid_left) publish_invalid(&m, extra_i++), invalid_left--;
  while (garbage_left) publish_garbage(&m, extra_i++), garbage_left--;
  for (long i = 0; i < m.fuzz; i++) publish_fuzz(&m, i);
  /* Originals must be delivered before we know their partitions. */
  while (rd_kafka_outq_len(producer) > 0) rd_kafka_flush(producer, 1000);
  int partitions = m.cross ? partition_count(producer, topic) : 1;
  for (long i = 0; i < m.duplicates; i++) {
    gen_intent *g = &bases[(long)(rand_r(&rs) % (unsigned)base)];
    bool cross = i < m.cross && partitions > 1;
    /* Another producer's partitioner put this copy elsewhere. */
    int32_t part = cross ? (g->partition + 1) % partitions : RD_KAFKA_PARTITION_UA;
    publish_intent(g, false, part, NULL);
    while (rd_kafka_outq_len(producer) > 10000) rd_kafka_poll(producer, 10);
    record(cross ? "duplicate_cross" : "duplicate", g, "same", NULL);
  }
  for (long i = 0; i < m.conflicts; i++) {
    gen_intent g = bases[(long)(rand_r(&rs) % (unsigned)base)];
    g.amount += 1;
    publish_intent(&g, false, RD_KAFKA_PARTITION_UA, NULL);
    record("conflict", &g, "rejected", "idempotency_key_reused");
  }
  while (rd_kafka_outq_len(producer) > 0) rd_kafka_flush(producer, 1000);
  double secs = (double)(ps_mono_ms() - t0) / 1000.0;
  printf("published %ld messages to %s in %.2f s\n", produced, topic, secs);
  if (manifest) fclose(manifest);
  free(bases);
  rd_kafka_destroy(producer);
  return 0;
}

/* ---- payctl load: open-loop load with end-to-end latency ------------------- */

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
  long count, rate, timeout_s;
  double declines, fraud, duplicates, repeat;
  const char *run, *json;
  unsigned seed;
} load_opts;

static int parse_load(int argc, char **argv, load_opts *o) {
  *o = (load_opts){.count = 20000, .rate = 0, .timeout_s = 120, .declines = 3, .fraud = 1,
                   .duplicates = 2, .repeat = 30, .run = "load", .seed = 42};
  for (int i = 0; i + 1 < argc; i += 2) {
    const char *a = argv[i], *v = argv[i + 1];
    if (strcmp(a, "--count") == 0) o->count = atol(v);
    else if (strcmp(a, "--rate") == 0) o->rate = atol(v);
    else if (strcmp(a, "--timeout") == 0) o->timeout_s = atol(v);
    else if (strcmp(a, "--declines") == 0) o->declines = atof(v);
    else if (strcmp(a, "--fraud") == 0) o->fraud = atof(v);
    else if (strcmp(a, "--duplicates") == 0) o->duplicates = atof(v);
    else if (strcmp(a, "--repeat-customers") == 0) o->repeat = atof(v);
    else if (strcmp(a, "--run") == 0) o->run = v;
    else if (strcmp(a, "--json") == 0) o->json = v;
    else if (strcmp(a, "--seed") == 0) o->seed = (unsigned)atol(v);
    else return -1;
  }
  if (argc % 2 || o->count < 1 || o->rate < 0 || o->timeout_s < 1 || o->declines < 0 ||
      o->fraud < 0 || o->duplicates < 0 || o->repeat < 0 || o->repeat >= 100 ||
      o->declines + o->fraud > 100)
    return -1;
  return 0;
}

/* Consumer of payments.outcomes from its current end, so only this run's
 * outcomes (and later ones) are read. */
static rd_kafka_t *outcome_reader(payctl *p, char *group, size_t glen) {
  snprintf(group, glen, "payctl-load-%d", (int)getpid());
  rd_kafka_t *rk = payctl_consumer(p, group, true);
  if (!rk) return NULL;
  const char *t = p->cfg.topics.outcomes;
  int np = payctl_partition_count(rk, t);
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

int cmd_load(payctl *p, int argc, char **argv) {
  load_opts o;
  if (parse_load(argc, argv, &o)) {
    fprintf(stderr,
            "usage: payctl load [--count N] [--rate PER_S (0: as fast as possible)] [--run NAME]\n"
            "         [--declines PCT] [--fraud PCT] [--duplicates PCT] [--repeat-customers PCT]\n"
            "         [--timeout S] [--seed S] [--json FILE]\n"
            "Publishes N intents open-loop (at a fixed rate, each stamped with its scheduled\n"
            "time, so a slow pipeline shows as latency, not as a slower publisher), reads\n"
            "payments.outcomes, and reports throughput and end-to-end latency percentiles.\n");
    return 2;
  }
  char err[512], group[64];
  producer = kafka_producer_new(&p->cfg, on_delivery, err, sizeof err);
  if (!producer) {
    fprintf(stderr, "payctl: %s\n", err);
    return 1;
  }
  rd_kafka_t *reader = outcome_reader(p, group, sizeof group);
  if (!reader) {
    fprintf(stderr, "payctl: could not read %s\n", p->cfg.topics.outcomes);
    rd_kafka_destroy(producer);
    return 1;
  }
  topic = p->cfg.topics.intents;
  /* Connected, with the topic's metadata, before the clock starts. */
  if (partition_count(producer, topic) < 1) fprintf(stderr, "payctl: no metadata for %s\n", topic);
  mix m = {.run = o.run, .seed = o.seed};
  m.customers = (long)((double)o.count * (1 - o.repeat / 100.0));
  if (m.customers < 1) m.customers = 1;
  long ndup = (long)((double)o.count * o.duplicates / 100.0), nbase = o.count - ndup;
  gen_intent *bases = calloc((size_t)nbase, sizeof *bases);
  int64_t *lat = calloc((size_t)nbase, sizeof *lat);
  int64_t *arrived = calloc((size_t)nbase, sizeof *arrived); /* monotonic, in order */
  timed *per = calloc((size_t)nbase + 1, sizeof *per);
  GHashTable *seen = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
  if (!bases || !lat || !arrived || !per) abort();
  long status[8] = {0}, replayed = 0, got = 0, published = 0, made = 0;
  unsigned rs = o.seed;
  size_t prefix = strlen(o.run);
  int64_t t0 = ps_mono_ms(), w0 = ps_now_ms(), first_out = 0, last_out = 0, last_pub = 0;
  int64_t deadline = 0, next_report = t0 + 1000;
  while (got < nbase) {
    int64_t now = ps_mono_ms();
    /* Due by now: every message at rate, or everything (in slices, so the
     * reader keeps up) as fast as possible. */
    long due = o.rate ? (long)((now - t0) * o.rate / 1000) + 1 : published + 2000;
    if (due > o.count) due = o.count;
    while (published < due) {
      gen_intent *g;
      bool dup = made > 0 && ndup > 0 && (published - made) < ndup &&
                 (made >= nbase || rand_r(&rs) % (unsigned)o.count < (unsigned)ndup);
      if (dup) {
        g = &bases[rand_r(&rs) % (unsigned)made]; /* a repeated request */
      } else {
        g = &bases[made];
        make_base(g, &m, made, &rs);
        double r = (double)rand_r(&rs) / ((double)RAND_MAX + 1) * 100.0;
        if (r < o.declines) snprintf(g->pm, sizeof g->pm, "%s", decline_pms[made % 3]);
        else if (r < o.declines + o.fraud) g->amount = 5000000; /* over the rules' limit */
        made++;
      }
      /* Open loop: the scheduled time, not when we got round to it. */
      stamp_ms = o.rate ? w0 + published * 1000 / o.rate : 0;
      publish_intent(g, false, RD_KAFKA_PARTITION_UA, NULL);
      published++;
      last_pub = ps_mono_ms();
    }
    if (published == o.count && !deadline) deadline = ps_mono_ms() + o.timeout_s * 1000;
    rd_kafka_poll(producer, 0);
    for (int k = 0; k < 5000; k++) {
      rd_kafka_message_t *msg = rd_kafka_consumer_poll(reader, k ? 0 : 1);
      if (!msg) break;
      ps_outcome *oc = msg->err ? NULL : outcome_decode(msg->payload, msg->len); /* EOFs too */
      if (oc && oc->idempotency_key && strncmp(oc->idempotency_key, o.run, prefix) == 0 &&
          oc->idempotency_key[prefix] == '-') {
        int64_t wall = ps_now_ms();
        if (oc->replayed) {
          replayed++;
        } else if (!g_hash_table_contains(seen, oc->idempotency_key) && got < nbase) {
          /* The first answer counts, `review` (held for an operator) included:
           * it is what the merchant hears from the pipeline. */
          g_hash_table_add(seen, g_strdup(oc->idempotency_key));
          arrived[got] = ps_mono_ms();
          per[got].sec = oc->published_at_ms > w0 ? (oc->published_at_ms - w0) / 1000 : 0;
          per[got++].ms = wall - oc->published_at_ms;
          if ((int)oc->status >= 0 && oc->status < 8) status[oc->status]++;
          if (!first_out) first_out = ps_mono_ms();
          last_out = ps_mono_ms();
        }
      }
      outcome_free(oc);
      rd_kafka_message_destroy(msg);
    }
    now = ps_mono_ms();
    if (now >= next_report) {
      fprintf(stderr, "load: %6.1f s  published %ld (%.0f/s)  outcomes %ld (%.0f/s)\n",
              (double)(now - t0) / 1000, published,
              (double)published * 1000 / (double)(now - t0 + 1), got,
              (double)got * 1000 / (double)(now - t0 + 1));
      next_report = now + 1000;
    }
    if (deadline && now > deadline) {
      fprintf(stderr, "load: timed out with %ld of %ld outcomes\n", got, nbase);
      break;
    }
  }
  while (rd_kafka_outq_len(producer) > 0) rd_kafka_flush(producer, 1000);
  for (long i = 0; i < got; i++) lat[i] = per[i].ms;
  qsort(lat, (size_t)got, sizeof *lat, cmp_i64);
  double secs = (double)(last_out - t0) / 1000.0, pub_secs = (double)(last_pub - t0) / 1000.0;
  /* Sustained: the rate between the 10th and the 90th percentile of
   * arrivals, without the pipeline filling up and draining. */
  long i10 = got / 10, i90 = got * 9 / 10;
  double sustained = got >= 10 && arrived[i90] > arrived[i10]
                         ? (double)(i90 - i10) * 1000.0 / (double)(arrived[i90] - arrived[i10])
                         : 0.0;
  double mean = 0;
  for (long i = 0; i < got; i++) mean += (double)lat[i];
  mean = got ? mean / (double)got : 0;
  json_t *res = json_pack(
      "{s:s,s:I,s:I,s:I,s:I,s:I,s:f,s:f,s:f,s:{s:f,s:f,s:f,s:f,s:f,s:f},"
      "s:{s:I,s:I,s:I,s:I,s:I,s:I},s:f}",
      "run", o.run, "rate_target", (json_int_t)o.rate, "published", (json_int_t)published,
      "payments", (json_int_t)nbase, "outcomes", (json_int_t)got, "replayed",
      (json_int_t)replayed, "publish_rate", pub_secs > 0 ? (double)published / pub_secs : 0.0,
      "seconds", secs, "throughput", secs > 0 ? (double)got / secs : 0.0, "latency_ms", "p50",
      pct(lat, (size_t)got, 50), "p90", pct(lat, (size_t)got, 90), "p99", pct(lat, (size_t)got, 99),
      "p99_9", pct(lat, (size_t)got, 99.9), "max", got ? (double)lat[got - 1] : 0.0, "mean", mean,
      "status", "succeeded", (json_int_t)status[PAYMENTS__V1__OUTCOME_STATUS__OUTCOME_STATUS_SUCCEEDED],
      "declined", (json_int_t)status[PAYMENTS__V1__OUTCOME_STATUS__OUTCOME_STATUS_DECLINED],
      "blocked", (json_int_t)status[PAYMENTS__V1__OUTCOME_STATUS__OUTCOME_STATUS_BLOCKED],
      "failed", (json_int_t)status[PAYMENTS__V1__OUTCOME_STATUS__OUTCOME_STATUS_FAILED],
      "rejected", (json_int_t)status[PAYMENTS__V1__OUTCOME_STATUS__OUTCOME_STATUS_REJECTED],
      "review", (json_int_t)status[PAYMENTS__V1__OUTCOME_STATUS__OUTCOME_STATUS_REVIEW],
      "sustained", sustained);
  json_object_set_new(res, "latency_by_second", by_second(per, (size_t)got));
  (void)first_out;
  char *js = json_dumps(res, JSON_COMPACT);
  printf("%s\n", js);
  if (o.json) {
    FILE *f = fopen(o.json, "w");
    if (f) {
      fprintf(f, "%s\n", js);
      fclose(f);
    }
  }
  free(js);
  json_decref(res);
  g_hash_table_destroy(seen);
  free(bases);
  free(lat);
  free(arrived);
  free(per);
  rd_kafka_destroy(reader);
  rd_kafka_destroy(producer);
  return got == nbase ? 0 : 1;
}
