#!/usr/bin/env bash
# End to end through the four real workers: 2,000 intents with exact
# duplicates, reused keys, declines, fraud, invalid and undecodable messages.
# Asserts the invariants from Postgres, procsim's charge list and the topics.
source "$(dirname "$0")/lib.sh"

TOTAL=2000 DUPS=200 CONFLICTS=100 DECLINES=100 FRAUD=10 INVALID=50 GARBAGE=20
BASE=$((TOTAL - DUPS - CONFLICTS - INVALID - GARBAGE))
TERMINAL=$((BASE + CONFLICTS + INVALID))
M=$PAYSTREAM_RUN_DIR/manifest.jsonl

stack_up
"$STACK" workers 1
"$PAYCTL" publish --count $TOTAL --duplicates $DUPS --conflicts $CONFLICTS --declines $DECLINES \
  --fraud $FRAUD --invalid $INVALID --garbage $GARBAGE --run e2e --manifest "$M"
check "every intent reaches a terminal state" "$PAYCTL" wait --terminal $TERMINAL --timeout 240

# Invariant 1: one request, one payment.
eq "one payment per valid key" "$BASE" "$(sql "SELECT count(*) FROM payments")"
eq "no (merchant, key) has two payments" "0" \
  "$(sql "SELECT count(*) FROM (SELECT 1 FROM payments GROUP BY merchant_id, idempotency_key HAVING count(*) > 1) d")"

# Invariant 4: every valid intent ends in exactly the state the manifest expects.
expected=$(jq -r 'select(.kind=="valid" or .kind=="decline" or .kind=="fraud") | [.merchant,.key,.expect] | @tsv' "$M" | sort)
actual=$(sql "SELECT merchant_id, idempotency_key, status FROM payments" | sort)
check "each valid intent ends as expected (succeeded/declined/blocked)" test "$expected" == "$actual"
eq "no payment left in flight" "0" "$(sql "SELECT count(*) FROM payments WHERE outcome IS NULL")"
eq "declines are declined with the processor's code" "$DECLINES" \
  "$(sql "SELECT count(*) FROM payments WHERE status = 'declined' AND error_code IN ('generic_decline','insufficient_funds','expired_card')")"

# Bad input ends rejected with a reason, never lost.
eq "reused keys are rejected" "$CONFLICTS" \
  "$(sql "SELECT count(*) FROM rejections WHERE error_code = 'idempotency_key_reused'")"
exp_codes=$(jq -r 'select(.kind=="invalid") | .code' "$M" | sort | uniq -c)
act_codes=$(sql "SELECT error_code FROM rejections WHERE error_code <> 'idempotency_key_reused'" | sort | uniq -c)
check "invalid intents are rejected with the right codes" test "$exp_codes" == "$act_codes"
eq "the reused key left the original payment's amount alone" "0" "$(
  jq -r 'select(.kind=="valid" or .kind=="decline" or .kind=="fraud") | [.merchant,.key,.amount] | @tsv' "$M" | sort >"$PAYSTREAM_RUN_DIR/amounts.exp"
  sql "SELECT merchant_id, idempotency_key, amount_minor FROM payments" | sort | diff - "$PAYSTREAM_RUN_DIR/amounts.exp" | grep -c '^[<>]')"

# Invariant 2: never charge twice (procsim's own record).
curl -sf "$PAYSTREAM_PROCESSOR_URL/v1/charges" >"$PAYSTREAM_RUN_DIR/charges.json"
eq "no payment charged twice at the processor" "0" \
  "$(jq '[.data[] | select(.status=="succeeded") | .metadata.payment_id] | group_by(.) | map(select(length > 1)) | length' "$PAYSTREAM_RUN_DIR/charges.json")"
eq "every succeeded payment charged exactly once" "$(sql "SELECT count(*) FROM payments WHERE status='succeeded'")" \
  "$(jq '[.data[] | select(.status=="succeeded")] | length' "$PAYSTREAM_RUN_DIR/charges.json")"
eq "blocked payments never reach the processor" "0" "$(
  sql "SELECT payment_id FROM payments WHERE status='blocked'" | sort >"$PAYSTREAM_RUN_DIR/blocked"
  jq -r '.data[].metadata.payment_id' "$PAYSTREAM_RUN_DIR/charges.json" | sort | comm -12 - "$PAYSTREAM_RUN_DIR/blocked" | wc -l)"

# Outcomes on the topic: one per intent, identical when re-sent.
"$PAYCTL" outcomes >"$PAYSTREAM_RUN_DIR/outcomes.jsonl"
O=$PAYSTREAM_RUN_DIR/outcomes.jsonl
eq "one terminal outcome per payment and rejection" "$TERMINAL" \
  "$(jq -r 'select(.replayed==false and .status!="review") | .payment_id' "$O" | sort -u | wc -l)"
eq "re-sent outcomes are byte-identical" "0" \
  "$(jq -r 'select(.replayed==false) | [.payment_id,.raw] | @tsv' "$O" | sort -u | cut -f1 | uniq -d | wc -l)"
exp_out=$(jq -r 'select(.kind=="valid" or .kind=="decline" or .kind=="fraud") | [.key,.expect] | @tsv' "$M" | sort)
act_out=$(jq -r 'select(.replayed==false and (.payment_id|startswith("pay_"))) | [.idempotency_key,.status] | @tsv' "$O" | sort -u)
check "each valid intent's outcome has the expected status" test "$exp_out" == "$act_out"
eq "replayed outcomes repeat the original status" "0" "$(
  jq -r 'select(.replayed==true) | [.payment_id,.status] | @tsv' "$O" | sort -u >"$PAYSTREAM_RUN_DIR/replayed"
  jq -r 'select(.replayed==false) | [.payment_id,.status] | @tsv' "$O" | sort -u | comm -23 "$PAYSTREAM_RUN_DIR/replayed" - | wc -l)"
eq "rejected outcomes carry a code" "$((CONFLICTS + INVALID))" \
  "$(jq -r 'select(.status=="rejected" and .error_code!="") | .payment_id' "$O" | sort -u | wc -l)"

# Undecodable input is dead-lettered with its reason and source.
"$PAYCTL" dlq list >"$PAYSTREAM_RUN_DIR/dlq.jsonl"
eq "undecodable messages are in the DLQ with reason and source" "$GARBAGE" \
  "$(jq -r 'select(.["dlq.reason"]!=null and .["dlq.source.topic"]=="payments.intents" and .["dlq.source.offset"]!=null) | .key' "$PAYSTREAM_RUN_DIR/dlq.jsonl" | sort -u | wc -l)"

# Invariant 3: the books balance and match the processor.
check "payctl ledger verify passes" "$PAYCTL" ledger verify
eq "one ledger posting per succeeded payment" "$(sql "SELECT count(*) FROM payments WHERE status='succeeded'")" \
  "$(sql "SELECT count(*) FROM ledger_transactions")"
rev=$(sql "SELECT currency, -balance FROM ledger_accounts WHERE name = 'revenue:payments' ORDER BY currency")
charged=$(jq -r '[.data[] | select(.status=="succeeded")] | group_by(.currency) | .[] | [(.[0].currency|ascii_upcase), (map(.amount)|add)] | @tsv' "$PAYSTREAM_RUN_DIR/charges.json" | sort)
check "posted revenue equals the processor's successful charges" test "$rev" == "$charged"

check "workers stop cleanly on SIGTERM" "$STACK" stop-workers
check "no sanitizer reports" no_sanitizer_reports
finish
