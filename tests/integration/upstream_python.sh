#!/usr/bin/env bash
# An upstream that is not librdkafka: Debian's python3-kafka (kafka-python,
# the Java client's murmur2 partitioner) publishes intents it encodes itself
# and reads their outcomes with its own consumer (upstream_python.py).
source "$(dirname "$0")/lib.sh"
PY=(/usr/bin/python3 "$(dirname "$0")/upstream_python.py")
N=200
stack_up
"$STACK" workers 1
all() { local s; for s in ingest fraud charge ledger; do "$@" "$s" 1 || return 1; done; }
check "every worker is ready" wait_until 60 all ready
"${PY[@]}" publish "$PAYSTREAM_KAFKA_BOOTSTRAP" py "$N" >"$PAYSTREAM_RUN_DIR/py-published" 2>"$PAYSTREAM_RUN_DIR/py-publish.log"
eq "kafka-python acknowledged every intent" "$N" "$(wc -l <"$PAYSTREAM_RUN_DIR/py-published")"
eq "each on the Java client's murmur2 partition" 0 "$(awk '$2 != $3' "$PAYSTREAM_RUN_DIR/py-published" | wc -l)"
check "they spread over every partition" test "$(cut -d' ' -f2 "$PAYSTREAM_RUN_DIR/py-published" | sort -u | wc -l)" -eq "${PAYSTREAM_PARTITIONS:-4}"
check "every intent reaches a terminal state" "$PAYCTL" wait --terminal "$N" --timeout 120
eq "every intent became one succeeded payment" "$N" \
  "$(sql "SELECT count(DISTINCT idempotency_key) FROM payments WHERE idempotency_key LIKE 'py-%' AND status = 'succeeded'")"
eq "no other payment" "$N" "$(payment_count)"
"${PY[@]}" outcomes "$PAYSTREAM_KAFKA_BOOTSTRAP" py "$N" 60 >"$PAYSTREAM_RUN_DIR/py-outcomes" 2>"$PAYSTREAM_RUN_DIR/py-outcomes.log"
eq "the python consumer reads one outcome per intent" "$N" "$(wc -l <"$PAYSTREAM_RUN_DIR/py-outcomes")"
eq "each succeeded, once" "$N" "$(grep -c ' succeeded$' "$PAYSTREAM_RUN_DIR/py-outcomes")"
check "workers stop cleanly on SIGTERM" "$STACK" stop-workers
check "no sanitizer reports" no_sanitizer_reports
finish
