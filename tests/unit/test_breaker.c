/* Unit tests for the circuit breaker state machine. */
#include <criterion/criterion.h>

#include "breaker.h"

static breaker b;
static breaker_cfg c;

static void setup(void) {
  breaker_cfg_default(&c);
  c.window = 10;
  c.min_requests = 5;
  c.failure_rate = 0.5;
  c.cool_down_ms = 1000;
  c.half_open_probes = 2;
  breaker_init(&b, &c);
}

TestSuite(breaker, .init = setup);

static void results(int ok, int failed, int64_t now) {
  for (int i = 0; i < ok; i++) breaker_record(&b, now, false);
  for (int i = 0; i < failed; i++) breaker_record(&b, now, true);
}

Test(breaker, starts_closed_and_lets_requests_through) {
  cr_assert_eq(breaker_get_state(&b, 0), BREAKER_CLOSED);
  cr_assert(breaker_allow(&b, 0));
}

Test(breaker, no_verdict_below_the_minimum_request_count) {
  results(0, 4, 0);
  cr_assert_eq(breaker_get_state(&b, 0), BREAKER_CLOSED, "4 failures < min_requests 5");
}

Test(breaker, opens_at_the_failure_rate_and_refuses) {
  results(3, 2, 0);
  cr_assert_eq(breaker_get_state(&b, 0), BREAKER_CLOSED, "2 of 5 is under 50 %");
  results(0, 1, 10);
  cr_assert_eq(breaker_get_state(&b, 10), BREAKER_OPEN, "3 of 6 is 50 %");
  cr_assert_not(breaker_allow(&b, 500));
}

Test(breaker, window_forgets_old_failures) {
  results(0, 2, 0);
  results(3, 0, 0); /* 2 of 5: under the rate */
  results(10, 0, 0); /* the two failures slide out of the 10-wide window */
  results(0, 4, 0);
  cr_assert_eq(breaker_get_state(&b, 0), BREAKER_CLOSED, "4 of the last 10, not 6 of 19");
  results(0, 1, 0);
  cr_assert_eq(breaker_get_state(&b, 0), BREAKER_OPEN, "5 of the last 10");
}

Test(breaker, half_opens_after_the_cool_down_with_limited_probes) {
  results(0, 5, 0);
  cr_assert_not(breaker_allow(&b, 999));
  cr_assert_eq(breaker_get_state(&b, 1000), BREAKER_HALF_OPEN);
  cr_assert(breaker_allow(&b, 1000));
  cr_assert(breaker_allow(&b, 1000));
  cr_assert_not(breaker_allow(&b, 1000), "only two probes at a time");
}

Test(breaker, a_successful_probe_closes_it) {
  results(0, 5, 0);
  cr_assert(breaker_allow(&b, 1000));
  breaker_record(&b, 1001, false);
  cr_assert_eq(breaker_get_state(&b, 1001), BREAKER_CLOSED);
  cr_assert(breaker_allow(&b, 1001));
  results(0, 4, 1002);
  cr_assert_eq(breaker_get_state(&b, 1002), BREAKER_CLOSED, "a fresh window after closing");
}

Test(breaker, a_failed_probe_opens_it_again_for_a_full_cool_down) {
  results(0, 5, 0);
  cr_assert(breaker_allow(&b, 1000));
  breaker_record(&b, 1200, true);
  cr_assert_eq(breaker_get_state(&b, 1200), BREAKER_OPEN);
  cr_assert_not(breaker_allow(&b, 2100));
  cr_assert(breaker_allow(&b, 2200));
}

Test(breaker, an_unsent_probe_gives_its_slot_back_without_a_verdict) {
  results(0, 5, 0);
  cr_assert(breaker_allow(&b, 1000));
  cr_assert(breaker_allow(&b, 1000));
  cr_assert_not(breaker_allow(&b, 1000));
  breaker_release(&b);
  cr_assert_eq(breaker_get_state(&b, 1000), BREAKER_HALF_OPEN, "no verdict");
  cr_assert(breaker_allow(&b, 1000), "the slot is free again");
  breaker_release(&b);
  breaker_release(&b);
  breaker_release(&b); /* more releases than grants change nothing */
  cr_assert(breaker_allow(&b, 1000));
  cr_assert(breaker_allow(&b, 1000));
  cr_assert_not(breaker_allow(&b, 1000));
}

Test(breaker, releasing_while_closed_changes_nothing) {
  breaker_release(&b);
  cr_assert_eq(breaker_get_state(&b, 0), BREAKER_CLOSED);
  results(0, 5, 0);
  cr_assert_eq(breaker_get_state(&b, 0), BREAKER_OPEN);
}

Test(breaker, state_names) {
  cr_assert_str_eq(breaker_state_name(BREAKER_CLOSED), "closed");
  cr_assert_str_eq(breaker_state_name(BREAKER_OPEN), "open");
  cr_assert_str_eq(breaker_state_name(BREAKER_HALF_OPEN), "half_open");
}

/* s11 review 5: a status query's answer (a replay, a search, a refund by id)
 * says nothing of whether POSTs work: it neither closes a half-open circuit
 * (its probe slot given back) nor dilutes the window; its failure counts. */
Test(breaker, a_status_query_answered_is_neutral_its_failure_counts) {
  results(0, 5, 0);
  cr_assert(breaker_allow(&b, 1000));
  cr_assert(breaker_allow(&b, 1000));
  breaker_record_query(&b, 1001, false);
  cr_assert_eq(breaker_get_state(&b, 1001), BREAKER_HALF_OPEN, "a pending poll closes nothing");
  cr_assert(breaker_allow(&b, 1001), "its probe slot is free again");
  breaker_record(&b, 1002, false);
  cr_assert_eq(breaker_get_state(&b, 1002), BREAKER_CLOSED, "a POST answered closes it");
  results(0, 4, 1003);
  for (int i = 0; i < 20; i++) breaker_record_query(&b, 1003, false);
  results(0, 1, 1003);
  cr_assert_eq(breaker_get_state(&b, 1003), BREAKER_OPEN,
               "5 failed POSTs of 5: answered queries do not mask them");
  cr_assert(breaker_allow(&b, 2003));
  breaker_record_query(&b, 2004, true);
  cr_assert_eq(breaker_get_state(&b, 2004), BREAKER_OPEN, "a failed query is a failure");
}
