/* payctl status | wait | summary: where payments stand, read from Postgres
 * (the truth). status shows one payment; wait blocks until a number of
 * intents are terminal (payments with an outcome plus rejections); summary
 * counts outcomes by status and the end-to-end throughput. */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "clock.h"
#include "commands.h"
#include "opt.h"
#include "pgq.h"

static const struct option no_options[] = {{0, 0, 0, 0}};

int cmd_status(payctl *p, int argc, char **argv) {
  opt_begin();
  if (opt_next(argc, argv, no_options) != -1 || argc - optind != 2)
    return opt_usage("status", "usage: payctl status <merchant> <idempotency-key>");
  const char *merchant = argv[optind], *key = argv[optind + 1];
  const char *v[] = {merchant, key};
  PGresult *r = pgq_query(
      p,
      "SELECT payment_id, status, amount_minor, currency, coalesce(error_code, ''),"
      " coalesce(processor, ''), coalesce(processor_charge_id, ''), created_at, updated_at"
      " FROM payments WHERE merchant_id = $1 AND idempotency_key = $2",
      2, v);
  if (!r) return pgq_failure(p);
  if (PQntuples(r) == 0) {
    printf("no payment for merchant %s key %s\n", merchant, key);
    PQclear(r);
    return PAYCTL_NOT_FOUND;
  }
  printf("payment_id:   %s\nstatus:       %s\namount:       %s %s\nerror_code:   %s\n"
         "processor:    %s %s\ncreated_at:   %s\nupdated_at:   %s\n",
         PQgetvalue(r, 0, 0), PQgetvalue(r, 0, 1), PQgetvalue(r, 0, 2), PQgetvalue(r, 0, 3),
         PQgetvalue(r, 0, 4), PQgetvalue(r, 0, 5), PQgetvalue(r, 0, 6), PQgetvalue(r, 0, 7),
         PQgetvalue(r, 0, 8));
  PQclear(r);
  return PAYCTL_OK;
}

static const char SQL_TERMINAL_COUNT[] =
    "SELECT (SELECT count(*) FROM payments WHERE outcome IS NOT NULL)"
    " + (SELECT count(*) FROM rejections)";

static const char WAIT_USAGE[] = "usage: payctl wait --terminal N [--timeout SECONDS]";

/* Waits until at least N intents have a terminal state, or the timeout
 * passes (PAYCTL_FAILED). Postgres being unreachable is waited out too. */
int cmd_wait(payctl *p, int argc, char **argv) {
  static const struct option longopts[] = {{"terminal", required_argument, NULL, 'n'},
                                           {"timeout", required_argument, NULL, 't'},
                                           {0, 0, 0, 0}};
  long long want = -1, timeout_s = 120;
  opt_begin();
  for (int c; (c = opt_next(argc, argv, longopts)) != -1;) {
    if (c == 'n' && opt_long("--terminal", optarg, 0, INT64_MAX, &want) == 0) continue;
    if (c == 't' && opt_long("--timeout", optarg, 0, 86400 * 365, &timeout_s) == 0) continue;
    return opt_usage("wait", WAIT_USAGE);
  }
  if (want < 0 || optind != argc) return opt_usage("wait", WAIT_USAGE);
  int64_t deadline = ps_mono_ms() + timeout_s * 1000;
  long long have = 0;
  for (;;) {
    PGresult *r = pgq_query(p, SQL_TERMINAL_COUNT, 0, NULL);
    if (r) {
      have = atoll(PQgetvalue(r, 0, 0));
      PQclear(r);
    }
    if (have >= want) break;
    if (ps_mono_ms() > deadline) {
      fprintf(stderr, "payctl: timed out with %lld of %lld intents terminal\n", have, want);
      return PAYCTL_FAILED;
    }
    usleep(200 * 1000);
  }
  printf("%lld intents terminal\n", have);
  return PAYCTL_OK;
}

/* Prints outcomes by status (Postgres is the truth) and the throughput. */
int cmd_summary(payctl *p, int argc, char **argv) {
  opt_begin();
  if (opt_next(argc, argv, no_options) != -1 || optind != argc)
    return opt_usage("summary", "takes no arguments");
  PGresult *r = pgq_query(
      p,
      "SELECT status, count(*) FROM ("
      " SELECT status FROM payments UNION ALL SELECT 'rejected' FROM rejections) s"
      " GROUP BY status ORDER BY count(*) DESC, status",
      0, NULL);
  if (!r) return pgq_failure(p);
  long total = 0;
  printf("%-12s %8s\n", "status", "count");
  printf("%-12s %8s\n", "------------", "--------");
  for (int i = 0; i < PQntuples(r); i++) {
    printf("%-12s %8s\n", PQgetvalue(r, i, 0), PQgetvalue(r, i, 1));
    total += atol(PQgetvalue(r, i, 1));
  }
  printf("%-12s %8ld\n", "total", total);
  PQclear(r);
  r = pgq_query(p,
                "SELECT count(*), extract(epoch FROM max(updated_at) - min(created_at))"
                " FROM payments WHERE outcome IS NOT NULL",
                0, NULL);
  if (!r) return pgq_failure(p);
  long n = atol(PQgetvalue(r, 0, 0));
  double secs = atof(PQgetvalue(r, 0, 1));
  if (n > 0 && secs > 0)
    printf("\nthroughput: %ld payments finished in %.2f s = %.0f payments/s end to end\n", n,
           secs, n / secs);
  PQclear(r);
  return PAYCTL_OK;
}
