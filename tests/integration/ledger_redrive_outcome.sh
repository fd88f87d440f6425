#!/usr/bin/env bash
# A redriven payment's outcome supersedes the one published before it
# (issue 17). The ledger refuses one payment's posting: it ends
# `ledger_failed` with a `failed` outcome, and a duplicate request replays
# that. Once the cause is fixed and its dead letter redriven, it is posted
# and ends `succeeded`: a later duplicate replays `succeeded`, never the
# `failed` an outcome cache kept from before (ingest does not cache an
# outcome that may still be superseded).
source "$(dirname "$0")/lib.sh"
stack_up
sql "CREATE FUNCTION test_poison() RETURNS trigger LANGUAGE plpgsql AS \$\$
     BEGIN
       IF EXISTS (SELECT 1 FROM payments WHERE payment_id = NEW.payment_id AND idempotency_key = 'redrive-1') THEN
         RAISE EXCEPTION 'test poison: posting refused' USING ERRCODE = 'check_violation';
       END IF;
       RETURN NEW;
     END \$\$;
     CREATE TRIGGER test_poison BEFORE INSERT ON ledger_transactions FOR EACH ROW EXECUTE FUNCTION test_poison();" >/dev/null
"$STACK" workers 1
now=$(date +%s%3N)
jq -nc --argjson t "$now" --argjson pt "$((now - 200 * 24 * 3600000))" \
  '{idempotency_key: "redrive-1", merchant_id: "m_1", customer_id: "cus_r1", amount_minor: 4200,
    currency: "USD", created_at_ms: $t, payment_method: {id: "pm_card_visa", fingerprint: "fp_r1",
    created_at_ms: $pt, card_country: "US"}, context: {ip: "198.51.100.7", country: "US",
    latitude: 40.71, longitude: -74.01, device_id: "dev_r1", email: "r1@example.com"}}' \
  >"$PAYSTREAM_RUN_DIR/intent.jsonl"
publish() { "$PAYCTL" publish --json "$PAYSTREAM_RUN_DIR/intent.jsonl" >/dev/null; }
publish
status_is() { [ "$(sql "SELECT status FROM payments WHERE idempotency_key = 'redrive-1'")" = "$1" ]; }
check "the payment the ledger refuses ends ledger_failed" wait_until 120 status_is ledger_failed
pid=$(sql "SELECT payment_id FROM payments WHERE idempotency_key = 'redrive-1'")
replays() { "$PAYCTL" outcomes | jq -r --arg p "$pid" 'select(.payment_id == $p and .replayed) | .status'; }
publish
check "a duplicate replays its failed outcome" wait_until 60 eval '[ "$(replays | tr "\n" " ")" = "failed " ]'
sql "DROP TRIGGER test_poison ON ledger_transactions" >/dev/null
check "payctl dlq redrive re-publishes its dead letter" quietly "$PAYCTL" dlq redrive
check "the redriven payment is posted and ends succeeded" wait_until 60 status_is succeeded
publish
check "a later duplicate replays succeeded: the redrive's outcome supersedes" wait_until 60 eval \
  '[ "$(replays | tr "\n" " ")" = "failed succeeded " ]'
publish
check "and so does the next one (answered from the cache or Postgres alike)" wait_until 60 eval \
  '[ "$(replays | tr "\n" " ")" = "failed succeeded succeeded " ]'
eq "one payment, one posting" "1 1" \
  "$(sql "SELECT (SELECT count(*) FROM payments WHERE idempotency_key = 'redrive-1') || ' ' || (SELECT count(*) FROM ledger_transactions WHERE payment_id = '$pid')")"
check "workers stop cleanly on SIGTERM" "$STACK" stop-workers
check "no sanitizer reports" no_sanitizer_reports
finish
