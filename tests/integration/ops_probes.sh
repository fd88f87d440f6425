#!/usr/bin/env bash
# Probes an orchestrator can trust: /healthz answers as soon as the worker
# runs; /readyz is not ready until the worker owns partitions, turns not
# ready when Postgres goes away (probed each second, even when idle) and
# ready again when it is back.
source "$(dirname "$0")/lib.sh"
export PAYSTREAM_STATS_INTERVAL_MS=1000
stack_up
"$STACK" kafka-down
"$STACK" start-worker ledger 1
check "the worker serves its probes" wait_until 30 test -s "$PAYSTREAM_RUN_DIR/metrics/ledger-1.port"
eq "/healthz answers while Kafka is unreachable" 200 "$(http_status ledger 1 /healthz)"
eq "/readyz is not ready before the worker has partitions" 503 "$(http_status ledger 1 /readyz)"
check "/readyz says what is missing" sh -c "'$STACK' http ledger 1 /readyz | grep -q '^partitions not ok'"
"$STACK" kafka-up
check "/readyz becomes ready once partitions are assigned" wait_until 60 ready ledger 1
check "with Kafka, Postgres and partitions ok" sh -c "'$STACK' http ledger 1 /readyz | grep -c ' ok' | grep -qx 3"

"$STACK" stop-postgres
check "/readyz turns not ready when Postgres goes away" wait_until 15 not_ready ledger 1
check "and names Postgres" sh -c "'$STACK' http ledger 1 /readyz | grep -q '^postgres not ok'"
eq "/healthz still answers (alive, just not ready)" 200 "$(http_status ledger 1 /healthz)"
"$STACK" start-postgres
check "/readyz is ready again when Postgres is back" wait_until 30 ready ledger 1

"$STACK" start-worker ingest 1
check "ingest becomes ready" wait_until 60 ready ingest 1
redis-cli -p "$PAYSTREAM_REDIS_PORT" shutdown nosave >/dev/null 2>&1
redis_shown() { "$STACK" http ingest 1 /readyz | grep -q '^redis not ok (not required)'; }
check "Redis down is shown on /readyz" wait_until 15 redis_shown
check "but ingest stays ready: it degrades to Postgres by design" ready ingest 1
eq "/metrics answers in Prometheus text format" "text/plain; version=0.0.4; charset=utf-8" \
  "$(curl -s -o /dev/null -w '%{content_type}' "http://127.0.0.1:$(cat "$PAYSTREAM_RUN_DIR/metrics/ingest-1.port")/metrics")"
check "workers stop cleanly on SIGTERM" "$STACK" stop-workers
check "no sanitizer reports" no_sanitizer_reports
finish
