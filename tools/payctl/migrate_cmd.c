/* payctl migrate: applies db/migrations/NNN_*.sql in order, each once, each
 * in its own transaction, recorded in schema_migrations. Safe to run
 * concurrently: an advisory lock serialises migrators. */
#include <glib.h>
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

/* Runs one file's SQL and records it, in one transaction. Returns 0 or -1
 * (rolled back, error printed). */
static int apply(PGconn *c, const char *name, const char *sql) {
  const char *steps[] = {"BEGIN", "SELECT pg_advisory_xact_lock(4242)", sql};
  int ok = 1;
  for (int k = 0; k < 3 && ok; k++) {
    PGresult *res = PQexec(c, steps[k]);
    ExecStatusType st = PQresultStatus(res);
    ok = st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK;
    PQclear(res);
  }
  const char *v[] = {name};
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
  if (ok) return 0;
  fprintf(stderr, "payctl: migration %s failed: %s", name, PQerrorMessage(c));
  PQclear(PQexec(c, "ROLLBACK"));
  return -1;
}

int cmd_migrate(payctl *p, int argc, char **argv) {
  (void)argv;
  if (argc != 1) return opt_usage("migrate", "takes no arguments");
  char err[512];
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
    } else if (apply(p->pg.conn, name, sql)) {
      rc = PAYCTL_FAILED;
    } else {
      printf("applied %s\n", name);
    }
    g_free(sql);
    g_free(path);
  }
  g_ptr_array_free(names, TRUE);
  if (rc == PAYCTL_OK) printf("migrations up to date\n");
  return rc;
}
