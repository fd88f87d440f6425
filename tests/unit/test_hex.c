/* Unit tests for hex: bytea transport round-trips, and bad input is refused. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "hex.h"

Test(hex, round_trip_of_every_byte) {
  uint8_t b[256];
  for (int i = 0; i < 256; i++) b[i] = (uint8_t)i;
  char h[513];
  hex_encode(b, 256, h);
  cr_assert_eq(strlen(h), 512);
  cr_assert(strncmp(h, "000102", 6) == 0);
  size_t len;
  uint8_t *back = hex_decode(h, &len);
  cr_assert_eq(len, 256);
  cr_assert(memcmp(back, b, 256) == 0);
  free(back);
}

Test(hex, accepts_postgres_prefix_and_upper_case) {
  size_t len;
  uint8_t *b = hex_decode("\\xDEADbeef", &len);
  cr_assert_eq(len, 4);
  cr_assert_eq(b[0], 0xde);
  cr_assert_eq(b[3], 0xef);
  free(b);
}

Test(hex, refuses_odd_length_and_non_hex) {
  size_t len;
  cr_assert_null(hex_decode("abc", &len));
  cr_assert_null(hex_decode("0g", &len));
  cr_assert_null(hex_decode("\\x0", &len));
}

Test(hex, empty_is_empty) {
  size_t len = 9;
  uint8_t *b = hex_decode("", &len);
  cr_assert_not_null(b);
  cr_assert_eq(len, 0);
  free(b);
}
