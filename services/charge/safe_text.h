/* safe_text: processor text (error messages, decline codes, charge ids)
 * made safe to store in Postgres. A processor may send bytes that are not
 * UTF-8, and a fixed-size copy may cut a character in half; either makes
 * Postgres refuse the whole row (SQLSTATE 22021). Pure, unit-tested. */
#ifndef CHARGE_SAFE_TEXT_H
#define CHARGE_SAFE_TEXT_H

#include <stddef.h>

/* Copies in[0..len) into out (cap bytes, cap >= 1, always NUL-terminated),
 * replacing every byte that does not start a valid UTF-8 sequence (and NUL,
 * overlong forms, surrogates, code points past U+10FFFF) by U+FFFD, and
 * stopping before the first character that would not fit whole. Returns the
 * bytes written, without the NUL. */
size_t safe_text_copy(char *out, size_t cap, const char *in, size_t len);

/* The same into a malloc'd string of the right size (never NULL). */
char *safe_text_dup(const char *in, size_t len);

#endif
