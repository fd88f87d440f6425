/* procsim_store.c: the processor's memory. Payments (sales and
 * authorizations) with their captures, refunds and disputes; the answers
 * stored under idempotency keys; every request counted per key; the
 * operations log; and the sums tests prove money with (/_sim/totals). One
 * lock guards all of it: an operation checks and moves money under it, so a
 * hundred racing refunds never take more than was captured. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "money.h"
#include "procsim.h"

typedef struct stored {
  bool in_progress;
  unsigned status;
  char *body;
  char *params; /* canonical request: path and parsed parameters */
  gint64 done_at; /* monotonic µs the answer was stored */
} stored;

static GMutex lock;
static GHashTable *by_key;          /* idempotency key -> stored */
static GHashTable *payments;        /* id and order id -> sim_payment* (owned by all_payments) */
static GPtrArray *all_payments;     /* sim_payment*, in creation order */
static GPtrArray *expiring;         /* authorizations that have a lifetime */
static GHashTable *captures;        /* id -> sim_capture* */
static GHashTable *refunds;         /* id -> sim_refund* */
static GPtrArray *charges;          /* json_t* of every sale attempt (GET /v1/charges) */
static GPtrArray *ops;              /* json_t* operations log */
static GHashTable *requests_by_key; /* key -> requests received */
static unsigned long requests_total;
static unsigned long next_id = 1;

static void free_stored(gpointer p) {
  stored *s = p;
  free(s->body);
  g_free(s->params);
  g_free(s);
}

static void free_refund(gpointer p) {
  sim_refund *r = p;
  g_array_free(r->parts, TRUE);
  g_free(r->failure_reason);
  g_free(r->refund_ref);
  g_free(r);
}

static void free_payment(gpointer ptr) {
  sim_payment *p = ptr;
  g_free(p->payment_id);
  g_free(p->pm);
  g_free(p->decline_code);
  g_free(p->cancel_reason);
  g_ptr_array_free(p->captures, TRUE);
  g_ptr_array_free(p->refunds, TRUE);
  g_ptr_array_free(p->disputes, TRUE);
  g_free(p);
}

void store_init(void) {
  by_key = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, free_stored);
  payments = g_hash_table_new(g_str_hash, g_str_equal);
  all_payments = g_ptr_array_new_with_free_func(free_payment);
  expiring = g_ptr_array_new();
  captures = g_hash_table_new(g_str_hash, g_str_equal);
  refunds = g_hash_table_new(g_str_hash, g_str_equal);
  charges = g_ptr_array_new_with_free_func((GDestroyNotify)json_decref);
  ops = g_ptr_array_new_with_free_func((GDestroyNotify)json_decref);
  requests_by_key = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
}

void store_destroy(void) {
  g_hash_table_destroy(by_key);
  g_hash_table_destroy(payments);
  g_hash_table_destroy(captures);
  g_hash_table_destroy(refunds);
  g_ptr_array_free(expiring, TRUE);
  g_ptr_array_free(all_payments, TRUE);
  g_ptr_array_free(charges, TRUE);
  g_ptr_array_free(ops, TRUE);
  g_hash_table_destroy(requests_by_key);
}

void store_lock(void) { g_mutex_lock(&lock); }
void store_unlock(void) { g_mutex_unlock(&lock); }

void store_new_id(const char *prefix, char *out, size_t len) {
  snprintf(out, len, "%s%08lu", prefix, next_id++);
}

sim_payment *store_payment_new(flavour fl, bool sale, const char *payment_id,
                               const char *currency, int64_t amount, const char *pm) {
  sim_payment *p = g_new0(sim_payment, 1);
  p->fl = fl;
  p->sale = sale;
  p->payment_id = g_strdup(payment_id ? payment_id : "");
  char *up = g_ascii_strup(currency ? currency : "", -1);
  snprintf(p->currency, sizeof p->currency, "%s", up);
  g_free(up);
  p->amount = amount;
  p->pm = g_strdup(pm ? pm : "");
  p->at = g_get_real_time();
  long long exp = fault_auth_expiry_ms();
  if (!sale && exp > 0) {
    p->expires_at = p->at + exp * 1000;
    g_ptr_array_add(expiring, p);
  }
  p->captures = g_ptr_array_new_with_free_func(g_free);
  p->refunds = g_ptr_array_new_with_free_func(free_refund);
  p->disputes = g_ptr_array_new_with_free_func(g_free);
  store_new_id(sale ? "ch_" : fl == STRIPE ? "pi_" : "AUTH-", p->id, sizeof p->id);
  if (fl == PAYPAL && !sale) store_new_id("ORDER-", p->order_id, sizeof p->order_id);
  g_ptr_array_add(all_payments, p);
  g_hash_table_insert(payments, p->id, p);
  if (p->order_id[0]) g_hash_table_insert(payments, p->order_id, p);
  return p;
}

void store_release(sim_payment *p, pay_state to, const char *reason) {
  int64_t left = p->capturable;
  p->capturable = 0;
  if (to == PS_VOIDED) p->voided += left;
  else if (to == PS_EXPIRED) p->expired += left;
  else p->released += left;
  p->st = to;
  if (reason) {
    g_free(p->cancel_reason);
    p->cancel_reason = g_strdup(reason);
  }
}

/* An authorization past its lifetime is released when next looked at (a
 * real processor's hold simply lapses; nobody has to ask). */
static void expire_if_due(sim_payment *p) {
  if (p->st != PS_AUTHORIZED || !p->expires_at || g_get_real_time() < p->expires_at) return;
  int64_t left = p->capturable;
  store_release(p, PS_EXPIRED, "expired");
  store_log("expire", p, p->id, left, 0, "expired", NULL);
  webhook_event("expired", p, p);
}

void store_expire_sweep(void) {
  store_lock();
  for (guint i = 0; i < expiring->len;) {
    sim_payment *p = g_ptr_array_index(expiring, i);
    expire_if_due(p);
    if (p->st != PS_AUTHORIZED) g_ptr_array_remove_index_fast(expiring, i);
    else i++;
  }
  store_unlock();
}

GPtrArray *store_all_payments(void) { return all_payments; }
GPtrArray *store_ops(void) { return ops; }

sim_payment *store_payment(const char *id) {
  sim_payment *p = id ? g_hash_table_lookup(payments, id) : NULL;
  if (p) expire_if_due(p);
  return p;
}

sim_capture *store_capture_new(sim_payment *p, int64_t amount, bool final) {
  sim_capture *c = g_new0(sim_capture, 1);
  if (p->sale) snprintf(c->id, sizeof c->id, "%s", p->id); /* a sale is its own capture */
  else store_new_id(p->fl == STRIPE ? "ch_" : "CAP-", c->id, sizeof c->id);
  c->p = p;
  c->amount = amount;
  c->fee = fault_fee(amount);
  c->final = final;
  c->at = g_get_real_time();
  p->captured += amount;
  g_ptr_array_add(p->captures, c);
  g_hash_table_insert(captures, c->id, c);
  return c;
}

sim_capture *store_capture(const char *id) {
  sim_capture *c = id ? g_hash_table_lookup(captures, id) : NULL;
  if (c) expire_if_due(c->p);
  return c;
}

sim_refund *store_refund(const char *id) { return id ? g_hash_table_lookup(refunds, id) : NULL; }

int64_t store_refundable(const sim_payment *p) {
  /* An open or lost dispute's amount is not refundable (a refund on top
   * of a chargeback would pay the customer twice); a won one is. */
  int64_t held = 0;
  for (guint i = 0; i < p->disputes->len; i++) {
    const sim_dispute *d = g_ptr_array_index(p->disputes, i);
    if (strcmp(d->status, "won") != 0) held += d->amount;
  }
  int64_t left = p->captured - p->refunded - held;
  return left > 0 ? left : 0;
}

int64_t store_capture_refundable(const sim_capture *c) {
  int64_t left = c->amount - c->refunded;
  int64_t pay = store_refundable(c->p);
  return left < pay ? left : pay;
}

sim_refund *store_refund_new(sim_payment *p, sim_capture *c, int64_t amount, bool failed,
                             const char *refund_ref) {
  sim_refund *r = g_new0(sim_refund, 1);
  store_new_id(p->fl == STRIPE ? "re_" : "REF-", r->id, sizeof r->id);
  r->p = p;
  r->amount = amount;
  r->failed = failed;
  r->refund_ref = g_strdup(refund_ref);
  r->at = g_get_real_time();
  r->parts = g_array_new(FALSE, TRUE, sizeof(refund_part));
  r->first = c ? c : p->captures->len ? g_ptr_array_index(p->captures, 0) : NULL;
  if (!failed) {
    int64_t left = amount;
    for (guint i = 0; left > 0 && i < p->captures->len; i++) {
      sim_capture *k = g_ptr_array_index(p->captures, i);
      if (c && k != c) continue;
      int64_t take = k->amount - k->refunded < left ? k->amount - k->refunded : left;
      if (take <= 0) continue;
      if (!r->parts->len) r->first = k;
      refund_part part = {k, take};
      g_array_append_val(r->parts, part);
      k->refunded += take;
      left -= take;
    }
    p->refunded += amount;
  } else {
    r->failure_reason = g_strdup("insufficient_funds");
  }
  g_ptr_array_add(p->refunds, r);
  g_hash_table_insert(refunds, r->id, r);
  return r;
}

static const char *flavour_name(flavour fl) { return fl == STRIPE ? "stripe" : "paypal"; }

void store_log(const char *op, const sim_payment *p, const char *object_id, int64_t amount,
               int64_t fee, const char *status, const char *key) {
  json_t *o = json_pack("{s:I,s:s,s:s,s:s,s:s,s:s,s:I,s:I,s:s,s:s,s:s,s:I}", "seq",
                        (json_int_t)ops->len + 1, "op", op, "flavour", flavour_name(p->fl),
                        "payment_id", p->payment_id, "payment", p->id, "object_id", object_id,
                        "amount", (json_int_t)amount, "fee", (json_int_t)fee, "currency",
                        p->currency, "status", status, "idempotency_key", key ? key : "", "at",
                        (json_int_t)settle_clock_ms());
  g_ptr_array_add(ops, o);
}

void store_list_charge(json_t *charge) { g_ptr_array_add(charges, charge); }

json_t *store_charge_list(void) { return store_charge_page(0, NULL, NULL); }

/* Up to limit charges (0: all) after the one with id starting_after (NULL:
 * from the first), in the order they were made; *more (if not NULL) tells
 * whether any follow. NULL if starting_after is no charge's id. */
json_t *store_charge_page(size_t limit, const char *starting_after, bool *more) {
  json_t *data = json_array();
  guint i = 0;
  store_lock();
  if (starting_after) {
    while (i < charges->len &&
           g_strcmp0(json_string_value(json_object_get(g_ptr_array_index(charges, i), "id")),
                     starting_after) != 0)
      i++;
    if (i++ == charges->len) {
      store_unlock();
      json_decref(data);
      return NULL;
    }
  }
  for (; i < charges->len && (limit == 0 || json_array_size(data) < limit); i++)
    json_array_append(data, g_ptr_array_index(charges, i));
  if (more) *more = i < charges->len;
  store_unlock();
  return data;
}

/* ---- idempotency keys ------------------------------------------------------ */

/* Past the key lifetime (/_sim/config key_lifetime_ms) an answered key is
 * forgotten when next touched: what a real processor does. */
static stored *live_key(const char *key) {
  stored *s = g_hash_table_lookup(by_key, key);
  long long life = fault_key_lifetime_ms();
  if (s && !s->in_progress && life > 0 && g_get_monotonic_time() - s->done_at > life * 1000) {
    g_hash_table_remove(by_key, key);
    s = NULL;
  }
  return s;
}

key_state store_key_claim(const char *key, const char *params, unsigned *status, char **body) {
  store_lock();
  stored *s = live_key(key);
  key_state ks = KEY_NEW;
  if (!s) {
    s = g_new0(stored, 1);
    s->in_progress = true;
    s->params = g_strdup(params);
    g_hash_table_insert(by_key, g_strdup(key), s);
  } else if (strcmp(s->params, params) != 0) {
    ks = KEY_MISMATCH;
  } else if (s->in_progress) {
    ks = KEY_BUSY;
  } else {
    ks = KEY_DONE;
    *status = s->status;
    *body = strdup(s->body);
  }
  store_unlock();
  return ks;
}

void store_key_done(const char *key, unsigned status, const char *body) {
  store_lock();
  stored *s = g_hash_table_lookup(by_key, key);
  if (s) {
    s->in_progress = false;
    s->done_at = g_get_monotonic_time();
    s->status = status;
    free(s->body);
    s->body = strdup(body);
  }
  store_unlock();
}

void store_key_forget(const char *key) {
  store_lock();
  g_hash_table_remove(by_key, key);
  store_unlock();
}

key_state store_key_answer(const char *key, unsigned *status, char **body) {
  store_lock();
  stored *s = live_key(key);
  key_state ks = !s ? KEY_NEW : s->in_progress ? KEY_BUSY : KEY_DONE;
  if (ks == KEY_DONE) {
    *status = s->status;
    *body = strdup(s->body);
  }
  store_unlock();
  return ks;
}

void store_count_request(const char *key) {
  store_lock();
  requests_total++;
  const char *k = key ? key : "";
  gpointer n = g_hash_table_lookup(requests_by_key, k);
  g_hash_table_replace(requests_by_key, g_strdup(k), GSIZE_TO_POINTER(GPOINTER_TO_SIZE(n) + 1));
  store_unlock();
}

json_t *store_requests_json(void) {
  store_lock();
  json_t *per = json_object();
  GHashTableIter it;
  gpointer k, v;
  g_hash_table_iter_init(&it, requests_by_key);
  while (g_hash_table_iter_next(&it, &k, &v))
    json_object_set_new(per, k, json_integer((json_int_t)GPOINTER_TO_SIZE(v)));
  json_t *root = json_pack("{s:I,s:o}", "total", (json_int_t)requests_total, "by_key", per);
  store_unlock();
  return root;
}

/* ---- what tests prove money with ----------------------------------------- */

static const char *state_name(pay_state st) {
  static const char *n[] = {"failed", "authorized", "captured", "voided", "expired"};
  return n[st];
}

json_t *store_totals_json(const char *pid) {
  int64_t authorized = 0, captured = 0, refunded = 0, refund_failed = 0, voided = 0, expired = 0,
          released = 0, fees = 0, withdrawn = 0, dispute_fees = 0;
  json_t *objects = json_array();
  store_lock();
  for (guint i = 0; i < all_payments->len; i++) {
    sim_payment *p = g_ptr_array_index(all_payments, i);
    if (pid && strcmp(p->payment_id, pid) != 0) continue;
    expire_if_due(p);
    if (!p->sale && p->st != PS_FAILED) authorized += p->amount;
    captured += p->captured;
    refunded += p->refunded;
    voided += p->voided;
    expired += p->expired;
    released += p->released;
    for (guint k = 0; k < p->captures->len; k++)
      fees += ((sim_capture *)g_ptr_array_index(p->captures, k))->fee;
    for (guint k = 0; k < p->refunds->len; k++) {
      sim_refund *r = g_ptr_array_index(p->refunds, k);
      if (r->failed) refund_failed += r->amount;
    }
    for (guint k = 0; k < p->disputes->len; k++) {
      sim_dispute *d = g_ptr_array_index(p->disputes, k);
      withdrawn += d->withdrawn;
      dispute_fees += d->fee;
    }
    json_array_append_new(
        objects, json_pack("{s:s,s:s,s:b,s:s,s:I,s:I,s:I,s:I}", "id", p->id, "order_id",
                           p->order_id, "sale", p->sale, "state", state_name(p->st), "amount",
                           (json_int_t)p->amount, "capturable", (json_int_t)p->capturable,
                           "captured", (json_int_t)p->captured, "refunded",
                           (json_int_t)p->refunded));
  }
  store_unlock();
  return json_pack("{s:s,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:o}", "payment_id",
                   pid ? pid : "", "authorized", (json_int_t)authorized, "captured",
                   (json_int_t)captured, "refunded", (json_int_t)refunded, "refund_failed",
                   (json_int_t)refund_failed, "voided", (json_int_t)voided, "expired",
                   (json_int_t)expired, "released", (json_int_t)released, "fees",
                   (json_int_t)fees, "disputed", (json_int_t)withdrawn, "dispute_fees",
                   (json_int_t)dispute_fees, "objects", objects);
}

json_t *store_operations_json(const char *pid) {
  json_t *data = json_array();
  store_lock();
  for (guint i = 0; i < ops->len; i++) {
    json_t *o = g_ptr_array_index(ops, i);
    if (pid && strcmp(json_string_value(json_object_get(o, "payment_id")), pid) != 0) continue;
    json_array_append(data, o);
  }
  store_unlock();
  return json_pack("{s:s,s:o}", "object", "list", "data", data);
}

/* ---- money and time words ------------------------------------------------- */

long long money_parse_decimal(const char *v, const char *currency) {
  int exp = money_currency_exponent(currency);
  if (!v || exp < 0 || !*v) return -1;
  long long whole = 0, frac = 0;
  int digits = 0;
  const char *p = v;
  for (; *p >= '0' && *p <= '9'; p++) {
    if (whole > MONEY_MAX_PAYMENT_MINOR) return -1;
    whole = whole * 10 + (*p - '0');
  }
  if (*p == '.') {
    for (p++; *p >= '0' && *p <= '9'; p++, digits++) frac = frac * 10 + (*p - '0');
    if (digits != exp) return -1;
  }
  if (*p || p == v) return -1;
  for (int i = 0; i < exp; i++) whole *= 10;
  return whole + frac;
}

void money_format_decimal(int64_t minor, const char *currency, char *out, size_t len) {
  int exp = money_currency_exponent(currency);
  if (exp <= 0 || exp > 4) {
    snprintf(out, len, "%lld", (long long)minor);
    return;
  }
  int64_t scale = 1;
  for (int i = 0; i < exp; i++) scale *= 10;
  char frac[24];
  snprintf(frac, sizeof frac, "%04lld", (long long)(minor % scale));
  snprintf(out, len, "%lld.%s", (long long)(minor / scale), frac + (4 - exp));
}

void time_rfc3339(gint64 us, char *out, size_t len) {
  GDateTime *t = g_date_time_new_from_unix_utc(us / G_USEC_PER_SEC);
  gchar *s = g_date_time_format(t, "%Y-%m-%dT%H:%M:%SZ");
  snprintf(out, len, "%s", s);
  g_free(s);
  g_date_time_unref(t);
}
