/* txn-produce: a test tool that writes N messages to one partition of a
 * topic in one Kafka transaction and ends it, so the partition's last
 * offset is a transaction marker (commit or abort) — what exactly-once
 * producers leave at the end of payments.outcomes after every batch:
 *   txn-produce TOPIC PARTITION N commit|abort|open
 * open: keeps the transaction open (prints "open") until SIGTERM/SIGINT,
 * then aborts it. Prints "done" after commit or abort. Messages are the
 * bytes "txn-produce <i>" (no outcome: readers print them as undecodable).
 * Configuration (broker) comes from the PAYSTREAM_* variables. Exit 0, or
 * 1 on any failure. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "kafka.h"
#include "stop_signals.h"

static volatile sig_atomic_t stop;
static void on_stop(int sig) {
  (void)sig;
  stop = 1;
}

static int fail(const char *what, rd_kafka_error_t *e) {
  fprintf(stderr, "txn-produce: %s: %s\n", what, rd_kafka_error_string(e));
  rd_kafka_error_destroy(e);
  return 1;
}

static int produce(rd_kafka_t *rk, const char *topic, int partition, int n, const char *end) {
  rd_kafka_error_t *e = rd_kafka_init_transactions(rk, 30000);
  if (e) return fail("init_transactions", e);
  if ((e = rd_kafka_begin_transaction(rk))) return fail("begin_transaction", e);
  for (int i = 0; i < n; i++) {
    char msg[32];
    int len = snprintf(msg, sizeof msg, "txn-produce %d", i);
    rd_kafka_resp_err_t err =
        rd_kafka_producev(rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_PARTITION(partition),
                          RD_KAFKA_V_VALUE(msg, (size_t)len),
                          RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END);
    if (err) {
      fprintf(stderr, "txn-produce: produce: %s\n", rd_kafka_err2str(err));
      return 1;
    }
  }
  if (rd_kafka_flush(rk, 30000)) {
    fprintf(stderr, "txn-produce: flush timed out\n");
    return 1;
  }
  if (strcmp(end, "open") == 0) {
    printf("open\n");
    fflush(stdout);
    while (!stop) rd_kafka_poll(rk, 100);
    end = "abort";
  }
  e = strcmp(end, "commit") == 0 ? rd_kafka_commit_transaction(rk, 30000)
                                 : rd_kafka_abort_transaction(rk, 30000);
  if (e) return fail(end, e);
  printf("done\n");
  return 0;
}

int main(int argc, char **argv) {
  if (argc != 5 ||
      (strcmp(argv[4], "commit") && strcmp(argv[4], "abort") && strcmp(argv[4], "open"))) {
    fprintf(stderr, "usage: txn-produce TOPIC PARTITION N commit|abort|open\n");
    return 2;
  }
  stop_signals_install(on_stop);
  cfg c;
  char err[512];
  if (cfg_load(&c, "txn-produce", err, sizeof err)) {
    fprintf(stderr, "txn-produce: %s\n", err);
    return 1;
  }
  snprintf(c.transactional_id, sizeof c.transactional_id, "txn-produce-%d", (int)getpid());
  rd_kafka_t *rk = kafka_producer_new(&c, NULL, err, sizeof err);
  cfg_close(&c);
  if (!rk) {
    fprintf(stderr, "txn-produce: %s\n", err);
    return 1;
  }
  int rc = produce(rk, argv[1], atoi(argv[2]), atoi(argv[3]), argv[4]);
  rd_kafka_destroy(rk);
  return rc;
}
