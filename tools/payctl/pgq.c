/* pgq: see pgq.h. */
#include "pgq.h"

#include <stdio.h>

PGresult *pgq_query(payctl *p, const char *sql, int nparams, const char *const *params) {
  char err[512];
  PGresult *r = pg_exec(&p->pg, sql, nparams, params, err, sizeof err);
  if (!r) fprintf(stderr, "payctl: %s\n", err);
  return r;
}

int pgq_failure(const payctl *p) {
  /* pg_exec drops a broken connection, so no connection (or a bad one)
   * means Postgres was not reachable; anything else was the statement. */
  if (!p->pg.conn || PQstatus(p->pg.conn) != CONNECTION_OK) return PAYCTL_UNAVAILABLE;
  return PAYCTL_FAILED;
}

void pgq_print(const PGresult *r, const char *prefix, const char *sep) {
  for (int i = 0; i < PQntuples(r); i++) {
    fputs(prefix, stdout);
    for (int c = 0; c < PQnfields(r); c++) printf("%s%s", c ? sep : "", PQgetvalue(r, i, c));
    putchar('\n');
  }
}
