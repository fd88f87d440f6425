/* event_map: see event_map.h. */
#include "event_map.h"

#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "money.h"
#include "normalise.h"

static bool is(const char *a, const char *b) { return a && strcmp(a, b) == 0; }

static const char *str_at(json_t *o, const char *k) {
  return json_string_value(json_object_get(o, k));
}

/* A PayPal {"currency_code","value"} in minor units, -1 when absent or malformed. */
static int64_t paypal_minor(json_t *a) {
  const char *cur = str_at(a, "currency_code");
  int exp = cur ? money_currency_exponent(cur) : -1;
  int64_t v;
  return exp >= 0 && wh_decimal_to_minor(str_at(a, "value"), exp, &v) == 0 ? v : -1;
}

/* Stripe: an integer; PayPal: {"currency_code","value"} (or procsim's
 * integer fee_minor on a capture). -1 when absent or malformed. */
static int64_t fee_of(json_t *obj, bool paypal) {
  json_t *f = json_object_get(obj, "fee");
  if (json_is_integer(f) && json_integer_value(f) >= 0) return json_integer_value(f);
  if (paypal && json_is_object(f) && paypal_minor(f) >= 0) return paypal_minor(f);
  json_t *fm = json_object_get(obj, "fee_minor");
  if (json_is_integer(fm) && json_integer_value(fm) >= 0) return json_integer_value(fm);
  return -1;
}

/* A fee movement: PayPal's money_movement reasons DISPUTE_FEE,
 * CHARGEBACK_FEE, DISPUTE_SETTLEMENT_FEE (any reason naming a fee). The
 * fee is the dispute's `fee`, posted once (029), never a withdrawal. */
static bool fee_reason(const char *reason) { return reason && strstr(reason, "FEE") != NULL; }

/* A PayPal dispute's money_movements (cumulative, append-only: each entry
 * one movement, its index its identity): the seller's DEBITs and CREDITs
 * of the disputed funds so far (fee movements not counted). Both -1 when
 * the list is absent or not a list. A movement of part of the disputed
 * amount counts as one movement all the same (the postings are of the
 * dispute's amount, as 029's); m->partial says the list holds one.
 * Returns the fee the list shows: the sum of the seller's fee DEBITs, each
 * with an amount in the dispute's currency; -1 when there is none or one
 * cannot be read (then no fee is known from the list). */
static int64_t movements(json_t *res, ev_map *m) {
  json_t *mv = json_object_get(res, "money_movements");
  if (!json_is_array(mv)) return -1;
  m->withdrawals = m->reinstatements = 0;
  json_t *da = json_object_get(res, "dispute_amount");
  int64_t disputed = paypal_minor(da), fee = -1;
  bool fee_unreadable = false;
  size_t i;
  json_t *x;
  json_array_foreach(mv, i, x) {
    if (!is(str_at(x, "affected_party"), "SELLER")) continue;
    if (fee_reason(str_at(x, "reason"))) {
      if (!is(str_at(x, "type"), "DEBIT")) continue;
      json_t *fa = json_object_get(x, "amount");
      int64_t f = paypal_minor(fa);
      if (f < 0 || !is(str_at(fa, "currency_code"), str_at(da, "currency_code")))
        fee_unreadable = true;
      else
        fee = (fee < 0 ? 0 : fee) + f;
      continue;
    }
    bool debit = is(str_at(x, "type"), "DEBIT");
    if (!debit && !is(str_at(x, "type"), "CREDIT")) continue;
    if (debit) m->withdrawals++;
    else m->reinstatements++;
    int64_t a = paypal_minor(json_object_get(x, "amount"));
    if (disputed >= 0 && a >= 0 && a != disputed) m->partial = true;
  }
  return fee_unreadable ? -1 : fee;
}

static void set(char *dst, size_t n, const char *s) { snprintf(dst, n, "%s", s ? s : ""); }

static int stripe(const Payments__V1__ProcessorEvent *e, json_t *obj, ev_map *m) {
  const char *t = e->type;
  bool sale = !*e->payment_intent_id; /* a sale's charge names no intent */
  if (is(t, "charge.succeeded") && sale) {
    m->action = EV_CHARGE_SUCCEEDED;
    m->fee_minor = fee_of(obj, false);
  } else if (is(t, "charge.failed") && sale) {
    m->action = EV_CHARGE_FAILED;
    const char *dc = str_at(obj, "failure_code");
    set(m->decline_code, sizeof m->decline_code, dc ? dc : str_at(obj, "decline_code"));
  } else if ((is(t, "refund.updated") || is(t, "refund.failed") || is(t, "charge.refund.updated")) &&
             is(e->status, "failed")) {
    m->action = EV_REFUND_FAILED;
    set(m->operation_id, sizeof m->operation_id, str_at(json_object_get(obj, "metadata"), "refund_id"));
  } else if ((is(t, "refund.updated") || is(t, "refund.created") || is(t, "charge.refund.updated")) &&
             is(e->status, "succeeded")) {
    m->action = EV_REFUND_SUCCEEDED;
    set(m->operation_id, sizeof m->operation_id, str_at(json_object_get(obj, "metadata"), "refund_id"));
  } else if (is(t, "charge.dispute.updated")) {
    /* evidence, metadata: no status and no money moved (recorded only) */
  } else if (strncmp(t, "charge.dispute.", 15) == 0) {
    const char *st = is(t, "charge.dispute.created")           ? "open"
                     : is(t, "charge.dispute.funds_withdrawn")  ? "withdrawn"
                     : is(t, "charge.dispute.funds_reinstated") ? "reinstated"
                     : is(t, "charge.dispute.closed") && (is(e->status, "won") || is(e->status, "lost"))
                         ? e->status
                         : NULL;
    if (!st) return -1;
    m->action = EV_DISPUTE;
    set(m->dispute_status, sizeof m->dispute_status, st);
    m->fee_minor = fee_of(obj, false);
  }
  return 0;
}

static int paypal(const Payments__V1__ProcessorEvent *e, json_t *res, ev_map *m) {
  const char *t = e->type;
  bool sale = !*e->payment_intent_id; /* a sale's capture names no authorization */
  if (is(t, "PAYMENT.CAPTURE.COMPLETED") && sale) {
    m->action = EV_CHARGE_SUCCEEDED;
    /* PayPal states a capture's fee in its seller_receivable_breakdown
     * (procsim's fee_minor is its own addition): not 0 for want of it. */
    int64_t pf = paypal_minor(
        json_object_get(json_object_get(res, "seller_receivable_breakdown"), "paypal_fee"));
    m->fee_minor = pf >= 0 ? pf : fee_of(res, true);
  } else if (is(t, "PAYMENT.CAPTURE.DENIED") && sale) {
    m->action = EV_CHARGE_FAILED;
    set(m->decline_code, sizeof m->decline_code, str_at(res, "reason"));
  } else if (is(t, "PAYMENT.REFUND.FAILED")) {
    m->action = EV_REFUND_FAILED;
    set(m->operation_id, sizeof m->operation_id, str_at(res, "invoice_id"));
  } else if (is(t, "PAYMENT.CAPTURE.REFUNDED") && is(e->status, "COMPLETED")) {
    m->action = EV_REFUND_SUCCEEDED;
    set(m->operation_id, sizeof m->operation_id, str_at(res, "invoice_id"));
  } else if (strncmp(t, "CUSTOMER.DISPUTE.", 17) == 0) {
    const char *last = str_at(res, "last_action"), *out = str_at(res, "outcome");
    const char *st = is(t, "CUSTOMER.DISPUTE.CREATED") ? "open"
                     : is(t, "CUSTOMER.DISPUTE.RESOLVED") && (is(out, "won") || is(out, "lost")) ? out
                     : is(t, "CUSTOMER.DISPUTE.UPDATED") && is(last, "funds_withdrawn")  ? "withdrawn"
                     : is(t, "CUSTOMER.DISPUTE.UPDATED") && is(last, "funds_reinstated") ? "reinstated"
                     : is(t, "CUSTOMER.DISPUTE.UPDATED") ? "open"
                                                          : NULL;
    if (!st) return -1;
    m->action = EV_DISPUTE;
    set(m->dispute_status, sizeof m->dispute_status, st);
    /* Real PayPal disputes state no `fee`: the fee is a movement of its
     * own (DISPUTE_FEE), read from the list when `fee` is absent. */
    int64_t listed_fee = movements(res, m);
    m->fee_minor = fee_of(res, true);
    if (m->fee_minor < 0) m->fee_minor = listed_fee;
  }
  return 0;
}

int ev_map_event(const Payments__V1__ProcessorEvent *e, ev_map *m) {
  memset(m, 0, sizeof *m);
  m->fee_minor = -1;
  m->withdrawals = m->reinstatements = -1;
  json_t *root = json_loadb((const char *)e->raw_body.data, e->raw_body.len, 0, NULL);
  bool pp = e->flavour == PAYMENTS__V1__PROCESSOR_FLAVOUR__PROCESSOR_FLAVOUR_PAYPAL;
  json_t *obj = pp ? json_object_get(root, "resource")
                   : json_object_get(json_object_get(root, "data"), "object");
  int rc = !e->type ? -1 : pp ? paypal(e, obj, m) : stripe(e, obj, m);
  json_decref(root);
  if (rc != 0) m->action = EV_NONE;
  return rc;
}

const char *ev_action_name(ev_action a) {
  switch (a) {
  case EV_CHARGE_SUCCEEDED: return "charge_succeeded";
  case EV_CHARGE_FAILED: return "charge_failed";
  case EV_REFUND_FAILED: return "refund_failed";
  case EV_REFUND_SUCCEEDED: return "refund_succeeded";
  case EV_DISPUTE: return "dispute";
  case EV_NONE: break;
  }
  return "none";
}
