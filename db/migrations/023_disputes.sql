-- Applying processor events (#20): what a processor told us after the fact.
--
-- disputes: one row per processor dispute (processor, processor_dispute_id),
-- its status only moving forward (status_rank: open 1, withdrawn 2,
-- reinstated 3, won/lost 4 — closed is final), whatever order its events
-- arrive in. seen_withdrawn / seen_reinstated only grow: they record that
-- an event said so, so a money movement an event implies is posted even
-- when the event that announced it arrives after the dispute closed.
-- held_minor is what this dispute holds in payments.disputed_minor (not
-- refundable while the dispute is open, withdrawn, reinstated or lost; a
-- won dispute gives it back): never more than the payment still had room
-- for, so a dispute never takes back what was refunded.
--
-- refund_failures: a refund the processor failed after it had succeeded,
-- once per operation; its postings reversed and its amount refundable again.
--
-- processor_event_effects: what applying each recorded processor event did
-- (once per event; a redelivered event returns the same row, so the
-- outcome re-published for it is the same).
--
-- ledger_transactions.dispute_id names the dispute a posting is for. The
-- postings of no operation stay unique per (payment_id, kind) (013's
-- index, which the ledger's ON CONFLICT names), so a dispute's postings
-- carry the dispute's row id in their kind: `dispute_withdrawal:<id>`,
-- `dispute_fee:<id>`, `dispute_reinstatement:<id>`, `dispute_rewithdrawal:<id>`,
-- `dispute_lost:<id>` — each movement at most once per dispute, a second
-- dispute on the same payment posts its own. A late refund failure posts
-- `refund_reversal` under the refund's operation_id.
--
-- Safe on a populated live database: new tables, a nullable column, a
-- CHECK added NOT VALID then validated (every existing kind still passes).

CREATE TABLE disputes (
  dispute_id           bigserial PRIMARY KEY,
  processor            text NOT NULL,
  processor_dispute_id text NOT NULL CHECK (length(processor_dispute_id) BETWEEN 1 AND 255),
  payment_id           text NOT NULL REFERENCES payments (payment_id),
  charge_id            text NOT NULL DEFAULT '',
  amount_minor         bigint NOT NULL CHECK (amount_minor > 0),
  currency             char(3) NOT NULL,
  fee_minor            bigint NOT NULL DEFAULT 0 CHECK (fee_minor >= 0),
  status               text NOT NULL CHECK (status IN ('open', 'withdrawn', 'reinstated', 'won', 'lost')),
  status_rank          int NOT NULL,
  seen_withdrawn       boolean NOT NULL DEFAULT false,
  seen_reinstated      boolean NOT NULL DEFAULT false,
  held_minor           bigint NOT NULL DEFAULT 0,
  created_at           timestamptz NOT NULL DEFAULT now(),
  updated_at           timestamptz NOT NULL DEFAULT now(),
  UNIQUE (processor, processor_dispute_id),
  CHECK (status_rank = CASE status WHEN 'open' THEN 1 WHEN 'withdrawn' THEN 2
                                   WHEN 'reinstated' THEN 3 ELSE 4 END),
  CHECK (held_minor >= 0 AND held_minor <= amount_minor),
  CHECK (status <> 'won' OR held_minor = 0)
);
CREATE INDEX disputes_by_payment ON disputes (payment_id);

CREATE FUNCTION disputes_guard_forward() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF NEW.status_rank < OLD.status_rank
     OR (OLD.status_rank = 4 AND NEW.status <> OLD.status)
     OR (OLD.seen_withdrawn AND NOT NEW.seen_withdrawn)
     OR (OLD.seen_reinstated AND NOT NEW.seen_reinstated)
     OR (NEW.processor, NEW.processor_dispute_id, NEW.payment_id, NEW.currency, NEW.created_at)
        IS DISTINCT FROM (OLD.processor, OLD.processor_dispute_id, OLD.payment_id, OLD.currency,
                          OLD.created_at) THEN
    RAISE EXCEPTION 'guard: dispute % only moves forward (% -> %)', OLD.dispute_id, OLD.status,
      NEW.status USING ERRCODE = '23P51';
  END IF;
  RETURN NEW;
END $$;
CREATE TRIGGER disputes_forward BEFORE UPDATE ON disputes FOR EACH ROW
  EXECUTE FUNCTION disputes_guard_forward();

CREATE TABLE refund_failures (
  operation_id  text PRIMARY KEY REFERENCES payment_operations (operation_id),
  payment_id    text NOT NULL REFERENCES payments (payment_id),
  processor     text NOT NULL,
  event_id      text NOT NULL,
  amount_minor  bigint NOT NULL CHECK (amount_minor > 0),
  created_at    timestamptz NOT NULL DEFAULT now(),
  FOREIGN KEY (processor, event_id) REFERENCES processor_events (processor, event_id)
);

CREATE TABLE processor_event_effects (
  processor            text NOT NULL,
  event_id             text NOT NULL,
  effect               text NOT NULL CHECK (effect IN
                         ('charge_settled', 'charge_declined', 'refund_reversed', 'dispute', 'ignored')),
  note                 text NOT NULL DEFAULT '',
  payment_id           text NOT NULL,
  operation_id         text,
  dispute_id           bigint REFERENCES disputes (dispute_id),
  processor_dispute_id text,
  dispute_status       text,
  dispute_amount_minor bigint,
  currency             text,
  captured_minor       bigint,
  refunded_minor       bigint,
  disputed_minor       bigint,
  applied_at           timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (processor, event_id),
  FOREIGN KEY (processor, event_id) REFERENCES processor_events (processor, event_id)
);

CREATE TRIGGER processor_event_effects_append_only BEFORE UPDATE OR DELETE ON processor_event_effects
  FOR EACH ROW EXECUTE FUNCTION processor_events_append_only();
CREATE TRIGGER disputes_kept BEFORE DELETE ON disputes
  FOR EACH ROW EXECUTE FUNCTION processor_events_append_only();

ALTER TABLE ledger_transactions ADD COLUMN dispute_id bigint REFERENCES disputes (dispute_id);
ALTER TABLE ledger_transactions DROP CONSTRAINT ledger_transactions_kind_check;
ALTER TABLE ledger_transactions ADD CONSTRAINT ledger_transactions_kind_check CHECK (
  (dispute_id IS NULL AND kind IN ('payment', 'refund', 'chargeback', 'authorization', 'capture',
                                   'release', 'refund_request', 'refund_reversal'))
  OR (dispute_id IS NOT NULL AND operation_id IS NULL
      AND split_part(kind, ':', 1) IN ('dispute_withdrawal', 'dispute_fee', 'dispute_reinstatement',
                                       'dispute_rewithdrawal', 'dispute_lost')
      AND kind = split_part(kind, ':', 1) || ':' || dispute_id)) NOT VALID;
ALTER TABLE ledger_transactions VALIDATE CONSTRAINT ledger_transactions_kind_check;
CREATE INDEX ledger_transactions_by_dispute ON ledger_transactions (dispute_id)
  WHERE dispute_id IS NOT NULL;
