#!/usr/bin/env bash
# Double charge through failover (issue 17.1). The primary charges a
# payment, records it, drops the connection without answering and refuses
# new connections for a few seconds. libcurl re-sends a request whose
# kept-alive connection died on a fresh connection, and reports that
# connection's "couldn't connect" although the first copy was charged. That
# is ambiguous, not "never received": the payment must never be charged at
# the backup; the primary is asked what its key got (status query, the
# resolver) and it ends `succeeded` once the primary answers again, charged
# exactly once.
source "$(dirname "$0")/lib.sh"
stack_up
"$STACK" start-backup-procsim
BACKUP_URL=http://127.0.0.1:$(cat "$PAYSTREAM_RUN_DIR/backup.port")
export PAYSTREAM_BACKUP_PROCESSOR_URL=$BACKUP_URL PAYSTREAM_BACKUP_PROCESSOR_NAME=backup
export PAYSTREAM_BACKUP_PROCESSOR_FLAVOUR=paypal
"$STACK" workers 1
L=$PAYSTREAM_RUN_DIR/logs/charge-1.log
charges() { curl -sf "$1/v1/charges" | jq -c '.data[]'; }
settled() { [ "$(sql "SELECT count(*) FROM payments WHERE idempotency_key LIKE '$1-%' AND outcome IS NOT NULL")" = "$2" ]; }

# Warm up: every connection shard of the worker keeps a live connection to
# the primary, so the next request goes out on a reused connection.
"$PAYCTL" publish --count 64 --run warm >/dev/null
check "the warm-up settles" wait_until 90 settled warm 64

curl -sf -X POST "$PAYSTREAM_PROCESSOR_URL/_sim/config?drop_next=1&refuse_ms=4000" >/dev/null
"$PAYCTL" publish --count 1 --run drop >/dev/null
dropped() { qgrep 'refusing connections' "$PAYSTREAM_RUN_DIR/procsim.log"; }
check "the primary charged, dropped the connection and refused new ones" wait_until 60 dropped
back() { qgrep 'accepting connections again' "$PAYSTREAM_RUN_DIR/procsim.log"; }
check "and accepts connections again after the window" wait_until 30 back
check "the payment ends with an outcome" wait_until 90 settled drop 1
pid=$(sql "SELECT payment_id FROM payments WHERE idempotency_key LIKE 'drop-%'")
eq "it succeeded" "succeeded" "$(sql "SELECT status FROM payments WHERE payment_id = '$pid'")"
eq "at the primary" "stripe" "$(sql "SELECT processor FROM payments WHERE payment_id = '$pid'")"
eq "charged exactly once at the primary" "1" \
  "$(charges "$PAYSTREAM_PROCESSOR_URL" | jq -r --arg p "$pid" 'select(.metadata.payment_id == $p and .status == "succeeded") | .id' | wc -l)"
eq "never charged at the backup" "0" \
  "$(charges "$BACKUP_URL" | jq -r --arg p "$pid" 'select(.metadata.payment_id == $p) | .id' | wc -l)"
eq "never even asked of the backup" "0" \
  "$(curl -sf "$BACKUP_URL/_sim/requests" | jq --arg k "paystream:$pid:backup" '.by_key[$k] // 0')"
eq "the primary was asked about its key, not sent the charge again (resolver)" "1" \
  "$(curl -sf "$PAYSTREAM_PROCESSOR_URL/_sim/requests" | jq --arg k "paystream:$pid:stripe" '.by_key[$k] // 0')"
eq "no attempt was abandoned" "0" "$(sql "SELECT count(*) FROM charge_attempts WHERE state = 'abandoned'")"
check "the lost answer was treated as ambiguous" qgrep "not definite (unknown).*$pid" "$L"
check "workers stop cleanly on SIGTERM" "$STACK" stop-workers
check "no sanitizer reports" no_sanitizer_reports
finish
