/* rds: a Redis connection with short timeouts that treats Redis as what it
 * is here — a cache and counter store, never the truth. When Redis is slow or
 * gone, calls fail fast and the caller falls back; reconnects back off. */
#ifndef PS_RDS_H
#define PS_RDS_H

#include <hiredis/hiredis.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct rds {
  const char *host;
  int port;
  const char *user, *password; /* AUTH after connecting when password is set */
  int timeout_ms;
  redisContext *c;
  int64_t next_try_ms;
  bool down_logged;
} rds;

#define RDS_MAX_ARGS 10

typedef struct rds_cmd {
  int argc;
  const char *argv[RDS_MAX_ARGS];
  size_t argvlen[RDS_MAX_ARGS];
} rds_cmd;

void rds_init(rds *r, const char *host, int port, int timeout_ms);
/* Sends AUTH [user] password on every (re)connect; password is a secret and
 * never logged. user may be NULL (Redis < 6 or the default user). */
void rds_set_auth(rds *r, const char *user, const char *password);
void rds_close(rds *r);

/* Builds a command from NUL-terminated strings (argc <= RDS_MAX_ARGS). */
void rds_cmd_set(rds_cmd *cmd, int argc, const char *const *argv);

/* Sends n commands in one pipelined round trip. Returns 0 with replies[i]
 * set (caller frees each with freeReplyObject), or -1 when Redis is
 * unavailable: every replies[i] is NULL and the caller must fall back. */
int rds_pipeline(rds *r, const rds_cmd *cmds, int n, redisReply **replies);

/* Whether the last call left a live connection. */
bool rds_available(const rds *r);

#endif
