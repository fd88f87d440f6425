/* sig_paypal: our PayPal-like webhook signature (docs: the procsim contract).
 *
 *   PayPal-Transmission-Id:   <uuid>
 *   PayPal-Transmission-Time: <RFC 3339, e.g. 2026-12-01T19:00:00Z>
 *   PayPal-Webhook-Id:        <webhook id>
 *   PayPal-Transmission-Sig:  <hex HMAC-SHA256(secret,
 *                               "<transmission id>|<transmission time>|<webhook id>|<hex sha256(body)>")>
 *
 * Real PayPal signs with a certificate (CRC32 of the body, RSA); the
 * simulator's shape keeps its fields and binds the body, the transmission
 * and the webhook with an HMAC instead. The transmission time is signed, so
 * an old delivery replayed is refused once past the tolerance. */
#ifndef WEBHOOK_SIG_PAYPAL_H
#define WEBHOOK_SIG_PAYPAL_H

#include <stddef.h>
#include <stdint.h>

#include "signature.h"

typedef struct paypal_headers {
  const char *transmission_id, *transmission_time, *webhook_id, *signature; /* each may be NULL */
} paypal_headers;

/* Verifies the headers for body[len] against secret at now (unix seconds),
 * allowing |now - time| <= tolerance_s. When expected_webhook_id is set the
 * PayPal-Webhook-Id must equal it (SIG_MISMATCH otherwise): a signature
 * made for another webhook subscription is not ours. */
sig_result sig_paypal_verify(const paypal_headers *h, const void *body, size_t len,
                             const char *secret, const char *expected_webhook_id, int64_t now,
                             int64_t tolerance_s);

/* The signature a sender would put in PayPal-Transmission-Sig (tests):
 * writes 64 hex digits and a NUL into out[65]. Returns 0 or -1. */
int sig_paypal_sign(const char *secret, const char *transmission_id, const char *time,
                    const char *webhook_id, const void *body, size_t len, char out[65]);

/* Parses an RFC 3339 date-time (Z or ±hh:mm offset, optional fraction) into
 * unix seconds. Returns 0, or -1 if it is not one. */
int sig_rfc3339_parse(const char *s, int64_t *out);

#endif
