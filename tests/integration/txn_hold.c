/* txn-hold: a test tool that holds a consumer group's offsets in an open
 * Kafka transaction, as an exactly-once worker killed between
 * send_offsets_to_transaction and commit_transaction leaves them: until the
 * transaction ends, a read_committed consumer asking for the group's
 * committed offsets (OffsetFetch with require_stable) is answered
 * UNSTABLE_OFFSET_COMMIT, and librdkafka asks again until its request
 * times out. On SIGTERM/SIGINT the transaction is aborted: the group's
 * committed offsets stay what they were.
 *   txn-hold GROUP TOPIC   -> prints "held N" (N partitions) once the
 *                             offsets are in the open transaction
 * Configuration (broker) comes from the PAYSTREAM_* variables. Exit 0 after
 * the abort, 1 on any failure. */
#include <signal.h>
#include <stdio.h>
#include <unistd.h>

#include "config.h"
#include "kafka.h"
#include "kafka_util.h"
#include "stop_signals.h"

static volatile sig_atomic_t stop;
static void on_stop(int sig) {
  (void)sig;
  stop = 1;
}

static int fail(const char *what, rd_kafka_error_t *e) {
  fprintf(stderr, "txn-hold: %s: %s\n", what, rd_kafka_error_string(e));
  rd_kafka_error_destroy(e);
  return 1;
}

static int hold(rd_kafka_t *rk, const char *group, const char *topic) {
  int np = kutil_partition_count(rk, topic);
  if (np < 1) {
    fprintf(stderr, "txn-hold: no metadata for %s\n", topic);
    return 1;
  }
  rd_kafka_error_t *e = rd_kafka_init_transactions(rk, 30000);
  if (e) return fail("init_transactions", e);
  if ((e = rd_kafka_begin_transaction(rk))) return fail("begin_transaction", e);
  /* Offset 0 for every partition: never committed (aborted below), only
   * pending while the transaction is open. */
  rd_kafka_topic_partition_list_t *offs = rd_kafka_topic_partition_list_new(np);
  for (int i = 0; i < np; i++) rd_kafka_topic_partition_list_add(offs, topic, i)->offset = 0;
  rd_kafka_consumer_group_metadata_t *gm = rd_kafka_consumer_group_metadata_new(group);
  e = rd_kafka_send_offsets_to_transaction(rk, offs, gm, 30000);
  rd_kafka_consumer_group_metadata_destroy(gm);
  rd_kafka_topic_partition_list_destroy(offs);
  if (e) return fail("send_offsets_to_transaction", e);
  printf("held %d\n", np);
  fflush(stdout);
  while (!stop) rd_kafka_poll(rk, 100);
  if ((e = rd_kafka_abort_transaction(rk, 30000))) return fail("abort_transaction", e);
  return 0;
}

int main(int argc, char **argv) {
  if (argc != 3) {
    fprintf(stderr, "usage: txn-hold GROUP TOPIC\n");
    return 2;
  }
  stop_signals_install(on_stop);
  cfg c;
  char err[512];
  if (cfg_load(&c, "txn-hold", err, sizeof err)) {
    fprintf(stderr, "txn-hold: %s\n", err);
    return 1;
  }
  /* The transaction lasts librdkafka's transaction.timeout.ms (60 s; a
   * test may set more with PAYSTREAM_KAFKA_PROPERTIES) unless aborted. */
  snprintf(c.transactional_id, sizeof c.transactional_id, "txn-hold-%d", (int)getpid());
  rd_kafka_t *rk = kafka_producer_new(&c, NULL, err, sizeof err);
  cfg_close(&c);
  if (!rk) {
    fprintf(stderr, "txn-hold: %s\n", err);
    return 1;
  }
  int rc = hold(rk, argv[1], argv[2]);
  rd_kafka_destroy(rk);
  return rc;
}
