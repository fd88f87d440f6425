-- The balance check runs once per ledger transaction, at commit. It ran
-- once per entry: four identical checks per payment, each a query run by
-- the trigger (bench/cpu.sh: ~15 µs of Postgres time per payment). A
-- committed ledger transaction is closed: entries are added to it only in
-- the database transaction that created it, so the check at that commit
-- covers every entry it will ever have. Entries stay append-only
-- (001_init.sql).
DROP TRIGGER ledger_entries_balanced ON ledger_entries;
DROP FUNCTION ledger_check_balanced();

-- Debits equal credits per currency, and there are entries at all (a
-- posting that moved nothing is a bug, not a balanced transaction).
CREATE FUNCTION ledger_check_transaction() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  bad record;
BEGIN
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
  IF NOT EXISTS (SELECT 1 FROM ledger_entries WHERE transaction_id = NEW.transaction_id) THEN
    RAISE EXCEPTION 'ledger transaction % has no entries', NEW.transaction_id
      USING ERRCODE = 'check_violation';
  END IF;
  RETURN NULL;
END $$;

CREATE CONSTRAINT TRIGGER ledger_transactions_balanced
  AFTER INSERT ON ledger_transactions
  DEFERRABLE INITIALLY DEFERRED
  FOR EACH ROW EXECUTE FUNCTION ledger_check_transaction();

-- Once per statement: every new entry belongs to a ledger transaction
-- inserted by this database transaction (its row's xmin is ours; rows of
-- other transactions that are visible to us are committed). Postings never
-- use savepoints; a ledger transaction created inside one is refused here
-- too, which fails safe.
CREATE FUNCTION ledger_refuse_late_entries() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  late bigint;
BEGIN
  SELECT e.transaction_id INTO late
    FROM new_entries e JOIN ledger_transactions t ON t.transaction_id = e.transaction_id
   WHERE t.xmin <> pg_current_xact_id()::xid
   LIMIT 1;
  IF FOUND THEN
    RAISE EXCEPTION 'ledger transaction % is closed: entries are added only in the database transaction that created it',
      late USING ERRCODE = 'check_violation';
  END IF;
  RETURN NULL;
END $$;

CREATE TRIGGER ledger_entries_closed
  AFTER INSERT ON ledger_entries
  REFERENCING NEW TABLE AS new_entries
  FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_late_entries();
