/* payctl: operator CLI — migrate, publish, status, summary, wait, ledger,
 * outcomes, dlq. Configuration comes from the same PAYSTREAM_* variables as
 * the workers. */
#include "payctl.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

#ifndef PS_MIGRATIONS_DIR
#define PS_MIGRATIONS_DIR "db/migrations"
#endif

PGresult *payctl_query(payctl *p, const char *sql, int nparams, const char *const *params) {
  char err[512];
  PGresult *r = pg_exec(&p->pg, sql, nparams, params, err, sizeof err);
  if (!r) fprintf(stderr, "payctl: %s\n", err);
  return r;
}

static int cmp_str(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

static char *read_all(const char *path) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  char *buf = malloc((size_t)n + 1);
  if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) {
    free(buf);
    buf = NULL;
  }
  if (buf) buf[n] = '\0';
  fclose(f);
  return buf;
}

/* Applies db/migrations/NNN_*.sql in order, each once, each in its own
 * transaction, recorded in schema_migrations. Safe to run concurrently:
 * an advisory lock serialises migrators. */
static int cmd_migrate(payctl *p) {
  const char *dir = cfg_env_str("PAYSTREAM_MIGRATIONS_DIR", PS_MIGRATIONS_DIR);
  DIR *d = opendir(dir);
  if (!d) {
    fprintf(stderr, "payctl: could not open migrations directory %s\n", dir);
    return 1;
  }
  char *names[512];
  int n = 0;
  struct dirent *e;
  while ((e = readdir(d)) && n < 512) {
    size_t len = strlen(e->d_name);
    if (len > 4 && strcmp(e->d_name + len - 4, ".sql") == 0) names[n++] = strdup(e->d_name);
  }
  closedir(d);
  qsort(names, (size_t)n, sizeof *names, cmp_str);

  int rc = 0;
  PGresult *r = payctl_query(p,
                             "CREATE TABLE IF NOT EXISTS schema_migrations (version text PRIMARY "
                             "KEY, applied_at timestamptz NOT NULL DEFAULT now())",
                             0, NULL);
  if (!r) rc = 1;
  PQclear(r);
  for (int i = 0; rc == 0 && i < n; i++) {
    const char *v[] = {names[i]};
    r = payctl_query(p, "SELECT 1 FROM schema_migrations WHERE version = $1", 1, v);
    if (!r) {
      rc = 1;
      break;
    }
    int done = PQntuples(r) > 0;
    PQclear(r);
    if (done) continue;
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, names[i]);
    char *sql = read_all(path);
    if (!sql) {
      fprintf(stderr, "payctl: could not read %s\n", path);
      rc = 1;
      break;
    }
    /* One transaction per file; the advisory lock serialises migrators. */
    PGconn *c = p->pg.conn;
    const char *steps[] = {"BEGIN", "SELECT pg_advisory_xact_lock(4242)", sql};
    int ok = 1;
    for (int k = 0; k < 3 && ok; k++) {
      PGresult *res = PQexec(c, steps[k]);
      ExecStatusType st = PQresultStatus(res);
      ok = st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK;
      PQclear(res);
    }
    free(sql);
    if (ok) {
      PGresult *res = PQexecParams(c,
                                   "INSERT INTO schema_migrations (version) VALUES ($1)"
                                   " ON CONFLICT DO NOTHING",
                                   1, NULL, v, NULL, NULL, 0);
      ok = PQresultStatus(res) == PGRES_COMMAND_OK;
      PQclear(res);
    }
    if (ok) {
      PGresult *res = PQexec(c, "COMMIT");
      ok = PQresultStatus(res) == PGRES_COMMAND_OK;
      PQclear(res);
    }
    if (!ok) {
      fprintf(stderr, "payctl: migration %s failed: %s", names[i], PQerrorMessage(c));
      PQclear(PQexec(c, "ROLLBACK"));
      rc = 1;
      break;
    }
    printf("applied %s\n", names[i]);
  }
  for (int i = 0; i < n; i++) free(names[i]);
  if (rc == 0) printf("migrations up to date\n");
  return rc;
}

static int cmd_status(payctl *p, int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: payctl status <merchant> <idempotency-key>\n");
    return 2;
  }
  const char *v[] = {argv[0], argv[1]};
  PGresult *r = payctl_query(
      p,
      "SELECT payment_id, status, amount_minor, currency, coalesce(error_code, ''),"
      " coalesce(processor, ''), coalesce(processor_charge_id, ''), created_at, updated_at"
      " FROM payments WHERE merchant_id = $1 AND idempotency_key = $2",
      2, v);
  if (!r) return 1;
  if (PQntuples(r) == 0) {
    printf("no payment for merchant %s key %s\n", argv[0], argv[1]);
    PQclear(r);
    return 1;
  }
  printf("payment_id:   %s\nstatus:       %s\namount:       %s %s\nerror_code:   %s\n"
         "processor:    %s %s\ncreated_at:   %s\nupdated_at:   %s\n",
         PQgetvalue(r, 0, 0), PQgetvalue(r, 0, 1), PQgetvalue(r, 0, 2), PQgetvalue(r, 0, 3),
         PQgetvalue(r, 0, 4), PQgetvalue(r, 0, 5), PQgetvalue(r, 0, 6), PQgetvalue(r, 0, 7),
         PQgetvalue(r, 0, 8));
  PQclear(r);
  return 0;
}

static const char SQL_TERMINAL_COUNT[] =
    "SELECT (SELECT count(*) FROM payments WHERE outcome IS NOT NULL)"
    " + (SELECT count(*) FROM rejections)";

/* Waits until at least N intents have a terminal state (payments with an
 * outcome plus rejections), or the timeout passes. */
static int cmd_wait(payctl *p, int argc, char **argv) {
  long want = -1, timeout_s = 120;
  for (int i = 0; i + 1 < argc; i += 2) {
    if (strcmp(argv[i], "--terminal") == 0) want = atol(argv[i + 1]);
    else if (strcmp(argv[i], "--timeout") == 0) timeout_s = atol(argv[i + 1]);
  }
  if (want < 0) {
    fprintf(stderr, "usage: payctl wait --terminal N [--timeout SECONDS]\n");
    return 2;
  }
  int64_t deadline = ps_mono_ms() + timeout_s * 1000;
  long have = 0;
  for (;;) {
    PGresult *r = payctl_query(p, SQL_TERMINAL_COUNT, 0, NULL);
    if (r) {
      have = atol(PQgetvalue(r, 0, 0));
      PQclear(r);
    }
    if (have >= want) break;
    if (ps_mono_ms() > deadline) {
      fprintf(stderr, "payctl: timed out with %ld of %ld intents terminal\n", have, want);
      return 1;
    }
    usleep(200 * 1000);
  }
  printf("%ld intents terminal\n", have);
  return 0;
}

/* Prints outcomes by status (Postgres is the truth) and the throughput. */
static int cmd_summary(payctl *p) {
  PGresult *r = payctl_query(
      p,
      "SELECT status, count(*) FROM ("
      " SELECT status FROM payments UNION ALL SELECT 'rejected' FROM rejections) s"
      " GROUP BY status ORDER BY count(*) DESC, status",
      0, NULL);
  if (!r) return 1;
  long total = 0;
  printf("%-12s %8s\n", "status", "count");
  printf("%-12s %8s\n", "------------", "--------");
  for (int i = 0; i < PQntuples(r); i++) {
    printf("%-12s %8s\n", PQgetvalue(r, i, 0), PQgetvalue(r, i, 1));
    total += atol(PQgetvalue(r, i, 1));
  }
  printf("%-12s %8ld\n", "total", total);
  PQclear(r);
  r = payctl_query(p,
                   "SELECT count(*), extract(epoch FROM max(updated_at) - min(created_at))"
                   " FROM payments WHERE outcome IS NOT NULL",
                   0, NULL);
  if (!r) return 1;
  long n = atol(PQgetvalue(r, 0, 0));
  double secs = atof(PQgetvalue(r, 0, 1));
  if (n > 0 && secs > 0)
    printf("\nthroughput: %ld payments finished in %.2f s = %.0f payments/s end to end\n", n,
           secs, n / secs);
  PQclear(r);
  return 0;
}

static void usage(void) {
  fprintf(stderr,
          "usage: payctl <command>\n"
          "  migrate                         apply db/migrations\n"
          "  publish [options]               publish generated intents (see publish --help)\n"
          "  load [options]                  open-loop load: throughput, end-to-end latency\n"
          "  status <merchant> <key>         show a payment\n"
          "  wait --terminal N [--timeout S] wait until N intents are terminal\n"
          "  summary                         outcomes by status and throughput\n"
          "  ledger verify|balances|balance <account>|entries <payment>\n"
          "  reconcile                       processor charges vs payments vs postings\n"
          "  replay --stage S --to-offset earliest|N [--partitions ..] [--force]\n"
          "  lag --stage S                   committed offsets and lag of a stage\n"
          "  idempotency show <merchant> <key> | prune --older-than D\n"
          "  outcomes                        print payments.outcomes as JSON lines\n"
          "  dlq list | show <partition> <offset> | redrive [--dry-run]\n"
          "  blocklist add|remove <card|ip|email|device> <value> | list [kind]\n"
          "  review list | approve|reject <payment> [--operator NAME]\n"
          "  charges unresolved [--older-than S]  attempts awaiting the processor's answer\n"
          "  publish --json FILE|- [--run PREFIX]   intents from JSON lines (fraudgen's format)\n");
}

int main(int argc, char **argv) {
  if (argc < 2) {
    usage();
    return 2;
  }
  static payctl p;
  char err[512];
  if (cfg_load(&p.cfg, "payctl", err, sizeof err)) {
    fprintf(stderr, "payctl: %s\n", err);
    return 2;
  }
  log_init("payctl", LOG_WARN);
  pg_init(&p.pg, p.cfg.pg_dsn, "payctl", p.cfg.pg_prepare != 0);
  const char *cmd = argv[1];
  int rc;
  if (strcmp(cmd, "migrate") == 0) {
    rc = pg_ensure(&p.pg, err, sizeof err) ? (fprintf(stderr, "payctl: %s\n", err), 1)
                                           : cmd_migrate(&p);
  } else if (strcmp(cmd, "publish") == 0) {
    rc = cmd_publish(&p, argc - 2, argv + 2);
  } else if (strcmp(cmd, "load") == 0) {
    rc = cmd_load(&p, argc - 2, argv + 2);
  } else if (strcmp(cmd, "status") == 0) {
    rc = cmd_status(&p, argc - 2, argv + 2);
  } else if (strcmp(cmd, "wait") == 0) {
    rc = cmd_wait(&p, argc - 2, argv + 2);
  } else if (strcmp(cmd, "summary") == 0) {
    rc = cmd_summary(&p);
  } else if (strcmp(cmd, "reconcile") == 0) {
    rc = cmd_reconcile(&p, argc - 2, argv + 2);
  } else if (strcmp(cmd, "replay") == 0) {
    rc = cmd_replay(&p, argc - 2, argv + 2);
  } else if (strcmp(cmd, "lag") == 0) {
    rc = cmd_lag(&p, argc - 2, argv + 2);
  } else if (strcmp(cmd, "idempotency") == 0) {
    rc = cmd_idempotency(&p, argc - 2, argv + 2);
  } else if (strcmp(cmd, "ledger") == 0) {
    rc = cmd_ledger(&p, argc - 2, argv + 2);
  } else if (strcmp(cmd, "outcomes") == 0) {
    rc = cmd_topic_dump(&p, "outcomes", argc - 2, argv + 2);
  } else if (strcmp(cmd, "dlq") == 0) {
    rc = cmd_dlq(&p, argc - 2, argv + 2);
  } else if (strcmp(cmd, "blocklist") == 0) {
    rc = cmd_blocklist(&p, argc - 2, argv + 2);
  } else if (strcmp(cmd, "charges") == 0) {
    rc = cmd_charges(&p, argc - 2, argv + 2);
  } else if (strcmp(cmd, "review") == 0) {
    rc = cmd_review(&p, argc - 2, argv + 2);
  } else {
    usage();
    rc = 2;
  }
  pg_close(&p.pg);
  cfg_close(&p.cfg);
  return rc;
}
