/* procsim_search.c: the status search by the caller's own id, and a knob to
 * forget idempotency keys (docs/procsim.md "Search").
 *
 * A real processor forgets idempotency keys (Stripe: pruned once at least
 * 24 hours old; PayPal: hours to days) but keeps its objects, which carry the
 * caller's ids in their metadata: Stripe's Search API finds a charge or a
 * payment intent by metadata, PayPal's transaction search by custom or
 * invoice id. procsim keeps, for every executed sale, authorization and
 * refund, the answer its request got under the id it carried:
 *   sale, authorization  Stripe metadata[payment_id], PayPal custom_id
 *                        (an order's purchase_units[0].custom_id)
 *   refund               Stripe metadata[refund_id], PayPal invoice_id
 * GET /v1/_search?metadata[payment_id]=P | metadata[refund_id]=R and
 * GET /v2/_search?custom_id=P | invoice_id=R answer it (original status
 * and body, like _lookup), or 404 search_no_match / NO_MATCH. The first
 * executed request with an id is kept (a second execution — a re-send after
 * its key was forgotten — does not hide the first).
 * Keys are forgotten after /_sim/config key_lifetime_ms (procsim_store.c);
 * the objects and this index stay. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "procsim.h"

typedef struct found {
  unsigned status;
  char *body;
} found;

static GMutex search_lock;
static GHashTable *by_ref; /* "payment:<id>" / "refund:<id>" -> found (first executed) */

static void free_found(gpointer p) {
  found *f = p;
  free(f->body);
  g_free(f);
}

static const char *jstr(json_t *o, const char *k) {
  json_t *v = o ? json_object_get(o, k) : NULL;
  return json_is_string(v) ? json_string_value(v) : NULL;
}

/* The id the request carried, as "payment:<id>" or "refund:<id>" (g_free),
 * or NULL for a request that creates no searchable object. */
static char *request_ref(const sim_req *q) {
  const char *url = q->url ? q->url : "";
  if (q->fl == STRIPE) {
    const char *rid = q->form ? g_hash_table_lookup(q->form, "metadata[refund_id]") : NULL;
    if (rid && strcmp(url, "/v1/refunds") == 0) return g_strdup_printf("refund:%s", rid);
    const char *pid = q->form ? g_hash_table_lookup(q->form, "metadata[payment_id]") : NULL;
    if (pid && (strcmp(url, "/v1/charges") == 0 || strcmp(url, "/v1/payment_intents") == 0))
      return g_strdup_printf("payment:%s", pid);
    return NULL;
  }
  const char *inv = jstr(q->json, "invoice_id");
  if (inv && g_str_has_suffix(url, "/refund")) return g_strdup_printf("refund:%s", inv);
  const char *pid = NULL;
  if (strcmp(url, "/v2/payments/captures") == 0) pid = jstr(q->json, "custom_id");
  else if (strcmp(url, "/v2/checkout/orders") == 0)
    pid = jstr(json_array_get(json_object_get(q->json, "purchase_units"), 0), "custom_id");
  return pid ? g_strdup_printf("payment:%s", pid) : NULL;
}

void search_note(const sim_req *q, unsigned status, const char *body) {
  char *ref = request_ref(q);
  if (!ref) return;
  g_mutex_lock(&search_lock);
  if (!by_ref) by_ref = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, free_found);
  if (!g_hash_table_contains(by_ref, ref)) {
    found *f = g_new0(found, 1);
    f->status = status;
    f->body = strdup(body ? body : "");
    g_hash_table_insert(by_ref, ref, f);
    ref = NULL;
  }
  g_mutex_unlock(&search_lock);
  g_free(ref);
}

enum MHD_Result search_handle(struct MHD_Connection *c, flavour fl) {
  enum MHD_Result r;
  if (!fault_api_key_ok(MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization")))
    return http_reply(c, 401, fl == STRIPE ? "{\"error\":{\"type\":\"invalid_request_error\","
                                             "\"code\":\"api_key_invalid\"}}"
                                           : "{\"name\":\"AUTHENTICATION_FAILURE\"}");
  if (http_query_fails(c, fl, &r)) return r;
  const char *pid = http_arg(c, fl == STRIPE ? "metadata[payment_id]" : "custom_id");
  const char *rid = http_arg(c, fl == STRIPE ? "metadata[refund_id]" : "invoice_id");
  if ((pid == NULL) == (rid == NULL)) {
    char *b = http_error(fl, 400, fl == STRIPE ? "parameter_missing" : "MISSING_REQUIRED_PARAMETER",
                         "name exactly one id to search for");
    r = http_reply(c, 400, b);
    free(b);
    return r;
  }
  char *ref = pid ? g_strdup_printf("payment:%s", pid) : g_strdup_printf("refund:%s", rid);
  unsigned status = 0;
  char *body = NULL;
  g_mutex_lock(&search_lock);
  found *f = by_ref ? g_hash_table_lookup(by_ref, ref) : NULL;
  if (f) {
    status = f->status;
    body = strdup(f->body);
  }
  g_mutex_unlock(&search_lock);
  g_free(ref);
  if (!body) {
    body = http_error(fl, 404, fl == STRIPE ? "search_no_match" : "NO_MATCH",
                      "nothing carries this id");
    status = 404;
  }
  r = http_reply(c, status, body);
  free(body);
  return r;
}
