-- Disputes (#20): every withdraw/reinstate cycle posted, a fee learned late
-- posted once, a dispute held short made visible.
--
-- disputes.withdrawn_count / reinstated_count: how many distinct events
-- said funds were withdrawn / reinstated (each event is applied once: 024's
-- processor_event_effects), only growing. What they imply is posted, each
-- movement once, whatever the order the events arrive in:
--   withdrawals W = max(withdrawn, reinstated, 1 if lost)
--   reinstatements R = max(reinstated, W - 1)   (never more than one withdrawn at a time)
--   won:  R = W (all that was withdrawn comes back);  lost: W = R + 1
-- The k-th withdrawal / reinstatement posts as `dispute_withdrawal:<id>`
-- (k = 1) or `dispute_withdrawal:<id>:<k>` (likewise dispute_reinstatement);
-- 024's `dispute_rewithdrawal:<id>` (lost after a reinstatement) counts as a
-- withdrawal already posted. Postings use the processor's amount; the hold
-- (held_minor) is capped by what the payment has left (028 tops it up).
-- The fee posts once as soon as a withdrawal is posted and a fee is known,
-- whichever event told it.
-- disputes_held_short lists disputes the processor holds more of than the
-- payment had left (an operator's list; ps-events also raises an ALERT and
-- counts paystream_disputes_held_short_total when an event leaves one so).
--
-- Safe on a populated live database: constant-default columns, backfilled
-- from the seen_* flags; the kind CHECK re-added NOT VALID then validated
-- (every existing kind still passes).

ALTER TABLE disputes ADD COLUMN withdrawn_count int NOT NULL DEFAULT 0 CHECK (withdrawn_count >= 0),
                     ADD COLUMN reinstated_count int NOT NULL DEFAULT 0 CHECK (reinstated_count >= 0);
UPDATE disputes SET withdrawn_count = seen_withdrawn::int, reinstated_count = seen_reinstated::int
 WHERE seen_withdrawn OR seen_reinstated;

CREATE OR REPLACE FUNCTION disputes_guard_forward() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF NEW.status_rank < OLD.status_rank
     OR (OLD.status_rank = 4 AND NEW.status <> OLD.status)
     OR (OLD.seen_withdrawn AND NOT NEW.seen_withdrawn)
     OR (OLD.seen_reinstated AND NOT NEW.seen_reinstated)
     OR NEW.withdrawn_count < OLD.withdrawn_count
     OR NEW.reinstated_count < OLD.reinstated_count
     OR (NEW.processor, NEW.processor_dispute_id, NEW.payment_id, NEW.currency, NEW.created_at)
        IS DISTINCT FROM (OLD.processor, OLD.processor_dispute_id, OLD.payment_id, OLD.currency,
                          OLD.created_at) THEN
    RAISE EXCEPTION 'guard: dispute % only moves forward (% -> %)', OLD.dispute_id, OLD.status,
      NEW.status USING ERRCODE = '23P51';
  END IF;
  RETURN NEW;
END $$;

ALTER TABLE ledger_transactions DROP CONSTRAINT ledger_transactions_kind_check;
ALTER TABLE ledger_transactions ADD CONSTRAINT ledger_transactions_kind_check CHECK (
  (dispute_id IS NULL AND kind IN ('payout', 'payment', 'refund', 'chargeback', 'authorization',
                                   'capture', 'release', 'refund_request', 'refund_reversal'))
  OR (dispute_id IS NOT NULL AND operation_id IS NULL
      AND split_part(kind, ':', 1) IN ('dispute_withdrawal', 'dispute_fee', 'dispute_reinstatement',
                                       'dispute_rewithdrawal', 'dispute_lost')
      AND (kind = split_part(kind, ':', 1) || ':' || dispute_id
           OR (split_part(kind, ':', 1) IN ('dispute_withdrawal', 'dispute_reinstatement')
               AND kind = split_part(kind, ':', 1) || ':' || dispute_id || ':' || split_part(kind, ':', 3)
               AND CASE WHEN split_part(kind, ':', 3) ~ '^[1-9][0-9]{0,8}$'
                        THEN split_part(kind, ':', 3)::int >= 2 ELSE false END)))) NOT VALID;
ALTER TABLE ledger_transactions VALIDATE CONSTRAINT ledger_transactions_kind_check;

CREATE VIEW disputes_held_short AS
SELECT d.dispute_id, d.processor, d.processor_dispute_id, d.payment_id, d.status, d.amount_minor,
       d.held_minor, d.amount_minor - d.held_minor AS short_minor, d.currency, d.updated_at
  FROM disputes d
 WHERE d.status <> 'won' AND d.held_minor < d.amount_minor;

-- Posts the k-th withdrawal or reinstatement of dispute d (once: the kind is unique).
CREATE FUNCTION ps_events_dispute_move(d disputes, recv text, reinstate boolean, k int)
  RETURNS boolean
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
  kd text := CASE WHEN reinstate THEN 'dispute_reinstatement' ELSE 'dispute_withdrawal' END
               || ':' || d.dispute_id || CASE WHEN k > 1 THEN ':' || k ELSE '' END;
BEGIN
  RETURN ps_events_post(d.payment_id, kd, NULL, d.dispute_id, d.currency,
    CASE WHEN reinstate THEN ARRAY[recv, 'asset:disputed_funds'] ELSE ARRAY['asset:disputed_funds', recv] END,
    ARRAY['D', 'C'], ARRAY[d.amount_minor, d.amount_minor]);
END $$;
REVOKE ALL ON FUNCTION ps_events_dispute_move(disputes, text, boolean, int) FROM PUBLIC;

-- 024's dispute event, with every cycle posted, the fee posted once known,
-- disputes held short topped up when a won one gives room back, and a
-- dispute left held short said in the effect's note ("hold capped: …").
CREATE OR REPLACE FUNCTION ps_events_dispute(ev processor_events, st text, fee bigint,
                                             INOUT fx processor_event_effects)
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
         withdrawn_count = withdrawn_count + (st = 'withdrawn')::int,
         reinstated_count = reinstated_count + (st = 'reinstated')::int,
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
  fx.effect := 'dispute';
  fx.dispute_id := d.dispute_id;
  fx.processor_dispute_id := d.processor_dispute_id;
  fx.dispute_status := d.status;
  fx.dispute_amount_minor := d.amount_minor;
END $$;
