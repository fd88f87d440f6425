/* apply: see apply.h. */
#include "apply.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "event.h"
#include "hex.h"
#include "operation.h"

const char EVENTS_SQL_APPLY[] =
    "SELECT effect, note, payment_id, coalesce(operation_id, ''), coalesce(processor_dispute_id, ''),"
    " coalesce(dispute_status, ''), coalesce(dispute_amount_minor, 0), coalesce(disputed_minor, 0),"
    " coalesce(captured_minor, 0), coalesce(refunded_minor, 0)"
    " FROM ps_apply_processor_event($1, $2, $3, $4, $5::bigint, decode($6, 'hex'), $7, $8,"
    " $9::int, $10::int)";

enum { C_EFFECT, C_NOTE, C_PAYMENT, C_OP, C_DISPUTE, C_DSTATUS, C_DAMOUNT, C_DISPUTED, C_CAPTURED,
       C_REFUNDED };

static const char SQL_PAYMENT[] =
    "SELECT encode(intent, 'hex'), coalesce(processor, ''), coalesce(processor_charge_id, ''),"
    " coalesce(fee_minor, 0), coalesce(encode(outcome, 'hex'), ''), authorized_minor"
    " FROM payments WHERE payment_id = $1";

/* A refund this stage settled: its forwarded request and the processor's answer. */
static const char SQL_OP_FORWARD[] =
    "SELECT encode(o.request, 'hex'), coalesce(o.processor, ''), coalesce(o.processor_op_id, ''),"
    " coalesce(o.fee_minor, 0), o.payment_id, o.operation_id, p.idempotency_key"
    " FROM payment_operations o JOIN payments p ON p.payment_id = o.payment_id"
    " WHERE o.operation_id = $1";

static const char SQL_OPERATION[] =
    "SELECT idempotency_key, amount_minor, currency FROM payment_operations WHERE operation_id = $1";

/* The payment's forwarded request (what ingest published), decoded. */
static ps_event *forwarded(PGresult *r) {
  size_t len;
  uint8_t *b = hex_decode(PQgetvalue(r, 0, 0), &len);
  char why[128];
  ps_event *ev = b ? event_decode(b, len, why, sizeof why) : NULL;
  free(b);
  return ev;
}

static PGresult *payment_row(pg_conn *pg, const char *pid, char *err, size_t errlen) {
  const char *pa[] = {pid};
  return pg_exec(pg, SQL_PAYMENT, 1, pa, err, errlen);
}

int events_decline_outcome(pg_conn *pg, const Payments__V1__ProcessorEvent *e, const ev_map *m,
                           char **hex, char *err, size_t errlen) {
  *hex = NULL;
  PGresult *r = payment_row(pg, e->payment_id, err, errlen);
  if (!r) return -1;
  ps_event *ev = PQntuples(r) == 1 ? forwarded(r) : NULL;
  PQclear(r);
  if (!ev || !ev->intent) {
    event_free(ev);
    return 0;
  }
  outcome_buf ob;
  outcome_from_event(&ob, ev, PAYMENTS__V1__OUTCOME_STATUS__OUTCOME_STATUS_DECLINED, "card_declined",
                     "the processor declined the charge (its webhook settled the attempt)");
  ob.o.decline_code = (char *)(m->decline_code[0] ? m->decline_code : "generic_decline");
  ob.o.processor = e->processor;
  ob.o.processor_charge_id = e->charge_id;
  ob.o.kind = KIND_SALE;
  ob.o.processor_event = (char *)"charge_declined";
  *hex = outcome_pack_hex(&ob.o);
  event_free(ev);
  return 0;
}

static int settled(pg_conn *pg, const cfg *c, const char *pid, outbox *out, char *err,
                   size_t errlen) {
  PGresult *r = payment_row(pg, pid, err, errlen);
  if (!r) return -1;
  ps_event *ev = PQntuples(r) == 1 ? forwarded(r) : NULL;
  if (ev && ev->intent) {
    ps_charge ch = PAYMENTS__V1__CHARGE_RESULT__INIT;
    ch.status = PAYMENTS__V1__CHARGE_STATUS__CHARGE_STATUS_SUCCEEDED;
    ch.processor = PQgetvalue(r, 0, 1);
    ch.processor_charge_id = PQgetvalue(r, 0, 2);
    ch.fee_minor = strtoll(PQgetvalue(r, 0, 3), NULL, 10);
    ps_charge *saved = ev->charge;
    ev->charge = &ch;
    outbox_add_event(out, c->topics.charged, ev);
    ev->charge = saved;
  }
  event_free(ev);
  PQclear(r);
  return 0;
}

/* refund_settled: forwarded to the ledger as charge forwards a succeeded
 * operation (the ledger posts it once and publishes its outcome), with the
 * ids ingest forwarded it with (its stored request is the intake's). */
static int refund_settled(pg_conn *pg, const cfg *c, const char *op, outbox *out, char *err,
                          size_t errlen) {
  const char *pa[] = {op};
  PGresult *r = pg_exec(pg, SQL_OP_FORWARD, 1, pa, err, errlen);
  if (!r) return -1;
  ps_event *ev = PQntuples(r) == 1 ? forwarded(r) : NULL;
  if (ev && ev->operation) {
    ps_charge ch = PAYMENTS__V1__CHARGE_RESULT__INIT;
    ch.status = PAYMENTS__V1__CHARGE_STATUS__CHARGE_STATUS_SUCCEEDED;
    ch.processor = PQgetvalue(r, 0, 1);
    ch.processor_charge_id = PQgetvalue(r, 0, 2);
    ch.fee_minor = strtoll(PQgetvalue(r, 0, 3), NULL, 10);
    ps_charge *saved = ev->charge;
    char *s_pid = ev->payment_id, *s_oid = ev->operation_id, *s_key = ev->payment_key;
    uint32_t s_ver = ev->schema_version;
    ev->charge = &ch;
    ev->payment_id = PQgetvalue(r, 0, 4);
    ev->operation_id = PQgetvalue(r, 0, 5);
    ev->payment_key = PQgetvalue(r, 0, 6);
    ev->schema_version = PS_SCHEMA_VERSION;
    outbox_add_event(out, c->topics.charged, ev);
    ev->charge = saved;
    ev->payment_id = s_pid;
    ev->operation_id = s_oid;
    ev->payment_key = s_key;
    ev->schema_version = s_ver;
  }
  event_free(ev);
  PQclear(r);
  return 0;
}

static int declined(pg_conn *pg, const cfg *c, const char *pid, outbox *out, char *err,
                    size_t errlen) {
  PGresult *r = payment_row(pg, pid, err, errlen);
  if (!r) return -1;
  ps_event *ev = PQntuples(r) == 1 ? forwarded(r) : NULL;
  if (ev && ev->intent && *PQgetvalue(r, 0, 4))
    outbox_add_stored(out, c->topics.outcomes, ev->intent->idempotency_key, PQgetvalue(r, 0, 4));
  event_free(ev);
  PQclear(r);
  return 0;
}

static int64_t num(const PGresult *r, int col) { return strtoll(PQgetvalue(r, 0, col), NULL, 10); }

/* refund_reversed and dispute: an outcome of our own, built from the
 * effect row (the first application's facts), keyed by the payment's key. */
static int changed(pg_conn *pg, const cfg *c, const PGresult *fx, bool refund, outbox *out,
                   char *err, size_t errlen) {
  PGresult *r = payment_row(pg, PQgetvalue(fx, 0, C_PAYMENT), err, errlen);
  if (!r) return -1;
  PGresult *o = NULL;
  if (refund) {
    const char *pa[] = {PQgetvalue(fx, 0, C_OP)};
    if (!(o = pg_exec(pg, SQL_OPERATION, 1, pa, err, errlen))) {
      PQclear(r);
      return -1;
    }
  }
  ps_event *ev = PQntuples(r) == 1 ? forwarded(r) : NULL;
  if (ev && ev->intent && (!refund || PQntuples(o) == 1)) {
    outcome_buf ob;
    outcome_from_event(&ob, ev,
                       refund ? PAYMENTS__V1__OUTCOME_STATUS__OUTCOME_STATUS_FAILED
                              : PAYMENTS__V1__OUTCOME_STATUS__OUTCOME_STATUS_UPDATED,
                       refund ? "refund_failed" : "",
                       refund ? "the processor failed the refund after it had succeeded: "
                                "its amount is refundable again"
                              : "");
    ob.o.published_at_ms = 0;
    ob.o.processor = PQgetvalue(r, 0, 1);
    ob.o.processor_charge_id = PQgetvalue(r, 0, 2);
    ob.o.kind = refund ? KIND_REFUND : ev->intent->kind;
    ob.o.authorized_minor = strtoll(PQgetvalue(r, 0, 5), NULL, 10);
    ob.o.captured_minor = num(fx, C_CAPTURED);
    ob.o.refunded_minor = num(fx, C_REFUNDED);
    ob.o.disputed_minor = num(fx, C_DISPUTED);
    ob.o.processor_event = refund ? (char *)"refund_reversed" : (char *)"dispute";
    if (refund) {
      ob.o.operation_id = PQgetvalue(fx, 0, C_OP);
      ob.o.idempotency_key = PQgetvalue(o, 0, 0);
      ob.amount.amount_minor = strtoll(PQgetvalue(o, 0, 1), NULL, 10);
      ob.amount.currency = PQgetvalue(o, 0, 2);
    } else {
      ob.o.dispute_id = PQgetvalue(fx, 0, C_DISPUTE);
      ob.o.dispute_status = PQgetvalue(fx, 0, C_DSTATUS);
      ob.o.dispute_amount_minor = num(fx, C_DAMOUNT);
    }
    const char *key = ev->intent->idempotency_key;
    outbox_add_outcome_keyed(out, c->topics.outcomes, key, strlen(key), &ob.o);
  }
  event_free(ev);
  if (o) PQclear(o);
  PQclear(r);
  return 0;
}

int events_outputs(pg_conn *pg, const cfg *c, const PGresult *r, outbox *out, const char **effect,
                   char *err, size_t errlen) {
  static const char *names[] = {"charge_settled", "charge_declined", "refund_reversed",
                                "refund_settled", "refund_failure_kept", "dispute"};
  const char *fx = PQgetvalue(r, 0, C_EFFECT);
  const char *pid = PQgetvalue(r, 0, C_PAYMENT);
  *effect = "ignored";
  for (size_t i = 0; i < sizeof names / sizeof *names; i++)
    if (strcmp(fx, names[i]) == 0) *effect = names[i];
  if (strcmp(fx, "charge_settled") == 0) return settled(pg, c, pid, out, err, errlen);
  if (strcmp(fx, "charge_declined") == 0) return declined(pg, c, pid, out, err, errlen);
  if (strcmp(fx, "refund_reversed") == 0) return changed(pg, c, r, true, out, err, errlen);
  if (strcmp(fx, "refund_settled") == 0)
    return refund_settled(pg, c, PQgetvalue(r, 0, C_OP), out, err, errlen);
  if (strcmp(fx, "dispute") == 0) return changed(pg, c, r, false, out, err, errlen);
  return 0;
}
