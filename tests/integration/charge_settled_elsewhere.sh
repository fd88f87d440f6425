#!/usr/bin/env bash
# An attempt settled by someone else while charge holds it (#20): the
# processor-events stage settles an unknown attempt from a webhook with a
# conditional write (attempt charging -> succeeded, payment charging ->
# charged) and emits the payment's charged event and outcome itself. Here
# that write is made directly as the owner while procsim holds charge's
# request (it charged, and answers late). When the answer arrives, charge's
# own conditional record changes nothing and charge emits nothing: no
# second charged event (nothing posted, as nobody else emits here), no
# outcome.
source "$(dirname "$0")/lib.sh"
stack_up
export PAYSTREAM_PROCESSOR_TIMEOUT_MS=60000
SIM=$PAYSTREAM_PROCESSOR_URL
"$STACK" workers 1
sim "timeout_rate=1&hang_ms=15000"
"$PAYCTL" sale m1 race-1 --amount 4000 --currency USD --customer c-race >/dev/null
PID=
charged_at_sim() {
  PID=$(sql "SELECT payment_id FROM payments WHERE idempotency_key = 'race-1'")
  [ -n "$PID" ] && processor_charges | jq -c --arg p "$PID" 'select(.metadata.payment_id == $p)' | qgrep .
}
check "procsim charged it; its answer hangs" wait_until 120 charged_at_sim
PID=$(sql "SELECT payment_id FROM payments WHERE idempotency_key = 'race-1'")
CH=$(processor_charges | jq -c --arg p "$PID" 'select(.metadata.payment_id == $p)' | head -1)
CID=$(jq -r .id <<<"$CH") FEE=$(jq -r '.fee // 0' <<<"$CH")
eq "charge's attempt is live with its send counted" "charging 1" \
  "$(sql "SELECT state || ' ' || sends FROM charge_attempts WHERE payment_id = '$PID'")"
sql "BEGIN;
 UPDATE charge_attempts SET state = 'succeeded', processor_charge_id = '$CID', fee_minor = $FEE,
   updated_at = now() WHERE payment_id = '$PID' AND state = 'charging';
 UPDATE payments SET status = 'charged', processor = 'stripe', processor_charge_id = '$CID',
   fee_minor = $FEE, updated_at = now() WHERE payment_id = '$PID' AND status = 'charging';
 COMMIT;" >/dev/null
eq "settled elsewhere (as the events stage would)" "charged" \
  "$(sql "SELECT status FROM payments WHERE payment_id = '$PID'")"
sim "timeout_rate=0"
dropped() { [ "$(metric charge 1 paystream_charges_pending)" = 0 ]; }
check "procsim's answer reached charge and the payment left it" wait_until 120 dropped
"$PAYCTL" sale m1 control-1 --amount 1500 --currency USD --customer c-ctl >/dev/null
ctl_done() { [ "$(sql "SELECT status FROM payments WHERE idempotency_key = 'control-1'")" = succeeded ]; }
check "a later sale goes through" wait_until 120 ctl_done
check "charge and ledger have consumed everything" wait_until 120 caught_up charge ledger
eq "charge emitted no charged event for it: nothing posted" "0" \
  "$(sql "SELECT count(*) FROM ledger_transactions WHERE payment_id = '$PID'")"
eq "the payment stays as the other writer left it" "charged" \
  "$(sql "SELECT status FROM payments WHERE payment_id = '$PID'")"
no_outcome() { ! "$PAYCTL" outcomes 2>/dev/null | jq -c 'select(.idempotency_key == "race-1")' | qgrep .; }
check "and no outcome for it" no_outcome
elsewhere() { [ "$(metric charge 1 paystream_charge_settled_elsewhere_total)" -ge 1 ]; }
check "counted as settled elsewhere" elsewhere
eq "procsim charged it once" "1" \
  "$(processor_charges | jq -c --arg p "$PID" 'select(.metadata.payment_id == $p)' | wc -l)"
check "workers stop cleanly on SIGTERM" "$STACK" stop-workers
check "no sanitizer reports" no_sanitizer_reports
finish
