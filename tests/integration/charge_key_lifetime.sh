#!/usr/bin/env bash
# Never re-send past the processor's idempotency-key lifetime (#20 review 2).
# The processor's key lifetime is shortened to 4 s (processor_settings, 027:
# window 3.6 s) and procsim forgets answered keys after 3 s
# (key_lifetime_ms). For a sale and a refund each:
#  * found: procsim acts, the connection drops unanswered and procsim refuses
#    connections for 6 s (drop_next, refuse_ms), so every status query
#    fails until the first send is older than the lifetime and procsim has
#    forgotten the key. The query then says "key unknown": that proves
#    nothing any more, so the worker never sends it again; it searches by
#    its own id and records what procsim did (one request; charged or
#    refunded once).
#  * not found: procsim answers 500 before acting (fail_rate=1), status
#    queries too, until the first send is older than the lifetime; then the
#    query says "key unknown" and the search finds nothing. Never sent again
#    (procsim never charges or refunds it), left charging / processing,
#    listed by payctl charges unresolved with the reason, alerted, counted.
# Before the fix both "key unknown" answers were taken as "never arrived":
# the lost ones were executed twice, the others charged/refunded late.
source "$(dirname "$0")/lib.sh"
stack_up
export PAYSTREAM_PROCESSOR_TIMEOUT_MS=1500
SIM=$PAYSTREAM_PROCESSOR_URL
sql "INSERT INTO processor_settings (processor, authorization_window, idempotency_key_lifetime)
     VALUES ('stripe', interval '7 days', interval '4 seconds')" >/dev/null
requests_for() { curl -sf "$SIM/_sim/requests" | jq -r --arg k "$1" '.by_key[$k] // 0'; }
op_col() { sql "SELECT $2 FROM payment_operations WHERE merchant_id = 'm1' AND idempotency_key = '$1'"; }
totals() { curl -sf "$SIM/_sim/totals?payment_id=$1" | jq -r ".$2"; }
listed() { "$PAYCTL" charges unresolved | grep "$1" | qgrep "$2"; }
received() { [ "$(requests_for "$1")" -ge 1 ]; }
# The first send, by Postgres' clock, is older than the lifetime.
old_attempt() { [ "$(sql "SELECT now() - first_sent_at > interval '4.5 seconds' FROM charge_attempts a JOIN payments p USING (payment_id) WHERE p.idempotency_key = '$1'")" = t ]; }
old_op() { [ "$(sql "SELECT now() - first_sent_at > interval '4.5 seconds' FROM payment_operations WHERE merchant_id = 'm1' AND idempotency_key = '$1'")" = t ]; }

"$STACK" workers 1
"$PAYCTL" sale m1 base --amount 10000 --currency USD --customer c-base >/dev/null
check "a sale to refund succeeds" wait_until 120 is_status base succeeded
BASE=$(pid_of base)
sim "key_lifetime_ms=3000"

# ---- a sale whose answer is lost past the lifetime: found by the search ----
sim "drop_next=1&refuse_ms=6000"
"$PAYCTL" sale m1 lost-sale --amount 2500 --currency USD --customer c-lost >/dev/null
charged() { [ "$(totals "$(pid_of lost-sale)" captured)" = 2500 ]; }
check "procsim charges the sale, then drops the connection and refuses" wait_until 120 charged
check "the sale is settled succeeded (by the search)" wait_until 120 is_status lost-sale succeeded
LOST=$(pid_of lost-sale)
eq "procsim got one request for it: never sent again" 1 "$(requests_for "paystream:$LOST:stripe")"
eq "procsim charged it once" "2500 1" "$(totals "$LOST" captured) $(curl -sf "$SIM/_sim/totals?payment_id=$LOST" | jq '.objects | length')"

# ---- a sale procsim never got, past the lifetime: not found, never re-sent --
sim "fail_rate=1&fail_status=500"
"$PAYCTL" sale m1 never-sale --amount 2600 --currency USD --customer c-never >/dev/null
# (its payment id read on every try: ingest may not have claimed it yet)
never_received() { local p; p=$(pid_of never-sale); [ -n "$p" ] && received "paystream:$p:stripe"; }
check "procsim refuses the sale before acting" wait_until 120 never_received
check "its first send is older than the key lifetime" wait_until 60 old_attempt never-sale
sim "fail_rate=0"
NEVER=$(pid_of never-sale)
check "it stays unresolved, listed with the reason" \
  wait_until 120 listed "$NEVER" "not found by a search"
eq "never sent again" 1 "$(requests_for "paystream:$NEVER:stripe")"
eq "procsim never charged it" 0 "$(totals "$NEVER" captured)"
eq "the payment is still charging" charging "$(status_of never-sale)"
unfound() { [ "$(metric charge 1 paystream_charge_key_unfound_total)" -ge 1 ]; }
check "the key-unfound metric counts it" wait_until 30 unfound
age_up() { [ "$(metric charge 1 paystream_charge_unresolved_oldest_seconds)" -ge 5 ]; }
check "the unresolved-age metric counts it" wait_until 30 age_up
check "an ALERT is logged" qgrep "ALERT charge at stripe past the processor's key lifetime" \
  "$PAYSTREAM_RUN_DIR/logs/charge-1.log"

# ---- a refund whose answer is lost past the lifetime: found by the search --
sim "drop_next=1&refuse_ms=6000"
"$PAYCTL" refund m1 base --key lost-refund --amount 3000 --currency USD >/dev/null
refunded() { [ "$(totals "$BASE" refunded)" = "$1" ]; }
check "procsim refunds, then drops the connection and refuses" wait_until 120 refunded 3000
posted() { [ "$(op_col "$1" state)" = posted ]; }
check "the refund is settled (by the search) and posted" wait_until 120 posted lost-refund
eq "procsim got one request for it: never sent again" 1 \
  "$(requests_for "op_$(op_col lost-refund operation_id)")"
eq "procsim refunded it once" 3000 "$(totals "$BASE" refunded)"

# ---- a refund procsim never got, past the lifetime: not found, never re-sent
sim "fail_rate=1&fail_status=500"
"$PAYCTL" refund m1 base --key never-refund --amount 2000 --currency USD >/dev/null
OPKEY=
opkey() { OPKEY="op_$(op_col never-refund operation_id)"; [ "$OPKEY" != op_ ] && received "$OPKEY"; }
check "procsim refuses the refund before acting" wait_until 120 opkey
check "its first send is older than the key lifetime" wait_until 60 old_op never-refund
sim "fail_rate=0"
check "it stays unresolved, listed with the reason" \
  wait_until 120 listed "never-refund" "not found by a search"
eq "never sent again" 1 "$(requests_for "$OPKEY")"
eq "procsim refunded nothing more" 3000 "$(totals "$BASE" refunded)"
eq "the refund is still processing, its amount reserved" "processing 2000" \
  "$(op_col never-refund state) $(sql "SELECT refunding_minor FROM payments WHERE payment_id = '$BASE'")"

# ---- a refund procsim declines, its answer lost, past the lifetime: the
# search answers the decline as a 402 that names no operation of ours (a
# proxy's 4xx reads the same): no verdict — never decided by it, an ALERT
# once and asked again slowly, not every 2 s for ever (s11 review).
# (another payment: base's operations wait behind never-refund, held)
"$PAYCTL" sale m1 base2 --amount 5000 --currency USD --customer c-base2 >/dev/null
check "a second sale to refund succeeds" wait_until 120 is_status base2 succeeded
sim "refund_decline_next=1&drop_next=1&refuse_ms=6000"
"$PAYCTL" refund m1 base2 --key lost-decline --amount 1000 --currency USD >/dev/null
DKEY=
dkey() { DKEY="op_$(op_col lost-decline operation_id)"; [ "$DKEY" != op_ ] && received "$DKEY"; }
check "procsim declines a refund and drops its answer" wait_until 120 dkey
check "past the lifetime, listed: its search answered without a verdict" \
  wait_until 120 listed "lost-decline" "without a verdict"
alerts() { grep -c "ALERT operation $(op_col lost-decline operation_id) past .*without a verdict" \
  "$PAYSTREAM_RUN_DIR/logs/charge-1.log"; }
eq "the ALERT is logged once" 1 "$(alerts)"
eq "never sent again" 1 "$(requests_for "$DKEY")"
eq "still processing: nothing decided it" processing "$(op_col lost-decline state)"
check "payctl ledger verify passes" quietly "$PAYCTL" ledger verify
check "workers stop cleanly on SIGTERM" "$STACK" stop-workers
check "no sanitizer reports" no_sanitizer_reports
finish
