#!/usr/bin/env bash
# Unknown attempts are settled by asking the processor, not by re-sending
# blindly (#20, the resolver). Three kinds of attempt:
#  * lost: procsim charges, then answers only after the client gave up
#    (timeout_rate=1, hang beyond PAYSTREAM_PROCESSOR_TIMEOUT_MS); the
#    charge worker is SIGKILLed while they hang and restarted: it starts
#    with a status query for each attempt with a counted send.
#  * never: procsim answers 500 before acting (fail_rate=1) to the charge
#    and to the status queries (until the circuit opens); once faults
#    clear, the query says the key is unknown and the charge is re-sent
#    with the same key.
# Every attempt ends `succeeded` and posted once; procsim got exactly one
# request per lost key (found by the query, never re-sent) and, per
# never-charged key, one more than it had refused (the re-send); no double charge;
# nothing unresolved left; the ledger verifies.
source "$(dirname "$0")/lib.sh"
stack_up
export PAYSTREAM_PROCESSOR_TIMEOUT_MS=1500
SIM=$PAYSTREAM_PROCESSOR_URL
N=${RESOLVER_COUNT:-12}
key_of() { sql "SELECT 'paystream:' || payment_id || ':stripe' FROM payments WHERE idempotency_key = '$1'"; }
requests_for() { curl -sf "$SIM/_sim/requests" | jq -r --arg k "$1" '.by_key[$k] // 0'; }
count_where() { sql "SELECT count(*) FROM payments WHERE idempotency_key LIKE '$1' AND $2"; }
procsim_charged() { curl -sf "$SIM/v1/charges" | jq '[.data[] | select(.status=="succeeded")] | length'; }

"$STACK" workers 1
sim "timeout_rate=1&hang_ms=6000"
for i in $(seq 1 "$N"); do
  "$PAYCTL" sale m1 "lost-$i" --amount $((2000 + i)) --currency USD --customer "c-lost-$i" >/dev/null
done
acted() { [ "$(procsim_charged)" -ge $((N / 2)) ]; }
check "procsim charges while every answer hangs" wait_until 180 acted
check "charge is SIGKILLed mid-way" "$STACK" kill-worker charge 1
"$STACK" start-worker charge 1
check "and restarted" wait_until 60 ready charge 1
# Every lost attempt reaches procsim under timeout_rate (the restarted
# worker sends those the first had not): one sent only after the faults
# below change would be refused before acting, and rightly sent again.
lost_sent() {
  local i
  for i in $(seq 1 "$N"); do [ "$(requests_for "$(key_of "lost-$i")")" -ge 1 ] || return 1; done
}
check "every lost attempt reached procsim while answers hang" wait_until 180 lost_sent

sim "timeout_rate=0&fail_rate=1&fail_status=500"
for i in $(seq 1 "$N"); do
  "$PAYCTL" sale m1 "never-$i" --amount $((3000 + i)) --currency USD --customer "c-never-$i" >/dev/null
done
# The circuit opens on the 500s: attempts not sent before it opened wait
# (their status queries would be refused too). At least half are refused.
refused_some() {
  local i n=0
  for i in $(seq 1 "$N"); do
    [ "$(requests_for "$(key_of "never-$i")")" -ge 1 ] && n=$((n + 1))
  done
  [ "$n" -ge $((N / 2)) ]
}
check "never-charged attempts are refused before procsim acts" wait_until 180 refused_some
declare -A before
for i in $(seq 1 "$N"); do before[$i]=$(requests_for "$(key_of "never-$i")"); done
sim "fail_rate=0&timeout_rate=0"

done_all() { [ "$(count_where '%' "status = 'succeeded'")" = $((2 * N)) ]; }
check "every attempt ends succeeded" wait_until 240 done_all
lost_once=0 never_once_more=0
for i in $(seq 1 "$N"); do
  [ "$(requests_for "$(key_of "lost-$i")")" = 1 ] && lost_once=$((lost_once + 1))
  [ "$(requests_for "$(key_of "never-$i")")" = $((before[$i] + 1)) ] && never_once_more=$((never_once_more + 1))
done
eq "each charged-but-unanswered attempt was sent once: found by a status query" "$N" "$lost_once"
eq "each never-charged attempt was sent once more after procsim recovered, same key" "$N" "$never_once_more"
looked() { [ "$(metric charge 1 paystream_charge_status_queries_total)" -ge 1 ]; }
check "the restarted worker asked procsim (status queries)" looked
curl -sf "$SIM/v1/charges" >"$PAYSTREAM_RUN_DIR/charges.json"
eq "no payment charged twice at procsim" "0" \
  "$(jq '[.data[] | select(.status=="succeeded") | .metadata.payment_id] | group_by(.) | map(select(length > 1)) | length' "$PAYSTREAM_RUN_DIR/charges.json")"
eq "procsim charged each payment once" "$((2 * N))" "$(procsim_charged)"
posted_all() { [ "$(sql "SELECT count(DISTINCT payment_id) FROM ledger_transactions")" = $((2 * N)) ]; }
check "every payment is posted" wait_until 120 posted_all
eq "posted once each" "$((2 * N))" "$(sql "SELECT count(*) FROM ledger_transactions")"
eq "one attempt per payment (never another processor)" "$((2 * N))" "$(sql "SELECT count(*) FROM charge_attempts")"
eq "nothing unresolved is left" "" "$("$PAYCTL" charges unresolved | tail -n +2)"
check "payctl ledger verify passes" quietly "$PAYCTL" ledger verify
check "workers stop cleanly on SIGTERM" "$STACK" stop-workers
check "no sanitizer reports" no_sanitizer_reports
finish
