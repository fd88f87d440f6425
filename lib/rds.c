/* rds: pipelined Redis calls that fail fast. */
#include "rds.h"

#include <string.h>

#include "log.h"
#include "metrics.h"
#include "clock.h"

void rds_init(rds *r, const char *host, int port, int timeout_ms) {
  memset(r, 0, sizeof *r);
  r->host = host;
  r->port = port;
  r->timeout_ms = timeout_ms;
}

void rds_set_auth(rds *r, const char *user, const char *password) {
  r->user = user;
  r->password = password;
}

/* AUTH on a fresh connection. Returns 0, or -1 (the reason, never the
 * password, goes to the log once via mark_down). */
static int authenticate(rds *r, char *why, size_t whylen) {
  if (!r->password) return 0;
  redisReply *rep =
      r->user ? redisCommand(r->c, "AUTH %s %s", r->user, r->password)
              : redisCommand(r->c, "AUTH %s", r->password);
  int ok = rep && rep->type != REDIS_REPLY_ERROR;
  snprintf(why, whylen, "AUTH failed: %s",
           !rep ? "no reply" : rep->type == REDIS_REPLY_ERROR ? rep->str : "ok");
  if (rep) freeReplyObject(rep);
  return ok ? 0 : -1;
}

void rds_close(rds *r) {
  if (r->c) redisFree(r->c);
  r->c = NULL;
}

void rds_cmd_set(rds_cmd *cmd, int argc, const char *const *argv) {
  cmd->argc = argc;
  for (int i = 0; i < argc; i++) {
    cmd->argv[i] = argv[i];
    cmd->argvlen[i] = strlen(argv[i]);
  }
}

static void mark_down(rds *r, const char *why) {
  if (!r->down_logged) log_warn("redis unavailable, falling back to postgres: %s", why);
  r->down_logged = true;
  rds_close(r);
  /* A dead Redis must not cost every batch a connect timeout. */
  r->next_try_ms = ps_mono_ms() + 1000;
}

static int ensure(rds *r) {
  if (r->c) return 0;
  if (ps_mono_ms() < r->next_try_ms) return -1;
  struct timeval tv = {r->timeout_ms / 1000, (r->timeout_ms % 1000) * 1000};
  r->c = redisConnectWithTimeout(r->host, r->port, tv);
  if (!r->c || r->c->err) {
    mark_down(r, r->c ? r->c->errstr : "out of memory");
    return -1;
  }
  redisSetTimeout(r->c, tv);
  char why[256];
  if (authenticate(r, why, sizeof why)) {
    mark_down(r, why);
    return -1;
  }
  if (r->down_logged) log_info("redis reconnected");
  r->down_logged = false;
  return 0;
}

static int pipeline_run(rds *r, const rds_cmd *cmds, int n, redisReply **replies);

/* Every round trip is timed; a failed one (Redis down or slow) is counted. */
int rds_pipeline(rds *r, const rds_cmd *cmds, int n, redisReply **replies) {
  static metric *seconds, *errors;
  if (!seconds) {
    seconds = metrics_histogram("paystream_redis_seconds", "Redis pipelined round trips",
                                METRICS_LATENCY_BUCKETS, METRICS_LATENCY_NBUCKETS, NULL);
    errors = metrics_counter("paystream_redis_errors_total",
                             "Redis round trips that failed (the caller fell back)", NULL);
  }
  double t0 = metrics_now();
  int rc = pipeline_run(r, cmds, n, replies);
  if (n) metric_observe(seconds, metrics_now() - t0);
  if (rc) metric_add(errors, 1);
  return rc;
}

bool rds_available(const rds *r) { return r->c != NULL; }

static int pipeline_run(rds *r, const rds_cmd *cmds, int n, redisReply **replies) {
  for (int i = 0; i < n; i++) replies[i] = NULL;
  if (n == 0) return 0;
  if (ensure(r)) return -1;
  for (int i = 0; i < n; i++)
    if (redisAppendCommandArgv(r->c, cmds[i].argc, (const char **)cmds[i].argv, cmds[i].argvlen) != REDIS_OK)
      goto err;
  for (int i = 0; i < n; i++) {
    void *reply = NULL;
    if (redisGetReply(r->c, &reply) != REDIS_OK) goto err;
    replies[i] = reply;
  }
  return 0;
err:
  mark_down(r, r->c && r->c->errstr[0] ? r->c->errstr : "i/o error");
  for (int i = 0; i < n; i++) {
    if (replies[i]) freeReplyObject(replies[i]);
    replies[i] = NULL;
  }
  return -1;
}
