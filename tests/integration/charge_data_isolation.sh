#!/usr/bin/env bash
# One payment's data never stalls the charge worker (issue 17.2). procsim
# declines one payment with a decline code that has a two-byte character
# where a fixed-size copy cuts it, and one with bytes that are not UTF-8:
# both are stored as valid text and end `declined` with their codes. A
# third payment's attempt is refused by Postgres itself (a trigger raising a
# data exception, SQLSTATE 22023, standing for any row Postgres refuses):
# the cycle's transaction is bisected, that one payment is isolated (an
# alert, a DLQ entry with the reason, never charged) and every other payment
# goes on.
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
  FOR EACH ROW EXECUTE FUNCTION poison_attempt();" >/dev/null
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
check "as an alert" grep -q "ALERT charge isolated a payment.*$poison" "$PAYSTREAM_RUN_DIR/logs/charge-1.log"
check "counted" test "$(metric charge 1 paystream_charge_isolated_total)" -ge 1
eq "it was never sent to the processor" "0" \
  "$(curl -sf "$PAYSTREAM_PROCESSOR_URL/_sim/requests" | jq --arg k "paystream:$poison:stripe" '.by_key[$k] // 0')"
eq "and has no attempt" "0" "$(sql "SELECT count(*) FROM charge_attempts WHERE payment_id = '$poison'")"
check "workers stop cleanly on SIGTERM" "$STACK" stop-workers
check "no sanitizer reports" no_sanitizer_reports
finish
