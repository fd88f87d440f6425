/* charge_lookup: the processor's status query for an idempotency key — the
 * resolver's question (DESIGN "Processor events", Kill Bill's janitor).
 * An attempt or operation that got an ambiguous answer (timeout, reset,
 * 5xx, 409, a 4xx that decides nothing) is not re-sent blindly: it is asked
 * about (`GET /v1/_lookup?idempotency_key=K`, `GET /v2/_lookup?request_id=K`,
 * docs/procsim.md). The processor answers with what K got, original status
 * and body: that is read exactly as if it had been the reply. `404
 * idempotency_key_unknown` / `REQUEST_ID_UNKNOWN` says K never reached it
 * (or failed before acting): re-sent with the same key (within the key's
 * lifetime: charge_resolve.h). A stored `404 resource_missing` /
 * `INVALID_RESOURCE_ID` (the operation's target does not exist) is an
 * answer like any other. Anything else (409
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

/* The search past the key lifetime (charge_resolve.h): a key the processor
 * may have forgotten proves nothing, so the object is looked for by our own
 * id in its metadata — a sale's or authorization's payment id, a refund's
 * operation id (docs/procsim.md "Search"; Stripe's Search API, PayPal's
 * transaction search). The processor answers what the request that created
 * it got (original status and body, read as the reply), or that nothing
 * carries the id. */
typedef enum search_ref {
  SEARCH_PAYMENT, /* a sale or authorization: metadata[payment_id] / custom_id */
  SEARCH_REFUND,  /* a refund: metadata[refund_id] / invoice_id */
} search_ref;

/* The path of the search for id (below the processor's base URL). */
void charge_search_path(bool paypal, search_ref what, const char *id, char *out, size_t len);

/* LOOKUP_FOUND (map the body as the reply), LOOKUP_UNKNOWN (nothing carries
 * the id: `404 search_no_match` / `NO_MATCH`), or LOOKUP_AGAIN. */
lookup_said charge_search_classify(bool paypal, long http_status, const char *body, size_t len);

#endif
