/* payctl migrate: applies db/migrations/NNN_*.sql in order, each once, each
 * in its own transaction, recorded in schema_migrations. Safe to run
 * concurrently: an advisory lock serialises migrators. A file's lock waits
 * are bounded (PAYSTREAM_MIGRATE_LOCK_TIMEOUT_MS, default 5000): an attempt
 * that times out is rolled back and tried again later (PAYSTREAM_MIGRATE_
 * RETRIES times, default 10), so a migration never holds a live table's
 * queries behind a long transaction for longer than that (docs/migrations.md). */
#include <glib.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>

#include "commands.h"
#include "opt.h"
#include "pgq.h"

#ifndef PS_MIGRATIONS_DIR
#define PS_MIGRATIONS_DIR "db/migrations"
#endif

static gint cmp_name(gconstpointer a, gconstpointer b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The migration files' names in dir, sorted; NULL if dir cannot be read. */
static GPtrArray *migration_names(const char *dir) {
  GDir *d = g_dir_open(dir, 0, NULL);
  if (!d) return NULL;
  GPtrArray *names = g_ptr_array_new_with_free_func(g_free);
  for (const char *e; (e = g_dir_read_name(d));)
    if (g_str_has_suffix(e, ".sql") && strlen(e) > 4) g_ptr_array_add(names, g_strdup(e));
  g_dir_close(d);
  g_ptr_array_sort(names, cmp_name);
  return names;
}

/* How long one attempt of a file may wait for a lock, and how often a file
 * whose attempt timed out is tried again. */
typedef struct {
  long long lock_timeout_ms, retries;
  PGconn *watch; /* a second connection: what the attempt waits for */
} mig_limits;

/* What backend pid waits for now, e.g. "AccessExclusiveLock on table
 * payments (held by pid 4711)"; left as it is when it waits for nothing.
 * Names and pids only: never another session's query text. */
static void sample_wait(PGconn *watch, int pid, char *out, size_t outlen) {
  char pidtxt[16];
  snprintf(pidtxt, sizeof pidtxt, "%d", pid);
  const char *v[] = {pidtxt};
  PGresult *r = PQexecParams(
      watch,
      "SELECT l.mode || ' on ' || CASE WHEN l.locktype = 'relation' THEN 'table '"
      " || l.relation::regclass::text ELSE l.locktype END || ' (held by pid '"
      " || coalesce(array_to_string(pg_blocking_pids(l.pid), ', '), '?') || ')'"
      " FROM pg_locks l WHERE l.pid = $1::int AND NOT l.granted LIMIT 1",
      1, NULL, v, NULL, NULL, 0);
  if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1)
    snprintf(out, outlen, "%s", PQgetvalue(r, 0, 0));
  PQclear(r);
}

/* Runs sql (one or more statements) on c, sampling from lim->watch what it
 * waits for while it runs. Returns 0, or -1 with the first error's SQLSTATE
 * in state and its message in msg. */
static int run_watched(PGconn *c, const char *sql, const mig_limits *lim, char state[6],
                       char *msg, size_t msglen, char *waited, size_t waitedlen) {
  state[0] = '\0';
  if (!PQsendQuery(c, sql)) {
    snprintf(msg, msglen, "%s", PQerrorMessage(c));
    return -1;
  }
  int pid = PQbackendPID(c);
  while (PQisBusy(c)) {
    struct pollfd fd = {.fd = PQsocket(c), .events = POLLIN};
    if (poll(&fd, 1, 200) > 0 && !PQconsumeInput(c)) break;
    if (PQisBusy(c) && lim->watch) sample_wait(lim->watch, pid, waited, waitedlen);
  }
  int rc = 0;
  for (PGresult *res; (res = PQgetResult(c));) {
    ExecStatusType st = PQresultStatus(res);
    if (rc == 0 && st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
      const char *s = PQresultErrorField(res, PG_DIAG_SQLSTATE);
      snprintf(state, 6, "%s", s ? s : "");
      snprintf(msg, msglen, "%s", PQresultErrorMessage(res));
      rc = -1;
    }
    PQclear(res);
  }
  if (rc == 0 && PQstatus(c) != CONNECTION_OK) {
    snprintf(msg, msglen, "%s", PQerrorMessage(c));
    rc = -1;
  }
  return rc;
}

static int exec_ok(PGconn *c, const char *sql, int n, const char *const *v) {
  PGresult *res = PQexecParams(c, sql, n, NULL, v, NULL, NULL, 0);
  ExecStatusType st = PQresultStatus(res);
  PQclear(res);
  return st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK;
}

/* One attempt: the file's SQL and its record, in one transaction, after the
 * migrators' advisory lock, every lock wait bounded by lock_timeout (a file
 * may set its own). Returns 0, 1 when a lock wait timed out (rolled back,
 * waited says for what), 2 when another migrator applied it meanwhile
 * (nothing done), or -1 (rolled back, error printed). */
static int attempt(PGconn *c, const char *name, const char *sql, const mig_limits *lim,
                   char *waited, size_t waitedlen) {
  char timeout[32], state[6] = "", msg[1024] = "";
  snprintf(timeout, sizeof timeout, "%lldms", lim->lock_timeout_ms);
  const char *tv[] = {timeout}, *nv[] = {name};
  /* The advisory lock waits without a bound: other migrators take no lock
   * a live query needs. lock_timeout applies from here on. */
  /* READ COMMITTED whatever default_transaction_isolation says: the
   * re-check below must see a commit made while this one waited. */
  int ok = exec_ok(c, "BEGIN ISOLATION LEVEL READ COMMITTED", 0, NULL) &&
           exec_ok(c, "SELECT pg_advisory_xact_lock(4242)", 0, NULL) &&
           exec_ok(c, "SELECT set_config('lock_timeout', $1, true)", 1, tv);
  if (!ok) snprintf(msg, sizeof msg, "%s", PQerrorMessage(c));
  /* Asked again under the lock: another migrator may have applied the
   * file since it was found missing (while this one waited for the lock
   * or paused between attempts). */
  if (ok) {
    PGresult *res =
        PQexecParams(c, "SELECT 1 FROM schema_migrations WHERE version = $1", 1, NULL, nv, NULL,
                     NULL, 0);
    ok = PQresultStatus(res) == PGRES_TUPLES_OK;
    int applied = ok && PQntuples(res) > 0;
    if (!ok) {
      const char *code = PQresultErrorField(res, PG_DIAG_SQLSTATE);
      snprintf(state, 6, "%s", code ? code : "");
      snprintf(msg, sizeof msg, "%s", PQerrorMessage(c));
    }
    PQclear(res);
    if (applied) {
      PQclear(PQexec(c, "ROLLBACK"));
      return 2;
    }
  }
  if (ok && run_watched(c, sql, lim, state, msg, sizeof msg, waited, waitedlen)) ok = 0;
  if (ok && !exec_ok(c,
                     "INSERT INTO schema_migrations (version) VALUES ($1)"
                     " ON CONFLICT DO NOTHING",
                     1, nv)) {
    ok = 0;
    snprintf(msg, sizeof msg, "%s", PQerrorMessage(c));
  }
  if (ok && !exec_ok(c, "COMMIT", 0, NULL)) {
    ok = 0;
    snprintf(msg, sizeof msg, "%s", PQerrorMessage(c));
  }
  if (ok) return 0;
  PQclear(PQexec(c, "ROLLBACK"));
  if (strcmp(state, "55P03") == 0) return 1; /* lock_not_available */
  fprintf(stderr, "payctl: migration %s failed: %s", name, msg);
  return -1;
}

/* Applies one file: an attempt that timed out waiting for a lock (a long
 * transaction holds the table) is rolled back at once — a queued ALTER
 * would queue every query on that table behind it — and tried again after
 * a growing pause, lim->retries times. Returns 0, PAYCTL_FAILED, or
 * PAYCTL_UNAVAILABLE when the lock never came (nothing of the file applied). */
static int apply(PGconn *c, const char *name, const char *sql, const mig_limits *lim) {
  long long pause_ms = 500;
  for (long long k = 0;; k++) {
    char waited[256] = "";
    int r = attempt(c, name, sql, lim, waited, sizeof waited);
    if (r == 0) {
      printf("applied %s\n", name);
      return PAYCTL_OK;
    }
    if (r == 2) {
      printf("%s was applied by another migrator\n", name);
      return PAYCTL_OK;
    }
    if (r < 0) return PAYCTL_FAILED;
    if (!*waited) snprintf(waited, sizeof waited, "a lock");
    if (k >= lim->retries) {
      fprintf(stderr,
              "payctl: migration %s not applied: waited for %s longer than lock_timeout "
              "%lld ms on %lld attempts; nothing of it was applied. End the long transaction "
              "(pg_stat_activity) or raise PAYSTREAM_MIGRATE_LOCK_TIMEOUT_MS / "
              "PAYSTREAM_MIGRATE_RETRIES, then run payctl migrate again\n",
              name, waited, lim->lock_timeout_ms, k + 1);
      return PAYCTL_UNAVAILABLE;
    }
    fprintf(stderr,
            "payctl: migration %s waited for %s longer than %lld ms; rolled back, attempt "
            "%lld of %lld in %lld ms\n",
            name, waited, lim->lock_timeout_ms, k + 2, lim->retries + 1, pause_ms);
    g_usleep((gulong)pause_ms * 1000);
    pause_ms = pause_ms * 2 > 10000 ? 10000 : pause_ms * 2;
  }
}

int cmd_migrate(payctl *p, int argc, char **argv) {
  (void)argv;
  if (argc != 1) return opt_usage("migrate", "takes no arguments");
  char err[512];
  mig_limits lim = {0};
  if (cfg_env_int("PAYSTREAM_MIGRATE_LOCK_TIMEOUT_MS", 5000, 1, 600000, &lim.lock_timeout_ms, err,
                  sizeof err) ||
      cfg_env_int("PAYSTREAM_MIGRATE_RETRIES", 10, 0, 1000, &lim.retries, err, sizeof err)) {
    fprintf(stderr, "payctl: %s\n", err);
    return PAYCTL_USAGE;
  }
  if (pg_ensure(&p->pg, err, sizeof err)) {
    fprintf(stderr, "payctl: %s\n", err);
    return PAYCTL_UNAVAILABLE;
  }
  const char *dir = cfg_env_str("PAYSTREAM_MIGRATIONS_DIR", PS_MIGRATIONS_DIR);
  GPtrArray *names = migration_names(dir);
  if (!names) {
    fprintf(stderr, "payctl: could not open migrations directory %s\n", dir);
    return PAYCTL_FAILED;
  }
  /* Only to say which lock an attempt waited for: without it the
   * migration runs all the same. */
  const char *wk[] = {"application_name", "connect_timeout", "dbname", NULL};
  const char *wv[] = {"payctl-migrate-watch", "5", p->pg.dsn, NULL};
  lim.watch = PQconnectdbParams(wk, wv, 1);
  if (PQstatus(lim.watch) != CONNECTION_OK) {
    PQfinish(lim.watch);
    lim.watch = NULL;
  }
  int rc = PAYCTL_OK;
  PGresult *r = pgq_query(p,
                          "CREATE TABLE IF NOT EXISTS schema_migrations (version text PRIMARY "
                          "KEY, applied_at timestamptz NOT NULL DEFAULT now())",
                          0, NULL);
  if (!r) rc = pgq_failure(p);
  PQclear(r);
  /* Workers read it for readiness (lib/schema.h): what is applied is no
   * secret, and the table predates the stage roles. Granted by its owner
   * (a migrating role that does not own it leaves the grant as it is). */
  if (rc == PAYCTL_OK) {
    r = pgq_query(p,
                  "DO $$ BEGIN IF pg_has_role((SELECT relowner FROM pg_class WHERE oid = "
                  "'schema_migrations'::regclass), 'USAGE') THEN GRANT SELECT ON "
                  "schema_migrations TO PUBLIC; END IF; END $$",
                  0, NULL);
    if (!r) rc = pgq_failure(p);
    PQclear(r);
  }
  for (guint i = 0; rc == PAYCTL_OK && i < names->len; i++) {
    const char *name = g_ptr_array_index(names, i);
    const char *v[] = {name};
    r = pgq_query(p, "SELECT 1 FROM schema_migrations WHERE version = $1", 1, v);
    if (!r) {
      rc = pgq_failure(p);
      break;
    }
    int done = PQntuples(r) > 0;
    PQclear(r);
    if (done) continue;
    gchar *path = g_build_filename(dir, name, NULL), *sql = NULL;
    if (!g_file_get_contents(path, &sql, NULL, NULL)) {
      fprintf(stderr, "payctl: could not read %s\n", path);
      rc = PAYCTL_FAILED;
    } else {
      rc = apply(p->pg.conn, name, sql, &lim);
    }
    g_free(sql);
    g_free(path);
  }
  g_ptr_array_free(names, TRUE);
  if (lim.watch) PQfinish(lim.watch);
  if (rc == PAYCTL_OK) printf("migrations up to date\n");
  return rc;
}
