/* procsim_stripe.c: the Stripe-like flavour. Form-encoded requests with an
 * Idempotency-Key header, integer minor units, 402 + error object on a
 * decline:
 *   POST /v1/charges                         sale (unchanged since the start)
 *   POST /v1/payment_intents                 authorize (capture_method=manual, confirm=true)
 *   POST /v1/payment_intents/{pi}/capture    amount_to_capture, final_capture
 *   POST /v1/payment_intents/{pi}/cancel     void what is still capturable
 *   POST /v1/refunds                         payment_intent= or charge=, amount
 *   GET  /v1/charges[/{id}], /v1/payment_intents/{id}, /v1/refunds/{id}
 *   GET  /v1/_lookup?idempotency_key=K       the answer K got
 * Each operation body below runs once per executed idempotency key, under
 * the store lock, after procsim_http.c's pipeline decided to act. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "procsim.h"

static char *dump(json_t *j) {
  char *s = json_dumps(j, JSON_COMPACT);
  json_decref(j);
  return s;
}

/* A positive integer amount; dflt when absent; -1 when malformed. */
static long long form_amount(const char *s, long long dflt) {
  if (!s) return dflt;
  char *end = NULL;
  long long v = strtoll(s, &end, 10);
  return *s && !*end && v > 0 ? v : -1;
}

static json_t *str_or_null(const char *s) { return s && *s ? json_string(s) : json_null(); }

static char *lower(const char *s, char *out, size_t len) {
  size_t i = 0;
  for (; s[i] && i + 1 < len; i++) out[i] = (char)g_ascii_tolower(s[i]);
  out[i] = '\0';
  return out;
}

static const char *intent_status(const sim_payment *p) {
  switch (p->st) {
  case PS_FAILED: return "requires_payment_method";
  case PS_AUTHORIZED: return "requires_capture";
  case PS_CAPTURED: return "succeeded";
  default: return "canceled";
  }
}

static json_t *intent_json(const sim_payment *p) {
  char cur[8];
  json_t *caps = json_array();
  for (guint i = 0; i < p->captures->len; i++) {
    const sim_capture *c = g_ptr_array_index(p->captures, i);
    json_array_append_new(caps, json_pack("{s:s,s:I,s:I,s:I}", "id", c->id, "amount",
                                          (json_int_t)c->amount, "fee", (json_int_t)c->fee,
                                          "amount_refunded", (json_int_t)c->refunded));
  }
  const sim_capture *last =
      p->captures->len ? g_ptr_array_index(p->captures, p->captures->len - 1) : NULL;
  json_t *j = json_pack(
      "{s:s,s:s,s:s,s:I,s:I,s:I,s:I,s:s,s:s,s:s,s:o,s:o,s:{s:s},s:I,s:o}", "id", p->id,
      "object", "payment_intent", "status", intent_status(p), "amount", (json_int_t)p->amount,
      "amount_capturable", (json_int_t)p->capturable, "amount_received",
      (json_int_t)p->captured, "amount_refunded", (json_int_t)p->refunded, "currency",
      lower(p->currency, cur, sizeof cur), "capture_method", "manual", "payment_method", p->pm,
      "latest_charge", str_or_null(last ? last->id : NULL), "cancellation_reason",
      str_or_null(p->st == PS_VOIDED || p->st == PS_EXPIRED ? p->cancel_reason : NULL),
      "metadata", "payment_id", p->payment_id, "created",
      (json_int_t)(p->at / G_USEC_PER_SEC), "captures", caps);
  if (p->expires_at)
    json_object_set_new(j, "expires_at", json_integer(p->expires_at / G_USEC_PER_SEC));
  return j;
}

/* A sale, or one capture of an intent, as a charge object. */
static json_t *charge_json(const sim_payment *p, const sim_capture *c) {
  char cur[8];
  bool disputed = p->disputes->len > 0;
  json_t *j = json_pack(
      "{s:s,s:s,s:I,s:I,s:I,s:s,s:s,s:b,s:b,s:b,s:b,s:s,s:I,s:o,s:{s:s},s:I}", "id",
      c ? c->id : p->id, "object", "charge", "amount", (json_int_t)(c ? c->amount : p->amount),
      "amount_captured", (json_int_t)(c ? c->amount : 0), "amount_refunded",
      (json_int_t)(c ? c->refunded : 0), "currency", lower(p->currency, cur, sizeof cur),
      "status", c ? "succeeded" : "failed", "paid", c != NULL, "captured", c != NULL,
      "refunded", c && c->refunded == c->amount, "disputed", disputed, "payment_method", p->pm,
      "fee", (json_int_t)(c ? c->fee : 0), "payment_intent", str_or_null(p->sale ? NULL : p->id),
      "metadata", "payment_id", p->payment_id, "created",
      (json_int_t)((c ? c->at : p->at) / G_USEC_PER_SEC));
  if (!c && p->decline_code) json_object_set_new(j, "failure_code", json_string(p->decline_code));
  return j;
}

static json_t *refund_json(const sim_refund *r) {
  char cur[8];
  const char *status = r->failed ? "failed" : r->pending ? "pending" : "succeeded";
  json_t *j = json_pack("{s:s,s:s,s:s,s:I,s:o,s:o,s:s,s:{s:s,s:s},s:I}", "id", r->id, "object",
                        "refund", "status", status, "amount",
                        (json_int_t)r->amount, "charge", str_or_null(r->first ? r->first->id : NULL),
                        "payment_intent", str_or_null(r->p->sale ? NULL : r->p->id), "currency",
                        lower(r->p->currency, cur, sizeof cur), "metadata", "payment_id",
                        r->p->payment_id, "refund_id", r->refund_ref ? r->refund_ref : "",
                        "created", (json_int_t)(r->at / G_USEC_PER_SEC));
  if (r->failed) json_object_set_new(j, "failure_reason", json_string(r->failure_reason));
  return j;
}

static json_t *dispute_json(const sim_dispute *d) {
  char cur[8];
  return json_pack("{s:s,s:s,s:s,s:o,s:I,s:I,s:I,s:s,s:s,s:s,s:{s:s},s:I}", "id", d->id, "object",
                   "dispute", "charge", d->c->id, "payment_intent",
                   str_or_null(d->p->sale ? NULL : d->p->id), "amount", (json_int_t)d->amount,
                   "fee", (json_int_t)d->fee, "amount_withdrawn", (json_int_t)d->withdrawn,
                   "currency", lower(d->p->currency, cur, sizeof cur), "status", d->status,
                   "reason", "fraudulent", "metadata", "payment_id", d->p->payment_id,
                   "created", (json_int_t)(d->at / G_USEC_PER_SEC));
}

json_t *stripe_event_object(const char *kind, const void *obj) {
  if (strcmp(kind, "payment_intent") == 0) return intent_json(obj);
  if (strcmp(kind, "refund") == 0) return refund_json(obj);
  if (strcmp(kind, "dispute") == 0) return dispute_json(obj);
  if (strcmp(kind, "charge_failed") == 0) return charge_json(obj, NULL);
  const sim_capture *c = obj;
  return charge_json(c->p, c);
}

static char *err(unsigned *status, unsigned st, const char *code, const char *msg) {
  *status = st;
  return http_error(STRIPE, st, code, msg);
}

/* The sale: charges (or declines) for real. Shared with the PayPal-like
 * sale, which rewords the answer. */
unsigned stripe_do_charge(GHashTable *form, flavour fl, const char *key, char **body) {
  const char *amount_s = g_hash_table_lookup(form, "amount");
  const char *currency = g_hash_table_lookup(form, "currency");
  const char *pm = g_hash_table_lookup(form, "payment_method");
  const char *pid = g_hash_table_lookup(form, "metadata[payment_id]");
  long long amount = amount_s ? form_amount(amount_s, -1) : -1;
  if (amount <= 0 || !currency || !pm) {
    *body = stripe_error_body("invalid_request_error", "parameter_missing", NULL,
                              "amount, currency and payment_method are required");
    return 400;
  }
  const decline_def *d = fault_decline(pm);
  store_lock();
  sim_payment *p = store_payment_new(fl, true, pid, currency, amount, pm);
  sim_capture *c = NULL;
  if (d) {
    p->st = PS_FAILED;
    p->decline_code = g_strdup(d->decline);
  } else {
    p->st = PS_CAPTURED;
    c = store_capture_new(p, amount, true);
  }
  json_t *ch = json_pack("{s:s,s:s,s:I,s:s,s:s,s:b,s:s,s:I,s:s,s:{s:s}}", "id", p->id, "object",
                         "charge", "amount", (json_int_t)amount, "currency", currency, "status",
                         d ? "failed" : "succeeded", "paid", !d, "payment_method", pm, "fee",
                         (json_int_t)(c ? c->fee : 0), "idempotency_key", key ? key : "",
                         "metadata", "payment_id", pid ? pid : "");
  if (d) json_object_set_new(ch, "failure_code", json_string(d->decline));
  store_list_charge(json_incref(ch));
  store_log("sale", p, p->id, amount, c ? c->fee : 0, d ? "failed" : "succeeded", key);
  if (c) webhook_event("sale", p, c);
  else webhook_event("sale_failed", p, p);
  store_unlock();

  unsigned status = 200;
  if (d && d->raw) {
    *body = strdup(d->raw);
    status = 402;
  } else if (d) {
    *body = stripe_error_body("card_error", d->code, d->decline, "Your card was declined.");
    status = 402;
  } else {
    *body = json_dumps(ch, JSON_COMPACT);
  }
  json_decref(ch);
  return status;
}

static unsigned exec_sale(sim_req *q, char **body) {
  if (!q->form) q->form = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_free);
  return stripe_do_charge(q->form, STRIPE, q->key, body);
}

static unsigned exec_authorize(sim_req *q, char **body) {
  unsigned st = 200;
  long long amount = form_amount(req_form(q, "amount"), -1);
  const char *currency = req_form(q, "currency"), *pm = req_form(q, "payment_method");
  const char *method = req_form(q, "capture_method"), *confirm = req_form(q, "confirm");
  if (amount <= 0 || !currency || !pm)
    return *body = err(&st, 400, "parameter_missing",
                       "amount, currency and payment_method are required"),
           st;
  if (!method || strcmp(method, "manual") != 0 || !confirm || strcmp(confirm, "true") != 0)
    return *body = err(&st, 400, "parameter_invalid",
                       "procsim authorizes with capture_method=manual and confirm=true only"),
           st;
  const decline_def *d = fault_decline(pm);
  store_lock();
  sim_payment *p = store_payment_new(STRIPE, false, req_form(q, "metadata[payment_id]"),
                                     currency, amount, pm);
  if (d) {
    p->st = PS_FAILED;
    p->decline_code = g_strdup(d->decline);
    store_log("authorize", p, p->id, amount, 0, "failed", q->key);
    webhook_event("authorize_failed", p, p);
    json_t *e = json_pack("{s:s,s:s,s:s,s:s,s:o}", "type", "card_error", "code", d->code,
                          "decline_code", d->decline, "message", "Your card was declined.",
                          "payment_intent", intent_json(p));
    store_unlock();
    *body = d->raw ? strdup(d->raw) : dump(json_pack("{s:o}", "error", e));
    if (d->raw) json_decref(e);
    return 402;
  }
  p->st = PS_AUTHORIZED;
  p->capturable = amount;
  store_log("authorize", p, p->id, amount, 0, "succeeded", q->key);
  webhook_event("authorized", p, p);
  *body = dump(intent_json(p));
  store_unlock();
  return 200;
}

static unsigned exec_capture(sim_req *q, char **body) {
  unsigned st = 200;
  store_lock();
  sim_payment *p = store_payment(q->target);
  if (!p || p->fl != STRIPE || p->sale) {
    *body = err(&st, 404, "resource_missing", "No such payment_intent");
  } else if (p->st != PS_AUTHORIZED) {
    *body = err(&st, 400, "payment_intent_unexpected_state",
                "This PaymentIntent could not be captured because it has a status of "
                "succeeded or canceled.");
  } else {
    long long n = form_amount(req_form(q, "amount_to_capture"), p->capturable);
    const char *fin = req_form(q, "final_capture");
    bool final = !fin || strcmp(fin, "false") != 0;
    if (n <= 0) {
      *body = err(&st, 400, "parameter_invalid_integer", "amount_to_capture must be positive");
    } else if (n > p->capturable) {
      *body = err(&st, 400, "amount_too_large",
                  "amount_to_capture is greater than the amount capturable");
    } else {
      p->capturable -= n;
      sim_capture *c = store_capture_new(p, n, final);
      if (final || p->capturable == 0) store_release(p, PS_CAPTURED, NULL);
      store_log("capture", p, c->id, n, c->fee, "succeeded", q->key);
      webhook_event("captured", p, c);
      json_t *j = intent_json(p);
      json_object_set_new(j, "capture_id", json_string(c->id));
      json_object_set_new(j, "fee", json_integer(c->fee));
      json_object_set_new(j, "amount_captured_now", json_integer(n));
      *body = dump(j);
    }
  }
  store_unlock();
  return st;
}

static unsigned exec_cancel(sim_req *q, char **body) {
  unsigned st = 200;
  store_lock();
  sim_payment *p = store_payment(q->target);
  if (!p || p->fl != STRIPE || p->sale) {
    *body = err(&st, 404, "resource_missing", "No such payment_intent");
  } else if (p->st != PS_AUTHORIZED) {
    *body = err(&st, 400, "payment_intent_unexpected_state",
                "This PaymentIntent could not be canceled because it has a status of "
                "succeeded or canceled.");
  } else {
    int64_t left = p->capturable;
    const char *why = req_form(q, "cancellation_reason");
    store_release(p, PS_VOIDED, why ? why : "requested_by_customer");
    store_log("void", p, p->id, left, 0, "canceled", q->key);
    webhook_event("voided", p, p);
    *body = dump(intent_json(p));
  }
  store_unlock();
  return st;
}

static unsigned exec_refund(sim_req *q, char **body) {
  unsigned st = 200;
  const char *pi = req_form(q, "payment_intent"), *ch = req_form(q, "charge");
  store_lock();
  sim_payment *p = NULL;
  sim_capture *c = NULL;
  if (ch) {
    c = store_capture(ch);
    p = c ? c->p : store_payment(ch);
    if (p && (p->fl != STRIPE || (!c && !p->sale))) p = NULL;
  } else if (pi) {
    p = store_payment(pi);
    if (p && (p->fl != STRIPE || p->sale)) p = NULL;
  }
  int64_t left = !p ? 0 : c ? store_capture_refundable(c) : store_refundable(p);
  long long n = form_amount(req_form(q, "amount"), left);
  bool as_failed = false;
  if (!p) {
    *body = err(&st, 404, "resource_missing", "No such charge or payment_intent");
  } else if (n < 0 || (n == 0 && left == 0)) {
    bool all = p->captured > 0 && p->refunded >= p->captured;
    *body = n < 0 ? err(&st, 400, "parameter_invalid_integer", "amount must be positive")
                  : err(&st, 400, all ? "charge_already_refunded" : "amount_too_large",
                        "nothing left to refund");
  } else if (n > left) {
    bool all = p->captured > 0 && p->refunded >= p->captured;
    *body = err(&st, 400, all ? "charge_already_refunded" : "amount_too_large",
                "Refund amount is greater than the amount refundable.");
  } else if (fault_refund_declined(p->payment_id, &as_failed)) {
    sim_refund *r = store_refund_new(p, c, n, true, req_form(q, "metadata[refund_id]"));
    store_log("refund", p, r->id, n, 0, "failed", q->key);
    webhook_event("refund_failed", p, r);
    if (as_failed) {
      *body = dump(refund_json(r));
    } else {
      st = 402;
      json_t *e = json_pack("{s:s,s:s,s:s,s:s}", "type", "card_error", "code",
                            "insufficient_funds", "message",
                            "The refund could not be made: insufficient balance.", "refund",
                            r->id);
      *body = dump(json_pack("{s:o}", "error", e));
    }
  } else {
    sim_refund *r = store_refund_new(p, c, n, false, req_form(q, "metadata[refund_id]"));
    r->pending = fault_refund_pending(); /* its verdict later: refund_fail / refund_complete */
    store_log("refund", p, r->id, n, 0, r->pending ? "pending" : "succeeded", q->key);
    if (!r->pending) webhook_event("refunded", p, r);
    *body = dump(refund_json(r));
  }
  store_unlock();
  return st;
}

/* GET of an object by id (the resolver's status queries). */
static enum MHD_Result get_object(struct MHD_Connection *c, const char *kind, const char *id) {
  if (!fault_api_key_ok(MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization")))
    return http_reply(c, 401, "{\"error\":{\"type\":\"invalid_request_error\",\"code\":"
                              "\"api_key_invalid\",\"message\":\"Invalid API Key.\"}}");
  enum MHD_Result failed;
  if (http_query_fails(c, STRIPE, &failed)) return failed;
  json_t *j = NULL;
  store_lock();
  if (strcmp(kind, "charges") == 0) {
    sim_capture *k = store_capture(id);
    sim_payment *p = k ? k->p : store_payment(id);
    if (p && p->fl == STRIPE && (k || p->sale)) j = charge_json(p, k);
  } else if (strcmp(kind, "payment_intents") == 0) {
    sim_payment *p = store_payment(id);
    if (p && p->fl == STRIPE && !p->sale) j = intent_json(p);
  } else {
    sim_refund *r = store_refund(id);
    if (r && r->p->fl == STRIPE) j = refund_json(r);
  }
  store_unlock();
  if (!j) {
    char *b = http_error(STRIPE, 404, "resource_missing", "No such object");
    enum MHD_Result r = http_reply(c, 404, b);
    free(b);
    return r;
  }
  return http_reply_json(c, 200, j);
}

/* url == prefix + one path segment + suffix: that segment, or NULL. */
char *path_id(const char *url, const char *prefix, const char *suffix) {
  size_t pl = strlen(prefix), ul = strlen(url), sl = strlen(suffix);
  if (ul <= pl + sl || strncmp(url, prefix, pl) != 0 || strcmp(url + ul - sl, suffix) != 0)
    return NULL;
  char *id = g_strndup(url + pl, ul - pl - sl);
  if (strchr(id, '/')) {
    g_free(id);
    return NULL;
  }
  return id;
}

/* GET /v1/charges, paginated the Stripe way: limit (1..100; without it the
 * whole list, as the tests read it, or /_sim/config list_default_limit),
 * starting_after=<id>, has_more. */
static enum MHD_Result list_charges(struct MHD_Connection *c) {
  const char *lim = http_arg(c, "limit"), *after = http_arg(c, "starting_after");
  long limit = lim ? strtol(lim, NULL, 10) : settle_list_default_limit();
  bool more = false;
  json_t *data = NULL;
  if (!lim || (limit >= 1 && limit <= 100)) data = store_charge_page((size_t)limit, after, &more);
  if (!data) {
    bool bad_limit = lim && !(limit >= 1 && limit <= 100);
    char *b = http_error(STRIPE, 400, bad_limit ? "parameter_invalid_integer" : "resource_missing",
                         bad_limit ? "Invalid limit" : "No such object: starting_after");
    enum MHD_Result r = http_reply(c, 400, b);
    free(b);
    return r;
  }
  return http_reply_json(c, 200, json_pack("{s:s,s:s,s:o,s:b}", "object", "list", "url",
                                           "/v1/charges", "data", data, "has_more", more));
}

enum MHD_Result stripe_route(struct MHD_Connection *c, sim_req *q, const char *method,
                             const char *url, bool *handled) {
  *handled = true;
  bool post = strcmp(method, "POST") == 0, get = strcmp(method, "GET") == 0;
  if (strncmp(url, "/v1/", 4) != 0 || (!post && !get)) {
    *handled = false;
    return MHD_NO;
  }
  if (post && strcmp(url, "/v1/charges") == 0) return http_operation(c, q, STRIPE, exec_sale, NULL);
  if (get && strcmp(url, "/v1/charges") == 0) return list_charges(c);
  if (post && strcmp(url, "/v1/payment_intents") == 0)
    return http_operation(c, q, STRIPE, exec_authorize, NULL);
  if (post && strcmp(url, "/v1/refunds") == 0) return http_operation(c, q, STRIPE, exec_refund, NULL);
  if (get && strcmp(url, "/v1/_lookup") == 0)
    return http_lookup(c, STRIPE, http_arg(c, "idempotency_key"));
  if (get && strcmp(url, "/v1/_search") == 0) return search_handle(c, STRIPE);
  static const struct {
    const char *prefix, *suffix;
    sim_exec exec;
  } ops[] = {{"/v1/payment_intents/", "/capture", exec_capture},
             {"/v1/payment_intents/", "/cancel", exec_cancel}};
  for (size_t i = 0; post && i < sizeof ops / sizeof ops[0]; i++) {
    char *id = path_id(url, ops[i].prefix, ops[i].suffix);
    if (!id) continue;
    enum MHD_Result r = http_operation(c, q, STRIPE, ops[i].exec, id);
    g_free(id);
    return r;
  }
  static const char *kinds[] = {"charges", "payment_intents", "refunds"};
  for (size_t i = 0; get && i < 3; i++) {
    char prefix[40];
    snprintf(prefix, sizeof prefix, "/v1/%s/", kinds[i]);
    char *id = path_id(url, prefix, "");
    if (!id) continue;
    enum MHD_Result r = get_object(c, kinds[i], id);
    g_free(id);
    return r;
  }
  *handled = false;
  return MHD_NO;
}
