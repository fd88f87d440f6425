/* charge_lookup: see charge_lookup.h. */
#include "charge_lookup.h"

#include <stdio.h>
#include <string.h>

#include <jansson.h>

void charge_lookup_path(bool paypal, const char *key, char *out, size_t len) {
  /* Keys are ours (paystream:<uuid>:<name>, op_<uuid>): no character needs escaping. */
  snprintf(out, len, paypal ? "/v2/_lookup?request_id=%s" : "/v1/_lookup?idempotency_key=%s", key);
}

/* Whether a 404 body carries the processor's code (Stripe error.code,
 * PayPal details[].issue), not a proxy's 404. */
static bool body_says(bool paypal, const char *body, size_t len, const char *stripe_code,
                      const char *paypal_issue) {
  json_error_t je;
  json_t *root = body ? json_loadb(body, len, 0, &je) : NULL;
  bool unknown = false;
  if (root && !paypal) {
    const char *code = json_string_value(json_object_get(json_object_get(root, "error"), "code"));
    unknown = code && strcmp(code, stripe_code) == 0;
  } else if (root) {
    json_t *d = json_object_get(root, "details");
    size_t i;
    json_t *v;
    json_array_foreach(d, i, v) {
      const char *issue = json_string_value(json_object_get(v, "issue"));
      if (issue && strcmp(issue, paypal_issue) == 0) unknown = true;
    }
  }
  json_decref(root);
  return unknown;
}

static bool query_refused(long http_status) {
  /* The query's own refusals and "not yet" say nothing of the key's answer;
   * a stored answer is never one of these (nothing is stored before acting). */
  if (http_status <= 0 || http_status >= 500 || http_status == 401 || http_status == 403 ||
      http_status == 405 || http_status == 408 || http_status == 409 || http_status == 429)
    return true;
  return false;
}

lookup_said charge_lookup_classify(bool paypal, long http_status, const char *body, size_t len) {
  if (http_status == 404) {
    if (body_says(paypal, body, len, "idempotency_key_unknown", "REQUEST_ID_UNKNOWN"))
      return LOOKUP_UNKNOWN;
    /* The key's stored answer was the processor's "no such object" (the
     * operation's target): that is an answer. Any other 404 is a proxy's. */
    return body_says(paypal, body, len, "resource_missing", "INVALID_RESOURCE_ID") ? LOOKUP_FOUND
                                                                                  : LOOKUP_AGAIN;
  }
  return query_refused(http_status) ? LOOKUP_AGAIN : LOOKUP_FOUND;
}

void charge_search_path(bool paypal, search_ref what, const char *id, char *out, size_t len) {
  /* Ids are ours (uuids): no character needs escaping. */
  if (paypal)
    snprintf(out, len, "/v2/_search?%s=%s", what == SEARCH_REFUND ? "invoice_id" : "custom_id", id);
  else
    snprintf(out, len, "/v1/_search?metadata%%5B%s%%5D=%s",
             what == SEARCH_REFUND ? "refund_id" : "payment_id", id);
}

lookup_said charge_search_classify(bool paypal, long http_status, const char *body, size_t len) {
  if (http_status == 404)
    return body_says(paypal, body, len, "search_no_match", "NO_MATCH") ? LOOKUP_UNKNOWN
                                                                        : LOOKUP_AGAIN;
  return query_refused(http_status) ? LOOKUP_AGAIN : LOOKUP_FOUND;
}
