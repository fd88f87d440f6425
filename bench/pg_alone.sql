-- bench/pg_alone.sql: the machine's limit for paystream's durable work —
-- Postgres alone writing, per payment, the rows the pipeline writes, in
-- batches of 500 and one committed transaction per stage step (each commit
-- fsync'd, synchronous_commit on), on the real schema with its constraints
-- and triggers. Run by bench/run with pgbench (-n, -c 1 or 2); each pgbench
-- "transaction" below is 500 payments.
\set r random(1, 1000000000000)
-- ingest: claim (the payment row with its intent bytes)
INSERT INTO payments (payment_id, merchant_id, idempotency_key, fingerprint, customer_id,
  amount_minor, currency, payment_method, intent, source_topic, source_partition, source_offset)
SELECT 'pb_' || :r || '_' || g, 'm_1', 'pb-' || :r || '-' || g, md5(g::text), 'cus_' || (g % 97),
  100 + g, 'USD', 'pm_card_visa', decode(repeat('0a', 300), 'hex'), 'payments.intents', g % 8, g
FROM generate_series(1, 500) g;
-- fraud: assessment, status scored
BEGIN;
INSERT INTO fraud_assessments (payment_id, decision, rule_score, ml_score, combined_score,
  reasons, model_version, assessment)
SELECT 'pb_' || :r || '_' || g, 'allow', 0, 0, 0, '{}', 'none', decode(repeat('0b', 60), 'hex')
FROM generate_series(1, 500) g;
UPDATE payments SET status = 'scored', updated_at = now()
WHERE payment_id = ANY (SELECT 'pb_' || :r || '_' || g FROM generate_series(1, 500) g);
COMMIT;
-- charge: the attempt before the request leaves, status charging
BEGIN;
INSERT INTO charge_attempts (payment_id, processor, idempotency_key, amount_minor, currency, sends)
SELECT 'pb_' || :r || '_' || g, 'stripe', 'paystream:pb_' || :r || '_' || g || ':stripe', 100 + g,
  'USD', 1 FROM generate_series(1, 500) g;
UPDATE payments SET status = 'charging', updated_at = now()
WHERE payment_id = ANY (SELECT 'pb_' || :r || '_' || g FROM generate_series(1, 500) g);
COMMIT;
-- charge: the answer recorded, status charged
BEGIN;
UPDATE charge_attempts SET state = 'succeeded', processor_charge_id = 'ch_' || payment_id,
  fee_minor = 33, updated_at = now()
WHERE payment_id = ANY (SELECT 'pb_' || :r || '_' || g FROM generate_series(1, 500) g);
UPDATE payments SET status = 'charged', processor = 'stripe', processor_charge_id = 'ch_x',
  fee_minor = 33, updated_at = now()
WHERE payment_id = ANY (SELECT 'pb_' || :r || '_' || g FROM generate_series(1, 500) g);
COMMIT;
-- ledger: a transaction, four entries (011's statement trigger moves the
-- three balances, as for the ledger stage), status succeeded with its outcome
BEGIN;
WITH tx AS (
  INSERT INTO ledger_transactions (payment_id, kind)
  SELECT 'pb_' || :r || '_' || g, 'payment' FROM generate_series(1, 500) g
  RETURNING transaction_id, payment_id)
INSERT INTO ledger_entries (transaction_id, account_id, currency, direction, amount_minor)
SELECT tx.transaction_id, a.account_id, 'USD', x.d, x.amt
FROM tx CROSS JOIN (VALUES ('asset:processor_receivable:stripe', 'D', 1000),
  ('revenue:payments', 'C', 1000), ('expense:processing_fees', 'D', 33),
  ('asset:processor_receivable:stripe', 'C', 33)) AS x(n, d, amt)
JOIN ledger_accounts a ON a.name = x.n AND a.currency = 'USD';
UPDATE payments SET status = 'succeeded', outcome = decode(repeat('0c', 120), 'hex'), updated_at = now()
WHERE payment_id = ANY (SELECT 'pb_' || :r || '_' || g FROM generate_series(1, 500) g);
COMMIT;
