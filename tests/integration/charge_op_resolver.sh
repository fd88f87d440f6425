#!/usr/bin/env bash
# The resolver for operations (#19, #20): a refund procsim carries out but
# whose answer is lost (timeout_rate=1, hang beyond the client timeout),
# the charge worker SIGKILLed while it hangs and restarted; and a refund
# procsim refuses with a 500 before acting (status queries refused too)
# until faults clear. The first is found by a status query (sent once,
# never re-sent), the second is re-sent once with the same key after the
# query says procsim never got it; procsim refunded each once, both posted
# once, nothing unresolved left, the ledger verifies.
source "$(dirname "$0")/lib.sh"
stack_up
export PAYSTREAM_PROCESSOR_TIMEOUT_MS=1500
SIM=$PAYSTREAM_PROCESSOR_URL
op_col() { sql "SELECT $2 FROM payment_operations WHERE merchant_id = 'm1' AND idempotency_key = '$1'"; }
posted() { [ "$(op_col "$1" state)" = posted ]; }
requests_for() { curl -sf "$SIM/_sim/requests" | jq -r --arg k "$1" '.by_key[$k] // 0'; }

"$STACK" workers 1
"$PAYCTL" sale m1 rsale --amount 10000 --currency USD --customer c-rsale >/dev/null
check "the sale succeeds" wait_until 120 is_status rsale succeeded
PID=$(sql "SELECT payment_id FROM payments WHERE idempotency_key = 'rsale'")
refunded() { [ "$(curl -sf "$SIM/_sim/totals?payment_id=$PID" | jq -r .refunded)" = "$1" ]; }

sim "timeout_rate=1&hang_ms=8000"
"$PAYCTL" refund m1 rsale --key lost-refund --amount 3000 --currency USD >/dev/null
check "procsim refunds while the answer hangs" wait_until 120 refunded 3000
check "charge is SIGKILLed mid-way" "$STACK" kill-worker charge 1
"$STACK" start-worker charge 1
check "and restarted" wait_until 60 ready charge 1

sim "timeout_rate=0&fail_rate=1&fail_status=500"
"$PAYCTL" refund m1 rsale --key never-refund --amount 2000 --currency USD >/dev/null
tried() { [ "$(requests_for "op_$(op_col never-refund operation_id)")" -ge 1 ]; }
check "the second refund is refused before procsim acts" wait_until 120 tried
sim "fail_rate=0&timeout_rate=0"

check "the lost refund is posted" wait_until 120 posted lost-refund
check "the refused one is posted" wait_until 120 posted never-refund
eq "the lost refund was sent once: found by a status query" "1" \
  "$(requests_for "op_$(op_col lost-refund operation_id)")"
eq "the refused one was re-sent once with the same key" "2" \
  "$(requests_for "op_$(op_col never-refund operation_id)")"
check "procsim refunded 5000 in all, each once" refunded 5000
eq "the payment records it" "10000 5000 0" \
  "$(sql "SELECT captured_minor || ' ' || refunded_minor || ' ' || refunding_minor FROM payments WHERE idempotency_key = 'rsale'")"
eq "one refund posting each" "2" \
  "$(sql "SELECT count(*) FROM ledger_transactions WHERE kind = 'refund' AND operation_id IS NOT NULL")"
eq "nothing unresolved is left" "" "$("$PAYCTL" charges unresolved | tail -n +2)"
check "payctl ledger verify passes" quietly "$PAYCTL" ledger verify
check "workers stop cleanly on SIGTERM" "$STACK" stop-workers
check "no sanitizer reports" no_sanitizer_reports
finish
