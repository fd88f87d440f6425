/* Unit tests for the lifecycle posting rules (posting_lifecycle.h): every
 * event's entries, their balance and each account's type. */
#include <criterion/criterion.h>
#include <string.h>

#include "posting_lifecycle.h"

static void expect(const posting_entry *e, const char *account, char dir, int64_t amount) {
  cr_assert_str_eq(e->account, account);
  cr_assert_eq(e->direction, dir, "%s", account);
  cr_assert_eq(e->amount_minor, amount, "%s", account);
  cr_assert_not_null(posting_account_type(e->account), "%s has a type", account);
}

Test(posting_lifecycle, authorization_holds_the_amount) {
  posting_entry e[POSTING_LC_MAX_ENTRIES];
  int n = posting_for_authorization("stripe", 1000, e);
  cr_assert_eq(n, 2);
  expect(&e[0], "asset:authorized_holds:stripe", 'D', 1000);
  expect(&e[1], "liability:authorized_holds", 'C', 1000);
  cr_assert(posting_balanced(e, n));
}

Test(posting_lifecycle, capture_reverses_its_hold_and_posts_a_sale_with_fee) {
  posting_entry e[POSTING_LC_MAX_ENTRIES];
  int n = posting_for_capture("paypal", 600, 30, 0, e);
  cr_assert_eq(n, 6);
  expect(&e[0], "liability:authorized_holds", 'D', 600);
  expect(&e[1], "asset:authorized_holds:paypal", 'C', 600);
  expect(&e[2], "asset:processor_receivable:paypal", 'D', 600);
  expect(&e[3], "revenue:payments", 'C', 600);
  expect(&e[4], "expense:processing_fees", 'D', 30);
  expect(&e[5], "asset:processor_receivable:paypal", 'C', 30);
  cr_assert(posting_balanced(e, n));
}

Test(posting_lifecycle, final_capture_also_releases_the_rest_of_the_hold) {
  posting_entry e[POSTING_LC_MAX_ENTRIES];
  int n = posting_for_capture("stripe", 600, 0, 400, e);
  cr_assert_eq(n, 4);
  expect(&e[0], "liability:authorized_holds", 'D', 1000);
  expect(&e[1], "asset:authorized_holds:stripe", 'C', 1000);
  expect(&e[2], "asset:processor_receivable:stripe", 'D', 600);
  expect(&e[3], "revenue:payments", 'C', 600);
  cr_assert(posting_balanced(e, n));
}

Test(posting_lifecycle, void_or_expiry_releases_the_hold) {
  posting_entry e[POSTING_LC_MAX_ENTRIES];
  int n = posting_for_release("stripe", 400, e);
  cr_assert_eq(n, 2);
  expect(&e[0], "liability:authorized_holds", 'D', 400);
  expect(&e[1], "asset:authorized_holds:stripe", 'C', 400);
  cr_assert(posting_balanced(e, n));
}

Test(posting_lifecycle, refund_goes_through_refunds_payable) {
  posting_entry e[POSTING_LC_MAX_ENTRIES];
  int n = posting_for_refund("stripe", 250, e);
  cr_assert_eq(n, 4);
  expect(&e[0], "revenue:refunds", 'D', 250);
  expect(&e[1], "liability:refunds_payable", 'C', 250);
  expect(&e[2], "liability:refunds_payable", 'D', 250);
  expect(&e[3], "asset:processor_receivable:stripe", 'C', 250);
  cr_assert(posting_balanced(e, n));
}

Test(posting_lifecycle, impossible_input_posts_nothing) {
  posting_entry e[POSTING_LC_MAX_ENTRIES];
  cr_assert_eq(posting_for_authorization("stripe", 0, e), -1);
  cr_assert_eq(posting_for_release("stripe", -1, e), -1);
  cr_assert_eq(posting_for_refund("Bad Name", 1, e), -1);
  cr_assert_eq(posting_for_capture("stripe", 1, -1, 0, e), -1);
  cr_assert_eq(posting_for_capture("stripe", 1, 0, -1, e), -1);
  cr_assert_eq(posting_for_capture("stripe", INT64_MAX, 0, 1, e), -1, "overflow refused");
}
