#!/usr/bin/env bash
# Intake bounds (issue 17.12, 17.13, 17.16): an intent whose created_at is far in
# the future ends `rejected` with created_at_invalid (it would wipe velocity
# history), one in the past is claimed (backfills, labelled data sets); a message larger than ingest's producer can
# re-send (1.5 MB, from a producer with a higher limit) is dead-lettered as
# a prefix with its size, hash and the usual headers — the worker does not
# crash-loop on it and the messages after it are claimed.
source "$(dirname "$0")/lib.sh"
stack_up
"$STACK" start-worker ingest 1
now=$(now_ms)
# intake_intent KEY CREATED_AT [DESCRIPTION] (lib.sh's intent, 7.00 USD, customer cus_1)
intake_intent() {
  intent "$1" '.customer_id = "cus_1" | .amount_minor = 700 | .created_at_ms = $at | .description = $d' \
    --argjson at "$2" --arg d "${3:-}"
}
{ intake_intent in-future $((now + 86400000))
  intake_intent in-old $((now - 60 * 86400000))
  intake_intent in-now "$now"; } | "$PAYCTL" publish --json - >/dev/null
code_of() { sql "SELECT error_code FROM rejections WHERE idempotency_key = '$1'"; }
is_code() { [ "$(code_of "$1")" = "$2" ]; }
check "created_at a day ahead is rejected created_at_invalid" wait_until 60 is_code in-future created_at_invalid
claimed() { [ "$(sql "SELECT count(*) FROM payments WHERE idempotency_key = '$1'")" = 1 ]; }
check "created_at 60 days old is claimed" wait_until 30 claimed in-old
check "created_at now is claimed" wait_until 30 claimed in-now

pid_before=$(cat "$PAYSTREAM_RUN_DIR"/pids/ingest-1.pid)
head -c 1500000 /dev/zero | tr '\0' 'x' >"$PAYSTREAM_RUN_DIR/big.txt"
intake_intent in-huge "$now" | jq -c --rawfile d "$PAYSTREAM_RUN_DIR/big.txt" '.description = $d' \
  >"$PAYSTREAM_RUN_DIR/huge.jsonl"
PAYSTREAM_KAFKA_PROPERTIES="message.max.bytes=4000000" \
  "$PAYCTL" publish --json "$PAYSTREAM_RUN_DIR/huge.jsonl" >/dev/null
intake_intent in-after "$now" | "$PAYCTL" publish --json - >/dev/null
check "the message after the huge one is claimed" wait_until 60 claimed in-after
huge() { "$PAYCTL" dlq list | jq -c 'select(.["dlq.payload.truncated"]=="true")'; }
check "the huge message is dead-lettered" wait_until 30 eval '[ -n "$(huge)" ]'
h=$(huge | head -n1)
eq "with the original size" "true" "$(jq -r '(.["dlq.payload.size"]|tonumber) > 1500000' <<<"$h")"
eq "its hash" "64" "$(jq -r '.["dlq.payload.sha256"] | length' <<<"$h")"
eq "and the usual headers" "oversized" "$(jq -r '.["dlq.reason"] | split(" ")[0]' <<<"$h")"
eq "ingest did not restart" "$pid_before" "$(cat "$PAYSTREAM_RUN_DIR"/pids/ingest-1.pid)"
check "ingest is still running" kill -0 "$pid_before"

# /readyz (public) says what is down, never its host or user (17.16).
"$STACK" stop-postgres
check "/readyz turns not ready when Postgres goes away" wait_until 15 not_ready ingest 1
# Between reconnect attempts it says "unavailable"; wait for an attempt's answer.
attempt_shown() {
  "$STACK" http ingest 1 /readyz >"$PAYSTREAM_RUN_DIR/readyz.txt"
  grep -Eq '^postgres not ok: (cannot|could not) connect' "$PAYSTREAM_RUN_DIR/readyz.txt"
}
check "/readyz names Postgres and a failed connection" wait_until 30 attempt_shown
check "but neither its host nor its user" eval '! grep -Eq "127\.0\.0\.1|port|user" "$PAYSTREAM_RUN_DIR/readyz.txt"'
"$STACK" start-postgres
check "/readyz is ready again when Postgres is back" wait_until 30 ready ingest 1

check "workers stop cleanly on SIGTERM" "$STACK" stop-workers
check "no sanitizer reports" no_sanitizer_reports
finish
