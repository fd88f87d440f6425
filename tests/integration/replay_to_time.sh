#!/usr/bin/env bash
# payctl replay --to-time on a broker without a time index (devbroker lacks
# offsets_for_times): the offsets are found by searching message timestamps.
# Moving ingest back to a moment between two loads re-processes exactly the
# second load and changes nothing.
source "$(dirname "$0")/lib.sh"
stack_up
"$STACK" workers 1
"$PAYCTL" publish --count 1000 --run early >/dev/null
check "the first load finishes" "$PAYCTL" wait --terminal 1000 --timeout 120
sleep 1.2
T=$(date -u +%Y-%m-%dT%H:%M:%S.%3NZ)
sleep 1.2
"$PAYCTL" publish --count 400 --run late >/dev/null
check "the second load finishes" "$PAYCTL" wait --terminal 1400 --timeout 120
check "ingest has committed everything" wait_until 30 caught_up ingest
check "the workers stop" "$STACK" stop-workers
payments_before=$(payment_count)
check "payctl replay --to-time finds the offsets" quietly "$PAYCTL" replay --stage ingest --to-time "$T"
eq "exactly the second load is to be re-processed" "400" "$("$PAYCTL" lag --stage ingest | awk '/total lag/ {print $3}')"
check "a malformed time is refused (usage, exit 2)" exits_with 2 \
  "--to-time takes an RFC 3339 time with a zone \(2026-11-25T10:00:00Z\), not 'yesterday'" \
  "$PAYCTL" replay --stage ingest --to-time yesterday
check "a time without a zone is refused too" exits_with 2 "--to-time takes an RFC 3339 time" \
  "$PAYCTL" replay --stage ingest --to-time 2026-11-25T10:00:00
"$STACK" workers 1
check "ingest re-processed the second load" wait_until 90 caught_up ingest
eq "the replay created no payment" "$payments_before" "$(payment_count)"
check "workers stop cleanly on SIGTERM" "$STACK" stop-workers
check "no sanitizer reports" no_sanitizer_reports
finish
