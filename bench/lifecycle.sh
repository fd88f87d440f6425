#!/usr/bin/env bash
# bench/lifecycle.sh: the lifecycle mix beside the sale-only row (#19). Two
# runs, each on a fresh local stack (bench/lib.sh: real Kafka, Postgres,
# Redis, procsim at latency 0, one instance per stage), as fast as possible:
#   sale_only  N sales;
#   lifecycle  N payments as `payctl load --mix sale=60,authcap=25,refund=10,void=5`:
#              60 % sales, 25 % authorizations captured once authorized, 10 %
#              sales partly refunded once succeeded, 5 % authorizations voided —
#              every operation is a request of its own (~1.35 N requests).
# Both without fraud holds or repeat customers, 3 % declines. Throughput is
# requests (payments and operations) answered per second, sustained (10th to
# 90th percentile of arrivals); latency from publication to outcome (an
# operation's from its own publication, once its payment succeeded).
# Writes bench/results/lifecycle.json and its table between the markers in
# bench/RESULTS.md. A few minutes; bench/run calls it for its `lifecycle`
# scenario.
# usage: bench/lifecycle.sh [build-dir]   (BENCH_LC_COUNT=N payments per run, 3000)
CMDLINE=""
for v in $(compgen -v BENCH_); do CMDLINE+="$v=\"${!v}\" "; done
CMDLINE+="bench/lifecycle.sh $*"
source "$(dirname "$0")/lib.sh" "${1:-}"
N=${BENCH_LC_COUNT:-3000}
OUT=$repo/bench/results
mkdir -p "$OUT"
RESULTS=$(mktemp)
load1() { cut -d' ' -f1 /proc/loadavg; }
log() { printf '# %s\n' "$*" >&2; }
COMMON="--count $N --fraud 0 --repeat-customers 0 --declines 3 --duplicates 0 --timeout 600"

run() {
  local name=$1 desc=$2 args=$3
  log "lifecycle bench $name: $desc"
  export PAYSTREAM_PROCSIM_LATENCY_MS=0
  new_stack
  for s in ingest fraud charge ledger; do
    env PAYSTREAM_LOG_LEVEL=warn PAYSTREAM_METRICS_ADDR=127.0.0.1:0 \
      PAYSTREAM_KAFKA_PROPERTIES="${WORKER_KAFKA_PROPERTIES:-}" "$STACK" start-worker "$s" 1
  done
  for s in ingest fraud charge ledger; do wait_ready "$s" 1; done
  "$PAYCTL" load --run "warm$name" --count 500 >/dev/null 2>&1 || true
  local l0; l0=$(load1)
  # shellcheck disable=SC2086
  "$PAYCTL" load --run "$name" $COMMON $args --json "$RESULTS.$name" >/dev/null 2>&1 || true
  jq -c --arg name "$name" --arg desc "$desc" --arg args "$COMMON $args" --argjson l0 "$l0" \
    --argjson l1 "$(load1)" \
    '{scenario: $name, description: $desc, load: $args, loadavg_1m: [$l0, $l1]} + .' \
    "$RESULTS.$name" >>"$RESULTS"
  rm -f "$RESULTS.$name"
  cleanup
}

run sale_only "sale only ($N sales)" ""
run lifecycle "lifecycle mix ($N payments: 60 % sale, 25 % authorize+capture, 10 % sale+partial refund, 5 % authorize+void)" \
  "--mix sale=60,authcap=25,refund=10,void=5"

jq -s --arg cmd "$CMDLINE" \
  '{date: (now | todate), machine: "'"$(nproc) cores, $(uname -r)"'", command: $cmd, results: .}' \
  "$RESULTS" >"$OUT/lifecycle.json"
rm -f "$RESULTS"
table=$(jq -r '
  "Run \(.date) on \(.machine). Command: `\(.command)`.\n",
  "| scenario | requests | requests/s (sustained) | p50 ms | p99 ms | max ms | load avg 1 min (before → after) |",
  "|---|---|---|---|---|---|---|",
  (.results[] | "| \(.description) | \(.outcomes)/\(.payments + (.mix.operations // 0)) | \(.sustained | floor) | \(.latency_ms.p50) | \(.latency_ms.p99) | \(.latency_ms.max) | \(.loadavg_1m[0]) → \(.loadavg_1m[1]) |")
' "$OUT/lifecycle.json")
f=$repo/bench/RESULTS.md
if grep -q '<!-- bench/lifecycle -->' "$f"; then
  T="$table" awk 'BEGIN{skip=0} /<!-- bench\/lifecycle -->/{print; print ENVIRON["T"]; skip=1; next} /<!-- \/bench\/lifecycle -->/{skip=0} !skip' "$f" >"$f.new"
  mv "$f.new" "$f"
else
  printf '\n## Lifecycle mix (issue 19)\n\n<!-- bench/lifecycle -->\n%s\n<!-- /bench/lifecycle -->\n' "$table" >>"$f"
fi
echo "$table"
