-- paystream schema v1: payments and idempotency claims (ingest), fraud
-- assessments (fraud), charge attempts (charge), the double-entry ledger
-- (ledger). The database enforces the invariants itself; application code
-- is not trusted to keep them.

-- One row per (merchant, idempotency key): the claim and the payment's state.
-- fillfactor 50 keeps the frequent status updates HOT.
CREATE TABLE payments (
  payment_id          text PRIMARY KEY,
  merchant_id         text NOT NULL,
  idempotency_key     text NOT NULL CHECK (length(idempotency_key) BETWEEN 1 AND 255),
  fingerprint         text NOT NULL,
  customer_id         text NOT NULL,
  amount_minor        bigint NOT NULL CHECK (amount_minor > 0),
  currency            char(3) NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
  payment_method      text NOT NULL,
  intent              bytea NOT NULL,        -- the PaymentEvent ingest forwarded
  source_topic        text NOT NULL,         -- the claiming message
  source_partition    int NOT NULL,
  source_offset       bigint NOT NULL,
  status              text NOT NULL DEFAULT 'received' CHECK (status IN
                        ('received', 'scored', 'review', 'charging', 'charged',
                         'succeeded', 'declined', 'blocked', 'failed')),
  outcome             bytea,                 -- the terminal PaymentOutcome, once known
  error_code          text,
  processor           text,
  processor_charge_id text,
  fee_minor           bigint CHECK (fee_minor >= 0),
  created_at          timestamptz NOT NULL DEFAULT now(),
  updated_at          timestamptz NOT NULL DEFAULT now(),
  UNIQUE (merchant_id, idempotency_key),
  -- a terminal status always carries the outcome that was published for it
  CHECK ((status IN ('succeeded', 'declined', 'blocked', 'failed')) = (outcome IS NOT NULL))
) WITH (fillfactor = 50);

-- Intents that ended `rejected` (invalid, or a reused key): their terminal state.
CREATE TABLE rejections (
  rejection_id      text PRIMARY KEY,
  merchant_id       text,
  idempotency_key   text,
  error_code        text NOT NULL,
  error_message     text NOT NULL,
  source_topic      text NOT NULL,
  source_partition  int NOT NULL,
  source_offset     bigint NOT NULL,
  created_at        timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE fraud_assessments (
  payment_id      text PRIMARY KEY REFERENCES payments (payment_id),
  decision        text NOT NULL CHECK (decision IN ('allow', 'review', 'block')),
  rule_score      double precision NOT NULL,
  ml_score        double precision NOT NULL,
  combined_score  double precision NOT NULL,
  reasons         text[] NOT NULL,
  model_version   text NOT NULL,
  assessment      bytea NOT NULL,   -- the FraudAssessment as emitted, re-emitted verbatim
  created_at      timestamptz NOT NULL DEFAULT now()
);

-- One attempt per (payment, processor). The processor idempotency key makes
-- any retry of an ambiguous attempt safe; `charging` is written before the
-- request leaves.
CREATE TABLE charge_attempts (
  payment_id          text NOT NULL REFERENCES payments (payment_id),
  processor           text NOT NULL,
  idempotency_key     text NOT NULL UNIQUE,
  state               text NOT NULL DEFAULT 'charging'
                        CHECK (state IN ('charging', 'succeeded', 'declined', 'failed')),
  amount_minor        bigint NOT NULL CHECK (amount_minor > 0),
  currency            char(3) NOT NULL,
  processor_charge_id text,
  decline_code        text,
  fee_minor           bigint CHECK (fee_minor >= 0),
  error               text,
  created_at          timestamptz NOT NULL DEFAULT now(),
  updated_at          timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (payment_id, processor)
) WITH (fillfactor = 50);

-- Never charge twice: at most one successful attempt per payment.
CREATE UNIQUE INDEX charge_attempts_one_success ON charge_attempts (payment_id)
  WHERE state = 'succeeded';

-- ---- ledger ----------------------------------------------------------------

CREATE TABLE ledger_accounts (
  account_id  bigserial PRIMARY KEY,
  name        text NOT NULL,           -- e.g. asset:processor_receivable:stripe
  currency    char(3) NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
  type        text NOT NULL CHECK (type IN ('asset', 'liability', 'equity', 'revenue', 'expense')),
  balance     bigint NOT NULL DEFAULT 0, -- debits minus credits, minor units
  UNIQUE (name, currency),
  UNIQUE (account_id, currency),
  CHECK (split_part(name, ':', 1) = type)
);

CREATE TABLE ledger_transactions (
  transaction_id  bigserial PRIMARY KEY,
  payment_id      text NOT NULL REFERENCES payments (payment_id),
  kind            text NOT NULL CHECK (kind IN ('payment', 'refund', 'chargeback')),
  created_at      timestamptz NOT NULL DEFAULT now(),
  UNIQUE (payment_id, kind)             -- a payment is posted at most once per kind
);

CREATE TABLE ledger_entries (
  entry_id        bigserial PRIMARY KEY,
  transaction_id  bigint NOT NULL REFERENCES ledger_transactions (transaction_id),
  account_id      bigint NOT NULL,
  currency        char(3) NOT NULL,
  direction       char(1) NOT NULL CHECK (direction IN ('D', 'C')),
  amount_minor    bigint NOT NULL CHECK (amount_minor > 0),
  -- an entry's currency is its account's currency
  FOREIGN KEY (account_id, currency) REFERENCES ledger_accounts (account_id, currency)
);
CREATE INDEX ledger_entries_by_transaction ON ledger_entries (transaction_id);
CREATE INDEX ledger_entries_by_account ON ledger_entries (account_id);

-- Debits equal credits per currency in every transaction, checked at commit.
CREATE FUNCTION ledger_check_balanced() RETURNS trigger LANGUAGE plpgsql AS $$
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
  RETURN NULL;
END $$;

CREATE CONSTRAINT TRIGGER ledger_entries_balanced
  AFTER INSERT ON ledger_entries
  DEFERRABLE INITIALLY DEFERRED
  FOR EACH ROW EXECUTE FUNCTION ledger_check_balanced();

-- Entries are append-only: corrections are new transactions.
CREATE FUNCTION ledger_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'ledger entries are append-only (% refused)', TG_OP
    USING ERRCODE = 'insufficient_privilege';
END $$;

CREATE TRIGGER ledger_entries_append_only
  BEFORE UPDATE OR DELETE ON ledger_entries
  FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change();
CREATE TRIGGER ledger_entries_no_truncate
  BEFORE TRUNCATE ON ledger_entries
  FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_change();
CREATE TRIGGER ledger_transactions_append_only
  BEFORE UPDATE OR DELETE ON ledger_transactions
  FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change();
