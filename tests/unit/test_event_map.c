/* event_map: processor events (both flavours, as procsim sends them) to
 * the action the events stage applies. */
#include <criterion/criterion.h>
#include <string.h>

#include "event_map.h"

typedef Payments__V1__ProcessorEvent proc_event;

static ev_map map(Payments__V1__ProcessorFlavour fl, const char *type, const char *status,
                  const char *intent, const char *body) {
  proc_event e = PAYMENTS__V1__PROCESSOR_EVENT__INIT;
  e.flavour = fl;
  e.type = (char *)type;
  e.status = (char *)status;
  e.payment_intent_id = (char *)intent;
  e.raw_body.data = (uint8_t *)body;
  e.raw_body.len = strlen(body);
  ev_map m;
  ev_map_event(&e, &m);
  return m;
}
#define STRIPE PAYMENTS__V1__PROCESSOR_FLAVOUR__PROCESSOR_FLAVOUR_STRIPE
#define PAYPAL PAYMENTS__V1__PROCESSOR_FLAVOUR__PROCESSOR_FLAVOUR_PAYPAL

Test(event_map, stripe_sale_succeeded_settles_with_its_fee) {
  ev_map m = map(STRIPE, "charge.succeeded", "succeeded", "",
                 "{\"data\":{\"object\":{\"object\":\"charge\",\"fee\":59}}}");
  cr_assert_eq(m.action, EV_CHARGE_SUCCEEDED);
  cr_assert_eq(m.fee_minor, 59);
}

Test(event_map, a_capture_of_an_intent_is_not_a_sale) {
  ev_map m = map(STRIPE, "charge.succeeded", "succeeded", "pi_1", "{\"data\":{\"object\":{}}}");
  cr_assert_eq(m.action, EV_NONE);
}

Test(event_map, stripe_sale_failed_carries_its_decline_code) {
  ev_map m = map(STRIPE, "charge.failed", "failed", "",
                 "{\"data\":{\"object\":{\"failure_code\":\"insufficient_funds\"}}}");
  cr_assert_eq(m.action, EV_CHARGE_FAILED);
  cr_assert_str_eq(m.decline_code, "insufficient_funds");
}

Test(event_map, refund_updates_fail_or_settle_a_refund) {
  cr_assert_eq(map(STRIPE, "refund.updated", "failed", "", "{}").action, EV_REFUND_FAILED);
  cr_assert_eq(map(STRIPE, "refund.updated", "succeeded", "", "{}").action, EV_REFUND_SUCCEEDED);
  cr_assert_eq(map(STRIPE, "refund.updated", "pending", "", "{}").action, EV_NONE);
  cr_assert_eq(map(PAYPAL, "PAYMENT.REFUND.FAILED", "FAILED", "", "{}").action, EV_REFUND_FAILED);
  cr_assert_eq(map(PAYPAL, "PAYMENT.CAPTURE.REFUNDED", "COMPLETED", "", "{}").action,
               EV_REFUND_SUCCEEDED);
}

Test(event_map, a_refund_event_names_our_operation) {
  const char *b = "{\"data\":{\"object\":{\"object\":\"refund\",\"metadata\":"
                  "{\"payment_id\":\"p1\",\"refund_id\":\"op_7\"}}}}";
  cr_assert_str_eq(map(STRIPE, "refund.updated", "succeeded", "", b).operation_id, "op_7");
  cr_assert_str_eq(map(STRIPE, "refund.updated", "failed", "", b).operation_id, "op_7");
  cr_assert_str_eq(map(STRIPE, "refund.updated", "failed", "", "{}").operation_id, "");
  cr_assert_str_eq(map(PAYPAL, "PAYMENT.REFUND.FAILED", "FAILED", "",
                       "{\"resource\":{\"invoice_id\":\"op_8\"}}").operation_id,
                   "op_8");
}

Test(event_map, stripe_dispute_events_name_their_status_and_fee) {
  const char *b = "{\"data\":{\"object\":{\"object\":\"dispute\",\"fee\":1500}}}";
  ev_map m = map(STRIPE, "charge.dispute.created", "needs_response", "", b);
  cr_assert_eq(m.action, EV_DISPUTE);
  cr_assert_str_eq(m.dispute_status, "open");
  cr_assert_eq(m.fee_minor, 1500);
  cr_assert_str_eq(map(STRIPE, "charge.dispute.funds_withdrawn", "needs_response", "", b).dispute_status,
                   "withdrawn");
  cr_assert_str_eq(map(STRIPE, "charge.dispute.funds_reinstated", "needs_response", "", b).dispute_status,
                   "reinstated");
  cr_assert_str_eq(map(STRIPE, "charge.dispute.closed", "won", "", b).dispute_status, "won");
  cr_assert_str_eq(map(STRIPE, "charge.dispute.closed", "lost", "", b).dispute_status, "lost");
}

Test(event_map, a_closed_dispute_neither_won_nor_lost_is_not_applied) {
  ev_map m;
  proc_event e = PAYMENTS__V1__PROCESSOR_EVENT__INIT;
  e.flavour = STRIPE;
  e.type = "charge.dispute.closed";
  e.status = "warning_closed";
  e.raw_body.data = (uint8_t *)"{}";
  e.raw_body.len = 2;
  cr_assert_eq(ev_map_event(&e, &m), -1);
  cr_assert_eq(m.action, EV_NONE);
}

Test(event_map, paypal_dispute_status_comes_from_last_action_and_outcome) {
  const char *upd_w = "{\"resource\":{\"last_action\":\"funds_withdrawn\",\"fee\":"
                      "{\"currency_code\":\"USD\",\"value\":\"15.00\"}}}";
  ev_map m = map(PAYPAL, "CUSTOMER.DISPUTE.UPDATED", "OPEN", "", upd_w);
  cr_assert_eq(m.action, EV_DISPUTE);
  cr_assert_str_eq(m.dispute_status, "withdrawn");
  cr_assert_eq(m.fee_minor, 1500);
  cr_assert_str_eq(map(PAYPAL, "CUSTOMER.DISPUTE.UPDATED", "OPEN", "",
                       "{\"resource\":{\"last_action\":\"funds_reinstated\"}}").dispute_status,
                   "reinstated");
  cr_assert_str_eq(map(PAYPAL, "CUSTOMER.DISPUTE.RESOLVED", "RESOLVED", "",
                       "{\"resource\":{\"outcome\":\"lost\",\"last_action\":\"funds_withdrawn\"}}")
                       .dispute_status,
                   "lost");
  cr_assert_str_eq(map(PAYPAL, "CUSTOMER.DISPUTE.CREATED", "OPEN", "", "{\"resource\":{}}").dispute_status,
                   "open");
}

Test(event_map, paypal_sale_capture_settles_and_denial_declines) {
  ev_map m = map(PAYPAL, "PAYMENT.CAPTURE.COMPLETED", "COMPLETED", "",
                 "{\"resource\":{\"fee_minor\":42}}");
  cr_assert_eq(m.action, EV_CHARGE_SUCCEEDED);
  cr_assert_eq(m.fee_minor, 42);
  m = map(PAYPAL, "PAYMENT.CAPTURE.DENIED", "DECLINED", "", "{\"resource\":{\"reason\":\"do_not_honor\"}}");
  cr_assert_eq(m.action, EV_CHARGE_FAILED);
  cr_assert_str_eq(m.decline_code, "do_not_honor");
}

Test(event_map, a_paypal_capture_fee_is_read_from_its_seller_receivable_breakdown) {
  /* PayPal's own field (no procsim fee_minor): the fee, not "not stated". */
  ev_map m = map(PAYPAL, "PAYMENT.CAPTURE.COMPLETED", "COMPLETED", "",
                 "{\"resource\":{\"seller_receivable_breakdown\":{\"paypal_fee\":"
                 "{\"currency_code\":\"USD\",\"value\":\"3.20\"}}}}");
  cr_assert_eq(m.action, EV_CHARGE_SUCCEEDED);
  cr_assert_eq(m.fee_minor, 320);
  m = map(PAYPAL, "PAYMENT.CAPTURE.COMPLETED", "COMPLETED", "",
          "{\"resource\":{\"seller_receivable_breakdown\":{\"paypal_fee\":"
          "{\"currency_code\":\"JPY\",\"value\":\"32\"}},\"fee_minor\":1}}");
  cr_assert_eq(m.fee_minor, 32, "PayPal's field first");
  m = map(PAYPAL, "PAYMENT.CAPTURE.COMPLETED", "COMPLETED", "",
          "{\"resource\":{\"seller_receivable_breakdown\":{\"paypal_fee\":"
          "{\"currency_code\":\"USD\",\"value\":\"3.2x\"}},\"fee_minor\":320}}");
  cr_assert_eq(m.fee_minor, 320, "a malformed breakdown falls back to fee_minor");
}

Test(event_map, a_body_that_is_not_json_maps_by_type_with_no_fee) {
  cr_assert_eq(map(STRIPE, "charge.dispute.created", "", "", "not json").action, EV_DISPUTE);
  cr_assert_eq(map(STRIPE, "charge.dispute.created", "", "", "not json").fee_minor, -1);
}

Test(event_map, paypal_dispute_counts_the_sellers_money_movements) {
  ev_map m = map(PAYPAL, "CUSTOMER.DISPUTE.UPDATED", "OPEN", "",
                 "{\"resource\":{\"last_action\":\"funds_withdrawn\",\"money_movements\":["
                 "{\"affected_party\":\"SELLER\",\"type\":\"DEBIT\"},"
                 "{\"affected_party\":\"SELLER\",\"type\":\"CREDIT\"},"
                 "{\"affected_party\":\"BUYER\",\"type\":\"CREDIT\"},"
                 "{\"affected_party\":\"SELLER\",\"type\":\"DEBIT\"}]}}");
  cr_assert_str_eq(m.dispute_status, "withdrawn");
  cr_assert_eq(m.withdrawals, 2);
  cr_assert_eq(m.reinstatements, 1);
  m = map(PAYPAL, "CUSTOMER.DISPUTE.CREATED", "OPEN", "", "{\"resource\":{\"money_movements\":[]}}");
  cr_assert_eq(m.withdrawals, 0);
  cr_assert_eq(m.reinstatements, 0);
  /* an old-style event (no list) and a Stripe event state no movements */
  m = map(PAYPAL, "CUSTOMER.DISPUTE.UPDATED", "OPEN", "",
          "{\"resource\":{\"last_action\":\"funds_withdrawn\"}}");
  cr_assert_eq(m.withdrawals, -1);
  cr_assert_eq(m.reinstatements, -1);
  m = map(STRIPE, "charge.dispute.funds_withdrawn", "needs_response", "",
          "{\"data\":{\"object\":{\"money_movements\":[]}}}");
  cr_assert_eq(m.withdrawals, -1);
  /* a Stripe dispute update (evidence) is recorded only */
  m = map(STRIPE, "charge.dispute.updated", "needs_response", "", "{\"data\":{\"object\":{}}}");
  cr_assert_eq(m.action, EV_NONE);
}

Test(event_map, paypal_dispute_fee_movements_are_not_withdrawals) {
  /* a won dispute: the hold DEBITed, its fee DEBITed apart, the hold CREDITed */
  ev_map m = map(PAYPAL, "CUSTOMER.DISPUTE.RESOLVED", "RESOLVED", "",
                 "{\"resource\":{\"outcome\":\"won\",\"dispute_amount\":"
                 "{\"currency_code\":\"USD\",\"value\":\"40.00\"},\"money_movements\":["
                 "{\"affected_party\":\"SELLER\",\"type\":\"DEBIT\",\"reason\":\"DISPUTE_HOLD\","
                 "\"amount\":{\"currency_code\":\"USD\",\"value\":\"40.00\"}},"
                 "{\"affected_party\":\"SELLER\",\"type\":\"DEBIT\",\"reason\":\"DISPUTE_FEE\","
                 "\"amount\":{\"currency_code\":\"USD\",\"value\":\"5.00\"}},"
                 "{\"affected_party\":\"SELLER\",\"type\":\"DEBIT\",\"reason\":\"CHARGEBACK_FEE\"},"
                 "{\"affected_party\":\"SELLER\",\"type\":\"CREDIT\",\"reason\":\"DISPUTE_SETTLEMENT_FEE\"},"
                 "{\"affected_party\":\"SELLER\",\"type\":\"CREDIT\",\"reason\":\"DISPUTE_SETTLEMENT\","
                 "\"amount\":{\"currency_code\":\"USD\",\"value\":\"40.00\"}}]}}");
  cr_assert_str_eq(m.dispute_status, "won");
  cr_assert_eq(m.withdrawals, 1, "fee DEBITs are not withdrawals of the disputed funds");
  cr_assert_eq(m.reinstatements, 1);
  cr_assert(!m.partial);
  /* a movement of part of the amount: counted, and said */
  m = map(PAYPAL, "CUSTOMER.DISPUTE.UPDATED", "OPEN", "",
          "{\"resource\":{\"last_action\":\"funds_withdrawn\",\"dispute_amount\":"
          "{\"currency_code\":\"USD\",\"value\":\"40.00\"},\"money_movements\":["
          "{\"affected_party\":\"SELLER\",\"type\":\"DEBIT\",\"reason\":\"DISPUTE_HOLD\","
          "\"amount\":{\"currency_code\":\"USD\",\"value\":\"25.00\"}}]}}");
  cr_assert_eq(m.withdrawals, 1);
  cr_assert(m.partial);
}

/* Real PayPal disputes state no `fee`: the fee is the seller's fee DEBITs
 * in money_movements (a fee CREDIT is not a fee charged). */
#define PP_HOLD                                                                          \
  "{\"affected_party\":\"SELLER\",\"type\":\"DEBIT\",\"reason\":\"DISPUTE_HOLD\","      \
  "\"amount\":{\"currency_code\":\"USD\",\"value\":\"40.00\"}}"
#define PP_DISPUTE(fee, moves)                                                            \
  "{\"resource\":{\"last_action\":\"funds_withdrawn\",\"dispute_amount\":"              \
  "{\"currency_code\":\"USD\",\"value\":\"40.00\"}" fee ",\"money_movements\":[" moves "]}}"
Test(event_map, a_paypal_dispute_without_fee_takes_it_from_its_fee_debits) {
  ev_map m = map(PAYPAL, "CUSTOMER.DISPUTE.UPDATED", "OPEN", "",
                 PP_DISPUTE("", PP_HOLD ",{\"affected_party\":\"SELLER\",\"type\":\"DEBIT\","
                                "\"reason\":\"DISPUTE_FEE\",\"amount\":{\"currency_code\":"
                                "\"USD\",\"value\":\"15.00\"}},{\"affected_party\":\"SELLER\","
                                "\"type\":\"CREDIT\",\"reason\":\"DISPUTE_SETTLEMENT_FEE\","
                                "\"amount\":{\"currency_code\":\"USD\",\"value\":\"15.00\"}}"));
  cr_assert_eq(m.fee_minor, 1500);
  cr_assert_eq(m.withdrawals, 1);
  /* two fee DEBITs: their sum */
  m = map(PAYPAL, "CUSTOMER.DISPUTE.UPDATED", "OPEN", "",
          PP_DISPUTE("", PP_HOLD ",{\"affected_party\":\"SELLER\",\"type\":\"DEBIT\",\"reason\":"
                         "\"DISPUTE_FEE\",\"amount\":{\"currency_code\":\"USD\",\"value\":"
                         "\"15.00\"}},{\"affected_party\":\"SELLER\",\"type\":\"DEBIT\","
                         "\"reason\":\"CHARGEBACK_FEE\",\"amount\":{\"currency_code\":\"USD\","
                         "\"value\":\"5.25\"}}"));
  cr_assert_eq(m.fee_minor, 2025);
  /* a stated `fee` is the fee */
  m = map(PAYPAL, "CUSTOMER.DISPUTE.UPDATED", "OPEN", "",
          PP_DISPUTE(",\"fee\":{\"currency_code\":\"USD\",\"value\":\"12.00\"}",
                     PP_HOLD ",{\"affected_party\":\"SELLER\",\"type\":\"DEBIT\",\"reason\":"
                             "\"DISPUTE_FEE\",\"amount\":{\"currency_code\":\"USD\",\"value\":"
                             "\"15.00\"}}"));
  cr_assert_eq(m.fee_minor, 1200);
}

Test(event_map, a_fee_debit_that_cannot_be_read_leaves_the_fee_unknown) {
  /* none yet */
  ev_map m = map(PAYPAL, "CUSTOMER.DISPUTE.UPDATED", "OPEN", "", PP_DISPUTE("", PP_HOLD));
  cr_assert_eq(m.fee_minor, -1);
  /* without an amount */
  m = map(PAYPAL, "CUSTOMER.DISPUTE.UPDATED", "OPEN", "",
          PP_DISPUTE("", PP_HOLD ",{\"affected_party\":\"SELLER\",\"type\":\"DEBIT\","
                         "\"reason\":\"DISPUTE_FEE\"}"));
  cr_assert_eq(m.fee_minor, -1);
  /* in another currency than the dispute's */
  m = map(PAYPAL, "CUSTOMER.DISPUTE.UPDATED", "OPEN", "",
          PP_DISPUTE("", PP_HOLD ",{\"affected_party\":\"SELLER\",\"type\":\"DEBIT\",\"reason\":"
                         "\"DISPUTE_FEE\",\"amount\":{\"currency_code\":\"EUR\",\"value\":"
                         "\"15.00\"}}"));
  cr_assert_eq(m.fee_minor, -1);
  /* the buyer's fee movement is not the seller's fee */
  m = map(PAYPAL, "CUSTOMER.DISPUTE.UPDATED", "OPEN", "",
          PP_DISPUTE("", PP_HOLD ",{\"affected_party\":\"BUYER\",\"type\":\"DEBIT\",\"reason\":"
                         "\"DISPUTE_FEE\",\"amount\":{\"currency_code\":\"USD\",\"value\":"
                         "\"15.00\"}}"));
  cr_assert_eq(m.fee_minor, -1);
}
