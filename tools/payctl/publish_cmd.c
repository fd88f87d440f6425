/* payctl publish: publishes generated intents (gen.h) with a chosen mix of
 * duplicates, reused keys, declines, fraud, invalid and undecodable
 * messages, and writes the manifest tests check against; or, with --json,
 * the intents of a JSON-lines file as they are (a test's crafted payments,
 * or fraudgen's data set). */
#include <glib.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "commands.h"
#include "event.h"
#include "gen.h"
#include "intent_json.h"
#include "kafka_util.h"
#include "op_json.h"
#include "operation.h"
#include "opt.h"

static const char PUBLISH_USAGE[] =
    "usage: payctl publish --json FILE|- [--run PREFIX]\n"
    "       payctl publish [--count N] [--duplicates N] [--conflicts N] [--declines N]\n"
    "         [--fraud N] [--slow N] [--invalid N] [--garbage N] [--fuzz N] [--cross-partition N]\n"
    "         [--customers N] [--padding BYTES]\n"
    "         [--seed S] [--run NAME] [--manifest FILE]\n"
    "count is the total number of messages; declines, fraud and slow (procsim's\n"
    "pm_card_slow: answered after slow_ms) are among the\n"
    "valid ones; duplicates and conflicts re-use keys of valid ones.\n";

/* The counting options: name, and where each goes in the mix. */
static const struct option longopts[] = {
    {"count", required_argument, NULL, 0},      {"duplicates", required_argument, NULL, 1},
    {"conflicts", required_argument, NULL, 2},  {"declines", required_argument, NULL, 3},
    {"fraud", required_argument, NULL, 4},      {"slow", required_argument, NULL, 5},
    {"invalid", required_argument, NULL, 6},    {"garbage", required_argument, NULL, 7},
    {"cross-partition", required_argument, NULL, 8},
    {"customers", required_argument, NULL, 9},  {"fuzz", required_argument, NULL, 10},
    {"padding", required_argument, NULL, 11},   {"seed", required_argument, NULL, 's'},
    {"manifest", required_argument, NULL, 'm'}, {"run", required_argument, NULL, 'r'},
    {"json", required_argument, NULL, 'j'},     {0, 0, 0, 0}};

static long *count_field(gen_mix *m, int which) {
  long *f[] = {&m->count,   &m->duplicates, &m->conflicts, &m->declines,
               &m->fraud,   &m->slow,       &m->invalid,   &m->garbage,
               &m->cross,   &m->customers,  &m->fuzz,      &m->padding};
  return f[which];
}

/* Returns 0, or -1 (message printed) on a bad command line. *json is the
 * --json file when given (then only --run may go with it), *run the --run
 * given (NULL if none). */
static int parse_mix(int argc, char **argv, gen_mix *m, const char **json, const char **run) {
  memset(m, 0, sizeof *m);
  m->count = 1000;
  m->seed = 42;
  *json = *run = NULL;
  int generator_opts = 0;
  opt_begin();
  for (int c; (c = opt_next(argc, argv, longopts)) != -1;) {
    long long v;
    if (c >= 0 && c <= 11) {
      char name[32];
      snprintf(name, sizeof name, "--%s", longopts[c].name);
      if (opt_long(name, optarg, 0, c == 11 ? 20000 : 100000000, &v)) return -1;
      *count_field(m, c) = (long)v;
      generator_opts++;
    } else if (c == 's') {
      if (opt_long("--seed", optarg, 0, UINT32_MAX, &v)) return -1;
      m->seed = (unsigned)v;
      generator_opts++;
    } else if (c == 'm') {
      m->manifest = optarg;
      generator_opts++;
    } else if (c == 'r') {
      *run = optarg;
    } else if (c == 'j') {
      *json = optarg;
    } else {
      return -1;
    }
  }
  if (optind != argc) return opt_usage("publish", "takes no positional arguments"), -1;
  m->run = *run ? *run : "demo";
  if (*json && generator_opts)
    return opt_usage("publish", "--json takes only --run; the other options generate intents"), -1;
  /* By default about one payment per customer, so only deliberate fraud
   * trips the velocity rule. */
  if (m->customers <= 0) m->customers = m->count > 1000 ? m->count : 1000;
  long base = m->count - m->duplicates - m->conflicts - m->invalid - m->garbage - m->fuzz;
  if (base < 0 || (base == 0 && m->duplicates + m->conflicts + m->declines + m->fraud > 0) ||
      m->declines + m->fraud + m->slow > base || m->cross > m->duplicates ||
      (m->duplicates + m->conflicts > 0 && base < 1))
    return opt_usage("publish", "the counts do not add up (see the rules below)"), -1;
  return 0;
}

/* One operation line, its keys (its own and its payment's) prefixed like
 * the intents', published with its payment's key. */
static int publish_op_line(gen *g, const json_t *jo, const char *run, char *err, size_t errlen) {
  ps_operation op;
  ps_money money;
  if (op_from_json(jo, &op, &money, err, errlen)) return -1;
  gchar *key = g_strdup_printf("%s%s%s", run ? run : "", run ? "-" : "", op.idempotency_key);
  gchar *pkey = *op.payment_key ? g_strdup_printf("%s%s%s", run ? run : "", run ? "-" : "",
                                                  op.payment_key)
                                : g_strdup("");
  op.idempotency_key = key;
  op.payment_key = pkey;
  ps_event ev = PAYMENTS__V1__PAYMENT_EVENT__INIT;
  ev.schema_version = PS_SCHEMA_VERSION;
  ev.operation = &op;
  ev.published_at_ms = ps_now_ms();
  size_t len;
  uint8_t *buf = event_pack(&ev, &len);
  gen_publish_event(g, *pkey ? pkey : op.payment_id, buf, len);
  free(buf);
  g_free(key);
  g_free(pkey);
  return 0;
}

/* Publishes the intents of a JSON-lines file (intent_json.h; a fraudgen
 * line's "intent" is taken), keys prefixed with PREFIX- when given. */
static int publish_json(payctl *p, const char *path, const char *run) {
  FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "r");
  if (!f) {
    fprintf(stderr, "payctl: could not open %s\n", path);
    return PAYCTL_NOT_FOUND;
  }
  char err[512];
  gen g;
  if (gen_open(&g, &p->cfg, NULL, err, sizeof err)) {
    fprintf(stderr, "payctl: %s\n", err);
    if (f != stdin) fclose(f);
    return PAYCTL_UNAVAILABLE;
  }
  char *line = NULL;
  size_t cap = 0;
  long lineno = 0;
  int rc = PAYCTL_OK;
  while (rc == PAYCTL_OK && getline(&line, &cap, f) > 0) {
    lineno++;
    json_error_t je;
    json_t *o = json_loads(line, 0, &je);
    json_t *jin = o && json_object_get(o, "intent") ? json_object_get(o, "intent") : o;
    if (o && json_object_get(o, "operation")) { /* lifecycle (op_json.h) */
      if (publish_op_line(&g, json_object_get(o, "operation"), run, err, sizeof err)) {
        fprintf(stderr, "payctl: %s:%ld: %s\n", path, lineno, err);
        rc = PAYCTL_FAILED;
      }
      json_decref(o);
      continue;
    }
    ps_intent *in = o ? intent_from_json(jin, err, sizeof err) : NULL;
    if (in && json_is_string(json_object_get(jin, "kind")))
      in->kind = op_kind_from_name(json_string_value(json_object_get(jin, "kind"))) ==
                         KIND_AUTHORIZE
                     ? KIND_AUTHORIZE
                     : KIND_SALE;
    if (!in) {
      fprintf(stderr, "payctl: %s:%ld: %s\n", path, lineno, o ? err : je.text);
      rc = PAYCTL_FAILED;
    } else {
      gchar *key = g_strdup_printf("%s%s%s", run ? run : "", run ? "-" : "", in->idempotency_key);
      char *orig = in->idempotency_key;
      in->idempotency_key = key;
      ps_event ev = PAYMENTS__V1__PAYMENT_EVENT__INIT;
      ev.schema_version = PS_SCHEMA_VERSION;
      ev.intent = in;
      ev.published_at_ms = ps_now_ms();
      size_t len;
      uint8_t *buf = event_pack(&ev, &len);
      gen_publish_event(&g, key, buf, len);
      free(buf);
      in->idempotency_key = orig;
      g_free(key);
      payments__v1__payment_intent__free_unpacked(in, NULL);
    }
    json_decref(o);
  }
  free(line);
  if (f != stdin) fclose(f);
  gen_flush(&g);
  printf("published %ld intents to %s\n", g.produced, g.topic);
  if (rc == PAYCTL_OK && g.failed) rc = PAYCTL_UNAVAILABLE;
  gen_close(&g);
  return rc;
}

/* Valid intents (some declining, fraudulent or slow) with invalid and
 * undecodable ones interleaved, then damaged ones. bases receives the
 * valid ones (duplicates and conflicts copy them). */
static void publish_originals(gen *g, const gen_mix *m, gen_intent *bases, long base,
                              unsigned *rs) {
  long extra_i = 0, invalid_left = m->invalid, garbage_left = m->garbage;
  for (long i = 0; i < base; i++) {
    gen_intent *in = &bases[i];
    gen_base(in, m, i, rs);
    const char *expect = "succeeded", *code = NULL, *kind = "valid";
    if (i < m->declines) {
      snprintf(in->pm, sizeof in->pm, "%s", gen_decline_pms[i % 3]);
      expect = "declined";
      kind = "decline";
    } else if (i < m->declines + m->fraud) {
      in->amount = 5000000; /* above the default amount limit: blocked by rules */
      expect = "blocked";
      kind = "fraud";
      code = "fraud_blocked";
    } else if (i < m->declines + m->fraud + m->slow) {
      snprintf(in->pm, sizeof in->pm, "pm_card_slow"); /* procsim answers after slow_ms */
      kind = "slow";
    }
    gen_publish_intent(g, in, false, RD_KAFKA_PARTITION_UA, in);
    gen_record(g, kind, in, expect, code);
    /* Interleave bad input through the stream. */
    if (invalid_left && (i % 17 == 5)) gen_publish_invalid(g, m, extra_i++), invalid_left--;
    if (garbage_left && (i % 23 == 7)) gen_publish_garbage(g, m, extra_i++), garbage_left--;
  }
  while (invalid_left) gen_publish_invalid(g, m, extra_i++), invalid_left--;
  while (garbage_left) gen_publish_garbage(g, m, extra_i++), garbage_left--;
  for (long i = 0; i < m->fuzz; i++) gen_publish_fuzz(g, m, i);
}

/* Exact copies of valid intents (some to another partition than their
 * original, as another producer's partitioner would), then conflicts: the
 * same key with another amount. */
static void publish_copies(gen *g, const gen_mix *m, gen_intent *bases, long base,
                           unsigned *rs) {
  int np = m->cross ? kutil_partition_count(g->producer, g->topic) : 1;
  int partitions = np > 0 ? np : 1;
  for (long i = 0; i < m->duplicates; i++) {
    gen_intent *in = &bases[(long)(rand_r(rs) % (unsigned)base)];
    bool cross = i < m->cross && partitions > 1;
    int32_t part = cross ? (in->partition + 1) % partitions : RD_KAFKA_PARTITION_UA;
    gen_publish_intent(g, in, false, part, NULL);
    while (rd_kafka_outq_len(g->producer) > 10000) rd_kafka_poll(g->producer, 10);
    gen_record(g, cross ? "duplicate_cross" : "duplicate", in, "same", NULL);
  }
  for (long i = 0; i < m->conflicts; i++) {
    gen_intent in = bases[(long)(rand_r(rs) % (unsigned)base)];
    in.amount += 1;
    gen_publish_intent(g, &in, false, RD_KAFKA_PARTITION_UA, NULL);
    gen_record(g, "conflict", &in, "rejected", "idempotency_key_reused");
  }
}

int cmd_publish(payctl *p, int argc, char **argv) {
  gen_mix m;
  const char *json, *run;
  if (parse_mix(argc, argv, &m, &json, &run)) {
    fputs(PUBLISH_USAGE, stderr);
    return PAYCTL_USAGE;
  }
  if (json) return publish_json(p, json, run);
  char err[512];
  gen g;
  int opened = gen_open(&g, &p->cfg, m.manifest, err, sizeof err);
  if (opened) {
    fprintf(stderr, "payctl: %s\n", err);
    return opened == -1 ? PAYCTL_FAILED : PAYCTL_UNAVAILABLE;
  }
  g.padding_bytes = m.padding;
  long base = m.count - m.duplicates - m.conflicts - m.invalid - m.garbage - m.fuzz;
  gen_intent *bases = calloc((size_t)base + 1, sizeof *bases);
  if (!bases) abort();
  unsigned rs = m.seed;
  int64_t t0 = ps_mono_ms();
  publish_originals(&g, &m, bases, base, &rs);
  /* Originals must be delivered before we know their partitions. */
  gen_flush(&g);
  publish_copies(&g, &m, bases, base, &rs);
  gen_flush(&g);
  double secs = (double)(ps_mono_ms() - t0) / 1000.0;
  printf("published %ld messages to %s in %.2f s\n", g.produced, g.topic, secs);
  int rc = g.failed ? PAYCTL_UNAVAILABLE : PAYCTL_OK;
  gen_close(&g);
  free(bases);
  return rc;
}
