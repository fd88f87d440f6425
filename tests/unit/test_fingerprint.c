/* Unit tests for ingest's request fingerprint and identifiers. */
#include <criterion/criterion.h>
#include <string.h>

#include "helpers.h"
#include "ingest.h"

static void fp(const ps_intent *in, char out[65]) { ingest_fingerprint(in, out); }
static void fp_of(const char *k1, const char *v1, const char *k2, const char *v2, char out[65]);

Test(fingerprint, same_request_same_fingerprint_whatever_the_context) {
  test_intent a, b;
  test_intent_init(&a);
  test_intent_init(&b);
  b.cx.ip = "203.0.113.9";      /* a retry from another address */
  b.in.created_at_ms += 5000;   /* and a little later */
  char x[65], y[65];
  fp(&a.in, x);
  fp(&b.in, y);
  cr_assert_str_eq(x, y);
  cr_assert_eq(strlen(x), 64);
}

Test(fingerprint, amount_currency_method_and_customer_matter) {
  test_intent a, b;
  test_intent_init(&a);
  char x[65], y[65];
  fp(&a.in, x);
  test_intent_init(&b);
  b.money.amount_minor += 1;
  fp(&b.in, y);
  cr_assert_str_neq(x, y);
  test_intent_init(&b);
  strcpy(b.currency, "EUR");
  fp(&b.in, y);
  cr_assert_str_neq(x, y);
  test_intent_init(&b);
  b.pm.id = "pm_card_mastercard";
  fp(&b.in, y);
  cr_assert_str_neq(x, y);
  test_intent_init(&b);
  b.in.customer_id = "cus_2";
  fp(&b.in, y);
  cr_assert_str_neq(x, y);
}

Test(fingerprint, currency_case_and_metadata_order_and_whitespace_do_not) {
  test_intent a, b;
  test_intent_init(&a);
  test_intent_init(&b);
  strcpy(b.currency, "usd");
  Payments__V1__PaymentIntent__MetadataEntry m1 = PAYMENTS__V1__PAYMENT_INTENT__METADATA_ENTRY__INIT,
                                             m2 = PAYMENTS__V1__PAYMENT_INTENT__METADATA_ENTRY__INIT,
                                             n1 = PAYMENTS__V1__PAYMENT_INTENT__METADATA_ENTRY__INIT,
                                             n2 = PAYMENTS__V1__PAYMENT_INTENT__METADATA_ENTRY__INIT;
  m1.key = "order", m1.value = "42", m2.key = "sku", m2.value = "A-1";
  n1.key = "sku", n1.value = " A-1 ", n2.key = "order", n2.value = "42\n";
  Payments__V1__PaymentIntent__MetadataEntry *ma[] = {&m1, &m2}, *mb[] = {&n1, &n2};
  a.in.metadata = ma, a.in.n_metadata = 2;
  b.in.metadata = mb, b.in.n_metadata = 2;
  char x[65], y[65];
  fp(&a.in, x);
  fp(&b.in, y);
  cr_assert_str_eq(x, y);
}

Test(fingerprint, fields_cannot_bleed_into_each_other) {
  test_intent a, b;
  test_intent_init(&a);
  test_intent_init(&b);
  a.in.customer_id = "cus_1";
  a.in.description = "x";
  b.in.customer_id = "cus_1x";
  b.in.description = "";
  char x[65], y[65];
  fp(&a.in, x);
  fp(&b.in, y);
  cr_assert_str_neq(x, y);
}

/* Issue 23: the description and the metadata are part of the request. A
 * reused key with another description, another metadata value, key or
 * entry is a different request (rejected as reused), not a duplicate. */
Test(fingerprint, description_and_metadata_matter) {
  test_intent a, b;
  test_intent_init(&a);
  char x[65], y[65];
  a.in.description = "order 42";
  fp(&a.in, x);
  test_intent_init(&b);
  b.in.description = "order 43";
  fp(&b.in, y);
  cr_assert_str_neq(x, y, "another description");
  char m1[65], m2[65], m3[65], m4[65];
  fp_of("order", "42", "sku", "A-1", m1);
  fp_of("order", "42", "sku", "A-2", m2);
  fp_of("order", "42", "sku2", "A-1", m3);
  cr_assert_str_neq(m1, m2, "another metadata value");
  cr_assert_str_neq(m1, m3, "another metadata key");
  test_intent_init(&b);
  fp(&b.in, m4);
  cr_assert_str_neq(m1, m4, "metadata added to a request without any");
}

Test(fingerprint, ids_are_stable_and_scoped) {
  char p1[PS_ID_LEN], p2[PS_ID_LEN], p3[PS_ID_LEN];
  ingest_payment_id("m_1", "order-1", p1);
  ingest_payment_id("m_1", "order-1", p2);
  ingest_payment_id("m_2", "order-1", p3);
  cr_assert_str_eq(p1, p2);
  cr_assert_str_neq(p1, p3, "the key is scoped by merchant");
  cr_assert_eq(strncmp(p1, "pay_", 4), 0);
  cr_assert_eq(strlen(p1), 28);
  char r1[PS_ID_LEN], r2[PS_ID_LEN];
  ingest_rejection_id("payments.intents", 0, 10, "abc", 3, r1);
  ingest_rejection_id("payments.intents", 0, 11, "abc", 3, r2);
  cr_assert_str_neq(r1, r2);
  cr_assert_eq(strncmp(r1, "rej_", 4), 0);
}

/* Issue 17.14: metadata is sorted on the same trimmed keys it hashes. */
static void fp_of(const char *k1, const char *v1, const char *k2, const char *v2, char out[65]) {
  test_intent t;
  test_intent_init(&t);
  Payments__V1__PaymentIntent__MetadataEntry e1 = PAYMENTS__V1__PAYMENT_INTENT__METADATA_ENTRY__INIT,
                                             e2 = PAYMENTS__V1__PAYMENT_INTENT__METADATA_ENTRY__INIT;
  e1.key = (char *)k1, e1.value = (char *)v1, e2.key = (char *)k2, e2.value = (char *)v2;
  Payments__V1__PaymentIntent__MetadataEntry *m[] = {&e1, &e2};
  t.in.n_metadata = 2;
  t.in.metadata = m;
  ingest_fingerprint(&t.in, out);
}

Test(fingerprint, keys_sort_as_they_are_hashed_trimmed) {
  char a[65], b[65];
  fp_of(" b", "1", "a", "2", a); /* raw order: " b" < "a"; trimmed: "a" < "b" */
  fp_of("b", "1", "a", "2", b);
  cr_assert_str_eq(a, b);
}

Test(fingerprint, surrounding_whitespace_of_a_value_is_not_part_of_it) {
  char a[65], b[65];
  fp_of("k", "2 ", "j", "x", a);
  fp_of("k", "2", "j", "x", b);
  cr_assert_str_eq(a, b, "documented: \"2 \" is \"2\"");
  fp_of("k", "2 3", "j", "x", b);
  cr_assert_str_neq(a, b, "inner whitespace is kept");
}

Test(fingerprint, keys_equal_once_trimmed_order_by_value_whatever_the_arrival) {
  char a[65], b[65];
  fp_of("a", "1", " a", "2", a);
  fp_of(" a", "2", "a", "1", b);
  cr_assert_str_eq(a, b);
}
