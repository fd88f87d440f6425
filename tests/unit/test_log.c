/* Unit tests for log's JSON escaper: every log line must stay one valid
 * JSON object whatever a message holds (quotes, backslashes, newlines from
 * a Postgres error, control bytes), and truncation never cuts an escape. */
#include <criterion/criterion.h>
#include <string.h>

#include "log.h"

static const char *esc(const char *s) {
  static char buf[256];
  log_json_escape(buf, sizeof buf, 0, s);
  return buf;
}

Test(log, plain_text_is_copied) { cr_assert_str_eq(esc("batch failed"), "batch failed"); }

Test(log, quotes_and_backslashes_are_escaped) {
  cr_assert_str_eq(esc("say \"hi\" \\ bye"), "say \\\"hi\\\" \\\\ bye");
}

Test(log, control_characters_become_unicode_escapes) {
  cr_assert_str_eq(esc("a\nb\tc\r\x01"), "a\\u000ab\\u0009c\\u000d\\u0001");
}

Test(log, utf8_passes_through) { cr_assert_str_eq(esc("caf\xc3\xa9 \xe2\x82\xac"), "caf\xc3\xa9 \xe2\x82\xac"); }

Test(log, appends_at_len) {
  char buf[32] = "ab";
  size_t n = log_json_escape(buf, sizeof buf, 2, "\"c");
  cr_assert_eq(n, 5);
  cr_assert_str_eq(buf, "ab\\\"c");
}

Test(log, truncation_never_cuts_an_escape) {
  /* Every escape is whole: no dangling backslash or partial \u00XX at the
   * end, for every buffer size. */
  for (size_t cap = 8; cap < 40; cap++) {
    char buf[64];
    size_t n = log_json_escape(buf, cap, 0, "\n\n\n\n\n\"\"\"\"\\\\\\\\");
    cr_assert_lt(n, cap);
    cr_assert_eq(strlen(buf), n);
    size_t bs = 0;
    for (size_t i = n; i > 0 && buf[i - 1] == '\\'; i--) bs++;
    cr_assert_eq(bs % 2, 0, "cap %zu ends inside an escape: %s", cap, buf);
    const char *u = strrchr(buf, 'u');
    if (u && u > buf && u[-1] == '\\') cr_assert_geq(strlen(u), 5, "cap %zu cuts \\u: %s", cap, buf);
  }
}
