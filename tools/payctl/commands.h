/* commands: payctl's commands, each in the file named for it. Every one
 * takes its own arguments with argv[0] = its name (getopt_long style, see
 * opt.h) and returns a PAYCTL_* exit code (payctl.h). payctl.c dispatches
 * to them from its table; they never call back into it. */
#ifndef PAYCTL_COMMANDS_H
#define PAYCTL_COMMANDS_H

#include <stdbool.h>

#include "payctl.h"

int cmd_migrate(payctl *p, int argc, char **argv);     /* migrate_cmd.c */
int cmd_publish(payctl *p, int argc, char **argv);     /* publish_cmd.c */
int cmd_load(payctl *p, int argc, char **argv);        /* load_cmd.c */
int cmd_status(payctl *p, int argc, char **argv);      /* status_cmd.c */
int cmd_wait(payctl *p, int argc, char **argv);        /* status_cmd.c */
int cmd_summary(payctl *p, int argc, char **argv);     /* status_cmd.c */
int cmd_ledger(payctl *p, int argc, char **argv);      /* ledger_cmd.c */
int cmd_reconcile(payctl *p, int argc, char **argv);   /* reconcile.c */
int cmd_replay(payctl *p, int argc, char **argv);      /* replay.c */
int cmd_lag(payctl *p, int argc, char **argv);         /* replay.c */
int cmd_idempotency(payctl *p, int argc, char **argv); /* idempotency_cmd.c */
int cmd_outcomes(payctl *p, int argc, char **argv);    /* topic_dump.c */
int cmd_dlq(payctl *p, int argc, char **argv);         /* dlq_cmd.c */
int cmd_blocklist(payctl *p, int argc, char **argv);   /* blocklist_cmd.c */
int cmd_review(payctl *p, int argc, char **argv);      /* review_cmd.c */
int cmd_charges(payctl *p, int argc, char **argv);     /* charges_cmd.c */
int cmd_operation(payctl *p, int argc, char **argv);   /* operation_cmd.c: capture|void|refund|authorize */
int cmd_payment(payctl *p, int argc, char **argv);     /* operation_cmd.c: payment show */
int cmd_expire(payctl *p, int argc, char **argv);      /* expire_cmd.c: authorization expiry */

/* `payctl outcomes` and `payctl dlq list`: a whole topic as JSON lines. */
int topic_dump(payctl *p, const char *topic, bool dlq);

#endif
