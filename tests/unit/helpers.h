/* helpers: builders shared by the unit tests. */
#ifndef TEST_HELPERS_H
#define TEST_HELPERS_H

#include "event.h"

/* A valid intent with storage the test owns. */
typedef struct test_intent {
  ps_intent in;
  ps_money money;
  Payments__V1__PaymentMethod pm;
  Payments__V1__RequestContext cx;
  char currency[8];
} test_intent;

static inline void test_intent_init(test_intent *t) {
  payments__v1__payment_intent__init(&t->in);
  payments__v1__money__init(&t->money);
  payments__v1__payment_method__init(&t->pm);
  payments__v1__request_context__init(&t->cx);
  t->money.amount_minor = 5000;
  t->currency[0] = 'U', t->currency[1] = 'S', t->currency[2] = 'D', t->currency[3] = 0;
  t->money.currency = t->currency;
  t->pm.id = "pm_card_visa";
  t->cx.country = "US";
  t->cx.ip = "198.51.100.7";
  t->in.idempotency_key = "order-1";
  t->in.merchant_id = "m_1";
  t->in.customer_id = "cus_1";
  t->in.amount = &t->money;
  t->in.created_at_ms = 1700000000000;
  t->in.payment_method = &t->pm;
  t->in.context = &t->cx;
  t->in.description = "order";
}

#endif
