/* money: checked integer arithmetic and the ISO-4217 table we accept. */
#include "money.h"

#include <string.h>

typedef struct {
  const char code[4];
  int exponent;
} currency_def;

/* Active ISO-4217 codes a processor typically settles; extend as needed. */
static const currency_def currencies[] = {
    {"AED", 2}, {"ARS", 2}, {"AUD", 2}, {"BGN", 2}, {"BHD", 3}, {"BRL", 2}, {"CAD", 2},
    {"CHF", 2}, {"CLP", 0}, {"CNY", 2}, {"COP", 2}, {"CZK", 2}, {"DKK", 2}, {"EGP", 2},
    {"EUR", 2}, {"GBP", 2}, {"HKD", 2}, {"HUF", 2}, {"IDR", 2}, {"ILS", 2}, {"INR", 2},
    {"ISK", 0}, {"JOD", 3}, {"JPY", 0}, {"KES", 2}, {"KRW", 0}, {"KWD", 3}, {"MAD", 2},
    {"MXN", 2}, {"MYR", 2}, {"NGN", 2}, {"NOK", 2}, {"NZD", 2}, {"OMR", 3}, {"PEN", 2},
    {"PHP", 2}, {"PKR", 2}, {"PLN", 2}, {"QAR", 2}, {"RON", 2}, {"RSD", 2}, {"SAR", 2},
    {"SEK", 2}, {"SGD", 2}, {"THB", 2}, {"TND", 3}, {"TRY", 2}, {"TWD", 2}, {"UAH", 2},
    {"UGX", 0}, {"USD", 2}, {"VND", 0}, {"XAF", 0}, {"XOF", 0}, {"ZAR", 2},
};

int money_currency_exponent(const char *code) {
  if (!code || strlen(code) != 3) return -1;
  for (size_t i = 0; i < sizeof currencies / sizeof currencies[0]; i++)
    if (memcmp(currencies[i].code, code, 3) == 0) return currencies[i].exponent;
  return -1;
}

bool money_currency_valid(const char *code) { return money_currency_exponent(code) >= 0; }

int money_add(int64_t a, int64_t b, int64_t *out) {
  int64_t r;
  if (__builtin_add_overflow(a, b, &r)) return -1;
  *out = r;
  return 0;
}

int money_sub(int64_t a, int64_t b, int64_t *out) {
  int64_t r;
  if (__builtin_sub_overflow(a, b, &r)) return -1;
  *out = r;
  return 0;
}

int money_mul_ratio(int64_t amount, int64_t num, int64_t den, int64_t *out) {
  if (den <= 0) return -1;
  __int128 p = (__int128)amount * num;
  __int128 q = (p >= 0 ? p + den / 2 : p - den / 2) / den;
  if (q > INT64_MAX || q < INT64_MIN) return -1;
  *out = (int64_t)q;
  return 0;
}
