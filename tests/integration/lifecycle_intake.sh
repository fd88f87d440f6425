#!/usr/bin/env bash
# Operations at intake (#19): capture, void and refund requests are decided
# in Postgres by one conditional write each (ps_accept_operation, 013).
# Payments are set up as the owner (sales succeeded, authorizations open);
# two ingest instances take the operations. Checked: racing refunds of one
# payment whose total exceeds the capture (published across partitions so
# both instances race in Postgres): exactly those that fit are accepted, the
# rest amount_exceeds_refundable; partial captures up to the authorization,
# then one more refused; a void while a capture (final or not) is in flight
# refused; a void after a settled partial capture reserves only the rest;
# capture after a void refused; every rejection code, with nothing
# changed; duplicates replayed, a reused key rejected.
source "$(dirname "$0")/lib.sh"
stack_up
"$STACK" start-worker ingest 1
"$STACK" start-worker ingest 2

# forge MERCHANT KEY KIND AMOUNT CURRENCY: a payment walked through the state
# machine as the owner to succeeded (sale) or authorized (authorize).
forge() {
  local id="pay_$2" final=succeeded
  [ "$3" = authorize ] && final=authorized
  sql "INSERT INTO payments (payment_id, merchant_id, idempotency_key, fingerprint, customer_id, amount_minor,
         currency, payment_method, intent, source_topic, source_partition, source_offset, kind)
       VALUES ('$id', '$1', '$2', 'fp', 'c1', $4, '$5', 'pm_card_visa', '\\x00', 'forged', 0, 0, '$3');
       UPDATE payments SET status = 'scored' WHERE payment_id = '$id';
       UPDATE payments SET status = 'charging' WHERE payment_id = '$id';
       UPDATE payments SET status = 'charged', processor = 'stripe', processor_charge_id = 'ch_$2' WHERE payment_id = '$id';
       UPDATE payments SET status = '$final', outcome = '\\x2001' WHERE payment_id = '$id';" >/dev/null
}
amounts() { sql "SELECT authorized_minor, captured_minor, capturing_minor, refunded_minor, refunding_minor, released_minor, releasing_minor, status FROM payments WHERE payment_id = 'pay_$1'" | tr '\t' ' '; }
op_decided() { [ -n "$(op_state "$1" "${2:-m1}")" ] && [ "$(op_state "$1" "${2:-m1}")" != received ]; }
ops_count() { sql "SELECT count(*) FROM payment_operations WHERE state <> 'received' AND idempotency_key LIKE '$1%'"; }
outcome_of() { # KEY FIELD...: the newest outcome for an operation key
  "$PAYCTL" outcomes 2>/dev/null | jq -r --arg k "$1" "select(.idempotency_key == \$k) | [${2}] | @tsv" | tail -1; }

forge m1 sale-1 sale 10000 USD
forge m1 auth-1 authorize 1000 USD
forge m1 auth-2 authorize 1000 USD
forge m1 auth-exp authorize 500 USD
forge m2 sale-other sale 700 USD
sql "ALTER TABLE payments DISABLE TRIGGER payments_charged_amounts; UPDATE payments SET authorization_expires_at = now() - interval '1 minute' WHERE payment_id = 'pay_auth-exp'; ALTER TABLE payments ENABLE TRIGGER payments_charged_amounts" >/dev/null
eq "a forged sale is authorized and captured in full" "10000 10000 0 0 0 0 0 succeeded" "$(amounts sale-1)"
eq "a forged authorization holds its amount" "1000 0 0 0 0 0 0 authorized" "$(amounts auth-1)"

# ---- racing refunds: 50 x 300 of a 10000 capture, across both instances -----------
for i in $(seq 1 50); do
  "$PAYCTL" refund m1 sale-1 --key "race-$i" --amount 300 --currency USD --kafka-key "race-$i" >/dev/null &
done
wait
all_decided() { [ "$(ops_count race-)" -eq 50 ]; }
check "all 50 racing refunds are decided" wait_until 120 all_decided
eq "exactly the 33 refunds that fit are accepted" 33 \
  "$(sql "SELECT count(*) FROM payment_operations WHERE idempotency_key LIKE 'race-%' AND state = 'accepted'")"
eq "the other 17 are amount_exceeds_refundable" 17 \
  "$(sql "SELECT count(*) FROM payment_operations WHERE idempotency_key LIKE 'race-%' AND state = 'rejected' AND error_code = 'amount_exceeds_refundable'")"
eq "the payment's refunds in flight are what was accepted" "10000 10000 0 0 9900 0 0 succeeded" "$(amounts sale-1)"
check "the refunds came through more than one partition (both instances' share)" test "$(sql "SELECT count(DISTINCT source_partition) FROM payment_operations WHERE idempotency_key LIKE 'race-%'")" -gt 1
rej_outcomes() { [ "$("$PAYCTL" outcomes 2>/dev/null | jq -r 'select(.error_code == "amount_exceeds_refundable") | .idempotency_key' | grep -c '^race-')" -eq 17 ]; }
check "each refused refund has its rejected outcome on payments.outcomes" wait_until 60 rej_outcomes

# ---- partial captures up to the authorization, then one more refused ---------------
for k in 1 2 3; do "$PAYCTL" capture m1 auth-1 --key "cap-$k" --amount $((k == 1 ? 400 : 300)) --currency USD >/dev/null; done
check "three partial captures decided" wait_until 60 op_decided cap-3
"$PAYCTL" capture m1 auth-1 --key cap-4 --amount 1 --currency USD >/dev/null
check "a fourth capture decided" wait_until 60 op_decided cap-4
eq "captures up to the authorization are accepted" "accepted accepted accepted" \
  "$(op_state cap-1) $(op_state cap-2) $(op_state cap-3)"
eq "one more is amount_exceeds_capturable" "rejected amount_exceeds_capturable" "$(op_state cap-4)"
eq "the authorization is fully reserved for capture" "1000 0 1000 0 0 0 0 authorized" "$(amounts auth-1)"

# ---- void after a partial capture: only the rest; capture after void refused -------
"$PAYCTL" capture m1 auth-2 --key cap2-1 --amount 600 --currency USD >/dev/null
check "a partial capture decided" wait_until 60 op_decided cap2-1
"$PAYCTL" void m1 auth-2 --key void2-0 >/dev/null
check "a void while the capture is in flight decided" wait_until 60 op_decided void2-0
eq "a void while a capture is in flight is payment_not_capturable" "rejected payment_not_capturable" "$(op_state void2-0)"
eq "and reserves nothing" "1000 0 600 0 0 0 0 authorized" "$(amounts auth-2)"
# The capture settles (as charge would, here as the owner); then the void.
CAP2=$(sql "SELECT operation_id FROM payment_operations WHERE idempotency_key = 'cap2-1'")
sql "UPDATE payment_operations SET state = 'processing', sends = 1 WHERE operation_id = '$CAP2';
     SELECT ps_settle_operation('$CAP2', true, 'cap_x', 0, '', '', '')" >/dev/null
"$PAYCTL" void m1 auth-2 --key void2-1 >/dev/null
check "the void decided" wait_until 60 op_decided void2-1
eq "the void is accepted" "accepted" "$(op_state void2-1)"
eq "it releases only what was not captured" "400" \
  "$(sql "SELECT amount_minor FROM payment_operations WHERE idempotency_key = 'void2-1'")"
eq "the payment has 600 captured and 400 released" "1000 600 0 0 0 0 400 authorized" "$(amounts auth-2)"
"$PAYCTL" capture m1 auth-2 --key cap2-2 --amount 1 --currency USD >/dev/null
"$PAYCTL" void m1 auth-2 --key void2-2 >/dev/null
check "capture and void after the void decided" wait_until 60 op_decided void2-2
eq "a capture after a void is payment_not_capturable" "rejected payment_not_capturable" "$(op_state cap2-2)"
eq "a second void is payment_not_capturable" "rejected payment_not_capturable" "$(op_state void2-2)"

# ---- a void racing a final capture: refused, nothing reserved (else 40 stays open) ---
forge m1 auth-3 authorize 100 USD
"$PAYCTL" capture m1 auth-3 --key cap3-f --amount 60 --currency USD --final >/dev/null
check "a final capture decided" wait_until 60 op_decided cap3-f
"$PAYCTL" void m1 auth-3 --key void3-1 >/dev/null
check "a void during the final capture decided" wait_until 60 op_decided void3-1
eq "it is payment_not_capturable" "rejected payment_not_capturable" "$(op_state void3-1)"
eq "nothing changed on the authorization" "100 0 60 0 0 0 0 authorized" "$(amounts auth-3)"

# ---- every rejection code, with nothing changed --------------------------------
before=$(sql "SELECT string_agg(payment_id || ':' || authorized_minor || '/' || captured_minor || '/' || capturing_minor || '/' || refunded_minor || '/' || refunding_minor || '/' || released_minor || '/' || releasing_minor || '/' || status, ',' ORDER BY payment_id) FROM payments")
"$PAYCTL" refund m1 no-such-payment --key bad-1 --amount 1 --currency USD >/dev/null
"$PAYCTL" refund m1 sale-other --key bad-2 --amount 1 --currency USD >/dev/null        # m2's payment
"$PAYCTL" refund m1 sale-1 --key bad-3 --amount 1000 --currency USD >/dev/null         # 100 left
"$PAYCTL" capture m1 auth-exp --key bad-4 --amount 1 --currency USD >/dev/null
"$PAYCTL" capture m1 sale-1 --key bad-5 --amount 1 --currency USD >/dev/null
"$PAYCTL" refund m1 sale-1 --key bad-6 --amount 1 --currency EUR >/dev/null
"$PAYCTL" capture m1 auth-1 --key bad-7 --amount 1 --currency USD >/dev/null          # fully reserved
"$PAYCTL" void m1 auth-exp --key bad-8 >/dev/null
"$PAYCTL" refund m1 sale-1 --key bad-9 --amount 1 --currency USD --payment-id >/dev/null  # an id that is a key: not found
bad_decided() { [ "$(ops_count bad-)" -eq 9 ]; }
check "the bad operations are decided" wait_until 60 bad_decided
eq "unknown payment: payment_not_found" "rejected payment_not_found" "$(op_state bad-1)"
eq "another merchant's payment: payment_not_found" "rejected payment_not_found" "$(op_state bad-2)"
eq "refund above what is refundable: amount_exceeds_refundable" "rejected amount_exceeds_refundable" "$(op_state bad-3)"
eq "capture of an expired authorization: authorization_expired" "rejected authorization_expired" "$(op_state bad-4)"
eq "capture of a sale: payment_not_capturable" "rejected payment_not_capturable" "$(op_state bad-5)"
eq "refund in another currency: currency_mismatch" "rejected currency_mismatch" "$(op_state bad-6)"
eq "capture of a fully reserved authorization: amount_exceeds_capturable" "rejected amount_exceeds_capturable" "$(op_state bad-7)"
eq "void of an expired authorization: authorization_expired" "rejected authorization_expired" "$(op_state bad-8)"
eq "a payment id that names no payment: payment_not_found" "rejected payment_not_found" "$(op_state bad-9)"
# Field errors never reach Postgres's decision: rejections at intake (a void
# with an amount is amount_invalid; payctl refuses amount 0 itself).
"$PAYCTL" refund m1 sale-1 --key bad-10 --amount 1 --currency XYZ >/dev/null
"$PAYCTL" void m1 auth-1 --key bad-11 --amount 5 --currency USD >/dev/null 2>&1 && echo "payctl took a void with an amount"
code_of() { sql "SELECT error_code FROM rejections WHERE idempotency_key = '$1'"; }
has_code() { [ -n "$(code_of "$1")" ]; }
check "an invalid currency is rejected at intake" wait_until 60 has_code bad-10
eq "with currency_invalid" currency_invalid "$(code_of bad-10)"
eq "nothing changed on any payment" "$before" \
  "$(sql "SELECT string_agg(payment_id || ':' || authorized_minor || '/' || captured_minor || '/' || capturing_minor || '/' || refunded_minor || '/' || refunding_minor || '/' || released_minor || '/' || releasing_minor || '/' || status, ',' ORDER BY payment_id) FROM payments")"
has_outcome() { [ -n "$(outcome_of "$1" '.status, .error_code')" ]; }
check "a rejected operation has its outcome" wait_until 60 has_outcome bad-3
eq "its outcome names the code, the payment and its amounts" \
  "rejected	amount_exceeds_refundable	pay_sale-1	refund	10000	10000	0" \
  "$(outcome_of bad-3 '.status, .error_code, .payment_id, .kind, .authorized, .captured, .refunded')"

# ---- idempotency of operations ---------------------------------------------------
"$PAYCTL" refund m1 sale-1 --key bad-3 --amount 1000 --currency USD >/dev/null
replayed() { [ "$(outcome_of bad-3 '.replayed')" = true ]; }
check "a duplicate of a decided operation replays its outcome" wait_until 60 replayed
"$PAYCTL" refund m1 sale-1 --key race-1 --amount 299 --currency USD >/dev/null
reused() { [ "$(outcome_of race-1 '.error_code')" = idempotency_key_reused ]; }
check "an operation key reused with other parameters is idempotency_key_reused" wait_until 60 reused
eq "one operation row per key, the first one's" "1 300" \
  "$(sql "SELECT count(*) || ' ' || max(amount_minor) FROM payment_operations WHERE idempotency_key = 'race-1'")"
eq "and still nothing changed" "$before" \
  "$(sql "SELECT string_agg(payment_id || ':' || authorized_minor || '/' || captured_minor || '/' || capturing_minor || '/' || refunded_minor || '/' || refunding_minor || '/' || released_minor || '/' || releasing_minor || '/' || status, ',' ORDER BY payment_id) FROM payments")"

# ---- operations as JSON lines (payctl publish --json) ------------------------------
"$PAYCTL" publish --json - >/dev/null <<'JSON'
{"operation": {"kind": "refund", "idempotency_key": "json-1", "merchant_id": "m1", "payment_key": "sale-1", "amount_minor": 50, "currency": "USD"}}
JSON
json_decided() { op_decided json-1; }
check "an operation published as a JSON line is decided" wait_until 60 json_decided
eq "and accepted against what is left" "accepted" "$(op_state json-1)"
eq "reserving its amount" "10000 10000 0 0 9950 0 0 succeeded" "$(amounts sale-1)"

refused_as() { # DSN SQL PATTERN
  local out
  out=$(psql "$1" -qAtX -v ON_ERROR_STOP=1 -c "$2" 2>&1) && return 1
  qgrep -- "$3" <<<"$out"
}
# ---- as the ingest role, the money cannot be pushed past its source ---------------
INGEST_DSN=${PAYSTREAM_PG_DSN/user=postgres/user=paystream_ingest}
check "even the ingest role's direct UPDATE cannot refund more than captured" \
  refused_as "$INGEST_DSN" "UPDATE payments SET refunding_minor = 10001 WHERE payment_id = 'pay_sale-1'" payments_refunded_le_captured
check "nor capture more than authorized" \
  refused_as "$INGEST_DSN" "UPDATE payments SET capturing_minor = 1001 WHERE payment_id = 'pay_auth-2'" payments_captured_le_authorized
check "nor move what charge settles" \
  refused_as "$INGEST_DSN" "UPDATE payments SET captured_minor = 1 WHERE payment_id = 'pay_auth-2'" "permission denied"
check "workers stop cleanly on SIGTERM" "$STACK" stop-workers
check "no sanitizer reports" no_sanitizer_reports
finish
