#!/usr/bin/env bash
# Chaos: two instances of every stage; 12,000 intents with duplicates,
# reused keys, declines, fraud, invalid and undecodable ones; meanwhile a
# driver SIGKILLs a random worker every few seconds and restarts it, and
# restarts Postgres once and Redis once. Afterwards every invariant holds.
# Every kill and both restarts are checked to have landed mid-load (some,
# not all, intents terminal just before): 12,000 (CHAOS_COUNT; 20,000
# before) keeps that with a margin on 2 loaded cores, in less time.
source "$(dirname "$0")/lib.sh"
export PAYSTREAM_PARTITIONS=4
COUNT=${CHAOS_COUNT:-12000} GARBAGE=100
M=$PAYSTREAM_RUN_DIR/manifest.jsonl

stack_up
"$STACK" workers 2
all_assigned() {
  local s
  for s in ingest fraud charge ledger; do assigned "$s-1" && assigned "$s-2" || return 1; done
}
check "every stage's instances own partitions" wait_until 40 all_assigned

# The driver: runs until told to stop; every kill is logged.
chaos() {
  local n=0 victim
  local workers=(ingest-1 ingest-2 fraud-1 fraud-2 charge-1 charge-2 ledger-1 ledger-2)
  while [ ! -e "$PAYSTREAM_RUN_DIR/chaos.stop" ]; do
    sleep "0.$((RANDOM % 10))"; sleep 1.5
    n=$((n + 1))
    echo "terminal before: $(terminal_count)"
    # Each line is logged only once its action is seen done.
    if [ "$n" -eq 4 ]; then "$STACK" restart-postgres && echo "restarted postgres"; continue; fi
    if [ "$n" -eq 8 ]; then "$STACK" restart-redis && echo "restarted redis"; continue; fi
    victim=${workers[$((RANDOM % ${#workers[@]}))]}
    kill_and_restart "$victim"
  done
}
chaos >"$PAYSTREAM_RUN_DIR/chaos.log" 2>&1 &
driver=$!

"$PAYCTL" publish --count "$COUNT" --duplicates 2000 --cross-partition 500 --conflicts 200 \
  --declines 500 --fraud 50 --invalid 100 --garbage $GARBAGE --run chaos --manifest "$M" >/dev/null
# Keep the chaos going while the load is processed, for at least ten events
# (kills and both restarts), then let it settle.
enough_chaos() {
  [ "$(grep -v '^terminal before: ' "$PAYSTREAM_RUN_DIR/chaos.log" | grep -c .)" -ge 15 ] &&
    [ "$(terminal_count)" -ge $(($(manifest_terminal "$M") * 9 / 10)) ]
}
wait_until 180 enough_chaos || true
touch "$PAYSTREAM_RUN_DIR/chaos.stop"
wait "$driver"
C=$PAYSTREAM_RUN_DIR/chaos.log
log "chaos: $(grep -c '^SIGKILLed' "$C") workers killed, $(grep -c '^restarted [a-z]*-' "$C") restarted"
check "at least 5 workers were SIGKILLed (seen exiting with 137)" test "$(grep -c '^SIGKILLed' "$C")" -ge 5
eq "every killed worker was restarted (a new live process)" "$(grep -c '^SIGKILLed' "$C")" "$(grep -c '^restarted [a-z]*-' "$C")"
check "postgres was restarted" qgrep '^restarted postgres' "$C"
check "redis was restarted" qgrep '^restarted redis' "$C"
# midload PATTERN: how many chaos events matching PATTERN landed while some,
# not all, intents were terminal (the count read just before the event).
midload() {
  awk -v n="$(manifest_terminal "$M")" -v re="$1" '/^terminal before: / { t = $3 } $0 ~ re && t > 0 && t < n { k++ } END { print k + 0 }' "$C"
}
log "mid-load: $(midload '^SIGKILLed') kills, postgres $(midload '^restarted postgres'), redis $(midload '^restarted redis')"
check "at least 5 SIGKILLs landed mid-load" test "$(midload '^SIGKILLed')" -ge 5
check "postgres was restarted mid-load" test "$(midload '^restarted postgres')" -eq 1
check "redis was restarted mid-load" test "$(midload '^restarted redis')" -eq 1

check "every intent reaches a terminal state" "$PAYCTL" wait --terminal "$(manifest_terminal "$M")" --timeout 240
assert_invariants "$M"
check "payctl reconcile passes" quietly "$PAYCTL" reconcile
eq "no charge attempt left charging" "0" "$(sql "SELECT count(*) FROM charge_attempts WHERE state = 'charging'")"
"$PAYCTL" dlq list >"$PAYSTREAM_RUN_DIR/dlq.jsonl"
eq "every undecodable message is in the DLQ" "$GARBAGE" \
  "$(jq -r 'select(.["dlq.stage"]=="ingest") | .key' "$PAYSTREAM_RUN_DIR/dlq.jsonl" | sort -u | wc -l)"
eq "nothing but undecodable input was dead-lettered" "0" \
  "$(jq -r 'select(.["dlq.stage"]!="ingest") | .key' "$PAYSTREAM_RUN_DIR/dlq.jsonl" | wc -l)"
check "workers stop cleanly on SIGTERM" "$STACK" stop-workers
check "no sanitizer reports" no_sanitizer_reports
finish
