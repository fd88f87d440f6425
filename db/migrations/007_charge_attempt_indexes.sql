-- An answer changes an attempt's state, a column in partial-index
-- predicates, so it is never a HOT update: every index of charge_attempts
-- gets a new entry. Two of the four indexes are implied by the others:
-- * charge_attempts_one_success (at most one succeeded attempt per payment)
--   follows from charge_attempts_one_live (at most one attempt per payment
--   that is charging or succeeded);
-- * UNIQUE (idempotency_key): the key is derived from the primary key
--   (payment_id, processor). A CHECK now says so, and that payment ids hold
--   no ':' (processor names are [a-z0-9_]), which makes the derivation
--   one-to-one: a unique primary key is a unique idempotency key.
-- The CHECK validates existing rows (one scan of charge_attempts under the
-- migration's lock); on a large table, add it NOT VALID and VALIDATE it
-- separately.
ALTER TABLE charge_attempts ADD CONSTRAINT charge_attempts_key_derived
  CHECK (strpos(payment_id, ':') = 0
         AND idempotency_key = 'paystream:' || payment_id || ':' || processor);
ALTER TABLE charge_attempts DROP CONSTRAINT charge_attempts_idempotency_key_key;
DROP INDEX charge_attempts_one_success;
