#!/usr/bin/env bash
# The Kafka broker stops mid-load (a real broker process, SIGTERM) and starts
# again on the same log dir and port: every worker keeps running, reconnects
# and is ready again;
# work published after the outage is processed; nothing lost, nothing doubled.
# Each worker must have seen the outage: its /readyz says Kafka is not ok
# while the broker is down, and its Kafka client logs the refused
# connections after the broker stopped.
# The outage outlasts the heartbeat timeout (8 s here): no worker's loop
# may block on the absent broker — an offset commit is sent and its answer
# read later (lib/kcommit.c) — so every /healthz stays 200 throughout and
# nobody would restart a worker that is only waiting for the broker.
source "$(dirname "$0")/lib.sh"
export PAYSTREAM_STATS_INTERVAL_MS=1000
HB=8
export PAYSTREAM_HEARTBEAT_TIMEOUT_S=$HB
stack_up
"$STACK" workers 1
WORKERS="ingest fraud charge ledger"
all() { local s; for s in $WORKERS; do "$@" "$s" 1 || return 1; done; }
check "every worker is ready (owns partitions)" wait_until 60 all ready
publish_trickle 20 100 0.3 kd --duplicates 10 --declines 3 &
publisher=$!
check "load is flowing" wait_until 30 eval '[ "$(terminal_count)" -gt 200 ]'

# Where each worker's log stands when the broker goes: what it logs after
# this line is what it saw of the outage.
declare -A at
for s in $WORKERS; do at[$s]=$(wc -l <"$PAYSTREAM_RUN_DIR/logs/$s-1.log"); done
"$STACK" kafka-down
check "the broker process is gone" pid_gone "$(cat "$PAYSTREAM_RUN_DIR/kafka-1.pid")"
# Every worker turns not ready: an idle one from its consumer's broker
# state, one blocked flushing a batch because its outputs wait unacknowledged.
kafka_not_ok() { not_ready "$1" "$2" && probe_body "$1" "$2" /readyz | qgrep '^kafka not ok'; }
check "every worker's /readyz turns not ready (kafka not ok) during the outage" wait_until 30 all kafka_not_ok
# The outage lasts until a worker has tried the broker and been refused.
# Each worker's librdkafka client logs that once the worker polls; a worker
# blocked flushing a batch logs it only when the broker is back.
saw_outage() {
  qgrep -E 'Connection refused|brokers are down' <<<"$(tail -n +"$((at[$1] + 1))" "$PAYSTREAM_RUN_DIR/logs/$1-1.log")"
}
seen_by_one() { local s; for s in $WORKERS; do saw_outage "$s" && return 0; done; return 1; }
check "a worker is refused by the stopped broker" wait_until 30 seen_by_one
# Watch every /healthz for three heartbeat timeouts of outage.
unhealthy=""
until_s=$(($(date +%s) + 3 * HB))
while [ "$(date +%s)" -lt "$until_s" ]; do
  for s in $WORKERS; do
    [ "$(http_status "$s" 1 /healthz)" = 200 ] || unhealthy+="$s@$(date +%s) "
  done
  sleep 1
done
eq "every worker's /healthz stays 200 through an outage of 3 heartbeat timeouts" "" "$unhealthy"
for s in $WORKERS; do check "$s-1 runs through the outage" kill -0 "$(cat "$PAYSTREAM_RUN_DIR/pids/$s-1.pid")"; done
"$STACK" kafka-up
# Ready again, and once a worker is ready it never again says the broker is
# down: what a loop held through the outage finds queued when it polls again
# (the outage's errors and statistics) is not news (lib/kafka.c). Watched
# until every worker is ready at once, and 5 s more.
declare -A back
relapsed="" all_at=""
end=$((SECONDS + 90))
while [ $SECONDS -lt $end ] && { [ -z "$all_at" ] || [ $SECONDS -lt $((all_at + 5)) ]; }; do
  n=0
  for s in $WORKERS; do
    r=$(curl -s -w '\n%{http_code}' "http://127.0.0.1:$(cat "$PAYSTREAM_RUN_DIR/metrics/$s-1.port")/readyz")
    if [ "${r##*$'\n'}" = 200 ]; then
      back[$s]=1 n=$((n + 1))
    elif [ -n "${back[$s]:-}" ] && qgrep -E '^kafka not ok: (all brokers down|no broker connection up)' <<<"$r"; then
      relapsed+="$s@$(date +%s) "
    fi
  done
  [ -n "$all_at" ] || [ "$n" -lt 4 ] || all_at=$SECONDS
  sleep 0.3
done
check "every worker is ready again after the outage" test -n "$all_at"
eq "no worker, once ready again, says the broker is down" "" "$relapsed"
for s in $WORKERS; do ready "$s" 1 || log "$s-1 /readyz: $(probe_body "$s" 1 /readyz | tr '\n' ';')"; done
for s in $WORKERS; do check "$s-1 saw the outage (its Kafka client was refused)" wait_until 30 saw_outage "$s"; done
check "the publisher finished (it buffered through the outage)" wait "$publisher"

# Progress after the outage: a load published only now must be processed.
"$PAYCTL" publish --count 300 --duplicates 10 --declines 5 --run after \
  --manifest "$PAYSTREAM_RUN_DIR/after.jsonl" >/dev/null
cat "$PAYSTREAM_RUN_DIR"/kd-*.jsonl "$PAYSTREAM_RUN_DIR/after.jsonl" >"$PAYSTREAM_RUN_DIR/manifest.jsonl"
M=$PAYSTREAM_RUN_DIR/manifest.jsonl
check "every intent reaches a terminal state" "$PAYCTL" wait --terminal "$(manifest_terminal "$M")" --timeout 240
eq "every intent published after the outage has its outcome" "$(manifest_terminal "$PAYSTREAM_RUN_DIR/after.jsonl")" \
  "$(sql "SELECT (SELECT count(*) FROM payments WHERE outcome IS NOT NULL AND idempotency_key LIKE 'after-%')
        + (SELECT count(*) FROM rejections WHERE idempotency_key LIKE 'after-%')")"
assert_invariants "$M"
check "workers stop cleanly on SIGTERM" "$STACK" stop-workers
check "no sanitizer reports" no_sanitizer_reports
finish
