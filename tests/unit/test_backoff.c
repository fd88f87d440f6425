/* Unit tests for the retry back-off of ambiguous charges. */
#include <criterion/criterion.h>

#include "charge.h"

Test(backoff, first_retry_waits_100_to_150_ms) {
  cr_assert_eq(charge_backoff_ms(0, 0.0), 100);
  cr_assert_leq(charge_backoff_ms(0, 0.999), 150);
  cr_assert_geq(charge_backoff_ms(0, 0.999), 149);
}

Test(backoff, doubles_each_round) {
  cr_assert_eq(charge_backoff_ms(1, 0.0), 200);
  cr_assert_eq(charge_backoff_ms(2, 0.0), 400);
  cr_assert_eq(charge_backoff_ms(3, 0.0), 800);
  cr_assert_eq(charge_backoff_ms(4, 0.0), 1600);
}

Test(backoff, is_capped_at_two_seconds_plus_jitter) {
  cr_assert_eq(charge_backoff_ms(5, 0.0), 2000);
  cr_assert_eq(charge_backoff_ms(60, 0.0), 2000);
  cr_assert_leq(charge_backoff_ms(1000000, 0.999999), 3000);
}

Test(backoff, jitter_spreads_retries_within_half_the_base) {
  long lo = charge_backoff_ms(2, 0.0), mid = charge_backoff_ms(2, 0.5),
       hi = charge_backoff_ms(2, 0.99);
  cr_assert(lo < mid && mid < hi, "%ld %ld %ld", lo, mid, hi);
  cr_assert_leq(hi - lo, 200);
}

Test(backoff, out_of_range_jitter_is_clamped) {
  cr_assert_eq(charge_backoff_ms(0, -1.0), 100);
  cr_assert_leq(charge_backoff_ms(0, 7.0), 150);
}
