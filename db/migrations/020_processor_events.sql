-- Processor events (webhooks) as received: what payments.processor-events
-- carries, recorded once per (processor, event_id) whatever the number of
-- deliveries — processors retry until they hear 2xx, and the receiver
-- (services/webhook) publishes every delivery it acknowledges. The events
-- stage (services/events) inserts with ON CONFLICT DO NOTHING: the first
-- copy is the record, later ones change nothing. Append-only: no role but
-- the owner may UPDATE or DELETE. Applying an event to a payment (settling
-- an unresolved charge attempt, refunds, disputes) will key off this table,
-- so each event is applied at most once.
CREATE TABLE processor_events (
  processor         text   NOT NULL CHECK (processor ~ '^[a-z0-9_]{1,63}$'),
  event_id          text   NOT NULL CHECK (length(event_id) BETWEEN 1 AND 255),
  flavour           text   NOT NULL CHECK (flavour IN ('stripe', 'paypal')),
  type              text   NOT NULL CHECK (length(type) BETWEEN 1 AND 255),
  payment_id        text   NOT NULL CHECK (length(payment_id) BETWEEN 1 AND 255),
  object_id         text   NOT NULL DEFAULT '',
  object_type       text   NOT NULL DEFAULT '',
  charge_id         text   NOT NULL DEFAULT '',
  payment_intent_id text   NOT NULL DEFAULT '',
  status            text   NOT NULL DEFAULT '',
  amount_minor      bigint CHECK (amount_minor >= 0),
  currency          text   CHECK (currency ~ '^[A-Z]{3}$'),
  occurred_at       timestamptz,
  received_at       timestamptz NOT NULL,
  raw_body          bytea  NOT NULL,
  kafka_partition   int    NOT NULL,
  kafka_offset      bigint NOT NULL,
  recorded_at       timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (processor, event_id),
  CHECK ((amount_minor IS NULL) = (currency IS NULL))
);
CREATE INDEX processor_events_payment ON processor_events (payment_id, occurred_at);

CREATE FUNCTION processor_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'processor_events is append-only' USING ERRCODE = 'P0001';
END $$;
CREATE TRIGGER processor_events_append_only BEFORE UPDATE OR DELETE ON processor_events
  FOR EACH ROW EXECUTE FUNCTION processor_events_append_only();

DO $$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'paystream_events') THEN
    CREATE ROLE paystream_events LOGIN;
  END IF;
  EXECUTE format('GRANT CONNECT ON DATABASE %I TO paystream_events', current_database());
END $$;
GRANT USAGE ON SCHEMA public TO paystream_events;
-- events: records what processors said; reads it back (dedup); nothing else yet.
GRANT SELECT, INSERT ON processor_events TO paystream_events;
