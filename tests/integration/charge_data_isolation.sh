#!/usr/bin/env bash
# One payment's data never stalls the charge worker (issue 17.2). procsim
# declines one payment with a decline code that has a two-byte character
# where a fixed-size copy cuts it, and one with bytes that are not UTF-8:
# both are stored as valid text and end `declined` with their codes. A
# third payment's attempt is refused by Postgres itself (a trigger raising a
# data exception, SQLSTATE 22023, standing for any row Postgres refuses):
# the cycle's transaction is bisected, that one payment is isolated (an
# alert, a DLQ entry with the reason, never charged) and every other payment
# goes on. It still ends (invariant 4): never sent, it is `failed` with code
# charge_data_error and that outcome is published. A fourth payment is
# charged, but Postgres refuses to record the answer: the processor may hold
# it, so it stays `charging` with its attempt live, its interim `pending`
# outcome is published and charge_unresolved lists it. A processor name
# longer than the ledger's account allows is refused at start.
long=$(printf 'p%.0s' $(seq 33))
source "$(dirname "$0")/lib.sh"
stack_up
sql "CREATE FUNCTION poison_attempt() RETURNS trigger LANGUAGE plpgsql AS \$\$
BEGIN
  IF (SELECT payment_method FROM payments WHERE payment_id = NEW.payment_id) = 'pm_card_poison' THEN
    RAISE EXCEPTION 'poison payment' USING ERRCODE = '22023';
  END IF;
  RETURN NEW;
END \$\$;
CREATE TRIGGER poison_attempt BEFORE INSERT ON charge_attempts
  FOR EACH ROW EXECUTE FUNCTION poison_attempt();
CREATE FUNCTION poison_answer() RETURNS trigger LANGUAGE plpgsql AS \$\$
BEGIN
  IF (SELECT payment_method FROM payments WHERE payment_id = NEW.payment_id) = 'pm_card_poison_answer' THEN
    RAISE EXCEPTION 'poison answer' USING ERRCODE = '22023';
  END IF;
  RETURN NEW;
END \$\$;
CREATE TRIGGER poison_answer BEFORE UPDATE ON charge_attempts
  FOR EACH ROW WHEN (NEW.state IS DISTINCT FROM OLD.state) EXECUTE FUNCTION poison_answer();" >/dev/null
. "$PAYSTREAM_RUN_DIR/env"
out=$(PAYSTREAM_PROCESSOR_NAME=$long timeout 60 "$BUILD/ps-charge" 2>&1); rc=$?
eq "a charge worker with a 33-character processor name exits with a configuration error" "1" "$([ "$rc" -ne 0 ] && [ "$rc" -ne 124 ] && echo 1)"
check "  ... saying why" qgrep "PAYSTREAM_PROCESSOR_NAME must be 1 to 32 characters" <<<"$out"
"$STACK" workers 1
now=$(now_ms)
old=$((now - 200 * 24 * 3600000))
# card_intent KEY PAYMENT_METHOD (lib.sh's intent, 42.00 USD, a known card and device)
card_intent() {
  intent "$1" '.amount_minor = 4200
    | .payment_method = {id: $pm, fingerprint: ("fp_" + $k), created_at_ms: $pt, card_country: "US"}
    | .context = {ip: "198.51.100.7", country: "US", latitude: 40.71, longitude: -74.01,
                  device_id: ("dev_" + $k), email: ($k + "@example.com")}' --arg pm "$2" --argjson pt "$old"
}
{
  card_intent text-cut pm_card_chargeDeclinedMultibyteCut
  card_intent text-invalid pm_card_chargeDeclinedInvalidUtf8
  card_intent poison pm_card_poison
  card_intent poison-answer pm_card_poison_answer
} >"$PAYSTREAM_RUN_DIR/text.jsonl"
"$PAYCTL" publish --json "$PAYSTREAM_RUN_DIR/text.jsonl" >/dev/null
"$PAYCTL" publish --count 40 --run after >/dev/null
count() { sql "SELECT count(*) FROM payments WHERE idempotency_key LIKE '$1' AND outcome IS NOT NULL"; }
moving() { [ "$(count 'after-%')" = 40 ] && [ "$(count 'text-%')" = 2 ]; }
check "the worker keeps moving: every other payment ends" wait_until 120 moving
field() { sql "SELECT $2 FROM payments WHERE idempotency_key = '$1'"; }
eq "the decline cut inside a character ends declined" "declined" "$(field text-cut status)"
eq "with its code, cut before that character" "declined_$(printf 'x%.0s' $(seq 53))" "$(field text-cut error_code)"
eq "the decline with invalid UTF-8 ends declined" "declined" "$(field text-invalid status)"
eq "with its code, invalid bytes replaced" $'invalid_\uFFFD\uFFFD_utf8' "$(field text-invalid error_code)"
eq "and the processor's message stored" $'Your card was declined \uFFFD(.' \
  "$(sql "SELECT a.error FROM charge_attempts a JOIN payments p USING (payment_id) WHERE p.idempotency_key = 'text-invalid'")"
eq "the forty others succeeded" "40" "$(sql "SELECT count(*) FROM payments WHERE idempotency_key LIKE 'after-%' AND status = 'succeeded'")"
poison=$(field poison payment_id)
isolated() { [ "$("$PAYCTL" dlq list 2>/dev/null | jq -r 'select(.key == "poison" and .["dlq.stage"] == "charge") | .["dlq.reason"]' | grep -c '^charge data error: 22023')" = 1 ]; }
check "the poison payment is dead-lettered with the reason" wait_until 30 isolated
check "as an alert" qgrep "ALERT charge isolated a payment.*$poison" "$PAYSTREAM_RUN_DIR/logs/charge-1.log"
check "counted" test "$(metric charge 1 paystream_charge_isolated_total)" -ge 1
eq "it was never sent to the processor" "0" \
  "$(curl -sf "$PAYSTREAM_PROCESSOR_URL/_sim/requests" | jq --arg k "paystream:$poison:stripe" '.by_key[$k] // 0')"
eq "and has no attempt" "0" "$(sql "SELECT count(*) FROM charge_attempts WHERE payment_id = '$poison'")"
eq "it ends failed with its code and outcome (invariant 4)" "failed charge_data_error true" \
  "$(sql "SELECT status || ' ' || error_code || ' ' || (outcome IS NOT NULL) FROM payments WHERE payment_id = '$poison'")"
outcome_of() { "$PAYCTL" outcomes | jq -r --arg p "$1" 'select(.payment_id == $p) | .status + " " + (.error_code // "")'; }
check "  ... and its failed outcome is published" wait_until 30 eval '[ "$(outcome_of "$poison")" = "failed charge_data_error" ]'
answer=$(field poison-answer payment_id)
answer_isolated() { "$PAYCTL" dlq list 2>/dev/null | jq -c 'select(.key == "poison-answer" and .["dlq.stage"] == "charge")' | qgrep .; }
check "the payment whose answer Postgres refuses is dead-lettered" wait_until 60 answer_isolated
eq "  ... the processor charged it once" "1" \
  "$(curl -sf "$PAYSTREAM_PROCESSOR_URL/_sim/requests" | jq --arg k "paystream:$answer:stripe" '.by_key[$k] // 0')"
eq "  ... it stays charging, its attempt live and counted sent" "charging charging 1 0" \
  "$(sql "SELECT p.status || ' ' || a.state || ' ' || a.sends || ' ' || a.refused FROM payments p JOIN charge_attempts a USING (payment_id) WHERE payment_id = '$answer'")"
check "  ... its pending outcome is published" wait_until 30 eval '[ "$(outcome_of "$answer")" = "pending processor_unresolved" ]'
eq "  ... and charge_unresolved lists it" "$answer" "$(sql "SELECT payment_id FROM charge_unresolved")"
check "  ... as an alert" qgrep "ALERT isolated payment may have been charged.*$answer\|$answer.*ALERT isolated payment may have been charged" "$PAYSTREAM_RUN_DIR/logs/charge-1.log"
# charge_unresolved also lists a payment charge holds with no attempt that
# may have reached a processor once it has not moved for 15 minutes (one
# whose isolated end was refused too, or left by a stopped worker).
sql "INSERT INTO payments (payment_id, merchant_id, idempotency_key, fingerprint, customer_id,
       amount_minor, currency, payment_method, source_topic, source_partition, source_offset)
     VALUES ('pay_stuck', 'm_t', 'k_stuck', 'f', 'c', 100, 'USD', 'pm', 't', 0, 0);
     UPDATE payments SET status = 'scored' WHERE payment_id = 'pay_stuck'" >/dev/null
eq "a scored payment moved a minute ago is not listed" "0" "$(sql "SELECT count(*) FROM charge_unresolved WHERE payment_id = 'pay_stuck'")"
sql "UPDATE payments SET updated_at = now() - interval '16 minutes' WHERE payment_id = 'pay_stuck'" >/dev/null
eq "one unmoved for 16 minutes is listed as stuck" "pay_stuck stuck scored with no live attempt" \
  "$(sql "SELECT payment_id || ' ' || last_error FROM charge_unresolved WHERE payment_id = 'pay_stuck'")"
check "workers stop cleanly on SIGTERM" "$STACK" stop-workers
check "no sanitizer reports" no_sanitizer_reports
finish
