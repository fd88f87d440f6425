/* charge_lookup: the processor's status query for an idempotency key — the
 * resolver's question (DESIGN "Processor events", Kill Bill's janitor).
 * An attempt or operation that got an ambiguous answer (timeout, reset,
 * 5xx, 409, a 4xx that decides nothing) is not re-sent blindly: it is asked
 * about (`GET /v1/_lookup?idempotency_key=K`, `GET /v2/_lookup?request_id=K`,
 * docs/procsim.md). The processor answers with what K got, original status
 * and body: that is read exactly as if it had been the reply. `404
 * idempotency_key_unknown` / `REQUEST_ID_UNKNOWN` says K never reached it
 * (or failed before acting): re-sent with the same key. Anything else (409
 * in progress, 5xx, a timeout, a 4xx of the query itself) is asked again
 * later. Pure; unit-tested. */
#ifndef CHARGE_LOOKUP_H
#define CHARGE_LOOKUP_H

#include <stdbool.h>
#include <stddef.h>

#include "processor.h"

/* What a lookup's HTTP answer says. */
typedef enum lookup_said {
  LOOKUP_FOUND,   /* the body and status are the original answer: map them */
  LOOKUP_UNKNOWN, /* the key never reached the processor: send again, same key */
  LOOKUP_AGAIN,   /* no verdict (in progress, 5xx, the query refused): ask later */
} lookup_said;

/* The path of the status query for key (below the processor's base URL). */
void charge_lookup_path(bool paypal, const char *key, char *out, size_t len);

lookup_said charge_lookup_classify(bool paypal, long http_status, const char *body, size_t len);

#endif
