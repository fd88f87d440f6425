-- Settlement by the processor's day, not ours (#20 review 5), and sale fees
-- a webhook did not carry.
--
-- 1. settlement_movements: every ledger transaction a clean settlement
--    report settled, with the payout it was settled in. `payctl reconcile
--    --report` matches each report line to our movement by identity
--    (charge/refund/dispute ids, payment id) and records the movements with
--    the payout in the statement that posts it; the primary key on the
--    transaction settles each movement in exactly one payout (a second
--    report claiming it fails whole). Which of our movements a day's report
--    must list is then decided without our posting time deciding the day:
--    a movement the processor made at 23:59:59.9 and we posted at
--    00:00:00.4 is settled by the first day's payout and never expected in
--    the next day's (see README "Settlement reconciliation").
-- 2. settlement_fees: a sale settled by a webhook that carried no fee (a
--    real Stripe charge.succeeded has none; it is on the balance
--    transaction) is stored with its fee UNKNOWN (NULL), no longer 0.
--    Reconciliation posts the report's fee for it once — debit
--    expense:processing_fees, credit asset:processor_receivable:{p}, as the
--    sale's own fee is posted — as a ledger transaction of kind
--    `settlement_fee` that exists only with its settlement_fees row; the row
--    is refused unless the payment's succeeded attempt at that processor has
--    no known fee, so a fee that differs from a known one stays a mismatch.
-- 3. The ledger kind constraint: `settlement_fee` joins the kinds of no
--    dispute; `payout`, which 026's replace() also put in the dispute-kind
--    list (harmless: no dispute posting is named `payout:<id>`), leaves it.
--
-- Safe on a populated live database: new tables; the constraint is
-- re-added NOT VALID and validated without blocking writes; the function
-- is replaced in place. Movements posted before this migration are in no
-- settlement_movements row: reconciliation's "in no payout N days later"
-- check only counts movements from the first day recorded here.

CREATE TABLE settlement_movements (
  transaction_id bigint PRIMARY KEY REFERENCES ledger_transactions (transaction_id),
  processor      text   NOT NULL CHECK (processor ~ '^[a-z0-9_]{1,32}$'),
  payout_id      text   NOT NULL CHECK (length(payout_id) BETWEEN 1 AND 255),
  day            date   NOT NULL,            -- the report's UTC day
  settled_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX settlement_movements_by_payout ON settlement_movements (processor, payout_id);

CREATE TABLE settlement_fees (
  payment_id     text   PRIMARY KEY REFERENCES payments (payment_id),
  processor      text   NOT NULL CHECK (processor ~ '^[a-z0-9_]{1,32}$'),
  fee_minor      bigint NOT NULL CHECK (fee_minor > 0),
  transaction_id bigint NOT NULL UNIQUE REFERENCES ledger_transactions (transaction_id),
  payout_id      text   NOT NULL,
  day            date   NOT NULL,
  posted_at      timestamptz NOT NULL DEFAULT now()
);

CREATE FUNCTION settlement_rows_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION '% is append-only', TG_TABLE_NAME USING ERRCODE = 'P0001';
END $$;
CREATE TRIGGER settlement_movements_append_only BEFORE UPDATE OR DELETE ON settlement_movements
  FOR EACH ROW EXECUTE FUNCTION settlement_rows_append_only();
CREATE TRIGGER settlement_fees_append_only BEFORE UPDATE OR DELETE ON settlement_fees
  FOR EACH ROW EXECUTE FUNCTION settlement_rows_append_only();

-- A fee is learned from the report only for a sale whose fee is unknown.
CREATE FUNCTION settlement_fees_unknown_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM charge_attempts
                  WHERE payment_id = NEW.payment_id AND processor = NEW.processor
                    AND state = 'succeeded' AND fee_minor IS NULL) THEN
    RAISE EXCEPTION 'payment % has no succeeded charge at % with an unknown fee',
      NEW.payment_id, NEW.processor USING ERRCODE = 'check_violation';
  END IF;
  RETURN NEW;
END $$;
CREATE TRIGGER settlement_fees_unknown_only BEFORE INSERT ON settlement_fees
  FOR EACH ROW EXECUTE FUNCTION settlement_fees_unknown_only();

-- ---- the kind list -----------------------------------------------------------
-- Edited from the constraint as it stands (other migrations of this release
-- may have changed it): `settlement_fee` into the first list (the kinds of
-- no dispute), `payout` out of the part that follows `dispute_id IS NOT NULL`.
DO $$
DECLARE
  def text;
  cut int;
  fixed text;
BEGIN
  SELECT pg_get_constraintdef(oid) INTO def FROM pg_constraint
   WHERE conrelid = 'ledger_transactions'::regclass AND conname = 'ledger_transactions_kind_check';
  cut := position('(dispute_id IS NOT NULL)' IN def);
  IF def IS NULL OR position('ARRAY[' IN def) = 0 OR cut = 0 OR position('ARRAY[' IN def) > cut THEN
    RAISE EXCEPTION 'ledger_transactions_kind_check has an unexpected form: %', def;
  END IF;
  fixed := left(def, cut - 1) || replace(substr(def, cut), '''payout''::text, ', '');
  IF position('''settlement_fee''' IN fixed) = 0 THEN
    fixed := overlay(fixed PLACING 'ARRAY[''settlement_fee''::text, ' FROM position('ARRAY[' IN fixed)
                     FOR length('ARRAY['));
  END IF;
  IF fixed <> def THEN
    ALTER TABLE ledger_transactions DROP CONSTRAINT ledger_transactions_kind_check;
    EXECUTE 'ALTER TABLE ledger_transactions ADD CONSTRAINT ledger_transactions_kind_check '
            || fixed || ' NOT VALID';
    ALTER TABLE ledger_transactions VALIDATE CONSTRAINT ledger_transactions_kind_check;
  END IF;
END $$;

-- A settlement_fee transaction exists only with its settlement_fees row (as
-- a payout only with its settlement_payouts row, 026): the ledger role may
-- insert transactions of any allowed kind. Checked at commit.
CREATE FUNCTION ledger_settlement_fee_recorded() RETURNS trigger LANGUAGE plpgsql
  SECURITY DEFINER SET search_path = public, pg_temp AS $$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM settlement_fees WHERE transaction_id = NEW.transaction_id) THEN
    RAISE EXCEPTION 'ledger transaction % is a settlement fee without its settlement_fees row',
      NEW.transaction_id USING ERRCODE = 'check_violation';
  END IF;
  RETURN NULL;
END $$;
REVOKE ALL ON FUNCTION ledger_settlement_fee_recorded() FROM PUBLIC;
CREATE CONSTRAINT TRIGGER ledger_transactions_settlement_fee_recorded
  AFTER INSERT ON ledger_transactions DEFERRABLE INITIALLY DEFERRED
  FOR EACH ROW WHEN (NEW.kind = 'settlement_fee') EXECUTE FUNCTION ledger_settlement_fee_recorded();

-- ---- a webhook-settled sale: its fee as the event says, or unknown ---------------
-- As 024, except the fee: NULL when the event carried none (was 0, which
-- reconciliation then flagged fee_differs against the report).
CREATE OR REPLACE FUNCTION ps_events_settle_charge(ev processor_events, ok boolean, fee bigint,
                                                   outcome bytea, decline text,
                                                   INOUT fx processor_event_effects)
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
  a charge_attempts;
  cid text := nullif(ev.charge_id, '');
BEGIN
  SELECT * INTO a FROM charge_attempts
   WHERE payment_id = ev.payment_id AND processor = ev.processor AND state = 'charging' FOR UPDATE;
  IF NOT FOUND OR NOT EXISTS (SELECT 1 FROM payments WHERE payment_id = ev.payment_id
                                 AND status = 'charging' AND kind = 'sale') THEN
    fx.note := 'no unsettled attempt at this processor';
  ELSIF ev.amount_minor IS DISTINCT FROM a.amount_minor OR ev.currency IS DISTINCT FROM a.currency THEN
    fx.note := 'amount or currency differs from the attempt';
  ELSIF EXISTS (SELECT 1 FROM charge_attempts WHERE payment_id = ev.payment_id AND state = 'succeeded') THEN
    fx.note := 'another attempt succeeded';
  ELSIF ok THEN
    UPDATE charge_attempts SET state = 'succeeded', processor_charge_id = cid,
           fee_minor = fee, error = NULL, updated_at = now()
     WHERE payment_id = a.payment_id AND processor = a.processor AND state = 'charging';
    UPDATE payments SET status = 'charged', processor = a.processor, processor_charge_id = cid,
           fee_minor = fee, updated_at = now()
     WHERE payment_id = a.payment_id AND status = 'charging';
    fx.effect := 'charge_settled';
    IF fee IS NULL THEN
      fx.note := 'fee unknown: posted from the settlement report';
    END IF;
  ELSIF outcome IS NULL THEN
    fx.note := 'a decline needs its outcome';
  ELSE
    UPDATE charge_attempts SET state = 'declined', processor_charge_id = cid,
           decline_code = nullif(decline, ''), updated_at = now()
     WHERE payment_id = a.payment_id AND processor = a.processor AND state = 'charging';
    UPDATE payments SET status = 'declined', outcome = ps_events_settle_charge.outcome,
           error_code = 'card_declined', processor = a.processor, processor_charge_id = cid,
           updated_at = now()
     WHERE payment_id = a.payment_id AND status = 'charging';
    fx.effect := 'charge_declined';
  END IF;
END $$;

-- payctl runs as the database owner (migration 026): no stage role gains
-- anything here.
