#!/usr/bin/env bash
# The Kafka cluster goes away mid-load and comes back: every worker keeps
# running, backs off, reconnects and finishes; nothing lost, nothing doubled.
source "$(dirname "$0")/lib.sh"
stack_up
"$STACK" workers 1
check "workers own partitions" wait_until 30 assigned ledger-1
publish_trickle 20 100 0.3 kd --duplicates 10 --declines 3 &
publisher=$!
check "load is flowing" wait_until 30 eval '[ "$(terminal_count)" -gt 200 ]'
"$STACK" kafka-down
down_at=$(terminal_count)
sleep 8
check "the brokers were down" grep -q "brokers down" "$PAYSTREAM_RUN_DIR/devbroker.log"
"$STACK" kafka-up
check "the publisher finished" wait "$publisher"
cat "$PAYSTREAM_RUN_DIR"/kd-*.jsonl >"$PAYSTREAM_RUN_DIR/manifest.jsonl"
M=$PAYSTREAM_RUN_DIR/manifest.jsonl
check "every intent reaches a terminal state" "$PAYCTL" wait --terminal "$(manifest_terminal "$M")" --timeout 240
check "work continued after the outage" test "$(terminal_count)" -gt "$down_at"
for f in "$PAYSTREAM_RUN_DIR"/pids/*.pid; do
  check "$(basename "$f" .pid) survived the outage" kill -0 "$(cat "$f")"
done
assert_invariants "$M"
check "workers stop cleanly on SIGTERM" "$STACK" stop-workers
check "no sanitizer reports" no_sanitizer_reports
finish
