#!/usr/bin/env bash
# Redis killed mid-load and restarted later: ingest keeps moving on Postgres
# alone while Redis is down (asserted), no duplicate payment, nothing lost.
source "$(dirname "$0")/lib.sh"

stack_up
"$STACK" workers 1
check "workers own partitions" wait_until 30 assigned ingest-1

publish_trickle 30 150 0.3 redis --duplicates 40 --conflicts 3 --declines 5 &
publisher=$!
check "load is flowing" wait_until 30 eval '[ "$(payment_count)" -gt 600 ]'

redis_port=$(cat "$PAYSTREAM_RUN_DIR/redis.port")
redis-cli -p "$redis_port" shutdown nosave >/dev/null 2>&1 || true
check "redis is down" wait_until 10 eval '! redis-cli -p "$redis_port" ping'
down_at=$(payment_count)
check "ingest keeps claiming payments while redis is down" \
  wait_until 30 eval '[ "$(payment_count)" -gt $((down_at + 600)) ]'
check "the fallback was logged" qgrep 'redis unavailable' "$PAYSTREAM_RUN_DIR/logs/ingest-1.log"

redis-server --port "$redis_port" --bind 127.0.0.1 --daemonize yes --pidfile "$PAYSTREAM_RUN_DIR/redis.pid" \
  --dir "$PAYSTREAM_RUN_DIR" --save '' --appendonly no --logfile "$PAYSTREAM_RUN_DIR/redis.log" >/dev/null
# The port was free while Redis was down: another stack may have taken it.
# Back means ours (its dir is this run's), not merely something answering.
check "redis is back, ours" wait_until 10 redis_is_ours "$redis_port"
check "the publisher finished" wait "$publisher"

cat "$PAYSTREAM_RUN_DIR"/redis-*.jsonl >"$PAYSTREAM_RUN_DIR/manifest.jsonl"
M=$PAYSTREAM_RUN_DIR/manifest.jsonl
check "every intent reaches a terminal state" "$PAYCTL" wait --terminal "$(manifest_terminal "$M")" --timeout 240
assert_invariants "$M"
check "ingest reconnected to redis" wait_until 20 qgrep 'redis reconnected' "$PAYSTREAM_RUN_DIR/logs/ingest-1.log"
check "claims are cached again" wait_until 20 eval '[ "$(redis-cli -p "$redis_port" --scan --pattern "idempotency:*" | head -50 | wc -l)" -gt 0 ]'
check "workers stop cleanly on SIGTERM" "$STACK" stop-workers
check "no sanitizer reports" no_sanitizer_reports
finish
