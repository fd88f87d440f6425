-- Invariant 4 for a payment the charge stage isolates (Postgres refused its
-- data alone, issue 17): it still ends with an outcome where that is safe.
--  * A payment whose charge never reached a processor (no attempt yet, or
--    its live attempt's every send provably refused) ends `failed` with
--    code `charge_data_error`, in a standalone transaction. A payment still
--    `scored` (its first attempt was refused with it) needs the move
--    scored -> failed, by charge.
--  * One the processor may hold stays `charging` with its attempt live: an
--    interim `pending` outcome is published and it is listed here, as any
--    unresolved attempt.
-- charge_unresolved also lists payments charge holds with no attempt that
-- may have reached a processor and that have not moved for 15 minutes
-- (`scored`, or `charging` with no live attempt or only one nobody
-- received): a payment isolated when even its standalone end was refused,
-- or left by a worker that stopped. processor is NULL for those with no live
-- attempt; last_error says why it is listed.
--
-- Safe on a live database: one row added to a lookup table (ON CONFLICT:
-- idempotent) and a view replaced with the same columns in the same order
-- (no lock beyond the view's own; no data rewritten).
INSERT INTO payment_status_transitions (from_status, to_status, stage) VALUES
  ('scored', 'failed', 'charge')   -- isolated before any attempt was opened
ON CONFLICT (from_status, to_status) DO NOTHING;

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
   AND greatest(p.updated_at, a.updated_at) < now() - interval '15 minutes';
