#!/usr/bin/env bash
# The fraud stage's two seed flows, through the real pipeline with the
# committed model: a low-risk $50 payment from the customer's usual city is
# allowed and charged; a $5,000 payment from a new country, on a card added
# today, by a customer with 10 payments in the last hour, is blocked by
# rules without calling the model. Histories are built by publishing the
# customers' earlier payments first (fraud keeps them in Redis).
source "$(dirname "$0")/lib.sh"
stack_up
"$STACK" workers 1
now=$(now_ms)
H=3600000
# flow_intent KEY CUSTOMER AMOUNT AT COUNTRY LAT LON CARD CARD_ADDED_AT CARD_COUNTRY DEVICE
# (lib.sh's intent with every fraud feature's input set)
flow_intent() {
  intent "$1" '.customer_id = $c | .amount_minor = $a | .created_at_ms = $at
    | .payment_method = {id: "pm_card_visa", fingerprint: $fp, created_at_ms: $pt, card_country: $cc}
    | .context = {ip: "198.51.100.7", country: $co, latitude: $la, longitude: $lo,
                  device_id: $d, email: ($c + "@example.com")}' \
    --arg c "$2" --argjson a "$3" --argjson at "$4" --arg co "$5" --argjson la "$6" --argjson lo "$7" \
    --arg fp "$8" --argjson pt "$9" --arg cc "${10}" --arg d "${11}"
}
count_of() { sql "SELECT count(*) FROM payments WHERE idempotency_key LIKE '$1' AND outcome IS NOT NULL"; }
field() { sql "SELECT $2 FROM payments p JOIN fraud_assessments a USING (payment_id) WHERE p.idempotency_key = '$1'"; }
settled() { [ "$(count_of "$1")" = "$2" ]; }

# Histories: the usual customer paid in New York over the last days; the
# busy one, a customer for days (not a new account bursting), ten times in
# the last hour, also in New York, on an old card.
old=$((now - 200 * 24 * H))
{
  for d in 5 4 3 2 1; do flow_intent "usual-$d" cus_usual 4200 $((now - d * 24 * H)) US 40.71 -74.01 fp_usual $old US dev_usual; done
  for d in 3 2; do flow_intent "busy-d$d" cus_busy 1500 $((now - d * 24 * H)) US 40.71 -74.01 fp_busy $old US dev_busy; done
  for m in 55 50 45 40 35 30 25 20 15 10; do flow_intent "busy-$m" cus_busy 1500 $((now - m * 60000)) US 40.71 -74.01 fp_busy $old US dev_busy; done
} >"$PAYSTREAM_RUN_DIR/history.jsonl"
check "payctl publish --json publishes the histories" quietly "$PAYCTL" publish --json "$PAYSTREAM_RUN_DIR/history.jsonl"
check "the histories settle" wait_until 90 settled 'usual-%' 5
check "the busy customer's twelve settle" wait_until 90 settled 'busy-%' 12
eq "the usual customer's history was allowed" "5" "$(sql "SELECT count(*) FROM payments WHERE idempotency_key LIKE 'usual-%' AND status = 'succeeded'")"

rows0=$(metric fraud 1 paystream_fraud_model_rows_total)
flow_intent low cus_usual 5000 "$now" US 40.73 -73.99 fp_usual $old US dev_usual >"$PAYSTREAM_RUN_DIR/low.jsonl"
"$PAYCTL" publish --json "$PAYSTREAM_RUN_DIR/low.jsonl" >/dev/null
check "the \$50 payment settles" wait_until 60 settled low 1
eq "it is allowed" "allow" "$(field low a.decision)"
eq "and charged" "succeeded" "$(field low p.status)"
eq "by the model (its version recorded)" "gbt-" "$(field low 'left(a.model_version, 4)')"
eq "which scored it low" "t" "$(field low 'a.ml_score < 0.2')"
eq "with no rule firing" "{}" "$(field low a.reasons)"
rows1=$(metric fraud 1 paystream_fraud_model_rows_total)
eq "the model scored it (rows counter moved by one)" "$((rows0 + 1))" "$rows1"

flow_intent high cus_busy 500000 "$now" FR 48.86 2.35 fp_new_today $((now - 2 * H)) US dev_busy >"$PAYSTREAM_RUN_DIR/high.jsonl"
"$PAYCTL" publish --json "$PAYSTREAM_RUN_DIR/high.jsonl" >/dev/null
check "the \$5,000 payment settles" wait_until 60 settled high 1
eq "it is blocked" "blocked" "$(field high p.status)"
eq "by a blocking rule" "block" "$(field high a.decision)"
reasons=$(field high a.reasons)
for r in velocity_customer_1h country_new new_payment_method amount_high country_mismatch impossible_travel; do
  check "reason $r" qgrep "$r" <<<"$reasons"
done
eq "without the model" "skipped" "$(field high a.model_version)"
eq "ml score 0" "0" "$(field high a.ml_score)"
eq "model rows counter did not move" "$rows1" "$(metric fraud 1 paystream_fraud_model_rows_total)"
blocked_outcome() {
  [ "$("$PAYCTL" outcomes | jq -r 'select(.idempotency_key=="high") | "\(.status) \(.error_code)"')" = "blocked fraud_blocked" ]
}
check "its outcome says blocked with fraud_blocked" wait_until 30 blocked_outcome
charges=$(curl -sf "$PAYSTREAM_PROCESSOR_URL/v1/charges" | jq '[.data[] | select(.metadata.payment_id == "'"$(sql "SELECT payment_id FROM payments WHERE idempotency_key='high'")"'")] | length')
eq "the processor never saw it" "0" "$charges"

# A retried batch or a replay does not count a payment twice: replaying
# fraud's input re-emits stored assessments and leaves Redis history as is.
before=$(redis-cli -p "$PAYSTREAM_REDIS_PORT" zcard 'fraud:customer:{m_1}:cus_busy')
eq "the busy customer's history holds each payment once" "13" "$before"
check "workers stop cleanly on SIGTERM" "$STACK" stop-workers
check "payctl replay fraud to earliest" quietly "$PAYCTL" replay --stage fraud --to-offset earliest
check "the replay has work to do" eval '! caught_up fraud'
"$STACK" workers 1
check "the replayed stage re-processes its input" wait_until 90 caught_up fraud
eq "no payment was re-scored" "19" "$(sql "SELECT count(*) FROM fraud_assessments")"
eq "history unchanged by the replay" "$before" "$(redis-cli -p "$PAYSTREAM_REDIS_PORT" zcard 'fraud:customer:{m_1}:cus_busy')"
eq "the blocked payment is still blocked, never charged" "blocked" "$(field high p.status)"
check "workers stop cleanly on SIGTERM" "$STACK" stop-workers
check "payctl ledger verify passes" quietly "$PAYCTL" ledger verify
check "no sanitizer reports" no_sanitizer_reports
finish
