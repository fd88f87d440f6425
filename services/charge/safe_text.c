/* safe_text: UTF-8 validation, replacement and code-point-boundary cuts. */
#include "safe_text.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* The length of the valid UTF-8 sequence at s (at most n bytes), or 0 when
 * the byte at s starts none (RFC 3629: no overlongs, no surrogates, nothing
 * past U+10FFFF). NUL counts as invalid: Postgres text cannot hold it. */
static size_t utf8_seq(const unsigned char *s, size_t n) {
  unsigned char c = s[0];
  if (c == 0) return 0;
  if (c < 0x80) return 1;
  size_t len;
  unsigned char lo = 0x80, hi = 0xBF;
  if (c >= 0xC2 && c <= 0xDF) len = 2;
  else if (c == 0xE0) len = 3, lo = 0xA0;
  else if (c == 0xED) len = 3, hi = 0x9F;
  else if (c >= 0xE1 && c <= 0xEF) len = 3;
  else if (c == 0xF0) len = 4, lo = 0x90;
  else if (c == 0xF4) len = 4, hi = 0x8F;
  else if (c >= 0xF1 && c <= 0xF3) len = 4;
  else return 0;
  if (len > n || s[1] < lo || s[1] > hi) return 0;
  for (size_t i = 2; i < len; i++)
    if (s[i] < 0x80 || s[i] > 0xBF) return 0;
  return len;
}

size_t safe_text_copy(char *out, size_t cap, const char *in, size_t len) {
  static const char repl[] = "\xEF\xBF\xBD"; /* U+FFFD */
  const unsigned char *s = (const unsigned char *)in;
  size_t o = 0;
  for (size_t i = 0; in && i < len;) {
    size_t k = utf8_seq(s + i, len - i);
    const char *src = k ? in + i : repl;
    size_t w = k ? k : 3;
    if (o + w + 1 > cap) break; /* never half a character */
    memcpy(out + o, src, w);
    o += w;
    i += k ? k : 1;
  }
  out[o] = '\0';
  return o;
}

char *safe_text_dup(const char *in, size_t len) {
  size_t cap = 3 * len + 1; /* every byte replaced at worst */
  char *out = malloc(cap);
  if (!out) abort();
  safe_text_copy(out, cap, in, len);
  return out;
}
