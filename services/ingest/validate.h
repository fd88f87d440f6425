/* validate: ingest's checks on an intent as upstream sent it. Pure logic:
 * every rule here has a unit test. An invalid intent ends `rejected` with the
 * code below, never dropped. */
#ifndef INGEST_VALIDATE_H
#define INGEST_VALIDATE_H

#include <stdbool.h>
#include <stddef.h>

#include "event.h"

#define IDEMPOTENCY_KEY_MAX 255

typedef struct validation_error {
  const char *code;  /* stable machine code, e.g. "amount_invalid" */
  char message[192]; /* human sentence naming the field */
} validation_error;

/* Checks every field ingest relies on. Returns 0, or -1 with err filled. */
int validate_intent(const ps_intent *in, validation_error *err);

/* 1..255 printable ASCII characters. */
bool validate_idempotency_key(const char *key);
/* 1..64 of [A-Za-z0-9_.:-] (merchant and customer ids). */
bool validate_id(const char *id);
/* Well-formed UTF-8 without control characters, at most max bytes. */
bool validate_text(const char *s, size_t max);

/* Upper-cases the intent's currency in place (we accept "usd"). */
void validate_normalise(ps_intent *in);

#endif
