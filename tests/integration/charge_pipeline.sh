#!/usr/bin/env bash
# The charge worker is a continuous pipeline: a slow processor answer holds
# only its own payment. One charge of 400 is answered after 20 s (procsim's
# pm_card_slow), the rest after 50 ms, with 40 requests in flight at most:
# the other 399 are charged meanwhile (freed slots are refilled at once);
# the partition holding the slow payment is committed only up to it and
# every other partition to its end (payctl lag: committed offsets); when the slow answer comes it is
# recorded and everything is committed. Then SIGTERM with a few hundred
# requests in flight: the worker stops within 10 s, and with a successor
# every payment is still charged exactly once.
source "$(dirname "$0")/lib.sh"
stack_up
curl -sf -X POST "$PAYSTREAM_PROCESSOR_URL/_sim/config?latency_ms=50&slow_ms=20000" >/dev/null
for s in ingest fraud ledger; do "$STACK" start-worker "$s" 1; done
PAYSTREAM_CHARGE_MAX_INFLIGHT=40 PAYSTREAM_PROCESSOR_TIMEOUT_MS=60000 "$STACK" start-worker charge 1
M1=$PAYSTREAM_RUN_DIR/pipe.jsonl
"$PAYCTL" publish --count 400 --slow 1 --run pipe --manifest "$M1" >/dev/null
slow_key=$(jq -r 'select(.kind=="slow") | .key' "$M1")
slow_status() { sql "SELECT status FROM payments WHERE idempotency_key = '$slow_key'"; }
charged_count() { sql "SELECT count(*) FROM payments WHERE status IN ('charged', 'succeeded')"; }
others_done() { [ "$(charged_count)" -ge 399 ]; }
t0=$SECONDS
check "399 payments are charged while one answer is still out" wait_until 60 others_done
log "399 charged after $((SECONDS - t0)) s"
eq "the slow payment is still being charged" "charging" "$(slow_status)"
eq "its attempt is durable and in flight" "charging 1" \
  "$(sql "SELECT a.state || ' ' || a.sends FROM charge_attempts a JOIN payments p USING (payment_id) WHERE p.idempotency_key = '$slow_key'")"
# The charge group's committed offsets, per partition (payctl lag).
lagging() { "$PAYCTL" lag --stage charge | awk '/^payments.fraud-scored\[/ && $NF > 0 { n++ } END { print n + 0 }'; }
one_lagging() { [ "$(lagging)" -eq 1 ]; }
check "only the slow payment's partition is held back; the others are committed to the end" \
  wait_until 10 one_lagging
"$PAYCTL" lag --stage charge | sed 's/^/#   /'
eq "the worker holds exactly that payment" "1" "$(metric charge 1 paystream_charges_pending)"
slow_done() { [ "$(slow_status)" = succeeded ]; }
check "the slow answer is recorded when it comes" wait_until 40 slow_done
none_lagging() { [ "$(lagging)" -eq 0 ]; }
check "then every partition is committed to its end" wait_until 15 none_lagging

# SIGTERM with requests in flight.
curl -sf -X POST "$PAYSTREAM_PROCESSOR_URL/_sim/config?latency_ms=400&latency=uniform" >/dev/null
pid=$(cat "$PAYSTREAM_RUN_DIR/pids/charge-1.pid")
"$STACK" http charge 1 /metrics >/dev/null
M2=$PAYSTREAM_RUN_DIR/term.jsonl
"$PAYCTL" publish --count 1000 --declines 50 --run term --manifest "$M2" >/dev/null
busy() { [ "$(metric charge 1 paystream_charges_in_flight)" -ge 20 ]; }
check "the charge worker has requests in flight" wait_until 60 busy
kill -TERM "$pid"
gone() { ! kill -0 "$pid" 2>/dev/null; }
check "it stops within 10 s of SIGTERM" wait_until 10 gone
rm -f "$PAYSTREAM_RUN_DIR/pids/charge-1.pid"
check "it left the consumer group" qgrep '"left the consumer group"' "$PAYSTREAM_RUN_DIR/logs/charge-1.log"
PAYSTREAM_CHARGE_MAX_INFLIGHT=40 "$STACK" start-worker charge 2
cat "$M1" "$M2" >"$PAYSTREAM_RUN_DIR/manifest.jsonl"
expected=$(manifest_terminal "$PAYSTREAM_RUN_DIR/manifest.jsonl")
check "with a successor every payment reaches its outcome" wait_until 120 all_terminal
eq "nothing left charging" "0" "$(sql "SELECT count(*) FROM charge_attempts WHERE state = 'charging'")"
check "workers stop cleanly" "$STACK" stop-workers
assert_invariants "$PAYSTREAM_RUN_DIR/manifest.jsonl"
check "no sanitizer reports" no_sanitizer_reports
finish
