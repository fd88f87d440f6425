#!/usr/bin/env bash
# bench/fraud.sh: the fraud stage alone draining a backlog — payments/s and
# per-batch latency (read stored, Redis history and blocklists, rules, one
# model call plus explanations of the held/blocked, store; p50/p99 exact,
# from the worker's per-batch debug log), the rules + model part alone,
# with the committed model and with rules only (PAYSTREAM_FRAUD_MODEL=none)
# to show what the model costs. Payments come from `payctl publish` with
# about three payments per customer, so histories are read and written.
# usage: bench/fraud.sh [build-dir] [payments]
source "$(dirname "$0")/lib.sh" "${1:-}"
N=${2:-20000}

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
  local t0 t1 log=$PAYSTREAM_RUN_DIR/logs/fraud-1.log
  t0=$(now_ms)
  env PAYSTREAM_LOG_LEVEL=debug "$@" "$STACK" start-worker fraud 1
  until [ "$(sql "SELECT count(*) FROM fraud_assessments")" -ge "$N" ]; do sleep 0.1; done
  t1=$(now_ms)
  local steady
  steady=$(sql "SELECT extract(epoch FROM max(created_at) - min(created_at)) FROM fraud_assessments")
  grep -o 'fraud batch: [0-9]* payments scored in [0-9.]* ms (model [0-9.]* ms) (rules + model [0-9.]* ms)' "$log" >"$PAYSTREAM_RUN_DIR/batches"
  awk '{ print $7 }' "$PAYSTREAM_RUN_DIR/batches" >"$PAYSTREAM_RUN_DIR/batch_ms"
  awk '{ print $10 }' "$PAYSTREAM_RUN_DIR/batches" >"$PAYSTREAM_RUN_DIR/model_ms"
  awk '{ print $15 }' "$PAYSTREAM_RUN_DIR/batches" >"$PAYSTREAM_RUN_DIR/score_ms"
  local nb size
  nb=$(wc -l <"$PAYSTREAM_RUN_DIR/batch_ms")
  size=$(awk '{ s += $3 } END { printf "%.0f", s / NR }' "$PAYSTREAM_RUN_DIR/batches")
  printf '| %s | %d | %.2f s wall, %.2f s first to last | %.0f payments/s | %d batches of %s | %s / %s ms | %s / %s ms | %s / %s ms |\n' \
    "$label" "$N" "$(echo "($t1 - $t0) / 1000" | bc -l)" "$steady" "$(echo "$N / $steady" | bc -l)" \
    "$nb" "$size" "$(pct 50 "$PAYSTREAM_RUN_DIR/batch_ms")" "$(pct 99 "$PAYSTREAM_RUN_DIR/batch_ms")" \
    "$(pct 50 "$PAYSTREAM_RUN_DIR/score_ms")" "$(pct 99 "$PAYSTREAM_RUN_DIR/score_ms")" \
    "$(pct 50 "$PAYSTREAM_RUN_DIR/model_ms")" "$(pct 99 "$PAYSTREAM_RUN_DIR/model_ms")"
  cleanup
}

echo "| fraud stage | payments | time | throughput | batches | batch p50 / p99 | rules + model p50 / p99 | model call p50 / p99 |"
echo "|---|---|---|---|---|---|---|---|"
prepare; drain "rules + model (committed model, 1 prediction thread)"
prepare; drain "rules only (PAYSTREAM_FRAUD_MODEL=none)" PAYSTREAM_FRAUD_MODEL=none
