/* charge: the item state machine — durable attempts, concurrent HTTP,
 * recorded answers, as a continuous pipeline. Every payment is an item that
 * moves through its states on its own; each cycle admits new messages,
 * plans one round trip to Postgres (charge_db.c), starts what is ready while
 * in-flight slots are free (charge_http.c), settles whatever answered,
 * records and emits what finished; kloop commits each partition up to its
 * first unfinished payment. A slow answer holds only its own payment.
 *
 * An item's states (charge_item.h) and every transition, all made by step():
 *
 *   admitted ─┬─ another of its payment in progress ─► WAIT_DUP ─(its turn)─┐
 *             └──────────────────────────────────────────────────────────► READ
 *   READ     ─ trip failed / state unread, or processor not configured ─► READ (later)
 *            ─ unknown payment, event disagrees, not charging ──────────► DONE
 *            ─ live attempt, its first send counted in the trip ────────► INFLIGHT
 *            ─ live attempt ────────────────────────────────────────────► READY
 *   READY    ─ due, a slot free, the breaker lets it go ────────────────► SENDING
 *            ─ circuit open, never received, a next processor ──────────► FAILOVER
 *            ─ past the deadline and never received ───────────────────► RECORD (failed)
 *            ─ circuit open otherwise ──────────────────────────────────► READY (100 ms)
 *   SENDING  ─ counted ─► INFLIGHT;  no longer live ─► READ;  trip failed ─► READY
 *   (INFLIGHT is entered only if libcurl takes the request; else REFUSED)
 *   INFLIGHT ─ succeeded, declined, or a 4xx with no earlier possible send ► RECORD
 *            ─ nothing written, never received, a next processor ───────► REFUSED_FAILOVER
 *            ─ nothing written ─────────────────────────────────────────► REFUSED
 *            ─ ambiguous (timeout, reset, 5xx, a written request lost,
 *              a 4xx after an earlier send that may have arrived) ──────► READY (back-off)
 *   REFUSED  ─ booked ─► READY;   REFUSED_FAILOVER, FAILOVER ─ booked ─► READ
 *   RECORD   ─ recorded ─► (as READ);  trip failed ─► RECORD;  unread ─► READ
 *   any state in a trip ─ Postgres refuses its data alone (isolated) ───► DONE (DLQ)
 *   DONE     ─ emitted (charged event, stored outcome, or DLQ) and dropped.
 *
 *   READY with `lookup` (after an ambiguous answer, or taken up with a send
 *   that may have arrived) ─ a status query instead of a send ─► INFLIGHT;
 *   its answer: found ─► RECORD, key unknown ─► READY (send now, same key),
 *   no verdict ─► READY (back-off)   (charge_lookup.h)
 *   Past the processor's key lifetime (first send older than its window) it
 *   is never sent again: only searched for by payment id; not found ─► READY
 *   (long back-off, alerted once)   (charge_resolve.h)
 *   an operation (capture/void/refund) takes its own steps: charge_ops.h.
 *
 * An ambiguous attempt never ends `failed`: it stays on the same processor
 * with the same key (capped back-off), asked about before any re-send.
 * Past the deadline (PAYSTREAM_CHARGE_DEADLINE_MS, counted from when this
 * worker took the attempt up, so a restart after an outage does not fire it
 * at once) an interim `pending` outcome is published once; the terminal one
 * follows the processor's answer. Only an attempt nobody ever received ends
 * `failed` at the deadline. */
#include "clock.h"
#include "charge.h"

#include <curl/curl.h>
#include <glib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "charge_db.h"
#include "charge_http.h"
#include "charge_item.h"
#include "charge_ops.h"
#include "charge_resolve.h"
#include "log.h"
#include "metrics.h"
#include "pg.h"

/* Interim, like review: the processor's answer is awaited (lib/event.h has
 * the other statuses). */


/* What a transition may use: the cycle's time, its trip, free slots. */
typedef struct cycle {
  stage_ctx *ctx;
  charge_state *st;
  trip *t;
  size_t room;
  int64_t now;
} cycle;

typedef enum item_event {
  EV_PLAN,   /* the cycle plans its trip */
  EV_TRIP,   /* the trip ran; x->said says what it did for the item */
  EV_ANSWER, /* its request finished; x->ans is the answer */
} item_event;

void charge_idempotency_key(const char *payment_id, const char *processor, char *out, size_t len) {
  snprintf(out, len, "paystream:%s:%s", payment_id, processor);
}

long charge_backoff_ms(int round, double jitter) {
  long base = 100;
  for (int i = 0; i < round && base < 2000; i++) base *= 2;
  if (base > 2000) base = 2000;
  if (jitter < 0) jitter = 0;
  if (jitter >= 1) jitter = 0.999999;
  return base + (long)(jitter * (double)(base / 2 + 1));
}

static log_ctx item_ctx(const stage_ctx *ctx, const citem *x) {
  log_ctx lc = {ctx->cfg->topics.fraud_scored, x->partition, x->offset, x->ev->payment_id, NULL};
  return lc;
}

static bool may_have_it(const citem *x) { return x->db.sends > x->db.refused; }

/* The outcome recorded with a definite non-success, built once. */
static void build_record_outcome(citem *x, const charge_state *st) {
  ps_event *ev = x->ev;
  bool dec = x->ans.kind == CHARGE_DECLINED;
  if (!dec && !x->fail_code[0]) snprintf(x->fail_code, sizeof x->fail_code, "processor_rejected");
  ps_charge ch = PAYMENTS__V1__CHARGE_RESULT__INIT;
  ch.processor = (char *)st->proc[x->db.proc].name;
  ps_charge *saved = ev->charge;
  ev->charge = &ch;
  outcome_buf ob;
  char msg[200];
  if (dec) {
    snprintf(msg, sizeof msg, "the card was declined (%s)", x->ans.decline_code);
    /* Stripe's shape: the processor's code and the issuer's reason apart
     * (the payment row keeps the decline code as its error_code). */
    outcome_from_event(&ob, ev, OUTCOME_DECLINED,
                       x->ans.error_code[0] ? x->ans.error_code : "card_declined", msg);
    ob.o.decline_code = x->ans.decline_code;
  } else {
    outcome_from_event(&ob, ev, OUTCOME_FAILED, x->fail_code, x->ans.error);
  }
  free(x->record_outcome_hex);
  x->record_outcome_hex = outcome_pack_hex(&ob.o);
  ev->charge = saved;
}

static void to_record(const charge_state *st, citem *x) {
  x->st = IT_RECORD;
  if (x->ans.kind != CHARGE_SUCCEEDED) build_record_outcome(x, st);
}

/* Ends the payment ourselves, never charged (nobody ever received it):
 * recorded `failed` with code. */
static void end_failed(const charge_state *st, citem *x, const char *code, const char *why) {
  charge_answer_clear(&x->ans);
  x->ans.kind = CHARGE_REJECTED;
  x->never_sent = true;
  snprintf(x->fail_code, sizeof x->fail_code, "%s", code);
  snprintf(x->ans.error, sizeof x->ans.error, "%s", why);
  to_record(st, x);
}

/* Leaves the worker with its reason (dead-lettered): retrying would fail the
 * same way and hold its partition. It still ends where that is safe, in a
 * standalone transaction (charge_db_isolate_end), as the ledger does: `failed`
 * with an outcome when no attempt may hold the charge (never sent, or every
 * send provably refused); otherwise it stays `charging`, listed in
 * charge_unresolved, and its interim `pending` outcome is published. */
static void isolate(cycle *cy, citem *x) {
  log_ctx lc = item_ctx(cy->ctx, x);
  log_at(LOG_ERROR, &lc, "ALERT charge isolated a payment Postgres refuses: %s", x->reason);
  outcome_buf ob;
  ps_charge *saved = x->ev->charge;
  x->ev->charge = NULL; /* nothing charged: no processor in the outcome */
  outcome_from_event(&ob, x->ev, OUTCOME_FAILED, "charge_data_error",
                     "the charge stage could not store this payment's data; it was not charged");
  char *hex = outcome_pack_hex(&ob.o);
  x->ev->charge = saved;
  char err[512];
  int rc = charge_db_isolate_end(cy->ctx, x, hex, err, sizeof err);
  free(hex);
  cy->now = ps_mono_ms();
  if (rc != 0 && !pg_err_is_data_error(err)) {
    /* Nothing of its end was written: take it up again from Postgres. */
    log_at(LOG_WARN, &lc, "ending the isolated payment failed (tried again): %s", err);
    x->reason[0] = 0;
    x->st = IT_READ;
    x->next_try_ms = cy->now + 500;
    return;
  }
  if (rc != 0)
    log_at(LOG_ERROR, &lc,
           "ALERT the isolated payment's end was refused too (%s); left as it was, listed in "
           "charge_unresolved",
           err);
  else if (x->may_hold)
    log_at(LOG_ERROR, &lc,
           "ALERT isolated payment may have been charged: left charging, pending, listed in "
           "charge_unresolved");
  metric_add(cy->st->m_isolated, 1);
  x->st = IT_DONE;
}

/* Whether the event's money is the payment's as Postgres recorded it. */
static bool event_agrees(citem *x) {
  const ps_intent *in = x->ev->intent;
  const item_row *d = &x->db;
  const char *what = in->amount->amount_minor != d->amount_minor         ? "amount"
                     : strcmp(in->amount->currency, d->currency) != 0     ? "currency"
                     : !d->payment_method ||
                             strcmp(in->payment_method->id, d->payment_method) != 0
                         ? "payment method"
                         : NULL;
  if (!what) return true;
  snprintf(x->reason, sizeof x->reason, "event disagrees with postgres: %s", what);
  return false;
}

static void start(cycle *cy, citem *x);

/* After its state was read or written: what the item does next. */
static void classify(cycle *cy, citem *x, bool send_counted) {
  const item_row *d = &x->db;
  log_ctx lc = item_ctx(cy->ctx, x);
  x->st = IT_DONE;
  if (!d->known) return;
  if (!event_agrees(x)) {
    log_at(LOG_ERROR, &lc, "ALERT %s; dead-lettered, nothing charged for it", x->reason);
    metric_add(cy->st->m_mismatch, 1);
    return;
  }
  if (!d->has_attempt && !d->outcome_hex) {
    /* Not scored (review, received: a forged or early ALLOW): never charged,
     * never silently dropped. */
    snprintf(x->reason, sizeof x->reason, "payment is %s, not chargeable: nothing charged",
             d->pay_status);
    log_at(LOG_ERROR, &lc, "ALERT %s; dead-lettered", x->reason);
    metric_add(cy->st->m_mismatch, 1);
    return;
  }
  if (!d->has_attempt || strcmp(d->state, "charging") != 0) return;
  if (!x->since_ms) x->since_ms = cy->now;
  if (d->proc < 0) {
    /* Its processor is no longer configured: it may hold the charge, so
     * nothing else may be tried. Look again later; an operator must act. */
    log_at(LOG_ERROR, &lc, "ALERT live attempt at %s, a processor that is not configured; waiting",
           d->proc_name ? d->proc_name : "?");
    metric_add(cy->st->m_unconfigured, 1);
    x->st = IT_READ;
    x->next_try_ms = cy->now + 5000;
    return;
  }
  x->st = IT_READY;
  /* Taken up with a send that may have arrived (a restart, another
   * worker's, or ours): the processor is asked before anything is re-sent. */
  if (!send_counted && may_have_it(x)) x->lookup = true;
  if (send_counted) {
    breaker_allow(&cy->st->proc[d->proc].br, cy->now); /* closed: always */
    start(cy, x);
  }
}

/* Starts the request of an item whose send is counted. */
static void start(cycle *cy, citem *x) {
  charge_state *st = cy->st;
  const item_row *d = &x->db;
  charge_request rq = {x->ev->payment_id, d->amount_minor, d->currency, d->payment_method,
                       d->authorize, false, false};
  int rc = charge_http_start(&st->http, &x->call, &st->proc[d->proc], &rq, x);
  if (!x->db.first_sent_ms) x->db.first_sent_ms = cy->now; /* counted: Postgres stamped it */
  if (rc == 0) {
    x->st = IT_INFLIGHT;
    return;
  }
  /* Nothing was written: counted as a refused send. A request that cannot
   * be built is a data error: isolated once the refusal is booked (its end
   * is then provably `failed`), never sent as something else. */
  breaker_release(&st->proc[d->proc].br);
  if (rc == CHARGE_HTTP_UNBUILDABLE) x->data_error = true;
  else metric_add(st->m_not_started, 1);
  x->db.sends++;
  x->db.refused++;
  x->st = IT_REFUSED;
  x->next_try_ms = cy->now + 500;
}

/* Due and live: send, fail over, end it, or wait. */
static void plan_ready(cycle *cy, citem *x) {
  charge_state *st = cy->st;
  trip *t = cy->t;
  processor *pr = &st->proc[x->db.proc];
  bool elsewhere = !may_have_it(x) && x->db.proc + 1 < st->nproc;
  if (!may_have_it(x) && cy->now - x->since_ms >= st->deadline_ms) {
    /* Nobody ever received it: not charged. (One that may have it is never
     * given up: emit_pending says so past the deadline.) */
    end_failed(st, x, "processor_unavailable",
               "no processor could be reached before the deadline; the payment was not charged");
    t->rec[t->nrec++] = x;
  } else if (t->nsend < cy->room) {
    /* Past the key's lifetime, one that may be there is never sent again. */
    if (charge_key_past(st, x, cy->now)) x->lookup = true;
    if (x->lookup && may_have_it(x)) {
      /* Its earlier send may have arrived: ask, never re-send blindly. */
      if (!breaker_allow(&pr->br, cy->now)) x->next_try_ms = cy->now + 100;
      else if (charge_resolve_start(st, x, cy->now)) cy->room--;
    } else if (breaker_allow(&pr->br, cy->now)) {
      x->st = IT_SENDING;
      t->send[t->nsend++] = x;
    } else if (elsewhere) {
      x->st = IT_FAILOVER; /* circuit open and never received */
      t->book[t->nbook++] = x;
    } else {
      x->next_try_ms = cy->now + 100; /* it may have it, or nowhere else: wait */
    }
  }
}

/* The breaker learns from a finished call (a refusal of nothing is no
 * verdict); query: a status query's answer, neutral unless a failure
 * (breaker_record_query). */
static void breaker_learn(processor *pr, int64_t now, bool query, bool failure) {
  breaker_state before = breaker_get_state(&pr->br, now);
  if (query) breaker_record_query(&pr->br, now, failure);
  else breaker_record(&pr->br, now, failure);
  breaker_state after = breaker_get_state(&pr->br, now);
  if (after != before)
    log_warn("circuit for %s: %s -> %s", pr->name, breaker_state_name(before),
             breaker_state_name(after));
  processor_export_breaker(pr, after);
}

/* The processor's answer to "what did this key get" (or, past the key's
 * lifetime, to the search by payment id): found, it is recorded exactly as
 * if it had been the reply (the conditional record then settles nothing an
 * other writer settled first); otherwise charge_resolve.h says whether it is
 * sent again now (same key) or asked about later. */
static void settle_lookup(cycle *cy, citem *x) {
  processor *pr = &cy->st->proc[x->db.proc];
  charge_kind k = x->ans.kind;
  bool found = k == CHARGE_SUCCEEDED || k == CHARGE_DECLINED || k == CHARGE_REJECTED;
  breaker_learn(pr, cy->now, true, !found && !x->ans.lookup_unknown && !x->ans.search_none);
  resolve_said r = charge_resolve_answer(cy->ctx, cy->st, x, cy->now);
  if (r == RESOLVE_RECORD) to_record(cy->st, x);
  else x->st = IT_READY;
}

/* A finished request: the breaker learns, a refused send adds to the proof,
 * a definite answer is recorded, anything else is retried on the same
 * processor with the same key. */
static void settle(cycle *cy, citem *x) {
  charge_state *st = cy->st;
  processor *pr = &st->proc[x->db.proc];
  if (x->ans.looked_up) {
    settle_lookup(cy, x);
    return;
  }
  if (x->ans.kind == CHARGE_REJECTED && may_have_it(x)) {
    /* A 401 after a key rotation, a 403/404 from a proxy: it says nothing
     * about an earlier send that may have arrived. */
    x->ans.kind = CHARGE_UNKNOWN;
  }
  charge_kind k = x->ans.kind;
  breaker_learn(pr, cy->now, false,
                k == CHARGE_NOT_SENT || k == CHARGE_UNKNOWN || k == CHARGE_RETRYABLE);
  x->db.sends++;
  if (k == CHARGE_SUCCEEDED || k == CHARGE_DECLINED || k == CHARGE_REJECTED) {
    to_record(st, x);
    return;
  }
  x->st = IT_READY;
  if (k == CHARGE_NOT_SENT) {
    x->db.refused++;
    x->st = IT_REFUSED;
    if (!may_have_it(x) && x->db.proc + 1 < st->nproc) {
      x->st = IT_REFUSED_FAILOVER; /* nobody has it: safe to go elsewhere */
      return;
    }
    /* The last processor: wait for it, as for an ambiguous answer. */
  }
  if (k != CHARGE_NOT_SENT) x->lookup = true; /* it may have arrived: ask next time */
  log_ctx lc = item_ctx(cy->ctx, x);
  log_at(LOG_WARN, &lc, "charge at %s not definite (%s): %s", pr->name, charge_kind_name(k),
         x->ans.error);
  x->next_try_ms = cy->now + charge_backoff_ms(x->tries++, (double)rand() / ((double)RAND_MAX + 1));
}

/* The one transition function: every change of x->st is made here (or in
 * the helpers it calls for the case at hand). */
static void step(cycle *cy, citem *x, item_event ev) {
  charge_state *st = cy->st;
  trip *t = cy->t;
  if (x->op && x->st != IT_WAIT_DUP) {
    if (ev != EV_TRIP) charge_op_step(cy->ctx, st, x, ev == EV_ANSWER, cy->now, &cy->room);
    return;
  }
  switch (x->st) {
  case IT_WAIT_DUP:
    if (ev != EV_PLAN || g_hash_table_contains(st->active, x->ev->payment_id)) return;
    g_hash_table_add(st->active, x->ev->payment_id); /* its turn */
    x->st = IT_READ;
    x->next_try_ms = 0;
    if (x->op) { /* an operation: its own steps (charge_ops.c) */
      charge_op_step(cy->ctx, st, x, ev == EV_ANSWER, cy->now, &cy->room);
      return;
    }
    /* read in this cycle's trip */
    __attribute__((fallthrough));
  case IT_READ:
    if (ev == EV_PLAN) {
      if (x->next_try_ms <= cy->now) t->fresh[t->nfresh++] = x;
    } else if (x->said == SAID_ISOLATED) {
      isolate(cy, x);
    } else if (x->said == SAID_FAILED || x->said == SAID_UNREAD) {
      x->next_try_ms = cy->now + 500;
    } else {
      classify(cy, x, x->said == SAID_COUNTED);
    }
    return;
  case IT_READY:
    if (ev == EV_PLAN && x->next_try_ms <= cy->now) plan_ready(cy, x);
    return;
  case IT_SENDING:
    if (ev != EV_TRIP) return;
    if (x->said == SAID_COUNTED) {
      start(cy, x);
      return;
    }
    breaker_release(&st->proc[x->db.proc].br); /* not sent: no verdict */
    if (x->said == SAID_ISOLATED) {
      isolate(cy, x);
    } else if (x->said == SAID_FAILED) {
      x->st = IT_READY;
      x->next_try_ms = cy->now + 500;
    } else {
      x->st = IT_READ; /* moved on elsewhere: read the truth */
      x->next_try_ms = 0;
    }
    return;
  case IT_INFLIGHT:
    if (ev == EV_ANSWER) settle(cy, x);
    return;
  case IT_REFUSED:
  case IT_REFUSED_FAILOVER:
  case IT_FAILOVER:
    if (ev == EV_PLAN) {
      t->book[t->nbook++] = x;
    } else if (x->said == SAID_ISOLATED) {
      isolate(cy, x);
    } else if (x->said == SAID_FAILED) {
      /* The proof was not written: Postgres says what is live (without the
       * proof, it stays on the same processor). */
      x->st = IT_READ;
      x->next_try_ms = cy->now + 500;
    } else if (x->data_error) {
      snprintf(x->reason, sizeof x->reason,
               "the %s request cannot be built from the payment's data: nothing sent",
               x->db.authorize ? "authorization" : "charge");
      isolate(cy, x);
    } else if (x->st == IT_REFUSED) {
      x->st = IT_READY; /* at its back-off */
    } else {
      log_ctx lc = item_ctx(cy->ctx, x);
      log_at(LOG_WARN, &lc, "%s never received the charge; failing over to %s",
             st->proc[x->db.proc].name, st->proc[x->db.proc + 1].name);
      x->st = IT_READ;
      x->next_try_ms = 0;
    }
    return;
  case IT_RECORD:
    if (ev == EV_PLAN) {
      t->rec[t->nrec++] = x;
      return;
    }
    /* Our conditional record changed nothing: whoever settled it emits. */
    if (x->said != SAID_FAILED) x->elsewhere = x->said != SAID_WRITTEN;
    if (x->said == SAID_ISOLATED) {
      isolate(cy, x);
    } else if (x->said == SAID_UNREAD) {
      x->st = IT_READ; /* recorded: learn its state from Postgres */
      x->next_try_ms = cy->now + 500;
    } else if (x->said != SAID_FAILED) { /* failed: recorded next cycle */
      classify(cy, x, false);
    }
    return;
  case IT_DONE:
    return;
  }
}

/* ---- the pending set ---------------------------------------------------------- */

void charge__item_free(charge_state *st, citem *x) {
  if (x->st == IT_INFLIGHT) {
    charge_http_cancel(&st->http, &x->call);
    breaker_release(&st->proc[x->db.proc].br);
  }
  if (x->st != IT_WAIT_DUP) g_hash_table_remove(st->active, x->ev->payment_id);
  charge_db_row_free(&x->db);
  charge_answer_clear(&x->ans);
  charge_op_free(x->op);
  event_free(x->ev);
  free(x->record_outcome_hex);
  free(x->raw);
  free(x->key);
  free(x);
}

void charge__keep(charge_state *st, citem *x) {
  if (st->n == st->cap) {
    size_t cap = st->cap ? st->cap * 2 : 256;
    citem **nv = realloc(st->items, cap * sizeof *nv);
    if (!nv) abort();
    st->items = nv;
    st->cap = cap;
  }
  st->items[st->n++] = x;
}

/* ---- the cycle ------------------------------------------------------------------ */

static void on_answer(void *owner, const charge_answer *a, void *ud) {
  citem *x = owner;
  cycle *cy = ud;
  charge_answer_clear(&x->ans);
  x->ans = *a; /* ours now */
  cy->now = ps_mono_ms(); /* the drive may have waited */
  step(cy, x, EV_ANSWER);
}

/* Plans the cycle's round trip; first attempts go out right after it, as
 * many as have a slot after the due sends, when the primary is healthy; the
 * rest are opened now and sent when slots free (counted then). */
static void plan(cycle *cy) {
  charge_state *st = cy->st;
  for (size_t i = 0; i < st->n; i++) step(cy, st->items[i], EV_PLAN);
  trip *t = cy->t;
  size_t left = cy->room > t->nsend ? cy->room - t->nsend : 0;
  t->neager = breaker_get_state(&st->proc[0].br, cy->now) != BREAKER_CLOSED ? 0
              : t->nfresh < left                                             ? t->nfresh
                                                                             : left;
  for (int p = 0; p < st->nproc; p++)
    processor_export_breaker(&st->proc[p], breaker_get_state(&st->proc[p].br, cy->now));
}

/* Applies the trip's results, group by group. */
static void apply(cycle *cy) {
  trip *t = cy->t;
  for (size_t i = 0; i < t->nsend; i++) step(cy, t->send[i], EV_TRIP);
  for (size_t i = 0; i < t->nbook; i++) step(cy, t->book[i], EV_TRIP);
  for (size_t i = 0; i < t->nrec; i++) step(cy, t->rec[i], EV_TRIP);
  for (size_t i = 0; i < t->nfresh; i++) step(cy, t->fresh[i], EV_TRIP);
}

/* One cycle: answers in (waiting at most wait_ms), one round trip to
 * Postgres, requests out, finished payments emitted. */
void charge__progress(stage_ctx *ctx, outbox *out, int wait_ms) {
  charge_state *st = ctx->state;
  citem **sel = malloc((4 * st->n + 1) * sizeof *sel);
  if (!sel) abort();
  trip t = {.fresh = sel, .book = sel + st->n, .rec = sel + 2 * st->n, .send = sel + 3 * st->n};
  cycle cy = {ctx, st, &t, 0, ps_mono_ms()};
  charge_http_drive(&st->http, st->http.inflight ? wait_ms : 0, on_answer, &cy);
  cy.now = ps_mono_ms();
  size_t max = (size_t)st->max_inflight;
  cy.room = st->http.inflight < max ? max - st->http.inflight : 0;
  charge_resolve_refresh(ctx, st, cy.now); /* the key lifetimes, every 10 s */
  plan(&cy);
  charge_db_trip(ctx, st->proc, st->nproc, &t);
  cy.now = ps_mono_ms();
  apply(&cy);
  free(sel);
  charge_http_run_timers(&st->http); /* the new requests leave now */
  charge__emit_pending(ctx, st, out, cy.now);
  charge__emit_done(ctx, st, out);
  metric_set(st->m_inflight, (double)st->http.inflight);
  metric_set(st->m_pending, (double)st->n);
  /* Nothing in flight (all waiting to retry): do not spin. */
  if (!st->http.inflight && wait_ms > 0 && st->n) {
    struct timespec ts = {0, (long)wait_ms * 1000000L};
    nanosleep(&ts, NULL);
  }
}
