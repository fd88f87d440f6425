/* Unit tests for pg's array literal builder, the one place values are
 * escaped by hand (a batch's column travels as one text[] parameter and is
 * unnested server-side): quotes and backslashes are escaped inside double
 * quotes, so no value can end its element early or be read as NULL. */
#include <criterion/criterion.h>
#include <string.h>

#include "pg.h"

static const char *one(pg_array *a, const char *s) {
  pg_array_init(a);
  pg_array_add_str(a, s);
  return pg_array_finish(a);
}

Test(pg_array, empty_array) {
  pg_array a;
  pg_array_init(&a);
  cr_assert_str_eq(pg_array_finish(&a), "{}");
  pg_array_free(&a);
}

Test(pg_array, strings_are_always_quoted) {
  pg_array a;
  cr_assert_str_eq(one(&a, "abc"), "{\"abc\"}");
  pg_array_free(&a);
  cr_assert_str_eq(one(&a, ""), "{\"\"}", "empty string is not NULL");
  pg_array_free(&a);
  cr_assert_str_eq(one(&a, "NULL"), "{\"NULL\"}", "the word NULL stays a string");
  pg_array_free(&a);
}

Test(pg_array, null_is_unquoted_NULL) {
  pg_array a;
  cr_assert_str_eq(one(&a, NULL), "{NULL}");
  pg_array_free(&a);
}

Test(pg_array, quotes_and_backslashes_are_escaped) {
  pg_array a;
  cr_assert_str_eq(one(&a, "a\"b\\c"), "{\"a\\\"b\\\\c\"}");
  pg_array_free(&a);
  cr_assert_str_eq(one(&a, "\\"), "{\"\\\\\"}", "a trailing backslash cannot escape the quote");
  pg_array_free(&a);
}

Test(pg_array, separators_and_braces_inside_values_stay_inside) {
  pg_array a;
  cr_assert_str_eq(one(&a, "x,y}{ z"), "{\"x,y}{ z\"}");
  pg_array_free(&a);
}

Test(pg_array, mixed_elements_and_growth) {
  pg_array a;
  pg_array_init(&a);
  pg_array_add_str(&a, "a");
  pg_array_add_int(&a, -42);
  pg_array_add_str(&a, NULL);
  for (int i = 0; i < 1000; i++) pg_array_add_str(&a, "\"\"\"\"");
  const char *s = pg_array_finish(&a);
  cr_assert_eq(a.count, 1003);
  const char *head = "{\"a\",-42,NULL,\"\\\"\\\"\\\"\\\"\",";
  cr_assert(strncmp(s, head, strlen(head)) == 0, "%.40s", s);
  cr_assert_eq(s[strlen(s) - 1], '}');
  pg_array_free(&a);
}

Test(pg_array, data_error_classes) {
  cr_assert(pg_err_is_data_error("22021: invalid byte sequence"));
  cr_assert(pg_err_is_data_error("23514: new row violates check constraint"));
  cr_assert(pg_err_is_data_error("P0001: raised"));
  cr_assert_not(pg_err_is_data_error("40001: could not serialize"));
  cr_assert_not(pg_err_is_data_error("conn: server closed the connection"));
  cr_assert_not(pg_err_is_data_error("claim vanished"));
}

/* Issue 17.16: /readyz says what is down, never where or as whom. */
Test(pg_array, public_error_text_names_no_host_or_user) {
  const char *errs[] = {
      "could not connect to postgres: connection to server at \"db.internal\" (10.0.0.5), port "
      "5432 failed: FATAL:  password authentication failed for user \"paystream_ingest\"",
      "postgres unavailable (retrying)",
      "conn: server closed the connection unexpectedly",
      "57P01: FATAL:  terminating connection due to administrator command on db.internal",
  };
  const char *want[] = {"cannot connect", "unavailable (reconnecting)", "connection lost",
                        "query failed: SQLSTATE 57P01"};
  for (size_t i = 0; i < sizeof errs / sizeof errs[0]; i++) {
    char out[64];
    pg_err_public(errs[i], out, sizeof out);
    cr_assert_str_eq(out, want[i]);
    cr_assert_null(strstr(out, "db.internal"));
    cr_assert_null(strstr(out, "paystream_ingest"));
  }
}
