#!/usr/bin/env bash
# Full replay: after a completed load, every stage's group is moved back to
# the earliest offset and re-processes everything. No new payment, charge,
# assessment or posting; no state or balance changes; re-sent outcomes are
# byte-identical to the first ones.
source "$(dirname "$0")/lib.sh"
stack_up
"$STACK" workers 1
M=$PAYSTREAM_RUN_DIR/manifest.jsonl
"$PAYCTL" publish --count 2000 --duplicates 200 --conflicts 50 --declines 50 --fraud 10 --invalid 20 \
  --garbage 10 --run rp --manifest "$M" >/dev/null
check "every intent reaches a terminal state, exactly one each" terminal_exactly "$(manifest_terminal "$M")" 240
check "every stage has committed everything" wait_until 60 caught_up

snapshot() {
  sql "SELECT (SELECT count(*) FROM payments), (SELECT md5(string_agg(payment_id || status || coalesce(encode(outcome, 'hex'), ''), ',' ORDER BY payment_id)) FROM payments),
       (SELECT count(*) FROM rejections), (SELECT count(*) FROM fraud_assessments), (SELECT count(*) FROM charge_attempts),
       (SELECT count(*) FROM ledger_transactions), (SELECT count(*) FROM ledger_entries),
       (SELECT string_agg(name || currency || balance, ',' ORDER BY name, currency) FROM ledger_accounts)"
}
before=$(snapshot)
charges=$(curl -sf "$PAYSTREAM_PROCESSOR_URL/v1/charges" | jq '.data | length')
"$PAYCTL" outcomes >"$PAYSTREAM_RUN_DIR/outcomes-before.jsonl"
outcomes_before=$(wc -l <"$PAYSTREAM_RUN_DIR/outcomes-before.jsonl")
originals() { jq -r 'select(.replayed == false) | [.payment_id, .raw] | @tsv' "$1" | sort -u | wc -l; }
distinct_before=$(originals "$PAYSTREAM_RUN_DIR/outcomes-before.jsonl")

check "the workers stop" "$STACK" stop-workers
for s in ingest fraud charge ledger; do
  check "payctl replay moves $s to the earliest offset" quietly "$PAYCTL" replay --stage "$s" --to-offset earliest
done
check "the replay has work to do" eval '! caught_up'
"$STACK" workers 1
check "every stage re-processed its whole input" wait_until 180 caught_up

eq "nothing changed in Postgres" "$before" "$(snapshot)"
eq "nothing was charged again" "$charges" "$(curl -sf "$PAYSTREAM_PROCESSOR_URL/v1/charges" | jq '.data | length')"
"$PAYCTL" outcomes >"$PAYSTREAM_RUN_DIR/outcomes.jsonl"
check "outcomes were re-sent" test "$(wc -l <"$PAYSTREAM_RUN_DIR/outcomes.jsonl")" -gt "$outcomes_before"
# Each stage that re-read its input re-sent what it had sent, byte for byte:
# not one original outcome that was not there before. (Duplicates absorbed
# the first time, while their payment was in flight, are now answered with
# a replayed outcome: assert_invariants checks those.)
eq "the re-sent outcomes are exactly the first ones (no new distinct outcome)" "$distinct_before" \
  "$(originals "$PAYSTREAM_RUN_DIR/outcomes.jsonl")"
assert_invariants "$M"
check "workers stop cleanly on SIGTERM" "$STACK" stop-workers
check "no sanitizer reports" no_sanitizer_reports
finish
