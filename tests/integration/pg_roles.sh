#!/usr/bin/env bash
# Least privilege and the database guarding its own state (invariant 7):
# each worker connects as its stage's role and the pipeline works with only
# those grants; the grants are exactly what each stage writes (read from
# the catalog); every forbidden write is refused AS THE ROLE, and the
# refusal's origin is asserted: the privilege system (42501 "permission
# denied") or a guard trigger (its own SQLSTATE and "guard:" message).
# Next to each refusal the same statement succeeds for the owner (inside a
# rolled-back transaction, with only the refusing guard switched off), so a
# refusal cannot come from a typo.
source "$(dirname "$0")/lib.sh"
stack_up
"$STACK" workers 1
"$PAYCTL" publish --count 300 --declines 10 --fraud 10 --invalid 5 --manifest "$PAYSTREAM_RUN_DIR/m.jsonl" >/dev/null
expected=$(manifest_terminal "$PAYSTREAM_RUN_DIR/m.jsonl")
check "the pipeline works with per-stage roles" wait_until 90 all_terminal
eq "each worker is connected as its own role" \
  "paystream_charge paystream_fraud paystream_ingest paystream_ledger" \
  "$(sql "SELECT string_agg(DISTINCT usename, ' ' ORDER BY usename) FROM pg_stat_activity WHERE usename LIKE 'paystream_%'")"
check "payctl ledger verify passes" quietly "$PAYCTL" ledger verify
check "workers stop cleanly on SIGTERM" "$STACK" stop-workers

# ---- the grants, from the catalog ------------------------------------------
grants() {
  sql "SELECT string_agg(table_name || '.' || column_name || ':' || privilege_type, ' '
         ORDER BY table_name, privilege_type, column_name)
       FROM information_schema.column_privileges
       WHERE grantee = 'paystream_$1' AND privilege_type IN ('INSERT', 'UPDATE')"
}
P=payments
eq "ingest writes only a payment's request and rejections" \
  "$(printf '%s ' payment_operations.{amount_minor,currency,final_capture,fingerprint,idempotency_key,kind,merchant_id,operation_id,payment_ref,payment_ref_by,request,source_offset,source_partition,source_topic}:INSERT payment_operations.{amount_minor,error_code,error_message,payment_id,processor,result_authorized_minor,result_captured_minor,result_refunded_minor,state,updated_at}:UPDATE $P.{amount_minor,currency,customer_id,fingerprint,idempotency_key,intent,kind,merchant_id,payment_id,payment_method,source_offset,source_partition,source_topic}:INSERT $P.{capturing_minor,refunding_minor,releasing_minor}:UPDATE rejections.{error_code,error_message,idempotency_key,merchant_id,rejection_id,source_offset,source_partition,source_topic}:INSERT | sed 's/ $//')" \
  "$(grants ingest)"
eq "fraud writes its assessment and a payment's status and outcome" \
  "$(printf '%s ' fraud_assessments.{assessment,combined_score,decision,ml_score,model_version,payment_id,reasons,rule_score}:INSERT $P.{error_code,outcome,status,updated_at}:UPDATE | sed 's/ $//')" \
  "$(grants fraud)"
eq "charge opens attempts, records sends, refusals and answers, and the payment's charge" \
  "$(printf '%s ' charge_attempts.{amount_minor,currency,idempotency_key,payment_id,processor,sends}:INSERT charge_attempts.{decline_code,error,fee_minor,processor_charge_id,refused,sends,state,updated_at}:UPDATE payment_operations.{decline_code,error_code,error_message,fee_minor,processor_key,processor_op_id,processor_target,refused,released_minor,result_authorized_minor,result_captured_minor,result_refunded_minor,sends,state,updated_at}:UPDATE $P.{captured_minor,capturing_minor,error_code,fee_minor,outcome,processor,processor_charge_id,refunded_minor,refunding_minor,released_minor,releasing_minor,status,updated_at}:UPDATE | sed 's/ $//')" \
  "$(grants charge)"
eq "ledger appends postings (no ids, no balances) and finishes the payment" \
  "$(printf '%s ' authorization_expiries.announced_at:UPDATE ledger_accounts.{currency,name,type}:INSERT ledger_entries.{account_id,amount_minor,currency,direction,transaction_id}:INSERT ledger_transactions.{kind,operation_id,payment_id}:INSERT payment_operations.{state,updated_at}:UPDATE $P.{error_code,outcome,status,updated_at}:UPDATE | sed 's/ $//')" \
  "$(grants ledger)"
eq "no stage role may DELETE, TRUNCATE or UPDATE a whole table" "" \
  "$(sql "SELECT string_agg(grantee || ' ' || privilege_type || ' ' || table_name, ', ')
          FROM information_schema.table_privileges WHERE grantee LIKE 'paystream_%'
          AND privilege_type IN ('DELETE', 'TRUNCATE', 'UPDATE')")"

# ---- helpers -------------------------------------------------------------------
DSN_BASE=${PAYSTREAM_PG_DSN/user=postgres/}
# attempt ROLE SQL: prints the error line (with SQLSTATE), or "ok".
attempt() {
  local out
  out=$(psql "$DSN_BASE user=$1" -qAtX -v ON_ERROR_STOP=1 -v VERBOSITY=verbose -c "$2" 2>&1) && { echo ok; return; }
  grep -m1 '^ERROR:' <<<"$out"
}
allowed() { [ "$(attempt "$1" "$2")" = ok ]; }
# denied ROLE SQL: refused by the privilege system.
denied() { qgrep '^ERROR:  42501: permission denied for ' <<<"$(attempt "$1" "$2")"; }
# guarded ROLE CODE SQL: refused by a guard trigger with its own SQLSTATE.
guarded() { qgrep "^ERROR:  $2: guard: " <<<"$(attempt "$1" "$3")"; }
# violates ROLE CONSTRAINT SQL: refused by a named CHECK constraint.
violates() { qgrep "^ERROR:  23514: .*\"$2\"" <<<"$(attempt "$1" "$3")"; }
# owner_ok SETUP SQL: the owner runs SETUP then SQL, rolled back.
owner_ok() {
  psql "$PAYSTREAM_PG_DSN" -qAtX -v ON_ERROR_STOP=1 -c "BEGIN; $1; $2; ROLLBACK;" >/dev/null 2>&1
}
NO_GUARDS="SET LOCAL session_replication_role = replica"  # every trigger off
without() { echo "ALTER TABLE $1 DISABLE TRIGGER $2"; }   # one guard off

# refusal NAME ROLE KIND ARG SQL OWNER_SETUP: the refusal as the role, then
# the same SQL succeeding for the owner.
refusal() {
  local name=$1 role=$2 kind=$3 arg=$4 stmt=$5 setup=$6
  case $kind in
    denied) check "$name (as $role: permission denied)" denied "$role" "$stmt" ;;
    guarded) check "$name (as $role: guard $arg)" guarded "$role" "$arg" "$stmt" ;;
    violates) check "$name (as $role: CHECK $arg)" violates "$role" "$arg" "$stmt" ;;
  esac
  check "  ... the same statement succeeds for the owner" owner_ok "$setup" "$stmt"
}

pid=$(sql "SELECT payment_id FROM payments WHERE status = 'succeeded' LIMIT 1")
# Two payments of our own, moved along the state machine as the owner: one
# being charged (an attempt sent once), one scored with no attempt yet.
sql "INSERT INTO payments (payment_id, merchant_id, idempotency_key, fingerprint, customer_id,
       amount_minor, currency, payment_method, source_topic, source_partition, source_offset)
     VALUES ('pay_charging', 'm_t', 'k_charging', 'f', 'c', 1000, 'USD', 'pm', 't', 0, 0),
            ('pay_scored', 'm_t', 'k_scored', 'f', 'c', 1000, 'USD', 'pm', 't', 0, 1);
     UPDATE payments SET status = 'scored' WHERE payment_id IN ('pay_charging', 'pay_scored');
     UPDATE payments SET status = 'charging' WHERE payment_id = 'pay_charging';
     INSERT INTO charge_attempts (payment_id, processor, idempotency_key, amount_minor, currency, sends)
     VALUES ('pay_charging', 'stripe', 'paystream:pay_charging:stripe', 1000, 'USD', 1)" >/dev/null
eq "the owner walked its payments along the state machine" "charging scored" \
  "$(sql "SELECT string_agg(status, ' ' ORDER BY payment_id) FROM payments WHERE payment_id IN ('pay_charging', 'pay_scored')")"

NEW_PAYMENT="INSERT INTO payments (payment_id, merchant_id, idempotency_key, fingerprint, customer_id,
  amount_minor, currency, payment_method, source_topic, source_partition, source_offset"
# ---- ingest ----------------------------------------------------------------
refusal "ingest cannot create a payment already charged, with a processor and fee" paystream_ingest denied - \
  "$NEW_PAYMENT, status, processor, fee_minor) VALUES ('pay_forged', 'm_t', 'k_forged', 'f', 'c', 100, 'USD', 'pm', 't', 0, 2, 'charged', 'stripe', 1)" \
  "$NO_GUARDS"
check "  ... and nobody can: a payment is created received (owner, guard 23P51)" guarded postgres 23P51 \
  "$NEW_PAYMENT, status) VALUES ('pay_forged', 'm_t', 'k_forged', 'f', 'c', 100, 'USD', 'pm', 't', 0, 2, 'charged')"
check "  ... while ingest creates a received payment" owner_ok "SET LOCAL ROLE paystream_ingest" \
  "$NEW_PAYMENT) VALUES ('pay_forged', 'm_t', 'k_forged', 'f', 'c', 100, 'USD', 'pm', 't', 0, 2)"
refusal "ingest cannot update a payment" paystream_ingest denied - \
  "UPDATE payments SET updated_at = now() WHERE payment_id = '$pid'" ""
refusal "ingest cannot write ledger entries" paystream_ingest denied - \
  "INSERT INTO ledger_entries (transaction_id, account_id, currency, direction, amount_minor) SELECT transaction_id, 1, 'USD', 'D', 1 FROM ledger_transactions LIMIT 0" ""
refusal "no stage role can create tables" paystream_ingest denied - "CREATE TABLE t (x int)" ""

# ---- fraud -----------------------------------------------------------------
refusal "fraud cannot move a posted payment back to scored" paystream_fraud guarded 23P51 \
  "UPDATE payments SET status = 'scored', outcome = NULL WHERE payment_id = '$pid'" "$(without payments payments_status_machine)"
refusal "fraud cannot change a payment's amount" paystream_fraud denied - \
  "UPDATE payments SET amount_minor = amount_minor + 1 WHERE payment_id = '$pid'" "$NO_GUARDS"
refusal "fraud cannot read charge attempts" paystream_fraud denied - "SELECT count(*) FROM charge_attempts" ""

# ---- charge ----------------------------------------------------------------
refusal "charge cannot rewrite an attempt's amount" paystream_charge denied - \
  "UPDATE charge_attempts SET amount_minor = 1 WHERE payment_id = 'pay_charging'" "$NO_GUARDS"
refusal "charge cannot move an attempt to another payment" paystream_charge denied - \
  "UPDATE charge_attempts SET payment_id = 'pay_scored', idempotency_key = 'paystream:pay_scored:stripe' WHERE payment_id = 'pay_charging'" "$NO_GUARDS"
refusal "charge cannot open an attempt for another amount" paystream_charge guarded 23P52 \
  "INSERT INTO charge_attempts (payment_id, processor, idempotency_key, amount_minor, currency) VALUES ('pay_scored', 'stripe', 'paystream:pay_scored:stripe', 999999, 'USD')" \
  "$(without charge_attempts charge_attempts_open)"
refusal "charge cannot open an attempt already answered" paystream_charge denied - \
  "INSERT INTO charge_attempts (payment_id, processor, idempotency_key, amount_minor, currency, state) VALUES ('pay_scored', 'stripe', 'paystream:pay_scored:stripe', 1000, 'USD', 'succeeded')" \
  "$(without charge_attempts charge_attempts_open)"
refusal "charge cannot abandon a sent attempt" paystream_charge violates charge_attempts_abandon_only_unreceived \
  "UPDATE charge_attempts SET state = 'abandoned' WHERE payment_id = 'pay_charging'" \
  "UPDATE charge_attempts SET refused = 1 WHERE payment_id = 'pay_charging'"
refusal "charge cannot count more refusals than sends" paystream_charge violates charge_attempts_refused_le_sends \
  "UPDATE charge_attempts SET refused = 2 WHERE payment_id = 'pay_charging'" \
  "UPDATE charge_attempts SET sends = 2 WHERE payment_id = 'pay_charging'"
refusal "charge cannot take a send back" paystream_charge guarded 23P53 \
  "UPDATE charge_attempts SET sends = 0 WHERE payment_id = 'pay_charging'" \
  "$(without charge_attempts charge_attempts_counts_grow)"
refusal "charge cannot set refused = sends on an answered attempt" paystream_charge guarded 23P54 \
  "UPDATE charge_attempts SET refused = sends WHERE payment_id = '$pid'" \
  "$(without charge_attempts charge_attempts_answer_kept)"
refusal "charge cannot rewrite a recorded fee" paystream_charge guarded 23P54 \
  "UPDATE charge_attempts SET fee_minor = fee_minor + 1 WHERE payment_id = '$pid'" \
  "$(without charge_attempts charge_attempts_answer_kept)"
refusal "charge cannot move a succeeded attempt back to charging" paystream_charge guarded 23P53 \
  "UPDATE charge_attempts SET state = 'charging' WHERE payment_id = '$pid'" \
  "$(without charge_attempts charge_attempts_state_machine)"
refusal "charge cannot rewrite a finished payment's fee" paystream_charge guarded 23P54 \
  "UPDATE payments SET fee_minor = fee_minor + 1 WHERE payment_id = '$pid'" \
  "$(without payments payments_answer_kept)"
refusal "charge cannot post to the ledger" paystream_charge denied - \
  "INSERT INTO ledger_transactions (payment_id, kind) VALUES ('$pid', 'refund')" "$NO_GUARDS"
refusal "charge cannot rewrite fraud assessments" paystream_charge denied - \
  "UPDATE fraud_assessments SET decision = 'allow'" ""

# ---- ledger ----------------------------------------------------------------
refusal "ledger cannot set an account balance" paystream_ledger denied - \
  "UPDATE ledger_accounts SET balance = 424242" "$NO_GUARDS"
refusal "  ... nor can the owner, but with entries" postgres guarded 23P55 \
  "UPDATE ledger_accounts SET balance = 424242" "$(without ledger_accounts ledger_accounts_balance_from_entries)"
refusal "ledger cannot open an account with a balance" paystream_ledger denied - \
  "INSERT INTO ledger_accounts (name, currency, type, balance) VALUES ('asset:forged', 'USD', 'asset', 5)" "$NO_GUARDS"
refusal "ledger cannot choose entry ids" paystream_ledger denied - \
  "INSERT INTO ledger_entries (entry_id, transaction_id, account_id, currency, direction, amount_minor) VALUES (999999999, 1, 1, 'USD', 'D', 1)" "$NO_GUARDS"
refusal "ledger cannot move a charging payment (charge's move)" paystream_ledger guarded 23P51 \
  "UPDATE payments SET status = 'declined', outcome = '\\x00' WHERE payment_id = 'pay_charging'" \
  "$(without payments payments_status_machine)"
refusal "ledger cannot read what an attempt says beyond processor and fee" paystream_ledger denied - \
  "SELECT amount_minor, error FROM charge_attempts" ""
refusal "ledger cannot update ledger entries" paystream_ledger denied - \
  "UPDATE ledger_entries SET amount_minor = amount_minor + 1" "$NO_GUARDS"
refusal "ledger cannot delete ledger transactions" paystream_ledger denied - \
  "DELETE FROM ledger_transactions WHERE false" ""
refusal "ledger cannot truncate the ledger" paystream_ledger denied - "TRUNCATE ledger_entries" "$NO_GUARDS"
refusal "ledger cannot set a payment's amount" paystream_ledger denied - \
  "UPDATE payments SET amount_minor = amount_minor + 1 WHERE payment_id = '$pid'" "$NO_GUARDS"

# ---- the owner too -------------------------------------------------------------
refusal "nobody changes a payment's amount or currency" postgres guarded 23P52 \
  "UPDATE payments SET amount_minor = amount_minor + 1, currency = 'EUR' WHERE payment_id = '$pid'" \
  "$(without payments payments_request_immutable)"
refusal "nobody changes an attempt's amount" postgres guarded 23P52 \
  "UPDATE charge_attempts SET amount_minor = 1 WHERE payment_id = '$pid'" \
  "$(without charge_attempts charge_attempts_immutable)"
refusal "nobody moves a payment out of a terminal status" postgres guarded 23P51 \
  "UPDATE payments SET status = 'charged', outcome = NULL WHERE payment_id = '$pid'" \
  "$(without payments payments_status_machine)"
check "but each role can read what it needs (ledger reads its accounts)" allowed paystream_ledger "SELECT count(*) FROM ledger_accounts"
check "payctl ledger verify still passes" quietly "$PAYCTL" ledger verify
check "no sanitizer reports" no_sanitizer_reports
finish
