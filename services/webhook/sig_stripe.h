/* sig_stripe: Stripe-style webhook signatures.
 *
 *   Stripe-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>[,v1=...]
 *
 * Several v1 values may be present (the sender signs with every secret it
 * holds while rotating); one match is enough. Other schemes (v0, ...) are
 * ignored, as Stripe's libraries do. The timestamp is signed, so a replay
 * of an old delivery is refused once it is older than the tolerance. */
#ifndef WEBHOOK_SIG_STRIPE_H
#define WEBHOOK_SIG_STRIPE_H

#include <stddef.h>
#include <stdint.h>

#include "signature.h"

/* Verifies header (may be NULL) for body[len] against secret at now
 * (unix seconds), allowing |now - t| <= tolerance_s. A header that cannot
 * be parsed, or holds no v1 value, is SIG_MALFORMED; the signature is
 * checked before the timestamp's age (a forged header is bad_signature,
 * whatever its t). */
sig_result sig_stripe_verify(const char *header, const void *body, size_t len,
                             const char *secret, int64_t now, int64_t tolerance_s);

/* The header a sender would write (tests and tools): "t=<t>,v1=<hex>".
 * out holds at least 96 bytes. Returns 0 or -1. */
int sig_stripe_sign(const char *secret, int64_t t, const void *body, size_t len, char *out,
                    size_t cap);

#endif
