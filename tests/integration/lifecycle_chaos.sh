#!/usr/bin/env bash
# The lifecycle under SIGKILL (#19): two instances of every stage; a mixed
# load (`payctl load --mix`: sales, authorizations then captures, sales then
# partial refunds, authorizations then voids — each operation published once
# its payment succeeded) while a driver SIGKILLs a random worker every ~2 s
# and restarts it. Then: every request answered; each operation and each
# charge happened exactly once at procsim (its operations log: one entry per
# idempotency key, every key one Postgres knows); procsim's totals equal
# Postgres's amounts; the books verify. Replaying every stage's topic from
# the start changes nothing in Postgres, at procsim or in the books.
source "$(dirname "$0")/lib.sh"
export PAYSTREAM_PARTITIONS=4
COUNT=${LC_CHAOS_COUNT:-400} RATE=${LC_CHAOS_RATE:-20}
R=$PAYSTREAM_RUN_DIR


stack_up
SIM=$PAYSTREAM_PROCESSOR_URL

"$STACK" workers 2
all_assigned() {
  local s
  for s in ingest fraud charge ledger; do assigned "$s-1" && assigned "$s-2" || return 1; done
}
check "every stage's instances own partitions" wait_until 60 all_assigned

chaos() {
  local victim workers=(ingest-1 ingest-2 fraud-1 fraud-2 charge-1 charge-2 ledger-1 ledger-2)
  while [ ! -e "$R/chaos.stop" ]; do
    sleep "0.$((RANDOM % 10))"; sleep 1.5
    victim=${workers[$((RANDOM % ${#workers[@]}))]}
    kill_and_restart "$victim"
  done
}
chaos >"$R/chaos.log" 2>&1 &
driver=$!

# Declines and duplicates stay in; no fraud and no repeat customers (a
# payment held for review would never get its operation).
"$PAYCTL" load --mix sale=60,authcap=25,refund=10,void=5 --count "$COUNT" --rate "$RATE" \
  --declines 3 --fraud 0 --duplicates 2 --repeat-customers 0 --timeout 400 --run lc \
  --json "$R/load.json" >/dev/null 2>"$R/load.log"
load_rc=$?
touch "$R/chaos.stop"
wait "$driver"
C=$R/chaos.log
log "chaos: $(grep -c '^SIGKILLed' "$C") workers killed; load: $(jq -c '{outcomes, mix, status, latency_ms: .latency_ms.p99}' "$R/load.json" 2>/dev/null)"
eq "every payment and every operation of the load is answered" 0 "$load_rc"
check "at least 5 workers were SIGKILLed (seen exiting with 137)" test "$(grep -c '^SIGKILLed' "$C")" -ge 5
eq "every killed worker was restarted" "$(grep -c '^SIGKILLed' "$C")" "$(grep -c '^restarted [a-z]*-' "$C")"
for k in authcap refund void; do
  check "the mix has $k payments" test "$(jq ".mix.$k" "$R/load.json")" -gt 0
done
check "operations were published" test "$(jq '.mix.operations' "$R/load.json")" -gt 0
check "every stage has committed everything" wait_until 240 caught_up

# ---- exactly once at procsim, amounts agree ----------------------------------------
eq "no payment or operation left in flight" "0 0" \
  "$(sql "SELECT (SELECT count(*) FROM payments WHERE outcome IS NULL), (SELECT count(*) FROM payment_operations WHERE state NOT IN ('posted', 'rejected', 'declined'))" | tr '\t' ' ')"
eq "every operation the load published exists, once" "$(jq '.mix.operations' "$R/load.json")" \
  "$(sql "SELECT count(*) FROM payment_operations WHERE idempotency_key LIKE 'lc-%'")"
eq "every operation succeeded" "0" \
  "$(sql "SELECT count(*) FROM payment_operations WHERE state <> 'posted'")"
curl -sf "$SIM/_sim/operations" >"$R/ops.json"
# What procsim did (a void is logged canceled or voided, by flavour).
done_ops='.data[] | select(.status == "succeeded" or .status == "canceled" or .status == "voided")'
eq "each idempotency key executed once at procsim" "0" \
  "$(jq "[$done_ops | .idempotency_key] | group_by(.) | map(select(length > 1)) | length" "$R/ops.json")"
jq -r "$done_ops | [.op, .idempotency_key] | @tsv" "$R/ops.json" | sort >"$R/ops.act"
sql "SELECT CASE p.kind WHEN 'sale' THEN 'sale' ELSE 'authorize' END, a.idempotency_key FROM charge_attempts a JOIN payments p USING (payment_id) WHERE a.state = 'succeeded'
     UNION ALL SELECT kind, processor_key FROM payment_operations WHERE state = 'posted'" | sort >"$R/ops.exp"
check "procsim executed exactly what Postgres records (op and key)" cmp -s "$R/ops.exp" "$R/ops.act"
curl -sf "$SIM/_sim/requests" | jq -r '.by_key | keys[]' | sort >"$R/req.keys"
sql "SELECT idempotency_key FROM charge_attempts UNION ALL SELECT processor_key FROM payment_operations WHERE processor_key IS NOT NULL" | sort >"$R/pg.keys"
eq "procsim was sent no key Postgres does not know (one key per charge and operation)" "0" \
  "$(comm -23 "$R/req.keys" "$R/pg.keys" | wc -l)"
sim_totals() { curl -sf "$SIM/_sim/totals" | jq -r '"\(.authorized) \(.captured) \(.refunded) \(.voided)"'; }
pg_totals() {
  sql "SELECT coalesce(sum(authorized_minor) FILTER (WHERE kind = 'authorize'), 0), coalesce(sum(captured_minor), 0), coalesce(sum(refunded_minor), 0), coalesce(sum(released_minor), 0) FROM payments" | tr '\t' ' '
}
eq "procsim's totals equal Postgres's (authorized captured refunded voided)" "$(sim_totals)" "$(pg_totals)"
check "payctl ledger verify passes" quietly "$PAYCTL" ledger verify
eq "no hold is left open" "0" \
  "$(sql "SELECT coalesce(sum(balance), 0) FROM ledger_accounts WHERE name = 'liability:authorized_holds'")"

# ---- replay every topic: nothing changes ---------------------------------------------
snapshot() {
  sql "SELECT (SELECT md5(string_agg(payment_id || status || authorized_minor || '/' || captured_minor || '/' || refunded_minor || '/' || released_minor || coalesce(encode(outcome, 'hex'), ''), ',' ORDER BY payment_id)) FROM payments),
       (SELECT md5(string_agg(operation_id || state || coalesce(error_code, '') || sends, ',' ORDER BY operation_id)) FROM payment_operations),
       (SELECT count(*) FROM charge_attempts), (SELECT count(*) FROM ledger_transactions), (SELECT count(*) FROM ledger_entries),
       (SELECT string_agg(name || currency || balance, ',' ORDER BY name, currency) FROM ledger_accounts)"
}
before=$(snapshot)
sim_before="$(sim_totals) $(jq '.data | length' "$R/ops.json")"
check "the workers stop" "$STACK" stop-workers
for s in ingest fraud charge ledger; do
  check "payctl replay moves $s to the earliest offset" quietly "$PAYCTL" replay --stage "$s" --to-offset earliest
done
check "the replay has work to do" eval '! caught_up'
"$STACK" workers 2
check "every stage re-processed its whole input" wait_until 300 caught_up
eq "nothing changed in Postgres" "$before" "$(snapshot)"
eq "nothing changed at procsim (totals, operations log)" "$sim_before" \
  "$(sim_totals) $(curl -sf "$SIM/_sim/operations" | jq '.data | length')"
check "payctl ledger verify still passes" quietly "$PAYCTL" ledger verify
check "workers stop cleanly on SIGTERM" "$STACK" stop-workers
check "no sanitizer reports" no_sanitizer_reports
finish
