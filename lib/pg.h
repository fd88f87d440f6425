/* pg: one Postgres connection per worker that reconnects on demand, and a
 * pipeline helper that sends a batch's statements in one round trip as one
 * implicit transaction (libpq pipeline mode: everything up to the Sync
 * commits or rolls back together). Parameters are always bound, never
 * spliced into SQL text. */
#ifndef PS_PG_H
#define PS_PG_H

#include <libpq-fe.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Statements pg_pipeline prepared on the current connection (by text). */
#define PG_MAX_PREPARED 64

typedef struct pg_conn {
  const char *dsn;          /* may carry a password: never logged */
  const char *app_name;
  PGconn *conn;
  int64_t next_try_ms;      /* reconnect back-off */
  int backoff_ms;
  bool prepare;             /* prepare statements; off: always unnamed */
  bool serializable;        /* sessions default to serializable (cfg pg_serializable) */
  char *prepared[PG_MAX_PREPARED]; /* statement "ps<i>" has this text */
  int nprepared;
} pg_conn;

typedef struct pg_stmt {
  const char *sql;
  int nparams;
  const char *const *params; /* text format; NULL entries are SQL NULL */
} pg_stmt;

/* prepare: pg_pipeline prepares its statements (PAYSTREAM_PG_PREPARE).
 * Sessions use read committed unless the caller then sets serializable
 * (cfg's pg_serializable). */
void pg_init(pg_conn *pg, const char *dsn, const char *app_name, bool prepare);
void pg_close(pg_conn *pg);

/* Connects if not connected. Returns 0, or -1 with err set (and a back-off
 * before the next attempt is made). */
int pg_ensure(pg_conn *pg, char *err, size_t errlen);

/* Runs n statements as one transaction in a single round trip; each
 * statement is prepared on the connection the first time it is sent (in
 * the same round trip) and executed by name after that, so a batch is not
 * parsed and planned again every time. On success
 * returns 0 and results[i] holds each statement's result (caller PQclears).
 * On failure returns -1, clears everything, and writes "SQLSTATE: message"
 * into err; a broken connection is dropped so the next call reconnects. */
int pg_pipeline(pg_conn *pg, const pg_stmt *stmts, int n, PGresult **results, char *err,
                size_t errlen);

/* PQclears results[0..n) that are set. */
void pg_results_clear(PGresult **results, int n);

/* Convenience: one statement, its own transaction. Returns the result or
 * NULL with err set. */
PGresult *pg_exec(pg_conn *pg, const char *sql, int nparams, const char *const *params, char *err,
                  size_t errlen);

/* Whether err (from the calls above) is caused by the data itself — a data
 * exception (class 22, e.g. bigint out of range), an integrity constraint
 * (class 23) or a raised exception (P0001) — so that retrying the same rows
 * fails the same way and the offending row must be isolated. Everything else
 * (connection loss, serialization failure, deadlock, a broken deployment)
 * is retried as it is. */
int pg_err_is_data_error(const char *err);

/* What err (from the calls above) may say in public — /readyz, which any
 * scraper reads: the kind of failure and its SQLSTATE, never libpq's text
 * (it names the server's host and port and the user). */
void pg_err_public(const char *err, char *out, size_t outlen);

/* A growable Postgres array literal ("{...}") for passing a batch of values
 * as one text parameter, unnested server-side. */
typedef struct pg_array {
  char *buf;
  size_t len, cap;
  int count;
} pg_array;

void pg_array_init(pg_array *a);
void pg_array_add_str(pg_array *a, const char *s); /* NULL -> SQL NULL */
void pg_array_add_int(pg_array *a, long long v);
/* Returns the NUL-terminated literal (owned by a). */
const char *pg_array_finish(pg_array *a);
void pg_array_free(pg_array *a);
/* The same for n arrays at once (a batch's columns); finish writes each
 * literal to out[i]. */
void pg_arrays_init(pg_array *a, int n);
void pg_arrays_finish(pg_array *a, int n, const char **out);
void pg_arrays_free(pg_array *a, int n);

#endif
