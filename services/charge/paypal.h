/* paypal: the PayPal-like processor flavour — JSON body with the amount as a
 * decimal string in the currency's own exponent, a PayPal-Request-Id header
 * for idempotency, status words in the answer (COMPLETED, DECLINED, ...).
 * Pure request building and response mapping, unit-tested. */
#ifndef CHARGE_PAYPAL_H
#define CHARGE_PAYPAL_H

#include <stddef.h>
#include <stdint.h>

#include "processor.h" /* charge_answer, charge_kind */

/* JSON body for a capture; returns a malloc'd string, or NULL for an
 * unknown currency. Minor units become "12.34" (USD), "1234" (JPY). */
char *paypal_build_body(int64_t amount_minor, const char *currency, const char *payment_method,
                        const char *payment_id);

/* Formats minor units as a decimal string in the currency's exponent.
 * Returns 0, or -1 for an unknown currency or a too-small buffer. */
int paypal_format_amount(int64_t amount_minor, const char *currency, char *out, size_t len);

void paypal_map_response(long http_status, const char *body, size_t len, charge_answer *a);

#endif
