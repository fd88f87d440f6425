/* payctl expire: the authorization-expiry sweeper (#19). Postgres decides
 * (ps_expire_authorizations, migration 022): every authorization past its
 * window with no capture or void in flight moves to its terminal state, its
 * open part released and its hold reversed in the ledger, in one
 * transaction per run, safe against other sweepers running at once. Then
 * the merchant's outcomes (status expired, payments.outcomes, keyed by the
 * authorization's key) are published from the authorization_expiries
 * outbox and stamped announced only once the broker has them: a sweeper
 * killed in between publishes them again on its next run.
 * --every S repeats (a sidecar or a Kubernetes CronJob runs it; README). */
#include <glib.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "commands.h"
#include "event.h"
#include "gen.h"
#include "operation.h"
#include "opt.h"
#include "pgq.h"

static const char EXPIRE_USAGE[] = "usage: payctl expire [--limit N] [--every SECONDS]\n";

static const char SQL_SWEEP[] =
    "SELECT count(*), coalesce(sum(released_minor), 0) FROM ps_expire_authorizations($1::int)";

static const char SQL_UNANNOUNCED[] =
    "SELECT e.payment_id, p.merchant_id, p.idempotency_key, p.currency,"
    " coalesce(p.processor, ''), coalesce(p.processor_charge_id, ''), p.authorized_minor,"
    " p.captured_minor, p.refunded_minor, p.released_minor, e.released_minor"
    " FROM authorization_expiries e JOIN payments p USING (payment_id)"
    " WHERE e.announced_at IS NULL ORDER BY e.expired_at, e.payment_id LIMIT $1::int";

static const char SQL_ANNOUNCED[] =
    "UPDATE authorization_expiries SET announced_at = now()"
    " WHERE payment_id = ANY($1::text[]) AND announced_at IS NULL";

static volatile sig_atomic_t stop;
static void on_signal(int sig) {
  (void)sig;
  stop = 1;
}

/* Publishes the outcome of every unannounced expiry (up to limit), then
 * stamps them. Returns the number announced, or -(exit code). */
static long announce(payctl *p, const char *limit) {
  const char *v[] = {limit};
  PGresult *r = pgq_query(p, SQL_UNANNOUNCED, 1, v);
  if (!r) return -pgq_failure(p);
  int n = PQntuples(r);
  if (n == 0) {
    PQclear(r);
    return 0;
  }
  char err[512];
  gen g;
  if (gen_open(&g, &p->cfg, NULL, err, sizeof err)) {
    fprintf(stderr, "payctl: %s\n", err);
    PQclear(r);
    return -PAYCTL_UNAVAILABLE;
  }
  g.topic = p->cfg.topics.outcomes;
  gen_flush(&g); /* nothing queued: g.failed = the process's failures so far (--every) */
  long failed_before = g.failed;
  GString *ids = g_string_new("{");
  for (int i = 0; i < n; i++) {
#define G(c) PQgetvalue(r, i, c)
    outcome_buf ob;
    memset(&ob, 0, sizeof ob);
    payments__v1__payment_outcome__init(&ob.o);
    payments__v1__money__init(&ob.amount);
    ob.o.payment_id = G(0);
    ob.o.merchant_id = G(1);
    ob.o.idempotency_key = G(2);
    ob.o.status = OUTCOME_EXPIRED;
    ob.o.error_code = "authorization_expired";
    ob.o.error_message = "the authorization's window passed: what was left of it is released";
    ob.amount.currency = G(3);
    ob.amount.amount_minor = strtoll(G(10), NULL, 10);
    ob.o.amount = &ob.amount;
    ob.o.processor = G(4);
    ob.o.processor_charge_id = G(5);
    ob.o.kind = KIND_AUTHORIZE;
    ob.o.authorized_minor = strtoll(G(6), NULL, 10);
    ob.o.captured_minor = strtoll(G(7), NULL, 10);
    ob.o.refunded_minor = strtoll(G(8), NULL, 10);
    ob.o.released_minor = strtoll(G(9), NULL, 10);
    size_t len;
    uint8_t *buf = outcome_pack(&ob.o, &len);
    if (!buf) abort();
    gen_publish_event(&g, G(2), buf, len);
    free(buf);
    g_string_append_printf(ids, "%s\"%s\"", i ? "," : "", G(0)); /* ids: [a-z0-9_] */
#undef G
  }
  PQclear(r);
  g_string_append_c(ids, '}');
  gen_flush(&g);
  long failed = g.failed - failed_before;
  gen_close(&g);
  long rc = n;
  if (failed) {
    fprintf(stderr,
            "payctl: %ld expiry outcomes not delivered; they are published again next run\n",
            failed);
    rc = -PAYCTL_UNAVAILABLE;
  } else {
    const char *a[] = {ids->str};
    PGresult *u = pgq_query(p, SQL_ANNOUNCED, 1, a);
    if (!u) rc = -pgq_failure(p);
    PQclear(u);
  }
  g_string_free(ids, TRUE);
  return rc;
}

int cmd_expire(payctl *p, int argc, char **argv) {
  static const struct option longopts[] = {{"limit", required_argument, NULL, 'l'},
                                           {"every", required_argument, NULL, 'e'},
                                           {0, 0, 0, 0}};
  long long limit = 500, every = 0;
  opt_begin();
  for (int c; (c = opt_next(argc, argv, longopts)) != -1;) {
    if (c == 'l' && opt_long("--limit", optarg, 1, 100000, &limit) == 0) continue;
    if (c == 'e' && opt_long("--every", optarg, 1, 86400, &every) == 0) continue;
    return opt_usage("expire", EXPIRE_USAGE);
  }
  if (argc != optind) return opt_usage("expire", EXPIRE_USAGE);
  signal(SIGTERM, on_signal);
  signal(SIGINT, on_signal);
  char lim[24];
  snprintf(lim, sizeof lim, "%lld", limit);
  int rc = PAYCTL_OK;
  do {
    long expired = 0, released = 0, announced = 0;
    /* A full batch: there may be more; sweep again before announcing. */
    for (long got = limit; got == limit && !stop;) {
      const char *v[] = {lim};
      PGresult *r = pgq_query(p, SQL_SWEEP, 1, v);
      if (!r) return pgq_failure(p);
      got = strtol(PQgetvalue(r, 0, 0), NULL, 10);
      expired += got;
      released += strtol(PQgetvalue(r, 0, 1), NULL, 10);
      PQclear(r);
    }
    for (long got = limit; got == limit && !stop;) {
      got = announce(p, lim);
      if (got < 0) {
        rc = (int)-got;
        break;
      }
      announced += got;
    }
    printf("expired %ld authorizations (released %ld minor units), announced %ld outcomes\n",
           expired, released, announced);
    fflush(stdout);
    for (long long s = 0; every && s < every && !stop; s++) sleep(1);
  } while (every && !stop && rc == PAYCTL_OK);
  return rc;
}
