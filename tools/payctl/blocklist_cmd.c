/* payctl blocklist: the fraud stage's blocklists (Redis sets): add, remove
 * and list card fingerprints, IPs, emails and devices. Changes apply to the
 * next batch the fraud stage scores; payments already assessed keep their
 * stored decision (a replay does not re-score). */
#include <stdio.h>
#include <string.h>

#include "commands.h"
#include "opt.h"
#include "rds.h"
#include "rules.h"

static int usage(void) {
  return opt_usage("blocklist",
                   "usage: payctl blocklist add|remove <card|ip|email|device> <value>\n"
                   "       payctl blocklist list [card|ip|email|device]");
}

/* Runs one command; prints integer replies as changed/unchanged and array
 * replies one member per line. Returns PAYCTL_OK, PAYCTL_UNAVAILABLE when
 * Redis cannot be reached, or PAYCTL_FAILED when it refuses the command. */
static int run(rds *r, int argc, const char *const *argv, blocklist_kind k, const char *verb) {
  rds_cmd cmd;
  rds_cmd_set(&cmd, argc, argv);
  redisReply *rep;
  if (rds_pipeline(r, &cmd, 1, &rep)) {
    fprintf(stderr, "payctl: redis unavailable at %s:%d\n", r->host, r->port);
    return PAYCTL_UNAVAILABLE;
  }
  int rc = PAYCTL_OK;
  if (rep->type == REDIS_REPLY_ERROR) {
    fprintf(stderr, "payctl: redis: %s\n", rep->str);
    rc = PAYCTL_FAILED;
  } else if (rep->type == REDIS_REPLY_INTEGER) {
    printf("%s %s %s\n", blocklist_name(k), argv[2],
           rep->integer ? verb : strcmp(verb, "added") == 0 ? "already listed" : "not listed");
  } else if (rep->type == REDIS_REPLY_ARRAY) {
    for (size_t i = 0; i < rep->elements; i++)
      printf("%s\t%s\n", blocklist_name(k), rep->element[i]->str);
  }
  freeReplyObject(rep);
  return rc;
}

int cmd_blocklist(payctl *p, int argc, char **argv) {
  static const struct option none[] = {{0, 0, 0, 0}};
  opt_begin();
  if (opt_next(argc, argv, none) != -1 || optind >= argc) return usage();
  argc -= optind; /* from here argv[0] is the verb */
  argv += optind;
  blocklist_kind k = (blocklist_kind)0;
  bool change = strcmp(argv[0], "add") == 0 || strcmp(argv[0], "remove") == 0;
  bool list = strcmp(argv[0], "list") == 0;
  if (change ? argc != 3 || blocklist_parse(argv[1], &k)
             : !list || argc > 2 || (argc == 2 && blocklist_parse(argv[1], &k)))
    return usage();
  rds r;
  rds_init(&r, p->cfg.redis_host, p->cfg.redis_port, p->cfg.redis_timeout_ms);
  rds_set_auth(&r, p->cfg.redis_user, p->cfg.redis_password);
  int rc = PAYCTL_OK;
  if (change) {
    char value[256];
    blocklist_normalize(k, argv[2], value, sizeof value);
    bool add = strcmp(argv[0], "add") == 0;
    const char *cmd[] = {add ? "SADD" : "SREM", blocklist_key(k), value};
    rc = run(&r, 3, cmd, k, add ? "added" : "removed");
  } else {
    for (int i = 0; i < BLOCKLIST_KINDS && rc == PAYCTL_OK; i++) {
      k = (blocklist_kind)i;
      if (argc == 2 && strcmp(argv[1], blocklist_name(k)) != 0) continue;
      const char *cmd[] = {"SMEMBERS", blocklist_key(k)};
      rc = run(&r, 2, cmd, k, "");
    }
  }
  rds_close(&r);
  return rc;
}
