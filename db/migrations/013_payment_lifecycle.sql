-- Payment lifecycle (#19): authorizations, captures, voids, refunds.
--
-- Money rules live here, decided by conditional writes on the payment's
-- amounts and guarded by CHECK constraints (DESIGN invariant 6):
--   captured + capturing + released + releasing <= authorized <= amount
--   refunded + refunding <= captured - disputed
-- `capturing`, `refunding` and `releasing` are what accepted operations
-- reserved and the processor has not answered yet: an operation is accepted
-- only by an UPDATE ... WHERE <it fits> (ps_accept_operation below), so two
-- refunds racing cannot both pass; a declined operation gives its
-- reservation back, a succeeded one moves it to captured/refunded/released.
--
-- Every operation (capture, void, refund) is a payment_operations row with
-- its own idempotency key per merchant and a state machine guarded like
-- payments' (009). The ledger posts one transaction per money movement:
-- ledger_transactions.operation_id names the operation a posting is for.
--
-- Safe on a populated live database: new columns have constant defaults
-- (no rewrite), CHECKs are added NOT VALID and then validated, succeeded
-- sales are backfilled as authorized = captured = amount, and a trigger
-- fills those amounts for every payment charged from now on, whichever
-- release's charge worker charged it. The ledger's sale posting keeps its
-- (payment_id, kind) uniqueness as a partial index for postings of no
-- operation: deploy with this release's ledger (its ON CONFLICT names that
-- index's predicate), like 011.

-- ---- payments: request kind and amounts ------------------------------------
ALTER TABLE payments
  ADD COLUMN kind text NOT NULL DEFAULT 'sale',
  ADD COLUMN authorized_minor bigint NOT NULL DEFAULT 0,
  ADD COLUMN captured_minor bigint NOT NULL DEFAULT 0,
  ADD COLUMN capturing_minor bigint NOT NULL DEFAULT 0,
  ADD COLUMN refunded_minor bigint NOT NULL DEFAULT 0,
  ADD COLUMN refunding_minor bigint NOT NULL DEFAULT 0,
  ADD COLUMN released_minor bigint NOT NULL DEFAULT 0,
  ADD COLUMN releasing_minor bigint NOT NULL DEFAULT 0,
  ADD COLUMN disputed_minor bigint NOT NULL DEFAULT 0,
  ADD COLUMN authorization_expires_at timestamptz;

ALTER TABLE payments ADD CONSTRAINT payments_kind_check
  CHECK (kind IN ('sale', 'authorize')) NOT VALID;
ALTER TABLE payments ADD CONSTRAINT payments_amounts_nonnegative
  CHECK (authorized_minor >= 0 AND captured_minor >= 0 AND capturing_minor >= 0
         AND refunded_minor >= 0 AND refunding_minor >= 0 AND released_minor >= 0
         AND releasing_minor >= 0 AND disputed_minor >= 0) NOT VALID;
ALTER TABLE payments ADD CONSTRAINT payments_authorized_le_amount
  CHECK (authorized_minor <= amount_minor) NOT VALID;
ALTER TABLE payments ADD CONSTRAINT payments_captured_le_authorized
  CHECK (captured_minor + capturing_minor + released_minor + releasing_minor <= authorized_minor)
  NOT VALID;
ALTER TABLE payments ADD CONSTRAINT payments_refunded_le_captured
  CHECK (refunded_minor + refunding_minor <= captured_minor - disputed_minor) NOT VALID;

ALTER TABLE payments DROP CONSTRAINT payments_status_check;
ALTER TABLE payments ADD CONSTRAINT payments_status_check CHECK (status IN
  ('received', 'scored', 'review', 'charging', 'charged', 'ledger_failed',
   'succeeded', 'declined', 'blocked', 'failed',
   'authorized', 'captured', 'voided', 'expired')) NOT VALID;
-- An authorization's outcome (the authorize request's answer) stays through
-- its later states.
ALTER TABLE payments DROP CONSTRAINT payments_outcome_iff_answered;
ALTER TABLE payments ADD CONSTRAINT payments_outcome_iff_answered CHECK
  ((status IN ('succeeded', 'declined', 'blocked', 'failed', 'ledger_failed',
               'authorized', 'captured', 'voided', 'expired')) = (outcome IS NOT NULL)) NOT VALID;

-- Sales charged before this migration: the whole amount authorized and captured.
UPDATE payments SET authorized_minor = amount_minor, captured_minor = amount_minor
 WHERE status IN ('charged', 'ledger_failed', 'succeeded');

ALTER TABLE payments VALIDATE CONSTRAINT payments_kind_check;
ALTER TABLE payments VALIDATE CONSTRAINT payments_amounts_nonnegative;
ALTER TABLE payments VALIDATE CONSTRAINT payments_authorized_le_amount;
ALTER TABLE payments VALIDATE CONSTRAINT payments_captured_le_authorized;
ALTER TABLE payments VALIDATE CONSTRAINT payments_refunded_le_captured;
ALTER TABLE payments VALIDATE CONSTRAINT payments_status_check;
ALTER TABLE payments VALIDATE CONSTRAINT payments_outcome_iff_answered;

-- kind never changes; a payment is created with no amounts moved.
CREATE OR REPLACE FUNCTION payments_guard_created_empty() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF (NEW.authorized_minor, NEW.captured_minor, NEW.capturing_minor, NEW.refunded_minor,
      NEW.refunding_minor, NEW.released_minor, NEW.releasing_minor, NEW.disputed_minor)
     IS DISTINCT FROM (0::bigint, 0::bigint, 0::bigint, 0::bigint, 0::bigint, 0::bigint,
                       0::bigint, 0::bigint)
     OR NEW.authorization_expires_at IS NOT NULL THEN
    RAISE EXCEPTION 'guard: payment % is created with no money moved', NEW.payment_id
      USING ERRCODE = '23P51';
  END IF;
  RETURN NEW;
END $$;
CREATE TRIGGER payments_created_empty BEFORE INSERT ON payments FOR EACH ROW
  EXECUTE FUNCTION payments_guard_created_empty();
CREATE TRIGGER payments_kind_immutable BEFORE UPDATE ON payments FOR EACH ROW
  WHEN (NEW.kind IS DISTINCT FROM OLD.kind)
  EXECUTE FUNCTION paystream_refuse('23P52', 'a payment''s kind never changes');

-- Authorization window per processor (card networks: ~7 days for
-- customer-initiated authorizations). A processor without a row gets 7 days.
CREATE TABLE processor_settings (
  processor            text PRIMARY KEY,
  authorization_window interval NOT NULL CHECK (authorization_window > interval '0')
);

-- The charge answer fixes what was authorized and captured, whichever
-- release's worker wrote it: a sale authorizes and captures its amount, an
-- authorization holds it until it expires.
CREATE FUNCTION payments_fill_charged() RETURNS trigger LANGUAGE plpgsql
  SECURITY DEFINER SET search_path = public, pg_temp AS $$
BEGIN
  NEW.authorized_minor := NEW.amount_minor;
  IF NEW.kind = 'sale' THEN
    NEW.captured_minor := NEW.amount_minor;
  ELSE
    NEW.authorization_expires_at := now() + coalesce(
      (SELECT authorization_window FROM processor_settings WHERE processor = NEW.processor),
      interval '7 days');
  END IF;
  RETURN NEW;
END $$;
REVOKE ALL ON FUNCTION payments_fill_charged() FROM PUBLIC;
CREATE TRIGGER payments_charged_amounts BEFORE UPDATE ON payments FOR EACH ROW
  WHEN (OLD.status = 'charging' AND NEW.status = 'charged')
  EXECUTE FUNCTION payments_fill_charged();

-- ---- the payment state machine, extended ------------------------------------
INSERT INTO payment_status_transitions (from_status, to_status, stage) VALUES
  ('charged',       'authorized', 'ledger'),    -- the hold is posted
  ('ledger_failed', 'authorized', 'ledger'),    -- a redriven hold posting
  ('authorized',    'captured',   'charge'),    -- nothing left to capture (final or full capture,
                                                 -- or a void after a partial capture)
  ('authorized',    'voided',     'charge'),    -- voided with nothing captured
  ('authorized',    'expired',    'charge');    -- released by the expiry sweeper (runs as charge)

-- ---- operations ---------------------------------------------------------------
CREATE TABLE payment_operations (
  operation_id      text PRIMARY KEY,
  merchant_id       text NOT NULL,
  idempotency_key   text NOT NULL CHECK (length(idempotency_key) BETWEEN 1 AND 255),
  fingerprint       text NOT NULL,
  kind              text NOT NULL CHECK (kind IN ('capture', 'void', 'refund')),
  payment_ref       text NOT NULL,              -- the payment as the request named it ...
  payment_ref_by    text NOT NULL CHECK (payment_ref_by IN ('key', 'id')),  -- ... by key or by id
  payment_id        text REFERENCES payments (payment_id),  -- NULL: payment_not_found
  amount_minor      bigint NOT NULL CHECK (amount_minor >= 0),  -- void: what it releases
  currency          char(3) NOT NULL,
  final_capture     boolean NOT NULL DEFAULT false,
  state             text NOT NULL DEFAULT 'received' CHECK (state IN
                      ('received', 'accepted', 'rejected', 'processing', 'succeeded',
                       'declined', 'posted')),
  error_code        text,
  error_message     text,
  processor         text,
  processor_key     text UNIQUE,                -- idempotency header sent to the processor
  processor_target  text,                       -- what the request named (charge/capture id), fixed at the first send
  processor_op_id   text,
  decline_code      text,
  fee_minor         bigint CHECK (fee_minor >= 0),
  sends             int NOT NULL DEFAULT 0 CHECK (sends >= 0),
  refused           int NOT NULL DEFAULT 0 CHECK (refused >= 0 AND refused <= sends),
  -- the payment's amounts when the operation was decided (its outcome's)
  result_authorized_minor bigint,
  result_captured_minor   bigint,
  result_refunded_minor   bigint,
  request           bytea NOT NULL,             -- the PaymentEvent ingest forwarded
  source_topic      text NOT NULL,
  source_partition  int NOT NULL,
  source_offset     bigint NOT NULL,
  created_at        timestamptz NOT NULL DEFAULT now(),
  updated_at        timestamptz NOT NULL DEFAULT now(),
  UNIQUE (merchant_id, idempotency_key),
  CHECK (state <> 'rejected' OR error_code IS NOT NULL),
  CHECK (state NOT IN ('accepted', 'processing', 'succeeded', 'posted') OR error_code IS NULL),
  CHECK (state IN ('received', 'rejected') OR payment_id IS NOT NULL)
) WITH (fillfactor = 50);
CREATE INDEX payment_operations_by_payment ON payment_operations (payment_id, created_at);
-- An operation's idempotency key is scoped to the merchant's operations
-- (payments' keys are a scope of their own).

CREATE TABLE payment_operation_transitions (
  from_state text NOT NULL,
  to_state   text NOT NULL,
  stage      text NOT NULL CHECK (stage IN ('ingest', 'charge', 'ledger', 'operator')),
  PRIMARY KEY (from_state, to_state)
);
INSERT INTO payment_operation_transitions (from_state, to_state, stage) VALUES
  ('received',   'accepted',   'ingest'),   -- its amount reserved on the payment
  ('received',   'rejected',   'ingest'),   -- refused with a code; nothing reserved
  ('accepted',   'processing', 'charge'),   -- durable before the processor is called
  ('processing', 'succeeded',  'charge'),   -- the processor did it: reservation -> done
  ('processing', 'declined',   'charge'),   -- the processor refused: reservation given back
  ('succeeded',  'posted',     'ledger');   -- its posting is in the books; outcome published
GRANT SELECT ON payment_operation_transitions TO paystream_ingest, paystream_charge,
  paystream_ledger;

CREATE FUNCTION payment_operations_guard_state() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  by_stage text;
  mine text := paystream_stage_of(current_user);
BEGIN
  SELECT stage INTO by_stage FROM payment_operation_transitions
   WHERE from_state = OLD.state AND to_state = NEW.state;
  IF NOT FOUND OR (mine IS NOT NULL AND mine <> by_stage) THEN
    RAISE EXCEPTION 'guard: operation % may not move from % to % (as %)',
      OLD.operation_id, OLD.state, NEW.state, current_user USING ERRCODE = '23P51';
  END IF;
  RETURN NEW;
END $$;
CREATE TRIGGER payment_operations_state_machine BEFORE UPDATE ON payment_operations FOR EACH ROW
  WHEN (NEW.state IS DISTINCT FROM OLD.state)
  EXECUTE FUNCTION payment_operations_guard_state();
CREATE TRIGGER payment_operations_start_received BEFORE INSERT ON payment_operations FOR EACH ROW
  WHEN (NEW.state <> 'received' OR NEW.error_code IS NOT NULL OR NEW.processor_op_id IS NOT NULL
        OR NEW.fee_minor IS NOT NULL OR NEW.sends <> 0 OR NEW.refused <> 0)
  EXECUTE FUNCTION paystream_refuse('23P51', 'an operation is created received, with no stage result');
CREATE TRIGGER payment_operations_request_immutable BEFORE UPDATE ON payment_operations
  FOR EACH ROW
  WHEN ((NEW.operation_id, NEW.merchant_id, NEW.idempotency_key, NEW.fingerprint, NEW.kind,
         NEW.payment_ref, NEW.payment_ref_by, NEW.currency, NEW.final_capture, NEW.request, NEW.source_topic,
         NEW.source_partition, NEW.source_offset, NEW.created_at)
        IS DISTINCT FROM
        (OLD.operation_id, OLD.merchant_id, OLD.idempotency_key, OLD.fingerprint, OLD.kind,
         OLD.payment_ref, OLD.payment_ref_by, OLD.currency, OLD.final_capture, OLD.request, OLD.source_topic,
         OLD.source_partition, OLD.source_offset, OLD.created_at)
        OR (OLD.state <> 'received' AND (NEW.payment_id, NEW.amount_minor)
              IS DISTINCT FROM (OLD.payment_id, OLD.amount_minor)))
  EXECUTE FUNCTION paystream_refuse('23P52', 'an operation''s request never changes');
CREATE TRIGGER payment_operations_counts_grow BEFORE UPDATE ON payment_operations FOR EACH ROW
  WHEN (NEW.sends < OLD.sends OR NEW.refused < OLD.refused)
  EXECUTE FUNCTION paystream_refuse('23P53', 'an operation''s sends and refused only grow');
-- Every retry under the same processor key names the same target.
CREATE TRIGGER payment_operations_target_kept BEFORE UPDATE ON payment_operations FOR EACH ROW
  WHEN (OLD.processor_target IS NOT NULL AND NEW.processor_target IS DISTINCT FROM OLD.processor_target)
  EXECUTE FUNCTION paystream_refuse('23P52', 'an operation''s processor target never changes');
-- Answers are written on the move that decides them (or while processing).
CREATE TRIGGER payment_operations_answer_kept BEFORE UPDATE ON payment_operations FOR EACH ROW
  WHEN (OLD.state NOT IN ('received', 'processing')
        AND (NEW.error_code, NEW.processor, NEW.processor_op_id, NEW.decline_code, NEW.fee_minor,
             NEW.result_authorized_minor, NEW.result_captured_minor, NEW.result_refunded_minor)
            IS DISTINCT FROM
            (OLD.error_code, OLD.processor, OLD.processor_op_id, OLD.decline_code, OLD.fee_minor,
             OLD.result_authorized_minor, OLD.result_captured_minor, OLD.result_refunded_minor))
  EXECUTE FUNCTION paystream_refuse('23P54', 'an operation''s answer is kept');

-- ---- accepting an operation: the conditional write that decides -------------
-- Called by ingest for an operation row it has just inserted (`received`).
-- Finds the payment (the merchant's own, by key or id), reserves the
-- operation's amount with one conditional UPDATE and moves the operation to
-- `accepted`; or moves it to `rejected` with the code. The code of a refusal
-- is read after the conditional write failed; the write alone decided.
-- Idempotent: an operation no longer `received` is returned as it stands.
CREATE FUNCTION ps_accept_operation(op text) RETURNS TABLE (state text, error_code text)
  LANGUAGE plpgsql AS $$
DECLARE
  o payment_operations;
  p payments;
  code text;
  msg text;
  n bigint;
  pid text;
BEGIN
  SELECT * INTO o FROM payment_operations WHERE operation_id = op FOR UPDATE;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'operation % does not exist', op USING ERRCODE = 'no_data_found';
  END IF;
  IF o.state <> 'received' THEN
    RETURN QUERY SELECT o.state, o.error_code;
    RETURN;
  END IF;
  SELECT * INTO p FROM payments
   WHERE merchant_id = o.merchant_id
     AND CASE o.payment_ref_by WHEN 'key' THEN idempotency_key = o.payment_ref
                               ELSE payment_id = o.payment_ref END;
  pid := p.payment_id;
  IF NOT FOUND THEN
    code := 'payment_not_found';
    msg := 'no payment of this merchant has that key or id';
  ELSIF o.kind <> 'void' AND o.currency <> p.currency THEN
    code := 'currency_mismatch';
    msg := format('the payment is in %s', p.currency);
  ELSIF o.kind = 'capture' THEN
    UPDATE payments SET capturing_minor = capturing_minor + o.amount_minor
     WHERE payment_id = pid AND status = 'authorized' AND releasing_minor = 0
       AND authorization_expires_at > now()
       AND captured_minor + capturing_minor + released_minor + o.amount_minor <= authorized_minor
    RETURNING * INTO p;
    IF NOT FOUND THEN
      SELECT * INTO p FROM payments WHERE payment_id = pid;
      IF p.kind <> 'authorize' OR p.status NOT IN ('authorized', 'expired') OR p.releasing_minor > 0 THEN
        code := 'payment_not_capturable';
        msg := format('the payment is %s, not an open authorization', p.status);
      ELSIF p.status = 'expired' OR p.authorization_expires_at <= now() THEN
        code := 'authorization_expired';
        msg := 'the authorization has expired';
      ELSE
        code := 'amount_exceeds_capturable';
        msg := format('%s is capturable', p.authorized_minor - p.captured_minor - p.capturing_minor
                                          - p.released_minor);
      END IF;
    END IF;
  ELSIF o.kind = 'void' THEN
    UPDATE payments SET releasing_minor = authorized_minor - captured_minor - capturing_minor
                                          - released_minor
     WHERE payment_id = pid AND status = 'authorized' AND releasing_minor = 0
       AND capturing_minor = 0 -- a capture in flight (final or not) could close or need the rest
       AND authorization_expires_at > now()
       AND authorized_minor - captured_minor - capturing_minor - released_minor > 0
    RETURNING * INTO p;
    n := p.releasing_minor;
    IF n IS NULL THEN
      SELECT * INTO p FROM payments WHERE payment_id = pid;
      IF p.kind = 'authorize' AND p.status IN ('authorized', 'expired') AND p.releasing_minor = 0
         AND (p.status = 'expired' OR p.authorization_expires_at <= now()) THEN
        code := 'authorization_expired';
        msg := 'the authorization has expired';
      ELSIF p.capturing_minor > 0 THEN
        code := 'payment_not_capturable';
        msg := format('a capture of %s is in flight: void once it is settled', p.capturing_minor);
      ELSE
        code := 'payment_not_capturable';
        msg := format('the payment is %s with nothing left to release', p.status);
      END IF;
    ELSE
      o.amount_minor := n;
    END IF;
  ELSE -- refund
    UPDATE payments SET refunding_minor = refunding_minor + o.amount_minor
     WHERE payment_id = pid
       AND refunded_minor + refunding_minor + o.amount_minor <= captured_minor - disputed_minor
    RETURNING * INTO p;
    IF NOT FOUND THEN
      SELECT * INTO p FROM payments WHERE payment_id = pid;
      code := 'amount_exceeds_refundable';
      msg := format('%s is refundable', p.captured_minor - p.disputed_minor - p.refunded_minor
                                        - p.refunding_minor);
    END IF;
  END IF;
  UPDATE payment_operations po SET
         state = CASE WHEN code IS NULL THEN 'accepted' ELSE 'rejected' END,
         error_code = code, error_message = msg,
         payment_id = pid,
         amount_minor = o.amount_minor,
         processor = CASE WHEN code IS NULL THEN p.processor END,
         result_authorized_minor = CASE WHEN code IS NOT NULL THEN coalesce(p.authorized_minor, 0) END,
         result_captured_minor = CASE WHEN code IS NOT NULL THEN coalesce(p.captured_minor, 0) END,
         result_refunded_minor = CASE WHEN code IS NOT NULL THEN coalesce(p.refunded_minor, 0) END,
         updated_at = now()
   WHERE po.operation_id = op;
  RETURN QUERY SELECT CASE WHEN code IS NULL THEN 'accepted' ELSE 'rejected' END, code;
END $$;

-- ---- settling an operation: the processor's answer ----------------------------
-- Called by charge for an operation it sent (`processing`): on success the
-- reservation becomes captured/released/refunded (a final capture also
-- releases what stays uncaptured), and an authorization with nothing left
-- open moves to `captured` (something captured) or `voided`; on a decline
-- the reservation is given back. Idempotent: an operation no longer
-- `processing` is returned as it stands.
ALTER TABLE payment_operations ADD COLUMN released_minor bigint NOT NULL DEFAULT 0
  CHECK (released_minor >= 0);
CREATE FUNCTION ps_settle_operation(op text, ok boolean, op_ref text, fee bigint, code text,
                                    decline text, msg text) RETURNS text
  LANGUAGE plpgsql AS $$
DECLARE
  o payment_operations;
  p payments;
  rest bigint := 0;
BEGIN
  SELECT * INTO o FROM payment_operations WHERE operation_id = op FOR UPDATE;
  IF NOT FOUND OR o.state <> 'processing' THEN
    RETURN o.state;
  END IF;
  IF ok AND o.kind = 'capture' THEN
    UPDATE payments SET capturing_minor = capturing_minor - o.amount_minor,
                        captured_minor = captured_minor + o.amount_minor, updated_at = now()
     WHERE payment_id = o.payment_id RETURNING * INTO p;
    IF o.final_capture THEN
      rest := p.authorized_minor - p.captured_minor - p.capturing_minor - p.released_minor
              - p.releasing_minor;
      UPDATE payments SET released_minor = released_minor + rest
       WHERE payment_id = o.payment_id RETURNING * INTO p;
    END IF;
  ELSIF ok AND o.kind = 'void' THEN
    UPDATE payments SET releasing_minor = releasing_minor - o.amount_minor,
                        released_minor = released_minor + o.amount_minor, updated_at = now()
     WHERE payment_id = o.payment_id RETURNING * INTO p;
  ELSIF ok THEN
    UPDATE payments SET refunding_minor = refunding_minor - o.amount_minor,
                        refunded_minor = refunded_minor + o.amount_minor, updated_at = now()
     WHERE payment_id = o.payment_id RETURNING * INTO p;
  ELSE
    UPDATE payments SET
        capturing_minor = capturing_minor - CASE o.kind WHEN 'capture' THEN o.amount_minor ELSE 0 END,
        releasing_minor = releasing_minor - CASE o.kind WHEN 'void' THEN o.amount_minor ELSE 0 END,
        refunding_minor = refunding_minor - CASE o.kind WHEN 'refund' THEN o.amount_minor ELSE 0 END,
        updated_at = now()
     WHERE payment_id = o.payment_id RETURNING * INTO p;
  END IF;
  IF ok AND p.status = 'authorized' AND p.capturing_minor = 0 AND p.releasing_minor = 0
     AND p.captured_minor + p.released_minor = p.authorized_minor THEN
    UPDATE payments SET status = CASE WHEN captured_minor > 0 THEN 'captured' ELSE 'voided' END
     WHERE payment_id = o.payment_id RETURNING * INTO p;
  END IF;
  UPDATE payment_operations SET
         state = CASE WHEN ok THEN 'succeeded' ELSE 'declined' END,
         processor_op_id = nullif(op_ref, ''), fee_minor = CASE WHEN ok THEN fee END,
         released_minor = rest,
         error_code = CASE WHEN ok THEN NULL ELSE coalesce(nullif(code, ''), 'declined') END,
         decline_code = nullif(decline, ''), error_message = nullif(msg, ''),
         result_authorized_minor = p.authorized_minor, result_captured_minor = p.captured_minor,
         result_refunded_minor = p.refunded_minor, updated_at = now()
   WHERE operation_id = op;
  RETURN CASE WHEN ok THEN 'succeeded' ELSE 'declined' END;
END $$;
GRANT UPDATE (released_minor) ON payment_operations TO paystream_charge;

-- Called by charge for an operation it cannot send at all (its processor is
-- not configured, its request cannot be built): only one provably never
-- sent (`accepted`, no send counted) ends, `declined` with the code, its
-- reservation given back (ps_settle_operation's decline). One that may have
-- been sent is left as it stands (charge keeps holding it). Returns the
-- operation's state after the call.
CREATE FUNCTION ps_abandon_operation(op text, code text, msg text) RETURNS text
  LANGUAGE plpgsql AS $$
DECLARE
  st text;
BEGIN
  UPDATE payment_operations SET state = 'processing', updated_at = now()
   WHERE operation_id = op AND state = 'accepted' AND sends = 0;
  IF NOT FOUND THEN
    SELECT state INTO st FROM payment_operations WHERE operation_id = op;
    RETURN st;
  END IF;
  RETURN ps_settle_operation(op, false, '', NULL, code, '', msg);
END $$;

-- ---- the ledger: one posting per money movement -----------------------------
ALTER TABLE ledger_transactions ADD COLUMN operation_id text REFERENCES payment_operations (operation_id);
ALTER TABLE ledger_transactions DROP CONSTRAINT ledger_transactions_kind_check;
ALTER TABLE ledger_transactions ADD CONSTRAINT ledger_transactions_kind_check CHECK (kind IN
  ('payment', 'refund', 'chargeback', 'authorization', 'capture', 'release', 'refund_request'))
  NOT VALID;
ALTER TABLE ledger_transactions VALIDATE CONSTRAINT ledger_transactions_kind_check;
-- A payment's own postings (sale, authorization hold, expiry release): once
-- per kind. An operation's postings: once per operation and kind.
CREATE UNIQUE INDEX ledger_transactions_payment_once ON ledger_transactions (payment_id, kind)
  WHERE operation_id IS NULL;
CREATE UNIQUE INDEX ledger_transactions_operation_once ON ledger_transactions (operation_id, kind)
  WHERE operation_id IS NOT NULL;
ALTER TABLE ledger_transactions DROP CONSTRAINT ledger_transactions_payment_id_kind_key;

-- ---- grants: what each stage's statements write ------------------------------
-- ingest: creates authorize/sale payments (kind), creates operations and
-- decides them through ps_accept_operation (its reservation columns only).
GRANT INSERT (kind) ON payments TO paystream_ingest;
-- (only the reservations: not even updated_at, the payment's own state is not ingest's)
GRANT UPDATE (capturing_minor, refunding_minor, releasing_minor) ON payments TO paystream_ingest;
GRANT SELECT ON payment_operations TO paystream_ingest;
GRANT INSERT (operation_id, merchant_id, idempotency_key, fingerprint, kind, payment_ref,
              payment_ref_by, amount_minor, currency, final_capture, request, source_topic, source_partition,
              source_offset)
  ON payment_operations TO paystream_ingest;
GRANT UPDATE (state, error_code, error_message, payment_id, amount_minor, processor,
              result_authorized_minor, result_captured_minor, result_refunded_minor, updated_at)
  ON payment_operations TO paystream_ingest;
GRANT EXECUTE ON FUNCTION ps_accept_operation(text) TO paystream_ingest;

-- charge: executes operations, settles reservations, moves authorizations.
GRANT UPDATE (captured_minor, capturing_minor, refunded_minor, refunding_minor, released_minor,
              releasing_minor) ON payments TO paystream_charge;
GRANT SELECT ON payment_operations, processor_settings TO paystream_charge;
GRANT UPDATE (state, processor_key, processor_target, processor_op_id, decline_code, fee_minor, error_code,
              error_message,
              sends, refused, result_authorized_minor, result_captured_minor,
              result_refunded_minor, updated_at)
  ON payment_operations TO paystream_charge;

-- ledger: posts operations and publishes their outcomes.
GRANT SELECT ON payment_operations TO paystream_ledger;
GRANT UPDATE (state, updated_at) ON payment_operations TO paystream_ledger;
GRANT INSERT (operation_id) ON ledger_transactions TO paystream_ledger;
