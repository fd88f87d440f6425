-- The authorization-expiry sweeper's own role (#22): `payctl expire` in the
-- deploy kit (compose service `expire`, deploy/k8s/expire-cronjob.yaml) logs
-- in as paystream_expire, which may run the sweep and announce its outcomes,
-- and nothing else.
--
-- ps_expire_authorizations (022) is SECURITY DEFINER: it moves the payment,
-- records the expiry and posts the release with its owner's rights, so the
-- role needs no write on payments or the ledger. What `payctl expire` itself
-- runs (tools/payctl/expire_cmd.c): the function; the outbox read (every
-- column of authorization_expiries, the outcome's columns of payments); the
-- announcement stamp (UPDATE of announced_at alone; the row's other columns
-- are kept by 022's trigger anyway). And one read outside the function: the
-- books' balance check (006) is a deferred trigger, run at commit as the
-- committing role, and reads the release's entries (as for paystream_events,
-- 024) — without it every sweep that releases something is rolled back.
--
-- paystream_ledger keeps 022's grants: a sweeper already deployed with the
-- ledger role goes on working until it is moved to this one.
-- Safe on a populated live database: one role and grants, no table change.
DO $$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'paystream_expire') THEN
    CREATE ROLE paystream_expire LOGIN;
  END IF;
  EXECUTE format('GRANT CONNECT ON DATABASE %I TO paystream_expire', current_database());
END $$;
GRANT USAGE ON SCHEMA public TO paystream_expire;
GRANT EXECUTE ON FUNCTION ps_expire_authorizations(int) TO paystream_expire;
GRANT SELECT (payment_id, released_minor, expired_at, announced_at) ON authorization_expiries
  TO paystream_expire;
GRANT UPDATE (announced_at) ON authorization_expiries TO paystream_expire;
GRANT SELECT (payment_id, merchant_id, idempotency_key, currency, processor, processor_charge_id,
              authorized_minor, captured_minor, refunded_minor, released_minor)
  ON payments TO paystream_expire;
GRANT SELECT (transaction_id, currency, direction, amount_minor) ON ledger_entries TO paystream_expire;
