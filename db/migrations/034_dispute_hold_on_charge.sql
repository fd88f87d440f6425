-- 034: a dispute recorded before its sale was charged is held when the
-- money arrives.
--
-- A reordered or early webhook can record a dispute while its sale is still
-- `charging` (its answer lost, settled later by a status query, a search, a
-- webhook or the settlement report): the payment has nothing captured, so
-- the dispute is held at 0 (024/028). When the sale is then charged
-- (captured_minor 0 -> amount, payments_fill_charged) nothing topped the
-- hold up and 028's guard skipped growth from 0: a refund of the whole
-- amount was accepted on top of the chargeback (the customer paid back
-- twice), and the dispute's next event failed 028's guard at commit and was
-- dead-lettered. Now:
--  - whenever captured_minor grows, in the same statement, the payment's
--    disputes held short are topped up (ps_disputes_top_up, 028);
--  - 028's deferred guard checks every growth of captured_minor, from 0
--    too, so no writer can leave a dispute held short while there is room.
--
-- Safe on a populated live database: one trigger function, one new trigger,
-- one constraint trigger re-created (catalog only), and the holds of
-- payments already in that state topped up (normally none).

SET lock_timeout = '10s';

CREATE FUNCTION payments_top_up_disputes() RETURNS trigger
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
BEGIN
  IF EXISTS (SELECT 1 FROM disputes WHERE payment_id = NEW.payment_id AND status <> 'won'
               AND held_minor < amount_minor) THEN
    PERFORM ps_disputes_top_up(NEW.payment_id);
  END IF;
  RETURN NULL;
END $$;
REVOKE ALL ON FUNCTION payments_top_up_disputes() FROM PUBLIC;
CREATE TRIGGER payments_captured_top_up AFTER UPDATE ON payments FOR EACH ROW
  WHEN (NEW.captured_minor > OLD.captured_minor)
  EXECUTE FUNCTION payments_top_up_disputes();

DROP TRIGGER payments_disputes_held ON payments;
CREATE CONSTRAINT TRIGGER payments_disputes_held AFTER UPDATE ON payments
  DEFERRABLE INITIALLY DEFERRED FOR EACH ROW
  WHEN (NEW.disputed_minor IS DISTINCT FROM OLD.disputed_minor
        OR NEW.captured_minor > OLD.captured_minor
        OR NEW.refunded_minor + NEW.refunding_minor < OLD.refunded_minor + OLD.refunding_minor)
  EXECUTE FUNCTION payments_guard_disputes_held();

SELECT ps_disputes_top_up(payment_id)
  FROM (SELECT DISTINCT payment_id FROM disputes
         WHERE status <> 'won' AND held_minor < amount_minor) d;
