-- Charge attempts the processor may hold without a definite answer: live
-- (`charging`) and sent at least once more than provably refused. Such an
-- attempt is never given up or charged elsewhere; the charge worker keeps
-- retrying it with the same key (publishing an interim `pending` outcome
-- past PAYSTREAM_CHARGE_DEADLINE_MS) until the processor's own answer
-- settles it. Operators list them with `payctl charges unresolved`.
-- (A view: no column or grant of its own; SELECT on it needs SELECT on
-- payments and charge_attempts, which only the owner and charge have.)
CREATE VIEW charge_unresolved AS
SELECT a.payment_id, p.merchant_id, p.idempotency_key, a.processor,
       a.idempotency_key AS processor_idempotency_key, a.amount_minor, a.currency,
       a.sends, a.refused, a.error AS last_error, a.created_at, a.updated_at,
       now() - a.created_at AS age
  FROM charge_attempts a
  JOIN payments p USING (payment_id)
 WHERE a.state = 'charging' AND a.sends > a.refused;
