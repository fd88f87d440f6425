#!/usr/bin/env bash
# bench/fraud.sh: the fraud stage alone draining a backlog — payments/s and
# per-batch latency (read stored, Redis history and blocklists, rules, one
# model call plus explanations of the held/blocked, store; p50/p95/p99
# exact, from the worker's per-batch debug log, whole batch and per phase), the rules + model part alone,
# with the committed model and with rules only (PAYSTREAM_FRAUD_MODEL=none)
# to show what the model costs. Payments come from `payctl publish` with
# about three payments per customer, so histories are read and written.
# Ends with issue 21's figure: rules + model per batch, wall-clock p99 and
# thread-CPU p99, against the 10 ms target.
# usage: bench/fraud.sh [build-dir] [payments] [both|model]
#   model: the committed model's run only (one stack, ~1 min on a quiet
#   machine): `make build && bench/fraud.sh build 20000 model`
# FRAUD_BENCH_NICE=-20 (root): the fraud worker at that nice value, which
# approximates a core of its own on a busy machine (the rest of the stack,
# Redis and Postgres included, is not favoured). The figure to claim is a
# quiet machine's at the default, 0.
source "$(dirname "$0")/lib.sh" "${1:-}"
N=${2:-20000}
WHICH=${3:-both}
NICE=${FRAUD_BENCH_NICE:-0}
case $WHICH in both | model) ;; *) echo "usage: bench/fraud.sh [build-dir] [payments] [both|model]" >&2; exit 2 ;; esac

# Brings N payments to `received` with fraud stopped.
prepare() {
  new_stack
  PAYSTREAM_LOG_LEVEL=warn "$STACK" start-worker ingest 1
  "$PAYCTL" publish --count "$N" --customers $((N / 3)) --run "f$RANDOM" >/dev/null
  until [ "$(sql "SELECT count(*) FROM payments")" -ge "$N" ]; do sleep 0.2; done
}

pct() { # pct P FILE: the P-th percentile of the numbers in FILE (nearest rank)
  sort -n "$2" | awk -v p="$1" '{ v[NR] = $1 } END { i = int(p / 100 * NR + 0.999); if (i < 1) i = 1; print v[i] }'
}

drain() {
  local label=$1; shift
  local t0 t1 log=$PAYSTREAM_RUN_DIR/logs/fraud-1.log d=$PAYSTREAM_RUN_DIR
  t0=$(now_ms)
  env PAYSTREAM_LOG_LEVEL=debug "$@" nice -n "$NICE" "$STACK" start-worker fraud 1
  until [ "$(sql "SELECT count(*) FROM fraud_assessments")" -ge "$N" ]; do sleep 0.1; done
  t1=$(now_ms)
  local steady
  steady=$(sql "SELECT extract(epoch FROM max(created_at) - min(created_at)) FROM fraud_assessments")
  grep -o 'fraud batch: [0-9]* payments scored in [^"]*cpu [0-9.]* ms)' "$log" >"$d/batches"
  # fields: 3 payments, 7 batch, 10 model call, 15 rules + model, 18 Postgres read,
  # 21 Redis round trip, 24 Postgres store, 30 rules + model as thread CPU time (ms)
  local f nb size row=""
  for f in 7 15 30 10 18 21 24; do awk -v f=$f '{ print $f }' "$d/batches" >"$d/ms_$f"; done
  nb=$(wc -l <"$d/batches")
  size=$(awk '{ s += $3 } END { printf "%.0f", s / NR }' "$d/batches")
  for f in 7 15 30 10 18 21 24; do
    row="$row $(pct 50 "$d/ms_$f") / $(pct 95 "$d/ms_$f") / $(pct 99 "$d/ms_$f") |"
  done
  printf '| %s | %d | %.2f s wall, %.2f s first to last | %.0f payments/s | %d batches of %s |%s %s |\n' \
    "$label" "$N" "$(echo "($t1 - $t0) / 1000" | bc -l)" "$steady" "$(echo "$N / $steady" | bc -l)" \
    "$nb" "$size" "$row" "$(cut -d' ' -f1-3 /proc/loadavg)"
  verdict="$verdict
$label: rules + model per batch over $nb batches of $size: wall p99 $(pct 99 "$d/ms_15") ms, thread CPU p99 $(pct 99 "$d/ms_30") ms (target <= 10 ms wall: $(awk -v w="$(pct 99 "$d/ms_15")" 'BEGIN { print w <= 10 ? "met" : "NOT met" }')); fraud worker nice $NICE, load average $(cut -d' ' -f1-3 /proc/loadavg)"
  cleanup
}
verdict=""

echo "Load average before: $(cut -d' ' -f1-3 /proc/loadavg) on $(nproc) cores. Times in ms, p50 / p95 / p99 per batch."
echo
echo "| fraud stage | payments | time | throughput | batches | whole batch | rules + model | rules + model, thread CPU time | model call (incl. explanations) | Postgres read | Redis round trip | Postgres store | load average after |"
echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|"
prepare; drain "rules + model (committed model, 1 prediction thread)"
[ "$WHICH" = model ] || { prepare; drain "rules only (PAYSTREAM_FRAUD_MODEL=none)" PAYSTREAM_FRAUD_MODEL=none; }
# Issue 21 (p99 over fewer than 100 batches is the slowest batch).
echo "$verdict"
