#!/usr/bin/env bash
# A paused ingest instance: SIGSTOP it while it holds a batch, past the
# session timeout so its partitions move to the other instance, then SIGCONT
# it while it still holds that batch. No duplicate payment, nothing lost.
source "$(dirname "$0")/lib.sh"
export PAYSTREAM_PARTITIONS=4
# Small batches that wait to fill: an idle instance is always holding one.
export PAYSTREAM_BATCH_MAX=50 PAYSTREAM_BATCH_WAIT_MS=400

stack_up
for i in 1 2; do "$STACK" start-worker ingest "$i"; done
for s in fraud charge ledger; do "$STACK" start-worker "$s" 1; done
check "both ingest instances own partitions" wait_until 30 eval 'assigned ingest-1 && assigned ingest-2'

publish_trickle 40 100 0.25 stop --duplicates 20 --conflicts 2 --declines 5 &
publisher=$!
check "load is flowing" wait_until 30 eval '[ "$(payment_count)" -gt 300 ]'

pid=$(cat "$PAYSTREAM_RUN_DIR/pids/ingest-1.pid")
kill -STOP "$pid"
before=$(payment_count)
# The group evicts the paused member after the session timeout (6 s) and
# the other instance re-processes its uncommitted messages.
check "the other instance takes over while one is paused" \
  wait_until 40 eval 'grep -c "partitions assigned" "$PAYSTREAM_RUN_DIR/logs/ingest-2.log" | qgrep -v "^1$" && [ "$(payment_count)" -gt $((before + 200)) ]'
kill -CONT "$pid"
check "the publisher finished" wait "$publisher"

cat "$PAYSTREAM_RUN_DIR"/stop-*.jsonl >"$PAYSTREAM_RUN_DIR/manifest.jsonl"
M=$PAYSTREAM_RUN_DIR/manifest.jsonl
check "every intent reaches a terminal state" "$PAYCTL" wait --terminal "$(manifest_terminal "$M")" --timeout 240
assert_invariants "$M"
check "the resumed instance is still alive" kill -0 "$pid"
check "workers stop cleanly on SIGTERM" "$STACK" stop-workers
check "no sanitizer reports" no_sanitizer_reports
finish
