#!/usr/bin/env bash
# Idempotency under concurrency: three ingest instances, 10,000 intents of
# which 30 % are exact duplicates, half of those produced to another
# partition than their original (as a producer with another partitioner
# would), so two instances race on the same key.
source "$(dirname "$0")/lib.sh"
export PAYSTREAM_PARTITIONS=6
M=$PAYSTREAM_RUN_DIR/manifest.jsonl

stack_up
for i in 1 2 3; do "$STACK" start-worker ingest "$i"; done
for s in fraud charge ledger; do "$STACK" start-worker "$s" 1; done
check "three ingest instances share the partitions" \
  wait_until 30 eval 'assigned ingest-1 && assigned ingest-2 && assigned ingest-3'

"$PAYCTL" publish --count 10000 --duplicates 3000 --cross-partition 1500 --conflicts 100 \
  --declines 200 --fraud 20 --run xp --manifest "$M"
check "every intent reaches a terminal state" "$PAYCTL" wait --terminal "$(manifest_terminal "$M")" --timeout 300
assert_invariants "$M"
eq "cross-partition duplicates were published" "1500" "$(jq -r 'select(.kind=="duplicate_cross") | .key' "$M" | wc -l)"

check "workers stop cleanly on SIGTERM" "$STACK" stop-workers
check "no sanitizer reports" no_sanitizer_reports
finish
