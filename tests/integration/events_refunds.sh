#!/usr/bin/env bash
# Refunds settled by the processor's word (#20, migration 028), through the
# real chain procsim -> ps-webhook -> Kafka -> ps-events, with charge's own
# answers held back (the refund acts, its answer hangs past charge's
# timeout, then every status query gets a 503 until the test lets it go):
#  - a refund without an answer settled by its refund.updated (succeeded)
#    webhook: posted once, one outcome; charge, which held it, emits nothing;
#  - the race the other way: charge's status query settles it first, the
#    late webhook changes nothing;
#  - a refund that fails late while ours is still `processing` (its success
#    webhook lost): the failure is kept; charge's status query then returns
#    the stored success and the refund ends succeeded-then-reversed (both
#    postings), refundable again exactly once, one outcome `failed`;
#  - a refund declined whose answer was lost: its failure webhook is kept,
#    the status query's decline gives the reservation back, the failure moot;
#  - a dispute opened while a refund is in flight is held short; when the
#    refund is declined the dispute's hold is topped up (never refunded +
#    disputed > captured), and Postgres refuses a hold left short.
source "$(dirname "$0")/lib.sh"
R=$PAYSTREAM_RUN_DIR
stack_up
export PAYSTREAM_PROCESSOR_TIMEOUT_MS=4000
start_events_pipeline
SIM=$PAYSTREAM_PROCESSOR_URL
WH="http://127.0.0.1:$(cat "$R/webhook/webhook-1.port")/webhooks"
SECRET=$(cat "$R/secrets/webhook-stripe")
sale() { "$PAYCTL" sale m1 "$1" --amount 10000 --currency USD --customer "c-$1" >/dev/null; }
refund() { "$PAYCTL" refund m1 "$1" --key "$2" --amount "$3" --currency USD >/dev/null; }
op_col() { sql "SELECT $2 FROM payment_operations WHERE merchant_id = 'm1' AND idempotency_key = '$1'"; }
amounts() { sql "SELECT captured_minor, refunded_minor, refunding_minor, disputed_minor FROM payments WHERE payment_id = '$1'" | tr '\t' ' '; }
requests_for() { curl -sf "$SIM/_sim/requests" | jq -r --arg k "$1" '.by_key[$k] // 0'; }
received() { [ "$(requests_for "op_$(op_col "$1" operation_id)")" -ge 1 ]; }
effect_of() { sql "SELECT string_agg(effect, ' ' ORDER BY applied_at) FROM processor_event_effects WHERE operation_id = '$1' AND effect <> 'ignored'"; }
has_effect() { [ "$(effect_of "$1")" = "$2" ]; }
postings() { sql "SELECT string_agg(kind, ' ' ORDER BY transaction_id) FROM ledger_transactions WHERE operation_id = '$1'"; }
outcomes_of() { "$PAYCTL" outcomes 2>/dev/null | jq -r --arg o "$1" 'select(.operation_id == $o) | "\(.status) \(.error_code // "")"' | sed 's/ $//' | sort | paste -sd, -; }
elsewhere() { metric charge 1 paystream_charge_settled_elsewhere_total; }
# hold_answers KEY: the refund acts at procsim, its answer hangs past
# charge's timeout, and every status query is answered 503 from then on.
hold_answers() {
  check "  procsim has the refund" wait_until 60 received "$1"
  sim "timeout_rate=0&fail_rate=1&fail_status=503"
}
release_answers() { sim "fail_rate=0"; }
verify() { check "payctl ledger verify is clean ($1)" quietly "$PAYCTL" ledger verify; }

for s in hook race late decl disp; do sale "$s"; done
for s in hook race late decl disp; do check "sale $s succeeds" wait_until 120 is_status "$s" succeeded; done
sim "stripe_webhook_url=$WH/stripe&stripe_webhook_secret=$SECRET&webhook_retry_ms=100"

log "a refund without an answer is settled by its succeeded webhook"
P=$(pid_of hook)
E0=$(elsewhere)
sim "timeout_rate=1&hang_ms=10000"
refund hook hook-r 4000
hold_answers hook-r
OP=$(op_col hook-r operation_id)
check "it is posted" wait_until 60 eval '[ "$(op_col hook-r state)" = posted ]'
eq "settled by the webhook, marked so" "refund_settled events" "$(effect_of "$OP") $(op_col hook-r settled_by)"
eq "its amounts moved once" "10000 4000 0 0" "$(amounts "$P")"
release_answers
more_elsewhere() { [ "$(elsewhere)" -gt "$E0" ]; }
check "charge, which held it, found it settled by processor events and emitted nothing" wait_until 60 more_elsewhere
check "every stage caught up" wait_until 60 caught_up charge ledger
eq "posted once" "refund" "$(postings "$OP")"
eq "one outcome: succeeded" "succeeded" "$(outcomes_of "$OP")"
eq "procsim was asked to refund once" 1 "$(requests_for "op_$OP")"
verify "webhook settled"

log "the race the other way: charge's status query first, the webhook late"
P=$(pid_of race)
sim "webhook_delay_ms=8000&timeout_rate=1&hang_ms=10000"
refund race race-r 3000
OP=""
has_op() { OP=$(op_col race-r operation_id); [ -n "$OP" ] && received race-r; }
check "procsim has the refund" wait_until 60 has_op
sim "timeout_rate=0"
check "charge's status query settles it" wait_until 60 eval '[ "$(op_col race-r state)" = posted ]'
eq "settled by charge" "charge" "$(op_col race-r settled_by)"
late_hook() { [ "$(sql "SELECT count(*) FROM processor_events WHERE payment_id = '$P' AND type = 'refund.updated'")" -ge 1 ]; }
check "the late webhook arrives" wait_until 60 late_hook
applied_all() { [ "$(sql "SELECT count(*) FROM processor_events e LEFT JOIN processor_event_effects f USING (processor, event_id) WHERE e.payment_id = '$P' AND f.event_id IS NULL")" = 0 ]; }
check "and is applied" wait_until 60 applied_all
eq "it changed nothing" "" "$(effect_of "$OP")"
sim "webhook_delay_ms=0"
check "every stage caught up" wait_until 60 caught_up charge ledger
eq "posted once" "refund" "$(postings "$OP")"
eq "one outcome: succeeded" "succeeded" "$(outcomes_of "$OP")"
eq "its amounts moved once" "10000 3000 0 0" "$(amounts "$P")"

log "a refund that fails late while ours is still processing"
P=$(pid_of late)
sim "webhook_lose_next=1&timeout_rate=1&hang_ms=10000"
refund late late-r 4000
hold_answers late-r
OP=$(op_col late-r operation_id)
RE=$(curl -sf "$SIM/_sim/operations?payment_id=$P" | jq -r '.data[] | select(.op == "refund") | .object_id' | head -1)
eq "procsim fails the refund late" 200 "$(curl -s -o /dev/null -w '%{http_code}' -X POST "$SIM/_sim/refund_fail?refund=$RE")"
check "the failure is kept: the refund has no answer yet" wait_until 60 has_effect "$OP" refund_failure_kept
eq "still processing, its amount reserved" "processing 10000 0 4000 0" "$(op_col late-r state) $(amounts "$P")"
release_answers
check "charge's status query (the stored success) ends it" wait_until 60 eval '[ "$(op_col late-r state)" = posted ]'
eq "succeeded, then reversed" "t applied" "$(op_col late-r reversed) $(sql "SELECT state FROM refund_failures WHERE operation_id = '$OP'")"
eq "both postings, each once" "refund refund_reversal" "$(postings "$OP")"
eq "refundable again: nothing refunded, nothing reserved" "10000 0 0 0" "$(amounts "$P")"
failed_outcome() { [ "$(outcomes_of "$OP")" = "failed refund_failed" ]; }
check "the merchant hears it failed" wait_until 60 failed_outcome
check "every stage caught up" wait_until 60 caught_up charge ledger
eq "and only that" "failed refund_failed" "$(outcomes_of "$OP")"
refund late late-r2 10000
check "a refund of the whole amount ends" wait_until 120 op_done late-r2
eq "and is refunded" "posted" "$(op_state late-r2)"
eq "revenue:refunds nets to the 10000 really refunded" 10000 \
  "$(sql "SELECT sum(CASE e.direction WHEN 'D' THEN e.amount_minor ELSE -e.amount_minor END) FROM ledger_entries e
          JOIN ledger_accounts a USING (account_id) JOIN ledger_transactions t USING (transaction_id)
          WHERE a.name = 'revenue:refunds' AND t.payment_id = '$P'")"
verify "late failure kept"

log "a refund declined whose answer was lost: the failure kept, then moot"
P=$(pid_of decl)
sim "refund_decline_next=1&refund_decline_as=error&timeout_rate=1&hang_ms=10000"
refund decl decl-r 5000
hold_answers decl-r
OP=$(op_col decl-r operation_id)
check "its failure webhook is kept" wait_until 60 has_effect "$OP" refund_failure_kept
release_answers
check "the status query's decline ends it" wait_until 60 eval '[ "$(op_col decl-r state)" = declined ]'
eq "the reservation given back, nothing posted, the failure moot" "10000 0 0 0 | moot" \
  "$(amounts "$P") |$(postings "$OP") $(sql "SELECT state FROM refund_failures WHERE operation_id = '$OP'")"
verify "declined"

log "a dispute opened while a refund is in flight is topped up when the refund is declined"
P=$(pid_of disp)
sim "refund_decline_next=1&refund_decline_as=error&timeout_rate=1&hang_ms=10000"
refund disp disp-r 6000
hold_answers disp-r
DP=$(curl -sf -X POST "$SIM/_sim/dispute?charge=$(sql "SELECT processor_charge_id FROM payments WHERE payment_id = '$P'")&amount=10000" | jq -r .id)
opened() { [ -n "$(sql "SELECT 1 FROM disputes WHERE processor_dispute_id = '$DP'")" ]; }
check "the dispute of the whole amount is applied" wait_until 60 opened
eq "held short: the refund in flight reserved 6000" "4000 | 10000 0 6000 4000" \
  "$(sql "SELECT held_minor FROM disputes WHERE processor_dispute_id = '$DP'") | $(amounts "$P")"
release_answers
check "the refund ends declined" wait_until 60 eval '[ "$(op_col disp-r state)" = declined ]'
eq "the dispute holds all of it now" "10000 | 10000 0 0 10000" \
  "$(sql "SELECT held_minor FROM disputes WHERE processor_dispute_id = '$DP'") | $(amounts "$P")"
refund disp disp-r2 1
check "a refund of 1 more ends" wait_until 60 op_done disp-r2
eq "refused: all of it is disputed" "rejected amount_exceeds_refundable" "$(op_state disp-r2)"
short_refused() {
  local out
  out=$(psql "$PAYSTREAM_PG_DSN" -qAtX -v ON_ERROR_STOP=1 -c "BEGIN;
    UPDATE disputes SET held_minor = held_minor - 1 WHERE processor_dispute_id = '$DP';
    UPDATE payments SET disputed_minor = disputed_minor - 1 WHERE payment_id = '$P'; COMMIT;" 2>&1)
  qgrep 'guard: payment .* refundable while a dispute is held short' <<<"$out" || { echo "# psql: $out"; return 1; }
}
check "Postgres refuses a dispute held short while the payment has room (even as the owner)" short_refused
eq "nothing changed" "10000" "$(sql "SELECT held_minor FROM disputes WHERE processor_dispute_id = '$DP'")"
verify "dispute topped up"
check "workers stop cleanly on SIGTERM" "$STACK" stop-workers
finish
