#!/usr/bin/env bash
# Poison input: 10,000 damaged messages (bit flips, cuts, junk) on
# payments.intents among ordinary traffic. No worker crashes; every message
# is consumed; each lands in the DLQ, ends rejected, or — when the damage
# left a valid request — becomes an ordinary payment that ends terminal.
source "$(dirname "$0")/lib.sh"
FUZZ=${FUZZ_COUNT:-10000}
stack_up
"$STACK" workers 1
check "workers own partitions" wait_until 30 assigned ingest-1
pids_before=$(cat "$PAYSTREAM_RUN_DIR"/pids/*.pid | sort)
"$PAYCTL" publish --count $((FUZZ + 500)) --fuzz "$FUZZ" --declines 20 --run fz \
  --manifest "$PAYSTREAM_RUN_DIR/manifest.jsonl" >/dev/null
check "ingest consumed every message" wait_until 180 eval '"$PAYCTL" lag --stage ingest | grep -q "total lag 0"'
settled() { [ "$(sql "SELECT count(*) FROM payments WHERE outcome IS NULL AND status NOT IN ('review')")" -eq 0 ]; }
check "every payment reaches a terminal state" wait_until 180 settled
for p in $pids_before; do
  kill -0 "$p" 2>/dev/null || { failed=$((failed + 1)); echo "not ok - worker $p died"; }
done
check "no worker crashed" eval '[ "$(cat "$PAYSTREAM_RUN_DIR"/pids/*.pid | sort)" == "$pids_before" ]'
"$PAYCTL" dlq list >"$PAYSTREAM_RUN_DIR/dlq.jsonl"
dlq=$(jq -r 'select(.key|startswith("fuzz-")) | .key' "$PAYSTREAM_RUN_DIR/dlq.jsonl" | sort -u | wc -l)
rejected=$(sql "SELECT count(*) FROM rejections")
payments=$(sql "SELECT count(*) FROM payments WHERE idempotency_key NOT LIKE 'fz-%' OR idempotency_key LIKE 'fz-8%'")
log "of $FUZZ damaged messages: $dlq dead-lettered, $rejected rejected, $payments still valid payments"
# Damage can turn two messages into one request (a duplicate, absorbed):
# allow for that, never for a message that vanished without a trace.
accounted=$((dlq + rejected + payments))
check "every damaged message is accounted for (DLQ, rejected or a payment)" \
  test "$accounted" -le "$FUZZ" -a "$accounted" -ge $((FUZZ * 99 / 100))
check "every dead-letter names its reason and source" eval \
  '[ "$(jq -r "select(.[\"dlq.reason\"]==null or .[\"dlq.source.offset\"]==null) | .key" "$PAYSTREAM_RUN_DIR/dlq.jsonl" | wc -l)" -eq 0 ]'
check "payctl ledger verify passes" quietly "$PAYCTL" ledger verify
check "payctl reconcile passes" quietly "$PAYCTL" reconcile
check "workers stop cleanly on SIGTERM" "$STACK" stop-workers
check "no sanitizer reports" no_sanitizer_reports
finish
