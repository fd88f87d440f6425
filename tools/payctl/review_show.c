/* payctl review show: one payment as the fraud stage saw it, for the
 * operator deciding on it — the request's fraud-relevant facts (from the
 * stored request), the assessment's scores, its reasons split into the
 * rules that fired and the model features that drove the score (the
 * `model:` reasons, strongest first), and the decision history:
 * assessed, reviewed (by whom), where the payment stands now. */
#include "review_show.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "event.h"
#include "fraud_features.h"
#include "pgq.h"

static const char SQL_SHOW[] =
    "SELECT p.payment_id, p.merchant_id, p.customer_id, p.idempotency_key, p.amount_minor,"
    " p.currency, p.status, coalesce(p.error_code, ''), p.created_at, p.updated_at,"
    " encode(p.intent, 'hex'),"
    " a.decision, round(a.rule_score::numeric, 3), round(a.ml_score::numeric, 3),"
    " round(a.combined_score::numeric, 3), array_to_string(a.reasons, ','), a.model_version,"
    " a.created_at, r.decision, r.operator, r.decided_at"
    " FROM payments p LEFT JOIN fraud_assessments a USING (payment_id)"
    " LEFT JOIN fraud_reviews r USING (payment_id) WHERE p.payment_id = $1";

enum { C_ID, C_MERCHANT, C_CUSTOMER, C_KEY, C_AMOUNT, C_CURRENCY, C_STATUS, C_CODE, C_CREATED,
       C_UPDATED, C_INTENT, C_DECISION, C_RULE, C_ML, C_COMBINED, C_REASONS, C_MODEL,
       C_ASSESSED, C_REVIEW, C_OPERATOR, C_DECIDED };

/* The request's facts the rules and model start from (never the email). */
static void print_request(const char *hex) {
  size_t len;
  uint8_t *b = hex_decode(hex, &len);
  char why[128];
  ps_event *ev = b ? event_decode(b, len, why, sizeof why) : NULL;
  free(b);
  if (!ev || !ev->intent) {
    printf("request:     (not readable)\n");
    if (ev) event_free(ev);
    return;
  }
  const ps_intent *in = ev->intent;
  const Payments__V1__RequestContext *cx = in->context;
  const Payments__V1__PaymentMethod *pm = in->payment_method;
  char ipb[48];
  features_ipblock(cx ? cx->ip : NULL, ipb, sizeof ipb);
  printf("request:     country %s, card country %s, device %s, ip block %s\n",
         cx && cx->country && *cx->country ? cx->country : "-",
         pm && pm->card_country && *pm->card_country ? pm->card_country : "-",
         cx && cx->device_id && *cx->device_id ? cx->device_id : "-", *ipb ? ipb : "-");
  if (pm && pm->created_at_ms > 0)
    printf("method:      %s added %.1f hours before the payment\n",
           pm->fingerprint && *pm->fingerprint ? pm->fingerprint : "-",
           (double)(in->created_at_ms - pm->created_at_ms) / 3600000.0);
  event_free(ev);
}

/* Reasons as two lists: rules (and notes such as velocity_unavailable),
 * then model features with the `model:` prefix stripped. */
static void print_reasons(const char *csv) {
  char *s = strdup(csv), *save = NULL, rules[1024] = "", model[1024] = "";
  if (!s) abort();
  for (char *t = strtok_r(s, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
    bool m = strncmp(t, "model:", 6) == 0;
    char *dst = m ? model : rules;
    snprintf(dst + strlen(dst), sizeof rules - strlen(dst), "%s%s", *dst ? ", " : "", m ? t + 6 : t);
  }
  free(s);
  printf("rules:       %s\n", *rules ? rules : "(none fired)");
  printf("model:       %s\n", *model ? model : "(no feature named: allowed, or the model was not used)");
}

int review_show(payctl *p, const char *id) {
  const char *v[] = {id};
  PGresult *r = pgq_query(p, SQL_SHOW, 1, v);
  if (!r) return pgq_failure(p);
  if (PQntuples(r) != 1) {
    PQclear(r);
    fprintf(stderr, "payctl: no payment %s\n", id);
    return PAYCTL_NOT_FOUND;
  }
#define F(c) PQgetvalue(r, 0, (c))
  printf("payment:     %s (merchant %s, customer %s, key %s)\n", F(C_ID), F(C_MERCHANT),
         F(C_CUSTOMER), F(C_KEY));
  printf("amount:      %s %s (minor units)\n", F(C_AMOUNT), F(C_CURRENCY));
  print_request(F(C_INTENT));
  if (PQgetisnull(r, 0, C_DECISION)) {
    printf("assessment:  none stored\n");
  } else {
    printf("assessment:  %s (combined %s; rule score %s, model score %s; model %s)\n",
           F(C_DECISION), F(C_COMBINED), F(C_RULE), F(C_ML), F(C_MODEL));
    print_reasons(F(C_REASONS));
  }
  printf("history:\n  %s  received\n", F(C_CREATED));
  if (!PQgetisnull(r, 0, C_DECISION))
    printf("  %s  fraud: %s\n", F(C_ASSESSED), F(C_DECISION));
  if (!PQgetisnull(r, 0, C_REVIEW))
    printf("  %s  review: %s by %s\n", F(C_DECIDED), F(C_REVIEW), F(C_OPERATOR));
  printf("  %s  now %s%s%s\n", F(C_UPDATED), F(C_STATUS), *F(C_CODE) ? " " : "", F(C_CODE));
#undef F
  PQclear(r);
  return PAYCTL_OK;
}
