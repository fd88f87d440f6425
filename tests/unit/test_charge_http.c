/* Unit tests for charge_http's mapping of a failed transfer: only a request
 * of which nothing was written counts as never received. */
#include <criterion/criterion.h>

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
