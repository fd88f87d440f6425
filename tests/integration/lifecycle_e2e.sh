#!/usr/bin/env bash
# The payment lifecycle end to end (#19): two instances of every stage,
# procsim. Racing refunds of one sale whose total exceeds the capture:
# exactly those that fit are refunded at procsim and posted, the rest end
# amount_exceeds_refundable, procsim's refund total never exceeds the
# capture. An authorization is held, captured in parts up to its amount,
# one more capture refused; another is partly captured, then voided (only
# the rest released), a capture after the void refused. The books verify
# and every hold is released or captured. A refund at a processor no longer
# configured ends declined processor_unavailable (never sent) and does not
# stall the operations behind it. An operation's processor target is fixed
# at its first send. A posting Postgres refuses for its data is
# dead-lettered and the operations behind it are posted.
source "$(dirname "$0")/lib.sh"
stack_up
"$STACK" workers 2
SIM="http://127.0.0.1:$(cat "$PAYSTREAM_RUN_DIR/procsim.port")"
totals() { curl -sf "$SIM/_sim/totals?payment_id=$1" | jq -r "$2"; }
amounts() { sql "SELECT authorized_minor, captured_minor, capturing_minor, refunded_minor, refunding_minor, released_minor, releasing_minor, status FROM payments WHERE merchant_id = 'm1' AND idempotency_key = '$1'" | tr '\t' ' '; }

# ---- racing refunds -------------------------------------------------------------
"$PAYCTL" sale m1 sale-1 --amount 10000 --currency USD --customer c-sale >/dev/null
check "the sale succeeds" wait_until 120 is_status sale-1 succeeded
for i in $(seq 1 50); do
  "$PAYCTL" refund m1 sale-1 --key "race-$i" --amount 300 --currency USD --kafka-key "race-$i" >/dev/null &
done
wait
races_done() { [ "$(sql "SELECT count(*) FROM payment_operations WHERE idempotency_key LIKE 'race-%' AND state IN ('posted', 'rejected', 'declined')")" -eq 50 ]; }
check "all 50 refunds end" wait_until 240 races_done
eq "exactly the 33 that fit are refunded and posted" 33 \
  "$(sql "SELECT count(*) FROM payment_operations WHERE idempotency_key LIKE 'race-%' AND state = 'posted'")"
eq "the other 17 are amount_exceeds_refundable" 17 \
  "$(sql "SELECT count(*) FROM payment_operations WHERE idempotency_key LIKE 'race-%' AND error_code = 'amount_exceeds_refundable'")"
SALE=$(pid_of sale-1)
eq "procsim refunded exactly what was accepted, never more than the capture" "10000 9900" \
  "$(totals "$SALE" '"\(.captured) \(.refunded)"')"
eq "the payment records it" "10000 10000 0 9900 0 0 0 succeeded" "$(amounts sale-1)"
eq "one refund posting per refund" 33 \
  "$(sql "SELECT count(*) FROM ledger_transactions WHERE payment_id = '$SALE' AND kind = 'refund'")"
refund_outcomes() { [ "$("$PAYCTL" outcomes 2>/dev/null | jq -r 'select(.kind == "refund" and .status == "succeeded") | .idempotency_key' | sort -u | grep -c '^race-')" -eq 33 ]; }
check "each refund has its succeeded outcome" wait_until 60 refund_outcomes

# ---- partial captures up to the authorization, one more refused -----------------
"$PAYCTL" authorize m1 auth-1 --amount 1000 --currency USD --customer c-auth1 >/dev/null
check "the authorization is held" wait_until 120 is_status auth-1 authorized
AUTH1=$(pid_of auth-1)
eq "procsim holds it" "1000 0" "$(totals "$AUTH1" '"\(.authorized) \(.captured)"')"
"$PAYCTL" capture m1 auth-1 --key cap-1 --amount 400 --currency USD >/dev/null
"$PAYCTL" capture m1 auth-1 --key cap-2 --amount 300 --currency USD >/dev/null
"$PAYCTL" capture m1 auth-1 --key cap-3 --amount 300 --currency USD >/dev/null
check "three partial captures end" wait_until 120 op_done cap-3
eq "all three are captured and posted" "posted posted posted" "$(op_state cap-1) $(op_state cap-2) $(op_state cap-3)"
"$PAYCTL" capture m1 auth-1 --key cap-4 --amount 1 --currency USD >/dev/null
check "a fourth capture ends" wait_until 60 op_done cap-4
eq "it is refused: payment_not_capturable (fully captured)" "rejected payment_not_capturable" "$(op_state cap-4)"
eq "the authorization is captured in full" "1000 1000 0 0 0 0 0 captured" "$(amounts auth-1)"
eq "procsim captured 1000" "1000" "$(totals "$AUTH1" '.captured')"

# ---- void after a partial capture; capture after the void -----------------------
"$PAYCTL" authorize m1 auth-2 --amount 1000 --currency USD --customer c-auth2 >/dev/null
check "a second authorization is held" wait_until 120 is_status auth-2 authorized
AUTH2=$(pid_of auth-2)
"$PAYCTL" capture m1 auth-2 --key cap2-1 --amount 600 --currency USD >/dev/null
check "the partial capture ends" wait_until 120 op_done cap2-1
"$PAYCTL" void m1 auth-2 --key void2-1 >/dev/null
check "the capture and the void end" wait_until 120 op_done void2-1
eq "both succeed" "posted posted" "$(op_state cap2-1) $(op_state void2-1)"
eq "the void released only the 400 not captured" "1000 600 0 0 0 400 0 captured" "$(amounts auth-2)"
eq "procsim agrees (captured, voided)" "600 400" "$(totals "$AUTH2" '"\(.captured) \(.voided)"')"
"$PAYCTL" capture m1 auth-2 --key cap2-2 --amount 1 --currency USD >/dev/null
check "a capture after the void ends" wait_until 60 op_done cap2-2
eq "it is refused: payment_not_capturable" "rejected payment_not_capturable" "$(op_state cap2-2)"

# ---- the books --------------------------------------------------------------------
check "payctl ledger verify passes" quietly "$PAYCTL" ledger verify
eq "every hold is captured or released" "0" \
  "$(sql "SELECT coalesce(sum(balance), 0) FROM ledger_accounts WHERE name LIKE '%authorized_holds%'")"
eq "revenue is the captures and the sale" "-11600" \
  "$(sql "SELECT balance FROM ledger_accounts WHERE name = 'revenue:payments'")"
eq "refunds are contra-revenue" "9900" "$(sql "SELECT balance FROM ledger_accounts WHERE name = 'revenue:refunds'")"
eq "refunds payable is settled" "0" "$(sql "SELECT balance FROM ledger_accounts WHERE name = 'liability:refunds_payable'")"

# ---- an operation at a processor not configured: ended, never sent, no stall -------
# A sale forged (as the owner) at processor 'gone', which no worker knows.
sql "INSERT INTO payments (payment_id, merchant_id, idempotency_key, fingerprint, customer_id, amount_minor,
       currency, payment_method, intent, source_topic, source_partition, source_offset, kind)
     VALUES ('pay_gone-1', 'm1', 'gone-1', 'fp', 'c1', 500, 'USD', 'pm_card_visa', '\\x00', 'forged', 0, 0, 'sale');
     UPDATE payments SET status = 'scored' WHERE payment_id = 'pay_gone-1';
     UPDATE payments SET status = 'charging' WHERE payment_id = 'pay_gone-1';
     UPDATE payments SET status = 'charged', processor = 'gone', processor_charge_id = 'ch_gone' WHERE payment_id = 'pay_gone-1';
     UPDATE payments SET status = 'succeeded', outcome = '\\x2001' WHERE payment_id = 'pay_gone-1';" >/dev/null
"$PAYCTL" refund m1 gone-1 --key gone-r1 --amount 100 --currency USD --kafka-key same-part >/dev/null
"$PAYCTL" refund m1 sale-1 --key after-gone --amount 100 --currency USD --kafka-key same-part >/dev/null
check "the refund at the unconfigured processor ends" wait_until 120 op_done gone-r1
eq "declined processor_unavailable, never sent" "declined processor_unavailable 0" \
  "$(op_state gone-r1) $(sql "SELECT sends FROM payment_operations WHERE idempotency_key = 'gone-r1'")"
eq "its reservation is given back" "500 500 0 0 0 0 0 succeeded" "$(amounts gone-1)"
gone_outcome() { "$PAYCTL" outcomes 2>/dev/null | jq -c 'select(.idempotency_key == "gone-r1" and .error_code == "processor_unavailable")' | qgrep .; }
check "its outcome is published" wait_until 60 gone_outcome
check "the next operation of its partition is not stalled" wait_until 120 op_done after-gone
eq "and is posted" "posted" "$(op_state after-gone)"
check "the charge worker alerted" qgrep "ALERT operation .* never sent: ended declined (processor_unavailable" \
  "$PAYSTREAM_RUN_DIR"/logs/charge-*.log

# ---- an operation's target is fixed at its first send --------------------------------
eq "the capture recorded what it named" "t" \
  "$(sql "SELECT processor_target IS NOT NULL FROM payment_operations WHERE idempotency_key = 'cap-1'")"
check "and it never changes" sql_refused \
  "UPDATE payment_operations SET processor_target = 'other' WHERE idempotency_key = 'cap-1'" "target never changes"

# ---- a posting Postgres refuses for its data: dead-lettered, the ledger goes on ------
"$PAYCTL" sale m1 sale-p --amount 1000 --currency USD --customer c-poison >/dev/null
check "a sale to refund succeeds" wait_until 120 is_status sale-p succeeded
sql "ALTER TABLE ledger_entries ADD CONSTRAINT test_poison CHECK (amount_minor <> 777) NOT VALID" >/dev/null
"$PAYCTL" refund m1 sale-p --key poison-r --amount 777 --currency USD --kafka-key poison-part >/dev/null
"$PAYCTL" refund m1 sale-p --key after-poison --amount 100 --currency USD --kafka-key poison-part >/dev/null
check "the refund behind the refused posting is posted" wait_until 120 op_done after-poison
eq "posted" "posted" "$(op_state after-poison)"
check "the refused one is alerted and dead-lettered" qgrep "ALERT ledger postgres refused the posting of operation" \
  "$PAYSTREAM_RUN_DIR"/logs/ledger-*.log
eq "and left succeeded, unposted" "succeeded" "$(op_state poison-r)"
sql "ALTER TABLE ledger_entries DROP CONSTRAINT test_poison" >/dev/null
"$PAYCTL" payment show m1 auth-2 >"$PAYSTREAM_RUN_DIR/show.txt"
check "payctl payment show lists the operations and postings" \
  qgrep "void2-1" "$PAYSTREAM_RUN_DIR/show.txt"
check "workers stop cleanly on SIGTERM" "$STACK" stop-workers
check "no sanitizer reports" no_sanitizer_reports
finish
