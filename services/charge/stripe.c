/* stripe: request body and response mapping for the Stripe-like flavour. */
#include "stripe.h"

#include <ctype.h>
#include <curl/curl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "safe_text.h"

char *stripe_build_body(int64_t amount_minor, const char *currency, const char *payment_method,
                        const char *payment_id) {
  char cur[4] = {0};
  for (int i = 0; i < 3 && currency[i]; i++) cur[i] = (char)tolower((unsigned char)currency[i]);
  char *pm = curl_easy_escape(NULL, payment_method, 0);
  char *pid = curl_easy_escape(NULL, payment_id, 0);
  size_t cap = strlen(pm) + strlen(pid) + 128;
  char *body = malloc(cap);
  if (body)
    snprintf(body, cap, "amount=%lld&currency=%s&payment_method=%s&confirm=true"
             "&metadata%%5Bpayment_id%%5D=%s",
             (long long)amount_minor, cur, pm, pid);
  curl_free(pm);
  curl_free(pid);
  return body;
}

static const char *jstr(json_t *o, const char *k) {
  json_t *v = json_object_get(o, k);
  return json_is_string(v) ? json_string_value(v) : NULL;
}

void stripe_map_response(long http_status, const char *body, size_t len, charge_answer *a) {
  memset(a, 0, sizeof *a);
  json_error_t jerr;
  /* Bytes that are not UTF-8 become U+FFFD: jansson refuses them, and a
   * decline is a decline whatever its text. */
  char *clean = body ? safe_text_dup(body, len) : NULL;
  json_t *root = clean ? json_loadb(clean, strlen(clean), 0, &jerr) : NULL;
  json_t *error = root ? json_object_get(root, "error") : NULL;

  if (http_status == 200 && root && !error) {
    const char *id = jstr(root, "id"), *status = jstr(root, "status");
    json_t *fee = json_object_get(root, "fee");
    if (id && status && strcmp(status, "succeeded") == 0 && (!fee || json_is_integer(fee))) {
      a->fee_minor = fee ? (int64_t)json_integer_value(fee) : 0;
      a->kind = a->fee_minor < 0 ? CHARGE_UNKNOWN : CHARGE_SUCCEEDED;
      if (a->kind == CHARGE_SUCCEEDED) charge_answer_id(a, id);
    } else {
      a->kind = CHARGE_UNKNOWN;
      charge_answer_error(a, "200 without a succeeded charge");
    }
  } else if (http_status == 402 && error) {
    const char *dc = jstr(error, "decline_code"), *code = jstr(error, "code");
    a->kind = CHARGE_DECLINED;
    const char *msg = jstr(error, "message");
    charge_answer_text(a->error_code, sizeof a->error_code, code ? code : "card_declined");
    charge_answer_text(a->decline_code, sizeof a->decline_code,
                       dc ? dc : code ? code : "generic_decline");
    if (msg) charge_answer_error(a, "%s", msg);
  } else if (http_status == 429 || http_status == 409) {
    a->kind = CHARGE_RETRYABLE;
    charge_answer_error(a, "processor answered %ld", http_status);
  } else if (http_status >= 400 && http_status < 500) {
    const char *msg = error ? jstr(error, "message") : NULL;
    a->kind = CHARGE_REJECTED;
    charge_answer_error(a, "processor refused the request (%ld): %s", http_status,
             msg ? msg : "no message");
  } else {
    a->kind = CHARGE_UNKNOWN;
    charge_answer_error(a, "processor answered %ld%s", http_status,
             root ? "" : " with an unreadable body");
  }
  if (root) json_decref(root);
  free(clean);
}
