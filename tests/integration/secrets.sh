#!/usr/bin/env bash
# Secrets come from files (as orchestrators mount them) or the environment
# and never reach a log: the Postgres DSN with its password, the Redis AUTH
# password, the processor API key and Kafka client properties. A wrong
# Redis password degrades like Redis down; a malformed properties file is a
# clear start-up error.
source "$(dirname "$0")/lib.sh"
stack_up
R=$PAYSTREAM_RUN_DIR
S=$R/secrets
mkdir -p "$S" && chmod 700 "$S"
PG_SECRET=pg-s3cret-91be REDIS_SECRET=redis-s3cret-7f3a API_SECRET=sk_live_s3cret_c0ffee
redis-cli -p "$PAYSTREAM_REDIS_PORT" CONFIG SET requirepass "$REDIS_SECRET" >/dev/null
export REDISCLI_AUTH=$REDIS_SECRET
curl -sf -X POST "$PAYSTREAM_PROCESSOR_URL/_sim/config?api_key=$API_SECRET" >/dev/null
printf '%s\n' "$REDIS_SECRET" >"$S/redis"
printf '%s\n' "$API_SECRET" >"$S/api-key"
printf '# client.properties\nsocket.keepalive.enable = true\n\nclient.rack=rack-1\n' >"$S/kafka.properties"
export PAYSTREAM_REDIS_PASSWORD_FILE=$S/redis PAYSTREAM_PROCESSOR_API_KEY_FILE=$S/api-key \
  PAYSTREAM_KAFKA_PROPERTIES_FILE=$S/kafka.properties
for stage in ingest fraud charge ledger; do
  echo "${PAYSTREAM_PG_DSN/user=postgres/user=paystream_$stage} password=$PG_SECRET" >"$S/pg-$stage"
  PAYSTREAM_PG_DSN_FILE=$S/pg-$stage "$STACK" start-worker "$stage" 1
done
"$PAYCTL" publish --count 300 --declines 10 --manifest "$R/m.jsonl" >/dev/null
expected=$(manifest_terminal "$R/m.jsonl")
check "the pipeline runs with every secret read from a file" wait_until 90 all_terminal
eq "ingest used Redis with AUTH (no failed round trip)" 0 "$(metric ingest 1 paystream_redis_errors_total)"
eq "fraud used Redis with AUTH (no failed round trip)" 0 "$(metric fraud 1 paystream_redis_errors_total)"
check "Redis holds the cache and velocity keys" test "$(redis-cli -p "$PAYSTREAM_REDIS_PORT" DBSIZE)" -gt 0
eq "the processor (accepting only that key) charged with the key from the file" \
  "$(jq -r 'select(.expect=="succeeded") | .key' "$R/m.jsonl" | wc -l)" \
  "$(sql "SELECT count(*) FROM payments WHERE status = 'succeeded'")"

# A wrong password is Redis unavailable: the stage degrades, says why, and
# the password it tried is not in the log.
echo wrong-password-5e1d >"$S/redis-wrong"
PAYSTREAM_REDIS_PASSWORD_FILE=$S/redis-wrong "$STACK" start-worker ingest 2
auth_failed() { qgrep 'AUTH failed' "$R/logs/ingest-2.log"; }
check "a wrong Redis password is reported as Redis unavailable" wait_until 30 auth_failed

# A malformed properties file stops the worker at start with a clear error.
printf 'sasl.password\n' >"$S/bad.properties"
PAYSTREAM_KAFKA_PROPERTIES_FILE=$S/bad.properties "$STACK" start-worker ledger 2
exited() { ! kill -0 "$(cat "$R/pids/ledger-2.pid")" 2>/dev/null; }
check "a malformed Kafka properties file is a start-up error" wait_until 30 exited
check "naming the file's variable" qgrep "PAYSTREAM_KAFKA_PROPERTIES_FILE: entry without '='" "$R/logs/ledger-2.log"
rm -f "$R/pids/ledger-2.pid"

check "workers stop cleanly on SIGTERM" "$STACK" stop-workers
for secret in "$PG_SECRET" "$REDIS_SECRET" "$API_SECRET" wrong-password-5e1d; do
  check "no worker log contains the secret ${secret:0:6}…" eval "! grep -rqF '$secret' '$R/logs'"
done
check "no sanitizer reports" no_sanitizer_reports
finish
