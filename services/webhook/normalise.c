/* normalise: Stripe-like and PayPal-like event JSON to ProcessorEvent. */
#include "normalise.h"

#include <ctype.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "money.h"
#include "payments.pb-c.h"
#include "sig_paypal.h"

typedef Payments__V1__ProcessorEvent proc_event;

static const char *str_at(json_t *obj, const char *key) {
  return json_string_value(json_object_get(obj, key)); /* NULL when absent or not a string */
}

static const char *nonempty(const char *s) { return s && *s ? s : NULL; }

/* Texts in the message point into the JSON document; the message is packed
 * before the document is released. */
static char *or_empty(const char *s) { return (char *)(s ? s : ""); }

int wh_decimal_to_minor(const char *value, int exponent, int64_t *out) {
  if (!value || !*value || exponent < 0) return -1;
  int64_t v = 0;
  int frac = -1; /* digits seen after the point, -1 before it */
  const char *p = value;
  for (; *p; p++) {
    if (*p == '.') {
      if (frac >= 0 || p == value) return -1;
      frac = 0;
      continue;
    }
    if (!isdigit((unsigned char)*p)) return -1;
    if (frac >= 0 && ++frac > exponent) return -1;
    if (v > (MONEY_MAX_PAYMENT_MINOR - 9) / 10) return -1;
    v = v * 10 + (*p - '0');
  }
  if (frac == 0) return -1; /* "12." */
  for (int i = frac < 0 ? 0 : frac; i < exponent; i++) {
    if (v > MONEY_MAX_PAYMENT_MINOR / 10) return -1;
    v *= 10;
  }
  if (v > MONEY_MAX_PAYMENT_MINOR) return -1;
  *out = v;
  return 0;
}

/* Upper-cases a currency code into cur[4]; -1 unless it is a known one. */
static int currency(const char *code, char cur[4]) {
  if (!code || strlen(code) != 3) return -1;
  for (int i = 0; i < 3; i++) cur[i] = (char)toupper((unsigned char)code[i]);
  cur[3] = '\0';
  return money_currency_valid(cur) ? 0 : -1;
}

/* Stripe: {"id","type","created","data":{"object":{...,"metadata":{"payment_id"}}}} */
static int fill_stripe(json_t *root, proc_event *e, Payments__V1__Money *m, char cur[4],
                       char *err, size_t errlen) {
  json_t *obj = json_object_get(json_object_get(root, "data"), "object");
  if (!json_is_object(obj)) {
    snprintf(err, errlen, "no data.object");
    return -1;
  }
  e->event_id = or_empty(nonempty(str_at(root, "id")));
  e->type = or_empty(nonempty(str_at(root, "type")));
  e->payment_id = or_empty(nonempty(str_at(json_object_get(obj, "metadata"), "payment_id")));
  json_t *created = json_object_get(root, "created");
  if (json_is_integer(created) && json_integer_value(created) > 0)
    e->occurred_at_ms = json_integer_value(created) * 1000;
  e->object_id = or_empty(str_at(obj, "id"));
  const char *kind = str_at(obj, "object");
  e->object_type = or_empty(kind);
  e->status = or_empty(str_at(obj, "status"));
  bool is_charge = kind && strcmp(kind, "charge") == 0;
  bool is_intent = kind && strcmp(kind, "payment_intent") == 0;
  e->charge_id = or_empty(is_charge ? str_at(obj, "id")
                          : is_intent ? str_at(obj, "latest_charge")
                                      : str_at(obj, "charge"));
  e->payment_intent_id = or_empty(is_intent ? str_at(obj, "id") : str_at(obj, "payment_intent"));
  json_t *amount = json_object_get(obj, "amount");
  if (amount) {
    if (!json_is_integer(amount) || json_integer_value(amount) < 0 ||
        json_integer_value(amount) > MONEY_MAX_PAYMENT_MINOR ||
        currency(str_at(obj, "currency"), cur) != 0) {
      snprintf(err, errlen, "bad amount or currency");
      return -1;
    }
    m->amount_minor = json_integer_value(amount);
    m->currency = cur;
    e->amount = m;
  }
  return 0;
}

/* The id of a related object PayPal lists under supplementary_data. */
static const char *related_id(json_t *res, const char *key) {
  const char *direct = str_at(res, key);
  if (direct) return direct;
  return str_at(json_object_get(json_object_get(res, "supplementary_data"), "related_ids"), key);
}

/* PayPal: {"id","event_type","create_time","resource":{...,"custom_id"}} */
static int fill_paypal(json_t *root, proc_event *e, Payments__V1__Money *m, char cur[4],
                       char *err, size_t errlen) {
  json_t *res = json_object_get(root, "resource");
  if (!json_is_object(res)) {
    snprintf(err, errlen, "no resource");
    return -1;
  }
  e->event_id = or_empty(nonempty(str_at(root, "id")));
  const char *type = nonempty(str_at(root, "event_type"));
  e->type = or_empty(type);
  e->payment_id = or_empty(nonempty(str_at(res, "custom_id")));
  int64_t t;
  if (sig_rfc3339_parse(str_at(root, "create_time"), &t) == 0) e->occurred_at_ms = t * 1000;
  e->object_id = or_empty(str_at(res, "id"));
  e->status = or_empty(str_at(res, "status"));
  bool capture = type && strncmp(type, "PAYMENT.CAPTURE.", 16) == 0;
  bool auth = type && strncmp(type, "PAYMENT.AUTHORIZATION.", 22) == 0;
  e->charge_id = or_empty(capture ? str_at(res, "id") : related_id(res, "capture_id"));
  e->payment_intent_id = or_empty(auth ? str_at(res, "id") : related_id(res, "authorization_id"));
  json_t *amount = json_object_get(res, "amount");
  if (!amount) amount = json_object_get(res, "disputed_amount");
  if (!amount) amount = json_object_get(res, "dispute_amount"); /* procsim, PayPal disputes */
  if (amount) {
    int exp;
    if (!json_is_object(amount) || currency(str_at(amount, "currency_code"), cur) != 0 ||
        (exp = money_currency_exponent(cur)) < 0 ||
        wh_decimal_to_minor(str_at(amount, "value"), exp, &m->amount_minor) != 0) {
      snprintf(err, errlen, "bad amount or currency");
      return -1;
    }
    m->currency = cur;
    e->amount = m;
  }
  return 0;
}

int wh_normalise(wh_flavour fl, const char *processor, const void *body, size_t len,
                 int64_t received_at_ms, wh_event *ev, char *err, size_t errlen) {
  memset(ev, 0, sizeof *ev);
  json_error_t jerr;
  json_t *root = json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr);
  if (!json_is_object(root)) {
    snprintf(err, errlen, "not a JSON object");
    json_decref(root);
    return -1;
  }
  proc_event e = PAYMENTS__V1__PROCESSOR_EVENT__INIT;
  Payments__V1__Money m = PAYMENTS__V1__MONEY__INIT;
  char cur[4];
  e.schema_version = 1;
  e.processor = (char *)processor;
  e.flavour = fl == WH_PAYPAL ? PAYMENTS__V1__PROCESSOR_FLAVOUR__PROCESSOR_FLAVOUR_PAYPAL
                              : PAYMENTS__V1__PROCESSOR_FLAVOUR__PROCESSOR_FLAVOUR_STRIPE;
  e.received_at_ms = received_at_ms;
  e.raw_body.data = (uint8_t *)body;
  e.raw_body.len = len;
  int rc = fl == WH_PAYPAL ? fill_paypal(root, &e, &m, cur, err, errlen)
                           : fill_stripe(root, &e, &m, cur, err, errlen);
  if (rc == 0 && (!*e.event_id || !*e.type || !*e.payment_id)) {
    snprintf(err, errlen, "%s missing", !*e.event_id ? "event id" : !*e.type ? "type" : "payment id");
    rc = -1;
  }
  if (rc == 0) {
    ev->packed_len = payments__v1__processor_event__get_packed_size(&e);
    ev->packed = malloc(ev->packed_len ? ev->packed_len : 1);
    ev->payment_id = strdup(e.payment_id);
    ev->event_id = strdup(e.event_id);
    ev->type = strdup(e.type);
    if (!ev->packed || !ev->payment_id || !ev->event_id || !ev->type) abort();
    payments__v1__processor_event__pack(&e, ev->packed);
  }
  json_decref(root);
  return rc;
}

void wh_event_clear(wh_event *ev) {
  free(ev->packed);
  free(ev->payment_id);
  free(ev->event_id);
  free(ev->type);
  memset(ev, 0, sizeof *ev);
}
