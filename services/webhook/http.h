/* http: the receiver's HTTP side (libmicrohttpd). POST /webhooks/<processor>
 * is read (bounded while reading), its signature checked for the
 * processor's flavour, its body normalised and sent to Kafka; the
 * connection is then suspended until the delivery report, and answered:
 *
 *   200  the event is durable on payments.processor-events
 *   400  bad or missing signature, timestamp outside the tolerance,
 *        body that is not the flavour's event JSON
 *   404  no such processor (or path)          405  not a POST
 *   413  body over PAYSTREAM_WEBHOOK_MAX_BODY_BYTES (refused while reading)
 *   503  Kafka did not acknowledge the event (or the receiver is stopping):
 *        the processor retries later
 *
 * Health, readiness and metrics are served by lib/metrics.c on
 * PAYSTREAM_METRICS_ADDR, like every worker's. */
#ifndef WEBHOOK_HTTP_H
#define WEBHOOK_HTTP_H

#include <stdbool.h>
#include <stddef.h>

#include "producer.h"
#include "wh_config.h"

typedef struct wh_server wh_server;

/* A server over wc (which must outlive it), not yet listening. */
wh_server *wh_server_new(const wh_config *wc);

/* The producer's delivery callback: opaque is the request that sent. */
void wh_server_delivered(void *opaque, bool ok, const char *why);

/* Starts listening on wc->addr, sending through p. Returns 0, or -1 with
 * err set. */
int wh_server_start(wh_server *s, wh_producer *p, char *err, size_t errlen);

/* Stops accepting connections; requests not yet sent are answered 503 from
 * now on (the producer is about to be drained). */
void wh_server_close(wh_server *s);

/* Waits up to timeout_ms until no request is in progress. Returns how many
 * still are. */
int wh_server_wait_idle(wh_server *s, int timeout_ms);

void wh_server_destroy(wh_server *s);

#endif
