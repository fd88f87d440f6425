#!/usr/bin/env bash
# An operation without a definite answer holds only its own payment (#19).
# A refund goes to the processor holding the sale's charge ("alt", the
# backup here), which answers every request — and every status query — with
# a 404 that decides nothing. The refund is sent once (counted before it
# left), then held: parked on a back-off, listed in charge_unresolved and in
# the unresolved-age metric, a later refund of the same payment waiting
# behind it (never sent). Meanwhile 30 sales published after it all succeed
# at the primary: charge's batch is not held (with the refund run
# synchronously, as before, none of them was even taken up). Once alt
# answers again, the status query says the key never reached it, the refund
# is re-sent with the same key and both refunds are posted, each once.
source "$(dirname "$0")/lib.sh"
stack_up
"$STACK" start-backup-procsim
ALT=http://127.0.0.1:$(cat "$PAYSTREAM_RUN_DIR/backup.port")
SIM=$PAYSTREAM_PROCESSOR_URL
op_col() { sql "SELECT $2 FROM payment_operations WHERE merchant_id = 'm1' AND idempotency_key = '$1'"; }
posted() { [ "$(op_col "$1" state)" = posted ]; }
requests_for() { curl -sf "$1/_sim/requests" | jq -r --arg k "$2" '.by_key[$k] // 0'; }

# A sale charged at alt (alt the only processor of that worker).
PAYSTREAM_PROCESSOR_URL_OVERRIDE=$ALT PAYSTREAM_PROCESSOR_NAME=alt "$STACK" workers 1
"$PAYCTL" sale m1 held-sale --amount 5000 --currency USD --customer c-held >/dev/null
check "a sale is charged at alt" wait_until 120 is_status held-sale succeeded
check "workers stop" "$STACK" stop-workers

# Now the primary is procsim, alt the backup; alt answers 404 to everything.
export PAYSTREAM_BACKUP_PROCESSOR_URL=$ALT PAYSTREAM_BACKUP_PROCESSOR_NAME=alt
"$STACK" workers 1
sim "fail_rate=1&fail_status=404" "$ALT"
"$PAYCTL" refund m1 held-sale --key held-refund --amount 2000 --currency USD >/dev/null
sent_once() { [ "$(op_col held-refund "state || ' ' || sends")" = "processing 1" ]; }
check "the refund is sent once (counted) and gets no verdict" wait_until 120 sent_once
"$PAYCTL" refund m1 held-sale --key held-refund-2 --amount 1000 --currency USD >/dev/null
accepted() { [ "$(op_col held-refund-2 state)" = accepted ]; }
check "a second refund of the same payment is accepted by ingest" wait_until 60 accepted
for i in $(seq 1 30); do
  "$PAYCTL" sale m1 "after-$i" --amount $((1000 + i)) --currency USD --customer "c-after-$i" >/dev/null
done
sales_done() { [ "$(sql "SELECT count(*) FROM payments WHERE idempotency_key LIKE 'after-%' AND status = 'succeeded'")" = 30 ]; }
check "30 sales published after it succeed while the refund is held" wait_until 240 sales_done
eq "the refund is still held" "processing" "$(op_col held-refund state)"
eq "the later refund of the same payment waited behind it, never sent" "accepted 0" \
  "$(op_col held-refund-2 "state || ' ' || sends")"
check "payctl charges unresolved lists the held refund" \
  bash -c "'$PAYCTL' charges unresolved | grep -q held-refund"
age_up() { [ "$(metric charge 1 paystream_charge_unresolved_oldest_seconds)" -ge 1 ]; }
check "the unresolved-age metric counts it" wait_until 60 age_up
looked() { [ "$(metric charge 1 paystream_charge_status_queries_total)" -ge 1 ]; }
check "alt is asked about it (status queries) instead of re-sent" wait_until 60 looked
eq "not re-sent while alt gives no verdict" "1" "$(requests_for "$ALT" "op_$(op_col held-refund operation_id)")"

sim "fail_rate=0" "$ALT"
check "the refund is posted once alt answers" wait_until 120 posted held-refund
check "then the refund that waited behind it" wait_until 120 posted held-refund-2
PID=$(sql "SELECT payment_id FROM payments WHERE idempotency_key = 'held-sale'")
eq "alt refunded 3000 once" "3000" "$(curl -sf "$ALT/_sim/totals?payment_id=$PID" | jq -r .refunded)"
eq "re-sent once, with the same key, after alt said it never got it" "2" \
  "$(requests_for "$ALT" "op_$(op_col held-refund operation_id)")"
eq "the primary never got a refund" "0" "$(curl -sf "$SIM/_sim/totals?payment_id=$PID" | jq -r .refunded)"
eq "nothing unresolved is left" "" "$("$PAYCTL" charges unresolved | tail -n +2)"
check "payctl ledger verify passes" quietly "$PAYCTL" ledger verify
check "workers stop cleanly on SIGTERM" "$STACK" stop-workers
check "no sanitizer reports" no_sanitizer_reports
finish
