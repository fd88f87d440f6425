#!/usr/bin/env bash
# The circuit breaker against a real outage: the processor answers 503 to
# everything (nothing charged). The circuit opens past the threshold, sends
# nothing while open, half-opens after the cool-down and re-opens when the
# probes fail; when the processor recovers, a probe succeeds and the circuit
# closes. No backup is configured, so nothing fails over: every payment —
# also one that arrives while the circuit is open — waits, is retried on the
# same processor with the same key and charged exactly once. Then nothing
# reachable at all: payments wait until the deadline and end failed,
# uncharged.
source "$(dirname "$0")/lib.sh"
stack_up
export PAYSTREAM_BREAKER_MIN_REQUESTS=5 PAYSTREAM_BREAKER_COOL_DOWN_MS=5000 \
  PAYSTREAM_BREAKER_HALF_OPEN_PROBES=2 PAYSTREAM_CHARGE_DEADLINE_MS=600000
sim "fail_rate=1&fail_status=503"
"$STACK" workers 1
"$PAYCTL" publish --count 60 --manifest "$PAYSTREAM_RUN_DIR/m.jsonl" >/dev/null
L=$PAYSTREAM_RUN_DIR/logs/charge-1.log
state() { metric charge 1 'paystream_circuit_breaker_state{stage="charge",processor="stripe"}'; }
calls() { metric charge 1 'paystream_processor_calls_total{stage="charge",processor="stripe"'; }
is_open() { [ "$(state)" = 2 ]; }
check "the circuit opens under the outage" wait_until 60 is_open
check "and the transition is logged" qgrep 'circuit for stripe: closed -> open' "$L"
opened_after=$(calls)
check "only after at least the minimum number of failures ($opened_after)" test "$opened_after" -ge 5
# Nothing is sent while the circuit is open: between the moment it opens and
# the moment its half-open probes fail (the event this waits for, 5 s of
# cool-down later, with 60 payments due for a retry every 100-500 ms), the
# processor receives its probes (PAYSTREAM_BREAKER_HALF_OPEN_PROBES=2) and
# nothing else.
received() { curl -sf "$PAYSTREAM_PROCESSOR_URL/_sim/requests" | jq .total; }
r_open=$(received)
reopened() { qgrep 'circuit for stripe: half_open -> open' "$L"; }
check "after the cool-down it half-opens, the probes fail, and it opens again" wait_until 30 reopened
r_reopen=$(received)
# (A probe for an attempt already sent is a status query, not a charge:
# /_sim/requests counts charges only, so 0 is a pass too.)
check "nothing but the 0-2 half-open probes was sent while it was open ($((r_reopen - r_open)))" \
  test $((r_reopen - r_open)) -ge 0 -a $((r_reopen - r_open)) -le 2
sim "fail_rate=0"
closed() { qgrep 'circuit for stripe: half_open -> closed' "$L" && [ "$(state)" = 0 ]; }
check "once the processor recovers a probe succeeds and the circuit closes" wait_until 60 closed
expected=$(manifest_terminal "$PAYSTREAM_RUN_DIR/m.jsonl")
check "every payment reaches its outcome" wait_until 120 all_terminal
eq "nothing failed over (no backup) and nothing was given up" 0 \
  "$(sql "SELECT count(*) FROM charge_attempts WHERE state IN ('abandoned', 'failed')")"
check "workers stop cleanly on SIGTERM" "$STACK" stop-workers
assert_invariants "$PAYSTREAM_RUN_DIR/m.jsonl"

# No processor reachable at all and no backup: payments wait for it (they
# are not failed the moment the circuit opens) until the deadline, then end
# `failed` with processor_unavailable, never charged.
for s in ingest fraud ledger; do "$STACK" start-worker "$s" 2; done
PAYSTREAM_CHARGE_DEADLINE_MS=4000 PAYSTREAM_PROCESSOR_URL_OVERRIDE=http://127.0.0.1:9 \
  "$STACK" start-worker charge 2
"$PAYCTL" publish --count 20 --run gone >/dev/null
gone() { sql "SELECT count(*) FROM payments WHERE idempotency_key LIKE 'gone-%' AND status = '$1'"; }
settled_gone() { [ "$(gone failed)" = 20 ]; }
check "with nothing reachable every payment ends failed" wait_until 60 settled_gone
eq "with processor_unavailable" "20" \
  "$(sql "SELECT count(*) FROM payments WHERE idempotency_key LIKE 'gone-%' AND error_code = 'processor_unavailable'")"
eq "only after the deadline (none ended well before the 4 s)" "0" \
  "$(sql "SELECT count(*) FROM payments p JOIN charge_attempts a USING (payment_id) WHERE p.idempotency_key LIKE 'gone-%' AND p.updated_at - a.created_at < interval '3 s'")"
eq "none was ever received (sends = refused)" "20" \
  "$(sql "SELECT count(*) FROM charge_attempts a JOIN payments p USING (payment_id) WHERE p.idempotency_key LIKE 'gone-%' AND a.sends = a.refused")"
check "the workers stop" "$STACK" stop-workers
check "no sanitizer reports" no_sanitizer_reports
finish
