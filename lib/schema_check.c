/* schema_check: readiness fails while the database is older than the
 * binary (a worker deployed before its migration ran). Shared by kloop's
 * workers and the stages with their own loop (ps-events). */
#include "schema_check.h"

#include <stdio.h>

#include "log.h"
#include "metrics.h"
#include "schema.h"

int schema_check(pg_conn *pg, bool *warned) {
  char err[256];
  const char *v[] = {PS_DB_SCHEMA_VERSION};
  PGresult *r = pg_exec(pg, "SELECT 1 FROM schema_migrations WHERE version = $1", 1, v, err,
                        sizeof err);
  if (!r) {
    char what[64] = "";
    pg_err_public(err, what, sizeof what);
    metrics_set_check("schema", false, true, what);
    return -1;
  }
  bool ok = PQntuples(r) > 0;
  PQclear(r);
  char why[128];
  snprintf(why, sizeof why, "needs migration %s (run payctl migrate)", PS_DB_SCHEMA_VERSION);
  metrics_set_check("schema", ok, true, ok ? "" : why);
  if (!ok && !*warned) log_warn("not ready: the database schema is older than this build: %s", why);
  *warned = !ok;
  return ok ? 1 : 0;
}
