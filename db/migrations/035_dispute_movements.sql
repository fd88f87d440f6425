-- 035: a PayPal-like dispute's withdraw/reinstate cycles counted by money
-- movement, not by event (#20).
--
-- A PayPal-like dispute is updated for many reasons (evidence, messages, a
-- status change) and its resource's last_action is sticky: 029 counted
-- withdrawn_count + 1 for every distinct CUSTOMER.DISPUTE.UPDATED saying
-- `funds_withdrawn`, so each further update while the funds were withdrawn
-- posted another withdrawal (and each after `funds_reinstated` another
-- reinstatement): net right, gross cycles wrong, and `payctl reconcile`
-- refused that day's payout.
--
-- Now a dispute event may state the movements themselves: the resource's
-- cumulative money_movements list (PayPal's Disputes API; each entry one
-- movement, append-only, its index its identity), read by ps-events into
-- moved_w (the seller's DEBITs so far) and moved_r (its CREDITs so far).
-- Then withdrawn_count / reinstated_count := greatest(count, moved_*): the
-- number of movements is a property of the resource, so the result does
-- not depend on how many events say it, nor their order, nor duplicates; an
-- update with no new movement posts nothing. moved_* NULL (a Stripe event:
-- one event per movement, deduplicated by event id; an old-style PayPal
-- event without the list; a ps-events of the previous release calling the
-- 8- or 7-argument entry point) keeps 029's count, one per event.
-- Everything else (what the counts imply, the postings, the fee, holds) is
-- 029's, unchanged.
--
-- Safe on a populated live database: functions only (new overloads, the
-- old signatures re-created as wrappers); no table is altered.

SET LOCAL lock_timeout = '10s';

-- 029's dispute event with the movement counts the event states (both NULL:
-- no list, one movement per event as before). An implausible list (negative,
-- more CREDITs than DEBITs, one NULL and not the other, over 100) applies the
-- event's status, rank and seen_* flags and keeps the counts as they are: a
-- PayPal list is cumulative and its last_action sticky, so counting such an
-- event by 029's rule would post one more withdrawal/reinstatement pair on
-- every later update.
CREATE FUNCTION ps_events_dispute(ev processor_events, st text, fee bigint,
                                             moved_w int, moved_r int, INOUT fx processor_event_effects)
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
  p payments;
  d disputes;
  rnk int := CASE st WHEN 'open' THEN 1 WHEN 'withdrawn' THEN 2 WHEN 'reinstated' THEN 3
                     WHEN 'won' THEN 4 WHEN 'lost' THEN 4 END;
  recv text;
  room bigint;
  released bigint;
  w int;
  r int;
  pw int;
  pr int;
  implausible text;
BEGIN
  SELECT * INTO p FROM payments WHERE payment_id = ev.payment_id FOR UPDATE;
  IF rnk IS NULL OR ev.object_id = '' OR ev.amount_minor IS NULL OR ev.amount_minor <= 0 THEN
    fx.note := 'a dispute event without a status, id or amount';
    RETURN;
  ELSIF ev.currency IS DISTINCT FROM p.currency THEN
    fx.note := 'the dispute is not in the payment''s currency';
    RETURN;
  END IF;
  IF moved_w < 0 OR moved_r < 0 OR moved_w > 100 OR moved_r > 100
     OR moved_r > moved_w OR (moved_w IS NULL) <> (moved_r IS NULL) THEN
    -- The status, rank and seen_* flags still apply; the counts stay as they
    -- are (no per-event increment: PayPal's last_action is sticky).
    implausible := format('an implausible movement list (%s withdrawals, %s reinstatements) '
                          'ignored: the counts kept',
                          coalesce(moved_w::text, 'none'), coalesce(moved_r::text, 'none'));
    moved_w := NULL;
    moved_r := NULL;
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
         seen_withdrawn = seen_withdrawn OR st = 'withdrawn' OR coalesce(moved_w, 0) > 0,
         seen_reinstated = seen_reinstated OR st = 'reinstated' OR coalesce(moved_r, 0) > 0,
         withdrawn_count = CASE WHEN implausible IS NOT NULL THEN withdrawn_count
                                WHEN moved_w IS NULL THEN withdrawn_count + (st = 'withdrawn')::int
                                ELSE greatest(withdrawn_count, moved_w) END,
         reinstated_count = CASE WHEN implausible IS NOT NULL THEN reinstated_count
                                 WHEN moved_r IS NULL THEN reinstated_count + (st = 'reinstated')::int
                                 ELSE greatest(reinstated_count, moved_r) END,
         fee_minor = greatest(fee_minor, coalesce(fee, 0)),
         held_minor = CASE WHEN rnk > status_rank AND st = 'won' THEN 0 ELSE held_minor END,
         updated_at = now()
   WHERE dispute_id = d.dispute_id RETURNING * INTO d;
  IF released > 0 THEN  -- a won dispute's amount is refundable again (or held by another)
    UPDATE payments SET disputed_minor = disputed_minor - released, updated_at = now()
     WHERE payment_id = p.payment_id;
    PERFORM ps_disputes_top_up(p.payment_id);
  END IF;
  recv := 'asset:processor_receivable:' || coalesce(p.processor, ev.processor);
  -- What the events so far imply (see the header), against what is posted.
  w := greatest(d.withdrawn_count, d.seen_withdrawn::int, d.reinstated_count, d.seen_reinstated::int,
                (d.status = 'lost')::int);
  r := greatest(d.reinstated_count, d.seen_reinstated::int, w - 1);
  IF d.status = 'won' THEN
    r := w;
  ELSIF d.status = 'lost' THEN
    w := greatest(w, r + 1);
  END IF;
  SELECT count(*) FILTER (WHERE split_part(kind, ':', 1) IN ('dispute_withdrawal', 'dispute_rewithdrawal')),
         count(*) FILTER (WHERE split_part(kind, ':', 1) = 'dispute_reinstatement')
    INTO pw, pr FROM ledger_transactions
   WHERE payment_id = p.payment_id AND dispute_id = d.dispute_id;
  FOR k IN 1 .. greatest(w, r) LOOP
    IF k > pw AND k <= w THEN
      PERFORM ps_events_dispute_move(d, recv, false, k);
    END IF;
    IF k = 1 AND w >= 1 AND d.fee_minor > 0 THEN  -- once, whichever event told the fee
      PERFORM ps_events_post(p.payment_id, 'dispute_fee:' || d.dispute_id, NULL, d.dispute_id,
                             d.currency, ARRAY['expense:chargebacks', recv], ARRAY['D', 'C'],
                             ARRAY[d.fee_minor, d.fee_minor]);
    END IF;
    IF k > pr AND k <= r THEN
      PERFORM ps_events_dispute_move(d, recv, true, k);
    END IF;
  END LOOP;
  IF d.status = 'lost' THEN
    PERFORM ps_events_post(p.payment_id, 'dispute_lost:' || d.dispute_id, NULL, d.dispute_id,
                           d.currency, ARRAY['expense:chargebacks', 'asset:disputed_funds'],
                           ARRAY['D', 'C'], ARRAY[d.amount_minor, d.amount_minor]);
  END IF;
  SELECT * INTO d FROM disputes WHERE dispute_id = d.dispute_id;
  IF d.status <> 'won' AND d.held_minor < d.amount_minor THEN
    fx.note := format('hold capped: the processor disputes %s, the payment had %s left',
                      d.amount_minor, d.held_minor);
  END IF;
  IF implausible IS NOT NULL THEN
    fx.note := concat_ws('; ', nullif(fx.note, ''), implausible);
  END IF;
  fx.effect := 'dispute';
  fx.dispute_id := d.dispute_id;
  fx.processor_dispute_id := d.processor_dispute_id;
  fx.dispute_status := d.status;
  fx.dispute_amount_minor := d.amount_minor;
END $$;
REVOKE ALL ON FUNCTION ps_events_dispute(processor_events, text, bigint, int, int,
  processor_event_effects) FROM PUBLIC;

-- 029's signature: the same, with no movement list.
CREATE OR REPLACE FUNCTION ps_events_dispute(ev processor_events, st text, fee bigint,
                                             INOUT fx processor_event_effects)
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
BEGIN
  fx := ps_events_dispute(ev, st, fee, NULL::int, NULL::int, fx);
END $$;

-- 028's entry point, with the movement counts a dispute event states
-- (p_withdrawals / p_reinstatements; NULL when it states none).
CREATE FUNCTION ps_apply_processor_event(p_processor text, p_event_id text, p_action text,
                                         p_dispute_status text, p_fee bigint, p_outcome bytea,
                                         p_decline_code text, p_op text, p_withdrawals int,
                                         p_reinstatements int)
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
    fx := ps_events_dispute(ev, p_dispute_status, p_fee, p_withdrawals, p_reinstatements, fx);
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
REVOKE ALL ON FUNCTION ps_apply_processor_event(text, text, text, text, bigint, bytea, text, text,
  int, int) FROM PUBLIC;

-- 028's entry point (a ps-events of the previous release during a rolling
-- deploy): the same, stating no movements (029's count, one per event).
CREATE OR REPLACE FUNCTION ps_apply_processor_event(p_processor text, p_event_id text,
                                                    p_action text, p_dispute_status text,
                                                    p_fee bigint, p_outcome bytea,
                                                    p_decline_code text, p_op text)
  RETURNS SETOF processor_event_effects
  LANGUAGE sql SECURITY DEFINER SET search_path = public, pg_temp AS $$
  SELECT * FROM ps_apply_processor_event(p_processor, p_event_id, p_action, p_dispute_status,
                                         p_fee, p_outcome, p_decline_code, p_op, NULL::int,
                                         NULL::int)
$$;

-- ---- grants --------------------------------------------------------------------
GRANT EXECUTE ON FUNCTION ps_apply_processor_event(text, text, text, text, bigint, bytea, text, text,
                                                   int, int)
  TO paystream_events;
