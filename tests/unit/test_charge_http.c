/* Unit tests for charge_http's mapping of a failed transfer: only a request
 * of which nothing was written counts as never received. */
#include <criterion/criterion.h>

#include <string.h>

#include "charge_http.h"

Test(charge_http, nothing_written_is_not_sent) {
  charge_answer a;
  charge_http_map_failure(CURLE_COULDNT_CONNECT, 0, "Failed to connect", &a);
  cr_assert_eq(a.kind, CHARGE_NOT_SENT);
  cr_assert_str_eq(a.error, "Failed to connect");
}

Test(charge_http, couldnt_connect_after_a_written_request_is_ambiguous) {
  /* A kept-alive connection died after the request was written; libcurl
   * re-sent it on a fresh connection, which was refused. */
  charge_answer a;
  charge_http_map_failure(CURLE_COULDNT_CONNECT, 412, "", &a);
  cr_assert_eq(a.kind, CHARGE_UNKNOWN);
  cr_assert_str_eq(a.error, curl_easy_strerror(CURLE_COULDNT_CONNECT));
}

Test(charge_http, unknown_request_size_counts_as_written) {
  charge_answer a;
  charge_http_map_failure(CURLE_COULDNT_CONNECT, -1, NULL, &a);
  cr_assert_eq(a.kind, CHARGE_UNKNOWN);
}

Test(charge_http, timeout_before_anything_was_written_is_not_sent) {
  charge_answer a;
  charge_http_map_failure(CURLE_OPERATION_TIMEDOUT, 0, "Connection timed out", &a);
  cr_assert_eq(a.kind, CHARGE_NOT_SENT);
}

Test(charge_http, timeout_after_the_request_is_ambiguous) {
  charge_answer a;
  charge_http_map_failure(CURLE_OPERATION_TIMEDOUT, 300, "Operation timed out", &a);
  cr_assert_eq(a.kind, CHARGE_UNKNOWN);
}

/* A request that cannot be built (a PayPal amount in a currency with no
 * known exponent) is refused as a data error, nothing started: an
 * authorization never falls back to the sale's body, and nothing aborts. */
Test(charge_http, an_unbuildable_request_is_a_data_error_not_a_fallback) {
  charge_http h;
  char err[256];
  cr_assert_eq(charge_http_init(&h, 4, 1000, err, sizeof err), 0);
  processor pr = {.name = "paypal", .url = "http://127.0.0.1:9", .api_key = (char *)"k",
                  .paypal = true};
  http_call c;
  charge_request auth = {"pay_1", 1000, "ZZZ", "pm_card_visa", true, false, false};
  cr_assert_eq(charge_http_start(&h, &c, &pr, &auth, NULL), CHARGE_HTTP_UNBUILDABLE);
  charge_request sale = {"pay_1", 1000, "ZZZ", "pm_card_visa", false, false, false};
  cr_assert_eq(charge_http_start(&h, &c, &pr, &sale, NULL), CHARGE_HTTP_UNBUILDABLE);
  cr_assert_eq(h.inflight, 0);
  charge_http_close(&h);
}

/* review3 2: PayPal answers a POST with id, status and links only unless
 * asked for the whole object (Prefer: return=representation); a pending
 * refund's amount and invoice_id, a capture's fee are read from it. Every
 * PayPal POST asks for it; a GET (the replay, by id) and Stripe do not. */
static bool has_header(const http_call *c, const char *h) {
  for (const struct curl_slist *l = c->hdrs; l; l = l->next)
    if (strcmp(l->data, h) == 0) return true;
  return false;
}

Test(charge_http, paypal_posts_ask_for_the_whole_object) {
  charge_http h;
  char err[256];
  cr_assert_eq(charge_http_init(&h, 4, 1000, err, sizeof err), 0);
  processor pp = {.name = "paypal", .url = "http://127.0.0.1:9", .api_key = (char *)"k",
                  .paypal = true};
  processor st = {.name = "stripe", .url = "http://127.0.0.1:9", .api_key = (char *)"k"};
  lc_refund_ask ask = {NULL, "USD", "op-1", 1000, "pay-1", NULL};
  int kinds[] = {KIND_REFUND, KIND_CAPTURE, KIND_VOID};
  for (size_t i = 0; i < 3; i++) {
    lc_request rq;
    cr_assert_eq(lc_operation_request(true, kinds[i], "CAP-1", 1000, "USD", true, "pay-1", "op-1",
                                      &rq), 0);
    http_call c;
    cr_assert_eq(charge_http_start_op(&h, &c, &pp, &rq, "op_op-1", kinds[i], &ask, false, NULL), 0);
    cr_assert(has_header(&c, "Prefer: return=representation"), "kind %d", kinds[i]);
    charge_http_cancel(&h, &c);
  }
  lc_request rq;
  cr_assert_eq(lc_operation_request(true, KIND_REFUND, "CAP-1", 1000, "USD", true, "pay-1", "op-1",
                                    &rq), 0);
  http_call c;
  cr_assert_eq(charge_http_start_op(&h, &c, &pp, &rq, "op_op-1", KIND_REFUND, &ask, true, NULL), 0);
  cr_assert_not(has_header(&c, "Prefer: return=representation"), "the replay is a GET");
  charge_http_cancel(&h, &c);
  cr_assert_eq(lc_operation_request(false, KIND_REFUND, "ch_1", 1000, "USD", true, "pay-1", "op-1",
                                    &rq), 0);
  cr_assert_eq(charge_http_start_op(&h, &c, &st, &rq, "op_op-1", KIND_REFUND, &ask, false, NULL), 0);
  cr_assert_not(has_header(&c, "Prefer: return=representation"), "Stripe has no such header");
  charge_http_cancel(&h, &c);
  charge_http_close(&h);
}
