/* schema: the database schema this build needs. Workers report not ready
 * (/readyz "schema not ok") until payctl migrate has recorded this migration
 * in schema_migrations — a worker rolled out before its migrations waits
 * instead of failing on missing columns. The lead bumps it when merging a
 * migration the code depends on. */
#ifndef PS_SCHEMA_H
#define PS_SCHEMA_H

#define PS_DB_SCHEMA_VERSION "035_dispute_movements.sql"

#endif
