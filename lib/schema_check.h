#ifndef PS_SCHEMA_CHECK_H
#define PS_SCHEMA_CHECK_H

#include <stdbool.h>

#include "pg.h"

/* Sets readiness check "schema": is the migration this build needs
 * (lib/schema.h) recorded in schema_migrations? Logs once per change to
 * "older" (*warned remembers). Returns 1 ready, 0 not, -1 Postgres error. */
int schema_check(pg_conn *pg, bool *warned);

#endif
