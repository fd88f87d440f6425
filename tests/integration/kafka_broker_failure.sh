#!/usr/bin/env bash
# A three-node Kafka cluster (replication factor 3, min.insync.replicas 2)
# loses the leader of busy partitions mid-load (SIGKILL) and gets it back
# later: the pipeline goes on with the other two, nothing acknowledged is
# lost, no payment is doubled. librdkafka 2.0.2 may raise a fatal idempotent-
# producer error after a leader change (#4438): the worker then exits, and a
# restart (what an orchestrator does; here this script's restart loop) must
# lose nothing.
source "$(dirname "$0")/lib.sh"
export PAYSTREAM_STATS_INTERVAL_MS=1000
stack_up --brokers 3
"$STACK" workers 1
WORKERS="ingest fraud charge ledger"
all() { local s; for s in $WORKERS; do "$@" "$s" 1 || return 1; done; }
check "every worker is ready" wait_until 90 all ready
eq "three brokers serve metadata" 0 "$("$BUILD/kadmin" wait --brokers 3 --timeout 10 >/dev/null 2>&1; echo $?)"

# Restart policy: a worker that exits is started again (logged).
supervise() {
  local s pid
  while [ ! -e "$PAYSTREAM_RUN_DIR/supervise.stop" ]; do
    for s in $WORKERS; do
      pid=$(cat "$PAYSTREAM_RUN_DIR/pids/$s-1.pid")
      if pid_gone "$pid"; then
        echo "$s-1 $pid exited with $(cat "$PAYSTREAM_RUN_DIR/exits/$s-1.$pid" 2>/dev/null); restarting"
        "$STACK" start-worker "$s" 1
      fi
    done
    sleep 0.5
  done
}
supervise >"$PAYSTREAM_RUN_DIR/supervise.log" 2>&1 &
supervisor=$!

publish_trickle 20 150 0.3 bf --duplicates 10 --declines 3 &
publisher=$!
check "load is flowing" wait_until 60 eval '[ "$(terminal_count)" -gt 300 ]'

victim=$("$STACK" kafka-leaders payments.intents | awk '$1 == 0 { print $2 }')
# A partition led by the victim, or by no one (-1: no replica left to lead).
led_by_victim() { "$STACK" kafka-leaders "$1" | awk -v v="$victim" '$2 == v || $2 < 0' | qgrep .; }
log "killing node $victim, leader of payments.intents[0] (and $(for t in payments.intents payments.requests payments.fraud-scored payments.charged; do "$STACK" kafka-leaders "$t"; done | awk -v v="$victim" '$2 == v' | wc -l) busy partitions)"
at_kill=$(terminal_count)
"$STACK" kafka-kill "$victim"
check "the leader's process is gone" pid_gone "$(cat "$PAYSTREAM_RUN_DIR/kafka-$victim.pid")"
no_victim_leaders() {
  local t
  for t in payments.intents payments.requests payments.fraud-scored payments.charged payments.ledgered payments.outcomes; do
    led_by_victim "$t" && return 1
  done
  return 0
}
check "the other nodes lead every partition it led" wait_until 60 no_victim_leaders
check "the pipeline goes on with two nodes" wait_until 90 eval '[ "$(terminal_count)" -gt $((at_kill + 300)) ]'
"$STACK" kafka-up "$victim"
check "the killed node is back (three brokers serve metadata)" "$BUILD/kadmin" wait --brokers 3 --timeout 60
check "the publisher finished (every intent acknowledged)" wait "$publisher"
"$PAYCTL" publish --count 300 --duplicates 10 --run after --manifest "$PAYSTREAM_RUN_DIR/after.jsonl" >/dev/null
cat "$PAYSTREAM_RUN_DIR"/bf-*.jsonl "$PAYSTREAM_RUN_DIR/after.jsonl" >"$PAYSTREAM_RUN_DIR/manifest.jsonl"
M=$PAYSTREAM_RUN_DIR/manifest.jsonl
check "every acknowledged intent reaches a terminal state" "$PAYCTL" wait --terminal "$(manifest_terminal "$M")" --timeout 300
touch "$PAYSTREAM_RUN_DIR/supervise.stop"
wait "$supervisor"
log "worker restarts: $(grep -c restarting "$PAYSTREAM_RUN_DIR/supervise.log")"
sed 's/^/# /' "$PAYSTREAM_RUN_DIR/supervise.log"
assert_invariants "$M"
check "workers stop cleanly on SIGTERM" "$STACK" stop-workers
check "no sanitizer reports" no_sanitizer_reports
finish
