/* dead_letter: the events stage's DLQ producer. A processor event the stage
 * cannot record (undecodable, a schema it does not read, a row Postgres
 * refuses) is never dropped: it goes to the DLQ (cfg topics.dlq) with the
 * headers every stage writes (outbox_add_dlq: dlq.reason, dlq.stage,
 * dlq.source.*, truncation), and the stage commits its offset only once
 * Kafka has acknowledged the dead letter. */
#ifndef EVENTS_DEAD_LETTER_H
#define EVENTS_DEAD_LETTER_H

#include <librdkafka/rdkafka.h>
#include <signal.h>
#include <stddef.h>

#include "config.h"
#include "outbox.h"

typedef struct dead_letter dead_letter;

/* An idempotent acks=all producer; NULL with err on failure. c must outlive it. */
dead_letter *dead_letter_new(const cfg *c, char *err, size_t errlen);

/* Produces m's raw bytes to the DLQ with reason and waits for the delivery
 * report. Returns 0 once acknowledged (and counted in
 * paystream_messages_dead_lettered_total), -1 if it was not, or not within
 * 5 s of *stop being set: the caller must not commit m, and retries. */
int dead_letter_send(dead_letter *d, const rd_kafka_message_t *m, const char *reason,
                     volatile sig_atomic_t *stop);

/* The stage's other outputs (outcomes, payments.charged) through the same
 * producer: 0 once Kafka acknowledged every message of ob, -1 otherwise
 * (the caller does not commit and applies the event again: the effect is
 * Postgres's, recorded once, and the outputs are re-derived from it). */
int events_publish(dead_letter *d, outbox *ob, volatile sig_atomic_t *stop);

/* Waits (5 s at most) for what is in flight, then frees d. */
void dead_letter_free(dead_letter *d);

#endif
