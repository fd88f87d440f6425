#!/usr/bin/env bash
# Least privilege: each worker connects as its stage's role, the pipeline
# works with only those grants, and a stage's role is refused on another
# stage's tables. Nobody but the owner can UPDATE or DELETE the ledger.
source "$(dirname "$0")/lib.sh"
stack_up
"$STACK" workers 1
"$PAYCTL" publish --count 300 --declines 10 --fraud 10 --invalid 5 --manifest "$PAYSTREAM_RUN_DIR/m.jsonl" >/dev/null
expected=$(manifest_terminal "$PAYSTREAM_RUN_DIR/m.jsonl")
all_terminal() { [ "$(terminal_count)" -eq "$expected" ]; }
check "the pipeline works with per-stage roles" wait_until 90 all_terminal
eq "each worker is connected as its own role" \
  "paystream_charge paystream_fraud paystream_ingest paystream_ledger" \
  "$(sql "SELECT string_agg(DISTINCT usename, ' ' ORDER BY usename) FROM pg_stat_activity WHERE usename LIKE 'paystream_%'")"

# as ROLE SQL: runs SQL as a stage role; succeeds only if Postgres refuses
# it for lack of privilege (SQLSTATE 42501).
DSN_BASE=${PAYSTREAM_PG_DSN/user=postgres/}
refused() {
  local out
  out=$(psql "$DSN_BASE user=$1" -qAtX -v ON_ERROR_STOP=1 -v VERBOSITY=verbose -c "$2" 2>&1) && return 1
  grep -q '42501' <<<"$out"
}
allowed() { psql "$DSN_BASE user=$1" -qAtX -v ON_ERROR_STOP=1 -c "$2" >/dev/null 2>&1; }

pid=$(sql "SELECT payment_id FROM payments WHERE status = 'succeeded' LIMIT 1")
check "ingest cannot write ledger entries" refused paystream_ingest "INSERT INTO ledger_entries (transaction_id, account_id, currency, direction, amount_minor) VALUES (1, 1, 'USD', 'D', 1)"
check "ingest cannot update a payment" refused paystream_ingest "UPDATE payments SET status = 'failed' WHERE payment_id = '$pid'"
check "fraud cannot touch charge attempts" refused paystream_fraud "SELECT count(*) FROM charge_attempts"
check "fraud cannot change a payment's amount" refused paystream_fraud "UPDATE payments SET amount_minor = 1 WHERE payment_id = '$pid'"
check "charge cannot post to the ledger" refused paystream_charge "INSERT INTO ledger_transactions (payment_id, kind) VALUES ('$pid', 'refund')"
check "charge cannot rewrite fraud assessments" refused paystream_charge "UPDATE fraud_assessments SET decision = 'allow'"
check "ledger cannot read charge attempts" refused paystream_ledger "SELECT count(*) FROM charge_attempts"
check "ledger cannot update ledger entries" refused paystream_ledger "UPDATE ledger_entries SET amount_minor = amount_minor + 1"
check "ledger cannot delete ledger transactions" refused paystream_ledger "DELETE FROM ledger_transactions"
check "ledger cannot truncate the ledger" refused paystream_ledger "TRUNCATE ledger_entries"
check "ledger cannot set a payment's amount" refused paystream_ledger "UPDATE payments SET amount_minor = 1 WHERE payment_id = '$pid'"
check "no stage role can create tables" refused paystream_ingest "CREATE TABLE t (x int)"
check "but each role can read what it needs (ledger reads its accounts)" allowed paystream_ledger "SELECT count(*) FROM ledger_accounts"
check "payctl ledger verify passes" quietly "$PAYCTL" ledger verify
check "workers stop cleanly on SIGTERM" "$STACK" stop-workers
check "no sanitizer reports" no_sanitizer_reports
finish
