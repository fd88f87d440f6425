#!/usr/bin/env bash
# End to end through the four real workers: 2,000 intents with exact
# duplicates, reused keys, declines, fraud, invalid and undecodable messages.
# Asserts the invariants from Postgres, procsim's charge list and the topics.
source "$(dirname "$0")/lib.sh"

TOTAL=2000 DUPS=200 CONFLICTS=100 DECLINES=100 FRAUD=10 INVALID=50 GARBAGE=20
M=$PAYSTREAM_RUN_DIR/manifest.jsonl

stack_up
"$STACK" workers 1
"$PAYCTL" publish --count $TOTAL --duplicates $DUPS --conflicts $CONFLICTS --declines $DECLINES \
  --fraud $FRAUD --invalid $INVALID --garbage $GARBAGE --run e2e --manifest "$M"
check "every intent reaches a terminal state, exactly one each" terminal_exactly "$(manifest_terminal "$M")" 240

assert_invariants "$M"
eq "declines carry the processor's decline code" "$DECLINES" \
  "$(sql "SELECT count(*) FROM payments WHERE status = 'declined' AND error_code IN ('generic_decline','insufficient_funds','expired_card')")"
eq "blocked payments never reach the processor" "0" "$(
  sql "SELECT payment_id FROM payments WHERE status='blocked'" | sort >"$PAYSTREAM_RUN_DIR/blocked"
  jq -r '.data[].metadata.payment_id' "$PAYSTREAM_RUN_DIR/charges.json" | sort | comm -12 - "$PAYSTREAM_RUN_DIR/blocked" | wc -l)"
eq "rejected outcomes carry a code" "$((CONFLICTS + INVALID))" \
  "$(jq -r 'select(.status=="rejected" and .error_code!="") | .payment_id' "$PAYSTREAM_RUN_DIR/outcomes.jsonl" | sort -u | wc -l)"

"$PAYCTL" dlq list >"$PAYSTREAM_RUN_DIR/dlq.jsonl"
eq "undecodable messages are in the DLQ with reason and source" "$GARBAGE" \
  "$(jq -r 'select(.["dlq.reason"]!=null and .["dlq.source.topic"]=="payments.intents" and .["dlq.source.offset"]!=null) | .key' "$PAYSTREAM_RUN_DIR/dlq.jsonl" | sort -u | wc -l)"

# Claim inspection and retention: pruning payloads keeps the claims, so a
# late duplicate is still answered from the stored outcome, never re-charged.
first=$(jq -r 'select(.kind=="valid") | [.merchant,.key] | @tsv' "$M" | head -n1)
check "payctl idempotency show finds the claim" eval \
  '"$PAYCTL" idempotency show $first | qgrep "payment_id:  pay_"'
check "payctl idempotency prune clears old payloads" eval \
  '"$PAYCTL" idempotency prune --older-than 0s | qgrep "cleared the request payload"'
eq "no payload left on finished payments" "0" "$(sql "SELECT count(*) FROM payments WHERE intent IS NOT NULL")"
payments_before=$(payment_count)
replayed_before=$("$PAYCTL" outcomes | jq -c 'select(.replayed)' | wc -l)
target=$(( $(terminal_count) + 100 ))   # counted before publishing: the late ones may finish at once
"$PAYCTL" publish --count 100 --run late --manifest "$PAYSTREAM_RUN_DIR/late.jsonl" >/dev/null
check "new requests after a prune are processed, exactly" terminal_exactly "$target" 60
"$PAYCTL" publish --count 100 --run late >/dev/null   # the same 100 requests again
replayed_now() { "$PAYCTL" outcomes | jq -c "select(.replayed)" | wc -l; }
check "late duplicates are answered with replayed outcomes" wait_until 60 eval \
  '[ "$(replayed_now)" -ge $((replayed_before + 100)) ]'
eq "one replayed outcome per late duplicate, no more" "$((replayed_before + 100))" "$(replayed_now)"
eq "and still exactly as many intents terminal" "$target" "$(terminal_count)"
eq "late duplicates create no payment" "$((payments_before + 100))" "$(payment_count)"

# Oversized input is dead-lettered unread; after the fix (a higher limit)
# payctl dlq redrive sends it back to its source topic and it is paid.
PAYSTREAM_STOP_TIMEOUT=20 "$STACK" stop-workers >/dev/null
PAYSTREAM_MAX_MESSAGE_BYTES=4096 "$STACK" start-worker ingest 1
for s in fraud charge ledger; do "$STACK" start-worker "$s" 1; done
"$PAYCTL" publish --count 5 --padding 6000 --run big >/dev/null
oversized() { [ "$("$PAYCTL" dlq list | jq -r 'select(.["dlq.reason"]|startswith("oversized")) | .key' | wc -l)" -eq 5 ]; }
check "oversized intents are dead-lettered with the reason" wait_until 60 oversized
where=$("$PAYCTL" dlq list | jq -r 'select(.["dlq.reason"]|startswith("oversized")) | "\(.partition) \(.offset)"' | head -n1)
check "payctl dlq show names the reason and the source" eval '"$PAYCTL" dlq show $where | qgrep "dlq.source.offset"'
PAYSTREAM_STOP_TIMEOUT=20 "$STACK" stop-workers >/dev/null
"$STACK" workers 1
check "payctl dlq redrive re-publishes the dead letters" quietly "$PAYCTL" dlq redrive
paid_big() { [ "$(sql "SELECT count(*) FROM payments WHERE idempotency_key LIKE 'big-%' AND status = 'succeeded'")" -eq 5 ]; }
check "redriven intents are paid once the limit allows them" wait_until 60 paid_big
check "a second redrive does not see the redriven messages again" eval \
  '! "$PAYCTL" dlq redrive --dry-run | qgrep oversized'

check "workers stop cleanly on SIGTERM" "$STACK" stop-workers
check "no sanitizer reports" no_sanitizer_reports
finish
