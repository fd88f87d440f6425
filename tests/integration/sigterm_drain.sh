#!/usr/bin/env bash
# SIGTERM during load: the worker finishes its batch, commits, leaves the
# group (LeaveGroup acknowledged) within a bounded time, and nothing is
# processed twice: what the stopped worker committed plus what its successor
# consumed is exactly what was published. (The stopped worker left the
# group, so the broker assigns its successor as soon as it joins, without
# waiting out the session timeout; the time it took is logged.)
source "$(dirname "$0")/lib.sh"
export PAYSTREAM_SESSION_TIMEOUT_MS=10000
stack_up
"$STACK" workers 1
publish_trickle 20 500 0.2 load --declines 5 --fraud 5 &
pub=$!
busy() { [ "$(metric ingest 1 paystream_messages_consumed_total)" -gt 2000 ]; }
check "ingest is under load" wait_until 60 busy
pid=$(cat "$PAYSTREAM_RUN_DIR/pids/ingest-1.pid")
kill -TERM "$pid"
t0=$SECONDS
gone() { ! kill -0 "$pid" 2>/dev/null; }
check "the worker drains and exits within 10 s" wait_until 10 gone
log "exited after $((SECONDS - t0)) s"
rm -f "$PAYSTREAM_RUN_DIR/pids/ingest-1.pid"
"$STACK" start-worker ingest 2
t1=$SECONDS
check "it committed its last batch and left the group" \
  qgrep '"left the consumer group"' "$PAYSTREAM_RUN_DIR/logs/ingest-1.log"
check "the successor takes over the partitions" wait_until 60 ready ingest 2
log "successor ready after $((SECONDS - t1)) s"
wait "$pub"
cat "$PAYSTREAM_RUN_DIR"/load-*.jsonl >"$PAYSTREAM_RUN_DIR/manifest.jsonl"
expected=$(manifest_terminal "$PAYSTREAM_RUN_DIR/manifest.jsonl")
check "every payment reaches its outcome" wait_until 120 all_terminal
first=$(grep -o 'stopping after [0-9]* messages' "$PAYSTREAM_RUN_DIR/logs/ingest-1.log" | grep -o '[0-9]*')
second=$(metric ingest 2 paystream_messages_consumed_total)
log "stopped worker committed ${first:-?}, successor consumed $second"
eq "no message was processed twice (committed + successor = published)" 10000 $((${first:-0} + second))
check "workers stop cleanly on SIGTERM" "$STACK" stop-workers
assert_invariants "$PAYSTREAM_RUN_DIR/manifest.jsonl"
check "no sanitizer reports" no_sanitizer_reports
finish
