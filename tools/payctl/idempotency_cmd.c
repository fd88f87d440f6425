/* payctl idempotency show | prune: inspect one claim (Postgres, the truth,
 * and its Redis cache entry), and apply the retention policy. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "commands.h"
#include "opt.h"
#include "pgq.h"
#include "rds.h"

static int show(payctl *p, const char *merchant, const char *key) {
  const char *v[] = {merchant, key};
  PGresult *r = pgq_query(
      p,
      "SELECT payment_id, fingerprint, status, source_topic, source_partition, source_offset,"
      " outcome IS NOT NULL, created_at, intent_pruned_at IS NOT NULL"
      " FROM payments WHERE merchant_id = $1 AND idempotency_key = $2",
      2, v);
  if (!r) return pgq_failure(p);
  int found = PQntuples(r) > 0;
  if (found)
    printf("claim (postgres)\n  payment_id:  %s\n  fingerprint: %s\n  status:      %s\n"
           "  claimed by:  %s[%s]@%s\n  outcome:     %s\n  created_at:  %s\n  payload:     %s\n",
           PQgetvalue(r, 0, 0), PQgetvalue(r, 0, 1), PQgetvalue(r, 0, 2), PQgetvalue(r, 0, 3),
           PQgetvalue(r, 0, 4), PQgetvalue(r, 0, 5),
           strcmp(PQgetvalue(r, 0, 6), "t") == 0 ? "stored (terminal)" : "not yet (in flight)",
           PQgetvalue(r, 0, 7), strcmp(PQgetvalue(r, 0, 8), "t") == 0 ? "pruned" : "kept");
  else
    printf("no claim for merchant %s key %s\n", merchant, key);
  PQclear(r);

  r = pgq_query(p,
                   "SELECT rejection_id, error_code, source_partition, source_offset, created_at"
                   " FROM rejections WHERE merchant_id = $1 AND idempotency_key = $2"
                   " ORDER BY created_at",
                   2, v);
  if (!r) return pgq_failure(p);
  for (int i = 0; i < PQntuples(r); i++)
    printf("rejected request %s: %s (partition %s offset %s, %s)\n", PQgetvalue(r, i, 0),
           PQgetvalue(r, i, 1), PQgetvalue(r, i, 2), PQgetvalue(r, i, 3), PQgetvalue(r, i, 4));
  PQclear(r);

  rds redis;
  rds_init(&redis, p->cfg.redis_host, p->cfg.redis_port, p->cfg.redis_timeout_ms);
  rds_set_auth(&redis, p->cfg.redis_user, p->cfg.redis_password);
  char ck[600];
  snprintf(ck, sizeof ck, "idempotency:{%s}:%s", merchant, key);
  rds_cmd cmds[2];
  const char *get[] = {"GET", ck}, *ttl[] = {"TTL", ck};
  rds_cmd_set(&cmds[0], 2, get);
  rds_cmd_set(&cmds[1], 2, ttl);
  redisReply *rep[2];
  if (rds_pipeline(&redis, cmds, 2, rep) == 0) {
    if (rep[0]->type == REDIS_REPLY_STRING)
      printf("cache (redis): %.120s%s (ttl %lld s)\n", rep[0]->str, rep[0]->len > 120 ? "..." : "",
             rep[1]->integer);
    else
      printf("cache (redis): no entry\n");
    freeReplyObject(rep[0]);
    freeReplyObject(rep[1]);
  } else {
    printf("cache (redis): unavailable\n");
  }
  rds_close(&redis);
  return found ? PAYCTL_OK : PAYCTL_NOT_FOUND;
}

/* Parses 30d, 12h, 90m, 3600s (or bare seconds) into seconds; -1 if bad. */
static long long parse_duration(const char *s) {
  char *end;
  long long n = strtoll(s, &end, 10);
  if (end == s || n < 0) return -1;
  long long mul = 1;
  if (*end == 'd') mul = 86400, end++;
  else if (*end == 'h') mul = 3600, end++;
  else if (*end == 'm') mul = 60, end++;
  else if (*end == 's') end++;
  return *end ? -1 : n * mul;
}

static int prune(payctl *p, const char *older_than) {
  long long secs = parse_duration(older_than);
  if (secs < 0) {
    fprintf(stderr, "payctl: --older-than takes a duration like 30d, 12h, 90m or 3600s, not '%s'\n",
            older_than);
    return PAYCTL_USAGE;
  }
  char num[32];
  snprintf(num, sizeof num, "%lld", secs);
  const char *v[] = {num};
  PGresult *r = pgq_query(
      p,
      "UPDATE payments SET intent = NULL, intent_pruned_at = now()"
      " WHERE outcome IS NOT NULL AND intent IS NOT NULL"
      " AND updated_at < now() - make_interval(secs => $1::bigint)",
      1, v);
  if (!r) return pgq_failure(p);
  printf("cleared the request payload of %s finished payments (claims kept)\n", PQcmdTuples(r));
  PQclear(r);
  r = pgq_query(p,
                   "DELETE FROM rejections WHERE created_at < now() - make_interval(secs => "
                   "$1::bigint)",
                   1, v);
  if (!r) return pgq_failure(p);
  printf("deleted %s rejections\n", PQcmdTuples(r));
  PQclear(r);
  return PAYCTL_OK;
}

int cmd_idempotency(payctl *p, int argc, char **argv) {
  static const struct option longopts[] = {{"older-than", required_argument, NULL, 'o'},
                                           {0, 0, 0, 0}};
  static const char usage[] = "usage: payctl idempotency show <merchant> <key>\n"
                              "       payctl idempotency prune --older-than <30d|12h|90m|3600s>";
  const char *older_than = NULL;
  opt_begin();
  for (int c; (c = opt_next(argc, argv, longopts)) != -1;) {
    if (c != 'o') return opt_usage("idempotency", usage);
    older_than = optarg;
  }
  const char *verb = optind < argc ? argv[optind] : "";
  int n = argc - optind; /* the verb and its arguments */
  if (n == 3 && !older_than && strcmp(verb, "show") == 0)
    return show(p, argv[optind + 1], argv[optind + 2]);
  if (n == 1 && older_than && strcmp(verb, "prune") == 0) return prune(p, older_than);
  return opt_usage("idempotency", usage);
}
