#!/usr/bin/env bash
# A PayPal-like dispute updated many times (#20): its withdraw/reinstate
# cycles are counted by money movement, not by event. PayPal updates a
# dispute for many reasons (evidence, messages) and its last_action is
# sticky, so every CUSTOMER.DISPUTE.UPDATED after the funds were withdrawn
# still says `funds_withdrawn`. procsim's dispute resource carries the
# cumulative money_movements list (seller DEBIT / CREDIT); ps-events passes
# its counts, 035 takes greatest(count, movements).
# Dispute opened, funds withdrawn, three plain updates (each delivered twice,
# one overtaken by the others), reinstated, two more updates, withdrawn
# again, lost: exactly two withdrawals and one reinstatement posted (gross
# and net as DESIGN's table), the dispute's counts right, the day's
# settlement report reconciles clean and its payout posts once.
# procsim lists the dispute's fee as a SELLER DEBIT of its own (reason
# DISPUTE_FEE): it is no withdrawal. A second dispute, won, whose list holds
# hold DEBIT, fee DEBIT, hold CREDIT: one withdrawal and one reinstatement
# posted (not two of each), the fee once. Last, an event whose movement list
# is implausible (a stray CREDIT) still applies its status, keeping the
# counts: two later UPDATEDs with the sticky last_action post nothing.
source "$(dirname "$0")/lib.sh"
R=$PAYSTREAM_RUN_DIR
export PAYSTREAM_PROCESSOR_FLAVOUR=paypal PAYSTREAM_PROCESSOR_NAME=paypal
export PAYSTREAM_WEBHOOK_ID_PAYPAL=WH-ID-procsim
stack_up
start_events_pipeline
SIM="http://127.0.0.1:$(cat "$R/procsim.port")"
WH="http://127.0.0.1:$(cat "$R/webhook/webhook-1.port")/webhooks"
SECRET=$(cat "$R/secrets/webhook-paypal")
post() { curl -sf -X POST "$SIM$1"; }
charge_of() { sql "SELECT processor_charge_id FROM payments WHERE payment_id = '$1'"; }
dups() { metric events 1 'paystream_processor_events_total{stage="events",result="duplicate"}' 2>/dev/null || { ready events 1 && echo 0; }; }
dups_at_least() { [ "$(dups)" -ge "$1" ]; }
applied() { [ "$(sql "SELECT count(*) FROM processor_event_effects WHERE payment_id = '$P'")" -ge "$1" ]; }

"$PAYCTL" sale m1 cyc --amount 10000 --currency USD --customer c-cyc >/dev/null
check "the sale succeeds" wait_until 120 is_status cyc succeeded
P=$(pid_of cyc)
# Every event from now on delivered twice (same event id).
post "/_sim/config?paypal_webhook_url=$WH/paypal&paypal_webhook_secret=$SECRET&webhook_retry_ms=100&webhook_dup_rate=1" >/dev/null
D0=$(dups)

log "opened, withdrawn, three plain updates, one overtaken (at ${SECONDS} s)"
DP=$(post "/_sim/dispute?charge=$(charge_of "$P")&amount=4000&fee=500" | jq -r .id)
post "/_sim/dispute?id=$DP&action=funds_withdrawn" >/dev/null
post "/_sim/config?webhook_reorder_next=1&webhook_reorder_ms=3000" >/dev/null
for _ in 1 2 3; do post "/_sim/dispute?id=$DP&action=update" >/dev/null; done
check "its five events applied" wait_until 60 applied 5
eq "the updates still say funds_withdrawn (sticky), with two DEBITs in their movement list: the hold and its fee" \
  "funds_withdrawn DISPUTE_HOLD,DISPUTE_FEE 3" \
  "$(sql "SELECT convert_from(raw_body, 'UTF8') FROM processor_events WHERE payment_id = '$P'
           AND type = 'CUSTOMER.DISPUTE.UPDATED'" |
     jq -rs '[.[] | select(.resource.last_action == "funds_withdrawn")] |
             "\(.[-1].resource.last_action) \([.[-1].resource.money_movements[] | select(.type == "DEBIT") | .reason] | join(",")) \(length - 1)"')"
eq "one withdrawal counted, not four" "withdrawn 1 0" \
  "$(sql "SELECT status, withdrawn_count, reinstated_count FROM disputes WHERE processor_dispute_id = '$DP'" | tr '\t' ' ')"

# dispute_net P: each account's net over payment P's dispute postings.
dispute_net() {
  sql "SELECT a.name, sum(CASE e.direction WHEN 'D' THEN e.amount_minor ELSE -e.amount_minor END)
         FROM ledger_transactions t JOIN ledger_entries e USING (transaction_id)
         JOIN ledger_accounts a USING (account_id)
        WHERE t.payment_id = '$1' AND t.dispute_id IS NOT NULL GROUP BY 1 ORDER BY 1" | tr '\t' ' '
}
# held_of P: payment P's captured, refunded and disputed amounts.
held_of() { sql "SELECT captured_minor, refunded_minor, disputed_minor FROM payments WHERE payment_id = '$1'" | tr '\t' ' '; }
log "reinstated, two updates, withdrawn again, lost (at ${SECONDS} s)"
post "/_sim/dispute?id=$DP&action=funds_reinstated" >/dev/null
post "/_sim/config?webhook_reorder_next=1&webhook_reorder_ms=3000" >/dev/null
for _ in 1 2; do post "/_sim/dispute?id=$DP&action=update" >/dev/null; done
post "/_sim/dispute?id=$DP&action=funds_withdrawn" >/dev/null
post "/_sim/dispute?id=$DP&action=lost" >/dev/null
dispute_is() { [ "$(sql "SELECT status FROM disputes WHERE processor_dispute_id = '$DP'")" = "$1" ]; }
check "the dispute ends lost" wait_until 60 dispute_is lost
check "all ten of its events applied" wait_until 60 applied 10
check "every copy reached the events stage" wait_until 60 dups_at_least $((D0 + 10))
eq "ten events recorded once each" 10 "$(sql "SELECT count(*) FROM processor_events WHERE payment_id = '$P'")"
eq "the dispute: lost, two withdrawals and one reinstatement counted" "lost 2 1 4000 500" \
  "$(sql "SELECT status, withdrawn_count, reinstated_count, held_minor, fee_minor FROM disputes
          WHERE processor_dispute_id = '$DP'" | tr '\t' ' ')"
eq "gross: two withdrawals, one fee, one reinstatement, the loss, each once" \
  "dispute_fee 1
dispute_lost 1
dispute_reinstatement 1
dispute_withdrawal 2" \
  "$(sql "SELECT split_part(kind, ':', 1), count(*) FROM ledger_transactions WHERE payment_id = '$P'
           AND dispute_id IS NOT NULL GROUP BY 1 ORDER BY 1" | tr '\t' ' ')"
eq "every dispute posting is the dispute's amount or its fee (DESIGN)" \
  "dispute_fee asset:processor_receivable:paypal C 500
dispute_fee expense:chargebacks D 500
dispute_lost asset:disputed_funds C 4000
dispute_lost expense:chargebacks D 4000
dispute_reinstatement asset:disputed_funds C 4000
dispute_reinstatement asset:processor_receivable:paypal D 4000
dispute_withdrawal asset:disputed_funds D 4000
dispute_withdrawal asset:disputed_funds D 4000
dispute_withdrawal asset:processor_receivable:paypal C 4000
dispute_withdrawal asset:processor_receivable:paypal C 4000" \
  "$(sql "SELECT split_part(t.kind, ':', 1), a.name, e.direction, e.amount_minor FROM ledger_transactions t
            JOIN ledger_entries e USING (transaction_id) JOIN ledger_accounts a USING (account_id)
           WHERE t.payment_id = '$P' AND t.dispute_id IS NOT NULL ORDER BY 1, 2, 3" | tr '\t' ' ')"
eq "net: the receivable down by the amount and the fee, the loss expensed, nothing left disputed" \
  "asset:disputed_funds 0
asset:processor_receivable:paypal -4500
expense:chargebacks 4500" \
  "$(dispute_net "$P")"
eq "the payment holds 4000 disputed" "10000 0 4000" \
  "$(held_of "$P")"
check "payctl ledger verify is clean" quietly "$PAYCTL" ledger verify

log "another dispute, won: its list carries the fee as a DEBIT of its own (at ${SECONDS} s)"
"$PAYCTL" sale m1 cyc-won --amount 10000 --currency USD --customer c-cyc >/dev/null
check "the second sale succeeds" wait_until 120 is_status cyc-won succeeded
P2=$(pid_of cyc-won)
DW=$(post "/_sim/dispute?charge=$(charge_of "$P2")&amount=3000&fee=700" | jq -r .id)
post "/_sim/dispute?id=$DW&action=funds_withdrawn" >/dev/null
post "/_sim/dispute?id=$DW&action=update" >/dev/null
post "/_sim/dispute?id=$DW&action=won" >/dev/null
won_is() { [ "$(sql "SELECT status FROM disputes WHERE processor_dispute_id = '$DW'")" = won ]; }
check "the dispute ends won" wait_until 60 won_is
applied_to() { [ "$(sql "SELECT count(*) FROM processor_event_effects WHERE payment_id = '$1'")" -ge "$2" ]; }
check "all four of its events applied" wait_until 60 applied_to "$P2" 4
eq "its last list: hold DEBIT, fee DEBIT, hold CREDIT" "DEBIT DISPUTE_HOLD,DEBIT DISPUTE_FEE,CREDIT DISPUTE_SETTLEMENT" \
  "$(sql "SELECT convert_from(raw_body, 'UTF8') FROM processor_events WHERE payment_id = '$P2'
           AND type = 'CUSTOMER.DISPUTE.RESOLVED'" |
     jq -r '[.resource.money_movements[] | "\(.type) \(.reason)"] | join(",")')"
eq "won: one withdrawal and one reinstatement counted (the fee DEBIT is no withdrawal), nothing held" \
  "won 1 1 0 700" \
  "$(sql "SELECT status, withdrawn_count, reinstated_count, held_minor, fee_minor FROM disputes
          WHERE processor_dispute_id = '$DW'" | tr '\t' ' ')"
eq "gross: one withdrawal, one reinstatement, the fee once" \
  "dispute_fee 1
dispute_reinstatement 1
dispute_withdrawal 1" \
  "$(sql "SELECT split_part(kind, ':', 1), count(*) FROM ledger_transactions WHERE payment_id = '$P2'
           AND dispute_id IS NOT NULL GROUP BY 1 ORDER BY 1" | tr '\t' ' ')"
eq "net: the receivable down by the fee only, nothing disputed" \
  "asset:disputed_funds 0
asset:processor_receivable:paypal -700
expense:chargebacks 700" \
  "$(dispute_net "$P2")"
eq "the second payment holds nothing disputed" "10000 0 0" \
  "$(held_of "$P2")"

log "the day's PayPal settlement report reconciles (at ${SECONDS} s)"
DAY=$(date -u +%F)
curl -sf "$SIM/_sim/settlement?day=$DAY&flavour=paypal" >"$R/settlement.csv"
PAYOUT=$(awk -F, '$1 == "payout" { print $3 " " $4 }' "$R/settlement.csv")
check "one PayPal payout line" qgrep -E "^PAYOUT_[0-9]{8}_USD -?[0-9]+$" <<<"$PAYOUT"
eq "the report: two charges, three withdrawals, two reinstatements" \
  "charge 2 dispute_reinstatement 2 dispute_withdrawal 3" \
  "$(awk -F, 'NR > 1 && $1 != "payout" { n[$1]++ } END { for (t in n) print t, n[t] }' "$R/settlement.csv" | sort | tr '\n' ' ' | sed 's/ $//')"
"$PAYCTL" reconcile --report "$R/settlement.csv" --processor paypal >"$R/reconcile.txt" 2>&1
eq "payctl reconcile --report finds no mismatch (exit 0)" 0 "$?"
grep '^MISMATCH' "$R/reconcile.txt" | head -5 | sed 's/^/#   /'
eq "and posts the day's payout once, for the report's net" "paypal $PAYOUT" \
  "$(sql "SELECT processor, payout_id, amount_minor FROM settlement_payouts" | tr '\t' ' ')"
"$PAYCTL" reconcile --report "$R/settlement.csv" --processor paypal >"$R/reconcile2.txt" 2>&1
eq "the same report again is clean (exit 0) and posts nothing more" "0 1" \
  "$? $(sql "SELECT count(*) FROM ledger_transactions t JOIN settlement_payouts s USING (transaction_id)")"
log "an event whose movement list is implausible still applies its status (at ${SECONDS} s)"
# procsim never lists more CREDITs than DEBITs: the event is the withdrawn
# one's row re-recorded as RESOLVED, applied with a stray CREDIT (1 DEBIT, 2
# CREDITs). Its status applies, the counts kept as they were.
D3=$(post "/_sim/dispute?charge=$(charge_of "$P2")&amount=2000" | jq -r .id)
post "/_sim/dispute?id=$D3&action=funds_withdrawn" >/dev/null
d3_withdrawn() { [ "$(sql "SELECT status, withdrawn_count FROM disputes WHERE processor_dispute_id = '$D3'" | tr '\t' ' ')" = "withdrawn 1" ]; }
check "the third dispute's funds are withdrawn" wait_until 60 d3_withdrawn
sql "INSERT INTO processor_events (processor, event_id, flavour, type, payment_id, object_id, object_type,
       charge_id, payment_intent_id, status, amount_minor, currency, occurred_at, received_at, raw_body,
       kafka_partition, kafka_offset)
     SELECT processor, 'WH-IMPLAUSIBLE-1', flavour, 'CUSTOMER.DISPUTE.RESOLVED', payment_id, object_id,
            object_type, charge_id, payment_intent_id, 'RESOLVED', amount_minor, currency, occurred_at,
            received_at, raw_body, kafka_partition, kafka_offset + 1000000
       FROM processor_events WHERE object_id = '$D3' ORDER BY kafka_offset DESC LIMIT 1" >/dev/null
eq "applied: the dispute won, the list's counts ignored and noted" \
  "dispute won an implausible movement list (1 withdrawals, 2 reinstatements) ignored: the counts kept" \
  "$(sql "SELECT effect, dispute_status, note FROM ps_apply_processor_event('paypal', 'WH-IMPLAUSIBLE-1',
           'dispute', 'won', NULL, NULL, '', '', 1, 2)" | tr '\t' ' ')"
eq "the hold released (the counts kept: the won close implies the reinstatement), nothing held" \
  "won 1 0 0 0" \
  "$(sql "SELECT d.status, d.withdrawn_count, d.reinstated_count, d.held_minor, p.disputed_minor
            FROM disputes d JOIN payments p USING (payment_id) WHERE processor_dispute_id = '$D3'" | tr '\t' ' ')"
sql "INSERT INTO processor_events (processor, event_id, flavour, type, payment_id, object_id, object_type,
       charge_id, payment_intent_id, status, amount_minor, currency, occurred_at, received_at, raw_body,
       kafka_partition, kafka_offset)
     SELECT processor, 'WH-IMPLAUSIBLE-2', flavour, type, payment_id, object_id, object_type, charge_id,
            payment_intent_id, status, amount_minor, currency, occurred_at, received_at, raw_body,
            kafka_partition, kafka_offset + 1
       FROM processor_events WHERE event_id = 'WH-IMPLAUSIBLE-1'" >/dev/null
eq "a list of 150 movements each way is over the cap (100): ignored, noted" \
  "dispute won an implausible movement list (150 withdrawals, 150 reinstatements) ignored: the counts kept" \
  "$(sql "SELECT effect, dispute_status, note FROM ps_apply_processor_event('paypal', 'WH-IMPLAUSIBLE-2',
           'dispute', 'won', NULL, NULL, '', '', 150, 150)" | tr '\t' ' ')"
eq "its postings: one withdrawal, one reinstatement" \
  "dispute_reinstatement 1
dispute_withdrawal 1" \
  "$(sql "SELECT split_part(t.kind, ':', 1), count(*) FROM ledger_transactions t JOIN disputes d USING (dispute_id)
           WHERE d.processor_dispute_id = '$D3' GROUP BY 1 ORDER BY 1" | tr '\t' ' ')"
log "two more UPDATEDs, sticky last_action funds_reinstated, the list still implausible (at ${SECONDS} s)"
# The list is cumulative: once implausible it stays so. Counting each such
# event as one more reinstatement would post one more withdrawal and
# reinstatement per event; the counts are kept.
for n in 3 4; do
  sql "INSERT INTO processor_events (processor, event_id, flavour, type, payment_id, object_id, object_type,
         charge_id, payment_intent_id, status, amount_minor, currency, occurred_at, received_at, raw_body,
         kafka_partition, kafka_offset)
       SELECT processor, 'WH-IMPLAUSIBLE-$n', flavour, 'CUSTOMER.DISPUTE.UPDATED', payment_id, object_id,
              object_type, charge_id, payment_intent_id, 'UNDER_REVIEW', amount_minor, currency, occurred_at,
              received_at, raw_body, kafka_partition, kafka_offset + $n
         FROM processor_events WHERE event_id = 'WH-IMPLAUSIBLE-1'" >/dev/null
  eq "UPDATED $n: applied, the status stays won, the counts kept and noted" \
    "dispute won an implausible movement list (1 withdrawals, 2 reinstatements) ignored: the counts kept" \
    "$(sql "SELECT effect, dispute_status, note FROM ps_apply_processor_event('paypal', 'WH-IMPLAUSIBLE-$n',
             'dispute', 'reinstated', NULL, NULL, '', '', 1, 2)" | tr '\t' ' ')"
done
eq "after them: the counts unchanged, nothing held" "won 1 0 0 0" \
  "$(sql "SELECT d.status, d.withdrawn_count, d.reinstated_count, d.held_minor, p.disputed_minor
            FROM disputes d JOIN payments p USING (payment_id) WHERE processor_dispute_id = '$D3'" | tr '\t' ' ')"
eq "and nothing more posted: still one withdrawal, one reinstatement" \
  "dispute_reinstatement 1
dispute_withdrawal 1" \
  "$(sql "SELECT split_part(t.kind, ':', 1), count(*) FROM ledger_transactions t JOIN disputes d USING (dispute_id)
           WHERE d.processor_dispute_id = '$D3' GROUP BY 1 ORDER BY 1" | tr '\t' ' ')"
check "payctl ledger verify is clean" quietly "$PAYCTL" ledger verify
check "no sanitizer reports" no_sanitizer_reports
log "done (at ${SECONDS} s)"
finish
