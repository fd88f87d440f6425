#!/usr/bin/env bash
# Fraud history cannot be erased by other traffic (issue 17 item 13): card
# and device histories are kept per merchant (another merchant's payments
# on the same card neither count here nor trim here), and a payment dated
# far in the future does not trim the history real payments need (the trim
# is bounded by the worker's clock). A card paying five times in 40 minutes
# at m_a is seen as such by m_a's next payment — after another merchant,
# and then m_a itself, sent a payment on that card dated days ahead (which
# ingest refuses since created_at is bounded at intake: created_at_invalid;
# the fraud stage's own clock bound on the trim is its second line).
source "$(dirname "$0")/lib.sh"
stack_up
"$STACK" workers 1
now=$(now_ms)
M=60000
D=$((24 * 60 * M))
# hist_intent KEY MERCHANT CUSTOMER AT DEVICE (lib.sh's intent, 25.00 USD, one shared card)
hist_intent() {
  intent "$1" '.merchant_id = $m | .customer_id = $c | .amount_minor = 2500 | .created_at_ms = $at
    | .payment_method = {id: "pm_card_visa", fingerprint: "fp_shared", created_at_ms: $pt, card_country: "US"}
    | .context = {ip: "198.51.100.7", country: "US", latitude: 40.71, longitude: -74.01,
                  device_id: $d, email: ($c + "@example.com")}' \
    --arg m "$2" --arg c "$3" --argjson at "$4" --arg d "$5" --argjson pt "$((now - 300 * D))"
}
assessed() { [ "$(sql "SELECT count(*) FROM payments p JOIN fraud_assessments a USING (payment_id) WHERE p.idempotency_key LIKE '$1'")" = "$2" ]; }
reasons() { sql "SELECT a.reasons FROM payments p JOIN fraud_assessments a USING (payment_id) WHERE p.idempotency_key = '$1'"; }
publish() { "$PAYCTL" publish --json "$PAYSTREAM_RUN_DIR/$1.jsonl" >/dev/null; }

for m in 45 40 30 20 10; do hist_intent "a-$m" m_a cus_a $((now - m * M)) dev_a; done >"$PAYSTREAM_RUN_DIR/a.jsonl"
publish a
check "m_a's five payments on the card are assessed" wait_until 90 assessed 'a-%' 5

# Another merchant, same card: one payment now (its card velocity is its
# own), then one dated three days ahead.
{
  hist_intent b-now m_b cus_b $((now - 5 * M)) dev_b
  hist_intent b-future m_b cus_b $((now + 3 * D)) dev_b
} >"$PAYSTREAM_RUN_DIR/b.jsonl"
publish b
rejected_as() { [ "$(sql "SELECT error_code FROM rejections WHERE idempotency_key = '$1'")" = "$2" ]; }
check "m_b's current payment is assessed" wait_until 60 assessed 'b-%' 1
check "m_b's future-dated payment is refused at intake" wait_until 60 rejected_as b-future created_at_invalid
eq "m_b's card velocity does not count m_a's payments" "" "$(grep -o 'velocity_card_[0-9a-z]*' <<<"$(reasons b-now)")"
hist_intent a-probe1 m_a cus_a "$now" dev_a >"$PAYSTREAM_RUN_DIR/p1.jsonl"
publish p1
check "m_a's next payment is assessed" wait_until 60 assessed a-probe1 1
check "and still sees its card's five payments: velocity_card_1h ($(reasons a-probe1))" qgrep velocity_card_1h <<<"$(reasons a-probe1)"

# The same merchant sends a payment on the card dated ten days ahead.
hist_intent a-future m_a cus_a2 $((now + 10 * D)) dev_a2 >"$PAYSTREAM_RUN_DIR/af.jsonl"
publish af
check "m_a's future-dated payment is refused at intake" wait_until 60 rejected_as a-future created_at_invalid
hist_intent a-probe2 m_a cus_a $((now + 1000)) dev_a >"$PAYSTREAM_RUN_DIR/p2.jsonl"
publish p2
check "m_a's next payment is assessed" wait_until 60 assessed a-probe2 1
r2=$(reasons a-probe2)
check "and its card history survived the future-dated one: velocity_card_1h ($r2)" qgrep velocity_card_1h <<<"$r2"
check "no sanitizer reports" no_sanitizer_reports
finish
