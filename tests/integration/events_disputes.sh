#!/usr/bin/env bash
# Dispute events a processor may send that procsim does not (#20, migration
# 029), signed and delivered to ps-webhook like procsim's, applied by
# ps-events:
#  - two withdraw/reinstate cycles, then won: every cycle posted, each once;
#    the fee, first stated on the second withdrawal, posted once;
#  - withdrawn, reinstated, withdrawn, lost: net one withdrawal and the loss;
#  - a processor withdrawing more than the payment had left (after a
#    refund): the posting is the processor's amount, the hold capped at what
#    was left, an ALERT raised, counted and listed (disputes_held_short);
#  - a dispute recorded while its sale is still charging: held in full once
#    the sale is charged, so the whole amount is not refundable (034).
source "$(dirname "$0")/lib.sh"
R=$PAYSTREAM_RUN_DIR
stack_up
start_events_pipeline
WH="http://127.0.0.1:$(cat "$R/webhook/webhook-1.port")/webhooks/stripe"
SECRET=$(cat "$R/secrets/webhook-stripe")
sale() { "$PAYCTL" sale m1 "$1" --amount 10000 --currency USD --customer "c-$1" >/dev/null; }
amounts() { sql "SELECT captured_minor, refunded_minor, disputed_minor FROM payments WHERE payment_id = '$1'" | tr '\t' ' '; }
# send PID EVENT_ID TYPE DISPUTE AMOUNT [STATUS] [FEE]: a signed Stripe-like dispute event.
send() {
  local pid=$1 id=$2 type=$3 dp=$4 amt=$5 st=${6:-needs_response} fee=${7:-} t body
  t=$(date +%s)
  body=$(jq -cn --arg id "$id" --arg type "$type" --arg dp "$dp" --argjson amt "$amt" --arg st "$st" \
    --arg pid "$pid" --arg ch "$(sql "SELECT processor_charge_id FROM payments WHERE payment_id = '$pid'")" \
    --arg fee "$fee" --argjson t "$t" \
    '{id: $id, object: "event", type: $type, created: $t, data: {object: ({id: $dp, object: "dispute",
      charge: $ch, amount: $amt, currency: "usd", status: $st, metadata: {payment_id: $pid}}
      + (if $fee == "" then {} else {fee: ($fee | tonumber)} end))}}')
  curl -s -o /dev/null -w '%{http_code}' -H "Stripe-Signature: t=$t,v1=$(printf '%s.%s' "$t" "$body" |
    openssl dgst -sha256 -hmac "$SECRET" | awk '{print $NF}')" --data-binary "$body" "$WH"
}
applied() { [ "$(sql "SELECT count(*) FROM processor_event_effects WHERE event_id = '$1'")" = 1 ]; }
# deliver PID EVENT_ID ...: sent (2xx) and applied before the next.
deliver() {
  eq "  $3 ($2) accepted" 200 "$(send "$@")"
  check "  and applied" wait_until 60 applied "$2"
}
# postings PID DISPUTE: "kind-without-id amount" per transaction, sorted
postings() {
  sql "SELECT split_part(t.kind, ':', 1) || ' ' || max(e.amount_minor) FROM ledger_transactions t
        JOIN ledger_entries e USING (transaction_id) JOIN disputes d USING (dispute_id)
       WHERE t.payment_id = '$1' AND d.processor_dispute_id = '$2' GROUP BY t.transaction_id, t.kind" | sort
}
verify() { check "payctl ledger verify is clean ($1)" quietly "$PAYCTL" ledger verify; }

for s in cyc over; do sale "$s"; done
for s in cyc over; do check "sale $s succeeds" wait_until 120 is_status "$s" succeeded; done

log "two withdraw/reinstate cycles, then won; the fee first stated on the second withdrawal"
P=$(pid_of cyc)
deliver "$P" evt_c1 charge.dispute.created dp_cyc1 3000
deliver "$P" evt_c2 charge.dispute.funds_withdrawn dp_cyc1 3000
deliver "$P" evt_c3 charge.dispute.funds_reinstated dp_cyc1 3000
deliver "$P" evt_c4 charge.dispute.funds_withdrawn dp_cyc1 3000 needs_response 1500
deliver "$P" evt_c5 charge.dispute.funds_reinstated dp_cyc1 3000
deliver "$P" evt_c6 charge.dispute.closed dp_cyc1 3000 won
eq "every cycle posted once, the fee once" \
"dispute_fee 1500
dispute_reinstatement 3000
dispute_reinstatement 3000
dispute_withdrawal 3000
dispute_withdrawal 3000" "$(postings "$P" dp_cyc1)"
eq "won after two cycles, nothing held" "won 2 2 0 | 10000 0 0" \
  "$(sql "SELECT status, withdrawn_count, reinstated_count, held_minor FROM disputes WHERE processor_dispute_id = 'dp_cyc1'" | tr '\t' ' ') | $(amounts "$P")"
dups() { metric events 1 'paystream_processor_events_total{stage="events",result="duplicate"}'; }
D0=$(dups 2>/dev/null); D0=${D0:-0}
eq "the second withdrawal delivered again" 200 "$(send "$P" evt_c4 charge.dispute.funds_withdrawn dp_cyc1 3000 needs_response 1500)"
seen_dup() { [ "$(dups)" -gt "$D0" ]; }
check "is a duplicate" wait_until 60 seen_dup
eq "nothing more posted" 5 "$(postings "$P" dp_cyc1 | wc -l)"

log "withdrawn, reinstated, withdrawn, lost: net one withdrawal and the loss"
deliver "$P" evt_l1 charge.dispute.created dp_cyc2 2000
deliver "$P" evt_l2 charge.dispute.funds_withdrawn dp_cyc2 2000
deliver "$P" evt_l3 charge.dispute.funds_reinstated dp_cyc2 2000
deliver "$P" evt_l4 charge.dispute.funds_withdrawn dp_cyc2 2000
deliver "$P" evt_l5 charge.dispute.closed dp_cyc2 2000 lost
eq "each movement posted once" \
"dispute_lost 2000
dispute_reinstatement 2000
dispute_withdrawal 2000
dispute_withdrawal 2000" "$(postings "$P" dp_cyc2)"
eq "the lost dispute holds its amount" "10000 0 2000" "$(amounts "$P")"
verify "cycles"

log "a processor withdrawing more than the payment had left"
P=$(pid_of over)
"$PAYCTL" refund m1 over --key over-r --amount 8000 --currency USD >/dev/null
check "a refund of 8000 is posted" wait_until 120 eval '[ "$(op_state over-r)" = posted ]'
short() { metric events 1 paystream_disputes_held_short_total; }
A0=$(short 2>/dev/null); A0=${A0:-0}
deliver "$P" evt_o1 charge.dispute.created dp_over 5000
deliver "$P" evt_o2 charge.dispute.funds_withdrawn dp_over 5000
eq "the hold is capped at what was left" "2000 | 10000 8000 2000" \
  "$(sql "SELECT held_minor FROM disputes WHERE processor_dispute_id = 'dp_over'") | $(amounts "$P")"
eq "the posting is the processor's amount" "dispute_withdrawal 5000" "$(postings "$P" dp_over)"
more_short() { [ "$(short)" -ge $((A0 + 2)) ]; }
check "each event is counted" wait_until 30 more_short
alerted() { grep -h 'ALERT dispute dp_over' "$R"/logs/events*.log | qgrep 'hold capped'; }
check "an ALERT is logged" alerted
eq "an operator sees it listed" "dp_over 3000" \
  "$(sql "SELECT processor_dispute_id, short_minor FROM disputes_held_short" | tr '\t' ' ')"
verify "over-withdrawn"

log "a dispute recorded while its sale is still charging is held once the sale is charged (034)"
sim "fail_rate=1&fail_status=503"
sale early
check "the sale is held at the processor (charging)" wait_until 60 is_status early charging
P=$(pid_of early)
deliver "$P" evt_e1 charge.dispute.created dp_early 3000
eq "nothing captured yet: held at 0" "0 0 0" "$(amounts "$P")"
sim "fail_rate=0"
check "the sale is charged and succeeds" wait_until 120 is_status early succeeded
eq "the dispute is held in full as the money arrives" "10000 0 3000" "$(amounts "$P")"
eq "its hold" "3000" "$(sql "SELECT held_minor FROM disputes WHERE processor_dispute_id = 'dp_early'")"
"$PAYCTL" refund m1 early --key early-r1 --amount 10000 --currency USD >/dev/null
check "a refund of the whole amount ends" wait_until 60 op_done early-r1
eq "refused: 3000 of it is disputed" "rejected amount_exceeds_refundable" "$(op_state early-r1)"
deliver "$P" evt_e2 charge.dispute.funds_withdrawn dp_early 3000
eq "the dispute's next event is applied (not dead-lettered)" "dispute_withdrawal 3000" \
  "$(postings "$P" dp_early)"
verify "dispute before charge"
check "workers stop cleanly on SIGTERM" "$STACK" stop-workers
finish
