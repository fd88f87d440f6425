#!/usr/bin/env bash
# An ambiguous attempt never ends `failed` (issue 17.3). The processor
# charges a payment but answers after the worker's timeout; then its API key
# is rotated, so every status query (the resolver asks before re-sending)
# gets 401 — which says nothing about the first send. The payment stays
# `charging`, asked again on the same processor about the same key; past PAYSTREAM_CHARGE_DEADLINE_MS an interim `pending`
# outcome is published, the oldest-unresolved metric shows its age, and
# `payctl charges unresolved` lists it. When the key is accepted again the
# status query gets the processor's stored answer: `succeeded`, charged
# once, sent once.
source "$(dirname "$0")/lib.sh"
stack_up
for s in ingest fraud ledger; do "$STACK" start-worker "$s" 1; done
PAYSTREAM_CHARGE_DEADLINE_MS=3000 PAYSTREAM_PROCESSOR_TIMEOUT_MS=1000 "$STACK" start-worker charge 1
sim "timeout_rate=1&hang_ms=4000"
"$PAYCTL" publish --count 1 --run pend >/dev/null
processor_has_one_charge() { [ "$(processor_charges | wc -l)" = 1 ]; }
check "the processor charged it (its answer comes too late)" wait_until 60 processor_has_one_charge
sim "timeout_rate=0&api_key=sk_rotated"
pid=$(sql "SELECT payment_id FROM payments WHERE idempotency_key LIKE 'pend-%'")
key=$(sql "SELECT idempotency_key FROM payments WHERE payment_id = '$pid'")
rejected() { qgrep "status query at stripe: no verdict (status query: HTTP 401).*$pid" "$PAYSTREAM_RUN_DIR/logs/charge-1.log"; }
check "its status query got 401 and was taken as no verdict" wait_until 30 rejected
# How many outcomes of this payment match a jq condition (jq -e alone
# would pass on empty output).
outcomes_where() { "$PAYCTL" outcomes 2>/dev/null | jq -r --arg k "$key" "select(.idempotency_key == \$k and ($1)) | .offset" | wc -l; }
pending() { [ "$(outcomes_where '.error_code == "processor_unresolved"')" = 1 ]; }
check "past the deadline an interim pending outcome is published" wait_until 30 pending
eq "the payment is still charging, not failed" "charging" "$(sql "SELECT status FROM payments WHERE payment_id = '$pid'")"
eq "its attempt too" "charging" "$(sql "SELECT state FROM charge_attempts WHERE payment_id = '$pid'")"
check "the oldest unresolved attempt's age is exported (>= 3 s)" \
  test "$(metric charge 1 paystream_charge_unresolved_oldest_seconds)" -ge 3
listed() { "$PAYCTL" charges unresolved --older-than 3 | qgrep "^$pid	"; }
check "payctl charges unresolved lists it" listed
eq "the charge_unresolved view lists it" "$pid" "$(sql "SELECT payment_id FROM charge_unresolved")"
sim "api_key="
done_() { [ "$(sql "SELECT status FROM payments WHERE payment_id = '$pid'")" = succeeded ]; }
check "once the processor accepts the key again it ends succeeded" wait_until 60 done_
eq "charged exactly once" "1" \
  "$(curl -sf "$PAYSTREAM_PROCESSOR_URL/v1/charges" | jq --arg p "$pid" '[.data[] | select(.metadata.payment_id == $p)] | length')"
eq "never re-sent: the status query found the processor's stored answer" "1" \
  "$(curl -sf "$PAYSTREAM_PROCESSOR_URL/_sim/requests" | jq --arg k "paystream:$pid:stripe" '.by_key[$k] // 0')"
final() { [ "$(outcomes_where '.status == "succeeded"')" = 1 ]; }
check "its terminal outcome is published" wait_until 30 final
eq "after the pending one, and nothing else" "processor_unresolved succeeded" \
  "$("$PAYCTL" outcomes 2>/dev/null | jq -s -r --arg k "$key" 'map(select(.idempotency_key == $k)) | sort_by(.offset) | map(if .status == "succeeded" then .status else .error_code end) | join(" ")')"
eq "nothing unresolved is left" "0" "$(sql "SELECT count(*) FROM charge_unresolved")"
check "workers stop cleanly on SIGTERM" "$STACK" stop-workers
check "no sanitizer reports" no_sanitizer_reports
finish
