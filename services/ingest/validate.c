/* validate: field rules for incoming intents. */
#include "validate.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>

#include "money.h"

bool validate_idempotency_key(const char *key) {
  if (!key) return false;
  size_t n = strlen(key);
  if (n < 1 || n > IDEMPOTENCY_KEY_MAX) return false;
  for (size_t i = 0; i < n; i++)
    if (key[i] < 0x21 || key[i] > 0x7e) return false; /* printable, no space */
  return true;
}

bool validate_id(const char *id) {
  if (!id) return false;
  size_t n = strlen(id);
  if (n < 1 || n > 64) return false;
  for (size_t i = 0; i < n; i++) {
    char c = id[i];
    if (!(isalnum((unsigned char)c) || c == '_' || c == '.' || c == ':' || c == '-')) return false;
  }
  return true;
}

bool validate_text(const char *s, size_t max) {
  if (!s) return true;
  const unsigned char *p = (const unsigned char *)s;
  size_t n = strlen(s);
  if (n > max) return false;
  for (size_t i = 0; i < n;) {
    unsigned char c = p[i];
    size_t len;
    uint32_t cp;
    if (c < 0x80) {
      if (c < 0x20 || c == 0x7f) return false;
      i++;
      continue;
    } else if ((c & 0xe0) == 0xc0) {
      len = 2, cp = c & 0x1f;
    } else if ((c & 0xf0) == 0xe0) {
      len = 3, cp = c & 0x0f;
    } else if ((c & 0xf8) == 0xf0) {
      len = 4, cp = c & 0x07;
    } else {
      return false;
    }
    if (i + len > n) return false;
    for (size_t k = 1; k < len; k++) {
      if ((p[i + k] & 0xc0) != 0x80) return false;
      cp = cp << 6 | (p[i + k] & 0x3f);
    }
    /* overlong forms, surrogates, beyond Unicode */
    if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
        (cp >= 0xd800 && cp <= 0xdfff) || cp > 0x10ffff)
      return false;
    i += len;
  }
  return true;
}

static int fail(validation_error *err, const char *code, const char *fmt, const char *field) {
  err->code = code;
  snprintf(err->message, sizeof err->message, fmt, field);
  return -1;
}

static bool upper_currency_valid(const char *cur) {
  char up[4] = {0};
  if (!cur || strlen(cur) != 3) return false;
  for (int i = 0; i < 3; i++) up[i] = (char)toupper((unsigned char)cur[i]);
  return money_currency_valid(up);
}

int validate_intent(const ps_intent *in, validation_error *err) {
  if (!validate_idempotency_key(in->idempotency_key))
    return fail(err, "idempotency_key_invalid", "%s must be 1-255 printable ASCII characters",
                "idempotency_key");
  if (!validate_id(in->merchant_id))
    return fail(err, "merchant_id_invalid", "%s must be 1-64 characters of [A-Za-z0-9_.:-]",
                "merchant_id");
  if (!validate_id(in->customer_id))
    return fail(err, "customer_id_invalid", "%s must be 1-64 characters of [A-Za-z0-9_.:-]",
                "customer_id");
  if (!in->amount) return fail(err, "amount_missing", "%s is required", "amount");
  if (in->amount->amount_minor <= 0)
    return fail(err, "amount_invalid", "%s must be a positive number of minor units",
                "amount.amount_minor");
  if (in->amount->amount_minor > MONEY_MAX_PAYMENT_MINOR)
    return fail(err, "amount_too_large", "%s exceeds the largest payment accepted",
                "amount.amount_minor");
  if (!upper_currency_valid(in->amount->currency))
    return fail(err, "currency_invalid", "%s must be an ISO-4217 code we settle",
                "amount.currency");
  if (in->kind != PAYMENTS__V1__REQUEST_KIND__REQUEST_KIND_SALE &&
      in->kind != PAYMENTS__V1__REQUEST_KIND__REQUEST_KIND_AUTHORIZE)
    return fail(err, "kind_invalid", "%s is SALE or AUTHORIZE (operations are their own message)",
                "an intent's kind");
  if (in->created_at_ms <= 0)
    return fail(err, "created_at_invalid", "%s must be a positive epoch time in ms",
                "created_at_ms");
  const Payments__V1__PaymentMethod *pm = in->payment_method;
  if (!pm || !*pm->id || !validate_text(pm->id, 128))
    return fail(err, "payment_method_invalid", "%s is required (1-128 characters)",
                "payment_method.id");
  if (!validate_text(pm->fingerprint, 128) || !validate_text(pm->card_country, 2))
    return fail(err, "payment_method_invalid", "%s has a malformed field", "payment_method");
  if (!validate_text(in->description, 1000))
    return fail(err, "description_invalid", "%s must be UTF-8 text of at most 1000 bytes",
                "description");
  const Payments__V1__RequestContext *cx = in->context;
  if (cx && (!validate_text(cx->ip, 64) || !validate_text(cx->country, 2) ||
             !validate_text(cx->device_id, 255) || !validate_text(cx->email, 255) ||
             !(cx->latitude >= -90 && cx->latitude <= 90) ||
             !(cx->longitude >= -180 && cx->longitude <= 180)))
    return fail(err, "context_invalid", "%s has a malformed field", "context");
  if (in->n_metadata > 50)
    return fail(err, "metadata_invalid", "%s may hold at most 50 entries", "metadata");
  for (size_t i = 0; i < in->n_metadata; i++) {
    if (!*in->metadata[i]->key || !validate_text(in->metadata[i]->key, 40) ||
        !validate_text(in->metadata[i]->value, 500))
      return fail(err, "metadata_invalid", "%s keys must be 1-40 and values at most 500 bytes",
                  "metadata");
    for (size_t j = 0; j < i; j++)
      if (strcmp(in->metadata[i]->key, in->metadata[j]->key) == 0)
        return fail(err, "metadata_invalid", "%s keys must be unique", "metadata");
  }
  return 0;
}

/* Whether m, or any message inside the intent, carries fields this schema
 * does not know. */
static bool has_unknown(const ProtobufCMessage *m) { return m && m->n_unknown_fields > 0; }

static bool intent_has_unknown(const ps_intent *in) {
  if (has_unknown(&in->base) || (in->amount && has_unknown(&in->amount->base)) ||
      (in->payment_method && has_unknown(&in->payment_method->base)) ||
      (in->context && has_unknown(&in->context->base)))
    return true;
  for (size_t i = 0; i < in->n_metadata; i++)
    if (has_unknown(&in->metadata[i]->base)) return true;
  return false;
}

int validate_intake(const ps_event *ev, validation_error *err) {
  if ((ev->payment_id && *ev->payment_id) || ev->fraud || ev->charge || ev->ledger)
    return fail(err, "stage_fields_set", "%s are set by the stages, never upstream",
                "payment_id, fraud, charge and ledger");
  if (has_unknown(&ev->base) || (ev->intent && intent_has_unknown(ev->intent)))
    return fail(err, "unknown_fields", "%s holds fields this schema does not know",
                "the event");
  return 0;
}

int validate_created_at(int64_t created_at_ms, int64_t ref_ms, validation_error *err) {
  if (created_at_ms > ref_ms + CREATED_AT_MAX_AHEAD_MS)
    return fail(err, "created_at_invalid", "%s is more than 5 minutes in the future",
                "created_at_ms");
  return 0;
}

void validate_normalise(ps_intent *in) {
  if (in->amount && in->amount->currency)
    for (char *c = in->amount->currency; *c; c++) *c = (char)toupper((unsigned char)*c);
}
