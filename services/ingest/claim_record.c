/* ingest/claim_record: the pure half of intake — identifiers derived from
 * the request, the request's canonical fingerprint, what a claim record says
 * to do with a message, and the claim's cache encoding. No I/O: unit-tested
 * alone (tests/unit/test_fingerprint.c, test_decide.c). */
#include "ingest.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hash.h"

/* ---- identifiers and fingerprints (pure) -------------------------------- */

static void short_id(const char *prefix, const void *data, size_t len, char out[PS_ID_LEN]) {
  char hex[65];
  hash_sha256_hex(data, len, hex);
  snprintf(out, PS_ID_LEN, "%s%.24s", prefix, hex);
}

void ingest_payment_id(const char *merchant, const char *key, char out[PS_ID_LEN]) {
  char buf[600];
  int n = snprintf(buf, sizeof buf, "payment\x1f%s\x1f%s", merchant, key);
  short_id("pay_", buf, (size_t)n < sizeof buf ? (size_t)n : sizeof buf - 1, out);
}

void ingest_rejection_id(const char *topic, int32_t partition, int64_t offset, const void *raw,
                         size_t rawlen, char out[PS_ID_LEN]) {
  size_t cap = strlen(topic) + rawlen + 64;
  char *buf = malloc(cap);
  if (!buf) abort();
  int n = snprintf(buf, cap, "rejection\x1f%s\x1f%d\x1f%lld\x1f", topic, partition,
                   (long long)offset);
  if (rawlen) memcpy(buf + n, raw, rawlen);
  short_id("rej_", buf, (size_t)n + rawlen, out);
  free(buf);
}

/* Canonical text: each field length-prefixed so no two requests collide. */
typedef struct canon {
  char *buf;
  size_t len, cap;
} canon;

static void canon_add(canon *c, const char *s, size_t n) {
  if (c->len + n + 32 > c->cap) {
    c->cap = (c->len + n + 32) * 2;
    c->buf = realloc(c->buf, c->cap);
    if (!c->buf) abort();
  }
  c->len += (size_t)snprintf(c->buf + c->len, 32, "%zu:", n);
  memcpy(c->buf + c->len, s, n);
  c->len += n;
  c->buf[c->len++] = ';';
}

static void canon_str(canon *c, const char *s) { canon_add(c, s ? s : "", s ? strlen(s) : 0); }

/* Surrounding whitespace is not part of a value: " A-1 " is "A-1". */
typedef struct span {
  const char *p;
  size_t n;
} span;

static span trimmed(const char *s) {
  if (!s) s = "";
  while (*s == ' ' || *s == '\t' || *s == '\n' || *s == '\r') s++;
  size_t n = strlen(s);
  while (n && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\n' || s[n - 1] == '\r')) n--;
  return (span){s, n};
}

static int span_cmp(span a, span b) {
  int c = memcmp(a.p, b.p, a.n < b.n ? a.n : b.n);
  return c ? c : (a.n > b.n) - (a.n < b.n);
}

typedef struct meta_entry {
  span key, value;
} meta_entry;

/* Metadata is ordered on exactly what is hashed — the trimmed key, then the
 * trimmed value — so the order entries arrive in never matters, even for
 * keys equal once trimmed. */
static int cmp_meta(const void *a, const void *b) {
  const meta_entry *x = a, *y = b;
  int c = span_cmp(x->key, y->key);
  return c ? c : span_cmp(x->value, y->value);
}

void ingest_fingerprint(const ps_intent *in, char out[65]) {
  canon c = {0};
  char num[32], cur[4] = {0};
  canon_str(&c, "paystream.fingerprint.v1");
  canon_str(&c, in->merchant_id);
  canon_str(&c, in->customer_id);
  snprintf(num, sizeof num, "%lld", in->amount ? (long long)in->amount->amount_minor : 0LL);
  canon_str(&c, num);
  if (in->amount && in->amount->currency)
    for (int i = 0; i < 3 && in->amount->currency[i]; i++)
      cur[i] = (char)toupper((unsigned char)in->amount->currency[i]);
  canon_str(&c, cur);
  canon_str(&c, in->payment_method ? in->payment_method->id : "");
  span d = trimmed(in->description);
  canon_add(&c, d.p, d.n);
  meta_entry *meta = calloc(in->n_metadata + 1, sizeof *meta);
  if (!meta) abort();
  for (size_t i = 0; i < in->n_metadata; i++)
    meta[i] = (meta_entry){trimmed(in->metadata[i]->key), trimmed(in->metadata[i]->value)};
  qsort(meta, in->n_metadata, sizeof *meta, cmp_meta);
  for (size_t i = 0; i < in->n_metadata; i++) {
    canon_add(&c, meta[i].key.p, meta[i].key.n);
    canon_add(&c, meta[i].value.p, meta[i].value.n);
  }
  free(meta);
  /* An authorization is another request than a sale; sales hash as they
   * always did (stored fingerprints stay valid). */
  if (in->kind == PAYMENTS__V1__REQUEST_KIND__REQUEST_KIND_AUTHORIZE) canon_str(&c, "authorize");
  hash_sha256_hex(c.buf, c.len, out);
  free(c.buf);
}

ingest_action ingest_decide(const char *fingerprint, const char *topic, int32_t partition,
                            int64_t offset, const claim_record *rec) {
  if (strcmp(fingerprint, rec->fingerprint) != 0) return INGEST_REJECT_REUSED;
  bool origin = rec->origin_partition == partition && rec->origin_offset == offset &&
                strcmp(rec->origin_topic, topic) == 0;
  if (origin) return rec->terminal ? INGEST_EMIT_STORED : INGEST_FORWARD;
  return rec->terminal ? INGEST_REPLAY_STORED : INGEST_ABSORB;
}

char *ingest_cache_encode(const claim_record *rec) {
  const char *oh = rec->outcome_hex ? rec->outcome_hex : "";
  size_t cap = strlen(oh) + strlen(rec->origin_topic) + 200;
  char *s = malloc(cap);
  if (!s) abort();
  snprintf(s, cap, "v1|%s|%s|%s|%d|%lld|%s", rec->payment_id, rec->fingerprint, rec->origin_topic,
           rec->origin_partition, (long long)rec->origin_offset, oh);
  return s;
}

int ingest_cache_decode(const char *s, size_t len, claim_record *rec) {
  memset(rec, 0, sizeof *rec);
  char *copy = strndup(s, len);
  if (!copy) return -1;
  char *f[7];
  int n = 0;
  char *p = copy;
  for (; n < 7; n++) {
    f[n] = p;
    char *bar = n < 6 ? strchr(p, '|') : NULL;
    if (n < 6 && !bar) break;
    if (bar) {
      *bar = '\0';
      p = bar + 1;
    }
  }
  int rc = -1;
  if (n == 7 && strcmp(f[0], "v1") == 0 && strlen(f[1]) < PS_ID_LEN && strlen(f[2]) == 64 &&
      strlen(f[3]) < sizeof rec->origin_topic) {
    strcpy(rec->payment_id, f[1]);
    strcpy(rec->fingerprint, f[2]);
    strcpy(rec->origin_topic, f[3]);
    rec->origin_partition = (int32_t)strtol(f[4], NULL, 10);
    rec->origin_offset = strtoll(f[5], NULL, 10);
    if (*f[6]) {
      rec->outcome_hex = strdup(f[6]);
      rec->terminal = true;
    }
    rc = 0;
  }
  free(copy);
  return rc;
}
