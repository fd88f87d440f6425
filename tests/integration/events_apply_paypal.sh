#!/usr/bin/env bash
# Processor events applied (#20) with the PayPal-like processor, through the
# real chain: charge speaks PayPal's /v2 API to procsim (processor "paypal"),
# procsim sends PayPal-signed webhooks (PayPal-Transmission-Sig, its webhook
# id) -> ps-webhook /webhooks/paypal -> payments.processor-events ->
# ps-events (services/events/event_map.c's PayPal branch) -> Postgres:
#  - forged PayPal webhooks (another secret, an old transmission, another
#    webhook id, a body that is not the one signed) are refused and nothing
#    is published or applied;
#  - a dispute lost (CUSTOMER.DISPUTE.CREATED / UPDATED funds_withdrawn /
#    RESOLVED lost) whose events arrive reordered and twice each: DESIGN's
#    postings, each once; its amount not refundable;
#  - a dispute won (withdrawn, reinstated, RESOLVED won) whose resolution
#    arrives first: withdrawn and reinstated, refundable again;
#  - a refund that fails late (PAYMENT.REFUND.FAILED): reversed, refundable
#    again;
#  - a sale whose answer was lost is settled by PAYMENT.CAPTURE.COMPLETED,
#    delivered three times, posted once; a declined one by
#    PAYMENT.CAPTURE.DENIED, with the decline code procsim's answer gives;
#  - the day's PayPal settlement report reconciles clean, payout posted once.
source "$(dirname "$0")/lib.sh"
R=$PAYSTREAM_RUN_DIR
# The charge worker's processor: PayPal-like, named paypal — the receiver's
# /webhooks/paypal (PAYSTREAM_WEBHOOK_PROCESSORS' default paypal:paypal),
# accepting procsim's webhook id only.
export PAYSTREAM_PROCESSOR_FLAVOUR=paypal PAYSTREAM_PROCESSOR_NAME=paypal
export PAYSTREAM_WEBHOOK_ID_PAYPAL=WH-ID-procsim
stack_up
start_events_pipeline
SIM="http://127.0.0.1:$(cat "$R/procsim.port")"
WH="http://127.0.0.1:$(cat "$R/webhook/webhook-1.port")/webhooks"
SECRET=$(cat "$R/secrets/webhook-paypal")
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
first_applied() {
  sql "SELECT e.type FROM processor_event_effects f JOIN processor_events e USING (processor, event_id)
        WHERE f.payment_id = '$1' ORDER BY f.applied_at, e.received_at LIMIT 1"
}
refund() { "$PAYCTL" refund m1 "$1" --key "$2" --amount "$3" --currency USD >/dev/null; }
sale() { "$PAYCTL" sale m1 "$1" --amount "$2" --currency USD --customer "c-$1" >/dev/null; }
verify() { check "payctl ledger verify is clean ($1)" quietly "$PAYCTL" ledger verify; }
# Duplicates the events stage has seen (its series appears with the first;
# 0 before that, while the stage answers).
dups() { metric events 1 'paystream_processor_events_total{stage="events",result="duplicate"}' 2>/dev/null || { ready events 1 && echo 0; }; }
dups_at_least() { [ "$(dups)" -ge "$1" ]; }
# pp_send BODY_FILE [SECRET [TIME [WEBHOOK_ID [SIGNED_FILE]]]]: delivers
# BODY_FILE to the receiver as PayPal would: HMAC-SHA256(SECRET,
# "<transmission id>|<time>|<webhook id>|<hex sha256(SIGNED_FILE)>").
# Prints the HTTP status.
pp_send() {
  local body=$1 secret=${2:-$SECRET} when=${3:-$(date -u +%FT%TZ)} whid=${4:-WH-ID-procsim}
  local signed=${5:-$1} tid crc sig
  tid=$(cat /proc/sys/kernel/random/uuid)
  crc=$(sha256sum <"$signed" | awk '{print $1}')
  sig=$(printf '%s|%s|%s|%s' "$tid" "$when" "$whid" "$crc" | openssl dgst -sha256 -hmac "$secret" | awk '{print $NF}')
  curl -s -o /dev/null -w '%{http_code}' -H 'Content-Type: application/json' \
    -H "PayPal-Transmission-Id: $tid" -H "PayPal-Transmission-Time: $when" \
    -H "PayPal-Transmission-Sig: $sig" -H "PayPal-Webhook-Id: $whid" -H 'PayPal-Auth-Algo: HMACSHA256' \
    --data-binary @"$body" "$WH/paypal"
}

# Sales first, with no webhook URL yet: charge's own answers settle them.
for s in lost won late; do sale "$s" 10000; done
"$PAYCTL" sale m1 declined --amount 700 --currency USD --customer c-declined --pm pm_card_chargeDeclined >/dev/null
for s in lost won late; do check "sale $s succeeds" wait_until 120 is_status "$s" succeeded; done
check "the declined card's sale is declined" wait_until 120 is_status declined declined
eq "charge spoke PayPal to procsim, as processor paypal" "paypal paypal" \
  "$(sql "SELECT DISTINCT a.processor FROM charge_attempts a JOIN payments p USING (payment_id) WHERE p.merchant_id = 'm1'") $(
    curl -sf "$SIM/_sim/operations?payment_id=$(pid_of lost)" | jq -r '[.. | objects | .flavour? // empty] | unique | join(",")')"
ANSWER_DECLINE=$(sql "SELECT decline_code FROM charge_attempts WHERE payment_id = '$(pid_of declined)'")
eq "procsim's PayPal answer declined it with its reason (upper case)" GENERIC_DECLINE "$ANSWER_DECLINE"

log "forged PayPal webhooks are refused and nothing is published (at ${SECONDS} s)"
P=$(pid_of lost)
jq -nc --arg p "$P" --arg c "$(charge_of "$P")" \
  '{id: "WH-FORGED-1", event_type: "CUSTOMER.DISPUTE.RESOLVED", create_time: (now | todate), resource_version: "2.0",
    resource: {id: "PP-D-FORGED", dispute_id: "PP-D-FORGED", status: "RESOLVED",
               dispute_amount: {currency_code: "USD", value: "100.00"}, fee: {currency_code: "USD", value: "0.00"},
               custom_id: $p, capture_id: $c, last_action: "closed", outcome: "lost"}}' >"$R/forged.json"
sed 's/"100.00"/"1.00"/' "$R/forged.json" >"$R/signed.json"
eq "signed with another processor's secret: 400" 400 "$(pp_send "$R/forged.json" "$(cat "$R/secrets/webhook-stripe")")"
eq "an old transmission (400 s): 400" 400 "$(pp_send "$R/forged.json" "$SECRET" "$(date -u -d '-400 seconds' +%FT%TZ)")"
eq "another webhook id: 400" 400 "$(pp_send "$R/forged.json" "$SECRET" "" WH-ID-other)"
eq "a signature over another body: 400" 400 "$(pp_send "$R/forged.json" "$SECRET" "" "" "$R/signed.json")"
refusals() { metric webhook 1 "paystream_webhook_refused_total{stage=\"webhook\",processor=\"paypal\",reason=\"$1\"}"; }
eq "refused as bad signatures (3) and stale (1)" "3 1" "$(refusals bad_signature) $(refusals stale)"
eq "nothing was published" 0 \
  "$(metric webhook 1 'paystream_webhook_published_total{stage="webhook",processor="paypal"}')"

post "/_sim/config?paypal_webhook_url=$WH/paypal&paypal_webhook_secret=$SECRET&webhook_retry_ms=100&webhook_dup_rate=1" >/dev/null

log "a dispute lost, its events reordered and each delivered twice (at ${SECONDS} s)"
D0=$(dups)
post "/_sim/config?webhook_reorder_next=2&webhook_reorder_ms=3000" >/dev/null
DP=$(post "/_sim/dispute?charge=$(charge_of "$P")&amount=4000&fee=1500" | jq -r .id)
post "/_sim/dispute?id=$DP&action=funds_withdrawn" >/dev/null
post "/_sim/dispute?id=$DP&action=lost" >/dev/null
check "the dispute ends lost" wait_until 60 dispute_is "$DP" lost
check "all three of its events applied" wait_until 60 applied "$P" 3
eq "the resolution was applied before the opening (reordered)" CUSTOMER.DISPUTE.RESOLVED "$(first_applied "$P")"
check "every copy reached the events stage" wait_until 60 dups_at_least $((D0 + 3))
eq "each event recorded once though delivered twice" \
  "CUSTOMER.DISPUTE.CREATED CUSTOMER.DISPUTE.RESOLVED CUSTOMER.DISPUTE.UPDATED" \
  "$(sql "SELECT string_agg(type, ' ' ORDER BY type) FROM processor_events WHERE payment_id = '$P'")"
check_dispute_lost paypal

log "a dispute won: withdrawn, reinstated, its resolution arriving first (at ${SECONDS} s)"
P=$(pid_of won)
D0=$(dups)
# The first three events (created, withdrawn, reinstated) are held back;
# RESOLVED won overtakes them.
post "/_sim/config?webhook_reorder_next=3&webhook_reorder_ms=5000" >/dev/null
DP=$(post "/_sim/dispute?charge=$(charge_of "$P")&amount=3000&fee=500" | jq -r .id)
post "/_sim/dispute?id=$DP&action=funds_withdrawn" >/dev/null
post "/_sim/dispute?id=$DP&action=won" >/dev/null
check "the dispute ends won" wait_until 60 dispute_is "$DP" won
check "its four events applied" wait_until 60 applied "$P" 4
eq "the resolution was applied first (reordered)" CUSTOMER.DISPUTE.RESOLVED "$(first_applied "$P")"
check "every copy reached the events stage" wait_until 60 dups_at_least $((D0 + 4))
eq "each of its events recorded once" 4 "$(sql "SELECT count(*) FROM processor_events WHERE payment_id = '$P'")"
eq "DESIGN's postings for a won dispute (fee kept), each once" \
"dispute_withdrawal asset:disputed_funds D 3000
dispute_withdrawal asset:processor_receivable:paypal C 3000
dispute_fee expense:chargebacks D 500
dispute_fee asset:processor_receivable:paypal C 500
dispute_reinstatement asset:processor_receivable:paypal D 3000
dispute_reinstatement asset:disputed_funds C 3000" "$(postings "$P")"
eq "the dispute: won, withdrawn and reinstated seen, nothing held" "won t t 0" \
  "$(sql "SELECT status, seen_withdrawn, seen_reinstated, held_minor FROM disputes WHERE processor_dispute_id = '$DP'" | tr '\t' ' ')"
eq "nothing held once won" "10000 0 0" "$(amounts "$P")"
won_outcome() { "$PAYCTL" outcomes 2>/dev/null | jq -c --arg p "$P" 'select(.payment_id == $p and .status == "updated" and .dispute_status == "won" and .disputed == 0)' | qgrep .; }
check "the merchant hears of it: an outcome updated / won" wait_until 120 won_outcome ||
  "$PAYCTL" outcomes 2>/dev/null | jq -c --arg p "$P" 'select(.payment_id == $p) | del(.raw)' | sed 's/^/#   /'
refund won won-r1 10000
check "the whole amount is refundable again" wait_until 60 op_done won-r1
eq "and refunded" "posted" "$(op_state won-r1)"
verify "won"

log "a refund that fails late (PAYMENT.REFUND.FAILED) (at ${SECONDS} s)"
P=$(pid_of late)
refund late late-r1 4000
check "the refund ends" wait_until 60 op_done late-r1
eq "refunded" "posted" "$(op_state late-r1)"
OP=$(sql "SELECT operation_id FROM payment_operations WHERE idempotency_key = 'late-r1'")
RE=$(sql "SELECT processor_op_id FROM payment_operations WHERE operation_id = '$OP'")
post "/_sim/refund_fail?refund=$RE" >/dev/null
reversed() { [ "$(sql "SELECT count(*) FROM refund_failures WHERE operation_id = '$OP'")" = 1 ]; }
check "the late failure is applied" wait_until 60 reversed
eq "applied from its PAYMENT.REFUND.FAILED event" "refund_reversed" \
  "$(sql "SELECT f.effect FROM processor_event_effects f JOIN processor_events e USING (processor, event_id)
          WHERE f.operation_id = '$OP' AND e.type = 'PAYMENT.REFUND.FAILED'")"
eq "its amount is refundable again" "10000 0 0" "$(amounts "$P")"
eq "its postings reversed, once" \
"refund_reversal asset:processor_receivable:paypal D 4000
refund_reversal liability:refunds_payable C 4000
refund_reversal liability:refunds_payable D 4000
refund_reversal revenue:refunds C 4000" "$(postings "$P")"
failed_outcome() { "$PAYCTL" outcomes 2>/dev/null | jq -c --arg o "$OP" 'select(.operation_id == $o and .status == "failed" and .error_code == "refund_failed" and .refunded == 0)' | qgrep .; }
check "the merchant hears the refund failed" wait_until 120 failed_outcome
refund late late-r2 10000
check "a refund of the whole amount ends" wait_until 60 op_done late-r2
eq "and is refunded" "posted" "$(op_state late-r2)"
verify "late refund failure"

log "a sale whose answer is lost is settled by PAYMENT.CAPTURE.COMPLETED, once (at ${SECONDS} s)"
# The sale acts, its connection drops unanswered and the listener then
# refuses connections for 20 s: charge can only wait; the webhook is sent.
post "/_sim/config?webhook_dup_rate=0&drop_next=1&refuse_ms=20000" >/dev/null
sale unknown 2500
P=""
has_pid() { P=$(pid_of unknown); [ -n "$P" ]; }
check "the sale is accepted" wait_until 60 has_pid
check "it succeeds" wait_until 120 is_status unknown succeeded
eq "settled by the webhook, not by an answer" "charge_settled" \
  "$(sql "SELECT f.effect FROM processor_event_effects f JOIN processor_events e USING (processor, event_id)
          WHERE f.payment_id = '$P' AND e.type = 'PAYMENT.CAPTURE.COMPLETED'")"
EV=$(sql "SELECT event_id FROM processor_events WHERE payment_id = '$P' AND type = 'PAYMENT.CAPTURE.COMPLETED'")
sql "SELECT convert_from(raw_body, 'UTF8') FROM processor_events WHERE event_id = '$EV'" | tr -d '\n' >"$R/capture-event.json"
D0=$(dups)
eq "the same webhook delivered a second time" 200 "$(pp_send "$R/capture-event.json")"
eq "and a third" 200 "$(pp_send "$R/capture-event.json")"
check "both copies were seen as duplicates" wait_until 60 dups_at_least $((D0 + 2))
eq "applied once" 1 "$(sql "SELECT count(*) FROM processor_event_effects WHERE event_id = '$EV'")"
eq "posted once" 1 "$(sql "SELECT count(*) FROM ledger_transactions WHERE payment_id = '$P' AND kind = 'payment'")"
answers() { curl -sf "$SIM/_sim/totals?payment_id=$P" >/dev/null; }
check "procsim answers again" wait_until 90 answers
eq "charged once at the processor, the fee its capture's" "2500 $(sql "SELECT fee_minor FROM payments WHERE payment_id = '$P'")" \
  "$(curl -sf "$SIM/_sim/totals?payment_id=$P" | jq -r '"\(.captured) \(.fees)"')"
eq "still posted once" 1 "$(sql "SELECT count(*) FROM ledger_transactions WHERE payment_id = '$P' AND kind = 'payment'")"
verify "webhook settled"

log "a declined sale whose answer was lost is declined by PAYMENT.CAPTURE.DENIED (at ${SECONDS} s)"
post "/_sim/config?drop_next=1&refuse_ms=20000" >/dev/null
"$PAYCTL" sale m1 unknown-declined --amount 700 --currency USD --customer c-ud --pm pm_card_chargeDeclined >/dev/null
check "it ends declined" wait_until 120 is_status unknown-declined declined
P=$(pid_of unknown-declined)
eq "declined by the webhook" "charge_declined" \
  "$(sql "SELECT f.effect FROM processor_event_effects f JOIN processor_events e USING (processor, event_id)
          WHERE f.payment_id = '$P' AND e.type = 'PAYMENT.CAPTURE.DENIED'")"
eq "its attempt declined with the code procsim's answer gives, nothing posted" "declined $ANSWER_DECLINE 0" \
  "$(sql "SELECT a.state, a.decline_code, (SELECT count(*) FROM ledger_transactions t WHERE t.payment_id = a.payment_id)
          FROM charge_attempts a WHERE a.payment_id = '$P'" | tr '\t' ' ')"
declined_outcome() { "$PAYCTL" outcomes 2>/dev/null | jq -c --arg p "$P" 'select(.payment_id == $p and .status == "declined" and .error_code == "card_declined")' | qgrep .; }
check "the merchant hears it was declined" wait_until 120 declined_outcome
check "procsim answers again" wait_until 90 answers

log "the day's PayPal settlement report agrees with what was applied (at ${SECONDS} s)"
DAY=$(date -u +%F)
curl -sf "$SIM/_sim/settlement?day=$DAY&flavour=paypal" >"$R/settlement.csv"
PAYOUT=$(awk -F, '$1 == "payout" { print $3 " " $4 }' "$R/settlement.csv")
check "one PayPal payout line (PAYOUT_…)" qgrep -E "^PAYOUT_[0-9]{8}_USD -?[0-9]+$" <<<"$PAYOUT"
eq "every movement is in it: charges, refunds, a refund failure, dispute withdrawals, a reinstatement" \
  "charge 4 dispute_reinstatement 1 dispute_withdrawal 2 refund 4 refund_failure 1" \
  "$(awk -F, 'NR > 1 && $1 != "payout" { n[$1]++ } END { for (t in n) print t, n[t] }' "$R/settlement.csv" | sort | tr '\n' ' ' | sed 's/ $//')"
"$PAYCTL" reconcile --report "$R/settlement.csv" --processor paypal >"$R/reconcile.txt" 2>&1
eq "payctl reconcile --report finds no mismatch (exit 0)" 0 "$?"
grep '^MISMATCH' "$R/reconcile.txt" | head -5 | sed 's/^/#   /'
eq "and posts the day's payout once, for the report's net" "paypal $PAYOUT" \
  "$(sql "SELECT processor, payout_id, amount_minor FROM settlement_payouts" | tr '\t' ' ')"
"$PAYCTL" reconcile --report "$R/settlement.csv" --processor paypal >"$R/reconcile2.txt" 2>&1
eq "the same report again is clean too (exit 0)" 0 "$?"
eq "and posts nothing more" "1 1" \
  "$(sql "SELECT (SELECT count(*) FROM settlement_payouts), (SELECT count(*) FROM ledger_transactions t JOIN settlement_payouts s USING (transaction_id))" | tr '\t' ' ')"
verify "after the payout"

eq "no forged event or dispute was ever recorded" "0 0" \
  "$(sql "SELECT (SELECT count(*) FROM processor_events WHERE event_id = 'WH-FORGED-1'),
                 (SELECT count(*) FROM disputes WHERE processor_dispute_id = 'PP-D-FORGED')" | tr '\t' ' ')"
check "no sanitizer reports" no_sanitizer_reports
log "done (at ${SECONDS} s)"
finish
