#!/usr/bin/env bash
# A refused send of an operation is counted (#20 item 4). A sale and an
# authorization are made at procsim; then the workers send to a port where
# nothing listens: the refund's and the capture's sends are refused before a
# byte leaves, and Postgres counts them as refused (payment_operations.refused
# = sends), as for sales. Then the processor named `stripe` is another
# procsim that never saw the payments: each operation is sent (no status
# query first: nothing may have arrived) and answered 404 resource_missing,
# which now decides: `declined` with the processor's code, the reservation
# given back. Before the fix refused stayed 0, the 404 counted as after a
# send that may have arrived: asked about, then escalated, the money held.
source "$(dirname "$0")/lib.sh"
stack_up
export PAYSTREAM_PROCESSOR_TIMEOUT_MS=1500
op_col() { sql "SELECT $2 FROM payment_operations WHERE merchant_id = 'm1' AND idempotency_key = '$1'"; }

"$STACK" workers 1
"$PAYCTL" sale m1 ref-sale --amount 10000 --currency USD --customer c-ref1 >/dev/null
"$PAYCTL" authorize m1 ref-auth --amount 5000 --currency USD --customer c-ref2 >/dev/null
check "the sale succeeds at procsim" wait_until 120 is_status ref-sale succeeded
check "the authorization is held at procsim" wait_until 120 is_status ref-auth authorized
check "workers stop" "$STACK" stop-workers

CLOSED=http://127.0.0.1:$("$STACK" free-port)
PAYSTREAM_PROCESSOR_URL_OVERRIDE=$CLOSED "$STACK" workers 1
"$PAYCTL" refund m1 ref-sale --key ref-refund --amount 2000 --currency USD >/dev/null
"$PAYCTL" capture m1 ref-auth --key ref-capture --amount 3000 --currency USD >/dev/null
refused_send() {
  local op; op=$(op_col "$1" operation_id)
  [ -n "$op" ] && qgrep "operation $op at .*: not_sent" "$PAYSTREAM_RUN_DIR/logs/charge-1.log"
}
check "the refund's send is refused (nothing listens)" wait_until 120 refused_send ref-refund
check "the capture's send is refused" wait_until 120 refused_send ref-capture
check "workers stop" "$STACK" stop-workers
for k in ref-refund ref-capture; do
  eq "$k: every send counted as refused" "processing true" \
    "$(sql "SELECT state || ' ' || (sends >= 1 AND refused = sends) FROM payment_operations WHERE merchant_id = 'm1' AND idempotency_key = '$k'")"
done

"$STACK" start-backup-procsim
OTHER=http://127.0.0.1:$(cat "$PAYSTREAM_RUN_DIR/backup.port")
requests_for() { curl -sf "$OTHER/_sim/requests" | jq -r --arg k "$1" '.by_key[$k] // 0'; }
PAYSTREAM_PROCESSOR_URL_OVERRIDE=$OTHER "$STACK" workers 1
for k in ref-refund ref-capture; do
  check "$k answered 'no such object' after refused sends ends" wait_until 120 op_done "$k"
  eq "$k: declined with the processor's code" "declined resource_missing" "$(op_state "$k")"
  eq "$k: sent once where something listens (not asked about first)" 1 \
    "$(requests_for "op_$(op_col "$k" operation_id)")"
done
eq "the reservations are given back" "0 0 0 0" \
  "$(sql "SELECT string_agg(refunding_minor || ' ' || capturing_minor, ' ' ORDER BY idempotency_key DESC) FROM payments WHERE idempotency_key IN ('ref-sale', 'ref-auth')")"
eq "nothing escalated" 0 "$(metric charge 1 paystream_charge_operations_escalated_total)"
check "workers stop cleanly on SIGTERM" "$STACK" stop-workers
check "no sanitizer reports" no_sanitizer_reports
finish
