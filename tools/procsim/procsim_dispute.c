/* procsim_dispute.c: what a processor does to a merchant later, on a test's
 * command. A customer disputes a capture (POST /_sim/dispute?charge=ID
 * &amount=N[&fee=F]); the processor withdraws the funds (and its fee),
 * gives them back, and closes the dispute won or lost
 * (POST /_sim/dispute?id=dp_…&action=funds_withdrawn|funds_reinstated|won|lost),
 * and updates it without moving money (…&action=update: evidence, a message;
 * its last_action stays, as PayPal's);
 * a refund that succeeded fails days later (POST /_sim/refund_fail?refund=ID).
 * Each step is logged, counted in /_sim/totals, settled and sent as a
 * webhook. A dispute cannot take more than the capture has left after its
 * refunds and other disputes; while funds are withdrawn they are not
 * refundable. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "procsim.h"

static enum MHD_Result refuse(struct MHD_Connection *c, unsigned status, const char *msg) {
  return http_reply_json(c, status, json_pack("{s:{s:s,s:s}}", "error", "type",
                                              "invalid_request_error", "message", msg));
}

static json_t *dispute_answer(const sim_dispute *d) {
  return json_pack("{s:s,s:s,s:s,s:I,s:I,s:I,s:I,s:s,s:s}", "id", d->id, "charge", d->c->id,
                   "payment_id", d->p->payment_id, "amount", (json_int_t)d->amount, "fee",
                   (json_int_t)d->fee, "withdrawn", (json_int_t)d->withdrawn, "reinstated",
                   (json_int_t)d->reinstated, "status", d->status, "last", d->last);
}

static long long arg_amount(struct MHD_Connection *c, const char *name, long long dflt) {
  const char *v = http_arg(c, name);
  if (!v) return dflt;
  char *end = NULL;
  long long n = strtoll(v, &end, 10);
  return *v && !*end && n >= 0 ? n : -1;
}

/* Under the lock: what is still disputable on capture k. */
static int64_t disputable(const sim_capture *k) {
  int64_t left = k->amount - k->refunded;
  for (guint i = 0; i < k->p->disputes->len; i++) {
    const sim_dispute *d = g_ptr_array_index(k->p->disputes, i);
    if (d->c == k && strcmp(d->status, "won") != 0) left -= d->amount;
  }
  return left;
}

static void move(sim_dispute *d, bool credit, bool fee, int64_t amount) {
  int i = d->nmoves++;
  d->moves[i].credit = credit;
  d->moves[i].fee = fee;
  d->moves[i].amount = amount;
  d->moves[i].at = g_get_real_time();
}

static bool full(const sim_dispute *d) {
  /* room for this withdrawal, its fee, its reinstatement and a lost one's withdrawal */
  return d->nmoves + 4 > (int)(sizeof d->moves / sizeof d->moves[0]);
}

static void withdraw(sim_dispute *d) {
  bool first = d->nmoves == 0;
  move(d, false, false, d->amount);
  if (first && d->fee > 0) move(d, false, true, d->fee); /* PayPal's DISPUTE_FEE, apart */
  d->withdrawn = d->amount;
  d->withdrawn_at = g_get_real_time();
  d->last = "funds_withdrawn";
  /* the fee is charged once, with the first withdrawal (as /_sim/totals
   * and DESIGN's postings have it), not again on a re-withdrawal */
  store_log("dispute_withdrawn", d->p, d->id, d->amount, first ? d->fee : 0, d->status,
            NULL);
  webhook_event("dispute_withdrawn", d->p, d);
}

static void reinstate(sim_dispute *d) {
  int64_t back = d->withdrawn;
  move(d, true, false, back);
  d->reinstated += back;
  d->withdrawn = 0;
  d->reinstated_at = g_get_real_time();
  d->last = "funds_reinstated";
  store_log("dispute_reinstated", d->p, d->id, back, 0, d->status, NULL);
  webhook_event("dispute_reinstated", d->p, d);
}

static enum MHD_Result open_dispute(struct MHD_Connection *c, const char *charge) {
  store_lock();
  sim_capture *k = store_capture(charge);
  long long amount = k ? arg_amount(c, "amount", disputable(k)) : 0;
  long long fee = arg_amount(c, "fee", 0);
  if (!k) {
    store_unlock();
    return refuse(c, 404, "no such capture");
  }
  if (amount <= 0 || fee < 0 || amount > disputable(k)) {
    store_unlock();
    return refuse(c, 400, "amount must be positive and at most what the capture has left");
  }
  sim_dispute *d = g_new0(sim_dispute, 1);
  store_new_id(k->p->fl == STRIPE ? "dp_" : "PP-D-", d->id, sizeof d->id);
  d->p = k->p;
  d->c = k;
  d->amount = amount;
  d->fee = fee;
  d->at = g_get_real_time();
  d->last = "created";
  snprintf(d->status, sizeof d->status, "needs_response");
  g_ptr_array_add(k->p->disputes, d);
  store_log("dispute_created", d->p, d->id, amount, fee, d->status, NULL);
  webhook_event("dispute_created", d->p, d);
  json_t *j = dispute_answer(d);
  store_unlock();
  return http_reply_json(c, 200, j);
}

static sim_dispute *find_dispute(const char *id) {
  GPtrArray *all = store_all_payments();
  for (guint i = 0; i < all->len; i++) {
    sim_payment *p = g_ptr_array_index(all, i);
    for (guint k = 0; k < p->disputes->len; k++) {
      sim_dispute *d = g_ptr_array_index(p->disputes, k);
      if (strcmp(d->id, id) == 0) return d;
    }
  }
  return NULL;
}

enum MHD_Result dispute_handle(struct MHD_Connection *c) {
  const char *charge = http_arg(c, "charge"), *id = http_arg(c, "id");
  const char *action = http_arg(c, "action");
  if (charge) return open_dispute(c, charge);
  if (!id || !action) return refuse(c, 400, "charge=, or id= and action=");
  store_lock();
  sim_dispute *d = find_dispute(id);
  bool open = d && strcmp(d->status, "needs_response") == 0;
  const char *bad = !d ? "no such dispute" : !open ? "the dispute is closed" : NULL;
  if (!bad && strcmp(action, "funds_withdrawn") == 0) {
    if (d->withdrawn) bad = "funds already withdrawn";
    else if (full(d)) bad = "too many money movements on this dispute";
    else withdraw(d);
  } else if (!bad && strcmp(action, "funds_reinstated") == 0) {
    if (!d->withdrawn) bad = "no funds withdrawn";
    else reinstate(d);
  } else if (!bad && (strcmp(action, "won") == 0 || strcmp(action, "lost") == 0)) {
    bool won = strcmp(action, "won") == 0;
    if (won && d->withdrawn) reinstate(d);
    if (!won && !d->withdrawn) withdraw(d);
    snprintf(d->status, sizeof d->status, "%s", action);
    d->last = "closed";
    store_log(won ? "dispute_won" : "dispute_lost", d->p, d->id, d->amount, 0, d->status, NULL);
    webhook_event("dispute_closed", d->p, d);
  } else if (!bad && strcmp(action, "update") == 0) {
    store_log("dispute_updated", d->p, d->id, 0, 0, d->status, NULL);
    webhook_event("dispute_updated", d->p, d);
  } else if (!bad) {
    bad = "action is funds_withdrawn, funds_reinstated, update, won or lost";
  }
  json_t *j = bad ? NULL : dispute_answer(d);
  store_unlock();
  if (bad) return refuse(c, !d ? 404 : 409, bad);
  return http_reply_json(c, 200, j);
}

enum MHD_Result dispute_refund_fail(struct MHD_Connection *c) {
  const char *id = http_arg(c, "refund"), *reason = http_arg(c, "reason");
  store_lock();
  sim_refund *r = store_refund(id);
  if (!r || r->failed) {
    store_unlock();
    return refuse(c, r ? 409 : 404, r ? "the refund already failed" : "no such refund");
  }
  r->failed = true;
  r->failed_at = g_get_real_time();
  r->failure_reason = g_strdup(reason ? reason : "expired_or_canceled_card");
  for (guint i = 0; i < r->parts->len; i++) {
    refund_part *part = &g_array_index(r->parts, refund_part, i);
    part->c->refunded -= part->amount; /* refundable again */
  }
  r->p->refunded -= r->amount;
  store_log("refund_failed", r->p, r->id, r->amount, 0, "failed", NULL);
  webhook_event("refund_failed", r->p, r);
  json_t *j = json_pack("{s:s,s:s,s:I,s:s}", "id", r->id, "status", "failed", "amount",
                        (json_int_t)r->amount, "failure_reason", r->failure_reason);
  store_unlock();
  return http_reply_json(c, 200, j);
}
