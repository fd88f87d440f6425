#!/usr/bin/env bash
# The books: what the database itself refuses, two ledger workers on the
# same hot accounts, a poison payment isolated inside a batch, and a replay
# of payments.charged from the earliest offset that changes nothing.
source "$(dirname "$0")/lib.sh"
export PAYSTREAM_PARTITIONS=6

stack_up

# A payment row to hang postings on (the database also refuses orphans).
sql "INSERT INTO payments (payment_id, merchant_id, idempotency_key, fingerprint, customer_id,
     amount_minor, currency, payment_method, source_topic, source_partition, source_offset)
     VALUES ('pay_direct', 'm_t', 'k_direct', 'f', 'c', 100, 'USD', 'pm', 't', 0, 0)" >/dev/null
sql "INSERT INTO ledger_accounts (name, currency, type) VALUES ('asset:test', 'USD', 'asset'),
     ('revenue:test', 'USD', 'revenue'), ('revenue:test', 'EUR', 'revenue')" >/dev/null
acct() { sql "SELECT account_id FROM ledger_accounts WHERE name = '$1' AND currency = '$2'"; }
A=$(acct asset:test USD) R=$(acct revenue:test USD) REUR=$(acct revenue:test EUR)

check "an unbalanced transaction is refused at commit" refused "BEGIN;
  INSERT INTO ledger_transactions (transaction_id, payment_id, kind) VALUES (900001, 'pay_direct', 'payment');
  INSERT INTO ledger_entries (transaction_id, account_id, currency, direction, amount_minor) VALUES (900001, $A, 'USD', 'D', 100);
  INSERT INTO ledger_entries (transaction_id, account_id, currency, direction, amount_minor) VALUES (900001, $R, 'USD', 'C', 99);
  COMMIT;" "unbalanced"
eq "nothing of the refused transaction remains" "0" "$(sql "SELECT count(*) FROM ledger_entries WHERE transaction_id = 900001")"
check "a balanced transaction commits" quietly psql "$PAYSTREAM_PG_DSN" -v ON_ERROR_STOP=1 -c "BEGIN;
  INSERT INTO ledger_transactions (transaction_id, payment_id, kind) VALUES (900002, 'pay_direct', 'payment');
  INSERT INTO ledger_entries (transaction_id, account_id, currency, direction, amount_minor) VALUES (900002, $A, 'USD', 'D', 100);
  INSERT INTO ledger_entries (transaction_id, account_id, currency, direction, amount_minor) VALUES (900002, $R, 'USD', 'C', 100);
  COMMIT;"
check "entries cannot be updated" refused "UPDATE ledger_entries SET amount_minor = 1 WHERE transaction_id = 900002" "append-only"
check "entries cannot be deleted" refused "DELETE FROM ledger_entries WHERE transaction_id = 900002" "append-only"
check "entries cannot be truncated" refused "TRUNCATE ledger_entries CASCADE" "append-only"
check "a second posting of a payment is refused" refused \
  "INSERT INTO ledger_transactions (payment_id, kind) VALUES ('pay_direct', 'payment')" "duplicate key"
check "an entry in another currency than its account is refused" refused "BEGIN;
  INSERT INTO ledger_transactions (transaction_id, payment_id, kind) VALUES (900003, 'pay_direct', 'refund');
  INSERT INTO ledger_entries (transaction_id, account_id, currency, direction, amount_minor) VALUES (900003, $A, 'USD', 'D', 100);
  INSERT INTO ledger_entries (transaction_id, account_id, currency, direction, amount_minor) VALUES (900003, $REUR, 'USD', 'C', 100);
  COMMIT;" "foreign key"
check "an entry added to a committed transaction is refused" refused \
  "INSERT INTO ledger_entries (transaction_id, account_id, currency, direction, amount_minor) VALUES (900002, $A, 'USD', 'D', 5)" "is closed"
check "a balanced pair added to a committed transaction is refused too" refused "BEGIN;
  INSERT INTO ledger_entries (transaction_id, account_id, currency, direction, amount_minor) VALUES (900002, $A, 'USD', 'D', 5);
  INSERT INTO ledger_entries (transaction_id, account_id, currency, direction, amount_minor) VALUES (900002, $R, 'USD', 'C', 5);
  COMMIT;" "is closed"
eq "the committed transaction kept its two entries" "2" "$(sql "SELECT count(*) FROM ledger_entries WHERE transaction_id = 900002")"
check "a transaction without entries is refused at commit" refused "BEGIN;
  INSERT INTO ledger_transactions (transaction_id, payment_id, kind) VALUES (900004, 'pay_direct', 'chargeback');
  COMMIT;" "has no entries"
check "zero and negative entries are refused" refused \
  "INSERT INTO ledger_entries (transaction_id, account_id, currency, direction, amount_minor) VALUES (900002, $A, 'USD', 'D', 0)" "check constraint"
# Clean up the hand-made rows so the pipeline checks below see only its own.
sql "ALTER TABLE ledger_entries DISABLE TRIGGER ledger_entries_append_only;
     ALTER TABLE ledger_transactions DISABLE TRIGGER ledger_transactions_append_only;
     DELETE FROM ledger_entries WHERE transaction_id = 900002; DELETE FROM ledger_transactions WHERE transaction_id = 900002;
     ALTER TABLE ledger_entries ENABLE TRIGGER ledger_entries_append_only;
     ALTER TABLE ledger_transactions ENABLE TRIGGER ledger_transactions_append_only;
     DELETE FROM ledger_accounts WHERE name LIKE '%:test'; DELETE FROM payments WHERE payment_id = 'pay_direct'" >/dev/null

# A poison payment: the database refuses its posting (as a data-dependent
# constraint would). The rest of its batch must post; it is isolated.
POISON_KEY=books-000123
sql "CREATE FUNCTION test_poison() RETURNS trigger LANGUAGE plpgsql AS \$\$
     BEGIN
       IF EXISTS (SELECT 1 FROM payments WHERE payment_id = NEW.payment_id AND idempotency_key = '$POISON_KEY') THEN
         RAISE EXCEPTION 'test poison: posting refused' USING ERRCODE = 'check_violation';
       END IF;
       RETURN NEW;
     END \$\$;
     CREATE TRIGGER test_poison BEFORE INSERT ON ledger_transactions FOR EACH ROW EXECUTE FUNCTION test_poison();" >/dev/null

for s in ingest fraud charge; do "$STACK" start-worker "$s" 1; done
"$STACK" start-worker ledger 1
"$STACK" start-worker ledger 2
check "two ledger workers share the partitions" wait_until 30 eval 'assigned ledger-1 && assigned ledger-2'
M=$PAYSTREAM_RUN_DIR/manifest.jsonl
"$PAYCTL" publish --count 3000 --declines 50 --run books --manifest "$M" >/dev/null
check "every intent reaches a terminal state" "$PAYCTL" wait --terminal 3000 --timeout 240

poison=$(sql "SELECT payment_id FROM payments WHERE idempotency_key = '$POISON_KEY'")
eq "the poison payment ends failed with a code" "failed ledger_posting_failed" \
  "$(sql "SELECT status || ' ' || error_code FROM payments WHERE payment_id = '$poison'")"
eq "the poison payment has no posting" "0" "$(sql "SELECT count(*) FROM ledger_transactions WHERE payment_id = '$poison'")"
check "the poison payment is dead-lettered with its reason" eval \
  '"$PAYCTL" dlq list | jq -e --arg k "$POISON_KEY" "select(.key==\$k and (.[\"dlq.reason\"]|test(\"ledger posting failed\")) and .[\"dlq.stage\"]==\"ledger\")" >/dev/null'
check "the refusal was raised as an alert" grep -qh 'ALERT ledger refused' "$PAYSTREAM_RUN_DIR"/logs/ledger-*.log
eq "every other charged payment is posted" "$(sql "SELECT count(*) FROM payments WHERE status = 'succeeded'")" \
  "$(sql "SELECT count(*) FROM ledger_transactions")"
check "payctl ledger verify passes" quietly "$PAYCTL" ledger verify
"$PAYCTL" reconcile >"$PAYSTREAM_RUN_DIR/reconcile.txt"
check "reconcile exits non-zero on the difference" test $? -ne 0
eq "reconcile lists exactly the poison payment's charge without a posting" "1" \
  "$(grep -c "DIFFERENCE charge without a ledger posting: .* $poison" "$PAYSTREAM_RUN_DIR/reconcile.txt")"
eq "reconcile finds nothing else" "2" "$(grep -c DIFFERENCE "$PAYSTREAM_RUN_DIR/reconcile.txt")"  # also: charged, not succeeded
check "no deadlock between the two ledger workers" eval '! grep -qh "40P01" "$PAYSTREAM_RUN_DIR"/logs/ledger-*.log'
check "payctl ledger balance recomputes an account" quietly "$PAYCTL" ledger balance revenue:payments
check "payctl ledger entries shows a payment's postings" eval \
  '"$PAYCTL" ledger entries "$(sql "SELECT payment_id FROM ledger_transactions LIMIT 1")" | grep -q "revenue:payments"'

# Replay payments.charged from the earliest offset: nothing new, nothing changed.
check "the ledger workers stop" "$STACK" stop-workers
snapshot() { sql "SELECT (SELECT count(*) FROM ledger_transactions), (SELECT count(*) FROM ledger_entries), (SELECT string_agg(name || currency || balance, ',' ORDER BY name, currency) FROM ledger_accounts)"; }
before=$(snapshot)
charges_before=$(curl -sf "$PAYSTREAM_PROCESSOR_URL/v1/charges" | jq '.data | length')
check "payctl replay moves the ledger group to the earliest offset" quietly "$PAYCTL" replay --stage ledger --to-offset earliest
lag=$("$PAYCTL" lag --stage ledger | awk '/total lag/ {print $3}')
check "the replay left the whole topic to re-process" test "$lag" -gt 2000
"$STACK" start-worker ledger 3
check "the ledger re-processed everything" wait_until 120 eval '"$PAYCTL" lag --stage ledger | grep -q "total lag 0"'
eq "the replay posted nothing new and changed no balance" "$before" "$(snapshot)"
eq "the replay charged nothing" "$charges_before" "$(curl -sf "$PAYSTREAM_PROCESSOR_URL/v1/charges" | jq '.data | length')"
"$PAYCTL" outcomes >"$PAYSTREAM_RUN_DIR/outcomes.jsonl"
eq "re-sent outcomes are byte-identical" "0" \
  "$(jq -r '[.payment_id,.raw] | @tsv' "$PAYSTREAM_RUN_DIR/outcomes.jsonl" | sort -u | cut -f1 | uniq -d | wc -l)"
check "outcomes were re-sent by the replay" test "$(wc -l <"$PAYSTREAM_RUN_DIR/outcomes.jsonl")" -gt 5000

check "workers stop cleanly on SIGTERM" "$STACK" stop-workers
check "no sanitizer reports" no_sanitizer_reports
finish
