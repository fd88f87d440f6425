/* charge_emit: what the charge worker publishes — a finished item's
 * charged event, stored outcome or dead letter (an operation's through
 * charge_ops.c), the interim `pending` outcome of an attempt still
 * unresolved past the deadline, and the age of the oldest unresolved one.
 * An attempt someone else settled while this worker held it (the
 * processor-events stage from a webhook: charge_attempts.settled_by is not
 * 'charge') is theirs to emit: nothing is published for it here. */
#include "charge.h"

#include <stdio.h>
#include <string.h>

#include "charge_item.h"
#include "charge_ops.h"
#include "log.h"
#include "metrics.h"

static log_ctx item_ctx(const stage_ctx *ctx, const citem *x) {
  log_ctx lc = {ctx->cfg->topics.fraud_scored, x->partition, x->offset, x->ev->payment_id, NULL};
  return lc;
}

static bool may_have_it(const citem *x) { return x->db.sends > x->db.refused; }

/* Settled by another writer while this worker held it charging: our
 * conditional record changed nothing, or its attempt stopped being live
 * before our send. A redelivered payment charge never held (since_ms 0)
 * is emitted again as before (the ledger re-derives from Postgres). */
static bool settled_elsewhere(const citem *x) {
  const item_row *d = &x->db;
  return !x->reason[0] && d->known && d->has_attempt && strcmp(d->state, "charging") != 0 &&
         !d->settled_by_charge && (x->elsewhere || x->since_ms);
}

/* The interim `pending` outcome of an attempt the processor may hold. */
static void add_pending(stage_ctx *ctx, citem *x, const char *proc_name, outbox *out) {
  ps_charge ch = PAYMENTS__V1__CHARGE_RESULT__INIT;
  ch.processor = (char *)(proc_name ? proc_name : "");
  ps_charge *saved = x->ev->charge;
  x->ev->charge = &ch;
  outcome_buf ob;
  outcome_from_event(&ob, x->ev, OUTCOME_PENDING, "processor_unresolved",
                     "the processor has not answered yet; the payment may have been charged "
                     "and is resolved with the processor's answer, never charged elsewhere");
  outbox_add_outcome(out, ctx->cfg->topics.outcomes, &ob.o);
  x->ev->charge = saved;
  x->pending_sent = true;
}

/* Publishes, once per worker, the interim `pending` outcome of each attempt
 * the processor may hold that is still unresolved past the deadline; and
 * exports the age of the oldest such attempt. */
void charge__emit_pending(stage_ctx *ctx, charge_state *st, outbox *out, int64_t now) {
  int64_t oldest = 0;
  for (size_t i = 0; i < st->n; i++) {
    citem *x = st->items[i];
    if (x->op) { /* an operation sent without a definite answer */
      int64_t age = charge_op_unresolved_ms(x, now);
      if (age > oldest) oldest = age;
      continue;
    }
    const item_row *d = &x->db;
    if (x->st == IT_WAIT_DUP || x->st == IT_DONE || x->st == IT_RECORD || !d->has_attempt ||
        strcmp(d->state, "charging") != 0 || !may_have_it(x))
      continue;
    if (now - d->created_ms > oldest) oldest = now - d->created_ms;
    if (x->pending_sent || !x->since_ms || now - x->since_ms < st->deadline_ms) continue;
    log_ctx lc = item_ctx(ctx, x);
    log_at(LOG_WARN, &lc, "charge at %s unresolved past the deadline: pending, still retrying",
           d->proc_name);
    add_pending(ctx, x, d->proc_name, out);
    metric_add(st->m_interim, 1);
  }
  metric_set(st->m_unresolved_age, (double)oldest / 1000.0);
}

/* Emits what finished and drops it. */
void charge__emit_done(stage_ctx *ctx, charge_state *st, outbox *out) {
  size_t k = 0;
  for (size_t i = 0; i < st->n; i++) {
    citem *x = st->items[i];
    if (x->st != IT_DONE) {
      st->items[k++] = x;
      continue;
    }
    ps_event *ev = x->ev;
    const item_row *d = &x->db;
    stage_msg m = {ev, ctx->cfg->topics.fraud_scored, x->partition, x->offset, x->raw,
                   x->rawlen, x->key, x->keylen};
    size_t before = out->n; /* tagged below: exactly-once holds them (kcontinuous.c) */
    if (x->op) {
      charge_op_emit(ctx, x, &m, out);
    } else if (settled_elsewhere(x)) {
      log_ctx lc = item_ctx(ctx, x);
      log_at(LOG_INFO, &lc, "attempt at %s was settled %s by someone else (%s): they emit it",
             d->proc_name ? d->proc_name : "?", d->state, "processor events");
      metric_add(st->m_elsewhere, 1);
    } else if (x->reason[0]) {
      outbox_add_dlq(out, ctx->cfg->topics.dlq, "charge", &m, x->reason);
      /* Isolated: its end (charge_db_isolate_end) is published too. */
      if (x->end_status[0] && d->outcome_hex)
        outbox_add_stored(out, ctx->cfg->topics.outcomes, ev->intent->idempotency_key,
                          d->outcome_hex);
      else if (x->end_status[0] && x->may_hold && !x->pending_sent)
        add_pending(ctx, x, d->proc_name, out);
    } else if (!d->known) {
      outbox_add_dlq(out, ctx->cfg->topics.dlq, "charge", &m, "unknown payment_id");
    } else if (d->has_attempt && strcmp(d->state, "succeeded") == 0) {
      if (d->proc < 0) {
        /* Postgres recorded the charge: it is emitted whatever our config. */
        log_ctx lc = item_ctx(ctx, x);
        log_at(LOG_ERROR, &lc, "ALERT charged at %s, a processor that is not configured",
               d->proc_name ? d->proc_name : "?");
        metric_add(st->m_unconfigured, 1);
      }
      ps_charge ch = PAYMENTS__V1__CHARGE_RESULT__INIT;
      ch.status = PAYMENTS__V1__CHARGE_STATUS__CHARGE_STATUS_SUCCEEDED;
      ch.processor = d->proc_name ? d->proc_name : (char *)"";
      ch.processor_charge_id = d->charge_id ? d->charge_id : (char *)"";
      ch.fee_minor = d->fee_minor;
      ps_charge *saved = ev->charge;
      ev->charge = &ch;
      outbox_add_event(out, ctx->cfg->topics.charged, ev);
      ev->charge = saved;
    } else if (d->outcome_hex) {
      outbox_add_stored(out, ctx->cfg->topics.outcomes, ev->intent->idempotency_key,
                        d->outcome_hex);
    }
    outbox_tag(out, before, x->partition, x->offset);
    charge__item_free(st, x);
  }
  st->n = k;
}

