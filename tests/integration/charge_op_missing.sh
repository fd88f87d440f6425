#!/usr/bin/env bash
# A decisive 4xx ends an operation (#20 review 6). A sale is charged at
# procsim; then the processor named `stripe` is another procsim that never
# saw it (a wrong account, an object the processor lost): every refund of
# that sale is answered 404 resource_missing.
#  * first send: no earlier send may have arrived, so the answer decides:
#    the refund ends `declined` resource_missing, its reservation given back
#    (it is not held and queried for ever).
#  * after an earlier send that may have arrived (procsim answered 500,
#    status queries too; once it answers, the key is unknown and the refund
#    is re-sent, then answered 404): ambiguous, asked a bounded number of
#    times, then escalated — an ALERT, the escalation metric, the reason in
#    payctl charges unresolved — and dead-lettered: the worker holds it no
#    longer (its partition's floor moves on), nothing is re-sent.
# Before the fix both refunds were held and queried for ever.
source "$(dirname "$0")/lib.sh"
stack_up
export PAYSTREAM_PROCESSOR_TIMEOUT_MS=1500
"$STACK" start-backup-procsim
OTHER=http://127.0.0.1:$(cat "$PAYSTREAM_RUN_DIR/backup.port")
op_col() { sql "SELECT $2 FROM payment_operations WHERE merchant_id = 'm1' AND idempotency_key = '$1'"; }
requests_for() { curl -sf "$OTHER/_sim/requests" | jq -r --arg k "$1" '.by_key[$k] // 0'; }

"$STACK" workers 1
"$PAYCTL" sale m1 miss-sale --amount 10000 --currency USD --customer c-miss >/dev/null
check "the sale succeeds at procsim" wait_until 120 is_status miss-sale succeeded
check "workers stop" "$STACK" stop-workers
PAYSTREAM_PROCESSOR_URL_OVERRIDE=$OTHER "$STACK" workers 1
PID=$(pid_of miss-sale)

"$PAYCTL" refund m1 miss-sale --key miss-first --amount 2000 --currency USD >/dev/null
check "the refund sent once and answered 'no such object' ends" wait_until 120 op_done miss-first
eq "declined with the processor's code" "declined resource_missing" "$(op_state miss-first)"
eq "sent once" 1 "$(requests_for "op_$(op_col miss-first operation_id)")"
eq "its reservation is given back" "0 0" \
  "$(sql "SELECT refunding_minor || ' ' || refunded_minor FROM payments WHERE payment_id = '$PID'")"

sim "fail_rate=1&fail_status=500" "$OTHER"
"$PAYCTL" refund m1 miss-sale --key miss-later --amount 1000 --currency USD >/dev/null
OPKEY=
tried() { OPKEY="op_$(op_col miss-later operation_id)"; [ "$(requests_for "$OPKEY")" -ge 1 ]; }
check "the second refund is refused before acting (it may have arrived)" wait_until 120 tried
sim "fail_rate=0" "$OTHER"
resent() { [ "$(requests_for "$OPKEY")" = 2 ]; }
check "re-sent with the same key once the key is unknown, answered 404" wait_until 120 resent
escalated() { "$PAYCTL" charges unresolved | grep miss-later | qgrep "escalated"; }
check "escalated after a bounded number of queries, listed with the reason" \
  wait_until 120 escalated
eq "left processing, its amount reserved" "processing 1000" \
  "$(op_col miss-later state) $(sql "SELECT refunding_minor FROM payments WHERE payment_id = '$PID'")"
esc_metric() { [ "$(metric charge 1 paystream_charge_operations_escalated_total)" -ge 1 ]; }
check "the escalation metric counts it" wait_until 30 esc_metric
check "an ALERT is logged" qgrep "ALERT operation .*no such object" \
  "$PAYSTREAM_RUN_DIR/logs/charge-1.log"
let_go() { [ "$(metric charge 1 paystream_charges_pending)" = 0 ]; }
check "the worker holds it no longer (dead-lettered)" wait_until 60 let_go
eq "never sent again" 2 "$(requests_for "$OPKEY")"
check "workers stop cleanly on SIGTERM" "$STACK" stop-workers
check "no sanitizer reports" no_sanitizer_reports
finish
