/* intent_json: payment intents as JSON objects — the data set format of
 * fraudgen and fraud-train, and what `payctl publish --json` sends. One
 * object per line: {"idempotency_key", "merchant_id", "customer_id",
 * "amount_minor", "currency", "created_at_ms", "payment_method": {"id",
 * "fingerprint", "created_at_ms", "card_country"}, "context": {"ip",
 * "country", "latitude", "longitude", "device_id", "email"}}. */
#ifndef FRAUD_INTENT_JSON_H
#define FRAUD_INTENT_JSON_H

#include <jansson.h>
#include <stddef.h>

#include "event.h"

/* Builds an intent from o. Returns a heap intent (free with
 * payments__v1__payment_intent__free_unpacked(x, NULL)), or NULL with a
 * reason in err. */
ps_intent *intent_from_json(const json_t *o, char *err, size_t errlen);

/* The JSON object for in (new reference). */
json_t *intent_to_json(const ps_intent *in);

#endif
