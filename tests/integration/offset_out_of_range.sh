#!/usr/bin/env bash
# Never skip silently: the broker's retention deletes messages a stopped stage
# had not processed yet. On restart its committed offset is out of range: the
# worker raises an alert and pauses the partition instead of jumping past the
# messages; an operator's payctl replay then resumes it.
source "$(dirname "$0")/lib.sh"
export PAYSTREAM_PARTITIONS=1
# Real retention on payments.intents: 1 MiB segments (a segment must hold the
# largest producer batch, ~1 MB) and 1 MiB retained; the test broker checks
# retention every second and deletes at once (deploy/local/kafka/broker.sh).
export PAYSTREAM_TOPIC_CONFIG="payments.intents:segment.bytes=1048576 payments.intents:retention.bytes=1048576"
stack_up
log_start() { "$BUILD/kadmin" offsets payments.intents | awk '$1 == 0 { print $2 }'; }
"$STACK" start-worker ingest 1
"$PAYCTL" publish --count 100 --run small >/dev/null
check "ingest processed and committed the first messages" wait_until 60 caught_up ingest
committed=$("$PAYCTL" lag --stage ingest | sed -n 's/.*\[0\] committed \([0-9]*\) .*/\1/p')
eq "its committed offset is after the first 100" 100 "$committed"
check "ingest stops" "$STACK" stop-workers
# 1,200 incompressible 6 KB intents (7 MB): retention deletes the oldest
# segments, among them the unprocessed start of this load.
"$PAYCTL" publish --count 1200 --padding 6000 --run big >/dev/null
"$PAYCTL" publish --count 50 --run tail >/dev/null
check "retention deleted messages past the committed offset" wait_until 60 eval '[ "$(log_start)" -gt "$committed" ]'
before=$(payment_count)
eq "only the first load has payments" 100 "$before"
"$STACK" start-worker ingest 2
alerted() { qgrep 'ALERT committed offset out of range' "$PAYSTREAM_RUN_DIR/logs/ingest-2.log"; }
check "the out-of-range offset is raised as an alert" wait_until 60 alerted
eq "and counted in the worker's metrics" 1 \
  "$(metric ingest 2 'paystream_offsets_out_of_range_total{stage="ingest",topic="payments.intents"}')"
# A worker that jumped (to the oldest or the newest offset) would claim the
# next intents within a second: publish some after the alert and give them
# 5 s to show up as payments. They must not.
"$PAYCTL" publish --count 20 --run probe >/dev/null
grew() { [ "$(payment_count)" -gt "$before" ]; }
check "nothing was processed past the gap (5 s for intents published after the alert)" eval '! wait_until 5 grew'
eq "no payment was added" "$before" "$(payment_count)"
eq "the committed offset did not move" "$committed" \
  "$("$PAYCTL" lag --stage ingest | sed -n 's/.*\[0\] committed \([0-9]*\) .*/\1/p')"
check "the worker is still running" kill -0 "$(cat "$PAYSTREAM_RUN_DIR/pids/ingest-2.pid")"
check "ingest stops" "$STACK" stop-workers
check "payctl replay moves the group to the oldest retained offset" quietly "$PAYCTL" replay --stage ingest --to-offset earliest
from=$("$PAYCTL" lag --stage ingest | sed -n 's/.*\[0\] committed \([0-9]*\) .*/\1/p')
"$STACK" start-worker ingest 3
check "after the operator's replay ingest catches up" wait_until 90 caught_up ingest
eq "the newest intents (published after the gap) were all processed" 70 \
  "$(sql "SELECT count(*) FROM payments WHERE idempotency_key LIKE 'tail-%' OR idempotency_key LIKE 'probe-%'")"
# small 0-99, big 100-1299, tail 1300-1349, probe 1350-1369: every big one
# from the oldest retained offset on, none before it.
eq "and every retained one of the large load (offsets $from-1299)" "$((1300 - from))" \
  "$(sql "SELECT count(*) FROM payments WHERE idempotency_key LIKE 'big-%'")"
check "workers stop cleanly on SIGTERM" "$STACK" stop-workers
check "no sanitizer reports" no_sanitizer_reports
finish
