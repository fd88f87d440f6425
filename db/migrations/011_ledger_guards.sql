-- The ledger guards its books itself.
--
-- 1. The balance check cannot be bypassed. Since 006 it ran once per
--    ledger transaction, deferred to commit; `SET CONSTRAINTS ALL
--    IMMEDIATE` fired it early and entries added afterwards in the same
--    database transaction were never checked. Now every entry queues a
--    deferred check of its ledger transaction; a check runs the sums only
--    for the transaction's newest entry and skips the others. An entry
--    added after a check ran is newer than every entry that check saw, so
--    its own event runs the sums again, whenever the checks fire. The
--    stage role cannot choose entry ids (column grants below), and ids come
--    from a sequence, so "newest" is the highest id. Cost: one indexed
--    lookup per entry instead of per transaction; still one sum per
--    transaction.
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
CREATE FUNCTION ledger_check_entry() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  bad record;
BEGIN
  IF EXISTS (SELECT 1 FROM ledger_entries
              WHERE transaction_id = NEW.transaction_id AND entry_id > NEW.entry_id) THEN
    RETURN NULL;  -- a newer entry's own check covers this one
  END IF;
  SELECT currency, sum(CASE direction WHEN 'D' THEN amount_minor ELSE -amount_minor END) AS net
    INTO bad
    FROM ledger_entries
   WHERE transaction_id = NEW.transaction_id
   GROUP BY currency
  HAVING sum(CASE direction WHEN 'D' THEN amount_minor ELSE -amount_minor END) <> 0
   LIMIT 1;
  IF FOUND THEN
    RAISE EXCEPTION 'ledger transaction % is unbalanced in %: debits - credits = %',
      NEW.transaction_id, bad.currency, bad.net
      USING ERRCODE = 'check_violation';
  END IF;
  RETURN NULL;
END $$;

CREATE CONSTRAINT TRIGGER ledger_entries_balanced
  AFTER INSERT ON ledger_entries
  DEFERRABLE INITIALLY DEFERRED
  FOR EACH ROW EXECUTE FUNCTION ledger_check_entry();

-- The per-transaction trigger of 006 keeps one duty: a transaction has
-- entries at all (no entries queue no entry check; entries are never
-- deleted, so an early firing cannot be undone).
CREATE OR REPLACE FUNCTION ledger_check_transaction() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM ledger_entries WHERE transaction_id = NEW.transaction_id) THEN
    RAISE EXCEPTION 'ledger transaction % has no entries', NEW.transaction_id
      USING ERRCODE = 'check_violation';
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
