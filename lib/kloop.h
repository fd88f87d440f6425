/* kloop: the stage runtime every worker runs. A worker supplies only its
 * domain logic (a stage_def); kloop owns configuration, the consumer and
 * producer, batching, decoding with dead-lettering, Postgres and Redis
 * connections, producing outputs, committing offsets only after every output
 * is acknowledged, and graceful shutdown (SIGTERM/SIGINT: finish the batch,
 * commit, leave the group; a second signal stops at once without
 * committing). */
#ifndef PS_KLOOP_H
#define PS_KLOOP_H

#include <librdkafka/rdkafka.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "clock.h"
#include "config.h"
#include "event.h"
#include "outbox.h"
#include "pg.h"
#include "rds.h"

typedef struct stage_ctx {
  const cfg *cfg;
  pg_conn pg;
  rds redis;
  void *state; /* the stage's own, set by init */
} stage_ctx;

typedef struct stage_def {
  const char *name;                      /* stage name: log field, default group */
  const char *(*input_topic)(const cfg *c);
  bool requires_payment_id;              /* dead-letter events without one */
  bool uses_redis;                       /* readiness reports Redis (not required) */
  bool takes_operations;                 /* else operation events are dead-lettered */
  /* Reads the stage's own settings; returns 0 or -1 with err naming the
   * variable. May be NULL. */
  int (*init)(stage_ctx *ctx, char *err, size_t errlen);
  /* Processes a batch, appending outputs to out. Returns 0, or -1 on a
   * transient failure (Postgres down, serialization failure): kloop discards
   * out, backs off, and calls again with the same batch. Must be idempotent:
   * the same batch may be processed again after a crash or a replay. */
  int (*process)(stage_ctx *ctx, stage_msg *msgs, size_t n, outbox *out);
  void (*destroy)(stage_ctx *ctx); /* may be NULL */

  /* A continuous stage keeps work across cycles (charge: requests in
   * flight) instead of finishing each batch. It sets all of these; the
   * others leave them NULL. Then:
   * - process admits new messages. It takes each event it keeps (setting
   *   m->ev = NULL; it frees it later) and keeps all or none: -1 means
   *   nothing was kept and the same messages come again.
   * - progress advances the kept work (waiting at most wait_ms), appending
   *   the outputs of what finished. It does not fail: what cannot be done
   *   now is kept and tried again.
   * - pending is how much is kept; capacity how many new messages it takes
   *   now (0: kloop pauses the partitions; a soft limit).
   * - floors sets floor[p] (preset to -1) to the lowest offset still kept in
   *   partition p < nparts. kloop commits, per partition, that offset, or
   *   past the last consumed message when nothing is kept, once every
   *   output before it is acknowledged.
   * - revoked drops what is kept from a partition the worker lost (its
   *   offsets are not committed: the next owner resumes it). */
  void (*progress)(stage_ctx *ctx, outbox *out, int wait_ms);
  size_t (*pending)(stage_ctx *ctx);
  size_t (*capacity)(stage_ctx *ctx);
  void (*floors)(stage_ctx *ctx, int64_t *floor, int32_t nparts);
  void (*revoked)(stage_ctx *ctx, int32_t partition);
} stage_def;

/* The Kafka timestamp (producer's create time, or the broker's append time)
 * of m, a message of the batch being processed; -1 when it has none. Fixed
 * for the message, so a decision taken on it is the same on a replay. */
int64_t kloop_msg_timestamp(const stage_msg *m);

/* Runs the worker until SIGTERM/SIGINT. Returns the process exit code. */
int stage_main(const stage_def *def);

#endif
