#!/usr/bin/env bash
# A succeeded charge at a processor no longer configured (issue 17.4).
# Payments are charged at a backup called `retired` (the primary refuses
# connections); that processor is then removed from the configuration and
# the charge stage is replayed. Postgres recorded the charges, so each is
# emitted again to payments.charged, with the processor Postgres recorded —
# and each is an alert (log and metric), never a silent skip.
source "$(dirname "$0")/lib.sh"
stack_up
"$STACK" start-backup-procsim
BACKUP_URL=http://127.0.0.1:$(cat "$PAYSTREAM_RUN_DIR/backup.port")
for s in ingest fraud; do "$STACK" start-worker "$s" 1; done
PAYSTREAM_PROCESSOR_URL_OVERRIDE=http://127.0.0.1:9 PAYSTREAM_BACKUP_PROCESSOR_URL=$BACKUP_URL \
  PAYSTREAM_BACKUP_PROCESSOR_NAME=retired "$STACK" start-worker charge 1
"$PAYCTL" publish --count 10 --run old >/dev/null
ten_charged_at_retired() { [ "$(sql "SELECT count(*) FROM payments WHERE status = 'charged' AND processor = 'retired'")" = 10 ]; }
check "ten payments are charged at the backup 'retired'" wait_until 90 ten_charged_at_retired
charged_msgs() { "$PAYCTL" lag --stage ledger 2>/dev/null | awk '/^payments.charged\[/ { s += $5 } END { print s + 0 }'; }
emitted() { [ "$(charged_msgs)" = 10 ]; }
check "each was emitted once to payments.charged" wait_until 30 emitted
check "the charge worker stops" "$STACK" stop-workers
check "the charge stage is moved back" quietly "$PAYCTL" replay --stage charge --to-offset earliest
"$STACK" start-worker charge 2 # the primary only: 'retired' is gone
again() { [ "$(charged_msgs)" = 20 ]; }
check "replayed, each is emitted again from what Postgres recorded" wait_until 60 again
check "with an alert per payment" test "$(metric charge 2 paystream_charge_unconfigured_processor_total)" -ge 10
check "logged" qgrep "ALERT charged at retired, a processor that is not configured" \
  "$PAYSTREAM_RUN_DIR/logs/charge-2.log"
"$STACK" start-worker ledger 1
posted() { [ "$(sql "SELECT count(*) FROM payments WHERE status = 'succeeded' AND processor = 'retired'")" = 10 ]; }
check "the ledger posts them (once each)" wait_until 60 posted
eq "one posting per payment" "10" "$(sql "SELECT count(*) FROM ledger_transactions")"
eq "charged once each, at 'retired' only" "10" \
  "$(curl -sf "$BACKUP_URL/v1/charges" | jq '[.data[] | select(.status == "succeeded")] | length')"
check "workers stop cleanly on SIGTERM" "$STACK" stop-workers
check "no sanitizer reports" no_sanitizer_reports
finish
