/* signature: what verifying a processor's webhook signature can conclude,
 * and the HMAC-SHA256 primitives both flavours (sig_stripe.c, sig_paypal.c)
 * share. Comparisons are constant-time: a forger learns nothing from how
 * long a wrong signature takes to refuse. */
#ifndef WEBHOOK_SIGNATURE_H
#define WEBHOOK_SIGNATURE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum sig_result {
  SIG_OK = 0,
  SIG_MALFORMED, /* header missing or unparsable */
  SIG_STALE,     /* timestamp outside the tolerance (old or in the future) */
  SIG_MISMATCH,  /* well-formed, but no signature matches the secret */
} sig_result;

/* The metric label / log word for a result: ok, malformed_signature, stale, bad_signature. */
const char *sig_result_name(sig_result r);

/* Writes the 64 lower-case hex digits (and a NUL) of HMAC-SHA256(key, msg)
 * into out[65]. Returns 0, or -1 if OpenSSL fails. */
int sig_hmac_sha256_hex(const char *key, const void *msg, size_t len, char out[65]);

/* Writes the hex SHA-256 of data into out[65]. */
int sig_sha256_hex(const void *data, size_t len, char out[65]);

/* True when candidate (len bytes, any case of hex) equals expected (64
 * lower-case hex digits), compared in constant time over the 64 digits. */
bool sig_hex_equal(const char expected[65], const char *candidate, size_t len);

#endif
