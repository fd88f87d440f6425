/* money: integer minor units and ISO-4217 currencies. No floating point ever
 * touches an amount; arithmetic that would overflow is refused. */
#ifndef PS_MONEY_H
#define PS_MONEY_H

#include <stdbool.h>
#include <stdint.h>

/* Largest amount a single payment may carry, in minor units. Far above any
 * real payment, far below INT64_MAX so sums over a batch cannot overflow. */
#define MONEY_MAX_PAYMENT_MINOR 100000000000000LL /* 10^14 */

/* Returns the currency's minor-unit exponent (2 for USD, 0 for JPY), or -1
 * when code is not an active ISO-4217 alphabetic code (upper case). */
int money_currency_exponent(const char *code);
bool money_currency_valid(const char *code);

/* *out = a + b; returns 0, or -1 (out untouched) on overflow. */
int money_add(int64_t a, int64_t b, int64_t *out);
/* *out = a - b; returns 0, or -1 on overflow. */
int money_sub(int64_t a, int64_t b, int64_t *out);
/* *out = amount * num / den rounded half up; for fee schedules.
 * Returns -1 on overflow or den <= 0. */
int money_mul_ratio(int64_t amount, int64_t num, int64_t den, int64_t *out);

#endif
