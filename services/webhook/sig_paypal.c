/* sig_paypal: checks the PayPal-like transmission signature. */
#include "sig_paypal.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

int sig_rfc3339_parse(const char *s, int64_t *out) {
  if (!s) return -1;
  struct tm tm;
  memset(&tm, 0, sizeof tm);
  const char *p = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm);
  if (!p || strlen(s) < 19 || s[4] != '-' || s[10] != 'T') return -1;
  if (*p == '.') {
    p++;
    if (*p < '0' || *p > '9') return -1;
    while (*p >= '0' && *p <= '9') p++;
  }
  long offset = 0;
  if (*p == 'Z' || *p == 'z') {
    p++;
  } else if ((*p == '+' || *p == '-') && strlen(p) == 6 && p[3] == ':') {
    int hh, mm;
    if (sscanf(p + 1, "%2d:%2d", &hh, &mm) != 2 || hh > 23 || mm > 59) return -1;
    offset = (hh * 3600L + mm * 60L) * (*p == '-' ? -1 : 1);
    p += 6;
  } else {
    return -1;
  }
  if (*p) return -1;
  time_t t = timegm(&tm);
  if (t == (time_t)-1) return -1;
  *out = (int64_t)t - offset;
  return 0;
}

/* "<id>|<time>|<webhook id>|<hex sha256(body)>" */
static int expected_sig(const char *secret, const char *id, const char *time,
                        const char *webhook_id, const void *body, size_t len, char out[65]) {
  char digest[65];
  if (sig_sha256_hex(body, len, digest) != 0) return -1;
  size_t n = strlen(id) + strlen(time) + strlen(webhook_id) + 64 + 4;
  char *msg = malloc(n);
  if (!msg) return -1;
  int m = snprintf(msg, n, "%s|%s|%s|%s", id, time, webhook_id, digest);
  int rc = m > 0 ? sig_hmac_sha256_hex(secret, msg, (size_t)m, out) : -1;
  free(msg);
  return rc;
}

int sig_paypal_sign(const char *secret, const char *transmission_id, const char *time,
                    const char *webhook_id, const void *body, size_t len, char out[65]) {
  return expected_sig(secret, transmission_id, time, webhook_id, body, len, out);
}

sig_result sig_paypal_verify(const paypal_headers *h, const void *body, size_t len,
                             const char *secret, const char *expected_webhook_id, int64_t now,
                             int64_t tolerance_s) {
  int64_t t;
  if (!h->transmission_id || !*h->transmission_id || !h->webhook_id || !*h->webhook_id ||
      !h->signature || strchr(h->transmission_id, '|') || strchr(h->webhook_id, '|') ||
      sig_rfc3339_parse(h->transmission_time, &t) != 0)
    return SIG_MALFORMED;
  char want[65];
  if (expected_sig(secret, h->transmission_id, h->transmission_time, h->webhook_id, body, len,
                   want) != 0)
    return SIG_MISMATCH;
  bool match = sig_hex_equal(want, h->signature, strlen(h->signature));
  /* Not secret: the webhook id travels in clear in its own header. */
  if (expected_webhook_id && strcmp(expected_webhook_id, h->webhook_id) != 0) match = false;
  if (!match) return SIG_MISMATCH;
  if (t < now - tolerance_s || t > now + tolerance_s) return SIG_STALE;
  return SIG_OK;
}
