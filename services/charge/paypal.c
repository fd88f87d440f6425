/* paypal: request body and response mapping for the PayPal-like flavour. */
#include "paypal.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "money.h"
#include "safe_text.h"

int paypal_format_amount(int64_t amount_minor, const char *currency, char *out, size_t len) {
  int exp = money_currency_exponent(currency);
  if (exp < 0 || amount_minor < 0) return -1;
  int64_t scale = 1;
  for (int i = 0; i < exp; i++) scale *= 10;
  int n = exp == 0 ? snprintf(out, len, "%lld", (long long)amount_minor)
                   : snprintf(out, len, "%lld.%0*lld", (long long)(amount_minor / scale), exp,
                              (long long)(amount_minor % scale));
  return n < 0 || (size_t)n >= len ? -1 : 0;
}

char *paypal_build_body(int64_t amount_minor, const char *currency, const char *payment_method,
                        const char *payment_id) {
  char value[32];
  if (paypal_format_amount(amount_minor, currency, value, sizeof value)) return NULL;
  json_t *j = json_pack("{s:s,s:{s:s,s:s},s:s,s:s}", "intent", "CAPTURE", "amount",
                        "currency_code", currency, "value", value, "payment_source",
                        payment_method, "custom_id", payment_id);
  char *s = j ? json_dumps(j, JSON_COMPACT) : NULL;
  json_decref(j);
  return s;
}

static const char *jstr(json_t *o, const char *k) {
  json_t *v = json_object_get(o, k);
  return json_is_string(v) ? json_string_value(v) : NULL;
}

void paypal_map_response(long http_status, const char *body, size_t len, charge_answer *a) {
  memset(a, 0, sizeof *a);
  char *clean = body ? safe_text_dup(body, len) : NULL; /* see stripe.c */
  json_t *root = clean ? json_loadb(clean, strlen(clean), 0, NULL) : NULL;
  const char *status = root ? jstr(root, "status") : NULL;
  const char *id = root ? jstr(root, "id") : NULL;
  if ((http_status == 200 || http_status == 201) && status && id &&
      strcmp(status, "COMPLETED") == 0) {
    json_t *fee = json_object_get(root, "fee_minor");
    a->fee_minor = json_is_integer(fee) ? (int64_t)json_integer_value(fee) : 0;
    a->kind = a->fee_minor < 0 ? CHARGE_UNKNOWN : CHARGE_SUCCEEDED;
    if (a->kind == CHARGE_SUCCEEDED) charge_answer_id(a, id);
  } else if ((http_status == 200 || http_status == 201 || http_status == 422) && status &&
             strcmp(status, "DECLINED") == 0) {
    const char *reason = jstr(root, "reason");
    a->kind = CHARGE_DECLINED;
    charge_answer_text(a->error_code, sizeof a->error_code, "card_declined");
    charge_answer_text(a->decline_code, sizeof a->decline_code, reason ? reason : "declined");
  } else if (http_status == 200 || http_status == 201) {
    a->kind = CHARGE_UNKNOWN; /* PENDING, garbled, or no id: ask again with the same id */
    charge_answer_error(a, "%ld without a completed capture", http_status);
  } else if (http_status == 429 || http_status == 409) {
    a->kind = CHARGE_RETRYABLE;
    charge_answer_error(a, "processor answered %ld", http_status);
  } else if (http_status >= 400 && http_status < 500) {
    const char *name = root ? jstr(root, "name") : NULL;
    a->kind = CHARGE_REJECTED;
    charge_answer_error(a, "processor refused the request (%ld): %s", http_status,
             name ? name : "no name");
  } else {
    a->kind = CHARGE_UNKNOWN;
    charge_answer_error(a, "processor answered %ld", http_status);
  }
  if (root) json_decref(root);
  free(clean);
}
