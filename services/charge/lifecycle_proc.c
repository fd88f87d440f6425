/* lifecycle_proc: see lifecycle_proc.h. */
#include "lifecycle_proc.h"

#include <curl/curl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "money.h"
#include "paypal.h"
#include "safe_text.h"

static const char *jstr(json_t *o, const char *k) {
  json_t *v = o ? json_object_get(o, k) : NULL;
  return json_is_string(v) ? json_string_value(v) : NULL;
}

/* Form value, percent-encoded. */
static char *form_esc(const char *s) {
  char *e = curl_easy_escape(NULL, s ? s : "", 0);
  char *out = e ? strdup(e) : NULL;
  curl_free(e);
  if (!out) abort();
  return out;
}

static char *lower3(const char *cur, char out[4]) {
  for (int i = 0; i < 3; i++) out[i] = (char)(cur[i] >= 'A' && cur[i] <= 'Z' ? cur[i] + 32 : cur[i]);
  out[3] = '\0';
  return out;
}

int lc_authorize_request(bool paypal, int64_t amount_minor, const char *currency,
                         const char *payment_method, const char *payment_id, lc_request *rq) {
  memset(rq, 0, sizeof *rq);
  if (!currency || strlen(currency) != 3 || amount_minor <= 0) return -1;
  if (paypal) {
    char value[32];
    if (paypal_format_amount(amount_minor, currency, value, sizeof value)) return -1;
    json_t *j = json_pack("{s:s,s:[{s:s,s:{s:s,s:s}}],s:s}", "intent", "AUTHORIZE",
                          "purchase_units", "custom_id", payment_id, "amount", "currency_code",
                          currency, "value", value, "payment_source", payment_method);
    rq->body = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    snprintf(rq->path, sizeof rq->path, "/v2/checkout/orders");
    rq->json = true;
  } else {
    char cur[4], *pm = form_esc(payment_method), *pid = form_esc(payment_id);
    if (asprintf(&rq->body,
                 "amount=%lld&currency=%s&capture_method=manual&confirm=true&payment_method=%s"
                 "&metadata%%5Bpayment_id%%5D=%s",
                 (long long)amount_minor, lower3(currency, cur), pm, pid) < 0)
      rq->body = NULL;
    free(pm);
    free(pid);
    snprintf(rq->path, sizeof rq->path, "/v1/payment_intents");
  }
  return rq->body ? 0 : -1;
}

/* What every flavour answers the same way: not now, refused, ambiguous. */
static void map_other(long http_status, bool readable, charge_answer *a) {
  if (http_status == 429 || http_status == 409) {
    a->kind = CHARGE_RETRYABLE;
    charge_answer_error(a, "processor answered %ld", http_status);
  } else if (http_status >= 400 && http_status < 500) {
    a->kind = CHARGE_REJECTED;
    charge_answer_error(a, "processor refused the request (%ld)", http_status);
  } else {
    a->kind = CHARGE_UNKNOWN;
    charge_answer_error(a, "processor answered %ld%s", http_status,
                        readable ? "" : " with an unreadable body");
  }
}

/* 404 resource_missing / INVALID_RESOURCE_ID: the object the operation acts
 * on does not exist at the processor. Refused, with the processor's code;
 * charge_ops.c decides whether that ends the operation (no earlier send may
 * have arrived) or is held as ambiguous. */
static void missing(charge_answer *a, const char *code) {
  a->kind = CHARGE_REJECTED;
  a->resource_missing = true;
  charge_answer_text(a->error_code, sizeof a->error_code, code);
  charge_answer_error(a, "processor: no such object to act on (404 %s)", code);
}

static void declined(charge_answer *a, const char *code, const char *decline) {
  a->kind = CHARGE_DECLINED;
  charge_answer_text(a->error_code, sizeof a->error_code, code ? code : "declined");
  charge_answer_text(a->decline_code, sizeof a->decline_code, decline ? decline : "");
}

static json_t *load(const char *body, size_t len, char **clean) {
  *clean = body ? safe_text_dup(body, len) : NULL;
  return *clean ? json_loadb(*clean, strlen(*clean), 0, NULL) : NULL;
}

/* PayPal's first detail issue (INSTRUMENT_DECLINED, MAX_CAPTURE_AMOUNT_EXCEEDED, ...). */
static const char *paypal_issue(json_t *root) {
  json_t *d = json_array_get(json_object_get(root, "details"), 0);
  return jstr(d, "issue");
}

void lc_map_authorize(bool paypal, long http_status, const char *body, size_t len,
                      charge_answer *a) {
  memset(a, 0, sizeof *a);
  char *clean;
  json_t *root = load(body, len, &clean);
  if (!paypal && http_status == 200 && root && !json_object_get(root, "error")) {
    const char *id = jstr(root, "id"), *status = jstr(root, "status");
    if (id && status && strcmp(status, "requires_capture") == 0) {
      a->kind = CHARGE_SUCCEEDED;
      charge_answer_id(a, id);
    } else {
      a->kind = CHARGE_UNKNOWN;
      charge_answer_error(a, "200 without an authorized payment intent");
    }
  } else if (!paypal && http_status == 402 && root) {
    json_t *e = json_object_get(root, "error");
    const char *dc = jstr(e, "decline_code"), *code = jstr(e, "code");
    declined(a, code ? code : "card_declined", dc ? dc : code ? code : "generic_decline");
  } else if (paypal && (http_status == 200 || http_status == 201) && root) {
    json_t *pu = json_array_get(json_object_get(root, "purchase_units"), 0);
    json_t *au = json_array_get(
        json_object_get(json_object_get(pu, "payments"), "authorizations"), 0);
    const char *id = jstr(au, "id"), *status = jstr(au, "status");
    if (id && status && strcmp(status, "CREATED") == 0) {
      a->kind = CHARGE_SUCCEEDED;
      charge_answer_id(a, id);
    } else {
      a->kind = CHARGE_UNKNOWN;
      charge_answer_error(a, "%ld without a created authorization", http_status);
    }
  } else if (paypal && http_status == 422 && root && paypal_issue(root)) {
    declined(a, "card_declined", paypal_issue(root));
  } else {
    map_other(http_status, root != NULL, a);
  }
  if (root) json_decref(root);
  free(clean);
}

int lc_operation_request(bool paypal, ps_kind kind, const char *target, int64_t amount_minor,
                         const char *currency, bool final_capture, const char *payment_id,
                         const char *operation_id, lc_request *rq) {
  memset(rq, 0, sizeof *rq);
  if (!target || !*target || strchr(target, '/') || strchr(target, '?')) return -1;
  if (kind != KIND_VOID && (amount_minor <= 0 || !currency || strlen(currency) != 3)) return -1;
  char *t = form_esc(target);
  int rc = 0;
  if (paypal) {
    char value[32];
    json_t *j = NULL;
    rq->json = true;
    if (kind == KIND_CAPTURE) {
      if (paypal_format_amount(amount_minor, currency, value, sizeof value)) rc = -1;
      else j = json_pack("{s:{s:s,s:s},s:b}", "amount", "currency_code", currency, "value",
                         value, "final_capture", final_capture);
      snprintf(rq->path, sizeof rq->path, "/v2/payments/authorizations/%s/capture", t);
    } else if (kind == KIND_VOID) {
      j = json_object();
      snprintf(rq->path, sizeof rq->path, "/v2/payments/authorizations/%s/void", t);
    } else if (kind == KIND_REFUND) {
      if (paypal_format_amount(amount_minor, currency, value, sizeof value)) rc = -1;
      else j = json_pack("{s:{s:s,s:s},s:s,s:s}", "amount", "currency_code", currency, "value",
                         value, "custom_id", payment_id, "invoice_id", operation_id);
      snprintf(rq->path, sizeof rq->path, "/v2/payments/captures/%s/refund", t);
    } else {
      rc = -1;
    }
    rq->body = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
  } else {
    char *pid = form_esc(payment_id), *oid = form_esc(operation_id);
    int n = -1;
    if (kind == KIND_CAPTURE) {
      n = asprintf(&rq->body, "amount_to_capture=%lld%s", (long long)amount_minor,
                   final_capture ? "" : "&final_capture=false");
      snprintf(rq->path, sizeof rq->path, "/v1/payment_intents/%s/capture", t);
    } else if (kind == KIND_VOID) {
      n = asprintf(&rq->body, "cancellation_reason=requested_by_customer");
      snprintf(rq->path, sizeof rq->path, "/v1/payment_intents/%s/cancel", t);
    } else if (kind == KIND_REFUND) {
      n = asprintf(&rq->body,
                   "%s=%s&amount=%lld&metadata%%5Bpayment_id%%5D=%s&metadata%%5Brefund_id%%5D=%s",
                   strncmp(target, "pi_", 3) == 0 ? "payment_intent" : "charge", t,
                   (long long)amount_minor, pid, oid);
      snprintf(rq->path, sizeof rq->path, "/v1/refunds");
    }
    if (n < 0) rq->body = NULL, rc = -1;
    free(pid);
    free(oid);
  }
  free(t);
  if (rc == 0 && !rq->body) rc = -1;
  if (rc) {
    free(rq->body);
    rq->body = NULL;
  }
  return rc;
}

/* PayPal's decimal amount {"currency_code","value"} in minor units into
 * *out; -1 when absent or not a plain decimal of currency. */
static int paypal_minor(json_t *amount, const char *currency, int64_t *out) {
  const char *v = jstr(amount, "value");
  int exp = money_currency_exponent(currency);
  if (!v || exp < 0 || *v < '0' || *v > '9') return -1;
  int64_t units = 0, frac = 0;
  int digits = 0;
  const char *p = v;
  for (; *p >= '0' && *p <= '9' && units < INT64_MAX / 100000; p++) units = units * 10 + (*p - '0');
  if (*p == '.')
    for (p++; *p >= '0' && *p <= '9' && digits < exp; p++, digits++) frac = frac * 10 + (*p - '0');
  if (*p) return -1;
  for (; digits < exp; digits++) frac *= 10;
  int64_t scale = 1;
  for (int i = 0; i < exp; i++) scale *= 10;
  *out = units * scale + frac;
  return 0;
}

/* PayPal's decimal fee in minor units; 0 when absent. */
static int64_t paypal_fee(json_t *root, const char *currency) {
  json_t *fee = json_object_get(json_object_get(root, "seller_receivable_breakdown"), "paypal_fee");
  int64_t v = 0;
  return paypal_minor(fee, currency, &v) == 0 ? v : 0;
}

/* A refund the processor holds pending (no verdict): its id is kept, to
 * ask the processor for that refund's current state (refund_status.h). */
static void pending_ref(charge_answer *a, ps_kind kind, const char *id, const char *status,
                        const char *pending, const char *pending2) {
  if (kind != KIND_REFUND || !id || !*id || !status) return;
  if (strcmp(status, pending) != 0 && strcmp(status, pending2) != 0) return;
  a->pending_ref = true;
  charge_answer_id(a, id);
}

void lc_map_operation(bool paypal, ps_kind kind, long http_status, const char *body, size_t len,
                      const char *currency, const char *target, charge_answer *a) {
  memset(a, 0, sizeof *a);
  char *clean;
  json_t *root = load(body, len, &clean);
  if (!paypal) {
    json_t *err = json_object_get(root, "error");
    const char *status = jstr(root, "status");
    if (http_status == 200 && root && !err) {
      const char *id = kind == KIND_CAPTURE ? jstr(root, "capture_id") : jstr(root, "id");
      bool ok = kind == KIND_CAPTURE ? id != NULL
                : kind == KIND_VOID  ? status && strcmp(status, "canceled") == 0
                                     : status && strcmp(status, "succeeded") == 0;
      json_t *fee = json_object_get(root, "fee");
      if (ok && id && (!fee || json_is_integer(fee)) && (!fee || json_integer_value(fee) >= 0)) {
        a->kind = CHARGE_SUCCEEDED;
        a->fee_minor = kind == KIND_CAPTURE && fee ? (int64_t)json_integer_value(fee) : 0;
        charge_answer_id(a, id);
      } else if (kind == KIND_REFUND && status &&
                 (strcmp(status, "failed") == 0 || strcmp(status, "canceled") == 0)) {
        const char *why = jstr(root, "failure_reason");
        declined(a, "refund_failed", why ? why : status);
        if (id) charge_answer_id(a, id);
      } else {
        a->kind = CHARGE_UNKNOWN;
        charge_answer_error(a, "200 without a completed %s", op_kind_name(kind));
        pending_ref(a, kind, id, status, "pending", "requires_action");
      }
    } else if ((http_status == 400 || http_status == 402) && err && jstr(err, "code") &&
               strcmp(jstr(err, "code"), "idempotency_error") != 0) {
      declined(a, jstr(err, "code"), jstr(err, "decline_code"));
    } else if (http_status == 404 && jstr(err, "code") &&
               strcmp(jstr(err, "code"), "resource_missing") == 0) {
      missing(a, "resource_missing");
    } else {
      map_other(http_status, root != NULL, a);
    }
  } else {
    const char *status = jstr(root, "status"), *id = jstr(root, "id");
    const char *want = kind == KIND_VOID ? "VOIDED" : "COMPLETED";
    if ((http_status == 200 || http_status == 201) && status && id && strcmp(status, want) == 0) {
      a->kind = CHARGE_SUCCEEDED;
      a->fee_minor = kind == KIND_CAPTURE ? paypal_fee(root, currency) : 0;
      charge_answer_id(a, id);
    } else if (http_status == 204 && kind == KIND_VOID && target && *target) {
      a->kind = CHARGE_SUCCEEDED; /* PayPal's void without Prefer: no body */
      charge_answer_id(a, target);
    } else if (http_status == 422 && root && paypal_issue(root) &&
               strcmp(paypal_issue(root), "DUPLICATE_REQUEST_ID") != 0) {
      declined(a, paypal_issue(root), paypal_issue(root));
    } else if ((http_status == 200 || http_status == 201) && kind == KIND_REFUND && id &&
               status && (strcmp(status, "FAILED") == 0 || strcmp(status, "CANCELLED") == 0)) {
      const char *why = jstr(json_object_get(root, "status_details"), "reason");
      declined(a, "refund_failed", why ? why : status);
      charge_answer_id(a, id);
    } else if (http_status == 200 || http_status == 201) {
      a->kind = CHARGE_UNKNOWN;
      charge_answer_error(a, "%ld without a completed %s", http_status, op_kind_name(kind));
      pending_ref(a, kind, id, status, "PENDING", "PENDING");
    } else if (http_status == 404 && root && paypal_issue(root) &&
               strcmp(paypal_issue(root), "INVALID_RESOURCE_ID") == 0) {
      missing(a, "INVALID_RESOURCE_ID");
    } else {
      map_other(http_status, root != NULL, a);
    }
  }
  if (root) json_decref(root);
  free(clean);
}

/* Why a by-id answer does not name the refund asked for (NULL: it does).
 * refund_id NULL: the body's own id (a pending reply's). */
static const char *not_ours(bool paypal, json_t *root, const lc_refund_ask *ask,
                            const char *refund_id) {
  const char *id = jstr(root, "id");
  if (!id || !refund_id || strcmp(id, refund_id) != 0) return "another refund's id";
  int64_t amount = -1;
  const char *cur = NULL, *ours = NULL, *pay = NULL;
  json_t *am = json_object_get(root, "amount");
  if (paypal) {
    cur = jstr(am, "currency_code");
    if (paypal_minor(am, ask->currency, &amount)) amount = -1;
    ours = jstr(root, "invoice_id");
    pay = jstr(root, "custom_id");
  } else {
    if (json_is_integer(am)) amount = (int64_t)json_integer_value(am);
    cur = jstr(root, "currency");
    ours = jstr(json_object_get(root, "metadata"), "refund_id");
    pay = jstr(json_object_get(root, "metadata"), "payment_id");
  }
  if (amount != ask->amount_minor) return "another amount";
  if (cur && strcasecmp(cur, ask->currency) != 0) return "another currency";
  if (!ask->operation_id || !*ask->operation_id || !ours || strcmp(ours, ask->operation_id) != 0)
    return "not naming our operation";
  if (pay && *pay && ask->payment_id && strcmp(pay, ask->payment_id) != 0)
    return "another payment's refund";
  return NULL;
}

/* Why body does not name the refund (NULL: it does). */
static const char *body_not_ours(bool paypal, const char *body, size_t len,
                                 const lc_refund_ask *ask, const char *refund_id) {
  char *clean;
  json_t *root = load(body, len, &clean);
  const char *why = root ? not_ours(paypal, root, ask, refund_id) : "an unreadable body";
  if (root) json_decref(root);
  free(clean);
  return why;
}

void lc_check_pending(bool paypal, const char *body, size_t len, const lc_refund_ask *ask,
                      charge_answer *a) {
  a->ref_named = a->pending_ref && a->charge_id &&
                 !body_not_ours(paypal, body, len, ask, a->charge_id);
}

/* An answer to a status query that decides nothing: no kind, no id, no
 * codes; query_answered when the processor itself gave it (a 2xx not
 * ours, a 4xx but 408/429), which is no breaker failure. */
static void no_verdict(charge_answer *a, long http_status) {
  free(a->charge_id);
  a->charge_id = NULL;
  a->kind = CHARGE_UNKNOWN;
  a->fee_minor = 0;
  a->pending_ref = a->resource_missing = false;
  a->error_code[0] = a->decline_code[0] = '\0';
  a->query_answered = http_status >= 200 && http_status < 500 && http_status != 408 &&
                      http_status != 429;
}

void lc_check_search(bool paypal, long http_status, const char *body, size_t len,
                     const lc_refund_ask *ask, charge_answer *a) {
  if (a->kind != CHARGE_SUCCEEDED && a->kind != CHARGE_DECLINED) return;
  const char *why = http_status < 200 || http_status > 299
                        ? "not a 2xx"
                        : body_not_ours(paypal, body, len, ask, a->charge_id);
  if (!why) return;
  no_verdict(a, http_status);
  charge_answer_error(a, "search for %s: HTTP %ld, %s: no verdict", ask->operation_id, http_status,
                      why);
}

void lc_map_refund_by_id(bool paypal, long http_status, const char *body, size_t len,
                         const lc_refund_ask *ask, charge_answer *a) {
  lc_map_operation(paypal, KIND_REFUND, http_status, body, len, ask->currency, NULL, a);
  const char *why = http_status < 200 || http_status > 299
                        ? "not a 2xx"
                        : body_not_ours(paypal, body, len, ask, ask->refund_id);
  if (!why) {
    a->ref_named = a->pending_ref;
    return;
  }
  no_verdict(a, http_status);
  charge_answer_error(a, "refund %s by id: HTTP %ld, %s: no verdict", ask->refund_id,
                      http_status, why);
}
