/* events: the stage that consumes payments.processor-events. It records
 * each processor event once — Postgres's processor_events, primary key
 * (processor, event_id), insert-or-nothing — however many times the
 * processor delivered it, and in the same transaction applies it once
 * (apply.h: settles an unknown sale attempt, reverses a refund that failed
 * late, moves a dispute forward with its postings). Its outputs (outcomes,
 * payments.charged) are acknowledged by Kafka before the offset is
 * committed: a crash re-reads, the re-read changes nothing and re-sends
 * the same outputs. A message it cannot record goes to the DLQ
 * (dead_letter.h) and is committed only once the dead letter is
 * acknowledged. */
#ifndef EVENTS_H
#define EVENTS_H

#include <librdkafka/rdkafka.h>

#include "config.h"
#include "outbox.h"
#include "pg.h"

typedef enum events_result {
  EVENTS_RECORDED,   /* inserted now */
  EVENTS_DUPLICATE,  /* (processor, event_id) was already there */
  EVENTS_POISON,     /* undecodable, or refused by the table's checks: dead-lettered */
  EVENTS_RETRY,      /* Postgres unavailable: not recorded, try the same message again */
} events_result;

/* Records and applies one message of payments.processor-events and adds
 * its outputs to out. On EVENTS_POISON, reason says why (the DLQ's
 * dlq.reason). */
events_result events_record(pg_conn *pg, const cfg *c, const rd_kafka_message_t *m, outbox *out,
                            char *reason, size_t reasonlen);

/* Runs the stage until SIGTERM/SIGINT; returns the exit code. */
int events_main(void);

#endif
