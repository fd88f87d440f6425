/* procsim_settle.c: the daily settlement report a processor sends before it
 * pays out. GET /_sim/settlement?day=YYYY-MM-DD[&flavour=stripe|paypal] is a
 * CSV of every money movement procsim made that UTC day, from the
 * operations log:
 *   type,payment_id,processor_object_id,amount_minor,fee_minor,currency,payout_id
 * type: charge (a sale), capture, refund (negative), refund_failure (a late
 * failure gives the money back: positive), dispute_withdrawal (negative; the
 * dispute fee in fee_minor), dispute_reinstatement (positive); then one
 * payout line per flavour and currency whose amount is the net
 * (sum of amounts - sum of fees) and whose processor_object_id is the payout
 * id. Declined sales, authorizations, voids and declined refunds move no
 * money and are not in it. The same day asked twice gives the same report.
 *
 * Knobs of /_sim/config that live here (settle_config): backdate_ms=T (epoch
 * ms; 0 clears) dates every operation logged while it is set at T instead
 * of now — a processor whose clock or cut-off puts a movement on another
 * day than ours (just before midnight while we post just after, or the
 * other way), for the settlement report of either flavour;
 * webhook_sale_fee=0 sends a Stripe-like sale's charge.succeeded without
 * its fee, as a real Stripe event (the fee is on its balance transaction),
 * 1 (default) with it. A third, sim_operations_list=0, makes GET
 * /_sim/operations answer 404, as a real processor (which has no such list)
 * does, for payctl reconcile; 1 (default) serves it. list_default_limit=N
 * makes GET /v1/charges without a limit answer at most N (Stripe's default
 * is 10), 0 (default) the whole list as the tests read it. */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "procsim.h"

static _Atomic long long backdate_ms;
static atomic_int webhook_sale_fee = 1;
static atomic_int operations_listed = 1;
static atomic_int list_default_limit;

gint64 settle_clock_ms(void) {
  long long at = atomic_load(&backdate_ms);
  return at > 0 ? (gint64)at : g_get_real_time() / 1000;
}

bool settle_webhook_sale_fee(void) { return atomic_load(&webhook_sale_fee) != 0; }

bool settle_operations_listed(void) { return atomic_load(&operations_listed) != 0; }

int settle_list_default_limit(void) { return atomic_load(&list_default_limit); }

void settle_config(struct MHD_Connection *c, json_t *out) {
  const char *v;
  if ((v = http_arg(c, "backdate_ms"))) atomic_store(&backdate_ms, atoll(v) > 0 ? atoll(v) : 0);
  if ((v = http_arg(c, "webhook_sale_fee"))) atomic_store(&webhook_sale_fee, atoi(v) != 0);
  json_object_set_new(out, "backdate_ms", json_integer(atomic_load(&backdate_ms)));
  json_object_set_new(out, "webhook_sale_fee", json_boolean(settle_webhook_sale_fee()));
  if ((v = http_arg(c, "sim_operations_list"))) atomic_store(&operations_listed, atoi(v) != 0);
  json_object_set_new(out, "sim_operations_list", json_boolean(settle_operations_listed()));
  if ((v = http_arg(c, "list_default_limit")) && atoi(v) >= 0 && atoi(v) <= 100)
    atomic_store(&list_default_limit, atoi(v));
  json_object_set_new(out, "list_default_limit", json_integer(settle_list_default_limit()));
}

typedef struct net {
  char flavour[8], currency[8];
  int64_t amount, fee;
} net;

/* The settlement type of a logged operation, or NULL (moves no money). */
static const char *line_type(const char *op, const char *status, int *sign) {
  *sign = 1;
  if (strcmp(op, "sale") == 0) return strcmp(status, "succeeded") == 0 ? "charge" : NULL;
  if (strcmp(op, "capture") == 0) return "capture";
  if (strcmp(op, "refund") == 0 && strcmp(status, "succeeded") == 0) {
    *sign = -1;
    return "refund";
  }
  if (strcmp(op, "refund_failed") == 0) return "refund_failure";
  if (strcmp(op, "dispute_withdrawn") == 0) {
    *sign = -1;
    return "dispute_withdrawal";
  }
  if (strcmp(op, "dispute_reinstated") == 0) return "dispute_reinstatement";
  return NULL;
}

/* A refund failed while still pending never settled (no refund line):
 * its failure moves no money back either. Under the store's lock. */
static bool never_settled(const char *type, const char *refund_id) {
  if (strcmp(type, "refund_failure") != 0) return false;
  sim_refund *r = store_refund(refund_id);
  return r && r->pending;
}

static void payout_id(const char *fl, const char *cur, const char *day, char *out, size_t len) {
  char d[16];
  size_t n = 0;
  for (const char *p = day; *p && n + 1 < sizeof d; p++)
    if (*p != '-') d[n++] = *p;
  d[n] = '\0';
  snprintf(out, len, "%s_%s_%s", strcmp(fl, "stripe") == 0 ? "po" : "PAYOUT", d, cur);
}

/* A CSV field: quoted when it holds a comma, quote or line break. */
static void csv_field(GString *out, const char *v) {
  if (!strpbrk(v, ",\"\r\n")) {
    g_string_append(out, v);
    return;
  }
  g_string_append_c(out, '"');
  for (; *v; v++) {
    if (*v == '"') g_string_append_c(out, '"');
    g_string_append_c(out, *v);
  }
  g_string_append_c(out, '"');
}

static const char *js(json_t *o, const char *k) {
  const char *v = json_string_value(json_object_get(o, k));
  return v ? v : "";
}

enum MHD_Result settle_handle(struct MHD_Connection *c) {
  const char *day = http_arg(c, "day"), *only = http_arg(c, "flavour");
  int y, m, d;
  GDateTime *start = day && sscanf(day, "%4d-%2d-%2d", &y, &m, &d) == 3 && strlen(day) == 10
                         ? g_date_time_new_utc(y, m, d, 0, 0, 0)
                         : NULL;
  if (!start)
    return http_reply(c, 400, "{\"error\":{\"type\":\"invalid_request_error\","
                              "\"message\":\"day=YYYY-MM-DD is required\"}}");
  gint64 from = g_date_time_to_unix(start) * 1000, to = from + 86400LL * 1000;
  g_date_time_unref(start);
  GString *csv = g_string_new("type,payment_id,processor_object_id,amount_minor,fee_minor,"
                              "currency,payout_id\n");
  GArray *nets = g_array_new(FALSE, TRUE, sizeof(net));
  store_lock();
  GPtrArray *ops = store_ops();
  for (guint i = 0; i < ops->len; i++) {
    json_t *o = g_ptr_array_index(ops, i);
    gint64 at = json_integer_value(json_object_get(o, "at"));
    const char *fl = js(o, "flavour"), *cur = js(o, "currency");
    int sign;
    const char *type = line_type(js(o, "op"), js(o, "status"), &sign);
    if (!type || at < from || at >= to || (only && strcmp(only, fl) != 0)) continue;
    if (never_settled(type, js(o, "object_id"))) continue;
    int64_t amount = sign * json_integer_value(json_object_get(o, "amount"));
    int64_t fee = json_integer_value(json_object_get(o, "fee"));
    net *n = NULL;
    for (guint k = 0; k < nets->len && !n; k++) {
      net *x = &g_array_index(nets, net, k);
      if (strcmp(x->flavour, fl) == 0 && strcmp(x->currency, cur) == 0) n = x;
    }
    if (!n) {
      net z = {0};
      snprintf(z.flavour, sizeof z.flavour, "%s", fl);
      snprintf(z.currency, sizeof z.currency, "%s", cur);
      g_array_append_val(nets, z);
      n = &g_array_index(nets, net, nets->len - 1);
    }
    n->amount += amount;
    n->fee += fee;
    char po[64];
    payout_id(fl, cur, day, po, sizeof po);
    g_string_append_printf(csv, "%s,", type);
    csv_field(csv, js(o, "payment_id"));
    g_string_append_printf(csv, ",%s,%lld,%lld,%s,%s\n", js(o, "object_id"), (long long)amount,
                           (long long)fee, cur, po);
  }
  store_unlock();
  for (guint k = 0; k < nets->len; k++) {
    net *n = &g_array_index(nets, net, k);
    char po[64];
    payout_id(n->flavour, n->currency, day, po, sizeof po);
    g_string_append_printf(csv, "payout,,%s,%lld,0,%s,%s\n", po,
                           (long long)(n->amount - n->fee), n->currency, po);
  }
  g_array_free(nets, TRUE);
  struct MHD_Response *r = MHD_create_response_from_buffer(csv->len, csv->str,
                                                           MHD_RESPMEM_MUST_COPY);
  g_string_free(csv, TRUE);
  MHD_add_response_header(r, "Content-Type", "text/csv");
  enum MHD_Result ret = MHD_queue_response(c, 200, r);
  MHD_destroy_response(r);
  return ret;
}
