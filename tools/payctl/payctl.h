/* payctl: the operator's command line. Each subcommand lives in the file
 * named for it; this header is their shared plumbing. */
#ifndef PAYCTL_H
#define PAYCTL_H

#include <stdbool.h>

#include "config.h"
#include "clock.h"
#include "pg.h"

typedef struct payctl {
  cfg cfg;
  pg_conn pg;
} payctl;

int cmd_publish(payctl *p, int argc, char **argv);
int cmd_load(payctl *p, int argc, char **argv);
int cmd_ledger(payctl *p, int argc, char **argv);
int cmd_idempotency(payctl *p, int argc, char **argv);
int cmd_reconcile(payctl *p, int argc, char **argv);
int cmd_replay(payctl *p, int argc, char **argv);
int cmd_lag(payctl *p, int argc, char **argv);
int cmd_topic_dump(payctl *p, const char *what, int argc, char **argv);

/* Kafka helpers (replay.c): a consumer handle in group that never commits
 * on its own; a topic's partition count (-1 if unknown); joining the group
 * subscribed to topic and waiting for the assignment (NULL on timeout). */
#include <librdkafka/rdkafka.h>
rd_kafka_t *payctl_group_handle(payctl *p, const char *group);
/* The same, optionally reporting the end of each partition. */
rd_kafka_t *payctl_consumer(payctl *p, const char *group, bool partition_eof);
int payctl_partition_count(rd_kafka_t *rk, const char *topic);
rd_kafka_topic_partition_list_t *payctl_join_group(rd_kafka_t *rk, const char *topic,
                                                   int timeout_s);
int cmd_dlq(payctl *p, int argc, char **argv);
int cmd_blocklist(payctl *p, int argc, char **argv);
int cmd_review(payctl *p, int argc, char **argv);

/* Runs one query and prints nothing; returns the result or NULL (error printed). */
PGresult *payctl_query(payctl *p, const char *sql, int nparams, const char *const *params);

#endif
