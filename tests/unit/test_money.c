/* Unit tests for money: overflow is refused, never wrapped. */
#include <criterion/criterion.h>
#include <stdint.h>

#include "money.h"

Test(money, add_refuses_overflow) {
  int64_t r = 7;
  cr_assert_eq(money_add(INT64_MAX, 1, &r), -1);
  cr_assert_eq(r, 7, "output untouched on overflow");
  cr_assert_eq(money_add(INT64_MIN, -1, &r), -1);
  cr_assert_eq(money_add(40, 2, &r), 0);
  cr_assert_eq(r, 42);
}

Test(money, sub_refuses_overflow) {
  int64_t r;
  cr_assert_eq(money_sub(INT64_MIN, 1, &r), -1);
  cr_assert_eq(money_sub(10, 15, &r), 0);
  cr_assert_eq(r, -5);
}

Test(money, ratio_rounds_half_up_and_checks_range) {
  int64_t r;
  cr_assert_eq(money_mul_ratio(1000, 29, 1000, &r), 0);
  cr_assert_eq(r, 29);
  cr_assert_eq(money_mul_ratio(50, 29, 1000, &r), 0); /* 1.45 -> 1 */
  cr_assert_eq(r, 1);
  cr_assert_eq(money_mul_ratio(100, 15, 1000, &r), 0); /* 1.5 -> 2 */
  cr_assert_eq(r, 2);
  cr_assert_eq(money_mul_ratio(INT64_MAX, 2, 1, &r), -1);
  cr_assert_eq(money_mul_ratio(5, 1, 0, &r), -1);
}

Test(money, currencies_know_their_exponent) {
  cr_assert_eq(money_currency_exponent("USD"), 2);
  cr_assert_eq(money_currency_exponent("JPY"), 0);
  cr_assert_eq(money_currency_exponent("KWD"), 3);
  cr_assert_eq(money_currency_exponent("usd"), -1, "codes are upper case");
  cr_assert_eq(money_currency_exponent("XXX"), -1);
  cr_assert_eq(money_currency_exponent("USDX"), -1);
  cr_assert_not(money_currency_valid(NULL));
}
