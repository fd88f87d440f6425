/* Unit tests for ingest's per-message decision and its cache codec. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "ingest.h"

static claim_record rec(bool terminal) {
  claim_record r;
  memset(&r, 0, sizeof r);
  strcpy(r.payment_id, "pay_1");
  memset(r.fingerprint, 'a', 64);
  strcpy(r.origin_topic, "payments.intents");
  r.origin_partition = 2;
  r.origin_offset = 100;
  r.terminal = terminal;
  return r;
}

static char fp_a[65], fp_b[65];

static void setup(void) {
  memset(fp_a, 'a', 64);
  fp_a[64] = 0;
  memset(fp_b, 'b', 64);
  fp_b[64] = 0;
}

TestSuite(decide, .init = setup);

Test(decide, claiming_message_redelivered_is_forwarded_again) {
  claim_record r = rec(false);
  cr_assert_eq(ingest_decide(fp_a, "payments.intents", 2, 100, &r), INGEST_FORWARD);
}

Test(decide, claiming_message_after_the_end_re_emits_the_outcome) {
  claim_record r = rec(true);
  cr_assert_eq(ingest_decide(fp_a, "payments.intents", 2, 100, &r), INGEST_EMIT_STORED);
}

Test(decide, duplicate_in_flight_is_absorbed) {
  claim_record r = rec(false);
  cr_assert_eq(ingest_decide(fp_a, "payments.intents", 2, 101, &r), INGEST_ABSORB);
  cr_assert_eq(ingest_decide(fp_a, "payments.intents", 3, 100, &r), INGEST_ABSORB,
               "same offset on another partition is another message");
}

Test(decide, duplicate_of_finished_payment_is_replayed) {
  claim_record r = rec(true);
  cr_assert_eq(ingest_decide(fp_a, "payments.intents", 0, 7, &r), INGEST_REPLAY_STORED);
}

Test(decide, other_parameters_are_rejected_even_at_the_claims_offset) {
  claim_record r = rec(true);
  cr_assert_eq(ingest_decide(fp_b, "payments.intents", 0, 7, &r), INGEST_REJECT_REUSED);
  r = rec(false);
  cr_assert_eq(ingest_decide(fp_b, "payments.intents", 0, 7, &r), INGEST_REJECT_REUSED);
}

Test(decide, cache_value_round_trips) {
  claim_record r = rec(true);
  r.outcome_hex = "0a0470617931";
  char *s = ingest_cache_encode(&r);
  claim_record back;
  cr_assert_eq(ingest_cache_decode(s, strlen(s), &back), 0);
  cr_assert_str_eq(back.payment_id, "pay_1");
  cr_assert_str_eq(back.fingerprint, r.fingerprint);
  cr_assert_str_eq(back.origin_topic, "payments.intents");
  cr_assert_eq(back.origin_partition, 2);
  cr_assert_eq(back.origin_offset, 100);
  cr_assert(back.terminal);
  cr_assert_str_eq(back.outcome_hex, "0a0470617931");
  free(back.outcome_hex);
  free(s);
  r.outcome_hex = NULL;
  r.terminal = false;
  s = ingest_cache_encode(&r);
  cr_assert_eq(ingest_cache_decode(s, strlen(s), &back), 0);
  cr_assert_not(back.terminal);
  cr_assert_null(back.outcome_hex);
  free(s);
}

Test(decide, corrupt_cache_values_are_ignored) {
  claim_record back;
  cr_assert_eq(ingest_cache_decode("v2|x", 4, &back), -1);
  cr_assert_eq(ingest_cache_decode("garbage", 7, &back), -1);
  cr_assert_eq(ingest_cache_decode("v1|pay_1|short|t|1|2|", 21, &back), -1);
}
