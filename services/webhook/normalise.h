/* normalise: a verified webhook body, of either flavour, becomes one
 * ProcessorEvent (proto/payments.proto) — the processor's event id, its type
 * verbatim, the payment it is about (the Kafka key), the object's ids,
 * status and amount in minor units, when it happened, and the body itself
 * byte for byte. Deciding what an event means for a payment is the applying
 * stage's job, not this one's: nothing here interprets the type. */
#ifndef WEBHOOK_NORMALISE_H
#define WEBHOOK_NORMALISE_H

#include <stddef.h>
#include <stdint.h>

typedef enum wh_flavour { WH_STRIPE = 1, WH_PAYPAL = 2 } wh_flavour;

/* A normalised event ready to produce. */
typedef struct wh_event {
  uint8_t *packed; /* the serialised ProcessorEvent */
  size_t packed_len;
  char *payment_id; /* the Kafka key */
  char *event_id;
  char *type;
} wh_event;

/* Parses body[len] (the flavour's JSON) and fills ev. Refuses — returns
 * -1 with a short reason in err — bodies that are not a JSON object, repeat
 * a key (a signed body must mean one thing to every reader), or lack the
 * event id, type, object or payment id; an amount that is present but not
 * a valid amount in a known currency is refused too. Returns 0 on success;
 * the caller frees ev with wh_event_clear. */
int wh_normalise(wh_flavour fl, const char *processor, const void *body, size_t len,
                 int64_t received_at_ms, wh_event *ev, char *err, size_t errlen);

void wh_event_clear(wh_event *ev);

/* A PayPal-style decimal amount ("12.34") in a currency with exponent
 * digits after the point, as minor units. Returns 0, or -1 if malformed,
 * too precise or too large. */
int wh_decimal_to_minor(const char *value, int exponent, int64_t *out);

#endif
