#!/usr/bin/env bash
# Fraud isolates a data error: Postgres refuses one payment's assessment (a
# CHECK constraint stands for any row the database refuses, e.g. one a later
# migration adds). The batch is bisected: that payment ends `failed` with
# code fraud_store_refused and an outcome (never charged), every other
# payment of the same batch is scored and paid, and the worker keeps
# consuming. Before this, the batch was retried forever.
source "$(dirname "$0")/lib.sh"
stack_up
now=$(now_ms)
# Ingest derives the payment id from (merchant, key): pay_ + 24 hex of SHA-256.
poison=pay_$(printf 'payment\x1fm_1\x1ffr-poison' | sha256sum | cut -c1-24)
sql "ALTER TABLE fraud_assessments ADD CONSTRAINT test_poison CHECK (payment_id <> '$poison')" >/dev/null
{ for i in $(seq 1 9); do intent "fr-$i"; done
  intent fr-poison
  for i in $(seq 10 19); do intent "fr-$i"; done; } >"$PAYSTREAM_RUN_DIR/batch.jsonl"
"$PAYCTL" publish --json "$PAYSTREAM_RUN_DIR/batch.jsonl" >/dev/null
# Claimed first, then fraud starts: the 20 share fraud's first batch.
"$STACK" start-worker ingest 1
claimed() { [ "$(sql "SELECT count(*) FROM payments WHERE idempotency_key LIKE 'fr-%'")" = 20 ]; }
check "ingest claims the 20 payments" wait_until 60 claimed
eq "the poison's payment id is the one the constraint names" "$poison" \
  "$(sql "SELECT payment_id FROM payments WHERE idempotency_key = 'fr-poison'")"
"$STACK" start-worker fraud 1

scored() { [ "$(sql "SELECT count(*) FROM payments WHERE idempotency_key LIKE 'fr-%' AND status = 'scored'")" = 19 ]; }
check "the 19 other payments of the batch are scored" wait_until 60 scored
ended() { [ "$(sql "SELECT status || ' ' || error_code FROM payments WHERE payment_id = '$poison'")" = "failed fraud_store_refused" ]; }
check "the refused payment ends failed with code fraud_store_refused" wait_until 30 ended
poison_outcomes() { "$PAYCTL" outcomes | jq -r 'select(.idempotency_key=="fr-poison") | [.status, .error_code] | @tsv'; }
answered() { [ "$(poison_outcomes)" = "$(printf 'failed\tfraud_store_refused')" ]; }
check "its one outcome says failed, fraud_store_refused" wait_until 30 answered
check "fraud consumed the whole batch" wait_until 60 caught_up fraud
# Ending it is fraud's own move received -> failed (migration 009's
# transition table): without it the UPDATE is refused too and the payment
# would be dead-lettered, left received with no outcome.
eq "it was ended, not dead-lettered" "0" \
  "$("$PAYCTL" dlq list | jq -r 'select(.key=="fr-poison") | .key' | wc -l)"
check "the refusal is logged as an alert" qgrep "ALERT postgres refused this payment's assessment on its own: 23514" \
  "$PAYSTREAM_RUN_DIR/logs/fraud-1.log"

for s in charge ledger; do "$STACK" start-worker "$s" 1; done
paid() { [ "$(sql "SELECT count(*) FROM payments WHERE idempotency_key LIKE 'fr-%' AND status = 'succeeded'")" = 19 ]; }
check "the rest of the batch is paid" wait_until 120 paid
eq "the refused payment is never charged" "0" \
  "$(curl -sf "$PAYSTREAM_PROCESSOR_URL/v1/charges" | jq --arg p "$poison" '[.data[] | select(.metadata.payment_id==$p)] | length')"

# A replay of fraud's input after the fix re-sends the stored outcome; it
# does not score the ended payment again.
sql "ALTER TABLE fraud_assessments DROP CONSTRAINT test_poison" >/dev/null
check "the workers stop" "$STACK" stop-workers
check "payctl replay of fraud's input" quietly "$PAYCTL" replay --stage fraud --to-offset earliest
"$STACK" start-worker fraud 1
replayed() { [ "$(poison_outcomes | sort | uniq -c | awk '{$1=$1}; 1')" = "2 failed fraud_store_refused" ]; }
check "the ended payment's outcome is re-sent, once" wait_until 60 replayed
eq "and it is still failed, unassessed" "failed 0" \
  "$(sql "SELECT status || ' ' || (SELECT count(*) FROM fraud_assessments WHERE payment_id = '$poison') FROM payments WHERE payment_id = '$poison'")"

check "workers stop cleanly on SIGTERM" "$STACK" stop-workers
check "no sanitizer reports" no_sanitizer_reports
finish
