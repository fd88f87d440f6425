/* rejection: the rows ingest records in `rejections`, for intents and
 * operations alike — the statement, its columns, and storing a few. */
#ifndef PS_INGEST_REJECTION_H
#define PS_INGEST_REJECTION_H

#include <stddef.h>

#include "outbox.h"
#include "pg.h"

#define REJECTION_NCOLS 8
#define REFUSED_CODE "storage_refused"
#define REFUSED_MESSAGE "the database refused to store this request; nothing was claimed"
#define REUSED_MESSAGE "idempotency key already used with different request parameters"

/* INSERT of REJECTION_NCOLS arrays (id, merchant, key, code, message,
 * source topic, partition, offset); a rejection already recorded stays. */
extern const char SQL_REJECT[];

/* Starts the rows (r[REJECTION_NCOLS], initialised) for a message Postgres
 * refused on its own (isolate_ops.isolate), logging the ALERT that names
 * what it is ("message", "operation") and why. */
void rejection_refused_begin(pg_array *r, const stage_msg *m, const char *what, const char *why);

/* Appends one row to r[REJECTION_NCOLS]: merchant and key as the client
 * sent them, or NULL when they are not storable text (an invalid intent's
 * own fields may be what made it invalid). */
void rejection_add(pg_array *r, const char *rejection_id, const char *merchant, const char *key,
                   const char *code, const char *message, const stage_msg *m);

/* Records the rows of r (then freed) in one statement. Returns 0, or -1
 * with the database's error in err. */
int rejection_store(pg_conn *pg, pg_array *r, char *err, size_t errlen);

#endif
