/* pg: Postgres connection management and pipelined batches. */
#include "pg.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "log.h"
#include "metrics.h"

static PGresult *pg_exec_run(pg_conn *pg, const char *sql, int nparams,
                             const char *const *params, char *err, size_t errlen);

void pg_init(pg_conn *pg, const char *dsn, const char *app_name, bool prepare) {
  memset(pg, 0, sizeof *pg);
  pg->dsn = dsn;
  pg->app_name = app_name;
  pg->backoff_ms = 100;
  pg->prepare = prepare;
}

/* Prepared statements live and die with the connection. */
void pg_close(pg_conn *pg) {
  if (pg->conn) PQfinish(pg->conn);
  pg->conn = NULL;
  for (int i = 0; i < pg->nprepared; i++) free(pg->prepared[i]);
  pg->nprepared = 0;
}

/* The index of sql among the connection's prepared statements, or -1. */
static int prepared_index(const pg_conn *pg, const char *sql) {
  for (int i = 0; i < pg->nprepared; i++)
    if (strcmp(pg->prepared[i], sql) == 0) return i;
  return -1;
}

static void trim_newline(char *s) {
  size_t n = strlen(s);
  while (n && (s[n - 1] == '\n' || s[n - 1] == ' ')) s[--n] = '\0';
}

int pg_ensure(pg_conn *pg, char *err, size_t errlen) {
  if (pg->conn && PQstatus(pg->conn) == CONNECTION_OK) return 0;
  pg_close(pg);
  int64_t now = ps_mono_ms();
  if (now < pg->next_try_ms) {
    snprintf(err, errlen, "postgres unavailable (retrying)");
    return -1;
  }
  /* Our keywords first: with expand_dbname the DSN's own settings win. */
  /* PAYSTREAM_PG_ISOLATION=serializable reproduces the seed's design for
   * benchmarks; our statements are written for the default, read committed. */
  /* JIT off: our statements are short and per batch; JIT compiling one
   * whose cost the planner overestimates (unnest of a batch) takes 200 ms,
   * and never pays back. random_page_cost 1.1 (the usual setting for SSDs
   * and cached data; the default 4 assumes spinning disks): a batch joins
   * its few hundred ids to a table by primary key, and with the default the
   * planner prefers a sequential scan of the whole table until it holds
   * some 100,000 rows — bench/cpu.sh saw fraud's batch UPDATE scan all
   * assessments (5 ms and growing per batch) instead of 500 index probes. */
  char options[160] = "-c jit=off -c random_page_cost=1.1";
  if (pg->serializable) strcat(options, " -c default_transaction_isolation=serializable");
  const char *keys[] = {"application_name", "connect_timeout", "options", "dbname", NULL};
  const char *vals[] = {pg->app_name, "5", options, pg->dsn, NULL};
  pg->conn = PQconnectdbParams(keys, vals, 1);
  if (PQstatus(pg->conn) != CONNECTION_OK) {
    snprintf(err, errlen, "could not connect to postgres: %s", PQerrorMessage(pg->conn));
    trim_newline(err);
    pg_close(pg);
    pg->next_try_ms = now + pg->backoff_ms;
    pg->backoff_ms = pg->backoff_ms * 2 > 5000 ? 5000 : pg->backoff_ms * 2;
    return -1;
  }
  pg->backoff_ms = 100;
  return 0;
}

static void result_error(PGresult *r, PGconn *c, char *err, size_t errlen) {
  const char *state = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
  const char *msg = r ? PQresultErrorMessage(r) : PQerrorMessage(c);
  snprintf(err, errlen, "%s: %s", state ? state : "conn", msg && *msg ? msg : "unknown error");
  trim_newline(err);
}

/* Drops a connection that is no longer usable so the next call reconnects. */
static void drop_if_broken(pg_conn *pg) {
  if (pg->conn && PQstatus(pg->conn) != CONNECTION_OK) pg_close(pg);
}

/* The next result set's result, its NULL terminator consumed; NULL if the
 * connection has none. */
static PGresult *next_result(PGconn *c) {
  PGresult *r = PQgetResult(c);
  if (r) {
    PGresult *end = PQgetResult(c);
    if (end) PQclear(end);
  }
  return r;
}

static int pipeline_run(pg_conn *pg, const pg_stmt *stmts, int n, PGresult **results, char *err,
                        size_t errlen) {
  for (int i = 0; i < n; i++) results[i] = NULL;
  if (pg_ensure(pg, err, errlen)) return -1;
  PGconn *c = pg->conn;
  if (!PQenterPipelineMode(c)) {
    snprintf(err, errlen, "could not enter pipeline mode");
    pg_close(pg);
    return -1;
  }
  int rc = 0;
  /* A statement seen for the first time is prepared in this round trip
   * under the next free name; it counts as prepared once Postgres says so
   * (a Parse after a failed statement is skipped, and is sent again next
   * time). When every name is taken, statements are sent unprepared. */
  int *prep = malloc(((size_t)n + 1) * sizeof *prep);
  if (!prep) abort();
  int nextname = pg->prepare ? pg->nprepared : PG_MAX_PREPARED;
  for (int i = 0; i < n && rc == 0; i++) {
    char name[16];
    int k = prepared_index(pg, stmts[i].sql);
    prep[i] = -1;
    if (k < 0 && nextname < PG_MAX_PREPARED) {
      k = nextname++;
      prep[i] = k;
      snprintf(name, sizeof name, "ps%d", k);
      if (!PQsendPrepare(c, name, stmts[i].sql, stmts[i].nparams, NULL)) rc = -1;
    }
    snprintf(name, sizeof name, "ps%d", k);
    if (rc == 0 && (k >= 0 ? !PQsendQueryPrepared(c, name, stmts[i].nparams, stmts[i].params,
                                                  NULL, NULL, 0)
                           : !PQsendQueryParams(c, stmts[i].sql, stmts[i].nparams, NULL,
                                                stmts[i].params, NULL, NULL, 0)))
      rc = -1;
  }
  if (rc == 0 && !PQpipelineSync(c)) rc = -1;
  if (rc) {
    result_error(NULL, c, err, errlen);
    pg_close(pg);
    free(prep);
    return -1;
  }

  /* Read one result set per statement (after its Prepare's, if sent),
   * then the sync marker. */
  for (int i = 0; i < n; i++) {
    if (prep[i] >= 0) {
      PGresult *pr = next_result(c);
      if (!pr) {
        result_error(NULL, c, err, errlen);
        rc = -1;
        break;
      }
      ExecStatusType ps = PQresultStatus(pr);
      if (ps == PGRES_COMMAND_OK && prep[i] == pg->nprepared) {
        pg->prepared[pg->nprepared++] = strdup(stmts[i].sql);
        if (!pg->prepared[pg->nprepared - 1]) abort();
      } else if (ps != PGRES_COMMAND_OK && ps != PGRES_PIPELINE_ABORTED) {
        /* A statement that does not prepare is a bug in it: say so. */
        if (rc == 0) result_error(pr, c, err, errlen);
        rc = -1;
      }
      PQclear(pr);
    }
    PGresult *r = next_result(c);
    if (!r) {
      result_error(NULL, c, err, errlen);
      rc = -1;
      break;
    }
    ExecStatusType st = PQresultStatus(r);
    if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK) {
      results[i] = r;
    } else {
      if (rc == 0 && st != PGRES_PIPELINE_ABORTED) result_error(r, c, err, errlen);
      rc = -1;
      PQclear(r);
    }
  }
  if (PQstatus(c) == CONNECTION_OK) {
    for (int guard = 0; guard < 1000; guard++) {
      PGresult *r = PQgetResult(c);
      if (!r) {
        if (PQstatus(c) != CONNECTION_OK) break;
        continue;
      }
      ExecStatusType st = PQresultStatus(r);
      /* The implicit COMMIT runs at the Sync: a deferred constraint (the
       * ledger's balance trigger) fails here, after every statement
       * succeeded, and the whole transaction is rolled back. */
      if (st == PGRES_FATAL_ERROR && rc == 0) {
        result_error(r, c, err, errlen);
        rc = -1;
      }
      PQclear(r);
      if (st == PGRES_PIPELINE_SYNC) break;
      if (st == PGRES_FATAL_ERROR && PQstatus(c) != CONNECTION_OK) break;
    }
    PQexitPipelineMode(c);
  }
  drop_if_broken(pg);
  /* Should the server not know a name we think prepared (or know one we
   * do not), start over on a new connection rather than fail forever. */
  if (rc && (strncmp(err, "26000", 5) == 0 || strncmp(err, "42P05", 5) == 0)) pg_close(pg);
  free(prep);
  if (rc) pg_results_clear(results, n);
  return rc;
}

void pg_results_clear(PGresult **results, int n) {
  for (int i = 0; i < n; i++) {
    if (results[i]) PQclear(results[i]);
    results[i] = NULL;
  }
}

/* Every round trip is timed; failures are counted by SQLSTATE class. */
static void observe(double t0, int failed, const char *err) {
  static metric *seconds;
  if (!seconds)
    seconds = metrics_histogram("paystream_postgres_seconds",
                                "Postgres round trips (a batch pipeline or one statement)",
                                METRICS_LATENCY_BUCKETS, METRICS_LATENCY_NBUCKETS, NULL);
  metric_observe(seconds, metrics_now() - t0);
  if (failed) {
    char cls[3] = {err[0], err[0] ? err[1] : 0, 0};
    metric_add(metrics_counter("paystream_postgres_errors_total",
                               "Failed Postgres round trips by SQLSTATE class (co: connection)",
                               "class", cls, NULL),
               1);
  }
}

int pg_pipeline(pg_conn *pg, const pg_stmt *stmts, int n, PGresult **results, char *err,
                size_t errlen) {
  double t0 = metrics_now();
  int rc = pipeline_run(pg, stmts, n, results, err, errlen);
  observe(t0, rc != 0, err);
  return rc;
}

PGresult *pg_exec(pg_conn *pg, const char *sql, int nparams, const char *const *params, char *err,
                  size_t errlen) {
  double t0 = metrics_now();
  PGresult *r = pg_exec_run(pg, sql, nparams, params, err, errlen);
  observe(t0, r == NULL, err);
  return r;
}

static PGresult *pg_exec_run(pg_conn *pg, const char *sql, int nparams, const char *const *params,
                             char *err, size_t errlen) {
  if (pg_ensure(pg, err, errlen)) return NULL;
  PGresult *r = PQexecParams(pg->conn, sql, nparams, NULL, params, NULL, NULL, 0);
  ExecStatusType st = PQresultStatus(r);
  if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK) return r;
  result_error(r, pg->conn, err, errlen);
  PQclear(r);
  drop_if_broken(pg);
  return NULL;
}

int pg_err_is_data_error(const char *err) {
  return strncmp(err, "22", 2) == 0 || strncmp(err, "23", 2) == 0 ||
         strncmp(err, "P0001", 5) == 0;
}

void pg_err_public(const char *err, char *out, size_t outlen) {
  if (strncmp(err, "could not connect", 17) == 0)
    snprintf(out, outlen, "cannot connect");
  else if (strncmp(err, "postgres unavailable", 20) == 0)
    snprintf(out, outlen, "unavailable (reconnecting)");
  else if (strlen(err) >= 6 && err[5] == ':' && strncmp(err, "conn", 4) != 0)
    snprintf(out, outlen, "query failed: SQLSTATE %.5s", err);
  else
    snprintf(out, outlen, "connection lost");
}

static void arr_reserve(pg_array *a, size_t extra) {
  if (a->len + extra + 2 <= a->cap) return;
  size_t cap = a->cap ? a->cap : 256;
  while (a->len + extra + 2 > cap) cap *= 2;
  char *nb = realloc(a->buf, cap);
  if (!nb) abort(); /* out of memory: nothing sensible to do mid-batch */
  a->buf = nb;
  a->cap = cap;
}

void pg_array_init(pg_array *a) {
  memset(a, 0, sizeof *a);
  arr_reserve(a, 1);
  a->buf[a->len++] = '{';
}

static void arr_sep(pg_array *a) {
  if (a->count++) {
    arr_reserve(a, 1);
    a->buf[a->len++] = ',';
  }
}

void pg_array_add_str(pg_array *a, const char *s) {
  arr_sep(a);
  if (!s) {
    arr_reserve(a, 4);
    memcpy(a->buf + a->len, "NULL", 4);
    a->len += 4;
    return;
  }
  size_t n = strlen(s);
  arr_reserve(a, 2 * n + 2);
  a->buf[a->len++] = '"';
  for (size_t i = 0; i < n; i++) {
    if (s[i] == '"' || s[i] == '\\') a->buf[a->len++] = '\\';
    a->buf[a->len++] = s[i];
  }
  a->buf[a->len++] = '"';
}

void pg_array_add_int(pg_array *a, long long v) {
  arr_sep(a);
  arr_reserve(a, 24);
  a->len += (size_t)snprintf(a->buf + a->len, 24, "%lld", v);
}

const char *pg_array_finish(pg_array *a) {
  arr_reserve(a, 1);
  a->buf[a->len++] = '}';
  a->buf[a->len] = '\0';
  return a->buf;
}

void pg_array_free(pg_array *a) {
  free(a->buf);
  memset(a, 0, sizeof *a);
}

void pg_arrays_init(pg_array *a, int n) {
  for (int i = 0; i < n; i++) pg_array_init(&a[i]);
}

void pg_arrays_finish(pg_array *a, int n, const char **out) {
  for (int i = 0; i < n; i++) out[i] = pg_array_finish(&a[i]);
}

void pg_arrays_free(pg_array *a, int n) {
  for (int i = 0; i < n; i++) pg_array_free(&a[i]);
}
