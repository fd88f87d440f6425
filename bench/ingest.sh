#!/usr/bin/env bash
# bench/ingest.sh: ingest alone — intents/s draining a backlog, with Redis and
# with Redis unreachable (Postgres only) — and the time from a duplicate's
# publication to its replayed outcome (p50/p99), through the full pipeline.
# usage: bench/ingest.sh [build-dir] [intents]   (release build recommended)
source "$(dirname "$0")/lib.sh" "${1:-}"
N=${2:-50000}

# Publishes N intents first, then starts one ingest and times the drain.
ingest_drain() {
  local label=$1; shift
  new_stack
  "$PAYCTL" publish --count "$N" --run "bench$RANDOM" >/dev/null
  local t0; t0=$(now_ms)
  env "$@" "$STACK" start-worker ingest 1
  until [ "$(sql "SELECT count(*) FROM payments")" -ge "$N" ]; do sleep 0.05; done
  local t1; t1=$(now_ms)
  local secs steady
  secs=$(echo "scale=3; ($t1 - $t0) / 1000" | bc)
  # Steady state: first claim to last claim, without the consumer-group join.
  steady=$(sql "SELECT extract(epoch FROM max(created_at) - min(created_at)) FROM payments")
  printf '| ingest alone, %s | %d | %.2f s wall (incl. group join), %.2f s first to last claim | %.0f intents/s |\n' \
    "$label" "$N" "$secs" "$steady" "$(echo "$N / $steady" | bc -l)"
  cleanup
}

echo "| scenario | intents | time | throughput |"
echo "|---|---|---|---|"
ingest_drain "Redis up" PAYSTREAM_LOG_LEVEL=warn
ingest_drain "Redis unreachable" PAYSTREAM_LOG_LEVEL=error PAYSTREAM_REDIS_PORT=1

# Duplicate -> replayed outcome latency, full pipeline.
new_stack
PAYSTREAM_LOG_LEVEL=warn "$STACK" workers 1
# A trickle of 20 x 100 requests, then the same requests again, also trickled,
# so the latency is not a burst's queueing.
D=2000
for i in $(seq 1 20); do "$PAYCTL" publish --count 100 --run "dup$i" --seed "$i" >/dev/null; sleep 0.1; done
"$PAYCTL" wait --terminal "$D" --timeout 300 >/dev/null
for i in $(seq 1 20); do "$PAYCTL" publish --count 100 --run "dup$i" --seed "$i" >/dev/null; sleep 0.1; done
until [ "$("$PAYCTL" outcomes | jq -c 'select(.replayed)' | wc -l)" -ge "$D" ]; do sleep 0.2; done
"$PAYCTL" outcomes | jq -r 'select(.replayed) | .timestamp_ms - .published_at_ms' | sort -n >"$PAYSTREAM_RUN_DIR/lat"
pct() { awk -v p="$1" '{a[NR]=$1} END {i=int(NR*p/100); if (i<1) i=1; print a[i]}' "$PAYSTREAM_RUN_DIR/lat"; }
printf '| duplicate of a finished payment -> replayed outcome | %d | p50 %s ms, p99 %s ms, max %s ms | |\n' \
  "$D" "$(pct 50)" "$(pct 99)" "$(tail -n1 "$PAYSTREAM_RUN_DIR/lat")"
