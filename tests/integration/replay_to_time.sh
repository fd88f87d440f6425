#!/usr/bin/env bash
# payctl replay --to-time: the offsets come from the broker's time index
# (offsets_for_times).
# Moving ingest back to a moment between two loads re-processes exactly the
# second load and changes nothing.
source "$(dirname "$0")/lib.sh"
stack_up
"$STACK" workers 1
"$PAYCTL" publish --count 1000 --run early >/dev/null
check "the first load finishes: exactly 1000 terminal" terminal_exactly 1000 120
# T is read after the first load was published (its timestamps are at most
# T); the second is published once the clock has passed T (its timestamps
# are after it): the clock itself is the condition, no fixed sleep.
t_ms=$(now_ms)
T=$(date -u -d "@$((t_ms / 1000)).$(printf %03d $((t_ms % 1000)))" +%Y-%m-%dT%H:%M:%S.%3NZ)
clock_past() { [ "$(now_ms)" -gt "$1" ]; }
check "the clock has passed T" wait_until 5 clock_past "$t_ms"
"$PAYCTL" publish --count 400 --run late >/dev/null
check "the second load finishes: exactly 1400 terminal" terminal_exactly 1400 120
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
