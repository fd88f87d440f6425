#!/usr/bin/env bash
# The charge gateway under processor faults: declines reach the outcome
# unchanged and are never retried; a primary that refuses connections sends
# every payment to the backup, charged once; a primary that times out 30 %
# of requests (after charging) never causes a second charge anywhere; a
# charge worker SIGKILLed with hundreds of requests in flight charges each
# payment exactly once after restart.
source "$(dirname "$0")/lib.sh"
stack_up
"$STACK" start-backup-procsim
BACKUP_URL=http://127.0.0.1:$(cat "$PAYSTREAM_RUN_DIR/backup.port")
# The backup speaks the other flavour (PayPal-like), as a real backup would.
export PAYSTREAM_BACKUP_PROCESSOR_URL=$BACKUP_URL PAYSTREAM_BACKUP_PROCESSOR_NAME=backup
export PAYSTREAM_BACKUP_PROCESSOR_FLAVOUR=paypal
for s in ingest fraud ledger; do "$STACK" start-worker "$s" 1; done
charges() { curl -sf "$1/v1/charges" | jq -c '.data[]'; }
all_charges() { { charges "$PAYSTREAM_PROCESSOR_URL"; charges "$BACKUP_URL"; } }
succeeded_twice() { all_charges | jq -r 'select(.status=="succeeded") | .metadata.payment_id' | sort | uniq -d | wc -l; }
# One query, one snapshot: exactly $1 payments (one per request published so
# far, never two) and none without an outcome.
settled() { [ "$(sql "SELECT count(*) = $1 AND count(*) FILTER (WHERE outcome IS NULL) = 0 FROM payments")" = t ]; }

# 1. Declines, healthy primary.
"$STACK" start-worker charge 1
"$PAYCTL" publish --count 300 --declines 150 --run dec >/dev/null
check "the declining load settles" wait_until 90 settled 300
eq "each decline code reaches the outcome unchanged" \
  "$(charges "$PAYSTREAM_PROCESSOR_URL" | jq -r 'select(.status=="failed") | [.metadata.payment_id, .failure_code] | @tsv' | sort)" \
  "$(sql "SELECT payment_id, error_code FROM payments WHERE status = 'declined'" | sort)"
eq "the processor declined every declining card" "150" \
  "$(charges "$PAYSTREAM_PROCESSOR_URL" | jq -r 'select(.status=="failed") | .metadata.payment_id' | sort -u | wc -l)"
eq "a declined payment is never retried" "0" \
  "$(charges "$PAYSTREAM_PROCESSOR_URL" | jq -r '.metadata.payment_id' | sort | uniq -d | wc -l)"
# procsim answers a repeated key from its store without a new charge: count
# the requests themselves, not only the charges.
eq "each payment was requested exactly once (300 requests, one per key)" "300 300 1" \
  "$(curl -sf "$PAYSTREAM_PROCESSOR_URL/_sim/requests" | jq -r '"\(.total) \(.by_key | length) \([.by_key[]] | max)"')"
# Stripe's shape: the outcome's error_code is the processor's code
# (card_declined, ...), its decline_code the issuer's reason.
"$PAYCTL" outcomes >"$PAYSTREAM_RUN_DIR/dec-outcomes.jsonl"
eq "a card_declined decline has error_code card_declined in its outcome" \
  "$(sql "SELECT count(*) FROM payments WHERE status = 'declined' AND error_code IN ('generic_decline', 'insufficient_funds', 'lost_card', 'stolen_card', 'fraudulent')")" \
  "$(jq -r 'select(.status == "declined" and .error_code == "card_declined") | .payment_id' "$PAYSTREAM_RUN_DIR/dec-outcomes.jsonl" | sort -u | wc -l)"
hexof() { printf '%s' "$1" | od -An -tx1 | tr -d ' \n'; }
with_reason() { # declined outcomes whose bytes carry their payment's decline code
  local n=0 id code
  while IFS=$'\t' read -r id code; do
    jq -r --arg p "$id" 'select(.payment_id == $p and .status == "declined") | .raw' "$PAYSTREAM_RUN_DIR/dec-outcomes.jsonl" |
      qgrep "$(hexof "$code")" && n=$((n + 1))
  done < <(sql "SELECT payment_id, error_code FROM payments WHERE status = 'declined'")
  echo "$n"
}
eq "and every declined outcome carries the decline code too" "150" "$(with_reason)"
check "the charge worker stops" "$STACK" stop-workers

# 2. The primary refuses connections: everything goes to the backup, once.
closed=http://127.0.0.1:9   # discard port: nothing listens
for s in ingest fraud ledger; do "$STACK" start-worker "$s" 2; done
PAYSTREAM_PROCESSOR_URL_OVERRIDE=$closed "$STACK" start-worker charge 2
"$PAYCTL" publish --count 300 --run down >/dev/null
check "the load settles with the primary down" wait_until 120 settled 600
eq "every payment of the outage succeeded" "300" \
  "$(sql "SELECT count(*) FROM payments WHERE idempotency_key LIKE 'down-%' AND status = 'succeeded'")"
eq "each was charged once, at the (PayPal-like) backup" "300" \
  "$(charges "$BACKUP_URL" | jq -r 'select(.status=="succeeded") | .metadata.payment_id' | sort -u | wc -l)"
eq "their primary attempts were abandoned as never received" "300" \
  "$(sql "SELECT count(*) FROM charge_attempts WHERE processor = 'stripe' AND state = 'abandoned' AND sends = refused")"
check "the primary's circuit opened" qgrep "circuit for stripe: closed -> open" "$PAYSTREAM_RUN_DIR/logs/charge-2.log"
check "failovers were logged" qgrep "never received the charge; failing over to backup" "$PAYSTREAM_RUN_DIR/logs/charge-2.log"
check "the workers stop" "$STACK" stop-workers

# 3. The primary charges but answers too late 30 % of the time: ambiguous
#    attempts are retried there with the same key, never sent elsewhere.
curl -sf -X POST "$PAYSTREAM_PROCESSOR_URL/_sim/config?timeout_rate=0.3&hang_ms=1500" >/dev/null
for s in ingest fraud ledger; do "$STACK" start-worker "$s" 3; done
PAYSTREAM_PROCESSOR_TIMEOUT_MS=700 "$STACK" start-worker charge 3
"$PAYCTL" publish --count 300 --run slow >/dev/null
check "the load settles with a slow primary" wait_until 180 settled 900
eq "no payment charged twice, across both processors" "0" "$(succeeded_twice)"
eq "every payment ends succeeded or failed" "0" \
  "$(sql "SELECT count(*) FROM payments WHERE idempotency_key LIKE 'slow-%' AND status NOT IN ('succeeded', 'failed')")"
check "timeouts happened and were retried" qgrep "not definite (unknown)" "$PAYSTREAM_RUN_DIR/logs/charge-3.log"
curl -sf -X POST "$PAYSTREAM_PROCESSOR_URL/_sim/config?timeout_rate=0&latency_ms=1500" >/dev/null
check "the workers stop" "$STACK" stop-workers

# 4. SIGKILL the charge worker with hundreds of requests in flight.
for s in ingest fraud ledger; do "$STACK" start-worker "$s" 4; done
"$STACK" start-worker charge 4
"$PAYCTL" publish --count 600 --run kill >/dev/null
inflight() { [ "$(sql "SELECT count(*) FROM charge_attempts WHERE state = 'charging' AND sends > 0")" -ge 200 ]; }
check "hundreds of charges are in flight" wait_until 60 inflight
check "the charge worker is SIGKILLed" "$STACK" kill-worker charge 4
curl -sf -X POST "$PAYSTREAM_PROCESSOR_URL/_sim/config?latency_ms=0" >/dev/null
"$STACK" start-worker charge 5
check "the load settles after the restart" wait_until 120 settled 1500
eq "no attempt left charging" "0" "$(sql "SELECT count(*) FROM charge_attempts WHERE state = 'charging'")"
eq "every killed-in-flight payment succeeded" "600" \
  "$(sql "SELECT count(*) FROM payments WHERE idempotency_key LIKE 'kill-%' AND status = 'succeeded'")"
eq "and was charged exactly once" "0" "$(succeeded_twice)"
eq "charges at every processor sum to the succeeded payments" \
  "$(sql "SELECT count(*) FROM payments WHERE status = 'succeeded'")" \
  "$(all_charges | jq -r 'select(.status == "succeeded") | .id' | wc -l)"

# What the database itself refuses, whatever a worker does: a second live
# attempt for a charged payment (at any processor), and an attempt whose
# processor idempotency key is not the one derived from its primary key
# (which is what keeps keys unique).
paid=$(sql "SELECT payment_id FROM charge_attempts WHERE state = 'succeeded' LIMIT 1")
attempt() { # attempt PAYMENT PROCESSOR KEY STATE
  echo "INSERT INTO charge_attempts (payment_id, processor, idempotency_key, state, amount_minor, currency)
        VALUES ('$1', '$2', '$3', '$4', 100, 'USD')"
}
check "a second succeeded attempt for a charged payment is refused" \
  sql_refused "$(attempt "$paid" other "paystream:$paid:other" succeeded)" charge_attempts_one_live
check "so is a second charging one" \
  sql_refused "$(attempt "$paid" other "paystream:$paid:other" charging)" charge_attempts_one_live
check "an attempt with a key not derived from payment and processor is refused" \
  sql_refused "$(attempt "$paid" other "paystream:someone-else:other" declined)" charge_attempts_key_derived
check "a finished attempt at another processor with its own key is accepted" \
  quietly psql "$PAYSTREAM_PG_DSN" -v ON_ERROR_STOP=1 -c "BEGIN; $(attempt "$paid" other "paystream:$paid:other" declined); ROLLBACK"

check "payctl ledger verify passes" quietly "$PAYCTL" ledger verify
eq "one posting per succeeded payment" "$(sql "SELECT count(*) FROM payments WHERE status = 'succeeded'")" \
  "$(sql "SELECT count(*) FROM ledger_transactions")"
check "workers stop cleanly on SIGTERM" "$STACK" stop-workers
check "no sanitizer reports" no_sanitizer_reports
finish
