#!/usr/bin/env bash
# payctl outcomes reads a topic written by exactly-once producers promptly:
# every batch ends with a transaction marker, an aborted batch's messages
# and its marker take offsets a read_committed reader never sees, and an
# open transaction holds the partition's stable end below its high
# watermark. In each case a call returns within seconds (not its 60 s
# deadline) with exactly the committed messages, also while a producer
# keeps committing (the flake of events_apply_paypal's won outcome: each
# poll must be cheap).
source "$(dirname "$0")/lib.sh"
stack_up
TXN=$BUILD/txn-produce
T=payments.outcomes
# quick N: payctl outcomes exits 0 within 10 s printing N messages.
quick() {
  local want=$1 t0 out rc
  t0=$(now_ms)
  out=$(timeout 70 "$PAYCTL" outcomes 2>"$PAYSTREAM_RUN_DIR/outcomes.err"); rc=$?
  local took=$(($(now_ms) - t0)) n
  n=$(grep -c . <<<"$out")
  log "payctl outcomes: exit $rc, $n messages, $took ms $(head -c 300 "$PAYSTREAM_RUN_DIR/outcomes.err")"
  [ "$rc" -eq 0 ] && [ "$n" -eq "$want" ] && [ "$took" -lt 10000 ]
}
check "three messages committed to partition 0 (its last offset the commit marker)" quietly "$TXN" "$T" 0 3 commit
check "payctl outcomes returns them promptly" quick 3
check "two messages aborted on partition 1 (nothing a reader sees, marker last)" quietly "$TXN" "$T" 1 2 abort
check "payctl outcomes returns promptly, the aborted ones left out" quick 3
"$TXN" "$T" 2 2 open >"$PAYSTREAM_RUN_DIR/open.out" 2>&1 &
open_pid=$!
is_open() { qgrep '^open' "$PAYSTREAM_RUN_DIR/open.out"; }
check "a transaction is left open on partition 2" wait_until 60 is_open
check "one message committed after it on partition 2" quietly "$TXN" "$T" 2 1 commit
check "payctl outcomes returns promptly: what is stable, not what waits behind the open one" quick 3
kill -TERM "$open_pid"
wait "$open_pid"
eq "the open transaction is aborted" "open done" "$(tr '\n' ' ' <"$PAYSTREAM_RUN_DIR/open.out" | sed 's/ $//')"
check "then the message committed behind it is read, promptly" quick 4
# A producer committing one message per transaction without pause.
( for _ in $(seq 40); do "$TXN" "$T" 0 1 commit >/dev/null 2>&1 || exit 1; done ) &
busy_pid=$!
busy_ok=0
for _ in 1 2 3 4 5; do
  t0=$(now_ms)
  if timeout 70 "$PAYCTL" outcomes >/dev/null 2>&1 && [ $(($(now_ms) - t0)) -lt 10000 ]; then busy_ok=$((busy_ok + 1)); fi
done
eq "while a producer keeps committing, each of 5 calls returns within 10 s" 5 "$busy_ok"
check "the producer committed all its transactions" wait "$busy_pid"
check "payctl outcomes returns every committed message" quick 44
check "no sanitizer reports" no_sanitizer_reports
finish
