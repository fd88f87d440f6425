#!/usr/bin/env bash
# Exactly-once under crashes (#18): PAYSTREAM_EXACTLY_ONCE=1, two instances
# of every stage, a driver SIGKILLs a random worker every ~2 s during the load
# and restarts it (same instance id, so the same transactional.id fences the
# zombie). Afterwards a read_committed consumer of payments.outcomes (payctl
# outcomes: librdkafka, isolation.level read_committed) sees exactly one
# outcome per intent: none missing, none re-sent; and a read_committed read
# of each internal topic (requests, fraud-scored, charged, ledgered; the
# test tool topic-ids) sees each payment's event exactly once.
#   EO_COUNT   intents (default 12000: ~90 s on 2 cores shared with other
#              builds, ASan build, ~20 kills, every one mid-load; 8000 gave
#              15 there, too few to spare on a faster machine. The issue's
#              20000 took ~120 s. The test fails unless 8 kills land
#              mid-load, so a too-small count cannot pass quietly)
#   EO_MODE    1 (default) or 0: the same run at-least-once, which must fail
#              the "no outcome twice" and "no payment's event twice in
#              committed data" checks (how the test was verified)
source "$(dirname "$0")/lib.sh"
export PAYSTREAM_PARTITIONS=4
export PAYSTREAM_EXACTLY_ONCE=${EO_MODE:-1}
COUNT=${EO_COUNT:-12000}
M=$PAYSTREAM_RUN_DIR/manifest.jsonl

stack_up
"$STACK" workers 2
all_assigned() {
  local s
  for s in ingest fraud charge ledger; do assigned "$s-1" && assigned "$s-2" || return 1; done
}
check "every stage's instances own partitions" wait_until 60 all_assigned
if [ "$PAYSTREAM_EXACTLY_ONCE" = 1 ]; then
  check "workers run transactional (transactional.id paystream-STAGE-I)" \
    qgrep 'exactly-once: transactional.id paystream-charge-2' "$PAYSTREAM_RUN_DIR/logs/charge-2.log"
fi

chaos() {
  local victim
  local workers=(ingest-1 ingest-2 fraud-1 fraud-2 charge-1 charge-2 ledger-1 ledger-2)
  while [ ! -e "$PAYSTREAM_RUN_DIR/chaos.stop" ]; do
    sleep "0.$((RANDOM % 10))"; sleep 1.5
    victim=${workers[$((RANDOM % ${#workers[@]}))]}
    # How far the load was when the kill landed (checked below: mid-load).
    echo "terminal before kill: $(terminal_count)"
    kill_and_restart "$victim"
  done
}
chaos >"$PAYSTREAM_RUN_DIR/chaos.log" 2>&1 &
driver=$!

# Valid payments, declines and fraud: outcomes come from ledger, charge and fraud.
check "the load is published" quietly "$PAYCTL" publish --count "$COUNT" --declines $((COUNT / 40)) \
  --fraud $((COUNT / 400 + 1)) --run eo --manifest "$M" || { touch "$PAYSTREAM_RUN_DIR/chaos.stop"; wait "$driver"; finish; exit 1; }
N=$(manifest_terminal "$M")
enough_chaos() {
  [ "$(grep -c '^SIGKILLed' "$PAYSTREAM_RUN_DIR/chaos.log")" -ge 8 ] &&
    [ "$(terminal_count)" -ge $((N * 9 / 10)) ]
}
wait_until 400 enough_chaos || true
touch "$PAYSTREAM_RUN_DIR/chaos.stop"
wait "$driver"
C=$PAYSTREAM_RUN_DIR/chaos.log
log "chaos: $(grep -c '^SIGKILLed' "$C") workers killed, $(grep -c '^restarted' "$C") restarted; $N intents"
check "at least 8 workers were SIGKILLed (seen exiting with 137)" test "$(grep -c '^SIGKILLed' "$C")" -ge 8
# Mid-load: a kill that lands once every intent is terminal, or before the
# first one is, finds no work in flight. Counted per kill from the terminal
# count read just before it.
midload=$(awk -v n="$N" '/^terminal before kill: / { t = $4 } /^SIGKILLed/ && t > 0 && t < n { k++ } END { print k + 0 }' "$C")
log "kills with work in flight: $midload"
check "at least 8 of them landed mid-load (some, not all, intents terminal)" test "$midload" -ge 8
eq "every killed worker was restarted" "$(grep -c '^SIGKILLed' "$C")" "$(grep -c '^restarted' "$C")"
check "every intent reaches a terminal state" "$PAYCTL" wait --terminal "$N" --timeout 400

O=$PAYSTREAM_RUN_DIR/outcomes.jsonl
terminal_outcomes() { jq -r 'select(.status!="review") | .payment_id' "$O"; }
outcomes_complete() {
  "$PAYCTL" outcomes >"$O" 2>/dev/null && [ "$(terminal_outcomes | sort -u | wc -l)" -ge "$N" ]
}
check "every intent's outcome is committed on payments.outcomes" wait_until 120 outcomes_complete
check "workers stop cleanly on SIGTERM" "$STACK" stop-workers
# Everything any worker will ever commit is committed now: the final count.
check "payctl outcomes reads the whole topic (read_committed)" quietly "$PAYCTL" outcomes
"$PAYCTL" outcomes >"$O" 2>/dev/null
eq "one outcome per intent: distinct payments" "$N" "$(terminal_outcomes | sort -u | wc -l)"
eq "one outcome per intent: no outcome twice (read_committed)" "$N" "$(terminal_outcomes | wc -l)"
eq "no intent's outcome re-sent" "0" "$(terminal_outcomes | sort | uniq -d | wc -l)"
# Each internal topic holds each payment's event once in committed data: a
# read_committed reader of the whole topic (topic-ids) sees no payment twice;
# every intent has its request, and each stage's committed events cover the
# next stage's (nothing was charged or posted without its scored/charged
# event being committed).
ids() { sort "$PAYSTREAM_RUN_DIR/topic.$1"; }
for t in payments.requests payments.fraud-scored payments.charged payments.ledgered; do
  check "$t is read to its end (read_committed)" eval '"$BUILD/topic-ids" "$t" >"$PAYSTREAM_RUN_DIR/topic.$t"'
  log "$t: $(wc -l <"$PAYSTREAM_RUN_DIR/topic.$t") committed events, $(ids "$t" | uniq -d | wc -l) payments twice or more"
  eq "$t: no payment's event twice in committed data" "0" "$(ids "$t" | uniq -d | wc -l)"
  eq "$t: every event names its payment" "0" "$(grep -cv '^pay_' "$PAYSTREAM_RUN_DIR/topic.$t")"
done
eq "payments.requests: every intent's request committed" "$N" "$(ids payments.requests | uniq | wc -l)"
eq "payments.ledgered: one event per succeeded payment" \
  "$(jq -r 'select(.status=="succeeded") | .payment_id' "$O" | sort -u | wc -l)" "$(ids payments.ledgered | uniq | wc -l)"
for pair in "payments.requests payments.fraud-scored" "payments.fraud-scored payments.charged" \
  "payments.charged payments.ledgered"; do
  read -r up down <<<"$pair"
  eq "every payment on $down has its event on $up" "0" \
    "$(comm -13 <(ids "$up" | uniq) <(ids "$down" | uniq) | wc -l)"
done
jq -r 'select(.kind=="valid" or .kind=="decline" or .kind=="fraud") | [.key,.expect] | @tsv' "$M" | sort >"$PAYSTREAM_RUN_DIR/outcome.exp"
jq -r 'select(.status!="review") | [.idempotency_key,.status] | @tsv' "$O" | sort >"$PAYSTREAM_RUN_DIR/outcome.act"
check "each intent's outcome has the expected status" cmp -s "$PAYSTREAM_RUN_DIR/outcome.exp" "$PAYSTREAM_RUN_DIR/outcome.act"
curl -sf "$PAYSTREAM_PROCESSOR_URL/v1/charges" >"$PAYSTREAM_RUN_DIR/charges.json"
eq "no payment charged twice at the processor" "0" \
  "$(jq '[.data[] | select(.status=="succeeded") | .metadata.payment_id] | group_by(.) | map(select(length > 1)) | length' "$PAYSTREAM_RUN_DIR/charges.json")"
check "ledger verify passes" quietly "$PAYCTL" ledger verify
if [ "$PAYSTREAM_EXACTLY_ONCE" = 1 ]; then
  check "no worker exited but by SIGKILL or a clean stop" \
    test -z "$(grep -L -x -E '0|137' "$PAYSTREAM_RUN_DIR"/exits/* 2>/dev/null)"
fi
check "no sanitizer reports" no_sanitizer_reports
finish
