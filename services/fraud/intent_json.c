/* intent_json: JSON <-> PaymentIntent. */
#include "intent_json.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char *s_of(const json_t *o, const char *k) {
  const json_t *v = json_object_get(o, k);
  return json_is_string(v) ? (char *)json_string_value(v) : (char *)"";
}

static int64_t i_of(const json_t *o, const char *k) {
  const json_t *v = json_object_get(o, k);
  return json_is_integer(v) ? (int64_t)json_integer_value(v) : 0;
}

static double d_of(const json_t *o, const char *k) {
  const json_t *v = json_object_get(o, k);
  return json_is_number(v) ? json_number_value(v) : 0.0;
}

ps_intent *intent_from_json(const json_t *o, char *err, size_t errlen) {
  if (!json_is_object(o)) {
    snprintf(err, errlen, "not a JSON object");
    return NULL;
  }
  if (!json_is_integer(json_object_get(o, "amount_minor"))) {
    snprintf(err, errlen, "amount_minor: an integer is required");
    return NULL;
  }
  /* Borrowed strings on the stack, packed and unpacked into one owned
   * message: protobuf-c then frees it in one call. */
  ps_money money = PAYMENTS__V1__MONEY__INIT;
  money.amount_minor = i_of(o, "amount_minor");
  money.currency = s_of(o, "currency");
  Payments__V1__PaymentMethod pm = PAYMENTS__V1__PAYMENT_METHOD__INIT;
  const json_t *jpm = json_object_get(o, "payment_method");
  if (json_is_object(jpm)) {
    pm.id = s_of(jpm, "id");
    pm.fingerprint = s_of(jpm, "fingerprint");
    pm.created_at_ms = i_of(jpm, "created_at_ms");
    pm.card_country = s_of(jpm, "card_country");
  }
  Payments__V1__RequestContext cx = PAYMENTS__V1__REQUEST_CONTEXT__INIT;
  const json_t *jcx = json_object_get(o, "context");
  if (json_is_object(jcx)) {
    cx.ip = s_of(jcx, "ip");
    cx.country = s_of(jcx, "country");
    cx.latitude = d_of(jcx, "latitude");
    cx.longitude = d_of(jcx, "longitude");
    cx.device_id = s_of(jcx, "device_id");
    cx.email = s_of(jcx, "email");
  }
  ps_intent in = PAYMENTS__V1__PAYMENT_INTENT__INIT;
  in.idempotency_key = s_of(o, "idempotency_key");
  in.merchant_id = s_of(o, "merchant_id");
  in.customer_id = s_of(o, "customer_id");
  in.amount = &money;
  in.created_at_ms = i_of(o, "created_at_ms");
  in.payment_method = json_is_object(jpm) ? &pm : NULL;
  in.context = json_is_object(jcx) ? &cx : NULL;
  in.description = s_of(o, "description");
  size_t len = payments__v1__payment_intent__get_packed_size(&in);
  uint8_t *buf = malloc(len + 1);
  if (!buf) abort();
  payments__v1__payment_intent__pack(&in, buf);
  ps_intent *out = payments__v1__payment_intent__unpack(NULL, len, buf);
  free(buf);
  if (!out) snprintf(err, errlen, "could not build the intent");
  return out;
}

static const char *nz(const char *s) { return s ? s : ""; }

json_t *intent_to_json(const ps_intent *in) {
  json_t *o = json_object();
  json_object_set_new(o, "idempotency_key", json_string(nz(in->idempotency_key)));
  json_object_set_new(o, "merchant_id", json_string(nz(in->merchant_id)));
  json_object_set_new(o, "customer_id", json_string(nz(in->customer_id)));
  json_object_set_new(o, "amount_minor",
                      json_integer(in->amount ? (json_int_t)in->amount->amount_minor : 0));
  json_object_set_new(o, "currency", json_string(in->amount ? nz(in->amount->currency) : ""));
  json_object_set_new(o, "created_at_ms", json_integer((json_int_t)in->created_at_ms));
  if (in->payment_method) {
    const Payments__V1__PaymentMethod *p = in->payment_method;
    json_object_set_new(o, "payment_method",
                        json_pack("{s:s,s:s,s:I,s:s}", "id", nz(p->id), "fingerprint",
                                  nz(p->fingerprint), "created_at_ms",
                                  (json_int_t)p->created_at_ms, "card_country",
                                  nz(p->card_country)));
  }
  if (in->context) {
    const Payments__V1__RequestContext *c = in->context;
    json_object_set_new(o, "context",
                        json_pack("{s:s,s:s,s:f,s:f,s:s,s:s}", "ip", nz(c->ip), "country",
                                  nz(c->country), "latitude", c->latitude, "longitude",
                                  c->longitude, "device_id", nz(c->device_id), "email",
                                  nz(c->email)));
  }
  return o;
}
