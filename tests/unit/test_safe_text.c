/* Unit tests for safe_text: processor text Postgres always accepts. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "safe_text.h"
#include "stripe.h"

Test(safe_text, ascii_is_copied_as_is) {
  char out[16];
  cr_assert_eq(safe_text_copy(out, sizeof out, "card_declined", 13), 13);
  cr_assert_str_eq(out, "card_declined");
}

Test(safe_text, a_cut_never_splits_a_character) {
  /* "abé": the é (2 bytes) does not fit in 4 bytes with the NUL. */
  char out[4];
  cr_assert_eq(safe_text_copy(out, sizeof out, "ab\xc3\xa9", 4), 2);
  cr_assert_str_eq(out, "ab");
  char out5[5];
  safe_text_copy(out5, sizeof out5, "ab\xc3\xa9", 4);
  cr_assert_str_eq(out5, "ab\xc3\xa9");
}

Test(safe_text, a_cut_before_a_four_byte_character) {
  char out[6];
  cr_assert_eq(safe_text_copy(out, sizeof out, "ab\xf0\x9f\x92\xb3", 6), 2); /* 💳 needs 4 + NUL */
  cr_assert_str_eq(out, "ab");
}

Test(safe_text, invalid_bytes_become_replacement_characters) {
  char out[64];
  safe_text_copy(out, sizeof out, "a\xff\xfe" "b", 4);
  cr_assert_str_eq(out, "a\xef\xbf\xbd\xef\xbf\xbd" "b");
}

Test(safe_text, a_truncated_sequence_in_the_input_is_replaced) {
  char out[64];
  safe_text_copy(out, sizeof out, "ab\xc3", 3); /* cut upstream */
  cr_assert_str_eq(out, "ab\xef\xbf\xbd");
}

Test(safe_text, overlongs_surrogates_and_nul_are_replaced) {
  char out[64];
  safe_text_copy(out, sizeof out, "\xc0\xaf", 2);           /* overlong '/' */
  cr_assert_str_eq(out, "\xef\xbf\xbd\xef\xbf\xbd");
  safe_text_copy(out, sizeof out, "\xed\xa0\x80", 3);       /* U+D800 */
  cr_assert_eq(strncmp(out, "\xef\xbf\xbd", 3), 0);
  safe_text_copy(out, sizeof out, "\xf4\x90\x80\x80", 4);   /* past U+10FFFF */
  cr_assert_eq(strncmp(out, "\xef\xbf\xbd", 3), 0);
  safe_text_copy(out, sizeof out, "a\0b", 3);
  cr_assert_str_eq(out, "a\xef\xbf\xbd" "b");
}

Test(safe_text, a_replacement_that_does_not_fit_is_left_out) {
  char out[3];
  cr_assert_eq(safe_text_copy(out, sizeof out, "a\xff", 2), 1);
  cr_assert_str_eq(out, "a");
}

Test(safe_text, dup_is_sized_for_the_worst_case) {
  char *s = safe_text_dup("\xff\xff\xff", 3);
  cr_assert_eq(strlen(s), 9);
  free(s);
}

Test(safe_text, a_stripe_decline_with_a_character_at_the_cut_is_stored_whole_characters) {
  /* 62 ASCII bytes, then é at bytes 63-64: decline_code holds 63 + NUL. */
  const char *body = "{\"error\":{\"type\":\"card_error\",\"code\":\"card_declined\",\"decline_code\":"
                     "\"declined_xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\xc3\xa9_end\"}}";
  charge_answer a;
  stripe_map_response(402, body, strlen(body), &a);
  cr_assert_eq(a.kind, CHARGE_DECLINED);
  cr_assert_eq(strlen(a.decline_code), 62);
}

Test(safe_text, a_stripe_decline_with_invalid_utf8_is_still_a_decline) {
  const char *body = "{\"error\":{\"type\":\"card_error\",\"code\":\"card_declined\",\"decline_code\":"
                     "\"invalid_\xff\xfe_utf8\",\"message\":\"Your card was declined \xc3\x28.\"}}";
  charge_answer a;
  stripe_map_response(402, body, strlen(body), &a);
  cr_assert_eq(a.kind, CHARGE_DECLINED);
  cr_assert_str_eq(a.decline_code, "invalid_\xef\xbf\xbd\xef\xbf\xbd_utf8");
  cr_assert_str_eq(a.error, "Your card was declined \xef\xbf\xbd(.");
}
