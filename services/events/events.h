/* events: the stage that consumes payments.processor-events. Today it
 * records each processor event once — Postgres's processor_events, primary
 * key (processor, event_id), insert-or-nothing — however many times the
 * processor delivered it; applying events to payments (settling unresolved
 * charge attempts, refunds, disputes) builds on this record. Offsets are
 * committed only after the row is committed: a crash re-reads, and the
 * re-read changes nothing. A message it cannot record goes to the DLQ
 * (dead_letter.h) and is committed only once the dead letter is
 * acknowledged. */
#ifndef EVENTS_H
#define EVENTS_H

#include <librdkafka/rdkafka.h>

#include "pg.h"

typedef enum events_result {
  EVENTS_RECORDED,   /* inserted now */
  EVENTS_DUPLICATE,  /* (processor, event_id) was already there */
  EVENTS_POISON,     /* undecodable, or refused by the table's checks: dead-lettered */
  EVENTS_RETRY,      /* Postgres unavailable: not recorded, try the same message again */
} events_result;

/* Records one message of payments.processor-events. On EVENTS_POISON,
 * reason says why (the DLQ's dlq.reason). */
events_result events_record(pg_conn *pg, const rd_kafka_message_t *m, char *reason,
                            size_t reasonlen);

/* Runs the stage until SIGTERM/SIGINT; returns the exit code. */
int events_main(void);

#endif
