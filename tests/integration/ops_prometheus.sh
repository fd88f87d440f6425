#!/usr/bin/env bash
# A real Prometheus (Debian's) scrapes every worker during a run; PromQL
# through its HTTP API agrees with Postgres on how many payments were
# processed and how each ended.
source "$(dirname "$0")/lib.sh"
command -v prometheus >/dev/null || { echo "not ok - prometheus is not installed (deploy/local/install-deps)"; exit 1; }
stack_up
"$STACK" workers 1
R=$PAYSTREAM_RUN_DIR
ports_written() { [ "$(ls "$R"/metrics/*.port 2>/dev/null | wc -l)" -eq 4 ]; }
check "every worker serves metrics" wait_until 30 ports_written

# One scrape job per stage, the way deploy/compose/prometheus.yml does it.
{
  echo "global: {scrape_interval: 1s, evaluation_interval: 1s}"
  echo "scrape_configs:"
  for s in ingest fraud charge ledger; do
    echo "  - job_name: $s"
    echo "    static_configs: [{targets: ['127.0.0.1:$(cat "$R/metrics/$s-1.port")']}]"
  done
} >"$R/prometheus.yml"
check "the scrape configuration is valid (promtool)" quietly promtool check config "$R/prometheus.yml"
# Ours, not another test's Prometheus on a port it took first: the one
# answering reads this run's TSDB directory.
prom_is_ours() {
  [ "$(curl -sf "http://127.0.0.1:$1/api/v1/status/flags" | jq -r '.data["storage.tsdb.path"]')" = "$R/prom-data" ]
}
PROM_PORT=$(serve_on_free_port prometheus prom_is_ours prometheus --config.file "$R/prometheus.yml" \
  --storage.tsdb.path "$R/prom-data" --web.listen-address "127.0.0.1:@PORT@")
check "Prometheus serves on a port of its own" test -n "$PROM_PORT"
PROM=http://127.0.0.1:$PROM_PORT
promql() { curl -sf --get "$PROM/api/v1/query" --data-urlencode "query=$1" | jq -r '.data.result[0].value[1] // "none"'; }
targets_up() { [ "$(promql 'sum(up)')" = 4 ]; }
check "Prometheus scrapes all four workers" wait_until 60 targets_up

"$PAYCTL" publish --count 3000 --declines 100 --fraud 60 --invalid 40 --duplicates 0 \
  --manifest "$R/m.jsonl" >/dev/null
expected=$(manifest_terminal "$R/m.jsonl")
check "every payment reaches its outcome" wait_until 120 all_terminal
agrees() { [ "$(promql "$1")" = "$(sql "$2")" ]; }
for status in succeeded declined blocked rejected; do
  q="sum(paystream_outcomes_total{status=\"$status\"})"
  if [ "$status" = rejected ]; then pgq="SELECT count(*) FROM rejections"
  else pgq="SELECT count(*) FROM payments WHERE status = '$status'"; fi
  check "PromQL $q equals Postgres ($(sql "$pgq"))" wait_until 30 agrees "$q" "$pgq"
done
check "PromQL: processed payments (ledger postings) equal Postgres" \
  wait_until 30 agrees 'sum(paystream_outcomes_total{stage="ledger"})' "SELECT count(*) FROM ledger_transactions"
check "PromQL: ingest consumed every published intent" \
  wait_until 30 agrees 'sum(paystream_messages_consumed_total{job="ingest"})' "SELECT 3000"
no_lag() { [ "$(promql 'sum(paystream_consumer_lag)')" = 0 ]; }
check "consumer lag (from librdkafka statistics) drains to 0" wait_until 30 no_lag
eq "the circuit is closed" 0 "$(promql 'max(paystream_circuit_breaker_state)')"
check "batch latency histogram is exported" test "$(promql 'sum(paystream_batch_seconds_count)')" != none
check "workers stop cleanly on SIGTERM" "$STACK" stop-workers
check "no sanitizer reports" no_sanitizer_reports
finish
