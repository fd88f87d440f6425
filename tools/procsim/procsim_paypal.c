/* procsim_paypal.c: the PayPal-like flavour. JSON requests with a
 * PayPal-Request-Id header, amounts as {"currency_code","value"} decimal
 * strings, 422 + details[].issue on a refusal:
 *   POST /v2/payments/captures                      sale (unchanged since the start)
 *   POST /v2/checkout/orders                        authorize (create + authorize in one call)
 *   POST /v2/payments/authorizations/{id}/capture   {"amount", "final_capture"}
 *   POST /v2/payments/authorizations/{id}/void
 *   POST /v2/payments/captures/{id}/refund          {"amount", "custom_id", "invoice_id"}
 *   GET  /v2/checkout/orders/{id}, /v2/payments/{authorizations,captures,refunds}/{id}
 *   GET  /v2/_lookup?request_id=K                   the answer K got */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "procsim.h"

static char *dump(json_t *j) {
  char *s = json_dumps(j, JSON_COMPACT);
  json_decref(j);
  return s;
}

static const char *jstr(json_t *o, const char *k) {
  json_t *v = json_object_get(o, k);
  return json_is_string(v) ? json_string_value(v) : NULL;
}

static json_t *amount_json(int64_t minor, const char *currency) {
  char v[40];
  money_format_decimal(minor, currency, v, sizeof v);
  return json_pack("{s:s,s:s}", "currency_code", currency, "value", v);
}

static json_t *time_json(gint64 us) {
  char t[40];
  time_rfc3339(us, t, sizeof t);
  return json_string(t);
}

static const char *auth_status(const sim_payment *p) {
  switch (p->st) {
  case PS_FAILED: return "DENIED";
  case PS_AUTHORIZED: return p->captured ? "PARTIALLY_CAPTURED" : "CREATED";
  case PS_CAPTURED: return "CAPTURED";
  case PS_VOIDED: return "VOIDED";
  default: return "EXPIRED";
  }
}

static json_t *auth_json(const sim_payment *p) {
  gint64 exp = p->expires_at ? p->expires_at : p->at + (gint64)29 * 86400 * G_USEC_PER_SEC;
  return json_pack("{s:s,s:s,s:o,s:o,s:o,s:s,s:o,s:o,s:o,s:s}", "id", p->id, "status",
                   auth_status(p), "amount", amount_json(p->amount, p->currency),
                   "captured_amount", amount_json(p->captured, p->currency),
                   "capturable_amount", amount_json(p->capturable, p->currency), "custom_id",
                   p->payment_id, "create_time", time_json(p->at), "expiration_time",
                   time_json(exp), "update_time", time_json(g_get_real_time()), "order_id",
                   p->order_id);
}

static json_t *order_json(const sim_payment *p) {
  return json_pack("{s:s,s:s,s:s,s:[{s:s,s:o,s:{s:[o]}}]}", "id", p->order_id, "intent",
                   "AUTHORIZE", "status", p->st == PS_FAILED ? "DECLINED" : "COMPLETED",
                   "purchase_units", "custom_id", p->payment_id, "amount",
                   amount_json(p->amount, p->currency), "payments", "authorizations",
                   auth_json(p));
}

static json_t *capture_json(const sim_capture *c) {
  const sim_payment *p = c->p;
  const char *st = c->refunded == 0 ? "COMPLETED"
                   : c->refunded == c->amount ? "REFUNDED"
                                              : "PARTIALLY_REFUNDED";
  return json_pack(
      "{s:s,s:s,s:o,s:b,s:{s:o,s:o,s:o},s:s,s:o,s:o,s:I}", "id", c->id, "status", st, "amount",
      amount_json(c->amount, p->currency), "final_capture", c->final,
      "seller_receivable_breakdown", "gross_amount", amount_json(c->amount, p->currency),
      "paypal_fee", amount_json(c->fee, p->currency), "net_amount",
      amount_json(c->amount - c->fee, p->currency), "custom_id", p->payment_id,
      "authorization_id", p->sale ? json_null() : json_string(p->id), "create_time",
      time_json(c->at), "fee_minor", (json_int_t)c->fee);
}

/* PayPal's default answer to a POST (Prefer: return=minimal): the id, the
 * status and the HATEOAS links only. */
static json_t *minimal_json(const char *id, const char *status, const char *up) {
  char self[256];
  snprintf(self, sizeof self, "/v2/payments/refunds/%s", id);
  return json_pack("{s:s,s:s,s:[{s:s,s:s,s:s},{s:s,s:s,s:s}]}", "id", id, "status", status,
                   "links", "href", self, "rel", "self", "method", "GET", "href", up, "rel", "up",
                   "method", "GET");
}

static json_t *refund_json(const sim_refund *r) {
  json_t *j = json_pack("{s:s,s:s,s:o,s:s,s:o,s:o}", "id", r->id, "status",
                        r->failed ? "FAILED" : r->pending ? "PENDING" : "COMPLETED", "amount",
                        amount_json(r->amount, r->p->currency), "custom_id", r->p->payment_id,
                        "capture_id", r->first ? json_string(r->first->id) : json_null(),
                        "create_time", time_json(r->at));
  if (r->refund_ref) json_object_set_new(j, "invoice_id", json_string(r->refund_ref));
  if (r->failed)
    json_object_set_new(j, "status_details", json_pack("{s:s}", "reason", r->failure_reason));
  return j;
}

/* The cumulative money_movements (PayPal's Disputes API): each withdrawal
 * a DEBIT of the seller, each reinstatement a CREDIT, the dispute's fee a
 * DEBIT of its own (reason DISPUTE_FEE); append-only, so an entry's index
 * is its identity. */
static json_t *movements_json(const sim_dispute *d) {
  json_t *a = json_array();
  for (int i = 0; i < d->nmoves; i++)
    json_array_append_new(
        a, json_pack("{s:s,s:s,s:o,s:o,s:s}", "affected_party", "SELLER", "type",
                     d->moves[i].credit ? "CREDIT" : "DEBIT", "amount",
                     amount_json(d->moves[i].amount, d->p->currency), "initiated_time",
                     time_json(d->moves[i].at), "reason",
                     d->moves[i].fee      ? "DISPUTE_FEE"
                     : d->moves[i].credit ? "DISPUTE_SETTLEMENT"
                                          : "DISPUTE_HOLD"));
  return a;
}

static json_t *dispute_json(const sim_dispute *d) {
  const char *cur = d->p->currency;
  bool closed = strcmp(d->status, "won") == 0 || strcmp(d->status, "lost") == 0;
  /* No `fee` field: PayPal's dispute resource states none; the fee is a
   * DISPUTE_FEE movement of its own (movements_json). */
  json_t *j = json_pack("{s:s,s:s,s:s,s:o,s:o,s:[{s:s,s:s}],s:s,s:s,s:s,s:o,s:o}", "id", d->id,
                   "dispute_id", d->id, "status", closed ? "RESOLVED" : "OPEN", "dispute_amount",
                   amount_json(d->amount, cur), "amount_withdrawn", amount_json(d->withdrawn, cur), "disputed_transactions",
                   "seller_transaction_id", d->c->id, "custom", d->p->payment_id, "custom_id",
                   d->p->payment_id, "capture_id", d->c->id, "last_action", d->last, "outcome",
                   closed ? json_string(d->status) : json_null(), "create_time", time_json(d->at));
  json_object_set_new(j, "money_movements", movements_json(d));
  return j;
}

/* The reason in the words of the sale's own 422 answer (sale_answer: upper
 * case), so a decline reads the same whether the answer or the webhook
 * settled it. */
static json_t *denied_json(const sim_payment *p) {
  char *reason = g_ascii_strup(p->decline_code ? p->decline_code : "declined", -1);
  json_t *j = json_pack("{s:s,s:s,s:o,s:s,s:s}", "id", p->id, "status", "DECLINED", "amount",
                        amount_json(p->amount, p->currency), "custom_id", p->payment_id, "reason",
                        reason);
  g_free(reason);
  return j;
}

json_t *paypal_event_object(const char *kind, const void *obj) {
  if (strcmp(kind, "authorization") == 0) return auth_json(obj);
  if (strcmp(kind, "refund") == 0) return refund_json(obj);
  if (strcmp(kind, "dispute") == 0) return dispute_json(obj);
  if (strcmp(kind, "denied") == 0) return denied_json(obj);
  return capture_json(obj);
}

static char *err(unsigned *status, unsigned st, const char *issue, const char *msg) {
  *status = st;
  return http_error(PAYPAL, st, issue, msg);
}

/* An optional {"currency_code","value"} in p's currency: the minor units,
 * dflt when absent, -1 malformed, -2 another currency. */
static long long req_amount(json_t *amount, const sim_payment *p, long long dflt) {
  if (!amount) return dflt;
  const char *cur = jstr(amount, "currency_code");
  if (!cur || g_ascii_strcasecmp(cur, p->currency) != 0) return cur ? -2 : -1;
  long long v = money_parse_decimal(jstr(amount, "value"), p->currency);
  return v > 0 ? v : -1;
}

/* ---- the sale, as it always was ------------------------------------------- */

/* The PayPal-like sale request as the form the shared sale understands. */
static GHashTable *sale_form(const char *body) {
  json_t *j = json_loads(body ? body : "", 0, NULL);
  GHashTable *h = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_free);
  if (!j) return h;
  json_t *amount = json_object_get(j, "amount");
  const char *cur = jstr(amount, "currency_code");
  long long minor = money_parse_decimal(jstr(amount, "value"), cur);
  if (cur && minor > 0) {
    g_hash_table_replace(h, g_strdup("amount"), g_strdup_printf("%lld", minor));
    g_hash_table_replace(h, g_strdup("currency"), g_ascii_strdown(cur, -1));
  }
  const char *pm = jstr(j, "payment_source");
  const char *id = jstr(j, "custom_id");
  if (pm) g_hash_table_replace(h, g_strdup("payment_method"), g_strdup(pm));
  if (id) g_hash_table_replace(h, g_strdup("metadata[payment_id]"), g_strdup(id));
  json_decref(j);
  return h;
}

/* Re-words the shared sale's Stripe-like answer. */
static unsigned sale_answer(unsigned status, char **body) {
  json_t *j = json_loads(*body, 0, NULL);
  json_t *out = NULL;
  unsigned st = status;
  if (status == 200 && j) {
    out = json_pack("{s:s,s:s,s:O}", "id", jstr(j, "id"), "status", "COMPLETED", "fee_minor",
                    json_object_get(j, "fee"));
    st = 201;
  } else if (status == 402 && j) {
    const char *dc = jstr(json_object_get(j, "error"), "decline_code");
    char *up = g_ascii_strup(dc ? dc : "declined", -1);
    out = json_pack("{s:s,s:s}", "status", "DECLINED", "reason", up);
    g_free(up);
    st = 422;
  } else if (status == 400 || status == 401) {
    out = json_pack("{s:s}", "name", status == 401 ? "AUTHENTICATION_FAILURE" : "INVALID_REQUEST");
  } else {
    out = json_pack("{s:s}", "name", "INTERNAL_SERVER_ERROR");
  }
  if (j) json_decref(j);
  free(*body);
  *body = dump(out);
  return st;
}

static unsigned exec_sale(sim_req *q, char **body) {
  GHashTable *form = sale_form(q->data);
  unsigned st = stripe_do_charge(form, PAYPAL, q->key, body);
  g_hash_table_destroy(form);
  return sale_answer(st, body);
}

/* ---- the lifecycle --------------------------------------------------------- */

static unsigned exec_authorize(sim_req *q, char **body) {
  unsigned st = 201;
  json_t *j = q->json;
  const char *intent = jstr(j, "intent");
  json_t *pu = json_array_get(json_object_get(j, "purchase_units"), 0);
  json_t *amount = json_object_get(pu, "amount");
  const char *cur = jstr(amount, "currency_code");
  long long minor = money_parse_decimal(jstr(amount, "value"), cur);
  if (!j || !intent || strcmp(intent, "AUTHORIZE") != 0)
    return *body = err(&st, 400, "INVALID_PARAMETER_VALUE",
                       "procsim creates orders with intent AUTHORIZE only"),
           st;
  if (!cur || minor <= 0)
    return *body = err(&st, 400, "INVALID_PARAMETER_VALUE",
                       "purchase_units[0].amount needs currency_code and value"),
           st;
  json_t *src = json_object_get(j, "payment_source");
  const char *pm = json_is_string(src) ? json_string_value(src)
                                       : jstr(json_object_get(src, "token"), "id");
  if (!pm) pm = "pm_card_visa";
  const decline_def *d = fault_decline(pm);
  store_lock();
  sim_payment *p = store_payment_new(PAYPAL, false, jstr(pu, "custom_id"), cur, minor, pm);
  if (d) {
    p->st = PS_FAILED;
    p->decline_code = g_strdup(d->decline);
    store_log("authorize", p, p->id, minor, 0, "failed", q->key);
    webhook_event("authorize_failed", p, p);
    json_t *e = json_pack("{s:s,s:s,s:[{s:s,s:s}],s:s,s:s}", "name", "UNPROCESSABLE_ENTITY",
                          "message", "The instrument presented was declined.", "details",
                          "issue", "INSTRUMENT_DECLINED", "description", d->decline,
                          "decline_code", d->decline, "order_id", p->order_id);
    store_unlock();
    *body = dump(e);
    return 422;
  }
  p->st = PS_AUTHORIZED;
  p->capturable = minor;
  store_log("authorize", p, p->id, minor, 0, "succeeded", q->key);
  webhook_event("authorized", p, p);
  *body = dump(order_json(p));
  store_unlock();
  return st;
}

/* Why an authorization takes no capture or void, or NULL. */
static const char *auth_refusal(const sim_payment *p, bool voiding) {
  switch (p->st) {
  case PS_AUTHORIZED: return NULL;
  case PS_VOIDED: return voiding ? "PREVIOUSLY_VOIDED" : "AUTHORIZATION_VOIDED";
  case PS_EXPIRED: return "AUTHORIZATION_EXPIRED";
  case PS_CAPTURED: return voiding ? "PREVIOUSLY_CAPTURED" : "AUTHORIZATION_ALREADY_CAPTURED";
  default: return "AUTHORIZATION_DENIED";
  }
}

static unsigned exec_capture(sim_req *q, char **body) {
  unsigned st = 201;
  store_lock();
  sim_payment *p = store_payment(q->target);
  const char *why = p ? auth_refusal(p, false) : NULL;
  long long n = p ? req_amount(json_object_get(q->json, "amount"), p, p->capturable) : 0;
  if (!p || p->fl != PAYPAL || p->sale || strcmp(p->id, q->target) != 0) {
    *body = err(&st, 404, "INVALID_RESOURCE_ID", "Specified resource ID does not exist.");
  } else if (why) {
    *body = err(&st, 422, why, "The authorization cannot be captured.");
  } else if (n == -2) {
    *body = err(&st, 422, "CURRENCY_MISMATCH", "The capture's currency is not the authorization's.");
  } else if (n <= 0) {
    *body = err(&st, 400, "INVALID_PARAMETER_VALUE", "amount is malformed");
  } else if (n > p->capturable) {
    *body = err(&st, 422, "MAX_CAPTURE_AMOUNT_EXCEEDED",
                "Capture amount exceeds the amount still capturable.");
  } else {
    bool final = json_is_true(json_object_get(q->json, "final_capture"));
    p->capturable -= n;
    sim_capture *c = store_capture_new(p, n, final);
    if (final || p->capturable == 0) store_release(p, PS_CAPTURED, NULL);
    store_log("capture", p, c->id, n, c->fee, "succeeded", q->key);
    webhook_event("captured", p, c);
    *body = dump(capture_json(c));
  }
  store_unlock();
  return st;
}

static unsigned exec_void(sim_req *q, char **body) {
  unsigned st = 200;
  store_lock();
  sim_payment *p = store_payment(q->target);
  const char *why = p ? auth_refusal(p, true) : NULL;
  if (!p || p->fl != PAYPAL || p->sale || strcmp(p->id, q->target) != 0) {
    *body = err(&st, 404, "INVALID_RESOURCE_ID", "Specified resource ID does not exist.");
  } else if (why) {
    *body = err(&st, 422, why, "The authorization cannot be voided.");
  } else {
    int64_t left = p->capturable;
    store_release(p, PS_VOIDED, "voided");
    store_log("void", p, p->id, left, 0, "voided", q->key);
    webhook_event("voided", p, p);
    *body = dump(auth_json(p));
  }
  store_unlock();
  return st;
}

static unsigned exec_refund(sim_req *q, char **body) {
  unsigned st = 201;
  store_lock();
  sim_capture *c = store_capture(q->target);
  if (c && c->p->fl != PAYPAL) c = NULL;
  int64_t left = c ? store_capture_refundable(c) : 0;
  long long n = c ? req_amount(json_object_get(q->json, "amount"), c->p, left) : 0;
  bool as_failed;
  if (!c) {
    *body = err(&st, 404, "INVALID_RESOURCE_ID", "Specified resource ID does not exist.");
  } else if (n == -2) {
    *body = err(&st, 422, "CURRENCY_MISMATCH", "The refund's currency is not the capture's.");
  } else if (n < 0) {
    *body = err(&st, 400, "INVALID_PARAMETER_VALUE", "amount is malformed");
  } else if (n == 0 || n > left) {
    *body = err(&st, 422, "REFUND_AMOUNT_EXCEEDED",
                "The refund amount must be less than or equal to the capture's remaining amount.");
  } else if (fault_refund_declined(c->p->payment_id, &as_failed)) {
    sim_refund *r = store_refund_new(c->p, c, n, true, jstr(q->json, "invoice_id"));
    store_log("refund", c->p, r->id, n, 0, "failed", q->key);
    webhook_event("refund_failed", c->p, r);
    *body = err(&st, 422, "REFUND_FAILED_INSUFFICIENT_FUNDS",
                "The refund could not be made: insufficient balance.");
  } else {
    sim_refund *r = store_refund_new(c->p, c, n, false, jstr(q->json, "invoice_id"));
    r->pending = fault_refund_pending(); /* its verdict later: refund_fail / refund_complete */
    store_log("refund", c->p, r->id, n, 0, r->pending ? "pending" : "succeeded", q->key);
    if (!r->pending) webhook_event("refunded", c->p, r);
    if (q->full && !fault_refund_minimal()) {
      *body = dump(refund_json(r));
    } else { /* the search finds the object itself, whole */
      char up[256];
      snprintf(up, sizeof up, "/v2/payments/captures/%s", c->id);
      q->search_body = dump(refund_json(r));
      json_t *m = refund_json(r);
      *body = dump(minimal_json(r->id, jstr(m, "status"), up));
      json_decref(m);
    }
  }
  store_unlock();
  return st;
}

static enum MHD_Result get_object(struct MHD_Connection *c, const char *kind, const char *id) {
  if (!fault_api_key_ok(MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization")))
    return http_reply(c, 401, "{\"name\":\"AUTHENTICATION_FAILURE\"}");
  enum MHD_Result failed;
  if (http_query_fails(c, PAYPAL, &failed)) return failed;
  json_t *j = NULL;
  store_lock();
  if (strcmp(kind, "orders") == 0) {
    sim_payment *p = store_payment(id);
    if (p && p->fl == PAYPAL && strcmp(p->order_id, id) == 0) j = order_json(p);
  } else if (strcmp(kind, "authorizations") == 0) {
    sim_payment *p = store_payment(id);
    if (p && p->fl == PAYPAL && !p->sale && strcmp(p->id, id) == 0) j = auth_json(p);
  } else if (strcmp(kind, "captures") == 0) {
    sim_capture *k = store_capture(id);
    if (k && k->p->fl == PAYPAL) j = capture_json(k);
  } else {
    sim_refund *r = store_refund(id);
    if (r && r->p->fl == PAYPAL) j = refund_json(r);
  }
  store_unlock();
  if (!j) {
    char *b = http_error(PAYPAL, 404, "INVALID_RESOURCE_ID", "Specified resource ID does not exist.");
    enum MHD_Result r = http_reply(c, 404, b);
    free(b);
    return r;
  }
  return http_reply_json(c, 200, j);
}

enum MHD_Result paypal_route(struct MHD_Connection *c, sim_req *q, const char *method,
                             const char *url, bool *handled) {
  *handled = true;
  bool post = strcmp(method, "POST") == 0, get = strcmp(method, "GET") == 0;
  if (strncmp(url, "/v2/", 4) != 0 || (!post && !get)) {
    *handled = false;
    return MHD_NO;
  }
  if (post && strcmp(url, "/v2/payments/captures") == 0) {
    q->legacy = true;
    return http_operation(c, q, PAYPAL, exec_sale, NULL);
  }
  if (post && strcmp(url, "/v2/checkout/orders") == 0)
    return http_operation(c, q, PAYPAL, exec_authorize, NULL);
  if (get && strcmp(url, "/v2/_lookup") == 0) return http_lookup(c, PAYPAL, http_arg(c, "request_id"));
  if (get && strcmp(url, "/v2/_search") == 0) return search_handle(c, PAYPAL);
  static const struct {
    const char *prefix, *suffix;
    sim_exec exec;
  } ops[] = {{"/v2/payments/authorizations/", "/capture", exec_capture},
             {"/v2/payments/authorizations/", "/void", exec_void},
             {"/v2/payments/captures/", "/refund", exec_refund}};
  for (size_t i = 0; post && i < sizeof ops / sizeof ops[0]; i++) {
    char *id = path_id(url, ops[i].prefix, ops[i].suffix);
    if (!id) continue;
    enum MHD_Result r = http_operation(c, q, PAYPAL, ops[i].exec, id);
    g_free(id);
    return r;
  }
  static const struct {
    const char *prefix, *kind;
  } gets[] = {{"/v2/checkout/orders/", "orders"},
              {"/v2/payments/authorizations/", "authorizations"},
              {"/v2/payments/captures/", "captures"},
              {"/v2/payments/refunds/", "refunds"}};
  for (size_t i = 0; get && i < sizeof gets / sizeof gets[0]; i++) {
    char *id = path_id(url, gets[i].prefix, "");
    if (!id) continue;
    enum MHD_Result r = get_object(c, gets[i].kind, id);
    g_free(id);
    return r;
  }
  *handled = false;
  return MHD_NO;
}
