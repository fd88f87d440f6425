/* charge_lookup: see charge_lookup.h. */
#include "charge_lookup.h"

#include <stdio.h>
#include <string.h>

#include <jansson.h>

void charge_lookup_path(bool paypal, const char *key, char *out, size_t len) {
  /* Keys are ours (paystream:<uuid>:<name>, op_<uuid>): no character needs escaping. */
  snprintf(out, len, paypal ? "/v2/_lookup?request_id=%s" : "/v1/_lookup?idempotency_key=%s", key);
}

/* Whether a 404 body says the key is unknown (and not a proxy's 404). */
static bool key_unknown(bool paypal, const char *body, size_t len) {
  json_error_t je;
  json_t *root = body ? json_loadb(body, len, 0, &je) : NULL;
  bool unknown = false;
  if (root && !paypal) {
    const char *code = json_string_value(json_object_get(json_object_get(root, "error"), "code"));
    unknown = code && strcmp(code, "idempotency_key_unknown") == 0;
  } else if (root) {
    json_t *d = json_object_get(root, "details");
    size_t i;
    json_t *v;
    json_array_foreach(d, i, v) {
      const char *issue = json_string_value(json_object_get(v, "issue"));
      if (issue && strcmp(issue, "REQUEST_ID_UNKNOWN") == 0) unknown = true;
    }
  }
  json_decref(root);
  return unknown;
}

lookup_said charge_lookup_classify(bool paypal, long http_status, const char *body, size_t len) {
  if (http_status == 404) return key_unknown(paypal, body, len) ? LOOKUP_UNKNOWN : LOOKUP_AGAIN;
  /* The query's own refusals and "not yet" say nothing of the key's answer;
   * a stored answer is never one of these (nothing is stored before acting). */
  if (http_status <= 0 || http_status >= 500 || http_status == 401 || http_status == 403 ||
      http_status == 405 || http_status == 408 || http_status == 409 || http_status == 429)
    return LOOKUP_AGAIN;
  return LOOKUP_FOUND;
}
