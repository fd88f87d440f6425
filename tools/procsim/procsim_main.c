/* procsim: a payment-processor simulator for development and tests. It
 * speaks a Stripe-like flavour (form-encoded, Idempotency-Key header) and a
 * PayPal-like one (JSON, PayPal-Request-Id header) for sales,
 * authorizations, captures, voids, refunds and status queries; honours
 * idempotency for every operation; injects latency, errors, dropped
 * connections and declines on command; and tells tests what it did
 * (GET /v1/charges, /_sim/requests, /_sim/operations, /_sim/totals).
 * docs/procsim.md is the reference; procsim.h lists the files.
 *
 * usage: procsim [--bind ADDR (default 127.0.0.1)] [--port N] [--port-file PATH]
 *                [--latency-ms N] [--fail-rate R] */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "procsim.h"

static void on_signal(int sig) {
  (void)sig;
  net_running = 0;
}

static int write_port(const char *path, unsigned port) {
  char tmp[4096];
  snprintf(tmp, sizeof tmp, "%s.tmp", path);
  FILE *f = fopen(tmp, "w");
  if (!f) return -1;
  int bad = fprintf(f, "%u\n", port) < 0;
  if (fclose(f) != 0 || bad || rename(tmp, path) != 0) return -1;
  return 0;
}

int main(int argc, char **argv) {
  struct rlimit rl; /* a socket per connection: take the hard limit */
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
  unsigned port = 0;
  const char *port_file = NULL;
  const char *bind = "127.0.0.1";
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--port") == 0 && i + 1 < argc) port = (unsigned)atoi(argv[++i]);
    else if (strcmp(argv[i], "--port-file") == 0 && i + 1 < argc) port_file = argv[++i];
    else if (strcmp(argv[i], "--latency-ms") == 0 && i + 1 < argc) cfg_latency_ms = atoi(argv[++i]);
    else if (strcmp(argv[i], "--fail-rate") == 0 && i + 1 < argc) cfg_fail_rate = atof(argv[++i]);
    else if (strcmp(argv[i], "--bind") == 0 && i + 1 < argc) bind = argv[++i];
    else {
      fprintf(stderr, "usage: procsim [--bind ADDR] [--port N] [--port-file PATH] "
                      "[--latency-ms N] [--fail-rate R]\n");
      return 2;
    }
  }
  store_init();
  unsigned bound = 0;
  if (net_start(bind, port, &bound) != 0) return bind ? 1 : 2;
  if (port_file && write_port(port_file, bound) != 0) {
    fprintf(stderr, "procsim: could not write %s\n", port_file);
    return 1;
  }
  fprintf(stderr, "procsim: listening on http://%s:%u\n", bind, bound);
  signal(SIGTERM, on_signal);
  signal(SIGINT, on_signal);
  while (net_running) pause();
  net_stop();
  store_destroy();
  return 0;
}
