-- Authorization expiry (#19): an authorization whose window
-- (processor_settings, 013; 7 days by default) has passed is released by a
-- sweeper, decided here in one function and one database transaction:
--   * the payment moves to its terminal state: `expired` with nothing
--     captured, `captured` when part of it was captured (the rest released);
--   * its released amount grows by what was still open
--     (authorized − captured − released);
--   * the hold is reversed for that part in the ledger (a `release` posting
--     of the payment itself, DESIGN "Payment lifecycle": Dr
--     liability:authorized_holds, Cr asset:authorized_holds:{p});
--   * an authorization_expiries row records it — once per payment (its
--     primary key) — and is the outbox of the merchant's outcome: the
--     sweeper publishes the outcome after the commit and then stamps
--     announced_at, so a sweeper killed in between publishes it again on
--     its next run (the same outcome: at least once, never lost).
--
-- Conditional and idempotent: only an `authorized` payment past its window
-- with no capture or void in flight (capturing = releasing = 0) is taken,
-- locked with FOR UPDATE SKIP LOCKED (concurrent sweepers take disjoint
-- payments; one that sees a payment after another's commit finds it no
-- longer `authorized`) and moved by an UPDATE that re-checks every one of
-- those conditions. A capture or void accepted before the window closed is
-- left until it settles (its reservation is then 0) and swept by a later run;
-- ingest accepts none after it (ps_accept_operation: authorization_expired).
--
-- Runs as its owner (SECURITY DEFINER): the move is the function's, not a
-- stage's; it is granted to the ledger role, which `payctl expire` uses.
-- Safe on a populated live database: one new table, one new function.

CREATE TABLE authorization_expiries (
  payment_id     text PRIMARY KEY REFERENCES payments (payment_id),
  released_minor bigint NOT NULL CHECK (released_minor >= 0),
  expired_at     timestamptz NOT NULL DEFAULT now(),
  announced_at   timestamptz               -- the outcome was published (outbox)
);
CREATE INDEX authorization_expiries_unannounced ON authorization_expiries (expired_at)
  WHERE announced_at IS NULL;
CREATE TRIGGER authorization_expiries_kept BEFORE UPDATE ON authorization_expiries FOR EACH ROW
  WHEN ((NEW.payment_id, NEW.released_minor, NEW.expired_at)
        IS DISTINCT FROM (OLD.payment_id, OLD.released_minor, OLD.expired_at)
        OR (OLD.announced_at IS NOT NULL AND NEW.announced_at IS DISTINCT FROM OLD.announced_at))
  EXECUTE FUNCTION paystream_refuse('23P52', 'an expiry is recorded once; only its announcement is stamped');

-- Open authorizations by expiry: what the sweeper scans.
CREATE INDEX payments_authorized_expiring ON payments (authorization_expires_at)
  WHERE status = 'authorized';

CREATE FUNCTION ps_expire_authorizations(lim int) RETURNS TABLE (payment_id text,
                                                                 released_minor bigint)
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
  p payments;
  rest bigint;
  holds text;
BEGIN
  FOR p IN SELECT * FROM payments q
            WHERE q.status = 'authorized' AND q.authorization_expires_at <= now()
              AND q.capturing_minor = 0 AND q.releasing_minor = 0
            ORDER BY q.authorization_expires_at
            LIMIT greatest(lim, 0)
              FOR UPDATE SKIP LOCKED LOOP
    rest := p.authorized_minor - p.captured_minor - p.released_minor;
    UPDATE payments q SET released_minor = q.released_minor + rest,
           status = CASE WHEN q.captured_minor > 0 THEN 'captured' ELSE 'expired' END,
           updated_at = now()
     WHERE q.payment_id = p.payment_id AND q.status = 'authorized'
       AND q.authorization_expires_at <= now()
       AND q.capturing_minor = 0 AND q.releasing_minor = 0;
    CONTINUE WHEN NOT FOUND;
    INSERT INTO authorization_expiries (payment_id, released_minor) VALUES (p.payment_id, rest);
    IF rest > 0 THEN
      holds := 'asset:authorized_holds:' || p.processor;
      INSERT INTO ledger_accounts (name, currency, type)
        SELECT n, p.currency, split_part(n, ':', 1)
          FROM unnest(ARRAY['liability:authorized_holds', holds]) AS n
        ON CONFLICT (name, currency) DO NOTHING;
      -- The transaction and its entries in one statement (011).
      WITH tx AS (INSERT INTO ledger_transactions (payment_id, kind)
                  VALUES (p.payment_id, 'release') RETURNING transaction_id)
      INSERT INTO ledger_entries (transaction_id, account_id, currency, direction, amount_minor)
        SELECT tx.transaction_id, a.account_id, p.currency, u.d, rest
          FROM tx CROSS JOIN (VALUES ('liability:authorized_holds', 'D'), (holds, 'C')) AS u(n, d)
          JOIN ledger_accounts a ON a.name = u.n AND a.currency = p.currency;
    END IF;
    payment_id := p.payment_id;
    released_minor := rest;
    RETURN NEXT;
  END LOOP;
END $$;
REVOKE ALL ON FUNCTION ps_expire_authorizations(int) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ps_expire_authorizations(int) TO paystream_ledger;
-- The outbox: the ledger role reads what is unannounced and stamps it.
GRANT SELECT ON authorization_expiries TO paystream_ledger;
GRANT UPDATE (announced_at) ON authorization_expiries TO paystream_ledger;
