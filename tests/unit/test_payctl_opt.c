/* Unit tests for how payctl reads its command line (tools/payctl/opt.c):
 * numbers are whole and in range or refused, times carry a zone, and
 * getopt_long's state is reset between commands. */
#include <criterion/criterion.h>
#include <criterion/redirect.h>
#include <stdint.h>

#include "opt.h"

static void quiet(void) { cr_redirect_stderr(); }
TestSuite(payctl_opt, .init = quiet);

Test(payctl_opt, whole_numbers_in_range_are_read) {
  long long v = -1;
  cr_assert_eq(opt_long("--count", "0", 0, 10, &v), 0);
  cr_assert_eq(v, 0);
  cr_assert_eq(opt_long("--count", "10", 0, 10, &v), 0);
  cr_assert_eq(v, 10);
  cr_assert_eq(opt_long("--offset", "9223372036854775807", 0, INT64_MAX, &v), 0);
  cr_assert_eq(v, INT64_MAX);
}

Test(payctl_opt, what_atol_read_as_a_number_is_refused) {
  long long v = 77;
  const char *bad[] = {"", "abc", "12abc", "1e3", "5s", " ", "1 000", "0x10", "3.5", "--1"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
    cr_assert_eq(opt_long("--count", bad[i], 0, 1000000, &v), -1, "'%s' accepted", bad[i]);
  cr_assert_eq(v, 77, "a refused value must not be stored");
}

Test(payctl_opt, out_of_range_and_overflow_are_refused) {
  long long v;
  cr_assert_eq(opt_long("--terminal", "-3", 0, 100, &v), -1);
  cr_assert_eq(opt_long("--terminal", "101", 0, 100, &v), -1);
  cr_assert_eq(opt_long("--offset", "9223372036854775808", 0, INT64_MAX, &v), -1);
}

Test(payctl_opt, the_message_names_the_option_and_the_value) {
  long long v;
  opt_long("--count", "12abc", 0, 5, &v);
  fflush(stderr);
  cr_assert_stderr_eq_str("payctl: --count takes a whole number from 0 to 5, not '12abc'\n");
}

Test(payctl_opt, decimals_for_percentages) {
  double d;
  cr_assert_eq(opt_double("--declines", "2.5", 0, 100, &d), 0);
  cr_assert_float_eq(d, 2.5, 1e-9);
  cr_assert_eq(opt_double("--declines", "150", 0, 100, &d), -1);
  cr_assert_eq(opt_double("--declines", "nan", 0, 100, &d), -1);
  cr_assert_eq(opt_double("--declines", "3%", 0, 100, &d), -1);
}

Test(payctl_opt, rfc3339_times_with_a_zone) {
  int64_t ms;
  cr_assert_eq(opt_time_ms("--to-time", "2026-11-25T10:00:00Z", &ms), 0);
  cr_assert_eq(ms, 1795600800000LL);
  cr_assert_eq(opt_time_ms("--to-time", "2026-11-25T10:00:00.250Z", &ms), 0);
  cr_assert_eq(ms, 1795600800250LL);
  cr_assert_eq(opt_time_ms("--to-time", "2026-11-25T11:30:00+01:30", &ms), 0);
  cr_assert_eq(ms, 1795600800000LL);
  cr_assert_eq(opt_time_ms("--to-time", "2026-11-25T08:00:00-02:00", &ms), 0);
  cr_assert_eq(ms, 1795600800000LL);
}

Test(payctl_opt, times_without_a_zone_or_malformed_are_refused) {
  int64_t ms = 5;
  const char *bad[] = {"yesterday", "2026-11-25T10:00:00", "2026-11-25", "2026-13-25T10:00:00Z",
                       "2026-11-25T10:00:00Zjunk", ""};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
    cr_assert_eq(opt_time_ms("--to-time", bad[i], &ms), -1, "'%s' accepted", bad[i]);
  cr_assert_eq(ms, 5);
}

static const struct option longopts[] = {{"count", required_argument, NULL, 'n'},
                                         {"force", no_argument, NULL, 'f'},
                                         {0, 0, 0, 0}};

Test(payctl_opt, options_and_positionals_in_any_order) {
  char *argv[] = {"review", "approve", "--count", "3", "pay_1", "--force", NULL};
  opt_begin();
  cr_assert_eq(opt_next(6, argv, longopts), 'n');
  cr_assert_str_eq(optarg, "3");
  cr_assert_eq(opt_next(6, argv, longopts), 'f');
  cr_assert_eq(opt_next(6, argv, longopts), -1);
  cr_assert_eq(6 - optind, 2);
  cr_assert_str_eq(argv[optind], "approve");
  cr_assert_str_eq(argv[optind + 1], "pay_1");
}

Test(payctl_opt, unknown_options_and_missing_values_are_errors) {
  char *a[] = {"wait", "--bogus", NULL};
  opt_begin();
  cr_assert_eq(opt_next(2, a, longopts), '?');
  char *b[] = {"wait", "--count", NULL};
  opt_begin();
  cr_assert_eq(opt_next(2, b, longopts), '?');
}

Test(payctl_opt, each_command_starts_parsing_afresh) {
  char *a[] = {"lag", "--count", "1", NULL};
  opt_begin();
  while (opt_next(3, a, longopts) != -1) {}
  char *b[] = {"wait", "--force", NULL};
  opt_begin();
  cr_assert_eq(opt_next(2, b, longopts), 'f');
  cr_assert_eq(opt_next(2, b, longopts), -1);
}
