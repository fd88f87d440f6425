/* procsim: a payment-processor simulator for development and tests. Speaks
 * the Stripe-like flavour (form-encoded POST /v1/charges, Idempotency-Key
 * header, 402 + error object on decline) and the PayPal-like one (JSON POST
 * /v2/payments/captures, PayPal-Request-Id header, amount as a decimal
 * string, status words COMPLETED / DECLINED), honours idempotency (same key and
 * parameters -> the original response, no new charge; same key, other
 * parameters -> 400; same key while the first is in progress -> 409), knows
 * Stripe's magic payment methods, injects latency and errors, and lists
 * every charge it made (GET /v1/charges) so tests can prove "never charged
 * twice".
 *
 * usage: procsim [--bind ADDR (default 127.0.0.1)] [--port N] [--port-file PATH] [--latency-ms N] [--fail-rate R]
 * Control at run time: POST /_sim/config?latency_ms=N&latency=fixed|uniform|longtail
 * &fail_rate=R&fail_status=S&timeout_rate=R&hang_ms=N&api_key=K
 * - latency: fixed (every request latency_ms), uniform (0..2*latency_ms),
 *   longtail (latency_ms for 90 %, 5x for 9 %, 20x for 1 %);
 * - fail_rate: answer fail_status (default 500) before charging, so a retry
 *   with the key charges once; fail_rate=1&fail_status=503 is a full outage;
 * - timeout_rate: charge, then answer only after hang_ms (a client timeout
 *   that did charge; hang_ms beyond the client timeout = never answers);
 * - api_key: only "Bearer K" is accepted (by default any "Bearer sk_...");
 * - slow_ms: a charge with payment method pm_card_slow succeeds after slow_ms
 *   (default 15000) instead of the usual latency — one slow answer among
 *   fast ones;
 * - drop_next=N&refuse_ms=M: the next N charge requests are charged and
 *   recorded, then the connection is dropped without an answer and the
 *   listening socket is closed for M ms (default 3000): new connections are
 *   refused meanwhile, as from a processor whose front end restarts. A client
 *   that re-sends on a fresh connection sees "couldn't connect" although the
 *   first copy was charged;
 * - fixed_fee=N: the fixed part of the fee (default 30, plus 2.9 %); when set,
 *   the fee is no longer capped at the amount, so a fee above the amount (a
 *   30-cent fee on a 10-cent charge) can be produced, as real processors do.
 * GET /_sim/requests counts every charge request this processor received
 * (total and per idempotency key), answered from the store or not, so tests
 * can assert how often a payment was requested, not only charged.
 * Magic payment methods beyond Stripe's: pm_card_chargeDeclinedMultibyteCut
 * (a decline code whose 63rd-64th bytes are one two-byte character) and
 * pm_card_chargeDeclinedInvalidUtf8 (a decline whose code and message hold
 * bytes that are not UTF-8). */
#include <arpa/inet.h>
#include <glib.h>
#include <netinet/in.h>
#include <jansson.h>
#include <microhttpd.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "money.h"

typedef struct stored {
  int in_progress;
  unsigned status;
  char *body;
  char *params; /* canonical request parameters */
} stored;

static GMutex lock;
static GHashTable *by_key;  /* idempotency key -> stored */
static GPtrArray *charges;  /* json_t* of every charge attempt answered */
static unsigned long next_id = 1;
static volatile int latency_ms;
static volatile double fail_rate;
static volatile double timeout_rate; /* charge, then answer only after hang_ms */
static volatile int hang_ms = 5000;
static volatile int fail_status = 500;
static volatile int slow_ms = 15000; /* for payment method pm_card_slow */
typedef enum { LAT_FIXED, LAT_UNIFORM, LAT_LONGTAIL } latency_dist;
static volatile latency_dist lat_dist = LAT_FIXED;
static char required_key[256]; /* set before traffic by tests; empty = any sk_ key */
static volatile long long fixed_fee = 30;
static volatile bool fee_uncapped;
static atomic_int drop_next;          /* charge, then drop the connection, then refuse */
static volatile int refuse_ms = 3000;
static GHashTable *requests_by_key;   /* idempotency key -> requests received (under lock) */
static unsigned long requests_total;
static volatile sig_atomic_t running = 1;

static void on_signal(int sig) {
  (void)sig;
  running = 0;
}

static enum MHD_Result reply(struct MHD_Connection *c, unsigned status, const char *body) {
  struct MHD_Response *r =
      MHD_create_response_from_buffer(strlen(body), (void *)body, MHD_RESPMEM_MUST_COPY);
  MHD_add_response_header(r, "Content-Type", "application/json");
  enum MHD_Result ret = MHD_queue_response(c, status, r);
  MHD_destroy_response(r);
  return ret;
}

static char *error_body(const char *type, const char *code, const char *decline,
                        const char *message) {
  json_t *e = json_pack("{s:s,s:s}", "type", type, "message", message);
  if (code) json_object_set_new(e, "code", json_string(code));
  if (decline) json_object_set_new(e, "decline_code", json_string(decline));
  json_t *root = json_pack("{s:o}", "error", e);
  char *s = json_dumps(root, JSON_COMPACT);
  json_decref(root);
  return s;
}

static void url_decode(char *s) {
  char *o = s;
  for (; *s; s++) {
    if (*s == '+') {
      *o++ = ' ';
    } else if (*s == '%' && s[1] && s[2]) {
      char hex[3] = {s[1], s[2], 0};
      *o++ = (char)strtol(hex, NULL, 16);
      s += 2;
    } else {
      *o++ = *s;
    }
  }
  *o = '\0';
}

/* Parses a form body into a sorted-by-insertion GHashTable of strings. */
static GHashTable *parse_form(const char *body) {
  GHashTable *h = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_free);
  char *copy = g_strdup(body ? body : ""), *save = NULL;
  for (char *kv = strtok_r(copy, "&", &save); kv; kv = strtok_r(NULL, "&", &save)) {
    char *eq = strchr(kv, '=');
    if (!eq) continue;
    *eq = '\0';
    url_decode(kv);
    url_decode(eq + 1);
    g_hash_table_replace(h, g_strdup(kv), g_strdup(eq + 1));
  }
  g_free(copy);
  return h;
}

typedef struct decline_def {
  const char *pm, *code, *decline;
  const char *raw; /* the answer verbatim (bytes jansson would not write) */
} decline_def;

/* 62 ASCII bytes, then a two-byte character at bytes 63-64. */
#define MB_CUT_CODE "declined_" "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx" "\xc3\xa9_end"

static const decline_def declines[] = {
    {"pm_card_chargeDeclined", "card_declined", "generic_decline", NULL},
    {"pm_card_chargeDeclinedInsufficientFunds", "card_declined", "insufficient_funds", NULL},
    {"pm_card_chargeDeclinedLostCard", "card_declined", "lost_card", NULL},
    {"pm_card_chargeDeclinedStolenCard", "card_declined", "stolen_card", NULL},
    {"pm_card_chargeDeclinedFraudulent", "card_declined", "fraudulent", NULL},
    {"pm_card_chargeDeclinedExpiredCard", "expired_card", "expired_card", NULL},
    {"pm_card_chargeDeclinedIncorrectCvc", "incorrect_cvc", "incorrect_cvc", NULL},
    {"pm_card_chargeDeclinedProcessingError", "processing_error", "processing_error", NULL},
    {"pm_card_chargeDeclinedMultibyteCut", "card_declined", MB_CUT_CODE, NULL},
    {"pm_card_chargeDeclinedInvalidUtf8", "card_declined", "invalid_utf8",
     "{\"error\":{\"type\":\"card_error\",\"code\":\"card_declined\",\"decline_code\":"
     "\"invalid_\xff\xfe_utf8\",\"message\":\"Your card was declined \xc3\x28.\"}}"},
};

/* Charges (or declines) for real: the answer a processor gives. */
static unsigned do_charge(GHashTable *form, const char *key, char **body) {
  const char *amount_s = g_hash_table_lookup(form, "amount");
  const char *currency = g_hash_table_lookup(form, "currency");
  const char *pm = g_hash_table_lookup(form, "payment_method");
  const char *pid = g_hash_table_lookup(form, "metadata[payment_id]");
  char *end = NULL;
  long long amount = amount_s ? strtoll(amount_s, &end, 10) : 0;
  if (!amount_s || *end || amount <= 0 || !currency || !pm) {
    *body = error_body("invalid_request_error", "parameter_missing", NULL,
                       "amount, currency and payment_method are required");
    return 400;
  }
  const decline_def *d = NULL;
  for (size_t i = 0; i < sizeof declines / sizeof declines[0]; i++)
    if (strcmp(pm, declines[i].pm) == 0) d = &declines[i];

  g_mutex_lock(&lock);
  char id[32];
  snprintf(id, sizeof id, "ch_%08lu", next_id++);
  int64_t fee = 0;
  if (!d) {
    money_mul_ratio(amount, 29, 1000, &fee);
    fee += fixed_fee;
    if (fee > amount && !fee_uncapped) fee = amount;
  }
  json_t *ch = json_pack("{s:s,s:s,s:I,s:s,s:s,s:b,s:s,s:I,s:s,s:{s:s}}", "id", id, "object",
                         "charge", "amount", (json_int_t)amount, "currency", currency, "status",
                         d ? "failed" : "succeeded", "paid", !d, "payment_method", pm, "fee",
                         (json_int_t)fee, "idempotency_key", key ? key : "", "metadata",
                         "payment_id", pid ? pid : "");
  if (d) json_object_set_new(ch, "failure_code", json_string(d->decline));
  g_ptr_array_add(charges, json_incref(ch));
  g_mutex_unlock(&lock);

  unsigned status = 200;
  if (d && d->raw) {
    *body = strdup(d->raw);
    status = 402;
  } else if (d) {
    *body = error_body("card_error", d->code, d->decline, "Your card was declined.");
    status = 402;
  } else {
    *body = json_dumps(ch, JSON_COMPACT);
  }
  json_decref(ch);
  return status;
}

static char *canonical_params(const char *body) {
  /* The form as sent is canonical enough: our client always sends the same
   * order. A real processor compares parsed parameters. */
  return g_strdup(body ? body : "");
}

typedef enum flavour { STRIPE, PAYPAL } flavour;

/* Minor units from a decimal string in the currency's exponent ("12.34"
 * USD -> 1234), without floating point; -1 if malformed. */
static long long parse_decimal(const char *v, const char *currency) {
  int exp = money_currency_exponent(currency);
  if (!v || exp < 0) return -1;
  long long whole = 0, frac = 0;
  int digits = 0;
  const char *p = v;
  if (!*p) return -1;
  for (; *p >= '0' && *p <= '9'; p++) whole = whole * 10 + (*p - '0');
  if (*p == '.') {
    for (p++; *p >= '0' && *p <= '9'; p++, digits++) frac = frac * 10 + (*p - '0');
    if (digits != exp) return -1;
  } else if (exp != 0) {
    for (int i = 0; i < exp; i++) whole *= 10;
  }
  if (*p) return -1;
  long long scale = 1;
  for (int i = 0; i < exp && digits; i++) scale *= 10;
  return digits ? whole * scale + frac : whole;
}

/* The PayPal-like request as the form our Stripe-like path understands. */
static GHashTable *paypal_form(const char *body) {
  json_t *j = json_loads(body ? body : "", 0, NULL);
  GHashTable *h = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_free);
  if (!j) return h;
  json_t *amount = json_object_get(j, "amount");
  const char *cur = json_string_value(json_object_get(amount, "currency_code"));
  long long minor = parse_decimal(json_string_value(json_object_get(amount, "value")), cur);
  if (cur && minor > 0) {
    g_hash_table_replace(h, g_strdup("amount"), g_strdup_printf("%lld", minor));
    g_hash_table_replace(h, g_strdup("currency"), g_ascii_strdown(cur, -1));
  }
  const char *pm = json_string_value(json_object_get(j, "payment_source"));
  const char *id = json_string_value(json_object_get(j, "custom_id"));
  if (pm) g_hash_table_replace(h, g_strdup("payment_method"), g_strdup(pm));
  if (id) g_hash_table_replace(h, g_strdup("metadata[payment_id]"), g_strdup(id));
  json_decref(j);
  return h;
}

/* Re-words a Stripe-like answer in the PayPal-like flavour. */
static unsigned paypal_answer(unsigned status, char **body) {
  json_t *j = json_loads(*body, 0, NULL);
  json_t *out = NULL;
  unsigned st = status;
  if (status == 200 && j) {
    out = json_pack("{s:s,s:s,s:O}", "id", json_string_value(json_object_get(j, "id")), "status",
                    "COMPLETED", "fee_minor", json_object_get(j, "fee"));
    st = 201;
  } else if (status == 402 && j) {
    const char *dc = json_string_value(json_object_get(json_object_get(j, "error"), "decline_code"));
    char *up = g_ascii_strup(dc ? dc : "declined", -1);
    out = json_pack("{s:s,s:s}", "status", "DECLINED", "reason", up);
    g_free(up);
    st = 422;
  } else if (status == 400 || status == 401) {
    out = json_pack("{s:s}", "name", status == 401 ? "AUTHENTICATION_FAILURE" : "INVALID_REQUEST");
  } else if (status == 409) {
    out = json_pack("{s:s}", "name", "REQUEST_IN_PROGRESS");
  } else {
    out = json_pack("{s:s}", "name", "INTERNAL_SERVER_ERROR");
  }
  if (j) json_decref(j);
  free(*body);
  *body = json_dumps(out, JSON_COMPACT);
  json_decref(out);
  return st;
}

/* This request's latency under the configured distribution. */
static int sim_latency_ms(void) {
  int base = latency_ms;
  if (base <= 0) return 0;
  if (lat_dist == LAT_UNIFORM) return g_random_int_range(0, 2 * base + 1);
  if (lat_dist == LAT_LONGTAIL) {
    double u = g_random_double();
    return u < 0.90 ? base : u < 0.99 ? 5 * base : 20 * base;
  }
  return base;
}

/* ---- waiting without a thread ------------------------------------------------
 * Injected latency suspends the connection; one timer thread resumes it when
 * its time comes. One event loop serves thousands of connections at 500 ms
 * each without a thread per connection (whose switches cost more CPU than
 * the charges themselves and competed with the pipeline on a shared
 * machine). */

typedef enum { REQ_NEW, REQ_DELAYED, REQ_HUNG } req_phase;

typedef struct req {
  char *data; /* the upload */
  size_t len;
  req_phase ph;
  flavour fl;
  char *key;             /* its idempotency key, while the charge waits */
  unsigned status;       /* a hung answer, sent when it resumes */
  char *answer;
} req;

typedef struct waiter {
  gint64 due; /* g_get_monotonic_time() */
  struct MHD_Connection *c;
} waiter;

static GMutex timer_lock;
static GCond timer_cond;
static GSequence *waiting;  /* waiter*, by due */
static bool timers_stop;

static gint by_due(gconstpointer a, gconstpointer b, gpointer ud) {
  (void)ud;
  gint64 x = ((const waiter *)a)->due, y = ((const waiter *)b)->due;
  return x < y ? -1 : x > y;
}

/* Suspends c until ms from now; false when shutting down (answer now:
 * MHD must not stop with suspended connections). Called from the request
 * handler. */
static bool wait_then_resume(struct MHD_Connection *c, int ms) {
  waiter *w = g_new(waiter, 1);
  w->due = g_get_monotonic_time() + (gint64)ms * 1000;
  w->c = c;
  g_mutex_lock(&timer_lock);
  if (timers_stop) {
    g_mutex_unlock(&timer_lock);
    g_free(w);
    return false;
  }
  MHD_suspend_connection(c);
  GSequenceIter *it = g_sequence_insert_sorted(waiting, w, by_due, NULL);
  if (g_sequence_iter_is_begin(it)) g_cond_signal(&timer_cond);
  g_mutex_unlock(&timer_lock);
  return true;
}

/* Resumes each connection when it is due; on shutdown, all of them at once
 * (MHD must not stop with suspended connections). */
static gpointer timer_thread(gpointer ud) {
  (void)ud;
  g_mutex_lock(&timer_lock);
  for (;;) {
    GSequenceIter *first = g_sequence_get_begin_iter(waiting);
    if (g_sequence_iter_is_end(first)) {
      if (timers_stop) break;
      g_cond_wait(&timer_cond, &timer_lock);
      continue;
    }
    waiter *w = g_sequence_get(first);
    if (!timers_stop && w->due > g_get_monotonic_time()) {
      /* 2 ms of slack: whatever falls due meanwhile is resumed in the same
       * wake-up (one switch for many answers; 2 ms is noise on a processor). */
      g_cond_wait_until(&timer_cond, &timer_lock, w->due + 2000);
      continue;
    }
    g_sequence_remove(first);
    MHD_resume_connection(w->c);
    g_free(w);
  }
  g_mutex_unlock(&timer_lock);
  return NULL;
}

static enum MHD_Result send_answer(struct MHD_Connection *c, flavour fl, unsigned status,
                                   char *b) {
  if (fl == PAYPAL) status = paypal_answer(status, &b);
  enum MHD_Result r = reply(c, status, b);
  free(b);
  return r;
}

/* After the injected latency: fail before charging, or charge. Sets the
 * answer; returns true when the answer is to come only after hang_ms. */
static bool charge_after_delay(req *q, unsigned *status, char **b) {
  const char *key = q->key;
  q->ph = REQ_NEW; /* decided: never twice */
  if (fail_rate > 0 && g_random_double() < fail_rate) {
    /* Failing before charging: a later retry with the key charges once. */
    *status = (unsigned)fail_status;
    *b = error_body("api_error", NULL, NULL, "simulated processor error");
    if (key) {
      g_mutex_lock(&lock);
      g_hash_table_remove(by_key, key);
      g_mutex_unlock(&lock);
    }
    return false;
  }
  GHashTable *form = q->fl == PAYPAL ? paypal_form(q->data) : parse_form(q->data);
  *status = do_charge(form, key, b);
  g_hash_table_destroy(form);
  if (key) {
    g_mutex_lock(&lock);
    stored *s = g_hash_table_lookup(by_key, key);
    s->in_progress = 0;
    s->status = *status;
    s->body = strdup(*b);
    g_mutex_unlock(&lock);
  }
  /* The charge is made; the answer comes too late for the client (an
   * ambiguous timeout). A retry with the same key gets this answer. */
  return timeout_rate > 0 && g_random_double() < timeout_rate;
}

static void refuse_connections(void);

static enum MHD_Result answer_after_delay(struct MHD_Connection *c, req *q) {
  unsigned status;
  char *b = NULL;
  int left = atomic_load(&drop_next);
  while (left > 0 && !atomic_compare_exchange_weak(&drop_next, &left, left - 1)) {
  }
  if (left > 0) {
    /* Charged and recorded; then no answer, and no new connections for a
     * while: the listener closes before this connection does. */
    charge_after_delay(q, &status, &b);
    free(b);
    refuse_connections();
    return MHD_NO;
  }
  if (charge_after_delay(q, &status, &b)) {
    q->ph = REQ_HUNG;
    q->status = status;
    q->answer = b;
    if (wait_then_resume(c, hang_ms)) return MHD_YES;
    q->answer = NULL;
  }
  return send_answer(c, q->fl, status, b);
}

/* Every charge request, answered from the store or not. */
static void count_request(const char *key) {
  g_mutex_lock(&lock);
  requests_total++;
  const char *k = key ? key : "";
  gpointer n = g_hash_table_lookup(requests_by_key, k);
  g_hash_table_replace(requests_by_key, g_strdup(k), GSIZE_TO_POINTER(GPOINTER_TO_SIZE(n) + 1));
  g_mutex_unlock(&lock);
}

static enum MHD_Result handle_requests(struct MHD_Connection *c) {
  g_mutex_lock(&lock);
  json_t *by_key = json_object();
  GHashTableIter it;
  gpointer k, v;
  g_hash_table_iter_init(&it, requests_by_key);
  while (g_hash_table_iter_next(&it, &k, &v))
    json_object_set_new(by_key, k, json_integer((json_int_t)GPOINTER_TO_SIZE(v)));
  json_t *root = json_pack("{s:I,s:o}", "total", (json_int_t)requests_total, "by_key", by_key);
  g_mutex_unlock(&lock);
  char *s = json_dumps(root, JSON_COMPACT);
  json_decref(root);
  enum MHD_Result r = reply(c, 200, s);
  free(s);
  return r;
}

static enum MHD_Result handle_charge(struct MHD_Connection *c, req *q, flavour fl) {
  if (q->ph == REQ_DELAYED) return answer_after_delay(c, q);
  if (q->ph == REQ_HUNG) {
    char *b = q->answer;
    q->answer = NULL;
    return send_answer(c, q->fl, q->status, b);
  }
  const char *body = q->data;
  count_request(MHD_lookup_connection_value(
      c, MHD_HEADER_KIND, fl == PAYPAL ? "PayPal-Request-Id" : "Idempotency-Key"));
  const char *auth = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization");
  if (!auth || strncmp(auth, "Bearer sk_", 10) != 0 ||
      (required_key[0] && strcmp(auth + 7, required_key) != 0)) {
    char *b = error_body("invalid_request_error", "api_key_invalid", NULL, "Invalid API Key.");
    enum MHD_Result r = reply(c, 401, b);
    free(b);
    return r;
  }
  const char *key = MHD_lookup_connection_value(
      c, MHD_HEADER_KIND, fl == PAYPAL ? "PayPal-Request-Id" : "Idempotency-Key");
  char *params = canonical_params(body);

  if (key) {
    g_mutex_lock(&lock);
    stored *s = g_hash_table_lookup(by_key, key);
    if (s) {
      unsigned status = 0;
      char *b = NULL;
      if (strcmp(s->params, params) != 0) {
        status = 400;
        b = error_body("idempotency_error", NULL, NULL,
                       "Keys for idempotent requests can only be used with the same "
                       "parameters they were first used with.");
      } else if (s->in_progress) {
        status = 409;
        b = error_body("idempotency_error", NULL, NULL,
                       "There is currently another in-progress request using this "
                       "Idempotent Key.");
      } else {
        status = s->status;
        b = strdup(s->body);
      }
      g_mutex_unlock(&lock);
      g_free(params);
      return send_answer(c, fl, status, b);
    }
    s = g_new0(stored, 1);
    s->in_progress = 1;
    s->params = g_strdup(params);
    g_hash_table_insert(by_key, g_strdup(key), s);
    g_mutex_unlock(&lock);
    q->key = g_strdup(key);
  }
  g_free(params);
  q->fl = fl;
  q->ph = REQ_DELAYED;
  int delay = body && strstr(body, "pm_card_slow") ? slow_ms : sim_latency_ms();
  if (delay > 0 && wait_then_resume(c, delay)) return MHD_YES;
  return answer_after_delay(c, q);
}

static enum MHD_Result handle_list(struct MHD_Connection *c) {
  g_mutex_lock(&lock);
  json_t *data = json_array();
  for (guint i = 0; i < charges->len; i++) json_array_append(data, g_ptr_array_index(charges, i));
  g_mutex_unlock(&lock);
  json_t *root = json_pack("{s:s,s:o}", "object", "list", "data", data);
  char *s = json_dumps(root, JSON_COMPACT);
  json_decref(root);
  enum MHD_Result r = reply(c, 200, s);
  free(s);
  return r;
}

static enum MHD_Result handle_config(struct MHD_Connection *c) {
  const char *l = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "latency_ms");
  const char *f = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "fail_rate");
  const char *t = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "timeout_rate");
  const char *h = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "hang_ms");
  if (l) latency_ms = atoi(l);
  if (f) fail_rate = atof(f);
  if (t) timeout_rate = atof(t);
  if (h) hang_ms = atoi(h);
  const char *sl = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "slow_ms");
  if (sl) slow_ms = atoi(sl);
  const char *fs = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "fail_status");
  if (fs && atoi(fs) >= 400 && atoi(fs) <= 599) fail_status = atoi(fs);
  const char *ld = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "latency");
  if (ld) lat_dist = strcmp(ld, "uniform") == 0    ? LAT_UNIFORM
                     : strcmp(ld, "longtail") == 0 ? LAT_LONGTAIL
                                                   : LAT_FIXED;
  const char *ff = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "fixed_fee");
  if (ff) {
    fixed_fee = atoll(ff);
    fee_uncapped = true;
  }
  const char *dn = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "drop_next");
  const char *rm = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "refuse_ms");
  if (rm) refuse_ms = atoi(rm);
  if (dn) atomic_store(&drop_next, atoi(dn));
  const char *k = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "api_key");
  if (k) snprintf(required_key, sizeof required_key, "%s", k);
  static const char *dists[] = {"fixed", "uniform", "longtail"};
  char b[384];
  snprintf(b, sizeof b,
           "{\"latency_ms\":%d,\"latency\":\"%s\",\"fail_rate\":%g,\"fail_status\":%d,"
           "\"timeout_rate\":%g,\"hang_ms\":%d,\"slow_ms\":%d,\"fixed_fee\":%lld,"
           "\"drop_next\":%d,\"refuse_ms\":%d}",
           latency_ms, dists[lat_dist], fail_rate, fail_status, timeout_rate, hang_ms, slow_ms,
           (long long)fixed_fee, atomic_load(&drop_next), refuse_ms);
  return reply(c, 200, b);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version,
                                  const char *upload_data, size_t *upload_size, void **con_cls) {
  (void)cls;
  (void)version;
  req *u = *con_cls;
  if (!u) {
    *con_cls = calloc(1, sizeof(req));
    return *con_cls ? MHD_YES : MHD_NO;
  }
  if (*upload_size) {
    if (u->len + *upload_size > (1 << 20)) return MHD_NO;
    u->data = realloc(u->data, u->len + *upload_size + 1);
    memcpy(u->data + u->len, upload_data, *upload_size);
    u->len += *upload_size;
    u->data[u->len] = '\0';
    *upload_size = 0;
    return MHD_YES;
  }
  if (strcmp(method, "POST") == 0 && strcmp(url, "/v1/charges") == 0)
    return handle_charge(c, u, STRIPE);
  if (strcmp(method, "POST") == 0 && strcmp(url, "/v2/payments/captures") == 0)
    return handle_charge(c, u, PAYPAL);
  if (strcmp(method, "GET") == 0 && strcmp(url, "/v1/charges") == 0) return handle_list(c);
  if (strcmp(method, "POST") == 0 && strcmp(url, "/_sim/config") == 0) return handle_config(c);
  if (strcmp(method, "GET") == 0 && strcmp(url, "/_sim/requests") == 0) return handle_requests(c);
  if (strcmp(url, "/healthz") == 0) return reply(c, 200, "{\"ok\":true}");
  return reply(c, 404, "{\"error\":{\"type\":\"invalid_request_error\",\"message\":\"not found\"}}");
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls,
                         enum MHD_RequestTerminationCode toe) {
  (void)cls;
  (void)c;
  (void)toe;
  req *u = *con_cls;
  if (u && u->ph == REQ_DELAYED) {
    /* The client left while its charge waited: the processor still makes
     * it (a retry with the key gets this answer), as a real one would. */
    unsigned status;
    char *b = NULL;
    charge_after_delay(u, &status, &b);
    free(b);
  }
  if (u) {
    free(u->data);
    g_free(u->key);
    free(u->answer);
    free(u);
  }
  *con_cls = NULL;
}

/* ---- the listeners ------------------------------------------------------------
 * One daemon listens at a time; a refusal window (drop_next) quiesces it,
 * closes its listening socket and shuts every open connection down (a
 * client's idle kept-alive connections too: else its re-send would simply
 * go out on one of them), and a new daemon listens on the same address when
 * the window ends. */

static GMutex daemons_lock;
static struct MHD_Daemon *daemons[64];
static int ndaemons;
static bool listening;
static GThread *reopener;
static struct sockaddr_in listen_addr; /* the bound port, once known */
static GHashTable *conn_fds;           /* MHD_Connection* -> its socket, under daemons_lock */

static void on_connection(void *cls, struct MHD_Connection *c, void **socket_context,
                          enum MHD_ConnectionNotificationCode code) {
  (void)cls;
  (void)socket_context;
  const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
  g_mutex_lock(&daemons_lock);
  if (code == MHD_CONNECTION_NOTIFY_STARTED && ci)
    g_hash_table_insert(conn_fds, c, GINT_TO_POINTER(ci->connect_fd));
  else
    g_hash_table_remove(conn_fds, c);
  g_mutex_unlock(&daemons_lock);
}

static struct MHD_Daemon *start_daemon(void) {
  /* One epoll event loop (thousands of connections, fds past FD_SETSIZE);
   * injected latency suspends a connection instead of holding a thread. */
  return MHD_start_daemon(
      MHD_USE_EPOLL_INTERNAL_THREAD | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG, 0,
      NULL, NULL, on_request, NULL, MHD_OPTION_SOCK_ADDR, &listen_addr,
      MHD_OPTION_LISTENING_ADDRESS_REUSE, (unsigned)1, MHD_OPTION_CONNECTION_LIMIT,
      (unsigned)4000, MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)120, MHD_OPTION_NOTIFY_COMPLETED,
      on_completed, NULL, MHD_OPTION_NOTIFY_CONNECTION, on_connection, NULL, MHD_OPTION_END);
}

static gpointer reopen_after(gpointer ud) {
  g_usleep((gulong)GPOINTER_TO_INT(ud) * 1000);
  g_mutex_lock(&daemons_lock);
  struct MHD_Daemon *d = running && ndaemons < 64 ? start_daemon() : NULL;
  if (d) daemons[ndaemons++] = d;
  else if (running) fprintf(stderr, "procsim: could not listen again\n");
  listening = d != NULL;
  g_mutex_unlock(&daemons_lock);
  if (d) fprintf(stderr, "procsim: accepting connections again\n");
  return NULL;
}

/* Closes the listening socket for refuse_ms and shuts every connection down
 * (MHD then closes them itself); called from a request handler (quiescing
 * the daemon from its own thread is allowed). */
static void refuse_connections(void) {
  g_mutex_lock(&daemons_lock);
  if (listening && ndaemons > 0) {
    MHD_socket fd = MHD_quiesce_daemon(daemons[ndaemons - 1]);
    if (fd != MHD_INVALID_SOCKET) close(fd);
    GHashTableIter it;
    gpointer c, cfd;
    g_hash_table_iter_init(&it, conn_fds);
    while (g_hash_table_iter_next(&it, &c, &cfd)) shutdown(GPOINTER_TO_INT(cfd), SHUT_RDWR);
    listening = false;
    if (reopener) g_thread_join(reopener); /* done: it set listening */
    reopener = g_thread_new("procsim-reopen", reopen_after, GINT_TO_POINTER(refuse_ms));
    fprintf(stderr, "procsim: refusing connections for %d ms\n", refuse_ms);
  }
  g_mutex_unlock(&daemons_lock);
}

static void free_stored(gpointer p) {
  stored *s = p;
  free(s->body);
  g_free(s->params);
  g_free(s);
}

int main(int argc, char **argv) {
  struct rlimit rl; /* a socket per connection: take the hard limit */
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
  unsigned port = 0;
  const char *port_file = NULL;
  const char *bind = "127.0.0.1";
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--port") == 0 && i + 1 < argc) port = (unsigned)atoi(argv[++i]);
    else if (strcmp(argv[i], "--port-file") == 0 && i + 1 < argc) port_file = argv[++i];
    else if (strcmp(argv[i], "--latency-ms") == 0 && i + 1 < argc) latency_ms = atoi(argv[++i]);
    else if (strcmp(argv[i], "--fail-rate") == 0 && i + 1 < argc) fail_rate = atof(argv[++i]);
    else if (strcmp(argv[i], "--bind") == 0 && i + 1 < argc) bind = argv[++i];
    else {
      fprintf(stderr, "usage: procsim [--bind ADDR] [--port N] [--port-file PATH] "
                      "[--latency-ms N] [--fail-rate R]\n");
      return 2;
    }
  }
  by_key = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, free_stored);
  charges = g_ptr_array_new_with_free_func((GDestroyNotify)json_decref);
  requests_by_key = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
  conn_fds = g_hash_table_new(g_direct_hash, g_direct_equal);

  struct sockaddr_in *addr = &listen_addr;
  addr->sin_family = AF_INET;
  addr->sin_port = htons((uint16_t)port);
  if (inet_pton(AF_INET, bind, &addr->sin_addr) != 1) {
    fprintf(stderr, "procsim: --bind wants an IPv4 address, got %s\n", bind);
    return 2;
  }
  waiting = g_sequence_new(NULL);
  GThread *timers = g_thread_new("procsim-timers", timer_thread, NULL);
  g_mutex_lock(&daemons_lock);
  struct MHD_Daemon *d = start_daemon();
  if (d) {
    daemons[ndaemons++] = d;
    listening = true;
  }
  g_mutex_unlock(&daemons_lock);
  if (!d) {
    fprintf(stderr, "procsim: could not listen on %s:%u\n", bind, port);
    return 1;
  }
  const union MHD_DaemonInfo *info = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
  unsigned bound = info ? info->port : port;
  addr->sin_port = htons((uint16_t)bound); /* a new listener takes the same port */
  if (port_file) {
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp", port_file);
    FILE *f = fopen(tmp, "w");
    if (!f || fprintf(f, "%u\n", bound) < 0 || fclose(f) != 0 || rename(tmp, port_file) != 0) {
      fprintf(stderr, "procsim: could not write %s\n", port_file);
      return 1;
    }
  }
  fprintf(stderr, "procsim: listening on http://%s:%u\n", bind, bound);
  signal(SIGTERM, on_signal);
  signal(SIGINT, on_signal);
  while (running) pause();
  /* Resume whatever waits (MHD must not stop with suspended connections):
   * a waiting charge is still made; its answer may not reach the client. */
  g_mutex_lock(&timer_lock);
  timers_stop = true;
  g_cond_signal(&timer_cond);
  g_mutex_unlock(&timer_lock);
  g_thread_join(timers);
  g_sequence_free(waiting);
  g_mutex_lock(&daemons_lock);
  GThread *r = reopener;
  reopener = NULL;
  g_mutex_unlock(&daemons_lock);
  if (r) g_thread_join(r); /* running is 0: it opens nothing */
  for (int i = ndaemons - 1; i >= 0; i--) MHD_stop_daemon(daemons[i]);
  g_hash_table_destroy(by_key);
  g_ptr_array_free(charges, TRUE);
  g_hash_table_destroy(requests_by_key);
  g_hash_table_destroy(conn_fds);
  return 0;
}
