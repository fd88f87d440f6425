-- Postings by payment. Migration 013 replaced the UNIQUE (payment_id, kind)
-- constraint of ledger_transactions by a PARTIAL unique index
-- (ledger_transactions_payment_once, WHERE operation_id IS NULL), so a
-- query that finds a payment's postings without that predicate — the
-- ledger's read of what it posted (fixed in the statement as well), the
-- dispute postings' look-ups of ps_apply_processor_event (024), payctl
-- reconcile, payctl operation/ledger — scanned the whole table: 260 ms per
-- batch of 300 at 10,000 payments, growing with the table (bench/RESULTS.md,
-- "After the fixes (session 9)").
--
-- Safe on a live populated database: payctl migrate runs each file in one
-- transaction, where CREATE INDEX CONCURRENTLY is impossible; a plain
-- CREATE INDEX lets reads go on and holds inserts into ledger_transactions
-- (the ledger stage retries its batch, nothing is lost) for the build —
-- about a second per million postings. lock_timeout: the migration fails
-- (and is simply re-run) rather than queueing every writer behind a long
-- transaction that holds the table. On a very large ledger an operator
-- builds the index first without blocking anything:
--   CREATE INDEX CONCURRENTLY ledger_transactions_by_payment
--     ON ledger_transactions (payment_id, kind);
-- and this migration then keeps it (an INVALID leftover of a failed
-- concurrent build is dropped and built again).
SET LOCAL lock_timeout = '10s';
DO $$
BEGIN
  IF EXISTS (SELECT 1 FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
              WHERE c.relname = 'ledger_transactions_by_payment' AND NOT i.indisvalid) THEN
    DROP INDEX ledger_transactions_by_payment;
  END IF;
END $$;
CREATE INDEX IF NOT EXISTS ledger_transactions_by_payment ON ledger_transactions (payment_id, kind);
