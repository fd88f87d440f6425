#!/usr/bin/env bash
# Never skip silently: retention deletes messages a stopped stage had not
# processed yet. On restart its committed offset is out of range: the worker
# raises an alert and pauses the partition instead of jumping past the
# messages; an operator's payctl replay then resumes it.
source "$(dirname "$0")/lib.sh"
export PAYSTREAM_PARTITIONS=1
stack_up
"$STACK" start-worker ingest 1
"$PAYCTL" publish --count 100 --run small >/dev/null
caught_up() { "$PAYCTL" lag --stage ingest | grep -q "total lag 0"; }
check "ingest processed and committed the first messages" wait_until 60 caught_up
check "ingest stops" "$STACK" stop-workers
# devbroker keeps 5 MiB per partition: 1,200 incompressible 6 KB intents
# push the unprocessed ones out.
"$PAYCTL" publish --count 1200 --padding 6000 --run big >/dev/null
"$PAYCTL" publish --count 50 --run tail >/dev/null
before=$(payment_count)
"$STACK" start-worker ingest 2
alerted() { grep -q 'ALERT committed offset out of range' "$PAYSTREAM_RUN_DIR/logs/ingest-2.log"; }
check "the out-of-range offset is raised as an alert" wait_until 60 alerted
eq "and counted in the worker's metrics" 1 \
  "$(metric ingest 2 'paystream_offsets_out_of_range_total{stage="ingest",topic="payments.intents"}')"
sleep 3 # a worker that jumped would have claimed payments by now; it must not
eq "nothing was processed past the gap" "$before" "$(payment_count)"
check "the committed offset did not move" eval '! caught_up'
check "the worker is still running" kill -0 "$(cat "$PAYSTREAM_RUN_DIR/pids/ingest-2.pid")"
check "ingest stops" "$STACK" stop-workers
check "payctl replay moves the group to the oldest retained offset" quietly "$PAYCTL" replay --stage ingest --to-offset earliest
"$STACK" start-worker ingest 3
check "after the operator's replay ingest catches up" wait_until 90 caught_up
check "the retained messages were processed" test "$(payment_count)" -gt "$before"
check "workers stop cleanly on SIGTERM" "$STACK" stop-workers
check "no sanitizer reports" no_sanitizer_reports
finish
