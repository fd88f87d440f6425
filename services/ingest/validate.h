/* validate: ingest's checks on an intent as upstream sent it. Pure logic:
 * every rule here has a unit test. An invalid intent ends `rejected` with the
 * code below, never dropped. */
#ifndef INGEST_VALIDATE_H
#define INGEST_VALIDATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "event.h"

#define IDEMPOTENCY_KEY_MAX 255

typedef struct validation_error {
  const char *code;  /* stable machine code, e.g. "amount_invalid" */
  char message[192]; /* human sentence naming the field */
} validation_error;

/* Checks every field ingest relies on. Returns 0, or -1 with err filled.
 * Metadata is bounded: at most 50 entries, keys 1-40 bytes, values at most
 * 500 bytes (27,000 bytes in all), each key once (metadata_invalid). */
int validate_intent(const ps_intent *in, validation_error *err);

/* Upstream sets only the request. Refuses an event that carries what the
 * stages set (payment_id, fraud, charge, ledger: stage_fields_set) or fields
 * this schema does not know, anywhere in it (unknown_fields: they would be
 * forwarded and stored unread). Returns 0, or -1 with err filled. */
int validate_intake(const ps_event *ev, validation_error *err);

/* Event time is bounded at intake (created_at_invalid): at most
 * CREATED_AT_MAX_AHEAD_MS after ref_ms — the Kafka message's timestamp, so
 * that a replay decides the same. A time far ahead would wipe the customer's
 * and card's velocity history. A past time is accepted (backfills, labelled
 * data sets, a late retry): it cannot erase newer history. */
#define CREATED_AT_MAX_AHEAD_MS (5LL * 60 * 1000)
int validate_created_at(int64_t created_at_ms, int64_t ref_ms, validation_error *err);

/* 1..255 printable ASCII characters. */
bool validate_idempotency_key(const char *key);
/* 1..64 of [A-Za-z0-9_.:-] (merchant and customer ids). */
bool validate_id(const char *id);
/* Well-formed UTF-8 without control characters, at most max bytes. */
bool validate_text(const char *s, size_t max);

/* Upper-cases the intent's currency in place (we accept "usd"). */
void validate_normalise(ps_intent *in);

#endif
