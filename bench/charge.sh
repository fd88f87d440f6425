#!/usr/bin/env bash
# bench/charge.sh: one charge worker against procsim with 500 ms processor
# latency — the continuous pipeline (curl multi, 500 or 1000 in flight) vs. the seed's
# synchronous design (the same binary with PAYSTREAM_CHARGE_MAX_INFLIGHT=1:
# one request at a time). Payments are brought to `scored` with the charge
# worker stopped, then it drains the backlog.
# usage: bench/charge.sh [build-dir] [payments] [seed-payments]
source "$(dirname "$0")/lib.sh" "${1:-}"
N=${2:-5000} NSEED=${3:-20}
export PAYSTREAM_PROCSIM_LATENCY_MS=500

run() {
  local label=$1 n=$2; shift 2
  new_stack
  for s in ingest fraud; do PAYSTREAM_LOG_LEVEL=warn "$STACK" start-worker "$s" 1; done
  "$PAYCTL" publish --count "$n" --run "c$RANDOM" >/dev/null
  until [ "$(sql "SELECT count(*) FROM payments WHERE status NOT IN ('received')")" -ge "$n" ]; do sleep 0.2; done
  local want t0 t1
  want=$(sql "SELECT count(*) FROM payments WHERE status = 'scored'")
  t0=$(date +%s%3N)
  env PAYSTREAM_LOG_LEVEL=error "$@" "$STACK" start-worker charge 1
  until [ "$(sql "SELECT count(*) FROM charge_attempts WHERE state <> 'charging'")" -ge "$want" ]; do sleep 0.1; done
  t1=$(date +%s%3N)
  local steady
  steady=$(sql "SELECT extract(epoch FROM max(updated_at) - min(created_at)) FROM charge_attempts")
  printf '| %s | %d | %.2f s wall, %.2f s first attempt to last answer | %.0f charges/s |\n' "$label" "$want" \
    "$(echo "($t1 - $t0) / 1000" | bc -l)" "$steady" "$(echo "$want / $steady" | bc -l)"
  cleanup
}

echo "| charge worker, processor latency 500 ms | charges | time | throughput |"
echo "|---|---|---|---|"
run "continuous pipeline, 500 in flight (default)" "$N"
run "continuous pipeline, 1000 in flight" "$N" PAYSTREAM_CHARGE_MAX_INFLIGHT=1000
run "seed design (one request at a time)" "$NSEED" PAYSTREAM_CHARGE_MAX_INFLIGHT=1 PAYSTREAM_BATCH_MAX=1
