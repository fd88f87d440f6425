#!/usr/bin/env bash
# Review: with a rules file that holds payments whose card country differs
# from the request's (weights all on rules, so the decision does not depend
# on the model), such payments end `review` (interim outcome) and wait.
# `payctl review approve` sends one on to charge (it ends `succeeded`,
# charged once); `reject` ends one `blocked`. Both are idempotent; the
# other decision is then refused; a replay of fraud's input re-emits what
# was decided. Then Redis goes down under `on_redis_unavailable: review`:
# every payment is held for review, saying why.
source "$(dirname "$0")/lib.sh"
stack_up
cat >"$PAYSTREAM_RUN_DIR/rules.yaml" <<'YAML'
weights: {rules: 1.0, model: 0.0}
on_redis_unavailable: review
rules:
  country_mismatch: {score: 0.6}
YAML
export PAYSTREAM_FRAUD_RULES=$PAYSTREAM_RUN_DIR/rules.yaml
"$STACK" workers 1
now=$(now_ms)
# held_intent KEY CARD_COUNTRY (lib.sh's intent, 25.00 USD, a 100-day-old card)
held_intent() {
  intent "$1" '.amount_minor = 2500
    | .payment_method = {id: "pm_card_visa", fingerprint: ("fp_" + $k), created_at_ms: ($t - 8640000000),
                         card_country: $cc}
    | .context = {ip: "198.51.100.7", country: "US", latitude: 40.71, longitude: -74.01,
                  device_id: ("dev_" + $k), email: "r@example.com"}' --arg cc "$2"
}
status_of() { sql "SELECT status FROM payments WHERE idempotency_key = '$1'"; }
pid_of() { sql "SELECT payment_id FROM payments WHERE idempotency_key = '$1'"; }
is_status() { [ "$(status_of "$1")" = "$2" ]; }
succeeded_charges_for() { # succeeded_charges_for PAYMENT_ID: the processor's successful charges for it
  curl -sf "$PAYSTREAM_PROCESSOR_URL/v1/charges" | jq --arg p "$1" '[.data[] | select(.status=="succeeded" and .metadata.payment_id==$p)] | length'; }

for k in rv1 rv2 rv3; do held_intent "$k" GB; done >"$PAYSTREAM_RUN_DIR/held.jsonl"
held_intent ok1 US >>"$PAYSTREAM_RUN_DIR/held.jsonl"
"$PAYCTL" publish --json "$PAYSTREAM_RUN_DIR/held.jsonl" >/dev/null
for k in rv1 rv2 rv3; do check "$k is held for review" wait_until 60 is_status "$k" review; done
check "a matching payment is charged" wait_until 60 is_status ok1 succeeded
eq "held with the reason country_mismatch" "3" \
  "$(sql "SELECT count(*) FROM fraud_assessments WHERE decision = 'review' AND reasons = '{country_mismatch}'")"
"$PAYCTL" outcomes >"$PAYSTREAM_RUN_DIR/outcomes.jsonl"
eq "each held payment's outcome says review" "3" \
  "$(jq -r 'select(.status=="review" and .error_code=="fraud_review") | .idempotency_key' "$PAYSTREAM_RUN_DIR/outcomes.jsonl" | sort -u | wc -l)"
eq "payctl review list shows the three" "3" "$("$PAYCTL" review list | tail -n +2 | wc -l)"

rv1=$(pid_of rv1) rv2=$(pid_of rv2) rv3=$(pid_of rv3)
check "payctl review approve" quietly "$PAYCTL" review approve "$rv1" --operator alice
check "the approved payment is charged" wait_until 60 is_status rv1 succeeded
eq "once" "1" "$(succeeded_charges_for "$rv1")"
check "approving again is accepted (re-published)" sh -c "'$PAYCTL' review approve $rv1 | grep -q 'already decided'"
check "the re-published approval changes nothing" wait_until 30 is_status rv1 succeeded
eq "still charged once" "1" "$(succeeded_charges_for "$rv1")"
eq "one posting for it" "1" "$(sql "SELECT count(*) FROM ledger_transactions WHERE payment_id = '$rv1'")"
eq "the decision is recorded with its operator" "approve alice" "$(sql "SELECT decision || ' ' || operator FROM fraud_reviews WHERE payment_id = '$rv1'")"

check "payctl review reject" quietly "$PAYCTL" review reject "$rv2"
eq "the rejected payment ends blocked" "blocked" "$(status_of rv2)"
eq "with code fraud_review_rejected" "fraud_review_rejected" "$(sql "SELECT error_code FROM payments WHERE payment_id = '$rv2'")"
check "rejecting again is accepted" quietly "$PAYCTL" review reject "$rv2"
# payctl's exit codes (payctl --help): 3 not found, 4 refused by the state.
check "approving a rejected payment is refused" \
  exits_with 4 "payment $rv2 was already rejected on review; not changed" "$PAYCTL" review approve "$rv2"
check "rejecting an approved payment is refused" \
  exits_with 4 "payment $rv1 was already approved on review; not changed" "$PAYCTL" review reject "$rv1"
check "an unknown payment is refused" exits_with 3 "no payment pay_nope" "$PAYCTL" review approve pay_nope
check "a payment not held is refused" \
  exits_with 4 "payment $(pid_of ok1) is not held for review \(status succeeded\)" "$PAYCTL" review approve "$(pid_of ok1)"
eq "never charged" "0" "$(succeeded_charges_for "$rv2")"
"$PAYCTL" outcomes >"$PAYSTREAM_RUN_DIR/outcomes.jsonl"
eq "its blocked outcome was published twice, identical" "1" \
  "$(jq -r --arg p "$rv2" 'select(.payment_id==$p and .status=="blocked") | .raw' "$PAYSTREAM_RUN_DIR/outcomes.jsonl" | sort -u | wc -l)"
eq "and published twice" "2" \
  "$(jq -r --arg p "$rv2" 'select(.payment_id==$p and .status=="blocked") | .raw' "$PAYSTREAM_RUN_DIR/outcomes.jsonl" | wc -l)"
eq "the approved one's terminal outcome is succeeded" "succeeded" \
  "$(jq -r --arg p "$rv1" 'select(.payment_id==$p and .status!="review") | .status' "$PAYSTREAM_RUN_DIR/outcomes.jsonl" | sort -u)"
eq "review list shows the one left" "$rv3" "$("$PAYCTL" review list | tail -n +2 | cut -f1)"

# payctl review show: the request's facts, scores, reasons split into rules
# and model features, and the decision history with its operator.
"$PAYCTL" review show "$rv1" >"$PAYSTREAM_RUN_DIR/show1.txt"
show_has() { qgrep -E -- "$2" "$PAYSTREAM_RUN_DIR/$1"; }
check "review show: the request's countries" show_has show1.txt '^request: +country US, card country GB, device dev_rv1, ip block 198\.51\.100'
check "review show: the method's age" show_has show1.txt '^method: +fp_rv1 added 2400\.0 hours before'
check "review show: the scores" show_has show1.txt '^assessment: +review \(combined 0\.600; rule score 0\.600, model score [0-9.]+; model [^ ]+\)$'
check "review show: the rules that fired" show_has show1.txt '^rules: +country_mismatch$'
check "review show: no model feature (weight 0)" show_has show1.txt '^model: +\(no feature named'
check "review show: history, assessed" show_has show1.txt ' fraud: review$'
check "review show: history, approved by alice" show_has show1.txt ' review: approve by alice$'
check "review show: history, where it stands" show_has show1.txt ' now succeeded$'
"$PAYCTL" review show "$rv2" >"$PAYSTREAM_RUN_DIR/show2.txt"
check "review show: a rejection and its code" sh -c "grep -q ' review: reject by ' '$PAYSTREAM_RUN_DIR/show2.txt' && grep -q ' now blocked fraud_review_rejected\$' '$PAYSTREAM_RUN_DIR/show2.txt'"
check "review show: an unknown payment" exits_with 3 "no payment pay_nope" "$PAYCTL" review show pay_nope

# Replay fraud's input: the decisions are re-emitted, nothing changes.
check "workers stop" "$STACK" stop-workers
check "payctl replay fraud to earliest" quietly "$PAYCTL" replay --stage fraud --to-offset earliest
"$STACK" workers 1
check "fraud re-processes its input" wait_until 90 caught_up fraud
eq "after the replay rv1 is still succeeded" "succeeded" "$(status_of rv1)"
eq "rv2 still blocked" "blocked" "$(status_of rv2)"
eq "rv3 still held" "review" "$(status_of rv3)"
eq "rv1 still charged once" "1" "$(succeeded_charges_for "$rv1")"

# Redis down under the review policy: held, saying why.
redis-cli -p "$PAYSTREAM_REDIS_PORT" shutdown nosave >/dev/null 2>&1
for k in nr1 nr2; do held_intent "$k" US; done >"$PAYSTREAM_RUN_DIR/noredis.jsonl"
"$PAYCTL" publish --json "$PAYSTREAM_RUN_DIR/noredis.jsonl" >/dev/null
for k in nr1 nr2; do check "with Redis down $k is held for review" wait_until 90 is_status "$k" review; done
eq "saying redis_unavailable_review" "2" \
  "$(sql "SELECT count(*) FROM fraud_assessments a JOIN payments p USING (payment_id) WHERE p.idempotency_key LIKE 'nr%' AND 'redis_unavailable_review' = ANY (a.reasons)")"
check "workers stop cleanly on SIGTERM" "$STACK" stop-workers
check "payctl ledger verify passes" quietly "$PAYCTL" ledger verify
check "no sanitizer reports" no_sanitizer_reports
finish
