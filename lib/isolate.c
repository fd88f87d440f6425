/* isolate: bisection of a batch the database refuses for its data. */
#include "isolate.h"

#include "log.h"
#include "pg.h"

int isolate_bisect(const isolate_ops *ops, void *ctx, size_t from, size_t n) {
  if (n == 0) return 0;
  char err[512] = "";
  if (ops->attempt(ctx, from, n, err, sizeof err) == 0) return 0;
  if (!pg_err_is_data_error(err)) return -1;
  if (n == 1) return ops->isolate(ctx, from, err);
  log_warn("batch of %zu refused for its data, bisecting: %s", n, err);
  /* Each half is its own transaction: a half that succeeded stays done. A
   * transient failure in the first half stops here (the batch is retried
   * whole; what succeeded is idempotent). */
  size_t half = n / 2;
  if (isolate_bisect(ops, ctx, from, half)) return -1;
  return isolate_bisect(ops, ctx, from + half, n - half);
}
