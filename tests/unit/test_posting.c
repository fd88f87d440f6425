/* Unit tests for the ledger's posting rules. */
#include <criterion/criterion.h>
#include <stdint.h>
#include <string.h>

#include "posting.h"

Test(posting, payment_with_fee_posts_four_balanced_entries) {
  posting_entry e[POSTING_MAX_ENTRIES];
  int n = posting_for_payment("stripe", 10000, 320, e);
  cr_assert_eq(n, 4);
  cr_assert_str_eq(e[0].account, "asset:processor_receivable:stripe");
  cr_assert_eq(e[0].direction, 'D');
  cr_assert_eq(e[0].amount_minor, 10000);
  cr_assert_str_eq(e[1].account, "revenue:payments");
  cr_assert_eq(e[1].direction, 'C');
  cr_assert_str_eq(e[2].account, "expense:processing_fees");
  cr_assert_eq(e[2].direction, 'D');
  cr_assert_eq(e[2].amount_minor, 320);
  cr_assert_str_eq(e[3].account, "asset:processor_receivable:stripe");
  cr_assert_eq(e[3].direction, 'C');
  cr_assert(posting_balanced(e, n));
}

Test(posting, zero_fee_posts_no_zero_entries) {
  posting_entry e[POSTING_MAX_ENTRIES];
  int n = posting_for_payment("paypal", 500, 0, e);
  cr_assert_eq(n, 2);
  cr_assert(posting_balanced(e, n));
}

Test(posting, fee_above_the_amount_posts_and_balances) {
  /* A 30 cent fixed fee on a 10 cent payment: the receivable nets -20. */
  posting_entry e[POSTING_MAX_ENTRIES];
  int n = posting_for_payment("stripe", 10, 30, e);
  cr_assert_eq(n, 4);
  cr_assert_eq(e[0].amount_minor, 10);
  cr_assert_str_eq(e[2].account, "expense:processing_fees");
  cr_assert_eq(e[2].amount_minor, 30);
  cr_assert_str_eq(e[3].account, "asset:processor_receivable:stripe");
  cr_assert_eq(e[3].direction, 'C');
  cr_assert_eq(e[3].amount_minor, 30);
  cr_assert(posting_balanced(e, n));
}

Test(posting, impossible_input_is_refused) {
  posting_entry e[POSTING_MAX_ENTRIES];
  cr_assert_eq(posting_for_payment("stripe", 0, 0, e), -1);
  cr_assert_eq(posting_for_payment("stripe", -5, 0, e), -1);
  cr_assert_eq(posting_for_payment("stripe", 100, -1, e), -1);
  cr_assert_eq(posting_for_payment("", 100, 1, e), -1);
  cr_assert_eq(posting_for_payment("Stripe Inc", 100, 1, e), -1);
}

Test(posting, balance_check_catches_imbalance_and_overflow) {
  posting_entry e[2] = {{"asset:x", 'D', 100}, {"revenue:y", 'C', 99}};
  cr_assert_not(posting_balanced(e, 2));
  posting_entry big[3] = {{"asset:x", 'D', INT64_MAX}, {"asset:x", 'D', 1}, {"revenue:y", 'C', 1}};
  cr_assert_not(posting_balanced(big, 3));
  posting_entry zero[2] = {{"asset:x", 'D', 0}, {"revenue:y", 'C', 0}};
  cr_assert_not(posting_balanced(zero, 2), "zero entries are not allowed");
}

Test(posting, account_type_is_the_first_segment) {
  cr_assert_str_eq(posting_account_type("asset:processor_receivable:stripe"), "asset");
  cr_assert_str_eq(posting_account_type("expense:processing_fees"), "expense");
  cr_assert_null(posting_account_type("assets:x"));
  cr_assert_null(posting_account_type("revenue"));
}
