#!/usr/bin/env bash
# A worker is assigned partitions whose committed offsets are held in an
# open Kafka transaction (as an exactly-once worker killed between sending
# its offsets and committing leaves them): the group coordinator answers
# its committed-offset fetch "unstable" until the transaction ends, and
# librdkafka asks again and again. The rebalance runs inside the worker's
# loop; the wait for the offsets is bounded and stamps the loop's heartbeat
# (lib/kafka.c kafka_committed), so /healthz stays 200 through it (it failed
# after the heartbeat timeout when the callback sat 25 s in
# rd_kafka_committed). Once the transaction is aborted the worker resumes at
# the group's committed offsets: nothing read again, nothing skipped.
source "$(dirname "$0")/lib.sh"
HB=4
export PAYSTREAM_HEARTBEAT_TIMEOUT_S=$HB
stack_up
"$STACK" workers 1
"$PAYCTL" publish --count 200 --run first --manifest "$PAYSTREAM_RUN_DIR/first.jsonl" >/dev/null
check "the first load is processed" "$PAYCTL" wait --terminal "$(manifest_terminal "$PAYSTREAM_RUN_DIR/first.jsonl")" --timeout 240
check "workers stop cleanly (offsets committed)" "$STACK" stop-workers
check "fraud's group has no lag" caught_up fraud

# The fraud group's offsets go into a transaction left open (aborted at the
# end): longer than the test needs it.
PAYSTREAM_KAFKA_PROPERTIES=transaction.timeout.ms=180000 "$BUILD/txn-hold" fraud payments.requests \
  >"$PAYSTREAM_RUN_DIR/txn-hold.out" 2>"$PAYSTREAM_RUN_DIR/txn-hold.err" &
holder=$!
check "the group's offsets are held in an open transaction" wait_until 60 qgrep '^held' "$PAYSTREAM_RUN_DIR/txn-hold.out"

"$STACK" workers 1
check "fraud-1 serves its probes" wait_until 30 eval '[ "$(http_status fraud 1 /healthz)" = 200 ]'
# Until its partitions are assigned the worker is not ready; it asks for the
# held offsets meanwhile (librdkafka logs nothing of it at info level).
# Watch /healthz for 4 heartbeat timeouts: the assignment's wait lasts longer.
unhealthy=""
until_s=$(($(date +%s) + 4 * HB))
while [ "$(date +%s)" -lt "$until_s" ]; do
  [ "$(http_status fraud 1 /healthz)" = 200 ] || unhealthy+="fraud@$(date +%s) "
  sleep 0.5
done
eq "fraud-1's /healthz stays 200 while its committed offsets are held" "" "$unhealthy"
check "fraud-1 waited for the held offsets (they were unstable)" \
  wait_until 60 qgrep 'committed offsets: .* (asked [0-9]* times)' "$PAYSTREAM_RUN_DIR/logs/fraud-1.log"
kill -TERM "$holder"
check "the open transaction is aborted" wait "$holder"
check "fraud-1 is ready" wait_until 60 ready fraud 1

# Resumes at the committed offsets: it consumes exactly the new requests.
before=$(payment_count)
"$PAYCTL" publish --count 30 --run second --manifest "$PAYSTREAM_RUN_DIR/second.jsonl" >/dev/null
cat "$PAYSTREAM_RUN_DIR/first.jsonl" "$PAYSTREAM_RUN_DIR/second.jsonl" >"$PAYSTREAM_RUN_DIR/manifest.jsonl"
check "the second load is processed" "$PAYCTL" wait --terminal "$(manifest_terminal "$PAYSTREAM_RUN_DIR/manifest.jsonl")" --timeout 240
new=$(($(payment_count) - before))
check "the second load made requests" test "$new" -gt 0
check "fraud-1 caught up" wait_until 30 caught_up fraud
eq "fraud-1 consumed only the new requests (none read again from the beginning)" "$new" \
  "$(metric fraud 1 paystream_messages_consumed_total)"
assert_invariants "$PAYSTREAM_RUN_DIR/manifest.jsonl"
check "workers stop cleanly on SIGTERM" "$STACK" stop-workers
check "no sanitizer reports" no_sanitizer_reports
finish
