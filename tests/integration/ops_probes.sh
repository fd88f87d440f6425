#!/usr/bin/env bash
# Probes an orchestrator can trust: /healthz answers as soon as the worker
# runs; /readyz is not ready until the worker owns partitions, turns not
# ready when Postgres goes away (probed each second, even when idle) and
# ready again when it is back, and not ready on an older database schema;
# /healthz fails when the worker loop stops turning.
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
check "with Kafka, Postgres, partitions and schema ok" sh -c "'$STACK' http ledger 1 /readyz | grep -c ' ok' | grep -qx 4"

"$STACK" stop-postgres
check "/readyz turns not ready when Postgres goes away" wait_until 15 not_ready ledger 1
check "and names Postgres" sh -c "'$STACK' http ledger 1 /readyz | grep -q '^postgres not ok'"
eq "/healthz still answers (alive, just not ready)" 200 "$(http_status ledger 1 /healthz)"
"$STACK" start-postgres
check "/readyz is ready again when Postgres is back" wait_until 30 ready ledger 1

# Readiness needs the schema this build was made for (lib/schema.h), as
# payctl migrate records it.
V=$(sed -n 's/^#define PS_DB_SCHEMA_VERSION "\(.*\)"$/\1/p' "$REPO/lib/schema.h")
check "lib/schema.h names a migration that exists" test -e "$REPO/db/migrations/$V"
# ps-events runs its own loop (not kloop's) and checks the same, busy or idle.
PAYSTREAM_HEARTBEAT_TIMEOUT_S=3 "$STACK" start-worker events 1
check "ps-events becomes ready" wait_until 60 ready events 1
# (A database migrated up to the one before: its row removed, as if never applied.)
sql "DELETE FROM schema_migrations WHERE version = '$V'" >/dev/null
check "/readyz turns not ready on a schema older than the build" wait_until 15 not_ready ledger 1
check "and says which migration it needs" sh -c "'$STACK' http ledger 1 /readyz | grep -q '^schema not ok: needs migration $V'"
check "ps-events' /readyz too" wait_until 15 not_ready events 1
check "naming the migration" sh -c "'$STACK' http events 1 /readyz | grep -q '^schema not ok: needs migration $V'"
sql "INSERT INTO schema_migrations (version) VALUES ('$V')" >/dev/null
check "/readyz is ready again once the migration is recorded" wait_until 15 ready ledger 1
check "ps-events' too" wait_until 15 ready events 1

PAYSTREAM_HEARTBEAT_TIMEOUT_S=3 "$STACK" start-worker ingest 1
check "ingest becomes ready" wait_until 60 ready ingest 1
redis-cli -p "$PAYSTREAM_REDIS_PORT" shutdown nosave >/dev/null 2>&1
redis_shown() { "$STACK" http ingest 1 /readyz | qgrep '^redis not ok (not required)'; }
check "Redis down is shown on /readyz" wait_until 15 redis_shown
check "but ingest stays ready: it degrades to Postgres by design" ready ingest 1
eq "/metrics answers in Prometheus text format" "text/plain; version=0.0.4; charset=utf-8" \
  "$(curl -s -o /dev/null -w '%{content_type}' "http://127.0.0.1:$(cat "$PAYSTREAM_RUN_DIR/metrics/ingest-1.port")/metrics")"
# Liveness is the worker loop's heartbeat: a loop blocked (here on a
# table lock Postgres holds for 20 s, no timeout) fails /healthz after
# PAYSTREAM_HEARTBEAT_TIMEOUT_S (3 s), and passes again once it turns.
eq "/healthz is ok while the loop turns" 200 "$(http_status ingest 1 /healthz)"
psql "$PAYSTREAM_PG_DSN" -qAtX -c "BEGIN; LOCK TABLE payments IN ACCESS EXCLUSIVE MODE; SELECT pg_sleep(20); COMMIT;" >/dev/null 2>&1 &
locker=$!
locked() { [ "$(sql "SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation WHERE c.relname = 'payments' AND l.mode = 'AccessExclusiveLock' AND l.granted")" = 1 ]; }
check "the payments table is locked" wait_until 10 locked
"$PAYCTL" publish --count 5 --run hb >/dev/null
stalled() { [ "$(http_status ingest 1 /healthz)" = 503 ]; }
check "/healthz fails once the loop is blocked past the timeout" wait_until 15 stalled
check "and says the loop stalled" sh -c "curl -s http://127.0.0.1:$(cat "$PAYSTREAM_RUN_DIR/metrics/ingest-1.port")/healthz | grep -q 'worker loop stalled'"
wait "$locker"
alive() { [ "$(http_status ingest 1 /healthz)" = 200 ]; }
check "/healthz passes again once the loop turns" wait_until 30 alive
# ps-events' own loop too: its readiness query (every 5 s) waits on a lock
# held on schema_migrations for 15 s.
eq "ps-events' /healthz is ok while its loop turns" 200 "$(http_status events 1 /healthz)"
psql "$PAYSTREAM_PG_DSN" -qAtX -c "BEGIN; LOCK TABLE schema_migrations IN ACCESS EXCLUSIVE MODE; SELECT pg_sleep(15); COMMIT;" >/dev/null 2>&1 &
locker=$!
events_stalled() { [ "$(http_status events 1 /healthz)" = 503 ]; }
check "ps-events' /healthz fails once its loop is blocked past the timeout" wait_until 20 events_stalled
wait "$locker"
events_alive() { [ "$(http_status events 1 /healthz)" = 200 ]; }
check "and passes again once it turns" wait_until 30 events_alive
check "workers stop cleanly on SIGTERM" "$STACK" stop-workers
check "no sanitizer reports" no_sanitizer_reports
finish
