/* pgq: payctl's one-statement queries against Postgres (the truth every
 * command reads), with the error printed the same way everywhere. */
#ifndef PAYCTL_PGQ_H
#define PAYCTL_PGQ_H

#include "payctl.h"

/* Runs one parameterised statement in its own transaction, connecting
 * first if needed. Returns the result (caller PQclears), or NULL after
 * printing "payctl: <error>" to stderr. */
PGresult *pgq_query(payctl *p, const char *sql, int nparams, const char *const *params);

/* The exit code for the failure pgq_query just reported: PAYCTL_UNAVAILABLE
 * when Postgres could not be reached (or the connection was lost),
 * PAYCTL_FAILED when the statement itself failed. */
int pgq_failure(const payctl *p);

/* Prints every row of r on its own line: prefix, then the columns
 * separated by sep (a listing's rows, as payctl prints them). */
void pgq_print(const PGresult *r, const char *prefix, const char *sep);

#endif
