/* devbroker: a development-only Kafka broker. It wraps librdkafka's built-in
 * mock cluster (rdkafka_mock.h), which speaks the real Kafka protocol on
 * 127.0.0.1, so the whole pipeline runs and is tested without a JVM. NEVER
 * for production: it keeps everything in memory, retains only 5 MiB per
 * partition (dropping the oldest silently), and implements no transaction
 * isolation. Production uses a real Kafka cluster (see deploy/).
 *
 * usage: devbroker [--partitions N] [--brokers N] [--bootstrap-file PATH]
 * Creates the pipeline's topics (names from PAYSTREAM_TOPIC_*), writes the
 * bootstrap servers to PATH (and stdout), and runs until SIGTERM/SIGINT.
 * Fault injection for tests: SIGUSR1 takes every broker down (connections
 * are refused and dropped), SIGUSR2 brings them back up. */
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"

static volatile sig_atomic_t running = 1;
static volatile sig_atomic_t want_down = -1; /* -1: no change requested */

static void on_signal(int sig) {
  if (sig == SIGUSR1) want_down = 1;
  else if (sig == SIGUSR2) want_down = 0;
  else running = 0;
}

static int write_file(const char *path, const char *text) {
  char tmp[4096];
  snprintf(tmp, sizeof tmp, "%s.tmp", path);
  FILE *f = fopen(tmp, "w");
  if (!f) return -1;
  fprintf(f, "%s\n", text);
  if (fclose(f) != 0) return -1;
  return rename(tmp, path); /* readers never see a half-written file */
}

int main(int argc, char **argv) {
  int partitions = 4, brokers = 1;
  const char *bootstrap_file = NULL;
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--partitions") == 0 && i + 1 < argc) partitions = atoi(argv[++i]);
    else if (strcmp(argv[i], "--brokers") == 0 && i + 1 < argc) brokers = atoi(argv[++i]);
    else if (strcmp(argv[i], "--bootstrap-file") == 0 && i + 1 < argc) bootstrap_file = argv[++i];
    else {
      fprintf(stderr, "usage: devbroker [--partitions N] [--brokers N] [--bootstrap-file PATH]\n");
      return 2;
    }
  }
  if (partitions < 1 || partitions > 1000 || brokers < 1 || brokers > 9) {
    fprintf(stderr, "devbroker: --partitions must be 1..1000 and --brokers 1..9\n");
    return 2;
  }
  char err[512];
  cfg c;
  if (cfg_load(&c, "devbroker", err, sizeof err)) {
    fprintf(stderr, "devbroker: %s\n", err);
    return 2;
  }

  rd_kafka_conf_t *conf = rd_kafka_conf_new();
  /* Without this every flush through the mock waits for Nagle (~40 ms). */
  rd_kafka_conf_set(conf, "socket.nagle.disable", "true", err, sizeof err);
  rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err);
  if (!rk) {
    fprintf(stderr, "devbroker: could not create handle: %s\n", err);
    return 1;
  }
  rd_kafka_mock_cluster_t *mc = rd_kafka_mock_cluster_new(rk, brokers);
  if (!mc) {
    fprintf(stderr, "devbroker: could not create mock cluster\n");
    rd_kafka_destroy(rk);
    return 1;
  }
  const char *topics[] = {c.topics.intents,  c.topics.requests, c.topics.fraud_scored,
                          c.topics.charged,  c.topics.ledgered, c.topics.outcomes,
                          c.topics.dlq};
  for (size_t i = 0; i < sizeof topics / sizeof topics[0]; i++) {
    rd_kafka_resp_err_t e = rd_kafka_mock_topic_create(mc, topics[i], partitions, 1);
    if (e) {
      fprintf(stderr, "devbroker: could not create topic %s: %s\n", topics[i],
              rd_kafka_err2str(e));
      return 1;
    }
  }
  const char *bootstraps = rd_kafka_mock_cluster_bootstraps(mc);
  if (bootstrap_file && write_file(bootstrap_file, bootstraps)) {
    fprintf(stderr, "devbroker: could not write %s\n", bootstrap_file);
    return 1;
  }
  printf("%s\n", bootstraps);
  fflush(stdout);
  fprintf(stderr, "devbroker: DEVELOPMENT ONLY mock Kafka on %s, %d partitions per topic\n",
          bootstraps, partitions);

  signal(SIGTERM, on_signal);
  signal(SIGINT, on_signal);
  signal(SIGUSR1, on_signal);
  signal(SIGUSR2, on_signal);
  while (running) {
    pause();
    if (want_down >= 0) {
      for (int b = 1; b <= brokers; b++) {
        if (want_down) rd_kafka_mock_broker_set_down(mc, b);
        else rd_kafka_mock_broker_set_up(mc, b);
      }
      fprintf(stderr, "devbroker: brokers %s\n", want_down ? "down" : "up");
      want_down = -1;
    }
  }

  rd_kafka_mock_cluster_destroy(mc);
  rd_kafka_destroy(rk);
  return 0;
}
