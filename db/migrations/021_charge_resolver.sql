-- The charge resolver and operations held like sales (issues 19, 20).
--  * charge_attempts.settled_by: who wrote an attempt's answer — 'charge'
--    (its own answer, a status query's, or its own end) or NULL: someone
--    else (the processor-events stage settling an unknown attempt from a
--    webhook, an operator). When charge's conditional record finds the
--    attempt already settled by someone else, that one emitted the
--    payment's events: charge emits nothing (no second charged event, no
--    second outcome). Attempts answered before this migration read NULL;
--    charge only consults it for an attempt it held `charging` itself.
--  * charge_unresolved also lists operations (capture, void, refund) that
--    were sent and have no definite answer (a timeout, a `pending` refund,
--    a 4xx that decides nothing): charge keeps asking their processor
--    without holding any other payment.
--
-- Safe on a live database: a nullable column without a default (catalog
-- only, no rewrite); a trigger on the attempts' state change; a view replaced with the same columns in the same
-- order plus a third branch.
ALTER TABLE charge_attempts ADD COLUMN settled_by text
  CHECK (settled_by IS NULL OR settled_by = 'charge');
-- Written by the database, not by the writer: an attempt leaving `charging`
-- is marked 'charge' when the charge stage's role moves it (its answer, a
-- status query's, its own end, a failover), NULL for anyone else. Charge's
-- statements do not name the column, so this release's charge also runs on
-- a database not yet migrated (migrate_populated.sh).
CREATE FUNCTION charge_attempts_mark_settler() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  NEW.settled_by := CASE WHEN paystream_stage_of(current_user) = 'charge' THEN 'charge' END;
  RETURN NEW;
END $$;
CREATE TRIGGER charge_attempts_settler BEFORE UPDATE ON charge_attempts FOR EACH ROW
  WHEN (OLD.state = 'charging' AND NEW.state IS DISTINCT FROM 'charging')
  EXECUTE FUNCTION charge_attempts_mark_settler();

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
       o.kind || ' ' || o.operation_id || ' sent, no definite answer yet',
       o.created_at, o.updated_at, now() - o.created_at
  FROM payment_operations o
 WHERE o.state = 'processing' AND o.sends > o.refused;
