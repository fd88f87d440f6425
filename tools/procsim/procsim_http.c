/* procsim_http.c: one request's way through procsim. The upload is read
 * (forms through libmicrohttpd's post processor, JSON through jansson), then
 * every operation of both flavours takes the same path:
 *   count it -> check the API key -> claim its idempotency key (same key and
 *   parameters: the stored answer; other parameters: refused; still running:
 *   409) -> injected latency (the connection is suspended, no thread waits)
 *   -> fail before acting (fail_rate) -> act (the flavour's exec) -> store
 *   the answer under the key -> maybe drop the connection (drop_next) or
 *   answer late (timeout_rate).
 * An operation whose client left while it waited is still carried out, as
 * a real processor would. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "procsim.h"

enum MHD_Result http_reply(struct MHD_Connection *c, unsigned status, const char *body) {
  struct MHD_Response *r =
      MHD_create_response_from_buffer(strlen(body), (void *)body, MHD_RESPMEM_MUST_COPY);
  MHD_add_response_header(r, "Content-Type", "application/json");
  enum MHD_Result ret = MHD_queue_response(c, status, r);
  MHD_destroy_response(r);
  return ret;
}

enum MHD_Result http_reply_json(struct MHD_Connection *c, unsigned status, json_t *j) {
  char *s = json_dumps(j, JSON_COMPACT);
  json_decref(j);
  enum MHD_Result r = http_reply(c, status, s ? s : "{}");
  free(s);
  return r;
}

const char *http_arg(struct MHD_Connection *c, const char *name) {
  return MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, name);
}

const char *req_form(sim_req *q, const char *name) {
  return q->form ? g_hash_table_lookup(q->form, name) : NULL;
}

char *stripe_error_body(const char *type, const char *code, const char *decline,
                        const char *message) {
  json_t *e = json_pack("{s:s,s:s}", "type", type, "message", message);
  if (code) json_object_set_new(e, "code", json_string(code));
  if (decline) json_object_set_new(e, "decline_code", json_string(decline));
  json_t *root = json_pack("{s:o}", "error", e);
  char *s = json_dumps(root, JSON_COMPACT);
  json_decref(root);
  return s;
}

static const char *paypal_name(unsigned status) {
  switch (status) {
  case 400: return "INVALID_REQUEST";
  case 401: return "AUTHENTICATION_FAILURE";
  case 404: return "RESOURCE_NOT_FOUND";
  case 409: return "REQUEST_IN_PROGRESS";
  case 422: return "UNPROCESSABLE_ENTITY";
  default: return "INTERNAL_SERVER_ERROR";
  }
}

char *http_error(flavour fl, unsigned status, const char *code, const char *message) {
  if (fl == STRIPE) {
    const char *type = status == 402   ? "card_error"
                       : status == 409 ? "idempotency_error"
                       : status >= 500 ? "api_error"
                                       : "invalid_request_error";
    return stripe_error_body(type, code, NULL, message);
  }
  json_t *j = json_pack("{s:s,s:s}", "name", paypal_name(status), "message", message);
  if (code) json_object_set_new(j, "details", json_pack("[{s:s}]", "issue", code));
  char *s = json_dumps(j, JSON_COMPACT);
  json_decref(j);
  return s;
}

/* The PayPal-like sale answers its refusals as it always did (name only). */
static char *pipeline_error(sim_req *q, unsigned status, const char *code, const char *msg) {
  if (q->fl == PAYPAL && q->legacy) return http_error(PAYPAL, status, NULL, msg);
  return http_error(q->fl, status, code, msg);
}

static enum MHD_Result send_answer(struct MHD_Connection *c, unsigned status, char *b) {
  enum MHD_Result r = http_reply(c, status, b);
  free(b);
  return r;
}

/* The request as compared for idempotency: its path and its parsed
 * parameters (sorted form fields, or JSON with sorted keys). */
static char *canonical_params(struct MHD_Connection *c, sim_req *q) {
  (void)c;
  GString *s = g_string_new(q->url ? q->url : "");
  g_string_append_c(s, '\n');
  if (q->form) {
    GList *keys = g_list_sort(g_hash_table_get_keys(q->form), (GCompareFunc)strcmp);
    for (GList *k = keys; k; k = k->next)
      g_string_append_printf(s, "%s=%s\n", (char *)k->data,
                             (char *)g_hash_table_lookup(q->form, k->data));
    g_list_free(keys);
  } else if (q->json) {
    char *d = json_dumps(q->json, JSON_COMPACT | JSON_SORT_KEYS);
    g_string_append(s, d ? d : "");
    free(d);
  } else {
    g_string_append(s, q->data ? q->data : "");
  }
  return g_string_free(s, FALSE);
}

/* After the injected latency: fail before acting, or act. Sets the answer;
 * returns true when the answer is to come only after hang_ms. */
static bool act_after_delay(sim_req *q, unsigned *status, char **b, int *hang) {
  q->ph = REQ_NEW; /* decided: never twice */
  if (fault_fail_now(status)) {
    /* Failing before acting: a later retry with the key acts once. */
    *b = pipeline_error(q, *status, q->fl == STRIPE ? NULL : "simulated_error",
                        "simulated processor error");
    if (q->key) store_key_forget(q->key);
    return false;
  }
  *status = q->exec(q, b);
  search_note(q, *status, q->search_body ? q->search_body : *b);
  if (q->key) store_key_done(q->key, *status, *b);
  /* Done; the answer comes too late for the client (an ambiguous timeout).
   * A retry with the same key gets this answer. */
  return fault_hang_now(hang);
}

static enum MHD_Result answer_after_delay(struct MHD_Connection *c, sim_req *q) {
  unsigned status;
  char *b = NULL;
  int hang = 0;
  if (fault_take_drop()) {
    /* Done and recorded; then no answer, and no new connections for a
     * while: the listener closes before this connection does. */
    act_after_delay(q, &status, &b, &hang);
    free(b);
    net_refuse_connections();
    return MHD_NO;
  }
  if (act_after_delay(q, &status, &b, &hang)) {
    q->ph = REQ_HUNG;
    q->status = status;
    q->answer = b;
    if (net_wait_then_resume(c, hang)) return MHD_YES;
    q->answer = NULL;
  }
  return send_answer(c, status, b);
}

enum MHD_Result http_operation(struct MHD_Connection *c, sim_req *q, flavour fl, sim_exec exec,
                               const char *target) {
  q->fl = fl;
  q->exec = exec;
  q->target = g_strdup(target);
  const char *hdr = fl == PAYPAL ? "PayPal-Request-Id" : "Idempotency-Key";
  const char *key = MHD_lookup_connection_value(c, MHD_HEADER_KIND, hdr);
  const char *prefer = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Prefer");
  q->full = prefer && strstr(prefer, "return=representation");
  store_count_request(key);
  if (!fault_api_key_ok(MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization"))) {
    char *b = fl == STRIPE ? stripe_error_body("invalid_request_error", "api_key_invalid", NULL,
                                               "Invalid API Key.")
                           : http_error(PAYPAL, 401, NULL, "Invalid API Key.");
    return send_answer(c, 401, b);
  }
  if (key) {
    char *params = canonical_params(c, q);
    unsigned status = 0;
    char *b = NULL;
    key_state ks = store_key_claim(key, params, &status, &b);
    g_free(params);
    if (ks == KEY_MISMATCH) {
      const char *msg = "Keys for idempotent requests can only be used with the same "
                        "parameters they were first used with.";
      if (fl == STRIPE) return send_answer(c, 400, stripe_error_body("idempotency_error", NULL,
                                                                     NULL, msg));
      if (q->legacy) return send_answer(c, 400, http_error(PAYPAL, 400, NULL, msg));
      return send_answer(c, 422, http_error(PAYPAL, 422, "DUPLICATE_REQUEST_ID", msg));
    }
    if (ks == KEY_BUSY) {
      const char *msg = "There is currently another in-progress request using this "
                        "Idempotent Key.";
      return send_answer(c, 409, fl == STRIPE
                                     ? stripe_error_body("idempotency_error", NULL, NULL, msg)
                                     : http_error(PAYPAL, 409, NULL, msg));
    }
    if (ks == KEY_DONE) return send_answer(c, status, b);
    q->key = g_strdup(key);
  }
  q->ph = REQ_DELAYED;
  int delay = fault_delay_ms(q->data);
  if (delay > 0 && net_wait_then_resume(c, delay)) return MHD_YES;
  return answer_after_delay(c, q);
}

bool http_query_fails(struct MHD_Connection *c, flavour fl, enum MHD_Result *r) {
  unsigned status;
  if (!fault_fail_now(&status)) return false;
  *r = send_answer(c, status, http_error(fl, status, fl == STRIPE ? NULL : "simulated_error",
                                         "simulated processor error"));
  return true;
}

enum MHD_Result http_lookup(struct MHD_Connection *c, flavour fl, const char *key) {
  unsigned status = 0;
  char *b = NULL;
  enum MHD_Result r;
  if (!fault_api_key_ok(MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization")))
    return send_answer(c, 401, http_error(fl, 401, fl == STRIPE ? "api_key_invalid" : NULL,
                                          "Invalid API Key."));
  if (http_query_fails(c, fl, &r)) return r;
  key_state ks = key ? store_key_answer(key, &status, &b) : KEY_NEW;
  if (ks == KEY_DONE) return send_answer(c, status, b);
  if (ks == KEY_BUSY)
    return send_answer(c, 409, http_error(fl, 409, fl == STRIPE ? "idempotency_key_in_use"
                                                                : "REQUEST_IN_PROGRESS",
                                          "the request with this key is still in progress"));
  return send_answer(c, 404, http_error(fl, 404, fl == STRIPE ? "idempotency_key_unknown"
                                                              : "REQUEST_ID_UNKNOWN",
                                        "no request with this key reached the processor"));
}

/* ---- reading the upload ---------------------------------------------------- */

static enum MHD_Result on_form_field(void *cls, enum MHD_ValueKind kind, const char *key,
                                     const char *filename, const char *content_type,
                                     const char *transfer_encoding, const char *data,
                                     uint64_t off, size_t size) {
  (void)kind;
  (void)filename;
  (void)content_type;
  (void)transfer_encoding;
  sim_req *q = cls;
  const char *had = off ? g_hash_table_lookup(q->form, key) : NULL;
  char *v = g_strdup_printf("%s%.*s", had ? had : "", (int)size, data ? data : "");
  g_hash_table_replace(q->form, g_strdup(key), v);
  return MHD_YES;
}

static void free_req(sim_req *q) {
  if (q->pp) MHD_destroy_post_processor(q->pp);
  if (q->form) g_hash_table_destroy(q->form);
  if (q->json) json_decref(q->json);
  free(q->data);
  g_free(q->target);
  g_free(q->url);
  g_free(q->key);
  free(q->answer);
  free(q->search_body);
  free(q);
}

/* First call for a connection's request: a form upload gets a post
 * processor (NULL when the body is not form-encoded). */
static sim_req *req_new(struct MHD_Connection *c, const char *method) {
  sim_req *q = calloc(1, sizeof *q);
  if (!q) return NULL;
  if (strcmp(method, "POST") == 0) {
    q->form = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_free);
    q->pp = MHD_create_post_processor(c, 4096, on_form_field, q);
  }
  return q;
}

/* The upload is whole: forms are parsed (the post processor flushes its
 * last field when destroyed), JSON bodies loaded. */
static void req_uploaded(sim_req *q) {
  if (q->pp) {
    MHD_destroy_post_processor(q->pp);
    q->pp = NULL;
  }
  if (q->form && g_hash_table_size(q->form) == 0) {
    g_hash_table_destroy(q->form);
    q->form = NULL;
  }
  if (q->data && !q->form) q->json = json_loads(q->data, 0, NULL);
}

static enum MHD_Result handle_sim(struct MHD_Connection *c, const char *method,
                                  const char *url, bool *handled) {
  *handled = true;
  bool get = strcmp(method, "GET") == 0;
  if (!get && strcmp(url, "/_sim/config") == 0) return fault_handle_config(c);
  if (get && strcmp(url, "/_sim/requests") == 0) return http_reply_json(c, 200, store_requests_json());
  if (get && strcmp(url, "/_sim/totals") == 0)
    return http_reply_json(c, 200, store_totals_json(http_arg(c, "payment_id")));
  if (get && strcmp(url, "/_sim/operations") == 0 && !settle_operations_listed())
    return http_reply(c, 404, "{\"error\":\"not found\"}");
  if (get && strcmp(url, "/_sim/operations") == 0)
    return http_reply_json(c, 200, store_operations_json(http_arg(c, "payment_id")));
  if (get && strcmp(url, "/_sim/webhooks") == 0)
    return http_reply_json(c, 200, webhook_list_json(http_arg(c, "payment_id")));
  if (get && strcmp(url, "/_sim/settlement") == 0) return settle_handle(c);
  if (!get && strcmp(url, "/_sim/dispute") == 0) return dispute_handle(c);
  if (!get && strcmp(url, "/_sim/refund_fail") == 0) return dispute_refund_fail(c);
  if (!get && strcmp(url, "/_sim/refund_complete") == 0) return refund_complete_handle(c);
  if (strcmp(url, "/healthz") == 0) return http_reply(c, 200, "{\"ok\":true}");
  *handled = false;
  return MHD_NO;
}

enum MHD_Result http_on_request(void *cls, struct MHD_Connection *c, const char *url,
                                const char *method, const char *version,
                                const char *upload_data, size_t *upload_size, void **con_cls) {
  (void)cls;
  (void)version;
  sim_req *q = *con_cls;
  if (!q) {
    *con_cls = req_new(c, method);
    return *con_cls ? MHD_YES : MHD_NO;
  }
  if (*upload_size) {
    if (q->len + *upload_size > (1 << 20)) return MHD_NO;
    q->data = realloc(q->data, q->len + *upload_size + 1);
    memcpy(q->data + q->len, upload_data, *upload_size);
    q->len += *upload_size;
    q->data[q->len] = '\0';
    if (q->pp && MHD_post_process(q->pp, upload_data, *upload_size) != MHD_YES) {
      MHD_destroy_post_processor(q->pp);
      q->pp = NULL;
    }
    *upload_size = 0;
    return MHD_YES;
  }
  if (q->ph == REQ_DELAYED) return answer_after_delay(c, q);
  if (q->ph == REQ_HUNG) {
    char *b = q->answer;
    q->answer = NULL;
    return send_answer(c, q->status, b);
  }
  req_uploaded(q);
  q->url = g_strdup(url);
  bool handled = false;
  enum MHD_Result r = handle_sim(c, method, url, &handled);
  if (!handled) r = stripe_route(c, q, method, url, &handled);
  if (!handled) r = paypal_route(c, q, method, url, &handled);
  if (!handled)
    r = http_reply(c, 404,
                   "{\"error\":{\"type\":\"invalid_request_error\",\"message\":\"not found\"}}");
  return r;
}

void http_on_completed(void *cls, struct MHD_Connection *c, void **con_cls,
                       enum MHD_RequestTerminationCode toe) {
  (void)cls;
  (void)c;
  (void)toe;
  sim_req *q = *con_cls;
  if (q && q->ph == REQ_DELAYED) {
    /* The client left while its operation waited: the processor still
     * carries it out (a retry with the key gets this answer). */
    unsigned status;
    char *b = NULL;
    int hang;
    act_after_delay(q, &status, &b, &hang);
    free(b);
  }
  if (q) free_req(q);
  *con_cls = NULL;
}
