/* payctl review: the operator's side of fraud review. `list` shows the
 * payments fraud holds; `show` one payment's scores, reasons and history
 * (review_show.c); `approve` records the decision, moves the payment
 * to `scored` and sends it on to charge (it then ends with a charge
 * outcome); `reject` ends it `blocked` and publishes that outcome. One
 * decision per payment (fraud_reviews): repeating the same command
 * re-publishes what was decided (a crash between commit and publish is
 * healed by running it again); the other decision is refused. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "commands.h"
#include "event.h"
#include "kafka.h"
#include "opt.h"
#include "pgq.h"
#include "review_show.h"

static int usage(void) {
  return opt_usage("review", "usage: payctl review list\n"
                             "       payctl review show <payment_id>\n"
                             "       payctl review approve|reject <payment_id> [--operator NAME]");
}

static int list(payctl *p) {
  PGresult *r = pgq_query(
      p,
      "SELECT p.payment_id, p.merchant_id, p.idempotency_key, p.amount_minor, p.currency,"
      " round(a.combined_score::numeric, 3), array_to_string(a.reasons, ','), p.updated_at"
      " FROM payments p JOIN fraud_assessments a USING (payment_id)"
      " LEFT JOIN fraud_reviews r USING (payment_id)"
      " WHERE p.status = 'review' AND r.payment_id IS NULL ORDER BY p.created_at, p.payment_id",
      0, NULL);
  if (!r) return pgq_failure(p);
  printf("payment_id\tmerchant\tidempotency_key\tamount_minor\tcurrency\tscore\treasons\theld_since\n");
  pgq_print(r, "", "\t");
  PQclear(r);
  return PAYCTL_OK;
}

typedef struct held {
  char status[16], decision[16];
  char *intent_hex, *assessment_hex, *approved_hex, *outcome_hex;
} held;

static void held_free(held *h) {
  free(h->intent_hex);
  free(h->assessment_hex);
  free(h->approved_hex);
  free(h->outcome_hex);
  memset(h, 0, sizeof *h);
}

static char *dup_or_null(PGresult *r, int c) {
  return PQgetisnull(r, 0, c) ? NULL : strdup(PQgetvalue(r, 0, c));
}

/* Reads the payment's state. Returns 0, 1 (no such payment) or -1. */
static int read_held(payctl *p, const char *id, held *h) {
  const char *v[] = {id};
  PGresult *r = pgq_query(
      p,
      "SELECT p.status, coalesce(r.decision, ''), encode(p.intent, 'hex'),"
      " encode(a.assessment, 'hex'), encode(r.assessment, 'hex'), encode(p.outcome, 'hex')"
      " FROM payments p LEFT JOIN fraud_assessments a USING (payment_id)"
      " LEFT JOIN fraud_reviews r USING (payment_id) WHERE p.payment_id = $1",
      1, v);
  if (!r) return -1;
  if (PQntuples(r) != 1) {
    PQclear(r);
    return 1;
  }
  held_free(h);
  snprintf(h->status, sizeof h->status, "%s", PQgetvalue(r, 0, 0));
  snprintf(h->decision, sizeof h->decision, "%s", PQgetvalue(r, 0, 1));
  h->intent_hex = dup_or_null(r, 2);
  h->assessment_hex = dup_or_null(r, 3);
  h->approved_hex = dup_or_null(r, 4);
  h->outcome_hex = dup_or_null(r, 5);
  PQclear(r);
  return 0;
}

static ps_event *decode_intent(const held *h) {
  size_t len;
  uint8_t *b = h->intent_hex ? hex_decode(h->intent_hex, &len) : NULL;
  char reason[128];
  ps_event *ev = b ? event_decode(b, len, reason, sizeof reason) : NULL;
  free(b);
  return ev;
}

/* The assessment forwarded on approval: the stored one, allowed, saying so. */
static char *approved_assessment(const held *h) {
  size_t len;
  uint8_t *b = h->assessment_hex ? hex_decode(h->assessment_hex, &len) : NULL;
  ps_fraud *fa = b ? payments__v1__fraud_assessment__unpack(NULL, len, b) : NULL;
  free(b);
  if (!fa) return NULL;
  char **reasons = calloc(fa->n_reasons + 1, sizeof *reasons);
  if (!reasons) abort();
  memcpy(reasons, fa->reasons, fa->n_reasons * sizeof *reasons);
  reasons[fa->n_reasons] = "review_approved";
  ps_fraud out = *fa;
  out.decision = PAYMENTS__V1__FRAUD_DECISION__FRAUD_DECISION_ALLOW;
  out.reasons = reasons;
  out.n_reasons = fa->n_reasons + 1;
  size_t n = payments__v1__fraud_assessment__get_packed_size(&out);
  uint8_t *packed = malloc(n + 1);
  char *hex = malloc(2 * n + 1);
  if (!packed || !hex) abort();
  payments__v1__fraud_assessment__pack(&out, packed);
  hex_encode(packed, n, hex);
  free(packed);
  free(reasons);
  payments__v1__fraud_assessment__free_unpacked(fa, NULL);
  return hex;
}

/* Records the decision if the payment is still held (a racing operator's
 * decision wins, and is then what is re-read). Returns 0, -1 (the query
 * failed) or -2 (nothing stored to decide on). */
static int decide(payctl *p, const char *id, const char *decision, const char *op, const held *h) {
  char *extra = NULL;
  if (strcmp(decision, "approve") == 0) {
    extra = approved_assessment(h);
  } else {
    ps_event *ev = decode_intent(h);
    if (ev) {
      outcome_buf ob;
      outcome_from_event(&ob, ev, OUTCOME_BLOCKED, "fraud_review_rejected",
                         "rejected on manual fraud review");
      extra = outcome_pack_hex(&ob.o);
      event_free(ev);
    }
  }
  if (!extra) {
    fprintf(stderr, "payctl: payment %s has no readable request or assessment\n", id);
    return -2;
  }
  static const char SQL_APPROVE[] =
      "WITH held AS (SELECT payment_id FROM payments WHERE payment_id = $1 AND status = 'review'"
      "   FOR UPDATE),"
      " dec AS (INSERT INTO fraud_reviews (payment_id, decision, operator, assessment)"
      "   SELECT payment_id, 'approve', $2, decode($3, 'hex') FROM held"
      "   ON CONFLICT (payment_id) DO NOTHING RETURNING payment_id)"
      " UPDATE payments SET status = 'scored', updated_at = now()"
      " WHERE payment_id IN (SELECT payment_id FROM dec)";
  static const char SQL_REJECT[] =
      "WITH held AS (SELECT payment_id FROM payments WHERE payment_id = $1 AND status = 'review'"
      "   FOR UPDATE),"
      " dec AS (INSERT INTO fraud_reviews (payment_id, decision, operator)"
      "   SELECT payment_id, 'reject', $2 FROM held"
      "   ON CONFLICT (payment_id) DO NOTHING RETURNING payment_id)"
      " UPDATE payments SET status = 'blocked', outcome = decode($3, 'hex'),"
      "   error_code = 'fraud_review_rejected', updated_at = now()"
      " WHERE payment_id IN (SELECT payment_id FROM dec)";
  const char *v[] = {id, op, extra};
  PGresult *r = pgq_query(p, strcmp(decision, "approve") == 0 ? SQL_APPROVE : SQL_REJECT, 3, v);
  free(extra);
  if (!r) return -1;
  PQclear(r);
  return 0;
}

static rd_kafka_resp_err_t delivery_err;
static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque) {
  (void)rk;
  (void)opaque;
  if (m->err) delivery_err = m->err;
}

/* Publishes what the decision sends: the approved event to charge, or the
 * stored blocked outcome. Returns 0 once the broker acknowledged it. */
static int publish(payctl *p, const held *h, bool approve) {
  ps_event *ev = decode_intent(h);
  if (!ev) {
    fprintf(stderr, "payctl: the payment's request is no longer stored\n");
    return -1;
  }
  uint8_t *val = NULL;
  size_t len = 0;
  const char *topic;
  ps_fraud *fa = NULL;
  if (approve) {
    uint8_t *b = h->approved_hex ? hex_decode(h->approved_hex, &len) : NULL;
    fa = b ? payments__v1__fraud_assessment__unpack(NULL, len, b) : NULL;
    free(b);
    if (fa) {
      ev->fraud = fa;
      val = event_pack(ev, &len);
      ev->fraud = NULL;
    }
    topic = p->cfg.topics.fraud_scored;
  } else {
    val = h->outcome_hex ? hex_decode(h->outcome_hex, &len) : NULL;
    topic = p->cfg.topics.outcomes;
  }
  if (fa) payments__v1__fraud_assessment__free_unpacked(fa, NULL);
  char err[512];
  rd_kafka_t *prod = val ? kafka_producer_new(&p->cfg, on_delivery, err, sizeof err) : NULL;
  int rc = -1;
  if (prod) {
    const char *key = ev->intent->idempotency_key;
    delivery_err = RD_KAFKA_RESP_ERR_NO_ERROR;
    rd_kafka_resp_err_t e = rd_kafka_producev(
        prod, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_KEY(key, strlen(key)),
        RD_KAFKA_V_VALUE(val, len), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END);
    if (!e) e = rd_kafka_flush(prod, 30000);
    if (!e) e = delivery_err;
    if (e) fprintf(stderr, "payctl: could not publish to %s: %s\n", topic, rd_kafka_err2str(e));
    rc = e ? -1 : 0;
    rd_kafka_destroy(prod);
  } else {
    fprintf(stderr, "payctl: %s\n", val ? err : "nothing stored to publish");
  }
  free(val);
  event_free(ev);
  return rc;
}

/* What a decision command ends with, once the payment's state is read. */
static int refuse_or_publish(payctl *p, const char *id, const held *h, bool approve, bool fresh) {
  if (!*h->decision) {
    fprintf(stderr, "payctl: payment %s is not held for review (status %s)\n", id, h->status);
    return PAYCTL_REFUSED;
  }
  if (strcmp(h->decision, approve ? "approve" : "reject") != 0) {
    fprintf(stderr, "payctl: payment %s was already %s on review; not changed\n", id,
            strcmp(h->decision, "approve") == 0 ? "approved" : "rejected");
    return PAYCTL_REFUSED;
  }
  if (publish(p, h, approve)) return PAYCTL_UNAVAILABLE;
  printf("%s %s%s\n", id, approve ? "approved: sent on to charge" : "rejected: ended blocked",
         fresh ? "" : " (already decided; re-published)");
  return PAYCTL_OK;
}

int cmd_review(payctl *p, int argc, char **argv) {
  static const struct option longopts[] = {{"operator", required_argument, NULL, 'o'},
                                           {0, 0, 0, 0}};
  const char *op = getenv("USER") ? getenv("USER") : "payctl";
  bool op_given = false;
  opt_begin();
  for (int c; (c = opt_next(argc, argv, longopts)) != -1;) {
    if (c != 'o') return usage();
    op = optarg;
    op_given = true;
  }
  const char *verb = optind < argc ? argv[optind] : "";
  int n = argc - optind; /* the verb and its arguments */
  if (n == 1 && !op_given && strcmp(verb, "list") == 0) return list(p);
  if (n == 2 && !op_given && strcmp(verb, "show") == 0) return review_show(p, argv[optind + 1]);
  bool approve = strcmp(verb, "approve") == 0;
  if (n != 2 || (!approve && strcmp(verb, "reject") != 0)) return usage();
  const char *id = argv[optind + 1];
  held h = {0};
  int rc = read_held(p, id, &h);
  bool fresh = false;
  if (rc == 0 && !*h.decision && strcmp(h.status, "review") == 0) {
    rc = decide(p, id, approve ? "approve" : "reject", op, &h);
    if (rc == 0) rc = read_held(p, id, &h);
    fresh = true;
  }
  if (rc == 1) {
    fprintf(stderr, "payctl: no payment %s\n", id);
    rc = PAYCTL_NOT_FOUND;
  } else if (rc == -1) {
    rc = pgq_failure(p);
  } else if (rc == -2) {
    rc = PAYCTL_FAILED;
  } else {
    rc = refuse_or_publish(p, id, &h, approve, fresh);
  }
  held_free(&h);
  return rc;
}
