#!/usr/bin/env bash
# Authorization expiry (#19): the processor's authorization window
# (processor_settings) set to 2 s; authorizations expire and the sweeper
# (`payctl expire`, Postgres's ps_expire_authorizations) releases each hold
# exactly once while two sweepers race: the payment ends `expired` (or
# `captured` when part of it was captured: only the rest is released), the
# hold is reversed by one `release` posting, one `expired` outcome is
# published per authorization, and a later capture or void is refused
# authorization_expired. A capture in flight holds the sweeper off. The
# books verify and every hold is captured or released.
source "$(dirname "$0")/lib.sh"
stack_up
"$STACK" workers 1
N=${EXPIRY_COUNT:-20}
amounts() { sql "SELECT authorized_minor, captured_minor, capturing_minor, refunded_minor, refunding_minor, released_minor, releasing_minor, status FROM payments WHERE merchant_id = 'm1' AND idempotency_key = '$1'" | tr '\t' ' '; }
count() { sql "SELECT count(*) FROM payments WHERE idempotency_key LIKE 'exp-%' AND status = '$1'"; }

# ---- a partly captured authorization (the default 7-day window) ------------------
"$PAYCTL" authorize m1 part-1 --amount 1000 --currency USD --customer c-part >/dev/null
check "an authorization is held" wait_until 120 is_status part-1 authorized
"$PAYCTL" capture m1 part-1 --key part-cap-1 --amount 600 --currency USD >/dev/null
check "a partial capture of 600 ends" wait_until 120 op_done part-cap-1
eq "it is posted" "posted" "$(op_state part-cap-1)"
P=$(sql "SELECT processor FROM payments WHERE idempotency_key = 'part-1'")
"$PAYCTL" expire | qgrep '^expired 0 ' ; eq "nothing expires inside the window" 0 "$?"

# ---- a 2 s window for the processor, then N authorizations -----------------------
sql "INSERT INTO processor_settings (processor, authorization_window) VALUES ('$P', interval '2 seconds')"
for i in $(seq 1 "$N"); do
  "$PAYCTL" authorize m1 "exp-$i" --amount $((100 + i)) --currency USD --customer "c-exp-$i" >/dev/null
done
all_authorized() { [ "$(count authorized)" -eq "$N" ]; }
check "$N authorizations are held" wait_until 180 all_authorized
eq "their window is the processor's 2 s" "$N" \
  "$(sql "SELECT count(*) FROM payments WHERE idempotency_key LIKE 'exp-%' AND authorization_expires_at < created_at + interval '1 hour'")"
# The partly captured one's window passes too (its 7 days, moved on).
sql "UPDATE payments SET authorization_expires_at = now() WHERE idempotency_key = 'part-1'"
# A capture in flight: the sweeper must leave this one until it settles.
sql "UPDATE payments SET capturing_minor = 1 WHERE idempotency_key = 'exp-1'"
past_window() { [ "$(sql "SELECT count(*) FROM payments WHERE idempotency_key LIKE 'exp-%' AND authorization_expires_at <= now()")" -eq "$N" ]; }
check "every window has passed" wait_until 30 past_window

# ---- two sweepers racing, a few small batches each --------------------------------
for s in a b; do
  ( for _ in 1 2 3; do "$PAYCTL" expire --limit 3 || exit 1; done ) >"$PAYSTREAM_RUN_DIR/sweep-$s.log" 2>&1 &
done
wait_ok=0; for j in $(jobs -p); do wait "$j" || wait_ok=1; done
eq "both sweepers succeed" 0 "$wait_ok"
eq "all but the one with a capture in flight expired" "$((N - 1)) 1" "$(count expired) $(count authorized)"
eq "the partly captured one is captured: only the 400 left is released" \
  "1000 600 0 0 0 400 0 captured" "$(amounts part-1)"
eq "an expired one released all it held" "102 0 0 0 0 102 0 expired" "$(amounts exp-2)"
eq "one expiry recorded per payment" "$N" "$(sql "SELECT count(*) FROM authorization_expiries")"
eq "one release posting per expired payment, for what was open" "$N 0" \
  "$(sql "SELECT count(*), count(*) FILTER (WHERE e.amount_minor <> p.released_minor) FROM ledger_transactions t JOIN ledger_entries e USING (transaction_id) JOIN payments p USING (payment_id) WHERE t.kind = 'release' AND t.operation_id IS NULL AND e.direction = 'D'" | tr '\t' ' ')"
# The capture in flight settles (its reservation given back): the next run takes it.
sql "UPDATE payments SET capturing_minor = 0 WHERE idempotency_key = 'exp-1'"
"$PAYCTL" expire >/dev/null
eq "once no capture is in flight it expires" "$N 0" "$(count expired) $(count authorized)"
eq "exp-1's hold is released in full" "101 0 0 0 0 101 0 expired" "$(amounts exp-1)"
"$PAYCTL" expire | qgrep '^expired 0 ' ; eq "a further sweep changes nothing" 0 "$?"

# ---- the merchant's outcomes --------------------------------------------------------
expired_outcomes() { "$PAYCTL" outcomes 2>/dev/null | jq -r 'select(.status == "expired") | "\(.idempotency_key) \(.amount)"' | sort -u; }
n_expired_outcomes() { [ "$(expired_outcomes | wc -l)" -eq "$((N + 1))" ]; }
check "one expired outcome per authorization (N + the partly captured one)" wait_until 60 n_expired_outcomes
eq "each carries what it released" "part-1 400" "$(expired_outcomes | grep '^part-1 ')"
eq "every expiry is announced" 0 "$(sql "SELECT count(*) FROM authorization_expiries WHERE announced_at IS NULL")"

# ---- later operations are refused --------------------------------------------------
"$PAYCTL" capture m1 exp-2 --key late-cap --amount 10 --currency USD >/dev/null
"$PAYCTL" void m1 exp-3 --key late-void >/dev/null
check "a capture after expiry ends" wait_until 60 op_done late-cap
check "a void after expiry ends" wait_until 60 op_done late-void
eq "the capture is refused authorization_expired" "rejected authorization_expired" "$(op_state late-cap)"
eq "the void is refused authorization_expired" "rejected authorization_expired" "$(op_state late-void)"
"$PAYCTL" refund m1 part-1 --key part-ref-1 --amount 100 --currency USD >/dev/null
check "what was captured can still be refunded" wait_until 120 op_done part-ref-1
eq "the refund is posted" "posted" "$(op_state part-ref-1)"

# ---- the books --------------------------------------------------------------------
check "payctl ledger verify passes" quietly "$PAYCTL" ledger verify
eq "no hold is left open (liability:authorized_holds at 0)" "0" \
  "$(sql "SELECT coalesce(sum(balance), 0) FROM ledger_accounts WHERE name = 'liability:authorized_holds'")"
check "no sanitizer reports" no_sanitizer_reports
finish
