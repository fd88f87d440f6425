-- Safe failover. An attempt may be abandoned (and the payment tried at the
-- next processor) only when the processor provably never received it: every
-- send was refused before a byte left. `sends` is incremented in Postgres
-- before each send and `refused` after each refused connection, so a crash
-- anywhere leaves sends > refused and the attempt stays where it is.
ALTER TABLE charge_attempts ADD COLUMN sends int NOT NULL DEFAULT 0 CHECK (sends >= 0);
ALTER TABLE charge_attempts ADD COLUMN refused int NOT NULL DEFAULT 0 CHECK (refused >= 0);
ALTER TABLE charge_attempts DROP CONSTRAINT charge_attempts_state_check;
ALTER TABLE charge_attempts ADD CONSTRAINT charge_attempts_state_check
  CHECK (state IN ('charging', 'succeeded', 'declined', 'failed', 'abandoned'));
ALTER TABLE charge_attempts ADD CONSTRAINT charge_attempts_abandon_only_unreceived
  CHECK (state <> 'abandoned' OR sends = refused);
-- One live attempt per payment: never two processors charging at once, and
-- (as before) at most one success.
CREATE UNIQUE INDEX charge_attempts_one_live ON charge_attempts (payment_id)
  WHERE state IN ('charging', 'succeeded');
