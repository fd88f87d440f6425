/* isolate: the failure policy every stage applies to a batch the database
 * refuses. A batch's statements run as one transaction, so one row the
 * database refuses because of its own data would fail every message with
 * it, every time the batch is retried: the worker (and the next owner of its
 * partitions) would stall on one poison message. isolate_bisect tells the
 * two kinds of failure apart (pg_err_is_data_error):
 *   - transient (connection, serialization, a broken deployment): the whole
 *     batch is retried as it is, by kloop, with back-off;
 *   - data (SQLSTATE class 22, 23, P0001): the batch is split in halves,
 *     each its own transaction, down to the single messages the database
 *     refuses on their own; the stage ends each of those with a code (an
 *     outcome, or the DLQ) and the rest of the batch proceeds.
 * The stage's statements must be idempotent (a half that succeeded may run
 * again when the batch is retried after a transient failure) — they already
 * are, because every batch may be re-delivered. */
#ifndef PS_ISOLATE_H
#define PS_ISOLATE_H

#include <stddef.h>

typedef struct isolate_ops {
  /* Runs items [from, from + n) as one transaction. Returns 0, or -1 with
   * the database's error ("SQLSTATE: message") in err. */
  int (*attempt)(void *ctx, size_t from, size_t n, char *err, size_t errlen);
  /* Ends item i, which the database refused on its own with err. Returns 0,
   * or -1 on a transient failure (the batch is retried). */
  int (*isolate)(void *ctx, size_t i, const char *err);
} isolate_ops;

/* Runs items [from, from + n), bisecting on data errors. Returns 0 when
 * every item either went through or was isolated, -1 on a transient failure
 * (the caller returns -1 from process: kloop retries the batch). */
int isolate_bisect(const isolate_ops *ops, void *ctx, size_t from, size_t n);

#endif
