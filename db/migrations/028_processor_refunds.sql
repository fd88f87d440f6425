-- Refunds settled by the processor's word, and dispute holds kept whole (#20).
--
-- 1. A refund still `processing` (sent, no definite answer: a lost answer,
--    a Stripe `pending` refund) is settled by the processor's refund
--    succeeded webhook: ps-events moves it as charge would (conditional on
--    `processing`, its amount and currency checked, row-locked) and marks
--    payment_operations.settled_by = 'events'; charge then emits nothing for
--    it (it neither forwards nor publishes a second time), as for sales
--    (021's charge_attempts.settled_by). The webhook names our operation in
--    its metadata (refund_id / invoice_id: the stage passes it) since a
--    refund without an answer has no processor id recorded yet.
-- 2. A refund failure reported while the refund is still `processing` is
--    kept (refund_failures.state = 'kept'), not dropped: the processor may
--    have refunded and then failed it, or declined it outright, and only the
--    refund's own answer tells which. Whoever settles the refund then
--    applies it: a success (charge's answer or status query, or the
--    succeeded webhook) ends the refund succeeded-then-reversed with both
--    postings (`refund` and `refund_reversal`), `posted`, its amount
--    refundable again (payment_operations.reversed); a decline ends it
--    declined and the kept failure `moot` (nothing was refunded). Either
--    way the refund is reversed and refundable again exactly once.
-- 3. A dispute's hold is topped up wherever room comes back (a refund
--    declined or abandoned, a refund reversed, a capture, a dispute won):
--    ps_disputes_top_up, in the same transaction. Invariant 6 is guarded by
--    a deferred constraint trigger: a payment's disputed_minor is the sum of
--    its disputes' holds, and no dispute is held short while the payment
--    still has refundable room.
--
-- Safe on a populated live database: nullable / constant-default columns
-- (catalog only), CHECKs re-added NOT VALID then validated (every existing
-- row passes), functions replaced with the same signatures (and one new
-- overload), constraint triggers that fire only when a payment's room grows.

ALTER TABLE payment_operations ADD COLUMN settled_by text
  CHECK (settled_by IS NULL OR settled_by IN ('charge', 'events'));
ALTER TABLE payment_operations ADD COLUMN reversed boolean NOT NULL DEFAULT false;
-- Written by the database: 'charge' when the charge stage's role moves an
-- operation out of `processing`; otherwise what the writer set (ps-events'
-- functions set 'events'). Charge's statements do not name the column.
CREATE FUNCTION payment_operations_mark_settler() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF paystream_stage_of(current_user) = 'charge' THEN
    NEW.settled_by := 'charge';
  END IF;
  RETURN NEW;
END $$;
CREATE TRIGGER payment_operations_settler BEFORE UPDATE ON payment_operations FOR EACH ROW
  WHEN (OLD.state = 'processing' AND NEW.state IS DISTINCT FROM 'processing')
  EXECUTE FUNCTION payment_operations_mark_settler();
-- A reversal is never undone.
CREATE TRIGGER payment_operations_reversal_kept BEFORE UPDATE ON payment_operations FOR EACH ROW
  WHEN (OLD.reversed AND NOT NEW.reversed)
  EXECUTE FUNCTION paystream_refuse('23P54', 'an operation''s reversal is kept');

ALTER TABLE refund_failures ADD COLUMN state text NOT NULL DEFAULT 'applied'
  CHECK (state IN ('kept', 'applied', 'moot'));
CREATE FUNCTION refund_failures_guard_state() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF NEW.state IS DISTINCT FROM OLD.state AND OLD.state <> 'kept' THEN
    RAISE EXCEPTION 'guard: refund failure of % only leaves kept (% -> %)', OLD.operation_id,
      OLD.state, NEW.state USING ERRCODE = '23P51';
  END IF;
  RETURN NEW;
END $$;
CREATE TRIGGER refund_failures_forward BEFORE UPDATE ON refund_failures FOR EACH ROW
  EXECUTE FUNCTION refund_failures_guard_state();

ALTER TABLE processor_event_effects DROP CONSTRAINT processor_event_effects_effect_check;
ALTER TABLE processor_event_effects ADD CONSTRAINT processor_event_effects_effect_check CHECK
  (effect IN ('charge_settled', 'charge_declined', 'refund_reversed', 'refund_settled',
              'refund_failure_kept', 'dispute', 'ignored')) NOT VALID;
ALTER TABLE processor_event_effects VALIDATE CONSTRAINT processor_event_effects_effect_check;

-- ---- dispute holds ------------------------------------------------------------
-- Tops up every dispute of the payment held short (not won), oldest first,
-- with the room the payment has now. Returns what was added.
CREATE FUNCTION ps_disputes_top_up(pid text) RETURNS bigint
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
  p payments;
  d disputes;
  more bigint;
  total bigint := 0;
BEGIN
  SELECT * INTO p FROM payments WHERE payment_id = pid FOR UPDATE;
  IF NOT FOUND THEN
    RETURN 0;
  END IF;
  FOR d IN SELECT * FROM disputes WHERE payment_id = pid AND status <> 'won'
             AND held_minor < amount_minor ORDER BY dispute_id FOR UPDATE LOOP
    more := least(d.amount_minor - d.held_minor,
                 greatest(p.captured_minor - p.disputed_minor - p.refunded_minor
                          - p.refunding_minor, 0));
    EXIT WHEN more <= 0;
    UPDATE disputes SET held_minor = held_minor + more, updated_at = now()
     WHERE dispute_id = d.dispute_id;
    UPDATE payments SET disputed_minor = disputed_minor + more, updated_at = now()
     WHERE payment_id = pid RETURNING * INTO p;
    total := total + more;
  END LOOP;
  RETURN total;
END $$;
REVOKE ALL ON FUNCTION ps_disputes_top_up(text) FROM PUBLIC;

-- Invariant 6 with disputes, checked at commit whatever the writer: the
-- payment's disputed_minor is what its disputes hold, and a dispute held
-- short of its amount means nothing is refundable (its rest has priority).
-- Checked when room comes back (a first capture tops up in
-- ps_settle_operation; a sale's charge is not checked: a dispute recorded
-- before its charge, from a reordered webhook, is held at 0 and topped up
-- by the next settle of that payment).
CREATE FUNCTION payments_guard_disputes_held() RETURNS trigger
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
  p payments;
  held bigint;
  short boolean;
BEGIN
  SELECT * INTO p FROM payments WHERE payment_id = NEW.payment_id;
  SELECT coalesce(sum(held_minor), 0), coalesce(bool_or(status <> 'won' AND held_minor < amount_minor), false)
    INTO held, short FROM disputes WHERE payment_id = NEW.payment_id;
  IF p.disputed_minor <> held THEN
    RAISE EXCEPTION 'guard: payment % holds % disputed, its disputes hold %', p.payment_id,
      p.disputed_minor, held USING ERRCODE = '23P55';
  END IF;
  IF short AND p.captured_minor - p.disputed_minor - p.refunded_minor - p.refunding_minor > 0 THEN
    RAISE EXCEPTION 'guard: payment % has % refundable while a dispute is held short', p.payment_id,
      p.captured_minor - p.disputed_minor - p.refunded_minor - p.refunding_minor
      USING ERRCODE = '23P55';
  END IF;
  RETURN NULL;
END $$;
REVOKE ALL ON FUNCTION payments_guard_disputes_held() FROM PUBLIC;
CREATE CONSTRAINT TRIGGER payments_disputes_held AFTER UPDATE ON payments
  DEFERRABLE INITIALLY DEFERRED FOR EACH ROW
  WHEN (NEW.disputed_minor IS DISTINCT FROM OLD.disputed_minor
        OR (NEW.captured_minor > OLD.captured_minor AND OLD.captured_minor > 0)
        OR NEW.refunded_minor + NEW.refunding_minor < OLD.refunded_minor + OLD.refunding_minor)
  EXECUTE FUNCTION payments_guard_disputes_held();
CREATE CONSTRAINT TRIGGER disputes_held AFTER INSERT OR UPDATE ON disputes
  DEFERRABLE INITIALLY DEFERRED FOR EACH ROW
  EXECUTE FUNCTION payments_guard_disputes_held();

-- ---- refunds: kept failures, reversals ---------------------------------------
-- Reverses a refund that succeeded (its failure kept or reported now):
-- once per operation, its amount leaves refunded_minor, `refund_reversal`
-- is posted, disputes are topped up. False when already reversed.
CREATE FUNCTION ps_refund_reverse(op text, proc text, evid text) RETURNS boolean
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
  o payment_operations;
  p payments;
  recv text;
  n int;
BEGIN
  SELECT * INTO o FROM payment_operations WHERE operation_id = op FOR UPDATE;
  IF NOT FOUND OR o.kind <> 'refund' OR o.state NOT IN ('succeeded', 'posted') THEN
    RETURN false;
  END IF;
  UPDATE refund_failures SET state = 'applied' WHERE operation_id = op AND state = 'kept';
  GET DIAGNOSTICS n = ROW_COUNT;
  IF n = 0 THEN
    INSERT INTO refund_failures (operation_id, payment_id, processor, event_id, amount_minor, state)
      VALUES (op, o.payment_id, proc, evid, o.amount_minor, 'applied') ON CONFLICT DO NOTHING;
    IF NOT FOUND THEN
      RETURN false;
    END IF;
  END IF;
  UPDATE payments SET refunded_minor = refunded_minor - o.amount_minor, updated_at = now()
   WHERE payment_id = o.payment_id RETURNING * INTO p;
  recv := 'asset:processor_receivable:' || o.processor;
  PERFORM ps_events_post(o.payment_id, 'refund_reversal', op, NULL, p.currency,
    ARRAY[recv, 'liability:refunds_payable', 'liability:refunds_payable', 'revenue:refunds'],
    ARRAY['D', 'C', 'D', 'C'],
    ARRAY[o.amount_minor, o.amount_minor, o.amount_minor, o.amount_minor]);
  UPDATE payment_operations SET reversed = true, updated_at = now() WHERE operation_id = op;
  PERFORM ps_disputes_top_up(o.payment_id);
  RETURN true;
END $$;
REVOKE ALL ON FUNCTION ps_refund_reverse(text, text, text) FROM PUBLIC;

-- A refund whose failure was kept ends succeeded-then-reversed, by whoever
-- learned it succeeded (settler: 'charge' or 'events'): refunding -> refunded,
-- `refund` posted here (as the ledger posts it: DESIGN's table) and the
-- operation `posted`, then reversed. Nothing goes to the ledger stage; the
-- settler publishes the refund's one outcome (failed / refund_failed).
CREATE FUNCTION ps_refund_settle_failed(op text, op_ref text, settler text) RETURNS text
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
  o payment_operations;
  p payments;
  f refund_failures;
  recv text;
BEGIN
  SELECT * INTO o FROM payment_operations WHERE operation_id = op FOR UPDATE;
  SELECT * INTO f FROM refund_failures WHERE operation_id = op AND state = 'kept' FOR UPDATE;
  IF o.state IS DISTINCT FROM 'processing' OR o.kind <> 'refund' OR f.operation_id IS NULL THEN
    RETURN o.state;
  END IF;
  UPDATE payments SET refunding_minor = refunding_minor - o.amount_minor,
                      refunded_minor = refunded_minor + o.amount_minor, updated_at = now()
   WHERE payment_id = o.payment_id RETURNING * INTO p;
  UPDATE payment_operations SET state = 'succeeded', settled_by = settler,
         processor_op_id = coalesce(nullif(op_ref, ''), processor_op_id), fee_minor = 0,
         error_code = NULL, decline_code = NULL, error_message = NULL,
         result_authorized_minor = p.authorized_minor, result_captured_minor = p.captured_minor,
         result_refunded_minor = p.refunded_minor - o.amount_minor, updated_at = now()
   WHERE operation_id = op;
  recv := 'asset:processor_receivable:' || o.processor;
  PERFORM ps_events_post(o.payment_id, 'refund', op, NULL, p.currency,
    ARRAY['revenue:refunds', 'liability:refunds_payable', 'liability:refunds_payable', recv],
    ARRAY['D', 'C', 'D', 'C'],
    ARRAY[o.amount_minor, o.amount_minor, o.amount_minor, o.amount_minor]);
  UPDATE payment_operations SET state = 'posted', updated_at = now() WHERE operation_id = op;
  PERFORM ps_refund_reverse(op, f.processor, f.event_id);
  RETURN 'succeeded';
END $$;
REVOKE ALL ON FUNCTION ps_refund_settle_failed(text, text, text) FROM PUBLIC;

-- After an operation settled: a kept failure of a declined refund is moot
-- (nothing was refunded); disputes held short take the room that came back.
CREATE FUNCTION ps_operation_settled(op text) RETURNS void
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
  o payment_operations;
BEGIN
  SELECT * INTO o FROM payment_operations WHERE operation_id = op;
  IF o.state = 'declined' THEN
    UPDATE refund_failures SET state = 'moot' WHERE operation_id = op AND state = 'kept';
  END IF;
  IF o.payment_id IS NOT NULL THEN
    PERFORM ps_disputes_top_up(o.payment_id);
  END IF;
END $$;
REVOKE ALL ON FUNCTION ps_operation_settled(text) FROM PUBLIC;

CREATE FUNCTION ps_refund_failure_kept(op text) RETURNS boolean
  LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
  SELECT EXISTS (SELECT 1 FROM refund_failures WHERE operation_id = op AND state = 'kept')
$$;
REVOKE ALL ON FUNCTION ps_refund_failure_kept(text) FROM PUBLIC;

-- 013's ps_settle_operation, plus: a refund with a kept failure that
-- succeeds ends succeeded-then-reversed (above); afterwards kept failures
-- of a declined refund are moot and disputes topped up.
CREATE OR REPLACE FUNCTION ps_settle_operation(op text, ok boolean, op_ref text, fee bigint, code text,
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
  IF ok AND o.kind = 'refund' AND ps_refund_failure_kept(op) THEN
    RETURN ps_refund_settle_failed(op, op_ref,
      CASE WHEN paystream_stage_of(current_user) = 'charge' THEN 'charge' ELSE 'events' END);
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
  PERFORM ps_operation_settled(op);
  RETURN CASE WHEN ok THEN 'succeeded' ELSE 'declined' END;
END $$;

-- ---- the processor's refund events ----------------------------------------------
-- Our refund an event names: by the processor's refund id once recorded,
-- or by our operation id (the webhook's metadata) while it has none.
CREATE FUNCTION ps_events_refund_of(ev processor_events, opid text) RETURNS payment_operations
  LANGUAGE sql SECURITY DEFINER SET search_path = public, pg_temp AS $$
  SELECT * FROM payment_operations
   WHERE payment_id = ev.payment_id AND kind = 'refund' AND processor = ev.processor
     AND ((ev.object_id <> '' AND processor_op_id = ev.object_id)
          OR (coalesce(opid, '') <> '' AND operation_id = opid
              AND (processor_op_id IS NULL OR processor_op_id = ev.object_id)))
   ORDER BY processor_op_id IS NULL LIMIT 1 FOR UPDATE
$$;
REVOKE ALL ON FUNCTION ps_events_refund_of(processor_events, text) FROM PUBLIC;

-- A refund failure: a refund that succeeded is reversed (once); one still
-- `processing` keeps the failure for whoever settles it.
CREATE OR REPLACE FUNCTION ps_events_refund_failed(ev processor_events, opid text,
                                                   INOUT fx processor_event_effects)
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
  o payment_operations;
BEGIN
  o := ps_events_refund_of(ev, opid);
  IF o.operation_id IS NULL THEN
    fx.note := 'no refund of ours has that id';
    RETURN;
  END IF;
  fx.operation_id := o.operation_id;
  IF o.state = 'processing' THEN
    INSERT INTO refund_failures (operation_id, payment_id, processor, event_id, amount_minor, state)
      VALUES (o.operation_id, o.payment_id, ev.processor, ev.event_id, o.amount_minor, 'kept')
      ON CONFLICT DO NOTHING;
    IF FOUND THEN
      fx.effect := 'refund_failure_kept';
      fx.note := 'the refund has no answer yet: its failure is kept until it settles';
    ELSE
      fx.note := 'a failure is already kept';
    END IF;
  ELSIF o.state NOT IN ('succeeded', 'posted') THEN
    fx.note := format('the refund is %s', o.state);  -- a decline: nothing was refunded
  ELSIF ps_refund_reverse(o.operation_id, ev.processor, ev.event_id) THEN
    fx.effect := 'refund_reversed';
  ELSE
    fx.note := 'already reversed';
  END IF;
END $$;
REVOKE ALL ON FUNCTION ps_events_refund_failed(processor_events, text, processor_event_effects)
  FROM PUBLIC;

-- A refund succeeded: one still `processing` is settled here (amount and
-- currency must be the operation's); with a failure kept it ends
-- succeeded-then-reversed. Marked settled by events: charge emits nothing.
CREATE FUNCTION ps_events_refund_succeeded(ev processor_events, opid text,
                                           INOUT fx processor_event_effects)
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
  o payment_operations;
BEGIN
  o := ps_events_refund_of(ev, opid);
  IF o.operation_id IS NULL THEN
    fx.note := 'no refund of ours has that id';
    RETURN;
  END IF;
  fx.operation_id := o.operation_id;
  IF o.state <> 'processing' THEN
    fx.note := format('the refund is %s', o.state);
  ELSIF ev.amount_minor IS DISTINCT FROM o.amount_minor OR ev.currency IS DISTINCT FROM o.currency THEN
    fx.note := 'amount or currency differs from the refund';
  ELSE
    PERFORM ps_settle_operation(o.operation_id, true, ev.object_id, 0, '', '', '');
    UPDATE payment_operations SET settled_by = 'events' WHERE operation_id = o.operation_id
    RETURNING * INTO o;
    fx.effect := CASE WHEN o.reversed THEN 'refund_reversed' ELSE 'refund_settled' END;
  END IF;
END $$;
REVOKE ALL ON FUNCTION ps_events_refund_succeeded(processor_events, text, processor_event_effects)
  FROM PUBLIC;

-- 024's entry point, with the operation id a refund event names (p_op):
-- refund_succeeded joins the actions.
CREATE FUNCTION ps_apply_processor_event(p_processor text, p_event_id text, p_action text,
                                         p_dispute_status text, p_fee bigint, p_outcome bytea,
                                         p_decline_code text, p_op text)
  RETURNS SETOF processor_event_effects
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
  ev processor_events;
  fx processor_event_effects;
  p payments;
BEGIN
  SELECT * INTO fx FROM processor_event_effects WHERE processor = p_processor AND event_id = p_event_id;
  IF FOUND THEN
    RETURN NEXT fx;
    RETURN;
  END IF;
  SELECT * INTO ev FROM processor_events WHERE processor = p_processor AND event_id = p_event_id;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'processor event %/% is not recorded', p_processor, p_event_id
      USING ERRCODE = 'no_data_found';
  END IF;
  fx.processor := p_processor;
  fx.event_id := p_event_id;
  fx.payment_id := ev.payment_id;
  fx.effect := 'ignored';
  fx.note := '';
  PERFORM 1 FROM payments WHERE payment_id = ev.payment_id FOR UPDATE;
  IF NOT FOUND THEN
    fx.note := 'unknown payment';
  ELSIF p_action IN ('charge_succeeded', 'charge_failed') THEN
    fx := ps_events_settle_charge(ev, p_action = 'charge_succeeded', p_fee, p_outcome,
                                  p_decline_code, fx);
  ELSIF p_action = 'refund_failed' THEN
    fx := ps_events_refund_failed(ev, p_op, fx);
  ELSIF p_action = 'refund_succeeded' THEN
    fx := ps_events_refund_succeeded(ev, p_op, fx);
  ELSIF p_action = 'dispute' THEN
    fx := ps_events_dispute(ev, p_dispute_status, p_fee, fx);
  ELSE
    fx.note := 'nothing to apply';
  END IF;
  SELECT * INTO p FROM payments WHERE payment_id = ev.payment_id;
  IF FOUND THEN
    fx.currency := p.currency;
    fx.captured_minor := p.captured_minor;
    fx.refunded_minor := p.refunded_minor;
    fx.disputed_minor := p.disputed_minor;
  END IF;
  fx.applied_at := now();
  INSERT INTO processor_event_effects SELECT fx.*;
  RETURN NEXT fx;
END $$;
REVOKE ALL ON FUNCTION ps_apply_processor_event(text, text, text, text, bigint, bytea, text, text)
  FROM PUBLIC;

-- The old entry point (a ps-events of the previous release during a
-- rolling deploy): the same, naming no operation.
CREATE OR REPLACE FUNCTION ps_apply_processor_event(p_processor text, p_event_id text,
                                                    p_action text, p_dispute_status text,
                                                    p_fee bigint, p_outcome bytea,
                                                    p_decline_code text)
  RETURNS SETOF processor_event_effects
  LANGUAGE sql SECURITY DEFINER SET search_path = public, pg_temp AS $$
  SELECT * FROM ps_apply_processor_event(p_processor, p_event_id, p_action, p_dispute_status,
                                         p_fee, p_outcome, p_decline_code, NULL::text)
$$;

-- ---- grants --------------------------------------------------------------------
GRANT EXECUTE ON FUNCTION ps_apply_processor_event(text, text, text, text, bigint, bytea, text, text)
  TO paystream_events;
-- events forwards a refund it settled to the ledger as charge would: the
-- operation's forwarded request and answer.
GRANT SELECT (request, state, processor, processor_op_id, fee_minor, settled_by, reversed)
  ON payment_operations TO paystream_events;
-- charge settles operations through ps_settle_operation, which runs as charge.
GRANT EXECUTE ON FUNCTION ps_refund_failure_kept(text), ps_refund_settle_failed(text, text, text),
  ps_operation_settled(text) TO paystream_charge;
-- The books' balance check (006, deferred) runs as the committing role: a
-- refund charge ends succeeded-then-reversed is posted in its transaction.
GRANT SELECT (transaction_id, currency, direction, amount_minor) ON ledger_entries TO paystream_charge;

-- Disputes held short before this migration take the room their payment has now.
SELECT ps_disputes_top_up(payment_id)
  FROM (SELECT DISTINCT payment_id FROM disputes WHERE status <> 'won' AND held_minor < amount_minor) s;
