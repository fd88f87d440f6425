/* Unit tests for the resolver's status query (charge_lookup.h): what each
 * answer of /v1/_lookup and /v2/_lookup says, per docs/procsim.md. */
#include <criterion/criterion.h>
#include <string.h>

#include "charge_lookup.h"
#include "refund_status.h"

#define SAID(pp, st, body) charge_lookup_classify(pp, st, body, strlen(body))

Test(charge_lookup, paths_name_the_key) {
  char p[256];
  charge_lookup_path(false, "paystream:p1:stripe", p, sizeof p);
  cr_assert_str_eq(p, "/v1/_lookup?idempotency_key=paystream:p1:stripe");
  charge_lookup_path(true, "op_42", p, sizeof p);
  cr_assert_str_eq(p, "/v2/_lookup?request_id=op_42");
}

Test(charge_lookup, the_original_answer_is_found_whatever_its_status) {
  cr_assert_eq(SAID(false, 200, "{\"id\":\"ch_1\",\"status\":\"succeeded\"}"), LOOKUP_FOUND);
  cr_assert_eq(SAID(false, 402, "{\"error\":{\"type\":\"card_error\"}}"), LOOKUP_FOUND);
  cr_assert_eq(SAID(true, 201, "{\"id\":\"CAP-1\",\"status\":\"COMPLETED\"}"), LOOKUP_FOUND);
  cr_assert_eq(SAID(true, 422, "{\"name\":\"UNPROCESSABLE_ENTITY\"}"), LOOKUP_FOUND);
}

Test(charge_lookup, an_unknown_key_is_unknown_only_when_the_processor_says_so) {
  cr_assert_eq(SAID(false, 404, "{\"error\":{\"code\":\"idempotency_key_unknown\"}}"),
               LOOKUP_UNKNOWN);
  cr_assert_eq(SAID(true, 404,
                    "{\"name\":\"RESOURCE_NOT_FOUND\",\"details\":[{\"issue\":\"REQUEST_ID_UNKNOWN\"}]}"),
               LOOKUP_UNKNOWN);
  /* a proxy's 404, the other flavour's code, garbage: no verdict */
  cr_assert_eq(SAID(false, 404, "<html>not found</html>"), LOOKUP_AGAIN);
  cr_assert_eq(SAID(true, 404, "{\"error\":{\"code\":\"idempotency_key_unknown\"}}"), LOOKUP_AGAIN);
  cr_assert_eq(SAID(false, 404, ""), LOOKUP_AGAIN);
}

Test(charge_lookup, in_progress_errors_and_refusals_of_the_query_ask_again) {
  cr_assert_eq(SAID(false, 409, "{\"error\":{\"type\":\"idempotency_error\"}}"), LOOKUP_AGAIN);
  cr_assert_eq(SAID(true, 409, "{\"name\":\"REQUEST_IN_PROGRESS\"}"), LOOKUP_AGAIN);
  cr_assert_eq(SAID(false, 500, "{}"), LOOKUP_AGAIN);
  cr_assert_eq(SAID(false, 503, ""), LOOKUP_AGAIN);
  cr_assert_eq(SAID(false, 401, "{\"error\":{\"type\":\"invalid_request_error\"}}"), LOOKUP_AGAIN);
  cr_assert_eq(SAID(false, 429, ""), LOOKUP_AGAIN);
  cr_assert_eq(SAID(false, 0, ""), LOOKUP_AGAIN);
}

Test(charge_lookup, a_stored_no_such_object_is_an_answer) {
  cr_assert_eq(SAID(false, 404, "{\"error\":{\"code\":\"resource_missing\"}}"), LOOKUP_FOUND);
  cr_assert_eq(SAID(true, 404,
                    "{\"name\":\"RESOURCE_NOT_FOUND\",\"details\":[{\"issue\":\"INVALID_RESOURCE_ID\"}]}"),
               LOOKUP_FOUND);
  /* the other flavour's word is a proxy's 404 */
  cr_assert_eq(SAID(true, 404, "{\"error\":{\"code\":\"resource_missing\"}}"), LOOKUP_AGAIN);
}

#define SEARCHED(pp, st, body) charge_search_classify(pp, st, body, strlen(body))

Test(charge_lookup, search_paths_name_our_own_ids) {
  char p[256];
  charge_search_path(false, SEARCH_PAYMENT, "p1", p, sizeof p);
  cr_assert_str_eq(p, "/v1/_search?metadata%5Bpayment_id%5D=p1");
  charge_search_path(false, SEARCH_REFUND, "o1", p, sizeof p);
  cr_assert_str_eq(p, "/v1/_search?metadata%5Brefund_id%5D=o1");
  charge_search_path(true, SEARCH_PAYMENT, "p1", p, sizeof p);
  cr_assert_str_eq(p, "/v2/_search?custom_id=p1");
  charge_search_path(true, SEARCH_REFUND, "o1", p, sizeof p);
  cr_assert_str_eq(p, "/v2/_search?invoice_id=o1");
}

Test(charge_lookup, a_search_finds_the_answer_or_says_nothing_carries_the_id) {
  cr_assert_eq(SEARCHED(false, 200, "{\"id\":\"ch_1\",\"status\":\"succeeded\"}"), LOOKUP_FOUND);
  cr_assert_eq(SEARCHED(false, 402, "{\"error\":{\"type\":\"card_error\"}}"), LOOKUP_FOUND);
  cr_assert_eq(SEARCHED(false, 404, "{\"error\":{\"code\":\"search_no_match\"}}"), LOOKUP_UNKNOWN);
  cr_assert_eq(SEARCHED(true, 404, "{\"name\":\"RESOURCE_NOT_FOUND\",\"details\":[{\"issue\":\"NO_MATCH\"}]}"),
               LOOKUP_UNKNOWN);
  /* a key-unknown answer, a proxy's 404, a refusal: no verdict */
  cr_assert_eq(SEARCHED(false, 404, "{\"error\":{\"code\":\"idempotency_key_unknown\"}}"), LOOKUP_AGAIN);
  cr_assert_eq(SEARCHED(false, 404, "<html></html>"), LOOKUP_AGAIN);
  cr_assert_eq(SEARCHED(true, 500, "{}"), LOOKUP_AGAIN);
}

/* A pending refund's current state is asked by the processor's refund id. */
Test(charge_lookup, refund_status_paths) {
  char p[128];
  cr_assert_eq(refund_status_path(false, "re_123", p, sizeof p), 0);
  cr_assert_str_eq(p, "/v1/refunds/re_123");
  cr_assert_eq(refund_status_path(true, "REF-9A", p, sizeof p), 0);
  cr_assert_str_eq(p, "/v2/payments/refunds/REF-9A");
  cr_assert_eq(refund_status_path(false, "", p, sizeof p), -1);
  cr_assert_eq(refund_status_path(false, "re_1/../x", p, sizeof p), -1, "never a path");
  cr_assert_eq(refund_status_path(false, "re_1?expand=x", p, sizeof p), -1);
  cr_assert_eq(refund_status_path(false, "re_123", p, 10), -1, "cut is refused");
}

/* Only a plain id is kept and asked by (review MEDIUM 3): the path builder's rule. */
Test(charge_lookup, only_a_plain_refund_id_is_usable) {
  char id[REFUND_ID_MAX + 2];
  memset(id, 'a', sizeof id - 1);
  id[sizeof id - 1] = '\0';
  cr_assert_not(refund_status_id_usable(id), "129 characters");
  id[REFUND_ID_MAX] = '\0';
  cr_assert(refund_status_id_usable(id), "128 characters");
  cr_assert(refund_status_id_usable("re_1-A"));
  cr_assert_not(refund_status_id_usable(""));
  cr_assert_not(refund_status_id_usable(NULL));
  cr_assert_not(refund_status_id_usable("re 1"));
  cr_assert_not(refund_status_id_usable("re_1%2F"));
  cr_assert_not(refund_status_id_usable("r\xc3\xa9"));
}

/* A refund still pending is asked ever less often: 2-3 s for its first
 * minute, 20-30 s up to an hour, then 5-7.5 min. */
Test(charge_lookup, refund_pending_backoff) {
  cr_assert_eq(refund_status_backoff_ms(0, 0), 2000);
  cr_assert_eq(refund_status_backoff_ms(59 * 1000, 0.999), 2000 + 999);
  cr_assert_eq(refund_status_backoff_ms(60 * 1000, 0), 20 * 1000);
  cr_assert_eq(refund_status_backoff_ms(3600 * 1000 - 1, 0.5), 25 * 1000);
  cr_assert_eq(refund_status_backoff_ms(3600 * 1000, 0), 300 * 1000);
  cr_assert_eq(refund_status_backoff_ms((int64_t)7 * 86400 * 1000, 1.5), 300 * 1000 + 150 * 1000 - 1,
               "jitter clamped below 1");
}
