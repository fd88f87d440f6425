/* sig_stripe: parses and checks the Stripe-Signature header. */
#include "sig_stripe.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_V1 8

typedef struct stripe_header {
  int64_t t;
  bool has_t;
  const char *v1[MAX_V1];
  size_t v1_len[MAX_V1];
  int nv1;
} stripe_header;

/* t=…,v1=…,v1=…,v0=… ; items may carry surrounding blanks. Returns 0 when
 * there is exactly one numeric t and at least one v1. */
static int parse(const char *h, stripe_header *out) {
  memset(out, 0, sizeof *out);
  const char *p = h;
  while (*p) {
    while (*p == ' ' || *p == '\t') p++;
    const char *item = p, *end = strchr(p, ',');
    if (!end) end = p + strlen(p);
    const char *eq = memchr(item, '=', (size_t)(end - item));
    if (!eq) return -1;
    size_t klen = (size_t)(eq - item), vlen = (size_t)(end - eq - 1);
    while (vlen && (eq[vlen] == ' ' || eq[vlen] == '\t')) vlen--;
    if (klen == 1 && item[0] == 't') {
      if (out->has_t || vlen == 0 || vlen > 19) return -1;
      char num[20];
      memcpy(num, eq + 1, vlen);
      num[vlen] = '\0';
      char *e;
      errno = 0;
      long long t = strtoll(num, &e, 10);
      if (errno || *e || t < 0) return -1;
      out->t = t;
      out->has_t = true;
    } else if (klen == 2 && item[0] == 'v' && item[1] == '1') {
      if (out->nv1 == MAX_V1) return -1;
      out->v1[out->nv1] = eq + 1;
      out->v1_len[out->nv1++] = vlen;
    }
    p = *end ? end + 1 : end;
  }
  return out->has_t && out->nv1 > 0 ? 0 : -1;
}

/* HMAC over "<t>.<body>": the body is bytes, never a C string. */
static int expected_sig(const char *secret, int64_t t, const void *body, size_t len,
                        char out[65]) {
  char prefix[32];
  int n = snprintf(prefix, sizeof prefix, "%lld.", (long long)t);
  char *msg = malloc((size_t)n + len + 1);
  if (!msg) return -1;
  memcpy(msg, prefix, (size_t)n);
  if (len) memcpy(msg + n, body, len);
  int rc = sig_hmac_sha256_hex(secret, msg, (size_t)n + len, out);
  free(msg);
  return rc;
}

sig_result sig_stripe_verify(const char *header, const void *body, size_t len,
                             const char *secret, int64_t now, int64_t tolerance_s) {
  stripe_header h;
  if (!header || parse(header, &h) != 0) return SIG_MALFORMED;
  char want[65];
  if (expected_sig(secret, h.t, body, len, want) != 0) return SIG_MISMATCH;
  bool match = false;
  /* Every candidate is compared, matched or not: the time taken does not
   * say which one matched. */
  for (int i = 0; i < h.nv1; i++) match |= sig_hex_equal(want, h.v1[i], h.v1_len[i]);
  if (!match) return SIG_MISMATCH;
  if (h.t < now - tolerance_s || h.t > now + tolerance_s) return SIG_STALE;
  return SIG_OK;
}

int sig_stripe_sign(const char *secret, int64_t t, const void *body, size_t len, char *out,
                    size_t cap) {
  char sig[65];
  if (expected_sig(secret, t, body, len, sig) != 0) return -1;
  int n = snprintf(out, cap, "t=%lld,v1=%s", (long long)t, sig);
  return n > 0 && (size_t)n < cap ? 0 : -1;
}
