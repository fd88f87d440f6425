-- The ledger guards its books itself.
--
-- 1. The balance check cannot be bypassed. Since 006 it runs once per
--    ledger transaction, deferred to commit; `SET CONSTRAINTS ALL
--    IMMEDIATE` fired it early (at the end of the statement that created
--    the ledger transaction) and entries added by later statements of the
--    same database transaction were never checked. Now a ledger
--    transaction's entries are inserted by the very statement that creates
--    it (one INSERT ... WITH, as the ledger posts): whenever its check
--    fires, at commit or early, it has seen every entry the transaction
--    will ever have. Still one check per ledger transaction; one lookup
--    per statement to compare command ids (cmin).
-- 2. Balances change only with their entries, in the same statement: a
--    trigger on ledger_entries adds each statement's entries to their
--    accounts' balances (summed per account, once per statement); nobody
--    updates a balance directly (a trigger refuses it, even for the owner)
--    and the ledger role has no UPDATE on accounts at all. A new account
--    starts at zero.
-- 3. The ledger posts what Postgres recorded: it reads the payment's amount
--    and currency and the succeeded attempt's processor and fee (column
--    SELECT on charge_attempts).
--
-- Deploy with the ledger worker of this release: a previous worker's own
-- balance UPDATE is refused (no privilege), so stop the ledger workers,
-- migrate, start the new ones.

-- ---- 1. an unbypassable balance check --------------------------------------
-- Once per statement: every new entry belongs to a ledger transaction that
-- this database transaction (xmin, as in 006) and this very statement
-- (cmin: the command id of the entries' own insert) created.
CREATE OR REPLACE FUNCTION ledger_refuse_late_entries() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  stmt cid;
  late bigint;
BEGIN
  SELECT e.cmin INTO stmt FROM ledger_entries e
   WHERE e.entry_id = (SELECT min(entry_id) FROM new_entries);
  SELECT n.transaction_id INTO late
    FROM new_entries n JOIN ledger_transactions t ON t.transaction_id = n.transaction_id
   WHERE t.xmin <> pg_current_xact_id()::xid OR NOT t.cmin = stmt
   LIMIT 1;
  IF FOUND THEN
    RAISE EXCEPTION 'ledger transaction % is closed: entries are added only by the statement that creates it',
      late USING ERRCODE = 'check_violation';
  END IF;
  RETURN NULL;
END $$;

-- ---- 2. balances move with their entries -----------------------------------
-- SECURITY DEFINER: runs as the owner, so the ledger role needs no UPDATE
-- on accounts (nor may it lock them FOR UPDATE itself).
CREATE FUNCTION ledger_apply_entries() RETURNS trigger LANGUAGE plpgsql
  SECURITY DEFINER SET search_path = public, pg_temp AS $$
BEGIN
  -- Lock in id order: two posters on the same hot accounts queue instead
  -- of deadlocking. NO KEY UPDATE (what the balance UPDATE takes anyway)
  -- does not wait for the KEY SHARE locks the entries' foreign key checks
  -- took on the same accounts.
  PERFORM 1 FROM ledger_accounts
    WHERE account_id IN (SELECT account_id FROM new_entries)
    ORDER BY account_id FOR NO KEY UPDATE;
  UPDATE ledger_accounts a SET balance = a.balance + d.delta
    FROM (SELECT account_id, sum(CASE direction WHEN 'D' THEN amount_minor
                                 ELSE -amount_minor END) AS delta
            FROM new_entries GROUP BY account_id) d
   WHERE a.account_id = d.account_id;
  RETURN NULL;
END $$;
REVOKE ALL ON FUNCTION ledger_apply_entries() FROM PUBLIC;

CREATE TRIGGER ledger_entries_move_balances
  AFTER INSERT ON ledger_entries
  REFERENCING NEW TABLE AS new_entries
  FOR EACH STATEMENT EXECUTE FUNCTION ledger_apply_entries();

-- A balance changes only from inside that trigger (trigger depth 1 when the
-- UPDATE's own triggers are considered); a direct UPDATE is at depth 0.
CREATE TRIGGER ledger_accounts_balance_from_entries BEFORE UPDATE ON ledger_accounts
  FOR EACH ROW
  WHEN (NEW.balance IS DISTINCT FROM OLD.balance AND pg_trigger_depth() = 0)
  EXECUTE FUNCTION paystream_refuse('23P55', 'an account balance changes only with its entries');
CREATE TRIGGER ledger_accounts_fixed BEFORE UPDATE ON ledger_accounts FOR EACH ROW
  WHEN ((NEW.account_id, NEW.name, NEW.currency, NEW.type)
        IS DISTINCT FROM (OLD.account_id, OLD.name, OLD.currency, OLD.type))
  EXECUTE FUNCTION paystream_refuse('23P52', 'an account''s name, currency and type never change');
CREATE TRIGGER ledger_accounts_open_at_zero BEFORE INSERT ON ledger_accounts FOR EACH ROW
  WHEN (NEW.balance <> 0)
  EXECUTE FUNCTION paystream_refuse('23P55', 'an account opens with balance 0');

-- ---- grants ------------------------------------------------------------------
REVOKE INSERT, UPDATE ON ledger_accounts FROM paystream_ledger;
GRANT INSERT (name, currency, type) ON ledger_accounts TO paystream_ledger;
REVOKE INSERT ON ledger_transactions FROM paystream_ledger;
GRANT INSERT (payment_id, kind) ON ledger_transactions TO paystream_ledger;
REVOKE INSERT ON ledger_entries FROM paystream_ledger;
GRANT INSERT (transaction_id, account_id, currency, direction, amount_minor)
  ON ledger_entries TO paystream_ledger;
-- What it posts from: the succeeded attempt's processor and fee.
GRANT SELECT (payment_id, processor, state, fee_minor, processor_charge_id)
  ON charge_attempts TO paystream_ledger;
