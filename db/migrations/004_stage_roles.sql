-- Least privilege: one login role per stage, with only what its statements
-- need. Nobody but the owner (migrations, payctl) may UPDATE or DELETE
-- ledger entries or transactions; the append-only triggers stay as a second
-- line of defence. Operators set passwords (ALTER ROLE ... PASSWORD) or use
-- their own authentication (pg_hba, certificates); see README "Operations".
DO $$
DECLARE
  r text;
BEGIN
  FOREACH r IN ARRAY ARRAY['paystream_ingest', 'paystream_fraud', 'paystream_charge',
                           'paystream_ledger'] LOOP
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = r) THEN
      EXECUTE format('CREATE ROLE %I LOGIN', r);
    END IF;
    EXECUTE format('GRANT CONNECT ON DATABASE %I TO %I', current_database(), r);
    EXECUTE format('GRANT USAGE ON SCHEMA public TO %I', r);
  END LOOP;
END $$;

-- ingest: claims payments and records rejections; never updates a payment.
GRANT SELECT, INSERT ON payments, rejections TO paystream_ingest;

-- fraud: records assessments and moves a payment out of `received`.
GRANT SELECT ON payments TO paystream_fraud;
GRANT UPDATE (status, outcome, error_code, updated_at) ON payments TO paystream_fraud;
GRANT SELECT, INSERT ON fraud_assessments TO paystream_fraud;

-- charge: owns charge attempts; records the charge on the payment.
GRANT SELECT ON payments TO paystream_charge;
GRANT UPDATE (status, outcome, error_code, processor, processor_charge_id, fee_minor, updated_at)
  ON payments TO paystream_charge;
GRANT SELECT, INSERT, UPDATE ON charge_attempts TO paystream_charge;

-- ledger: appends postings, keeps hot balances, finishes the payment. No
-- UPDATE or DELETE on entries or transactions, no access to charge attempts.
GRANT SELECT ON payments TO paystream_ledger;
GRANT UPDATE (status, outcome, error_code, updated_at) ON payments TO paystream_ledger;
GRANT SELECT, INSERT ON ledger_accounts, ledger_transactions, ledger_entries TO paystream_ledger;
GRANT UPDATE (balance) ON ledger_accounts TO paystream_ledger;
GRANT USAGE ON SEQUENCE ledger_accounts_account_id_seq, ledger_transactions_transaction_id_seq,
  ledger_entries_entry_id_seq TO paystream_ledger;
