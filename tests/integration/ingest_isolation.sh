#!/usr/bin/env bash
# Ingest isolates a data error: Postgres refuses one message's claim (a
# CHECK constraint stands for any row the database refuses that validation
# let through, e.g. a constraint a later migration adds). The batch is
# bisected: that message ends `rejected` with code storage_refused (recorded,
# nothing claimed), every other message of the same batch is claimed and
# paid, and the worker keeps consuming. Before this, the batch was retried
# forever and every payment in it (and after it) stalled.
source "$(dirname "$0")/lib.sh"
stack_up
sql "ALTER TABLE payments ADD CONSTRAINT test_poison CHECK (customer_id <> 'cus_poison')" >/dev/null
now=$(now_ms)
# iso_intent KEY CUSTOMER (lib.sh's intent, 12.00 USD)
iso_intent() { intent "$1" '.customer_id = $c | .amount_minor = 1200' --arg c "$2"; }
# Published before ingest starts, so the poison shares a batch with the others.
{ for i in $(seq 1 9); do iso_intent "iso-$i" "cus_$i"; done
  iso_intent iso-poison cus_poison
  for i in $(seq 10 19); do iso_intent "iso-$i" "cus_$i"; done; } >"$PAYSTREAM_RUN_DIR/batch.jsonl"
"$PAYCTL" publish --json "$PAYSTREAM_RUN_DIR/batch.jsonl" >/dev/null
"$STACK" start-worker ingest 1

claimed() { [ "$(sql "SELECT count(*) FROM payments WHERE idempotency_key LIKE 'iso-%'")" = 19 ]; }
check "the 19 other messages of the batch are claimed" wait_until 60 claimed
is_refused() { [ "$(sql "SELECT error_code FROM rejections WHERE idempotency_key = 'iso-poison'")" = storage_refused ]; }
check "the refused message is rejected with code storage_refused" wait_until 30 is_refused
eq "and not claimed" "0" "$(sql "SELECT count(*) FROM payments WHERE idempotency_key = 'iso-poison'")"
answered() { [ "$("$PAYCTL" outcomes | jq -r 'select(.idempotency_key=="iso-poison" and .status=="rejected" and .error_code=="storage_refused") | .idempotency_key' | wc -l)" -ge 1 ]; }
check "its outcome says rejected, storage_refused" wait_until 30 answered
check "ingest consumed the whole batch" wait_until 60 eval '"$PAYCTL" lag --stage ingest | qgrep "total lag 0"'
check "the refusal is logged as an alert" qgrep 'ALERT postgres refused this message on its own: 23514' \
  "$PAYSTREAM_RUN_DIR/logs/ingest-1.log"

for s in fraud charge ledger; do "$STACK" start-worker "$s" 1; done
paid() { [ "$(sql "SELECT count(*) FROM payments WHERE idempotency_key LIKE 'iso-%' AND status = 'succeeded'")" = 19 ]; }
check "the rest of the batch is paid" wait_until 120 paid

# After the fix the client may send the same request again: it is new.
sql "ALTER TABLE payments DROP CONSTRAINT test_poison" >/dev/null
iso_intent iso-poison cus_poison | "$PAYCTL" publish --json - >/dev/null
poison_paid() { [ "$(sql "SELECT status FROM payments WHERE idempotency_key = 'iso-poison'")" = succeeded ]; }
check "sent again after the fix, the request is paid" wait_until 60 poison_paid

check "workers stop cleanly on SIGTERM" "$STACK" stop-workers
check "no sanitizer reports" no_sanitizer_reports
finish
