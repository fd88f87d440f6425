-- Claim retention: a claim (merchant, key, fingerprint, outcome) is kept for
-- as long as its payment, so a duplicate arriving at any time is answered
-- and never charged again. What ages out is the request payload, which
-- carries personal data (IP, email, device): `payctl idempotency prune`
-- clears it for finished payments and deletes old rejections.
ALTER TABLE payments ALTER COLUMN intent DROP NOT NULL;
ALTER TABLE payments ADD COLUMN intent_pruned_at timestamptz;
CREATE INDEX rejections_by_scope ON rejections (merchant_id, idempotency_key);
