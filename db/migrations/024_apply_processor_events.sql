-- Applying processor events (#20), decided here: the events stage
-- (services/events) records an event (020) and, in the same transaction,
-- calls ps_apply_processor_event with what it read in the event's body
-- (the action, a dispute's status, a fee, a decline's outcome). Every write
-- is conditional on the state it moves from, so a duplicate or a late event
-- changes nothing it should not; every posting goes through
-- ps_events_post, unique per money movement (023).
--
-- SECURITY DEFINER (fixed search_path): the events role has no write on
-- payments, attempts, operations or the ledger; it may only call these.

-- One balanced ledger transaction and its entries in one statement (011);
-- false when this movement was already posted.
CREATE FUNCTION ps_events_post(pid text, k text, op text, dsp bigint, cur text, names text[],
                               dirs text[], amts bigint[]) RETURNS boolean
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
  n bigint;
BEGIN
  INSERT INTO ledger_accounts (name, currency, type)
    SELECT DISTINCT u, cur, split_part(u, ':', 1) FROM unnest(names) AS u
    ON CONFLICT (name, currency) DO NOTHING;
  WITH tx AS (INSERT INTO ledger_transactions (payment_id, kind, operation_id, dispute_id)
                VALUES (pid, k, op, dsp) ON CONFLICT DO NOTHING RETURNING transaction_id),
       e AS (INSERT INTO ledger_entries (transaction_id, account_id, currency, direction, amount_minor)
               SELECT tx.transaction_id, a.account_id, cur, u.d, u.amt
                 FROM tx CROSS JOIN unnest(names, dirs, amts) AS u(n, d, amt)
                 JOIN ledger_accounts a ON a.name = u.n AND a.currency = cur
              WHERE u.amt > 0 RETURNING 1)
  SELECT count(*) INTO n FROM tx;
  RETURN n > 0;
END $$;
REVOKE ALL ON FUNCTION ps_events_post(text, text, text, bigint, text, text[], text[], bigint[])
  FROM PUBLIC;

-- A charge.succeeded / charge.failed (sale) for an attempt still unsettled:
-- the attempt and the payment leave `charging` as charge would move them
-- (only if they still are there, and the processor's amount and currency
-- are the attempt's). The stage then emits payments.charged (the ledger
-- posts it as any charge) or the declined outcome passed in.
CREATE FUNCTION ps_events_settle_charge(ev processor_events, ok boolean, fee bigint,
                                        outcome bytea, decline text, INOUT fx processor_event_effects)
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
  a charge_attempts;
  cid text := nullif(ev.charge_id, '');
BEGIN
  SELECT * INTO a FROM charge_attempts
   WHERE payment_id = ev.payment_id AND processor = ev.processor AND state = 'charging' FOR UPDATE;
  IF NOT FOUND OR NOT EXISTS (SELECT 1 FROM payments WHERE payment_id = ev.payment_id
                                 AND status = 'charging' AND kind = 'sale') THEN
    fx.note := 'no unsettled attempt at this processor';
  ELSIF ev.amount_minor IS DISTINCT FROM a.amount_minor OR ev.currency IS DISTINCT FROM a.currency THEN
    fx.note := 'amount or currency differs from the attempt';
  ELSIF EXISTS (SELECT 1 FROM charge_attempts WHERE payment_id = ev.payment_id AND state = 'succeeded') THEN
    fx.note := 'another attempt succeeded';
  ELSIF ok THEN
    UPDATE charge_attempts SET state = 'succeeded', processor_charge_id = cid,
           fee_minor = coalesce(fee, 0), error = NULL, updated_at = now()
     WHERE payment_id = a.payment_id AND processor = a.processor AND state = 'charging';
    UPDATE payments SET status = 'charged', processor = a.processor, processor_charge_id = cid,
           fee_minor = coalesce(fee, 0), updated_at = now()
     WHERE payment_id = a.payment_id AND status = 'charging';
    fx.effect := 'charge_settled';
  ELSIF outcome IS NULL THEN
    fx.note := 'a decline needs its outcome';
  ELSE
    UPDATE charge_attempts SET state = 'declined', processor_charge_id = cid,
           decline_code = nullif(decline, ''), updated_at = now()
     WHERE payment_id = a.payment_id AND processor = a.processor AND state = 'charging';
    UPDATE payments SET status = 'declined', outcome = ps_events_settle_charge.outcome,
           error_code = 'card_declined', processor = a.processor, processor_charge_id = cid,
           updated_at = now()
     WHERE payment_id = a.payment_id AND status = 'charging';
    fx.effect := 'charge_declined';
  END IF;
END $$;

-- A refund that had succeeded fails late: once per operation, its amount
-- leaves refunded_minor (refundable again) and its postings are reversed.
CREATE FUNCTION ps_events_refund_failed(ev processor_events, INOUT fx processor_event_effects)
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
  o payment_operations;
  p payments;
  recv text;
BEGIN
  SELECT * INTO o FROM payment_operations
   WHERE payment_id = ev.payment_id AND kind = 'refund' AND processor = ev.processor
     AND processor_op_id = ev.object_id AND ev.object_id <> '' FOR UPDATE;
  IF NOT FOUND THEN
    fx.note := 'no refund of ours has that id';
    RETURN;
  END IF;
  fx.operation_id := o.operation_id;
  IF o.state NOT IN ('succeeded', 'posted') THEN
    fx.note := format('the refund is %s', o.state);  -- a decline: nothing was refunded
    RETURN;
  END IF;
  INSERT INTO refund_failures (operation_id, payment_id, processor, event_id, amount_minor)
    VALUES (o.operation_id, o.payment_id, ev.processor, ev.event_id, o.amount_minor)
    ON CONFLICT DO NOTHING;
  IF NOT FOUND THEN
    fx.note := 'already reversed';
    RETURN;
  END IF;
  UPDATE payments SET refunded_minor = refunded_minor - o.amount_minor, updated_at = now()
   WHERE payment_id = o.payment_id RETURNING * INTO p;
  recv := 'asset:processor_receivable:' || o.processor;
  PERFORM ps_events_post(o.payment_id, 'refund_reversal', o.operation_id, NULL, p.currency,
    ARRAY[recv, 'liability:refunds_payable', 'liability:refunds_payable', 'revenue:refunds'],
    ARRAY['D', 'C', 'D', 'C'],
    ARRAY[o.amount_minor, o.amount_minor, o.amount_minor, o.amount_minor]);
  fx.effect := 'refund_reversed';
END $$;

-- A dispute event: the dispute's row (created by whichever of its events
-- comes first), its status moved forward only, and every money movement
-- its events imply so far, each posted once:
--   withdrawal (+ fee)  once any event said funds were withdrawn or
--                       reinstated, or it was lost;
--   reinstatement       once an event said reinstated, or it was won after
--                       a withdrawal;
--   re-withdrawal       lost after a reinstatement (the processor takes it again);
--   lost                once it was lost.
CREATE FUNCTION ps_events_dispute(ev processor_events, st text, fee bigint,
                                  INOUT fx processor_event_effects)
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
  p payments;
  d disputes;
  rnk int := CASE st WHEN 'open' THEN 1 WHEN 'withdrawn' THEN 2 WHEN 'reinstated' THEN 3
                     WHEN 'won' THEN 4 WHEN 'lost' THEN 4 END;
  recv text;
  amt bigint;
  room bigint;
  withdrawn boolean;
  reinstated boolean;
  released bigint;
BEGIN
  SELECT * INTO p FROM payments WHERE payment_id = ev.payment_id FOR UPDATE;
  IF rnk IS NULL OR ev.object_id = '' OR ev.amount_minor IS NULL OR ev.amount_minor <= 0 THEN
    fx.note := 'a dispute event without a status, id or amount';
    RETURN;
  ELSIF ev.currency IS DISTINCT FROM p.currency THEN
    fx.note := 'the dispute is not in the payment''s currency';
    RETURN;
  END IF;
  -- First sight: the hold, within what the payment still has (captured −
  -- disputed − refunded − refunding): a dispute never takes back a refund.
  room := greatest(p.captured_minor - p.disputed_minor - p.refunded_minor - p.refunding_minor, 0);
  INSERT INTO disputes (processor, processor_dispute_id, payment_id, charge_id, amount_minor,
                        currency, fee_minor, status, status_rank, held_minor)
    VALUES (ev.processor, ev.object_id, p.payment_id, ev.charge_id, ev.amount_minor, ev.currency,
            coalesce(fee, 0), 'open', 1, least(ev.amount_minor, room))
    ON CONFLICT (processor, processor_dispute_id) DO NOTHING
    RETURNING * INTO d;
  IF FOUND THEN
    UPDATE payments SET disputed_minor = disputed_minor + d.held_minor, updated_at = now()
     WHERE payment_id = p.payment_id;
  END IF;
  SELECT * INTO d FROM disputes
   WHERE processor = ev.processor AND processor_dispute_id = ev.object_id FOR UPDATE;
  IF d.payment_id <> p.payment_id THEN
    fx.note := 'the dispute belongs to another payment';
    RETURN;
  END IF;
  released := CASE WHEN st = 'won' AND d.status_rank < 4 THEN d.held_minor ELSE 0 END;
  UPDATE disputes SET
         status = CASE WHEN rnk > status_rank THEN st ELSE status END,
         status_rank = greatest(status_rank, rnk),
         seen_withdrawn = seen_withdrawn OR st = 'withdrawn',
         seen_reinstated = seen_reinstated OR st = 'reinstated',
         fee_minor = greatest(fee_minor, coalesce(fee, 0)),
         held_minor = CASE WHEN rnk > status_rank AND st = 'won' THEN 0 ELSE held_minor END,
         updated_at = now()
   WHERE dispute_id = d.dispute_id RETURNING * INTO d;
  IF released > 0 THEN  -- a won dispute's amount is refundable again
    UPDATE payments SET disputed_minor = disputed_minor - released, updated_at = now()
     WHERE payment_id = p.payment_id;
  END IF;
  recv := 'asset:processor_receivable:' || coalesce(p.processor, ev.processor);
  amt := d.amount_minor;
  IF d.seen_withdrawn OR d.seen_reinstated OR d.status = 'lost' THEN
    IF ps_events_post(p.payment_id, 'dispute_withdrawal:' || d.dispute_id, NULL, d.dispute_id,
                      d.currency, ARRAY['asset:disputed_funds', recv], ARRAY['D', 'C'],
                      ARRAY[amt, amt]) AND d.fee_minor > 0 THEN
      PERFORM ps_events_post(p.payment_id, 'dispute_fee:' || d.dispute_id, NULL, d.dispute_id,
                             d.currency, ARRAY['expense:chargebacks', recv], ARRAY['D', 'C'],
                             ARRAY[d.fee_minor, d.fee_minor]);
    END IF;
  END IF;
  withdrawn := EXISTS (SELECT 1 FROM ledger_transactions
                        WHERE payment_id = p.payment_id AND kind = 'dispute_withdrawal:' || d.dispute_id);
  IF d.seen_reinstated OR (d.status = 'won' AND withdrawn) THEN
    PERFORM ps_events_post(p.payment_id, 'dispute_reinstatement:' || d.dispute_id, NULL,
                           d.dispute_id, d.currency, ARRAY[recv, 'asset:disputed_funds'],
                           ARRAY['D', 'C'], ARRAY[amt, amt]);
  END IF;
  reinstated := EXISTS (SELECT 1 FROM ledger_transactions
                         WHERE payment_id = p.payment_id AND kind = 'dispute_reinstatement:' || d.dispute_id);
  IF d.status = 'lost' THEN
    IF reinstated THEN
      PERFORM ps_events_post(p.payment_id, 'dispute_rewithdrawal:' || d.dispute_id, NULL,
                             d.dispute_id, d.currency, ARRAY['asset:disputed_funds', recv],
                             ARRAY['D', 'C'], ARRAY[amt, amt]);
    END IF;
    PERFORM ps_events_post(p.payment_id, 'dispute_lost:' || d.dispute_id, NULL, d.dispute_id,
                           d.currency, ARRAY['expense:chargebacks', 'asset:disputed_funds'],
                           ARRAY['D', 'C'], ARRAY[amt, amt]);
  END IF;
  fx.effect := 'dispute';
  fx.dispute_id := d.dispute_id;
  fx.processor_dispute_id := d.processor_dispute_id;
  fx.dispute_status := d.status;
  fx.dispute_amount_minor := d.amount_minor;
END $$;

-- The entry point: applies one recorded event once. A second call for the
-- same event (a redelivery, a replay, a crash before the Kafka commit)
-- returns what the first did and changes nothing. action (from the event
-- body, services/events/event_map.c): charge_succeeded, charge_failed,
-- refund_failed, dispute (with st: open, withdrawn, reinstated, won,
-- lost), or anything else (recorded, nothing applied).
CREATE FUNCTION ps_apply_processor_event(p_processor text, p_event_id text, p_action text,
                                         p_dispute_status text, p_fee bigint, p_outcome bytea,
                                         p_decline_code text)
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
    fx := ps_events_refund_failed(ev, fx);
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
REVOKE ALL ON FUNCTION ps_events_settle_charge(processor_events, boolean, bigint, bytea, text,
  processor_event_effects) FROM PUBLIC;
REVOKE ALL ON FUNCTION ps_events_refund_failed(processor_events, processor_event_effects) FROM PUBLIC;
REVOKE ALL ON FUNCTION ps_events_dispute(processor_events, text, bigint, processor_event_effects)
  FROM PUBLIC;
REVOKE ALL ON FUNCTION ps_apply_processor_event(text, text, text, text, bigint, bytea, text) FROM PUBLIC;

-- events: applies events through the function above only; reads what its
-- outputs are built from (the payment's forwarded request and amounts, the
-- refund operation's outcome fields, the disputes it keeps).
GRANT EXECUTE ON FUNCTION ps_apply_processor_event(text, text, text, text, bigint, bytea, text)
  TO paystream_events;
GRANT SELECT (payment_id, merchant_id, idempotency_key, intent, outcome, status, amount_minor, currency,
              processor, processor_charge_id, fee_minor, authorized_minor, captured_minor,
              refunded_minor, disputed_minor)
  ON payments TO paystream_events;
GRANT SELECT (operation_id, merchant_id, idempotency_key, kind, payment_id, amount_minor, currency)
  ON payment_operations TO paystream_events;
GRANT SELECT ON disputes, refund_failures, processor_event_effects TO paystream_events;
-- The books' balance check (006) is a deferred trigger: it runs at commit,
-- as the committing role, outside the function, and reads the entries.
GRANT SELECT (transaction_id, currency, direction, amount_minor) ON ledger_entries TO paystream_events;
