/* ps-webhook: the processors' webhook receiver — wiring only. Verification
 * is in sig_stripe.c / sig_paypal.c, normalisation in normalise.c, HTTP in
 * http.c, Kafka in producer.c. SIGTERM stops accepting, waits for every
 * event in flight to be acknowledged (or answered 503), then exits 0. */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "http.h"
#include "log.h"
#include "stop_signals.h"
#include "metrics.h"
#include "producer.h"
#include "wh_config.h"

static volatile sig_atomic_t stop;

static void on_signal(int sig) {
  (void)sig;
  stop = 1;
}

static int run(cfg *c, wh_config *wc) {
  char err[512] = "";
  wh_server *srv = wh_server_new(wc);
  wh_producer *prod = wh_producer_new(c, c->topics.processor_events, wc->delivery_timeout_ms,
                                      wh_server_delivered, err, sizeof err);
  if (!prod || wh_server_start(srv, prod, err, sizeof err) != 0) {
    log_error("%s", err);
    wh_server_destroy(srv);
    wh_producer_destroy(prod);
    return 1;
  }
  while (!stop) usleep(100 * 1000);
  log_info("stopping: no new deliveries; waiting for those in flight");
  wh_server_close(srv);
  int left = wh_producer_drain(prod, wc->delivery_timeout_ms);
  if (left) log_warn("%d event(s) not acknowledged in time: answered 503", left);
  int open = wh_server_wait_idle(srv, 5000);
  if (open) log_warn("%d request(s) still open at exit", open);
  wh_server_destroy(srv);
  wh_producer_destroy(prod);
  log_info("stopped");
  return 0;
}

int main(void) {
  cfg c;
  wh_config wc;
  char err[512] = "";
  log_level lvl;
  if (cfg_load(&c, "webhook", err, sizeof err) != 0) {
    fprintf(stderr, "ps-webhook: %s\n", err);
    cfg_close(&c);
    return 2;
  }
  if (log_level_parse(c.log_level, &lvl)) {
    fprintf(stderr, "ps-webhook: PAYSTREAM_LOG_LEVEL must be debug, info, warn or error\n");
    cfg_close(&c);
    return 2;
  }
  log_init("webhook", lvl);
  if (wh_config_load(&wc, err, sizeof err) != 0 ||
      metrics_serve("webhook", c.metrics_addr, c.metrics_port_file, err, sizeof err) != 0) {
    log_error("%s", err);
    wh_config_close(&wc);
    cfg_close(&c);
    return 2;
  }
  stop_signals_install(on_signal);
  int rc = run(&c, &wc);
  metrics_stop();
  wh_config_close(&wc);
  cfg_close(&c);
  return rc;
}
