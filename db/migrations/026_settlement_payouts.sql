-- Settlement payouts (#20): `payctl reconcile --report FILE` posts each
-- processor's daily net payout once — debit `asset:cash` N, credit
-- `asset:processor_receivable:{processor}` N — through the same ledger
-- tables and balance checks as every other posting.
--
-- Once means once per (processor, payout_id), decided here: the payout row
-- and its ledger transaction are written by one statement, and the primary
-- key refuses a second row, so the same report run twice (or by two
-- operators at once) posts one transaction; the loser's statement fails
-- whole and nothing of it stays.
--
-- A payout belongs to no payment: ledger_transactions.payment_id becomes
-- NULL-able for kind 'payout' only (and only for it). Safe on a populated
-- live database: DROP NOT NULL is a catalogue change; the new CHECKs are
-- added NOT VALID and validated without blocking writes. The kind list is
-- extended from the constraint as it stands (other migrations of this
-- release may have added kinds before this one), not restated.

CREATE TABLE settlement_payouts (
  processor      text   NOT NULL CHECK (processor ~ '^[a-z0-9_]{1,32}$'),
  payout_id      text   NOT NULL CHECK (length(payout_id) BETWEEN 1 AND 255),
  day            date   NOT NULL,           -- the report's UTC day
  currency       char(3) NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
  amount_minor   bigint NOT NULL CHECK (amount_minor <> 0),  -- negative: the processor debited us
  transaction_id bigint NOT NULL UNIQUE REFERENCES ledger_transactions (transaction_id),
  report_sha256  text   NOT NULL,           -- the report file it was posted from
  posted_at      timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (processor, payout_id)
);

CREATE FUNCTION settlement_payouts_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'settlement_payouts is append-only' USING ERRCODE = 'P0001';
END $$;
CREATE TRIGGER settlement_payouts_append_only BEFORE UPDATE OR DELETE ON settlement_payouts
  FOR EACH ROW EXECUTE FUNCTION settlement_payouts_append_only();

-- 'payout' joins whatever kinds the constraint allows now.
DO $$
DECLARE
  def text;
BEGIN
  SELECT pg_get_constraintdef(oid) INTO def FROM pg_constraint
   WHERE conrelid = 'ledger_transactions'::regclass AND conname = 'ledger_transactions_kind_check';
  IF def IS NULL OR position('ARRAY[' IN def) = 0 THEN
    RAISE EXCEPTION 'ledger_transactions_kind_check has an unexpected form: %', def;
  END IF;
  IF position('''payout''' IN def) = 0 THEN
    ALTER TABLE ledger_transactions DROP CONSTRAINT ledger_transactions_kind_check;
    EXECUTE 'ALTER TABLE ledger_transactions ADD CONSTRAINT ledger_transactions_kind_check '
            || replace(def, 'ARRAY[', 'ARRAY[''payout''::text, ') || ' NOT VALID';
    ALTER TABLE ledger_transactions VALIDATE CONSTRAINT ledger_transactions_kind_check;
  END IF;
END $$;

ALTER TABLE ledger_transactions ALTER COLUMN payment_id DROP NOT NULL;
ALTER TABLE ledger_transactions ADD CONSTRAINT ledger_transactions_payout_has_no_payment
  CHECK ((kind = 'payout') = (payment_id IS NULL)) NOT VALID;
ALTER TABLE ledger_transactions VALIDATE CONSTRAINT ledger_transactions_payout_has_no_payment;

-- A payout transaction exists only with its settlement_payouts row: the
-- ledger role may insert ledger transactions (payment_id, kind), and a
-- NULL payment_id with kind 'payout' is now legal, so without this check it
-- could post cash against the receivable outside `payctl reconcile`.
-- Checked at commit (the row is written by the same statement).
CREATE FUNCTION ledger_payout_recorded() RETURNS trigger LANGUAGE plpgsql
  SECURITY DEFINER SET search_path = public, pg_temp AS $$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM settlement_payouts WHERE transaction_id = NEW.transaction_id) THEN
    RAISE EXCEPTION 'ledger transaction % is a payout without its settlement_payouts row',
      NEW.transaction_id USING ERRCODE = 'check_violation';
  END IF;
  RETURN NULL;
END $$;
REVOKE ALL ON FUNCTION ledger_payout_recorded() FROM PUBLIC;
CREATE CONSTRAINT TRIGGER ledger_transactions_payout_recorded
  AFTER INSERT ON ledger_transactions DEFERRABLE INITIALLY DEFERRED
  FOR EACH ROW WHEN (NEW.kind = 'payout') EXECUTE FUNCTION ledger_payout_recorded();

-- payctl runs as the database owner (like `payctl migrate` and the other
-- operator commands), so no stage role gains anything here: no worker may
-- post a payout.
