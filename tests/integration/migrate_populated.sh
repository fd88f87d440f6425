#!/usr/bin/env bash
# Migrations are forward-only and safe on a live database that already
# holds payments: the database is created at the previous release (001-007),
# payments run through it (posted the way that release's ledger posted,
# one isolated the way it isolated), then this release's migrations are
# applied while payments are still flowing. Nothing recorded changes, the
# isolated payment becomes `ledger_failed`, and the workers carry on: every
# payment ends as expected and the books verify. 013 (the lifecycle) fills
# the amounts of sales recorded before it (authorized = captured = amount)
# and of every sale charged after it, and a sale from before the migration
# can be refunded.
source "$(dirname "$0")/lib.sh"
PREVIOUS=007
MIG_PREV=$PAYSTREAM_RUN_DIR/migrations-$PREVIOUS
mkdir -p "$MIG_PREV"
for f in "$REPO"/db/migrations/*.sql; do
  n=$(basename "$f"); [ "${n%%_*}" -le "$PREVIOUS" ] && cp "$f" "$MIG_PREV/"
done
export PAYSTREAM_MIGRATIONS_DIR=$MIG_PREV
stack_up
eq "the database is at the previous release" "${PREVIOUS}_charge_attempt_indexes.sql" \
  "$(sql "SELECT max(version) FROM schema_migrations")"

# ---- the previous release at work ------------------------------------------------
for s in ingest fraud charge; do "$STACK" start-worker "$s" 1; done
M1=$PAYSTREAM_RUN_DIR/m1.jsonl M2=$PAYSTREAM_RUN_DIR/m2.jsonl
"$PAYCTL" publish --count 400 --declines 20 --fraud 10 --run before --manifest "$M1" >/dev/null
n1=$(jq -r 'select(.kind=="valid" or .kind=="decline" or .kind=="fraud") | .key' "$M1" | wc -l)
settled() { [ "$(sql "SELECT count(*) FROM payments WHERE status IN ('charged', 'declined', 'blocked')")" -eq "$n1" ]; }
check "payments reach the ledger's input at the previous release" wait_until 120 settled

# The previous ledger's statements, as its role: post 150 charged payments
# (entries and the summed balance update), isolate one as it did (failed,
# ledger_posting_failed).
LEDGER_DSN=${PAYSTREAM_PG_DSN/user=postgres/user=paystream_ledger}
old_ledger() {
  psql "$LEDGER_DSN" -qAtX -v ON_ERROR_STOP=1 -c "BEGIN;
  CREATE TEMP TABLE pick AS SELECT payment_id, amount_minor, currency, processor, coalesce(fee_minor, 0) AS fee
    FROM payments WHERE status = 'charged' ORDER BY payment_id LIMIT 150;
  CREATE TEMP TABLE e AS
    SELECT payment_id, 'asset:processor_receivable:' || processor AS n, currency AS c, 'D' AS d, amount_minor AS amt FROM pick
    UNION ALL SELECT payment_id, 'revenue:payments', currency, 'C', amount_minor FROM pick
    UNION ALL SELECT payment_id, 'expense:processing_fees', currency, 'D', fee FROM pick WHERE fee > 0
    UNION ALL SELECT payment_id, 'asset:processor_receivable:' || processor, currency, 'C', fee FROM pick WHERE fee > 0;
  INSERT INTO ledger_accounts (name, currency, type) SELECT DISTINCT n, c, split_part(n, ':', 1) FROM e
    ON CONFLICT (name, currency) DO NOTHING;
  WITH tx AS (INSERT INTO ledger_transactions (payment_id, kind) SELECT payment_id, 'payment' FROM pick
              RETURNING transaction_id, payment_id),
   ent AS (INSERT INTO ledger_entries (transaction_id, account_id, currency, direction, amount_minor)
           SELECT tx.transaction_id, a.account_id, e.c, e.d, e.amt FROM e JOIN tx USING (payment_id)
           JOIN ledger_accounts a ON a.name = e.n AND a.currency = e.c
           RETURNING account_id, direction, amount_minor),
   d AS (SELECT account_id, sum(CASE direction WHEN 'D' THEN amount_minor ELSE -amount_minor END) AS delta
         FROM ent GROUP BY account_id)
  UPDATE ledger_accounts a SET balance = a.balance + d.delta FROM d WHERE a.account_id = d.account_id;
  UPDATE payments p SET status = 'succeeded', outcome = '\\x2001', updated_at = now()
    FROM pick WHERE p.payment_id = pick.payment_id;
  UPDATE payments SET status = 'failed', error_code = 'ledger_posting_failed', outcome = '\\x2004', updated_at = now()
    WHERE payment_id = (SELECT payment_id FROM payments WHERE status = 'charged' ORDER BY payment_id LIMIT 1);
  COMMIT;"
}
check "the previous release's ledger posts and isolates" quietly old_ledger
isolated=$(sql "SELECT payment_id FROM payments WHERE error_code = 'ledger_posting_failed'")
check "payctl ledger verify passes before the migration" quietly "$PAYCTL" ledger verify
snapshot() {
  sql "SELECT md5(string_agg(t.transaction_id || t.payment_id || e.entry_id || e.account_id || e.direction || e.amount_minor || e.currency, ','
                  ORDER BY e.entry_id)) FROM ledger_transactions t JOIN ledger_entries e USING (transaction_id)"
  sql "SELECT md5(string_agg(payment_id || merchant_id || idempotency_key || amount_minor || currency || fingerprint, ',' ORDER BY payment_id))
       FROM payments WHERE created_at <= '$t0'"
  sql "SELECT md5(string_agg(payment_id || processor || state || amount_minor || currency || sends || refused || coalesce(fee_minor, -1), ',' ORDER BY payment_id, processor))
       FROM charge_attempts WHERE created_at <= '$t0'"
  sql "SELECT string_agg(name || currency || balance, ',' ORDER BY name, currency) FROM ledger_accounts"
}
t0=$(sql "SELECT now()")  # batch 2 (still being charged during the checks) comes after
before=$(snapshot)

# ---- this release's migrations, applied while payments flow --------------------
"$PAYCTL" publish --count 300 --declines 10 --run during --manifest "$M2" >/dev/null
check "this release's migrations apply to the populated, live database" \
  env PAYSTREAM_MIGRATIONS_DIR="$REPO/db/migrations" "$PAYCTL" migrate
eq "the database is at this release" "$(basename "$(ls "$REPO"/db/migrations/*.sql | sort | tail -1)")" \
  "$(sql "SELECT max(version) FROM schema_migrations")"
eq "what was recorded before is unchanged (postings, payments, attempts, balances)" "$before" "$(snapshot)"
eq "the previous release's isolated payment is ledger_failed" "ledger_failed ledger_posting_failed" \
  "$(sql "SELECT status || ' ' || error_code FROM payments WHERE payment_id = '$isolated'")"
eq "013: every sale charged before it is authorized and captured in full, nothing else moved" 0 \
  "$(sql "SELECT count(*) FROM payments WHERE created_at <= '$t0' AND kind = 'sale' AND
          (authorized_minor, captured_minor, refunded_minor, capturing_minor, refunding_minor, released_minor)
          <> (CASE WHEN status IN ('charged', 'ledger_failed', 'succeeded') THEN amount_minor ELSE 0 END,
              CASE WHEN status IN ('charged', 'ledger_failed', 'succeeded') THEN amount_minor ELSE 0 END, 0, 0, 0, 0)")"

# ---- the workers carry on ------------------------------------------------------------
"$STACK" start-worker ledger 1
cat "$M1" "$M2" >"$PAYSTREAM_RUN_DIR/m.jsonl"
expected=$(manifest_terminal "$PAYSTREAM_RUN_DIR/m.jsonl")
all_settled() { all_terminal && [ "$(sql "SELECT count(*) FROM payments WHERE status NOT IN ('succeeded', 'declined', 'blocked')")" -eq 0 ]; }
check "every payment, before and after the migration, ends terminal" wait_until 180 all_settled
valid='select(.kind=="valid" or .kind=="decline" or .kind=="fraud")'
jq -r "$valid | [.merchant,.key,.expect] | @tsv" "$PAYSTREAM_RUN_DIR/m.jsonl" | sort >"$PAYSTREAM_RUN_DIR/status.exp"
sql "SELECT merchant_id, idempotency_key, status FROM payments" | sort >"$PAYSTREAM_RUN_DIR/status.act"
check "each ends as expected (the isolated one posted on redelivery)" \
  cmp -s "$PAYSTREAM_RUN_DIR/status.exp" "$PAYSTREAM_RUN_DIR/status.act"
eq "one posting per succeeded payment" "$(sql "SELECT count(*) FROM payments WHERE status = 'succeeded'")" \
  "$(sql "SELECT count(*) FROM ledger_transactions WHERE operation_id IS NULL")"
eq "revenue is what the succeeded payments recorded" \
  "$(sql "SELECT string_agg(currency || ' ' || s, ',' ORDER BY currency) FROM (SELECT currency, sum(amount_minor) s FROM payments WHERE status = 'succeeded' GROUP BY currency) x")" \
  "$(sql "SELECT string_agg(currency || ' ' || -balance, ',' ORDER BY currency) FROM ledger_accounts WHERE name = 'revenue:payments'")"
eq "the previous release's postings are still unchanged" "$(head -1 <<<"$before")" \
  "$(sql "SELECT md5(string_agg(t.transaction_id || t.payment_id || e.entry_id || e.account_id || e.direction || e.amount_minor || e.currency, ','
                  ORDER BY e.entry_id)) FROM ledger_transactions t JOIN ledger_entries e USING (transaction_id)
          WHERE e.entry_id <= (SELECT max(entry_id) FROM ledger_entries WHERE transaction_id IN
            (SELECT transaction_id FROM ledger_transactions ORDER BY transaction_id LIMIT 150))")"
eq "013: sales charged after it carry their amounts too" 0 \
  "$(sql "SELECT count(*) FROM payments WHERE status = 'succeeded' AND (authorized_minor, captured_minor) <> (amount_minor, amount_minor)")"
# A sale from the previous release, refunded in part through the pipeline.
old=$(sql "SELECT idempotency_key || ' ' || amount_minor || ' ' || currency FROM payments
           WHERE created_at <= '$t0' AND status = 'succeeded' ORDER BY payment_id LIMIT 1")
read -r okey oamount ocur <<<"$old"
om=$(sql "SELECT merchant_id FROM payments WHERE idempotency_key = '$okey'")
"$PAYCTL" refund "$om" "$okey" --key old-refund-1 --amount $((oamount / 2)) --currency "$ocur" >/dev/null
refunded_old() { [ "$(sql "SELECT state FROM payment_operations WHERE idempotency_key = 'old-refund-1'")" = posted ]; }
check "a sale from before the migration is refunded and posted" wait_until 120 refunded_old
eq "its refunded amount is recorded" "$((oamount / 2))" \
  "$(sql "SELECT refunded_minor FROM payments WHERE idempotency_key = '$okey' AND merchant_id = '$om'")"
check "payctl ledger verify passes after the migration" quietly "$PAYCTL" ledger verify
check "workers stop cleanly on SIGTERM" "$STACK" stop-workers
check "no sanitizer reports" no_sanitizer_reports
finish
