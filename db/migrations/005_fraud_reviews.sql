-- Review decisions: an operator approves (the payment goes on to charge)
-- or rejects (it ends `blocked`) a payment that fraud held for review.
-- One decision per payment, never changed: a second command with the same
-- decision re-publishes, the other decision is refused.
CREATE TABLE fraud_reviews (
  payment_id  text PRIMARY KEY REFERENCES payments (payment_id),
  decision    text NOT NULL CHECK (decision IN ('approve', 'reject')),
  operator    text NOT NULL,
  -- approve: the FraudAssessment forwarded to charge (decision allow,
  -- reason review_approved), re-emitted verbatim by a fraud replay
  assessment  bytea,
  decided_at  timestamptz NOT NULL DEFAULT now(),
  CHECK ((decision = 'approve') = (assessment IS NOT NULL))
);

-- fraud re-emits what an operator decided when its input is replayed.
GRANT SELECT ON fraud_reviews TO paystream_fraud;
