#!/usr/bin/env bash
# Charge sends what Postgres recorded, never the event's copy (issue 17.6,
# the charge side). Payments are scored while the charge worker is stopped;
# then Postgres is made to disagree with the events already on
# payments.fraud-scored for two of them (as a forged or corrupted event
# would: its amount/payment method is not the payment's). Those two are an
# alert and a DLQ entry with the reason, and nothing is charged for them; the
# others are charged with the recorded amount and payment method. A third
# payment is put back in `review` under its ALLOW event (as a forged ALLOW
# for a held payment): dead-lettered with the reason, counted, not charged.
source "$(dirname "$0")/lib.sh"
stack_up
for s in ingest fraud ledger; do "$STACK" start-worker "$s" 1; done
"$PAYCTL" publish --count 20 --run money >/dev/null
scored() { [ "$(sql "SELECT count(*) FROM payments WHERE idempotency_key LIKE 'money-%' AND status = 'scored'")" = 20 ]; }
check "twenty payments are scored (charge not running)" wait_until 90 scored
read -r pm1 pm2 pm3 < <(sql "SELECT string_agg(payment_id, ' ' ORDER BY payment_id) FROM (SELECT payment_id FROM payments WHERE idempotency_key LIKE 'money-%' ORDER BY payment_id LIMIT 3) s")
# The events on the topic now disagree with Postgres for these two.
# The request is immutable in Postgres (migration 009's guard): only the
# owner, with that one guard switched off for the statement, can make the
# row and the event disagree — which is what the stage must then notice.
tamper() {
  sql "BEGIN; ALTER TABLE payments DISABLE TRIGGER payments_request_immutable; $1;
       ALTER TABLE payments ENABLE TRIGGER payments_request_immutable; COMMIT" >/dev/null
}
tamper "UPDATE payments SET payment_method = 'pm_card_mastercard' WHERE payment_id = '$pm1'"
tamper "UPDATE payments SET amount_minor = amount_minor + 1 WHERE payment_id = '$pm2'"
sql "BEGIN; ALTER TABLE payments DISABLE TRIGGER payments_status_machine;
     UPDATE payments SET status = 'review' WHERE payment_id = '$pm3';
     ALTER TABLE payments ENABLE TRIGGER payments_status_machine; COMMIT" >/dev/null
eq "the third is held for review under its ALLOW event" "review" "$(sql "SELECT status FROM payments WHERE payment_id = '$pm3'")"
"$STACK" start-worker charge 1
others() { [ "$(sql "SELECT count(*) FROM payments WHERE idempotency_key LIKE 'money-%' AND status = 'succeeded'")" = 17 ]; }
check "the seventeen others are charged and posted" wait_until 90 others
dlq_reason() { "$PAYCTL" dlq list 2>/dev/null | jq -r --arg k "$(sql "SELECT idempotency_key FROM payments WHERE payment_id = '$1'")" 'select(.key == $k and .["dlq.stage"] == "charge") | .["dlq.reason"]'; }
dead() { [ "$(dlq_reason "$pm1")" = "event disagrees with postgres: payment method" ] &&
  [ "$(dlq_reason "$pm2")" = "event disagrees with postgres: amount" ]; }
check "the two are dead-lettered with the reason" wait_until 30 dead
check "as alerts" test "$(grep -c 'ALERT event disagrees with postgres' "$PAYSTREAM_RUN_DIR/logs/charge-1.log")" -ge 2
held() { [ "$(dlq_reason "$pm3")" = "payment is review, not chargeable: nothing charged" ]; }
check "the ALLOW event of a payment in review is dead-lettered with the reason" wait_until 30 held
check "as an alert" qgrep "ALERT payment is review, not chargeable" "$PAYSTREAM_RUN_DIR/logs/charge-1.log"
eq "counted, with the two" "3" "$(metric charge 1 paystream_charge_event_mismatch_total)"
eq "it is still in review" "review" "$(sql "SELECT status FROM payments WHERE payment_id = '$pm3'")"
for p in "$pm1" "$pm2" "$pm3"; do
  eq "nothing was asked of the processor for $p" "0" \
    "$(curl -sf "$PAYSTREAM_PROCESSOR_URL/_sim/requests" | jq --arg k "paystream:$p:stripe" '.by_key[$k] // 0')"
  eq "and it has no attempt" "0" "$(sql "SELECT count(*) FROM charge_attempts WHERE payment_id = '$p'")"
done
eq "every charge is the recorded amount and payment method" "" \
  "$(curl -sf "$PAYSTREAM_PROCESSOR_URL/v1/charges" | jq -r '.data[] | [.metadata.payment_id, .amount, .payment_method] | @tsv' | sort |
     diff - <(sql "SELECT payment_id, amount_minor, payment_method FROM payments WHERE status = 'succeeded'" | sort))"
check "workers stop cleanly on SIGTERM" "$STACK" stop-workers
check "no sanitizer reports" no_sanitizer_reports
finish
