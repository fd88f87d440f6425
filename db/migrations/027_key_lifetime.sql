-- The processor's idempotency-key lifetime (#20 review 2: double charge).
-- A processor forgets an idempotency key after a while (Stripe: keys may be
-- pruned once they are at least 24 hours old; PayPal: 6 hours for Orders
-- v2 create/authorize, 45 days for Payments v2 refunds). Past that, a status
-- query's "key unknown" proves nothing, and a re-send with the same key may
-- be executed a second time. So an attempt or operation whose FIRST send may
-- have reached the processor longer ago than the lifetime (less a margin) is
-- never sent again: only a status search by our own id, a webhook or the
-- settlement report settle it (charge: services/charge/charge_resolve.h).
--
--  * processor_settings.idempotency_key_lifetime: the processor's documented
--    retention, default 24 hours (Stripe). Set it to 6 hours for a
--    PayPal-like processor (the charge worker also caps a PayPal-flavour
--    processor at 6 hours whatever the row says: a wrong row can only make
--    it more careful). A processor without a row gets 24 hours.
--  * ps_key_resend_window(processor): how long after the first send a
--    re-send is still allowed: the lifetime less a margin of
--    least(1 hour, lifetime / 10) — 23 h for Stripe, 5 h 24 min for PayPal.
--    The margin covers the clocks (Postgres' now() against the processor's),
--    the time a re-send takes to arrive, and a processor that prunes early.
--  * first_sent_at on charge_attempts and payment_operations: set by the
--    database (never by a writer) at the first counted send, then kept. A
--    row sent before this migration reads its created_at (never later than
--    its first send: the safe side).
--  * A guard on both tables skips (returns no row for) an UPDATE that counts
--    a further send of a row an earlier send of which may have arrived
--    (sends > refused) once the window has passed: the counting statements
--    RETURN the rows they counted, and the charge worker sends only those.
--    The worker stops earlier on its own (same window, its flavour caps);
--    the guard is the database's word for any writer.
--  * charge_unresolved shows an operation's error_message (charge writes why
--    it holds one: past the key lifetime, a search that found nothing, a
--    missing resource after an earlier send) in last_error.
--
-- Safe on a populated live database: a column with a constant default on a
-- small settings table; nullable columns without defaults (catalog only, no
-- rewrite); no backfill (NULL reads as created_at); triggers and a view
-- replaced with the same columns in the same order.

ALTER TABLE processor_settings
  ADD COLUMN idempotency_key_lifetime interval NOT NULL DEFAULT interval '24 hours'
    CHECK (idempotency_key_lifetime > interval '0');

CREATE FUNCTION ps_key_resend_window(proc text) RETURNS interval
  LANGUAGE sql STABLE AS $$
  SELECT l - least(interval '1 hour', l / 10)
    FROM (SELECT coalesce((SELECT idempotency_key_lifetime FROM processor_settings
                            WHERE processor = proc), interval '24 hours') AS l) s
$$;
GRANT EXECUTE ON FUNCTION ps_key_resend_window(text) TO paystream_charge;

ALTER TABLE charge_attempts ADD COLUMN first_sent_at timestamptz;
ALTER TABLE payment_operations ADD COLUMN first_sent_at timestamptz;

-- first_sent_at is the database's: the first counted send's transaction
-- time (never after the request left), then never changed.
CREATE FUNCTION paystream_stamp_first_send() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'INSERT' THEN
    NEW.first_sent_at := CASE WHEN NEW.sends > 0 THEN now() END;
  ELSE
    NEW.first_sent_at := CASE WHEN OLD.first_sent_at IS NOT NULL THEN OLD.first_sent_at
                              WHEN OLD.sends > 0 THEN OLD.created_at
                              WHEN NEW.sends > 0 THEN now() END;
  END IF;
  RETURN NEW;
END $$;
CREATE TRIGGER charge_attempts_first_send BEFORE INSERT ON charge_attempts FOR EACH ROW
  EXECUTE FUNCTION paystream_stamp_first_send();
CREATE TRIGGER charge_attempts_first_send_kept BEFORE UPDATE ON charge_attempts FOR EACH ROW
  WHEN (NEW.sends IS DISTINCT FROM OLD.sends OR NEW.first_sent_at IS DISTINCT FROM OLD.first_sent_at)
  EXECUTE FUNCTION paystream_stamp_first_send();
CREATE TRIGGER payment_operations_first_send BEFORE INSERT ON payment_operations FOR EACH ROW
  EXECUTE FUNCTION paystream_stamp_first_send();
CREATE TRIGGER payment_operations_first_send_kept BEFORE UPDATE ON payment_operations
  FOR EACH ROW
  WHEN (NEW.sends IS DISTINCT FROM OLD.sends OR NEW.first_sent_at IS DISTINCT FROM OLD.first_sent_at)
  EXECUTE FUNCTION paystream_stamp_first_send();

-- No re-send past the window of a row an earlier send of which may have
-- arrived: the counting UPDATE skips the row (the writer sees no row counted
-- and sends nothing).
CREATE FUNCTION paystream_no_late_resend() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF now() >= coalesce(OLD.first_sent_at, OLD.created_at) + ps_key_resend_window(OLD.processor)
  THEN
    RETURN NULL;
  END IF;
  RETURN NEW;
END $$;
CREATE TRIGGER charge_attempts_no_late_resend BEFORE UPDATE ON charge_attempts FOR EACH ROW
  WHEN (NEW.sends > OLD.sends AND OLD.sends > OLD.refused)
  EXECUTE FUNCTION paystream_no_late_resend();
CREATE TRIGGER payment_operations_no_late_resend BEFORE UPDATE ON payment_operations
  FOR EACH ROW
  WHEN (NEW.sends > OLD.sends AND OLD.sends > OLD.refused)
  EXECUTE FUNCTION paystream_no_late_resend();

CREATE OR REPLACE VIEW charge_unresolved AS
SELECT a.payment_id, p.merchant_id, p.idempotency_key, a.processor,
       a.idempotency_key AS processor_idempotency_key, a.amount_minor, a.currency,
       a.sends, a.refused, a.error AS last_error, a.created_at, a.updated_at,
       now() - a.created_at AS age
  FROM charge_attempts a
  JOIN payments p USING (payment_id)
 WHERE a.state = 'charging' AND a.sends > a.refused
UNION ALL
SELECT p.payment_id, p.merchant_id, p.idempotency_key, a.processor,
       a.idempotency_key, p.amount_minor, p.currency,
       coalesce(a.sends, 0), coalesce(a.refused, 0),
       'stuck ' || p.status || CASE WHEN a.payment_id IS NULL THEN ' with no live attempt'
                                    ELSE ' with an attempt nobody received' END,
       p.updated_at, greatest(p.updated_at, a.updated_at),
       now() - greatest(p.updated_at, a.updated_at)
  FROM payments p
  LEFT JOIN charge_attempts a ON a.payment_id = p.payment_id AND a.state = 'charging'
 WHERE p.status IN ('scored', 'charging')
   AND coalesce(a.sends, 0) <= coalesce(a.refused, 0)
   AND greatest(p.updated_at, a.updated_at) < now() - interval '15 minutes'
UNION ALL
SELECT o.payment_id, o.merchant_id, o.idempotency_key, o.processor,
       o.processor_key, o.amount_minor, o.currency,
       o.sends, o.refused,
       o.kind || ' ' || o.operation_id || ' sent, '
         || coalesce(o.error_message, 'no definite answer yet'),
       o.created_at, o.updated_at, now() - o.created_at
  FROM payment_operations o
 WHERE o.state = 'processing' AND o.sends > o.refused;
