/* producer: puts normalised processor events on payments.processor-events
 * and says, per event, when the broker holds it durably — the receiver
 * answers the processor 2xx only then. The producer is librdkafka's
 * idempotent one with acks=all (lib/kafka.c): a delivery report without an
 * error means every in-sync replica has the event. A dedicated thread
 * serves the delivery reports and stamps the liveness heartbeat (/healthz
 * fails when events wait with no report for PAYSTREAM_HEARTBEAT_TIMEOUT_S);
 * another checks that the topic is reachable (readiness check "kafka"). */
#ifndef WEBHOOK_PRODUCER_H
#define WEBHOOK_PRODUCER_H

#include <stdbool.h>
#include <stddef.h>

#include "config.h"
#include "normalise.h"

typedef struct wh_producer wh_producer;

/* Called once per event sent, on the delivery thread: ok when durable;
 * otherwise why says what failed (never a secret). */
typedef void (*wh_delivered_fn)(void *opaque, bool ok, const char *why);

/* Connects to c's cluster for topic. Each event must be durable within
 * delivery_timeout_ms or is reported failed (it may still have been
 * written: the processor's retry then makes a duplicate, which consumers
 * drop by event id). Returns NULL with err set. */
wh_producer *wh_producer_new(const cfg *c, const char *topic, int delivery_timeout_ms,
                             wh_delivered_fn on_delivered, char *err, size_t errlen);

/* Enqueues ev keyed by its payment id, with headers event_id, processor
 * (name) and type. Returns 0 when enqueued — on_delivered(opaque) follows
 * exactly once — or -1 with err set (queue full, producer fenced): then it
 * never will. */
int wh_producer_send(wh_producer *p, const wh_event *ev, const char *processor, void *opaque,
                     char *err, size_t errlen);

/* Stops the delivery thread and waits up to timeout_ms for every event in
 * flight to be reported (each one's callback runs). Returns how many are
 * still not reported. */
int wh_producer_drain(wh_producer *p, int timeout_ms);

void wh_producer_destroy(wh_producer *p);

#endif
