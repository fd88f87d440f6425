#!/usr/bin/env bash
# Operations under ambiguity (#19): the processor performs a refund or a
# capture, then drops the connection without answering and refuses new
# connections for a while. The operation was durably `processing` (a send
# counted) before the request left; charge asks procsim what its key
# (op_<operation id>) got (the resolver) rather than re-sending it — never
# the backup, which is
# configured and healthy — and it happens exactly once at procsim, posted
# once. And a refusal: a refund the processor declines ends `declined` with
# its code and gives its reservation back (the same amount refunds next).
source "$(dirname "$0")/lib.sh"
stack_up
"$STACK" start-backup-procsim
BACKUP_URL=http://127.0.0.1:$(cat "$PAYSTREAM_RUN_DIR/backup.port")
export PAYSTREAM_BACKUP_PROCESSOR_URL=$BACKUP_URL PAYSTREAM_BACKUP_PROCESSOR_NAME=backup
export PAYSTREAM_BACKUP_PROCESSOR_FLAVOUR=paypal
"$STACK" workers 1
SIM=$PAYSTREAM_PROCESSOR_URL
totals() { curl -sf "$SIM/_sim/totals?payment_id=$1" | jq -r "$2"; }
requests_for() { curl -sf "$1/_sim/requests" | jq -r --arg k "$2" '.by_key[$k] // 0'; }
op_state() { sql "SELECT state FROM payment_operations WHERE merchant_id = 'm1' AND idempotency_key = '$1'"; }
posted() { [ "$(op_state "$1")" = posted ]; }
op_id() { sql "SELECT operation_id FROM payment_operations WHERE merchant_id = 'm1' AND idempotency_key = '$1'"; }
dropped() { [ "$(grep -c 'refusing connections' "$PAYSTREAM_RUN_DIR/procsim.log")" -ge "$1" ]; }

"$PAYCTL" sale m1 sale-1 --amount 1000 --currency USD --customer c-amb1 >/dev/null
"$PAYCTL" authorize m1 auth-1 --amount 1000 --currency USD --customer c-amb2 >/dev/null
check "the sale succeeds" wait_until 120 is_status sale-1 succeeded
check "the authorization is held" wait_until 120 is_status auth-1 authorized

curl -sf -X POST "$SIM/_sim/config?drop_next=1&refuse_ms=3000" >/dev/null
"$PAYCTL" refund m1 sale-1 --key amb-refund --amount 400 --currency USD >/dev/null
check "procsim refunded, dropped the connection and refused new ones" wait_until 60 dropped 1
check "the refund is posted once procsim answers again" wait_until 120 posted amb-refund
OP=$(op_id amb-refund)
eq "refunded exactly once at procsim" "400" "$(totals "$(pid_of sale-1)" '.refunded')"
eq "sent once: the status query found procsim's answer (never re-sent blindly)" "1" \
  "$(requests_for "$SIM" "op_$OP")"
eq "the operation counted its send" "1" \
  "$(sql "SELECT sends FROM payment_operations WHERE operation_id = '$OP'")"

curl -sf -X POST "$SIM/_sim/config?drop_next=1&refuse_ms=3000" >/dev/null
"$PAYCTL" capture m1 auth-1 --key amb-capture --amount 600 --currency USD >/dev/null
check "procsim captured and dropped the connection" wait_until 60 dropped 2
check "the capture is posted" wait_until 120 posted amb-capture
eq "captured exactly once at procsim" "600" "$(totals "$(pid_of auth-1)" '.captured')"
eq "the payment records it" "1000 600 0" \
  "$(sql "SELECT authorized_minor || ' ' || captured_minor || ' ' || capturing_minor FROM payments WHERE idempotency_key = 'auth-1'")"
# ---- a declined refund gives its reservation back ------------------------------
curl -sf -X POST "$SIM/_sim/config?refund_decline_next=1" >/dev/null
"$PAYCTL" refund m1 sale-1 --key dec-1 --amount 600 --currency USD >/dev/null
declined() { [ "$(op_state dec-1)" = declined ]; }
check "the refund the processor declines ends declined" wait_until 120 declined
eq "with the processor's code" "insufficient_funds" \
  "$(sql "SELECT coalesce(decline_code, error_code) FROM payment_operations WHERE idempotency_key = 'dec-1'")"
eq "its reservation is given back" "1000 400 0" \
  "$(sql "SELECT captured_minor || ' ' || refunded_minor || ' ' || refunding_minor FROM payments WHERE idempotency_key = 'sale-1'")"
dec_outcome() { "$PAYCTL" outcomes 2>/dev/null | jq -c 'select(.idempotency_key == "dec-1" and .status == "declined")' | qgrep .; }
check "and its declined outcome is published" wait_until 60 dec_outcome
"$PAYCTL" refund m1 sale-1 --key dec-2 --amount 600 --currency USD >/dev/null
check "the same amount refunds next" wait_until 120 posted dec-2
eq "procsim refunded the capture once in full" "1000 1000" "$(totals "$(pid_of sale-1)" '"\(.captured) \(.refunded)"')"
eq "the backup was never asked" "0" "$(curl -sf "$BACKUP_URL/_sim/requests" | jq -r '.total')"
eq "one posting per movement (none for the declined refund)" "2 1" \
  "$(sql "SELECT count(*) FILTER (WHERE kind = 'refund') || ' ' || count(*) FILTER (WHERE kind = 'capture') FROM ledger_transactions WHERE operation_id IS NOT NULL")"
check "payctl ledger verify passes" quietly "$PAYCTL" ledger verify
check "workers stop cleanly on SIGTERM" "$STACK" stop-workers
check "no sanitizer reports" no_sanitizer_reports
finish
