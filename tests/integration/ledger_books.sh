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

# posting TXID KIND "ACCOUNT CURRENCY DIRECTION AMOUNT"...: a ledger
# transaction and its entries in one statement (as the ledger posts; entries
# are added only by the statement that creates their transaction).
posting() {
  local id=$1 kind=$2 sel="" e; shift 2
  for e in "$@"; do
    read -r ac cur dir amt <<<"$e"
    sel+="${sel:+ UNION ALL }SELECT transaction_id, $ac, '$cur', '$dir', $amt FROM tx"
  done
  echo "WITH tx AS (INSERT INTO ledger_transactions (transaction_id, payment_id, kind) VALUES ($id, 'pay_direct', '$kind') RETURNING transaction_id)
    INSERT INTO ledger_entries (transaction_id, account_id, currency, direction, amount_minor) $sel;"
}
check "an unbalanced transaction is refused at commit" sql_refused \
  "BEGIN; $(posting 900001 payment "$A USD D 100" "$R USD C 99") COMMIT;" "unbalanced"
eq "nothing of the refused transaction remains" "0" "$(sql "SELECT count(*) FROM ledger_entries WHERE transaction_id = 900001")"
check "entries added by a later statement of the creating transaction are refused" sql_refused "BEGIN;
  INSERT INTO ledger_transactions (transaction_id, payment_id, kind) VALUES (900001, 'pay_direct', 'payment');
  INSERT INTO ledger_entries (transaction_id, account_id, currency, direction, amount_minor) VALUES (900001, $A, 'USD', 'D', 100), (900001, $R, 'USD', 'C', 100);
  COMMIT;" "is closed"
check "a balanced transaction commits" quietly psql "$PAYSTREAM_PG_DSN" -v ON_ERROR_STOP=1 -c \
  "$(posting 900002 payment "$A USD D 100" "$R USD C 100")"
check "entries cannot be updated" sql_refused "UPDATE ledger_entries SET amount_minor = 1 WHERE transaction_id = 900002" "append-only"
check "entries cannot be deleted" sql_refused "DELETE FROM ledger_entries WHERE transaction_id = 900002" "append-only"
check "entries cannot be truncated" sql_refused "TRUNCATE ledger_entries CASCADE" "append-only"
check "a second posting of a payment is refused" sql_refused \
  "INSERT INTO ledger_transactions (payment_id, kind) VALUES ('pay_direct', 'payment')" "duplicate key"
check "an entry in another currency than its account is refused" sql_refused \
  "$(posting 900003 refund "$A USD D 100" "$REUR USD C 100")" "foreign key"
check "an entry added to a committed transaction is refused" sql_refused \
  "INSERT INTO ledger_entries (transaction_id, account_id, currency, direction, amount_minor) VALUES (900002, $A, 'USD', 'D', 5)" "is closed"
check "a balanced pair added to a committed transaction is refused too" sql_refused "BEGIN;
  INSERT INTO ledger_entries (transaction_id, account_id, currency, direction, amount_minor) VALUES (900002, $A, 'USD', 'D', 5);
  INSERT INTO ledger_entries (transaction_id, account_id, currency, direction, amount_minor) VALUES (900002, $R, 'USD', 'C', 5);
  COMMIT;" "is closed"
eq "the committed transaction kept its two entries" "2" "$(sql "SELECT count(*) FROM ledger_entries WHERE transaction_id = 900002")"
check "a transaction without entries is refused at commit" sql_refused "BEGIN;
  INSERT INTO ledger_transactions (transaction_id, payment_id, kind) VALUES (900004, 'pay_direct', 'chargeback');
  COMMIT;" "has no entries"
check "zero and negative entries are refused" sql_refused \
  "INSERT INTO ledger_entries (transaction_id, account_id, currency, direction, amount_minor) VALUES (900002, $A, 'USD', 'D', 0)" "check constraint"
eq "balances moved with the committed entries, in the same transaction" "100 -100" \
  "$(sql "SELECT (SELECT balance FROM ledger_accounts WHERE account_id = $A) || ' ' || (SELECT balance FROM ledger_accounts WHERE account_id = $R)")"

# SET CONSTRAINTS ALL IMMEDIATE fires the deferred balance check early; an
# entry added afterwards must not escape it. As the ledger role.
sql "INSERT INTO payments (payment_id, merchant_id, idempotency_key, fingerprint, customer_id,
     amount_minor, currency, payment_method, source_topic, source_partition, source_offset)
     VALUES ('pay_direct2', 'm_t', 'k_direct2', 'f', 'c', 100, 'USD', 'pm', 't', 0, 1)" >/dev/null
LEDGER_DSN=${PAYSTREAM_PG_DSN/user=postgres/user=paystream_ledger}
early_checked() { # early_checked KIND [LATER_SQL]: a balanced posting, checked early, then LATER_SQL
  psql "$LEDGER_DSN" -qAtX -v ON_ERROR_STOP=1 -c "BEGIN; SET CONSTRAINTS ALL IMMEDIATE;
    WITH tx AS (INSERT INTO ledger_transactions (payment_id, kind) VALUES ('pay_direct2', '$1') RETURNING transaction_id)
    INSERT INTO ledger_entries (transaction_id, account_id, currency, direction, amount_minor)
      SELECT transaction_id, $A, 'USD', 'D', 100 FROM tx UNION ALL SELECT transaction_id, $R, 'USD', 'C', 100 FROM tx;
    ${2:-}
    COMMIT;" 2>&1
}
LATE_ENTRY="INSERT INTO ledger_entries (transaction_id, account_id, currency, direction, amount_minor)
  SELECT transaction_id, $A, 'USD', 'D', 999999 FROM ledger_transactions WHERE payment_id = 'pay_direct2' AND kind = 'refund';"
check "as the ledger role, a balanced posting checked early commits" quietly early_checked chargeback
check "as the ledger role, an entry of +999999 added after the early check is refused" \
  eval 'qgrep "ledger transaction .* is closed: entries are added only by the statement that creates it" <<<"$(early_checked refund "$LATE_ENTRY")"'
eq "nothing of it remains" "0" "$(sql "SELECT count(*) FROM ledger_transactions WHERE payment_id = 'pay_direct2' AND kind = 'refund'")"
eq "balances moved only with committed entries" "200 -200" \
  "$(sql "SELECT (SELECT balance FROM ledger_accounts WHERE account_id = $A) || ' ' || (SELECT balance FROM ledger_accounts WHERE account_id = $R)")"

# Clean up the hand-made rows so the pipeline checks below see only its own.
sql "ALTER TABLE ledger_entries DISABLE TRIGGER ledger_entries_append_only;
     ALTER TABLE ledger_transactions DISABLE TRIGGER ledger_transactions_append_only;
     DELETE FROM ledger_entries WHERE transaction_id IN (SELECT transaction_id FROM ledger_transactions WHERE payment_id LIKE 'pay_direct%');
     DELETE FROM ledger_transactions WHERE payment_id LIKE 'pay_direct%';
     ALTER TABLE ledger_entries ENABLE TRIGGER ledger_entries_append_only;
     ALTER TABLE ledger_transactions ENABLE TRIGGER ledger_transactions_append_only;
     DELETE FROM ledger_accounts WHERE name LIKE '%:test'; DELETE FROM payments WHERE payment_id LIKE 'pay_direct%'" >/dev/null

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
check "every intent reaches a terminal state, exactly one each" terminal_exactly 3000 240

poison=$(sql "SELECT payment_id FROM payments WHERE idempotency_key = '$POISON_KEY'")
eq "the poison payment ends ledger_failed with a code" "ledger_failed ledger_posting_failed" \
  "$(sql "SELECT status || ' ' || error_code FROM payments WHERE payment_id = '$poison'")"
eq "the poison payment has no posting" "0" "$(sql "SELECT count(*) FROM ledger_transactions WHERE payment_id = '$poison'")"
check "the poison payment is dead-lettered with its reason" eval \
  '"$PAYCTL" dlq list | jq -c --arg k "$POISON_KEY" "select(.key==\$k and (.[\"dlq.reason\"]|test(\"ledger posting failed\")) and .[\"dlq.stage\"]==\"ledger\")" | qgrep .'
check "the refusal was raised as an alert" qgrep -h 'ALERT ledger refused' "$PAYSTREAM_RUN_DIR"/logs/ledger-*.log
eq "every other charged payment is posted" "$(sql "SELECT count(*) FROM payments WHERE status = 'succeeded'")" \
  "$(sql "SELECT count(*) FROM ledger_transactions")"
check "payctl ledger verify passes" quietly "$PAYCTL" ledger verify
"$PAYCTL" reconcile >"$PAYSTREAM_RUN_DIR/reconcile.txt"
check "reconcile exits non-zero on the difference" test $? -ne 0
eq "reconcile lists exactly the poison payment's charge without a posting" "1" \
  "$(grep -c "DIFFERENCE charge without a ledger posting: .* $poison" "$PAYSTREAM_RUN_DIR/reconcile.txt")"
eq "reconcile finds nothing else" "2" "$(grep -c DIFFERENCE "$PAYSTREAM_RUN_DIR/reconcile.txt")"  # also: charged, not succeeded
check "no deadlock between the two ledger workers" eval '! qgrep -h "40P01" "$PAYSTREAM_RUN_DIR"/logs/ledger-*.log'
check "payctl ledger balance recomputes an account" quietly "$PAYCTL" ledger balance revenue:payments
check "payctl ledger entries shows a payment's postings" eval \
  '"$PAYCTL" ledger entries "$(sql "SELECT payment_id FROM ledger_transactions LIMIT 1")" | qgrep "revenue:payments"'

# Recovery of an isolated payment (README, Operations): fix the cause, then
# redrive its dead letter. `ledger_failed` is still postable.
sql "DROP TRIGGER test_poison ON ledger_transactions" >/dev/null
check "payctl dlq redrive re-publishes the dead letter" quietly "$PAYCTL" dlq redrive
posted_ok() { [ "$(sql "SELECT status FROM payments WHERE payment_id = '$1'")" = succeeded ]; }
check "the redriven payment is posted and ends succeeded" wait_until 60 posted_ok "$poison"
eq "it has exactly one posting, for its recorded amount" "1 $(sql "SELECT amount_minor FROM payments WHERE payment_id = '$poison'")" \
  "$(sql "SELECT count(DISTINCT t.transaction_id) || ' ' || sum(e.amount_minor) FILTER (WHERE e.direction = 'C' AND a.name = 'revenue:payments')
          FROM ledger_transactions t JOIN ledger_entries e USING (transaction_id) JOIN ledger_accounts a USING (account_id)
          WHERE t.payment_id = '$poison'")"
eq "its error code is cleared" "" "$(sql "SELECT coalesce(error_code, '') FROM payments WHERE payment_id = '$poison'")"
outcome_of() { "$PAYCTL" outcomes | jq -r --arg p "$1" 'select(.payment_id == $p) | .status' | tail -1; }
check "its succeeded outcome is published" wait_until 30 eval '[ "$(outcome_of "$poison")" = succeeded ]'
eq "every payment the processor charged is posted now" "$(sql "SELECT count(*) FROM payments WHERE status = 'succeeded'")" \
  "$(sql "SELECT count(*) FROM ledger_transactions")"

# A charged payment of our own, walked along the state machine as the owner
# (a succeeded attempt with its fee), to forge events for.
FORGE=$BUILD/forge-charged
charged_payment() { # charged_payment ID AMOUNT FEE
  sql "INSERT INTO payments (payment_id, merchant_id, idempotency_key, fingerprint, customer_id,
         amount_minor, currency, payment_method, source_topic, source_partition, source_offset)
       VALUES ('$1', 'm_t', 'k_$1', 'f', 'c', $2, 'USD', 'pm', 't', 0, 0);
       UPDATE payments SET status = 'scored' WHERE payment_id = '$1';
       UPDATE payments SET status = 'charging' WHERE payment_id = '$1';
       INSERT INTO charge_attempts (payment_id, processor, idempotency_key, amount_minor, currency, sends)
         VALUES ('$1', 'stripe', 'paystream:$1:stripe', $2, 'USD', 1);
       UPDATE charge_attempts SET state = 'succeeded', fee_minor = $3, processor_charge_id = 'ch_$1' WHERE payment_id = '$1';
       UPDATE payments SET status = 'charged', processor = 'stripe', fee_minor = $3, processor_charge_id = 'ch_$1'
         WHERE payment_id = '$1'" >/dev/null
}
refused_events() { local t=0; for i in 1 2; do t=$((t + $(metric ledger "$i" paystream_ledger_events_refused_total))); done; echo $t; }
dlq_reasons() { "$PAYCTL" dlq list | jq -r --arg k "$1" 'select(.key == $k) | .["dlq.reason"]'; }
charged_payment pay_forge 1000 59
real=$(sql "SELECT payment_id || ' ' || merchant_id || ' ' || idempotency_key || ' ' || amount_minor || ' ' || currency || ' ' || processor || ' ' || fee_minor || ' ' || processor_charge_id FROM payments WHERE status = 'succeeded' AND payment_id LIKE 'pay\_%' AND fee_minor > 0 LIMIT 1")
read -r rid rm rk ramt rcur rproc rfee rcid <<<"$real"
entries_of() {
  sql "SELECT string_agg(a.name || ' ' || e.direction || ' ' || e.amount_minor || ' ' || e.currency, ', ' ORDER BY a.name, e.direction)
       FROM ledger_transactions t JOIN ledger_entries e USING (transaction_id) JOIN ledger_accounts a USING (account_id)
       WHERE t.payment_id = '$1'"
}
books() { sql "SELECT (SELECT count(*) FROM ledger_entries), (SELECT string_agg(name || currency || balance, ',' ORDER BY name, currency) FROM ledger_accounts)"; }
books_before=$(books)
rid_entries=$(entries_of "$rid")
check "forged events publish" eval '"$FORGE" pay_forge m_t k_pay_forge 999999 USD stripe 59 ch_pay_forge &&
  "$FORGE" pay_forge m_t k_pay_forge 1000 EUR stripe 59 ch_pay_forge &&
  "$FORGE" pay_forge m_t k_pay_forge 1000 USD stripe 0 ch_pay_forge &&
  "$FORGE" pay_forge m_t k_pay_forge 1000 USD paypal 59 ch_pay_forge &&
  "$FORGE" "$rid" "$rm" "$rk" $((ramt * 100)) "$rcur" "$rproc" "$rfee" "$rcid" &&
  "$FORGE" "$rid" "$rm" "$rk" "$ramt" "$rcur" "$rproc" 0 "$rcid"'
check "every forged event is dead-lettered with the disagreement" wait_until 60 eval \
  '[ "$(dlq_reasons k_pay_forge | grep -c "^event disagrees with postgres")" -eq 4 ] && [ "$(dlq_reasons "$rk" | grep -c "^event disagrees with postgres")" -eq 2 ]'
check "the amount's disagreement names both values" eval 'dlq_reasons k_pay_forge | qgrep "amount 999999 USD, recorded 1000 USD"'
check "and raised alerts" qgrep -h 'ALERT ledger refused an event' "$PAYSTREAM_RUN_DIR"/logs/ledger-*.log
eq "and counted them in a metric" "6" "$(refused_events)"
# A charged payment is posted from what Postgres recorded (README: the
# ledger never trusts the message), so the books hold the truth and the
# payment ends; the disagreement stays an alert, a count and a dead letter.
check "the charged payment is posted from postgres's facts, not left charged" wait_until 60 posted_ok pay_forge
eq "  ... once" "1" "$(sql "SELECT count(*) FROM ledger_transactions WHERE payment_id = 'pay_forge'")"
eq "the already posted payment's entries did not change" "$rid_entries" "$(entries_of "$rid")"
eq "no other posting was made" "$(($(cut -f1 <<<"$books_before") + 4))" "$(sql "SELECT count(*) FROM ledger_entries")"
check "pay_forge's outcome says succeeded with the recorded amount and processor" wait_until 30 eval \
  '"$PAYCTL" outcomes | jq -c "select(.payment_id == \"pay_forge\" and .status == \"succeeded\" and .amount == 1000 and .currency == \"USD\" and .processor == \"stripe\" and .merchant_id == \"m_t\" and .processor_charge_id == \"ch_pay_forge\")" | qgrep .'
eq "  ... and no outcome with the forged values" "" \
  "$("$PAYCTL" outcomes | jq -c 'select(.payment_id == "pay_forge" and (.amount != 1000 or .currency != "USD" or .processor != "stripe"))')"
check "its true event publishes" "$FORGE" pay_forge m_t k_pay_forge 1000 USD stripe 59 ch_pay_forge
eq "pay_forge's entries are its recorded amount, fee and processor" \
  "asset:processor_receivable:stripe C 59 USD, asset:processor_receivable:stripe D 1000 USD, expense:processing_fees D 59 USD, revenue:payments C 1000 USD" \
  "$(entries_of pay_forge)"

# A fee above the amount (a 30 cent fixed fee on a 10 cent payment) posts.
charged_payment pay_tiny 10 30
check "a payment with a fee above its amount" "$FORGE" pay_tiny m_t k_pay_tiny 10 USD stripe 30 ch_pay_tiny
check "  ... is posted and ends succeeded" wait_until 60 posted_ok pay_tiny
eq "  ... its receivable nets -20 and the transaction balances" \
  "asset:processor_receivable:stripe C 30 USD, asset:processor_receivable:stripe D 10 USD, expense:processing_fees D 30 USD, revenue:payments C 10 USD" \
  "$(entries_of pay_tiny)"
check "payctl ledger verify passes after all of it" quietly "$PAYCTL" ledger verify

# Replay payments.charged from the earliest offset: nothing new, nothing changed.
check "the ledger workers stop" "$STACK" stop-workers
snapshot() { sql "SELECT (SELECT count(*) FROM ledger_transactions), (SELECT count(*) FROM ledger_entries), (SELECT string_agg(name || currency || balance, ',' ORDER BY name, currency) FROM ledger_accounts)"; }
before=$(snapshot)
charges_before=$(curl -sf "$PAYSTREAM_PROCESSOR_URL/v1/charges" | jq '.data | length')
check "payctl replay moves the ledger group to the earliest offset" quietly "$PAYCTL" replay --stage ledger --to-offset earliest
lag=$("$PAYCTL" lag --stage ledger | awk '/total lag/ {print $3}')
eq "the replay left the whole topic to re-process" \
  "$("$BUILD/kadmin" offsets payments.charged | awk '{ n += $3 - $2 } END { print n }')" "$lag"
"$STACK" start-worker ledger 3
check "the ledger re-processed everything" wait_until 120 eval '"$PAYCTL" lag --stage ledger | qgrep "total lag 0"'
eq "the replay posted nothing new and changed no balance" "$before" "$(snapshot)"
eq "the replay charged nothing" "$charges_before" "$(curl -sf "$PAYSTREAM_PROCESSOR_URL/v1/charges" | jq '.data | length')"
"$PAYCTL" outcomes >"$PAYSTREAM_RUN_DIR/outcomes.jsonl"
# (the redriven payment has two: failed while isolated, then succeeded)
eq "re-sent outcomes are byte-identical" "0" \
  "$(jq -r --arg p "$poison" 'select(.payment_id != $p) | [.payment_id,.raw] | @tsv' "$PAYSTREAM_RUN_DIR/outcomes.jsonl" | sort -u | cut -f1 | uniq -d | wc -l)"
check "outcomes were re-sent by the replay" test "$(wc -l <"$PAYSTREAM_RUN_DIR/outcomes.jsonl")" -gt 5000

check "workers stop cleanly on SIGTERM" "$STACK" stop-workers

# payctl ledger verify's negative path: corrupt the books as the owner (with
# the guards that refuse it switched off) and it must fail, saying what.
verify_fails_with() { # verify_fails_with PATTERN
  local out rc
  out=$("$PAYCTL" ledger verify 2>&1); rc=$?
  [ "$rc" -eq 1 ] && qgrep -- "$1" <<<"$out" && qgrep 'ledger verify: [0-9]* problems' <<<"$out"
}
sql "ALTER TABLE ledger_accounts DISABLE TRIGGER ledger_accounts_balance_from_entries;
     UPDATE ledger_accounts SET balance = balance + 7 WHERE name = 'revenue:payments' AND currency = 'USD';
     ALTER TABLE ledger_accounts ENABLE TRIGGER ledger_accounts_balance_from_entries" >/dev/null
check "verify fails on a corrupted balance, naming the account" verify_fails_with   "MISMATCH account revenue:payments USD: stored balance"
sql "ALTER TABLE ledger_accounts DISABLE TRIGGER ledger_accounts_balance_from_entries;
     UPDATE ledger_accounts SET balance = balance - 7 WHERE name = 'revenue:payments' AND currency = 'USD';
     ALTER TABLE ledger_accounts ENABLE TRIGGER ledger_accounts_balance_from_entries" >/dev/null
check "verify passes once the balance is restored" quietly "$PAYCTL" ledger verify
bad_tx=$(sql "SELECT transaction_id FROM ledger_transactions WHERE payment_id = 'pay_forge'")
sql "ALTER TABLE ledger_entries DISABLE TRIGGER ledger_entries_append_only;
     UPDATE ledger_entries SET amount_minor = amount_minor + 1 WHERE transaction_id = $bad_tx AND direction = 'D'
       AND account_id = (SELECT account_id FROM ledger_accounts WHERE name = 'expense:processing_fees' AND currency = 'USD');
     ALTER TABLE ledger_entries ENABLE TRIGGER ledger_entries_append_only" >/dev/null
check "verify fails on a corrupted entry, naming its transaction" verify_fails_with   "UNBALANCED transaction $bad_tx in USD: debits - credits = 1"
check "  ... and the account it no longer matches" verify_fails_with   "MISMATCH account expense:processing_fees USD"
check "no sanitizer reports" no_sanitizer_reports
finish
