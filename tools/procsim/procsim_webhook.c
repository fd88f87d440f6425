/* procsim_webhook.c: the processor speaking on its own. Every operation (and
 * every dispute or late refund failure) becomes an event posted to the
 * flavour's configured URL, signed with its secret:
 *   Stripe-like  Stripe-Signature: t=<unix s>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>
 *   PayPal-like  PayPal-Transmission-Id/-Time/-Sig/PayPal-Webhook-Id, the
 *                signature hex HMAC-SHA256(secret, "<id>|<time>|<webhook id>|<hex sha256(body)>")
 * One delivery thread sends them in due order; a non-2xx answer or a failed
 * connection is retried with exponential back-off (webhook_retry_ms doubling,
 * at most 30 s, webhook_max_attempts tries). Injectable: delay, duplication,
 * reordering (an event held back so later ones overtake it) and loss.
 * GET /_sim/webhooks lists every event and what became of it. */
#include <curl/curl.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/sha.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hex.h"
#include "procsim.h"

typedef struct delivery {
  flavour fl;
  char *id, *type, *payment_id, *body;
  gint64 due; /* monotonic µs */
  int attempts, last_status;
  bool delivered, lost, gave_up, pending;
  int copies; /* duplicates still to send after the first delivery */
} delivery;

static GMutex lock;
static GCond wake;
static GPtrArray *events;  /* delivery*, every event in creation order (owned) */
static GSequence *queue;   /* delivery* to send, by due */
static bool stopping;
static GThread *sender;
static unsigned long next_event = 1;
static char *url[2], *secret[2];
static char *paypal_webhook_id;
static volatile int delay_ms, retry_ms = 200, max_attempts = 8, reorder_ms = 1000;
static volatile double dup_rate, loss_rate, reorder_rate;
static atomic_int reorder_next, lose_next;

static gint by_due(gconstpointer a, gconstpointer b, gpointer ud) {
  (void)ud;
  gint64 x = ((const delivery *)a)->due, y = ((const delivery *)b)->due;
  return x < y ? -1 : x > y;
}

static bool take(atomic_int *n) {
  int left = atomic_load(n);
  while (left > 0 && !atomic_compare_exchange_weak(n, &left, left - 1)) {
  }
  return left > 0;
}

static void enqueue(delivery *d, gint64 due) {
  d->due = due;
  d->pending = true;
  GSequenceIter *it = g_sequence_insert_sorted(queue, d, by_due, NULL);
  if (g_sequence_iter_is_begin(it)) g_cond_signal(&wake);
}

void webhook_emit(flavour fl, const char *type, const char *payment_id, json_t *object) {
  g_mutex_lock(&lock);
  delivery *d = g_new0(delivery, 1);
  d->fl = fl;
  d->type = g_strdup(type);
  d->payment_id = g_strdup(payment_id ? payment_id : "");
  char id[40];
  json_t *ev;
  gint64 now = g_get_real_time();
  if (fl == STRIPE) {
    snprintf(id, sizeof id, "evt_%08lu", next_event++);
    ev = json_pack("{s:s,s:s,s:s,s:I,s:{s:o}}", "id", id, "object", "event", "type", type,
                   "created", (json_int_t)(now / G_USEC_PER_SEC), "data", "object", object);
  } else {
    char t[40];
    snprintf(id, sizeof id, "WH-%08lu", next_event++);
    time_rfc3339(now, t, sizeof t);
    ev = json_pack("{s:s,s:s,s:s,s:s,s:o}", "id", id, "event_type", type, "create_time", t,
                   "resource_version", "2.0", "resource", object);
  }
  d->id = g_strdup(id);
  d->body = json_dumps(ev, JSON_COMPACT);
  json_decref(ev);
  g_ptr_array_add(events, d);
  if (!url[fl]) {
    /* The URL went away since the event was wanted: recorded only. */
  } else if (take(&lose_next) || (loss_rate > 0 && g_random_double() < loss_rate)) {
    d->lost = true;
  } else {
    gint64 due = g_get_monotonic_time() + (gint64)delay_ms * 1000;
    if (take(&reorder_next) || (reorder_rate > 0 && g_random_double() < reorder_rate))
      due += (gint64)reorder_ms * 1000; /* held back: later events overtake it */
    if (dup_rate > 0 && g_random_double() < dup_rate) d->copies = 1;
    enqueue(d, due);
  }
  g_mutex_unlock(&lock);
}

/* What happened -> each flavour's event type and the object it carries. */
static const struct {
  const char *what, *stripe, *stripe_obj, *paypal, *paypal_obj;
} event_map[] = {
    {"sale", "charge.succeeded", "charge", "PAYMENT.CAPTURE.COMPLETED", "capture"},
    {"sale_failed", "charge.failed", "charge_failed", "PAYMENT.CAPTURE.DENIED", "denied"},
    {"authorized", "payment_intent.amount_capturable_updated", "payment_intent",
     "PAYMENT.AUTHORIZATION.CREATED", "authorization"},
    {"authorize_failed", "charge.failed", "charge_failed", "PAYMENT.AUTHORIZATION.DENIED",
     "authorization"},
    {"captured", "charge.captured", "charge", "PAYMENT.CAPTURE.COMPLETED", "capture"},
    {"voided", "payment_intent.canceled", "payment_intent", "PAYMENT.AUTHORIZATION.VOIDED",
     "authorization"},
    {"expired", "payment_intent.canceled", "payment_intent", "PAYMENT.AUTHORIZATION.VOIDED",
     "authorization"},
    {"refunded", "refund.updated", "refund", "PAYMENT.CAPTURE.REFUNDED", "refund"},
    {"refund_failed", "refund.updated", "refund", "PAYMENT.REFUND.FAILED", "refund"},
    {"dispute_created", "charge.dispute.created", "dispute", "CUSTOMER.DISPUTE.CREATED", "dispute"},
    {"dispute_withdrawn", "charge.dispute.funds_withdrawn", "dispute", "CUSTOMER.DISPUTE.UPDATED",
     "dispute"},
    {"dispute_reinstated", "charge.dispute.funds_reinstated", "dispute",
     "CUSTOMER.DISPUTE.UPDATED", "dispute"},
    {"dispute_updated", "charge.dispute.updated", "dispute", "CUSTOMER.DISPUTE.UPDATED", "dispute"},
    {"dispute_closed", "charge.dispute.closed", "dispute", "CUSTOMER.DISPUTE.RESOLVED", "dispute"},
};

void webhook_event(const char *what, const sim_payment *p, const void *obj) {
  g_mutex_lock(&lock);
  bool wanted = url[p->fl] != NULL;
  g_mutex_unlock(&lock);
  if (!wanted) return; /* nobody listens: no event (a bench makes millions) */
  for (size_t i = 0; i < sizeof event_map / sizeof event_map[0]; i++) {
    if (strcmp(event_map[i].what, what) != 0) continue;
    json_t *o = p->fl == STRIPE ? stripe_event_object(event_map[i].stripe_obj, obj)
                                : paypal_event_object(event_map[i].paypal_obj, obj);
    if (p->fl == STRIPE && strcmp(what, "sale") == 0 && !settle_webhook_sale_fee())
      json_object_del(o, "fee"); /* as a real Stripe charge.succeeded */
    webhook_emit(p->fl, p->fl == STRIPE ? event_map[i].stripe : event_map[i].paypal,
                 p->payment_id, o);
    return;
  }
}

static void hmac_hex(const char *key, const char *msg, size_t len, char out[65]) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  HMAC(EVP_sha256(), key, (int)strlen(key), (const unsigned char *)msg, len, md, &n);
  hex_encode(md, n, out);
}

/* Sends one delivery (without the lock): the HTTP status, 0 when none. */
static long send_one(flavour fl, const char *to, const char *key, const char *whid,
                     const char *body) {
  CURL *h = curl_easy_init();
  if (!h) return 0;
  struct curl_slist *hdrs = curl_slist_append(NULL, "Content-Type: application/json");
  char line[512], sig[65];
  if (fl == STRIPE) {
    long t = (long)(g_get_real_time() / G_USEC_PER_SEC);
    GString *msg = g_string_new(NULL);
    g_string_printf(msg, "%ld.%s", t, body);
    hmac_hex(key, msg->str, msg->len, sig);
    g_string_free(msg, TRUE);
    snprintf(line, sizeof line, "Stripe-Signature: t=%ld,v1=%s", t, sig);
    hdrs = curl_slist_append(hdrs, line);
  } else {
    char *tid = g_uuid_string_random(), when[40], crc[65];
    unsigned char md[SHA256_DIGEST_LENGTH];
    time_rfc3339(g_get_real_time(), when, sizeof when);
    SHA256((const unsigned char *)body, strlen(body), md);
    hex_encode(md, sizeof md, crc);
    char *msg = g_strdup_printf("%s|%s|%s|%s", tid, when, whid, crc);
    hmac_hex(key, msg, strlen(msg), sig);
    g_free(msg);
    snprintf(line, sizeof line, "PayPal-Transmission-Id: %s", tid);
    hdrs = curl_slist_append(hdrs, line);
    snprintf(line, sizeof line, "PayPal-Transmission-Time: %s", when);
    hdrs = curl_slist_append(hdrs, line);
    snprintf(line, sizeof line, "PayPal-Transmission-Sig: %s", sig);
    hdrs = curl_slist_append(hdrs, line);
    snprintf(line, sizeof line, "PayPal-Webhook-Id: %s", whid);
    hdrs = curl_slist_append(hdrs, line);
    hdrs = curl_slist_append(hdrs, "PayPal-Auth-Algo: HMACSHA256");
    g_free(tid);
  }
  curl_easy_setopt(h, CURLOPT_URL, to);
  curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
  curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
  curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, 5000L);
  curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, NULL);
  FILE *sink = fopen("/dev/null", "w");
  if (sink) curl_easy_setopt(h, CURLOPT_WRITEDATA, sink);
  long status = 0;
  if (curl_easy_perform(h) == CURLE_OK) curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
  if (sink) fclose(sink);
  curl_slist_free_all(hdrs);
  curl_easy_cleanup(h);
  return status;
}

static gpointer sender_thread(gpointer ud) {
  (void)ud;
  g_mutex_lock(&lock);
  while (!stopping) {
    GSequenceIter *first = g_sequence_get_begin_iter(queue);
    if (g_sequence_iter_is_end(first)) {
      g_cond_wait_until(&wake, &lock, g_get_monotonic_time() + 200 * 1000);
    } else {
      delivery *d = g_sequence_get(first);
      if (d->due > g_get_monotonic_time()) {
        g_cond_wait_until(&wake, &lock, d->due);
      } else {
        g_sequence_remove(first);
        char *to = g_strdup(url[d->fl]), *key = g_strdup(secret[d->fl] ? secret[d->fl] : "");
        char *whid = g_strdup(paypal_webhook_id), *body = g_strdup(d->body);
        g_mutex_unlock(&lock);
        long st = to ? send_one(d->fl, to, key, whid, body) : 0;
        g_free(to), g_free(key), g_free(whid), g_free(body);
        g_mutex_lock(&lock);
        d->attempts++;
        d->last_status = (int)st;
        d->pending = false;
        if (st >= 200 && st < 300) {
          d->delivered = true;
          if (d->copies > 0) { /* the duplicate goes out again, same event id */
            d->copies--;
            enqueue(d, g_get_monotonic_time() + 50 * 1000);
          }
        } else if (d->attempts >= max_attempts) {
          d->gave_up = true;
        } else {
          gint64 back = (gint64)retry_ms << (d->attempts - 1 < 8 ? d->attempts - 1 : 8);
          enqueue(d, g_get_monotonic_time() + (back < 30000 ? back : 30000) * 1000);
        }
      }
    }
    g_mutex_unlock(&lock);
    store_expire_sweep(); /* expiry events are due even if nobody asks */
    g_mutex_lock(&lock);
  }
  g_mutex_unlock(&lock);
  return NULL;
}

static void free_delivery(gpointer p) {
  delivery *d = p;
  g_free(d->id);
  g_free(d->type);
  g_free(d->payment_id);
  free(d->body);
  g_free(d);
}

static void set_str(char **slot, const char *v) {
  g_free(*slot);
  *slot = v && *v ? g_strdup(v) : NULL;
}

void webhook_configure(const char *any_url, const char *any_secret) {
  g_mutex_lock(&lock);
  if (any_url) set_str(&url[STRIPE], any_url), set_str(&url[PAYPAL], any_url);
  if (any_secret) set_str(&secret[STRIPE], any_secret), set_str(&secret[PAYPAL], any_secret);
  g_mutex_unlock(&lock);
}

void webhook_start(void) {
  curl_global_init(CURL_GLOBAL_DEFAULT);
  events = g_ptr_array_new_with_free_func(free_delivery);
  queue = g_sequence_new(NULL);
  paypal_webhook_id = g_strdup("WH-ID-procsim");
  sender = g_thread_new("procsim-webhooks", sender_thread, NULL);
}

void webhook_stop(void) {
  g_mutex_lock(&lock);
  stopping = true;
  g_cond_signal(&wake);
  g_mutex_unlock(&lock);
  g_thread_join(sender);
  g_sequence_free(queue);
  g_ptr_array_free(events, TRUE);
  for (int i = 0; i < 2; i++) g_free(url[i]), g_free(secret[i]);
  g_free(paypal_webhook_id);
  curl_global_cleanup();
}

/* /_sim/config's webhook part (called by fault_handle_config). */
void webhook_config(struct MHD_Connection *c, json_t *out) {
  const char *v;
  g_mutex_lock(&lock);
  if ((v = http_arg(c, "webhook_url"))) set_str(&url[STRIPE], v), set_str(&url[PAYPAL], v);
  if ((v = http_arg(c, "webhook_secret"))) set_str(&secret[STRIPE], v), set_str(&secret[PAYPAL], v);
  if ((v = http_arg(c, "stripe_webhook_url"))) set_str(&url[STRIPE], v);
  if ((v = http_arg(c, "paypal_webhook_url"))) set_str(&url[PAYPAL], v);
  if ((v = http_arg(c, "stripe_webhook_secret"))) set_str(&secret[STRIPE], v);
  if ((v = http_arg(c, "paypal_webhook_secret"))) set_str(&secret[PAYPAL], v);
  if ((v = http_arg(c, "paypal_webhook_id"))) set_str(&paypal_webhook_id, v);
  if ((v = http_arg(c, "webhook_delay_ms"))) delay_ms = atoi(v);
  if ((v = http_arg(c, "webhook_retry_ms"))) retry_ms = atoi(v) > 0 ? atoi(v) : 1;
  if ((v = http_arg(c, "webhook_max_attempts"))) max_attempts = atoi(v) > 0 ? atoi(v) : 1;
  if ((v = http_arg(c, "webhook_dup_rate"))) dup_rate = atof(v);
  if ((v = http_arg(c, "webhook_loss_rate"))) loss_rate = atof(v);
  if ((v = http_arg(c, "webhook_lose_next"))) atomic_store(&lose_next, atoi(v));
  if ((v = http_arg(c, "webhook_reorder_rate"))) reorder_rate = atof(v);
  if ((v = http_arg(c, "webhook_reorder_next"))) atomic_store(&reorder_next, atoi(v));
  if ((v = http_arg(c, "webhook_reorder_ms"))) reorder_ms = atoi(v);
  /* Secrets are never echoed; only whether one is set. */
  json_object_set_new(out, "stripe_webhook_url", json_string(url[STRIPE] ? url[STRIPE] : ""));
  json_object_set_new(out, "paypal_webhook_url", json_string(url[PAYPAL] ? url[PAYPAL] : ""));
  json_object_set_new(out, "stripe_webhook_secret_set", json_boolean(secret[STRIPE] != NULL));
  json_object_set_new(out, "paypal_webhook_secret_set", json_boolean(secret[PAYPAL] != NULL));
  json_object_set_new(out, "paypal_webhook_id", json_string(paypal_webhook_id));
  json_object_set_new(out, "webhook_delay_ms", json_integer(delay_ms));
  json_object_set_new(out, "webhook_retry_ms", json_integer(retry_ms));
  json_object_set_new(out, "webhook_max_attempts", json_integer(max_attempts));
  json_object_set_new(out, "webhook_dup_rate", json_real(dup_rate));
  json_object_set_new(out, "webhook_loss_rate", json_real(loss_rate));
  json_object_set_new(out, "webhook_reorder_rate", json_real(reorder_rate));
  json_object_set_new(out, "webhook_reorder_ms", json_integer(reorder_ms));
  g_mutex_unlock(&lock);
}

json_t *webhook_list_json(const char *payment_id) {
  json_t *data = json_array();
  g_mutex_lock(&lock);
  for (guint i = 0; i < events->len; i++) {
    delivery *d = g_ptr_array_index(events, i);
    if (payment_id && strcmp(d->payment_id, payment_id) != 0) continue;
    const char *st = d->lost ? "lost" : d->gave_up ? "failed" : d->pending ? "pending"
                     : d->delivered ? "delivered" : url[d->fl] ? "pending" : "no_url";
    json_array_append_new(
        data, json_pack("{s:s,s:s,s:s,s:s,s:s,s:i,s:i}", "id", d->id, "flavour",
                        d->fl == STRIPE ? "stripe" : "paypal", "type", d->type, "payment_id",
                        d->payment_id, "state", st, "attempts", d->attempts, "last_status",
                        d->last_status));
  }
  g_mutex_unlock(&lock);
  return json_pack("{s:s,s:o}", "object", "list", "data", data);
}
