#!/usr/bin/env bash
# Charge ends an attempt `failed` itself (the deadline, nobody ever received
# it) only if Postgres says every send was refused (charge_db.c
# SQL_RECORD_ATTEMPTS, own = 0: sends <= refused), never from its own copy of
# the counts. The only processor refuses every connection (nothing written:
# each send is counted and refused). For payment A another owner's send is
# counted meanwhile (as a worker that took the partition over would, as the
# charge role): the first worker's view still says "never received", but A
# may have reached the processor, so it must not end failed — it stays
# `charging`, its `pending` outcome is published and charge_unresolved lists
# it. Payment B, whose every send was refused, ends `failed`
# `processor_unavailable` (the same path, allowed).
source "$(dirname "$0")/lib.sh"
stack_up
for s in ingest fraud ledger; do "$STACK" start-worker "$s" 1; done
closed=$("$STACK" free-port)   # nothing listens there: connections are refused
PAYSTREAM_PROCESSOR_URL_OVERRIDE=http://127.0.0.1:$closed PAYSTREAM_CHARGE_DEADLINE_MS=15000 \
  "$STACK" start-worker charge 1
"$PAYCTL" publish --count 2 --run owner >/dev/null
refused_sends() { [ "$(sql "SELECT count(*) FROM charge_attempts a JOIN payments p USING (payment_id) WHERE p.idempotency_key LIKE 'owner-%' AND a.state = 'charging' AND a.sends >= 1 AND a.sends = a.refused")" = 2 ]; }
check "both attempts are charging, every send refused" wait_until 60 refused_sends
read -r a b < <(sql "SELECT string_agg(payment_id, ' ' ORDER BY idempotency_key) FROM payments WHERE idempotency_key LIKE 'owner-%'")
CHARGE_DSN=${PAYSTREAM_PG_DSN/user=postgres/user=paystream_charge}
eq "another owner's send of A is counted (as the charge role)" "$a" "$(psql "$CHARGE_DSN" -qAtX -v ON_ERROR_STOP=1 -c \
  "UPDATE charge_attempts SET sends = sends + 1, updated_at = now() WHERE payment_id = '$a' AND state = 'charging' RETURNING payment_id" 2>&1)"
status_of() { sql "SELECT status || ' ' || coalesce(error_code, '') FROM payments WHERE payment_id = '$1'"; }
b_failed() { [ "$(status_of "$b")" = "failed processor_unavailable" ]; }
check "B, never received, ends failed at the deadline" wait_until 90 b_failed
pending_of() { "$PAYCTL" outcomes 2>/dev/null | jq -r --arg p "$1" 'select(.payment_id == $p and .status == "pending") | .offset' | wc -l; }
check "A's pending outcome is published: the worker learned it may have been received" \
  wait_until 60 eval '[ "$(pending_of "$a")" -ge 1 ]'
eq "A is still charging, never failed" "charging " "$(status_of "$a")"
eq "its attempt is live" "charging" "$(sql "SELECT state FROM charge_attempts WHERE payment_id = '$a'")"
eq "charge_unresolved lists A" "$a" "$(sql "SELECT payment_id FROM charge_unresolved")"
check "workers stop cleanly on SIGTERM" "$STACK" stop-workers
check "no sanitizer reports" no_sanitizer_reports
finish
