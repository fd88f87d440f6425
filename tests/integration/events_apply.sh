#!/usr/bin/env bash
# Processor events applied (#20), through the real chain: procsim sends
# signed webhooks -> ps-webhook -> payments.processor-events -> ps-events,
# which records each event once and applies it in Postgres
# (ps_apply_processor_event, migrations 023-024):
#  - a dispute whose events arrive reordered (closed `lost` before it was
#    opened) and twice each ends lost with DESIGN's postings, each once;
#    while disputed the amount is not refundable, and dispute + refunds
#    never return more than was captured (dispute-then-refund);
#  - a dispute won: funds withdrawn and reinstated, refundable again;
#  - refund-then-dispute: the dispute takes only what is left;
#  - a refund that fails late: its postings reversed, refundable again;
#  - a sale whose every answer was lost (attempt unknown) is settled by its
#    charge.succeeded webhook, delivered three times, posted once; a
#    declined one by its charge.failed webhook;
#  - the day's settlement report reconciles with all of it, payout posted.
# `payctl ledger verify` is clean at the end of each part.
source "$(dirname "$0")/lib.sh"
R=$PAYSTREAM_RUN_DIR
stack_up
start_events_pipeline
SIM="http://127.0.0.1:$(cat "$R/procsim.port")"
WH="http://127.0.0.1:$(cat "$R/webhook/webhook-1.port")/webhooks"
SECRET=$(cat "$R/secrets/webhook-stripe")
post() { curl -sf -X POST "$SIM$1"; }
charge_of() { sql "SELECT processor_charge_id FROM payments WHERE payment_id = '$1'"; }
amounts() { sql "SELECT captured_minor, refunded_minor, disputed_minor FROM payments WHERE payment_id = '$1'" | tr '\t' ' '; }
# postings PID: "kind-without-id account D|C amount" per entry, in posting order
postings() {
  sql "SELECT split_part(t.kind, ':', 1), a.name, e.direction, e.amount_minor FROM ledger_transactions t
        JOIN ledger_entries e USING (transaction_id) JOIN ledger_accounts a USING (account_id)
       WHERE t.payment_id = '$1' AND t.kind NOT IN ('payment', 'refund', 'refund_request')
       ORDER BY t.transaction_id, e.entry_id" | tr '\t' ' '
}
dispute_is() { [ "$(sql "SELECT status FROM disputes WHERE processor_dispute_id = '$1'")" = "$2" ]; }
applied() { [ "$(sql "SELECT count(*) FROM processor_event_effects WHERE payment_id = '$1' AND effect <> 'ignored'")" -ge "$2" ]; }
refund() { "$PAYCTL" refund m1 "$1" --key "$2" --amount "$3" --currency USD >/dev/null; }
sale() { "$PAYCTL" sale m1 "$1" --amount "$2" --currency USD --customer "c-$1" >/dev/null; }
verify() { check "payctl ledger verify is clean ($1)" quietly "$PAYCTL" ledger verify; }

# Sales first, their webhooks not made yet (no URL), so the charge worker's
# own answers settle them.
for s in lost won rtd late; do sale "$s" 10000; done
for s in lost won rtd late; do check "sale $s succeeds" wait_until 120 is_status "$s" succeeded; done
post "/_sim/config?stripe_webhook_url=$WH/stripe&stripe_webhook_secret=$SECRET&webhook_retry_ms=100&webhook_dup_rate=1" >/dev/null

log "a dispute lost, its events reordered and each delivered twice"
P=$(pid_of lost)
post "/_sim/config?webhook_reorder_next=2&webhook_reorder_ms=3000" >/dev/null
DP=$(post "/_sim/dispute?charge=$(charge_of "$P")&amount=4000&fee=1500" | jq -r .id)
post "/_sim/dispute?id=$DP&action=funds_withdrawn" >/dev/null
post "/_sim/dispute?id=$DP&action=lost" >/dev/null
check "the dispute ends lost" wait_until 60 dispute_is "$DP" lost
check "all three of its events applied" wait_until 60 applied "$P" 3
eq "the closing event was applied before the opening one (reordered)" "charge.dispute.closed" \
  "$(sql "SELECT e.type FROM processor_event_effects f JOIN processor_events e USING (processor, event_id)
          WHERE f.payment_id = '$P' ORDER BY f.applied_at LIMIT 1")"
eq "each event recorded once though delivered twice" 3 \
  "$(sql "SELECT count(*) FROM processor_events WHERE payment_id = '$P'")"
check_dispute_lost stripe

log "a dispute won: withdrawn, reinstated, refundable again"
P=$(pid_of won)
DP=$(post "/_sim/dispute?charge=$(charge_of "$P")&amount=3000&fee=500" | jq -r .id)
post "/_sim/dispute?id=$DP&action=funds_withdrawn" >/dev/null
post "/_sim/dispute?id=$DP&action=won" >/dev/null
check "the dispute ends won" wait_until 60 dispute_is "$DP" won
check "its events applied" wait_until 60 applied "$P" 4
eq "DESIGN's postings for a won dispute (fee kept), each once" \
"dispute_withdrawal asset:disputed_funds D 3000
dispute_withdrawal asset:processor_receivable:stripe C 3000
dispute_fee expense:chargebacks D 500
dispute_fee asset:processor_receivable:stripe C 500
dispute_reinstatement asset:processor_receivable:stripe D 3000
dispute_reinstatement asset:disputed_funds C 3000" "$(postings "$P")"
eq "nothing held once won" "10000 0 0" "$(amounts "$P")"
refund won won-r1 10000
check "the whole amount is refundable again" wait_until 60 op_done won-r1
eq "and refunded" "posted" "$(op_state won-r1)"
verify "won"

log "refund, then a dispute: it takes only what is left"
P=$(pid_of rtd)
refund rtd rtd-r1 7000
check "the refund ends" wait_until 60 op_done rtd-r1
eq "more than is left cannot be disputed at the processor" 400 \
  "$(curl -s -o /dev/null -w '%{http_code}' -X POST "$SIM/_sim/dispute?charge=$(charge_of "$P")&amount=3001")"
DP=$(post "/_sim/dispute?charge=$(charge_of "$P")" | jq -r .id)
post "/_sim/dispute?id=$DP&action=lost" >/dev/null
check "the dispute ends lost" wait_until 60 dispute_is "$DP" lost
eq "refund + dispute = what was captured" "10000 7000 3000" "$(amounts "$P")"
refund rtd rtd-r2 1
check "one more refund ends" wait_until 60 op_done rtd-r2
eq "refused: nothing is left" "rejected amount_exceeds_refundable" "$(op_state rtd-r2)"
verify "refund then dispute"

log "a refund that fails late"
P=$(pid_of late)
refund late late-r1 4000
check "the refund ends" wait_until 60 op_done late-r1
eq "refunded" "posted" "$(op_state late-r1)"
OP=$(sql "SELECT operation_id FROM payment_operations WHERE idempotency_key = 'late-r1'")
RE=$(sql "SELECT processor_op_id FROM payment_operations WHERE operation_id = '$OP'")
post "/_sim/refund_fail?refund=$RE" >/dev/null
reversed() { [ "$(sql "SELECT count(*) FROM refund_failures WHERE operation_id = '$OP'")" = 1 ]; }
check "the late failure is applied" wait_until 60 reversed
eq "its amount is refundable again" "10000 0 0" "$(amounts "$P")"
eq "its postings reversed, once" \
"refund_reversal asset:processor_receivable:stripe D 4000
refund_reversal liability:refunds_payable C 4000
refund_reversal liability:refunds_payable D 4000
refund_reversal revenue:refunds C 4000" "$(postings "$P")"
failed_outcome() { "$PAYCTL" outcomes 2>/dev/null | jq -c --arg o "$OP" 'select(.operation_id == $o and .status == "failed" and .error_code == "refund_failed" and .refunded == 0)' | qgrep .; }
check "the merchant hears the refund failed" wait_until 120 failed_outcome
refund late late-r2 10000
check "a refund of the whole amount ends" wait_until 60 op_done late-r2
eq "and is refunded" "posted" "$(op_state late-r2)"
eq "revenue:refunds nets to the 10000 really refunded" 10000 \
  "$(sql "SELECT sum(CASE e.direction WHEN 'D' THEN e.amount_minor ELSE -e.amount_minor END) FROM ledger_entries e
          JOIN ledger_accounts a USING (account_id) JOIN ledger_transactions t USING (transaction_id)
          WHERE a.name = 'revenue:refunds' AND t.payment_id = '$P'")"
verify "late refund failure"

log "a sale whose answers are all lost is settled by its webhook, once"
# The charge acts, its connection drops unanswered and the listener then
# refuses connections for 20 s: charge can only wait; the webhook is sent.
post "/_sim/config?webhook_dup_rate=0&drop_next=1&refuse_ms=20000" >/dev/null
sale unknown 2500
P=""
has_pid() { P=$(pid_of unknown); [ -n "$P" ]; }
check "the sale is accepted" wait_until 60 has_pid
check "it succeeds" wait_until 120 is_status unknown succeeded
eq "settled by the webhook, not by an answer" "charge_settled" \
  "$(sql "SELECT f.effect FROM processor_event_effects f JOIN processor_events e USING (processor, event_id)
          WHERE f.payment_id = '$P' AND e.type = 'charge.succeeded'")"
EV=$(sql "SELECT event_id FROM processor_events WHERE payment_id = '$P' AND type = 'charge.succeeded'")
sql "SELECT convert_from(raw_body, 'UTF8') FROM processor_events WHERE event_id = '$EV'" | tr -d '\n' >"$R/charge-event.json"
deliver() {
  local t; t=$(date +%s)
  curl -s -o /dev/null -w '%{http_code}' -H "Stripe-Signature: t=$t,v1=$( (printf '%s.' "$t"; cat "$R/charge-event.json") |
    openssl dgst -sha256 -hmac "$SECRET" | awk '{print $NF}')" --data-binary @"$R/charge-event.json" "$WH/stripe"
}
dups() { metric events 1 'paystream_processor_events_total{stage="events",result="duplicate"}'; }
D0=$(dups)
eq "the same webhook delivered a second time" 200 "$(deliver)"
eq "and a third" 200 "$(deliver)"
seen_twice_more() { [ "$(dups)" -ge $((D0 + 2)) ]; }
check "both copies were seen as duplicates" wait_until 60 seen_twice_more
eq "applied once" 1 "$(sql "SELECT count(*) FROM processor_event_effects WHERE event_id = '$EV'")"
eq "posted once" 1 "$(sql "SELECT count(*) FROM ledger_transactions WHERE payment_id = '$P' AND kind = 'payment'")"
answers() { curl -sf "$SIM/_sim/totals?payment_id=$P" >/dev/null; }
check "procsim answers again" wait_until 90 answers
eq "charged once at the processor" 2500 "$(curl -sf "$SIM/_sim/totals?payment_id=$P" | jq -r .captured)"
eq "still posted once" 1 "$(sql "SELECT count(*) FROM ledger_transactions WHERE payment_id = '$P' AND kind = 'payment'")"
verify "webhook settled"

log "a declined sale whose answer was lost is declined by its webhook"
post "/_sim/config?drop_next=1&refuse_ms=20000" >/dev/null
"$PAYCTL" sale m1 unknown-declined --amount 700 --currency USD --customer c-ud --pm pm_card_chargeDeclined >/dev/null
check "it ends declined" wait_until 120 is_status unknown-declined declined
P=$(pid_of unknown-declined)
eq "declined by the webhook" "charge_declined" \
  "$(sql "SELECT f.effect FROM processor_event_effects f JOIN processor_events e USING (processor, event_id)
          WHERE f.payment_id = '$P' AND e.type = 'charge.failed'")"
eq "its attempt declined, nothing posted" "declined 0" \
  "$(sql "SELECT a.state, (SELECT count(*) FROM ledger_transactions t WHERE t.payment_id = a.payment_id) FROM charge_attempts a WHERE a.payment_id = '$P'" | tr '\t' ' ')"
declined_outcome() { "$PAYCTL" outcomes 2>/dev/null | jq -c --arg p "$P" 'select(.payment_id == $p and .status == "declined" and .error_code == "card_declined")' | qgrep .; }
check "the merchant hears it was declined" wait_until 120 declined_outcome
check "procsim answers again" wait_until 90 answers

log "the processor's settlement report agrees with what was applied"
# Disputes lost and won, a late refund failure, sales settled by webhooks:
# every line of the day's report matches the postings the events stage
# made (payctl reconcile --report, #20), and its payout posts.
DAY=$(date -u +%F)
curl -sf "$SIM/_sim/settlement?day=$DAY&flavour=stripe" >"$R/settlement.csv"
"$PAYCTL" reconcile --report "$R/settlement.csv" --processor stripe >"$R/reconcile.txt" 2>&1
eq "payctl reconcile --report finds no mismatch (exit 0)" 0 "$?"
grep '^MISMATCH' "$R/reconcile.txt" | head -5 | sed 's/^/#   /'
eq "and posts the day's payout once" 1 "$(sql "SELECT count(*) FROM settlement_payouts")"
verify "after the payout"
finish
