-- Invariant 7: the database guards its own state. Each stage's role may
-- write only the columns its statements write (column-level grants), and
-- triggers refuse, for every role including the owner, what no stage may
-- do: a payment status move outside the state machine, a change of a
-- payment's or an attempt's money after creation, an attempt's send counts
-- going down or refused exceeding sends, an answer rewritten after it was
-- recorded. A guard's refusal is SQLSTATE class 23 (integrity: a stage
-- isolates the one payment) with its own code, never 42501, which stays
-- the privilege system's:
--   23P51 payment status move not in payment_status_transitions
--   23P52 a value that never changes after creation was changed
--   23P53 charge attempt send counts / state move refused
--   23P54 a recorded answer or outcome rewritten
-- Also: `ledger_failed`, a charged payment the ledger refused to post
-- (isolated, outcome `failed` published), which a redrive can still post.
--
-- Safe on a live database: adds triggers and a CHECK (added NOT VALID and
-- validated, which scans without blocking writes once this commits), and
-- turns rows that a previous release isolated as `failed` with
-- `ledger_posting_failed` into `ledger_failed`.

-- ---- status values -------------------------------------------------------
ALTER TABLE payments DROP CONSTRAINT payments_status_check;
ALTER TABLE payments ADD CONSTRAINT payments_status_check CHECK (status IN
  ('received', 'scored', 'review', 'charging', 'charged', 'ledger_failed',
   'succeeded', 'declined', 'blocked', 'failed'));
-- ledger_failed carries the outcome that was published (failed); a redrive
-- that posts replaces it with succeeded.
ALTER TABLE payments DROP CONSTRAINT payments_check;
ALTER TABLE payments ADD CONSTRAINT payments_outcome_iff_answered CHECK
  ((status IN ('succeeded', 'declined', 'blocked', 'failed', 'ledger_failed')) = (outcome IS NOT NULL));
UPDATE payments SET status = 'ledger_failed', updated_at = now()
 WHERE status = 'failed' AND error_code = 'ledger_posting_failed';

-- ---- the payment state machine -------------------------------------------
-- Every allowed move and the stage that makes it. A stage role may make
-- only its own moves; other roles (the owner: migrations, payctl operator
-- commands) any move listed here. Nothing moves out of a terminal status.
CREATE TABLE payment_status_transitions (
  from_status text NOT NULL,
  to_status   text NOT NULL,
  stage       text NOT NULL CHECK (stage IN ('ingest', 'fraud', 'charge', 'ledger', 'operator')),
  PRIMARY KEY (from_status, to_status)
);
INSERT INTO payment_status_transitions (from_status, to_status, stage) VALUES
  ('received',      'scored',        'fraud'),
  ('received',      'review',        'fraud'),
  ('received',      'blocked',       'fraud'),
  ('received',      'failed',        'fraud'),      -- isolated: its assessment could not be stored
  ('review',        'scored',        'operator'),   -- payctl review approve
  ('review',        'blocked',       'operator'),   -- payctl review reject
  ('scored',        'charging',      'charge'),
  ('charging',      'charged',       'charge'),
  ('charging',      'declined',      'charge'),
  ('charging',      'failed',        'charge'),
  ('charged',       'succeeded',     'ledger'),
  ('charged',       'ledger_failed', 'ledger'),
  ('ledger_failed', 'succeeded',     'ledger');    -- a redriven posting
GRANT SELECT ON payment_status_transitions TO paystream_ingest, paystream_fraud,
  paystream_charge, paystream_ledger;

-- The stage a role writes for, or NULL for a role that is no stage's.
CREATE FUNCTION paystream_stage_of(r name) RETURNS text LANGUAGE sql IMMUTABLE AS $$
  SELECT CASE r WHEN 'paystream_ingest' THEN 'ingest' WHEN 'paystream_fraud' THEN 'fraud'
    WHEN 'paystream_charge' THEN 'charge' WHEN 'paystream_ledger' THEN 'ledger' END
$$;

CREATE FUNCTION payments_guard_transition() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  by_stage text;
  mine text := paystream_stage_of(current_user);
BEGIN
  SELECT stage INTO by_stage FROM payment_status_transitions
   WHERE from_status = OLD.status AND to_status = NEW.status;
  IF NOT FOUND OR (mine IS NOT NULL AND mine <> by_stage) THEN
    RAISE EXCEPTION 'guard: payment % may not move from % to % (as %)',
      OLD.payment_id, OLD.status, NEW.status, current_user
      USING ERRCODE = '23P51';
  END IF;
  -- The processor's answer is written once, by charge, as the payment
  -- leaves `charging`.
  IF OLD.status <> 'charging' AND (NEW.processor, NEW.processor_charge_id, NEW.fee_minor)
       IS DISTINCT FROM (OLD.processor, OLD.processor_charge_id, OLD.fee_minor) THEN
    RAISE EXCEPTION 'guard: payment % processor answer is written only when it leaves charging',
      OLD.payment_id USING ERRCODE = '23P54';
  END IF;
  RETURN NEW;
END $$;

CREATE FUNCTION paystream_refuse() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'guard: %', TG_ARGV[1] USING ERRCODE = TG_ARGV[0];
END $$;

-- A payment starts `received`, with nothing a later stage writes.
CREATE TRIGGER payments_start_received BEFORE INSERT ON payments FOR EACH ROW
  WHEN (NEW.status <> 'received' OR NEW.outcome IS NOT NULL OR NEW.error_code IS NOT NULL
        OR NEW.processor IS NOT NULL OR NEW.processor_charge_id IS NOT NULL
        OR NEW.fee_minor IS NOT NULL)
  EXECUTE FUNCTION paystream_refuse('23P51', 'a payment is created received, with no stage result');
CREATE TRIGGER payments_status_machine BEFORE UPDATE ON payments FOR EACH ROW
  WHEN (NEW.status IS DISTINCT FROM OLD.status)
  EXECUTE FUNCTION payments_guard_transition();
CREATE TRIGGER payments_request_immutable BEFORE UPDATE ON payments FOR EACH ROW
  WHEN ((NEW.payment_id, NEW.merchant_id, NEW.idempotency_key, NEW.fingerprint, NEW.customer_id,
         NEW.amount_minor, NEW.currency, NEW.payment_method, NEW.source_topic,
         NEW.source_partition, NEW.source_offset, NEW.created_at)
        IS DISTINCT FROM
        (OLD.payment_id, OLD.merchant_id, OLD.idempotency_key, OLD.fingerprint, OLD.customer_id,
         OLD.amount_minor, OLD.currency, OLD.payment_method, OLD.source_topic,
         OLD.source_partition, OLD.source_offset, OLD.created_at))
  EXECUTE FUNCTION paystream_refuse('23P52', 'a payment''s request (amount, currency, ids) never changes');
-- What a status move wrote stays: no outcome, code or answer changes
-- without a move (re-sent outcomes are byte-identical).
CREATE TRIGGER payments_answer_kept BEFORE UPDATE ON payments FOR EACH ROW
  WHEN (NEW.status = OLD.status
        AND (NEW.outcome, NEW.error_code, NEW.processor, NEW.processor_charge_id, NEW.fee_minor)
            IS DISTINCT FROM
            (OLD.outcome, OLD.error_code, OLD.processor, OLD.processor_charge_id, OLD.fee_minor))
  EXECUTE FUNCTION paystream_refuse('23P54', 'a payment''s outcome and answer change only with its status');

-- ---- charge attempts -----------------------------------------------------
CREATE TABLE charge_attempt_transitions (
  from_state text NOT NULL,
  to_state   text NOT NULL,
  PRIMARY KEY (from_state, to_state)
);
INSERT INTO charge_attempt_transitions (from_state, to_state) VALUES
  ('charging', 'succeeded'), ('charging', 'declined'), ('charging', 'failed'),
  ('charging', 'abandoned');
GRANT SELECT ON charge_attempt_transitions TO paystream_charge;

ALTER TABLE charge_attempts ADD CONSTRAINT charge_attempts_refused_le_sends
  CHECK (refused <= sends) NOT VALID;
ALTER TABLE charge_attempts VALIDATE CONSTRAINT charge_attempts_refused_le_sends;

-- An attempt is opened `charging`, unanswered, nothing refused yet, for its
-- payment's own amount and currency while the payment is being charged.
CREATE FUNCTION charge_attempts_guard_open() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  p record;
BEGIN
  IF NEW.state <> 'charging' OR NEW.refused <> 0 OR NEW.sends > 1
     OR (NEW.processor_charge_id, NEW.decline_code, NEW.fee_minor, NEW.error)
        IS DISTINCT FROM (NULL::text, NULL::text, NULL::bigint, NULL::text) THEN
    RAISE EXCEPTION 'guard: attempt %/% must open charging, unanswered, with no refused send',
      NEW.payment_id, NEW.processor USING ERRCODE = '23P53';
  END IF;
  SELECT amount_minor, currency, status INTO p FROM payments WHERE payment_id = NEW.payment_id;
  IF FOUND AND (p.amount_minor <> NEW.amount_minor OR p.currency <> NEW.currency) THEN
    RAISE EXCEPTION 'guard: attempt %/% is for % %, its payment for % %', NEW.payment_id,
      NEW.processor, NEW.amount_minor, NEW.currency, p.amount_minor, p.currency
      USING ERRCODE = '23P52';
  END IF;
  IF FOUND AND p.status NOT IN ('scored', 'charging') THEN
    RAISE EXCEPTION 'guard: payment % is % and takes no charge attempt', NEW.payment_id, p.status
      USING ERRCODE = '23P53';
  END IF;
  RETURN NEW;
END $$;

CREATE FUNCTION charge_attempts_guard_state() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM charge_attempt_transitions
                  WHERE from_state = OLD.state AND to_state = NEW.state) THEN
    RAISE EXCEPTION 'guard: attempt %/% may not move from % to %', OLD.payment_id,
      OLD.processor, OLD.state, NEW.state USING ERRCODE = '23P53';
  END IF;
  RETURN NEW;
END $$;

-- Answers are written while the attempt is open; an answered attempt
-- (no move out of its state) is frozen.
CREATE FUNCTION charge_attempts_guard_answer() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM charge_attempt_transitions WHERE from_state = OLD.state) THEN
    RAISE EXCEPTION 'guard: attempt %/% is % and its answer is kept', OLD.payment_id,
      OLD.processor, OLD.state USING ERRCODE = '23P54';
  END IF;
  RETURN NEW;
END $$;

-- Stage roles only: the owner (repairs, tests of the constraints behind
-- this guard) may write an attempt in any state.
CREATE TRIGGER charge_attempts_open BEFORE INSERT ON charge_attempts FOR EACH ROW
  WHEN (paystream_stage_of(current_user) IS NOT NULL)
  EXECUTE FUNCTION charge_attempts_guard_open();
CREATE TRIGGER charge_attempts_immutable BEFORE UPDATE ON charge_attempts FOR EACH ROW
  WHEN ((NEW.payment_id, NEW.processor, NEW.idempotency_key, NEW.amount_minor, NEW.currency,
         NEW.created_at)
        IS DISTINCT FROM
        (OLD.payment_id, OLD.processor, OLD.idempotency_key, OLD.amount_minor, OLD.currency,
         OLD.created_at))
  EXECUTE FUNCTION paystream_refuse('23P52', 'an attempt''s payment, processor, key, amount and currency never change');
CREATE TRIGGER charge_attempts_counts_grow BEFORE UPDATE ON charge_attempts FOR EACH ROW
  WHEN (NEW.sends < OLD.sends OR NEW.refused < OLD.refused)
  EXECUTE FUNCTION paystream_refuse('23P53', 'an attempt''s sends and refused only grow');
CREATE TRIGGER charge_attempts_state_machine BEFORE UPDATE ON charge_attempts FOR EACH ROW
  WHEN (NEW.state IS DISTINCT FROM OLD.state)
  EXECUTE FUNCTION charge_attempts_guard_state();
CREATE TRIGGER charge_attempts_answer_kept BEFORE UPDATE ON charge_attempts FOR EACH ROW
  WHEN ((NEW.processor_charge_id, NEW.decline_code, NEW.fee_minor, NEW.error, NEW.sends,
         NEW.refused)
        IS DISTINCT FROM
        (OLD.processor_charge_id, OLD.decline_code, OLD.fee_minor, OLD.error, OLD.sends,
         OLD.refused))
  EXECUTE FUNCTION charge_attempts_guard_answer();

-- ---- column-level grants: exactly what each stage's SQL writes -------------
-- ingest: the request part of a payment (status and every stage result
-- take their defaults), and rejections.
REVOKE INSERT ON payments FROM paystream_ingest;
GRANT INSERT (payment_id, merchant_id, idempotency_key, fingerprint, customer_id, amount_minor,
              currency, payment_method, intent, source_topic, source_partition, source_offset)
  ON payments TO paystream_ingest;
REVOKE INSERT ON rejections FROM paystream_ingest;
GRANT INSERT (rejection_id, merchant_id, idempotency_key, error_code, error_message,
              source_topic, source_partition, source_offset)
  ON rejections TO paystream_ingest;

-- fraud: its assessment (UPDATE of payments is already column-level, 004).
REVOKE INSERT ON fraud_assessments FROM paystream_fraud;
GRANT INSERT (payment_id, decision, rule_score, ml_score, combined_score, reasons, model_version,
              assessment)
  ON fraud_assessments TO paystream_fraud;

-- charge: opens attempts (count of a first send included) and records
-- sends, refusals and answers; never an attempt's amount or payment.
REVOKE INSERT, UPDATE ON charge_attempts FROM paystream_charge;
GRANT INSERT (payment_id, processor, idempotency_key, amount_minor, currency, sends)
  ON charge_attempts TO paystream_charge;
GRANT UPDATE (state, processor_charge_id, decline_code, fee_minor, error, sends, refused,
              updated_at)
  ON charge_attempts TO paystream_charge;
