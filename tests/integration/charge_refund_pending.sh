#!/usr/bin/env bash
# A refund the processor answers `pending` gets its verdict later (#20 item 1).
# The replay of the first answer (_lookup) says `pending` for ever, so charge
# keeps the processor's refund id from that answer and asks the refund's
# CURRENT state by id (GET /v1/refunds/{id}; PayPal /v2/payments/refunds/{id}):
#  - a pending refund that fails later, its refund.failed webhook LOST: only
#    charge's query can end it — `declined` refund_failed, its reservation
#    given back, one outcome;
#  - the same with the failure webhook delivered (charge's queries answered
#    503 until the failure is kept): the kept failure becomes moot, the
#    refund `declined` once, one outcome;
#  - a pending refund that later succeeds, its webhook lost and its by-id
#    query answered 422 meanwhile (no verdict: still processing): posted
#    once, one outcome.
#  - (PayPal) a pending refund whose reply does not name it (minimal
#    answer), past the key's lifetime: the search's answer keeps its id,
#    the query by id ends it (review3 1).
# Books balanced, payctl ledger verify clean. Before the fix both failed
# refunds stayed `processing` with their amount reserved for ever.
# Both flavours: FLAVOUR=paypal (charge_refund_pending_paypal.sh) makes
# charge speak PayPal's /v2 API to procsim as processor `paypal`.
source "$(dirname "$0")/lib.sh"
R=$PAYSTREAM_RUN_DIR
FLAVOUR=${FLAVOUR:-stripe}
if [ "$FLAVOUR" = paypal ]; then
  export PAYSTREAM_PROCESSOR_FLAVOUR=paypal PAYSTREAM_PROCESSOR_NAME=paypal
  export PAYSTREAM_WEBHOOK_ID_PAYPAL=WH-ID-procsim
fi
stack_up
export PAYSTREAM_PROCESSOR_TIMEOUT_MS=4000
start_events_pipeline
SIM="http://127.0.0.1:$(cat "$R/procsim.port")"
WH="http://127.0.0.1:$(cat "$R/webhook/webhook-1.port")/webhooks"
SECRET=$(cat "$R/secrets/webhook-$FLAVOUR")
sale() { "$PAYCTL" sale m1 "$1" --amount 10000 --currency USD --customer "c-$1" >/dev/null; }
refund() { "$PAYCTL" refund m1 "$1" --key "$2" --amount "$3" --currency USD >/dev/null; }
op_col() { sql "SELECT $2 FROM payment_operations WHERE merchant_id = 'm1' AND idempotency_key = '$1'"; }
amounts() { sql "SELECT captured_minor, refunded_minor, refunding_minor FROM payments WHERE payment_id = '$1'" | tr '\t' ' '; }
effect_of() { sql "SELECT string_agg(effect, ' ' ORDER BY applied_at) FROM processor_event_effects WHERE operation_id = '$1' AND effect <> 'ignored'"; }
has_effect() { [ "$(effect_of "$1")" = "$2" ]; }
postings() { sql "SELECT string_agg(kind, ' ' ORDER BY transaction_id) FROM ledger_transactions WHERE operation_id = '$1'"; }
outcomes_of() { "$PAYCTL" outcomes 2>/dev/null | jq -r --arg o "$1" 'select(.operation_id == $o) | "\(.status) \(.error_code // "")"' | sed 's/ $//' | sort | paste -sd, -; }
sim_refund_of() { curl -sf "$SIM/_sim/operations?payment_id=$1" | jq -r '.data[] | select(.op == "refund") | .object_id' | head -1; }
has_sim_refund() { [ -n "$(sim_refund_of "$1")" ]; }
queried_by_id() { qgrep "refund $1 pending at the processor as $2" "$R/logs/charge-1.log"; }
verify() { check "payctl ledger verify is clean ($1)" quietly "$PAYCTL" ledger verify; }
# pending_refund SALE KEY AMOUNT: the refund answered pending; sets P, OP, RID.
pending_refund() {
  P=$(pid_of "$1")
  sim "refund_pending_next=1" "$SIM"
  refund "$1" "$2" "$3"
  check "  procsim holds the refund pending" wait_until 60 has_sim_refund "$P"
  RID=$(sim_refund_of "$P")
  OP=$(op_col "$2" operation_id)
  check "  charge keeps the processor's refund id" wait_until 60 eval '[ "$(op_col '"$2"' processor_op_id)" = "$RID" ]'
  eq "  held: processing, its amount reserved" "processing 10000 0 $3" "$(op_col "$2" state) $(amounts "$P")"
}

# fail_refund RID: procsim fails refund RID (as the processor does days later).
fail_refund() { eq "procsim fails the refund" 200 "$(curl -s -o /dev/null -w '%{http_code}' -X POST "$SIM/_sim/refund_fail?refund=$1")"; }
# ends_declined KEY: charge's query by id ends refund KEY declined.
ends_declined() { check "charge's query by id ends it" wait_until 60 eval '[ "$(op_col '"$1"' state)" = declined ]'; }
# searched_keeps_id OPID KEY RID: past the key's lifetime refund KEY (operation
# OPID) is searched for, and the search's answer keeps RID as its id.
searched_keeps_id() {
  check "  past the key's lifetime it is searched for" \
    wait_until 90 qgrep "operation $1: first sent past the processor's key lifetime" "$R/logs/charge-1.log"
  check "  the search's answer keeps the processor's refund id" \
    wait_until 60 eval '[ "$(op_col '"$2"' processor_op_id)" = "'"$3"'" ]'
}
for s in lost hook ok; do sale "$s"; done
for s in lost hook ok; do check "sale $s succeeds" wait_until 120 is_status "$s" succeeded; done
sim "${FLAVOUR}_webhook_url=$WH/$FLAVOUR&${FLAVOUR}_webhook_secret=$SECRET&webhook_retry_ms=100" "$SIM"
eq "charge speaks $FLAVOUR to procsim" "$FLAVOUR" \
  "$(curl -sf "$SIM/_sim/operations?payment_id=$(pid_of lost)" | jq -r '[.. | objects | .flavour? // empty] | unique | join(",")')"

log "a pending refund that fails later, its failure webhook lost"
pending_refund lost lost-r 4000
sim "webhook_lose_next=1" "$SIM"
fail_refund "$RID"
ends_declined lost-r
eq "declined with the processor's reason" "declined refund_failed expired_or_canceled_card" \
  "$(op_state lost-r) $(op_col lost-r decline_code)"
eq "the reservation given back, nothing posted, no webhook applied" "10000 0 0 | |" \
  "$(amounts "$P") |$(postings "$OP") |$(effect_of "$OP")"
one_declined() { [ "$(outcomes_of "$OP")" = "declined refund_failed" ]; }
check "one outcome: declined" wait_until 60 one_declined
verify "lost webhook"

log "a pending refund that fails later, its failure webhook delivered"
pending_refund hook hook-r 5000
sim "fail_rate=1&fail_status=503" "$SIM"
fail_refund "$RID"
check "its failure webhook is kept" wait_until 60 has_effect "$OP" refund_failure_kept
sim "fail_rate=0" "$SIM"
ends_declined hook-r
eq "declined once, the reservation given back, nothing posted, the failure moot" \
  "declined refund_failed 10000 0 0 | moot" \
  "$(op_state hook-r) $(amounts "$P") |$(postings "$OP") $(sql "SELECT state FROM refund_failures WHERE operation_id = '$OP'")"
one_declined() { [ "$(outcomes_of "$OP")" = "declined refund_failed" ]; }
check "one outcome: declined" wait_until 60 one_declined
verify "delivered webhook"

log "a pending refund that succeeds later, its by-id query answered 422 meanwhile"
pending_refund ok ok-r 3000
# its succeeded webhook lost: only charge's query ends it. A 422 to that
# query (PayPal: details[0].issue) is no verdict — before the fix it
# declined the refund at PayPal and gave its room back: refundable twice.
sim "webhook_lose_next=1&fail_rate=1&fail_status=422" "$SIM"
eq "procsim completes the refund" 200 "$(curl -s -o /dev/null -w '%{http_code}' -X POST "$SIM/_sim/refund_complete?refund=$RID")"
answered_422() { qgrep "refund $RID by id: HTTP 422, not a 2xx: no verdict" "$R/logs/charge-1.log"; }
check "charge's query by id is answered 422" wait_until 60 answered_422
eq "a 422 to the query decides nothing: processing, its amount reserved" "processing 10000 0 3000" \
  "$(op_col ok-r state) $(amounts "$P")"
sim "fail_rate=0&fail_status=500" "$SIM"
check "it is posted" wait_until 90 eval '[ "$(op_col ok-r state)" = posted ]'
eq "refunded once" "10000 3000 0 | refund" "$(amounts "$P") | $(postings "$OP")"
one_ok() { [ "$(outcomes_of "$OP")" = "succeeded" ]; }
check "one outcome: succeeded" wait_until 60 one_ok
if [ "$FLAVOUR" = paypal ]; then
  # review3 1: a pending refund whose reply does not name it (PayPal's
  # minimal answer: a gateway that drops Prefer) is asked by the replay;
  # past the key's lifetime the replay says "unknown" and only the search
  # is left, which repeats the first answer: pending, every 2 s, for ever
  # (no ALERT, the 7-day bound never checked). Now the search's answer,
  # which names it, keeps its id and the query by id takes over.
  log "a pending refund whose reply does not name it, past the key's lifetime: the search keeps its id"
  sale late
  check "sale late succeeds" wait_until 120 is_status late succeeded
  # key lifetime 4 s (window 3.6 s); procsim remembers keys for 5 s
  sql "INSERT INTO processor_settings (processor, authorization_window, idempotency_key_lifetime)
       VALUES ('paypal', interval '7 days', interval '4 seconds')
       ON CONFLICT (processor) DO UPDATE SET idempotency_key_lifetime = excluded.idempotency_key_lifetime" >/dev/null
  sim "key_lifetime_ms=5000&refund_minimal_next=1&refund_pending_next=1" "$SIM"
  refund late late-r 2000
  LP=$(pid_of late)
  check "  procsim holds the refund pending" wait_until 60 has_sim_refund "$LP"
  LRID=$(sim_refund_of "$LP")
  LOP=$(op_col late-r operation_id)
  searched_keeps_id "$LOP" late-r "$LRID"
  sim "webhook_lose_next=1" "$SIM"
  fail_refund "$LRID"
  ends_declined late-r
  eq "declined with the processor's reason, the reservation given back" \
    "declined refund_failed expired_or_canceled_card 10000 0 0" \
    "$(op_state late-r) $(op_col late-r decline_code) $(amounts "$LP")"
  late_declined() { [ "$(outcomes_of "$LOP")" = "declined refund_failed" ]; }
  check "one outcome: declined" wait_until 60 late_declined
  eq "procsim got one refund request: never sent again" 1 \
    "$(curl -sf "$SIM/_sim/requests" | jq -r --arg k "op_$LOP" '.by_key[$k] // 0')"
  # s11 review 4: a note (here the search's, past the key's lifetime) never
  # overwrites a pending refund's 7-day reason: rewritten, the next answer
  # raised its ALERT again.
  log "a refund pending past the 7-day bound, then searched for: one ALERT"
  sale old
  check "sale old succeeds" wait_until 120 is_status old succeeded
  sim "key_lifetime_ms=600000&refund_minimal_next=1&refund_pending_next=1" "$SIM"
  refund old old-r 2000
  OP7=$(pid_of old)
  check "  procsim holds the refund pending" wait_until 60 has_sim_refund "$OP7"
  ORID=$(sim_refund_of "$OP7")
  OOP=$(op_col old-r operation_id)
  check "  its first send is counted" wait_until 60 eval '[ -n "$(op_col old-r first_sent_at)" ]'
  sql "SET LOCAL session_replication_role = replica;
       UPDATE payment_operations SET first_sent_at = now() - interval '8 days' WHERE operation_id = '$OOP'" >/dev/null
  alerts7() { grep -c "ALERT refund $OOP pending at paypal for more than 7 days" "$R/logs/charge-1.log" || true; }
  check "  the 7-day bound's ALERT" wait_until 60 eval '[ "$(alerts7)" -ge 1 ]'
  sim "key_lifetime_ms=1" "$SIM" # procsim forgets the key: the replay says unknown, the search follows
  searched_keeps_id "$OOP" old-r "$ORID"
  sim "webhook_lose_next=1&key_lifetime_ms=5000" "$SIM"
  fail_refund "$ORID"
  ends_declined old-r
  eq "  the 7-day ALERT once (the search's note did not overwrite its reason)" 1 "$(alerts7)"
fi
check "every stage caught up" wait_until 60 caught_up charge ledger
for k in lost-r hook-r; do
  eq "$k: still one outcome" "declined refund_failed" "$(outcomes_of "$(op_col $k operation_id)")"
done
eq "ok-r: still one outcome" "succeeded" "$(outcomes_of "$OP")"
verify "end"
# procsim's settlement report (review LOW 9): the two refunds failed while
# pending never settled — no refund_failure line (+amount) for them; the
# completed one is a refund line.
curl -sf "$SIM/_sim/settlement?day=$(date -u +%F)&flavour=$FLAVOUR" >"$R/settlement.csv"
eq "settlement: no refund_failure for a refund failed while pending; the completed one refunded" \
  "0 -3000" "$(grep -c '^refund_failure,' "$R/settlement.csv") $(grep '^refund,' "$R/settlement.csv" | cut -d, -f4 | paste -sd' ')"
check "workers stop cleanly on SIGTERM" "$STACK" stop-workers
check "no sanitizer reports" no_sanitizer_reports
finish
