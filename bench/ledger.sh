#!/usr/bin/env bash
# bench/ledger.sh: ledger postings/s draining a backlog of charged payments,
# batched (our design) vs. one SERIALIZABLE transaction per payment (the
# seed's design: the same binary with PAYSTREAM_BATCH_MAX=1 and
# PAYSTREAM_PG_ISOLATION=serializable), and Postgres alone writing the same
# rows per payment with the same durability, 500 payments per transaction.
# usage: bench/ledger.sh [build-dir] [payments]
source "$(dirname "$0")/lib.sh" "${1:-}"
N=${2:-20000}

# Brings N payments to `charged` with the ledger stopped; prints nothing.
prepare() {
  new_stack
  for s in ingest fraud charge; do PAYSTREAM_LOG_LEVEL=warn "$STACK" start-worker "$s" 1; done
  "$PAYCTL" publish --count "$N" --run "l$RANDOM" >/dev/null
  until [ "$(sql "SELECT count(*) FROM payments WHERE status NOT IN ('received', 'scored', 'charging')")" -ge "$N" ]; do
    sleep 0.2
  done
  # Some are declined or blocked (velocity): the ledger posts the charged ones.
  POSTINGS=$(sql "SELECT count(*) FROM payments WHERE status = 'charged'")
}

# Starts the ledger with the given settings and times the drain.
drain() {
  local label=$1; shift
  local t0 t1
  t0=$(date +%s%3N)
  env PAYSTREAM_LOG_LEVEL=error "$@" "$STACK" start-worker ledger 1
  until [ "$(sql "SELECT count(*) FROM ledger_transactions")" -ge "$POSTINGS" ]; do sleep 0.1; done
  t1=$(date +%s%3N)
  local steady
  steady=$(sql "SELECT extract(epoch FROM max(created_at) - min(created_at)) FROM ledger_transactions")
  "$PAYCTL" ledger verify >/dev/null || { echo "ledger verify failed" >&2; exit 1; }
  printf '| %s | %d | %.2f s wall, %.2f s first to last posting | %.0f postings/s |\n' "$label" "$POSTINGS" \
    "$(echo "($t1 - $t0) / 1000" | bc -l)" "$steady" "$(echo "$POSTINGS / $steady" | bc -l)"
  cleanup
}

echo "| ledger | payments | time | throughput |"
echo "|---|---|---|---|"
prepare; drain "batched (500 per transaction, read committed, hot balances once per batch)"
prepare; drain "seed design (1 per transaction, SERIALIZABLE)" PAYSTREAM_BATCH_MAX=1 PAYSTREAM_PG_ISOLATION=serializable

# Postgres alone: the same rows per payment (1 transaction row, 4 entries,
# the payment's status update) and 3 hot balance updates per batch, 500
# payments per transaction, same fsync/synchronous_commit, one connection.
new_stack
sql "INSERT INTO payments (payment_id, merchant_id, idempotency_key, fingerprint, customer_id, amount_minor,
       currency, payment_method, source_topic, source_partition, source_offset, status)
     SELECT 'p' || i, 'm', 'k' || i, 'f', 'c', 1000, 'USD', 'pm', 't', 0, i, 'charged' FROM generate_series(1, $N) i;
     INSERT INTO ledger_accounts (name, currency, type) VALUES
       ('asset:processor_receivable:stripe', 'USD', 'asset'), ('revenue:payments', 'USD', 'revenue'),
       ('expense:processing_fees', 'USD', 'expense');" >/dev/null
cat >"$PAYSTREAM_RUN_DIR/batch.sql" <<'SQL'
BEGIN;
WITH tx AS (
  INSERT INTO ledger_transactions (payment_id, kind)
  SELECT 'p' || i, 'payment' FROM generate_series(:lo, :hi) i RETURNING transaction_id)
INSERT INTO ledger_entries (transaction_id, account_id, currency, direction, amount_minor)
SELECT tx.transaction_id, a.account_id, 'USD', d.dir, d.amt FROM tx
  CROSS JOIN (VALUES ('asset:processor_receivable:stripe', 'D', 1000), ('revenue:payments', 'C', 1000),
                     ('expense:processing_fees', 'D', 59), ('asset:processor_receivable:stripe', 'C', 59)) d(acct, dir, amt)
  JOIN ledger_accounts a ON a.name = d.acct;
UPDATE ledger_accounts SET balance = balance + CASE name WHEN 'revenue:payments' THEN -500000
  WHEN 'expense:processing_fees' THEN 29500 ELSE 470500 END;
UPDATE payments SET status = 'succeeded', outcome = '\x00', updated_at = now()
  WHERE payment_id IN (SELECT 'p' || i FROM generate_series(:lo, :hi) i);
COMMIT;
SQL
t0=$(date +%s%3N)
for lo in $(seq 1 500 "$N"); do
  psql "$PAYSTREAM_PG_DSN" -qAtX -v lo="$lo" -v hi="$((lo + 499))" -f "$PAYSTREAM_RUN_DIR/batch.sql" >/dev/null
done
t1=$(date +%s%3N)
secs=$(echo "($t1 - $t0) / 1000" | bc -l)
"$PAYCTL" ledger verify >/dev/null || { echo "ledger verify failed (postgres alone)" >&2; exit 1; }
printf '| Postgres alone, same rows, 500 per transaction (psql, 1 connection) | %d | %.2f s | %.0f postings/s |\n' \
  "$N" "$secs" "$(echo "$N / $secs" | bc -l)"
