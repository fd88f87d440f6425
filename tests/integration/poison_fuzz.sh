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
check "ingest consumed every message" wait_until 180 eval '"$PAYCTL" lag --stage ingest | qgrep "total lag 0"'
settled() { [ "$(sql "SELECT count(*) FROM payments WHERE outcome IS NULL AND status NOT IN ('review')")" -eq 0 ]; }
check "every payment reaches a terminal state" wait_until 180 settled
for p in $pids_before; do
  kill -0 "$p" 2>/dev/null || { failed=$((failed + 1)); echo "not ok - worker $p died"; }
done
check "no worker crashed" eval '[ "$(cat "$PAYSTREAM_RUN_DIR"/pids/*.pid | sort)" == "$pids_before" ]'
"$PAYCTL" dlq list >"$PAYSTREAM_RUN_DIR/dlq.jsonl"
# Every message on payments.intents, by its own (partition, offset), ends in
# exactly one place: a dead letter from ingest, a rejection, or the payment
# it claimed. Nothing may vanish (a damaged message that became an exact
# duplicate of another would show here as a missing offset: the promise is
# zero, not "about all").
R=$PAYSTREAM_RUN_DIR
jq -r 'select(.["dlq.stage"]=="ingest" and .["dlq.source.topic"]=="payments.intents")
       | "\(.["dlq.source.partition"]) \(.["dlq.source.offset"]) dlq"' "$R/dlq.jsonl" >"$R/fates"
sql "SELECT source_partition, source_offset, 'rejected' FROM rejections WHERE source_topic = 'payments.intents'" | tr '\t' ' ' >>"$R/fates"
sql "SELECT source_partition, source_offset, 'payment' FROM payments WHERE source_topic = 'payments.intents'" | tr '\t' ' ' >>"$R/fates"
published=$("$BUILD/kadmin" offsets payments.intents | awk '{ n += $3 - $2 } END { print n }')
dlq=$(grep -c ' dlq$' "$R/fates"); rejected=$(grep -c ' rejected$' "$R/fates"); payments=$(grep -c ' payment$' "$R/fates")
log "of $published messages ($FUZZ damaged): $dlq dead-lettered, $rejected rejected, $payments payments"
eq "the topic holds every published message" "$((FUZZ + 500))" "$published"
eq "no message has two fates" "0" "$(cut -d' ' -f1,2 "$R/fates" | sort | uniq -d | wc -l)"
eq "every message is accounted for (DLQ, rejected or a payment), none missing" "$published" \
  "$(cut -d' ' -f1,2 "$R/fates" | sort -u | wc -l)"
eq "each of the 500 undamaged intents is a payment" "500" \
  "$(sql "SELECT count(*) FROM payments WHERE idempotency_key ~ '^fz-000[0-4][0-9][0-9]$'")"
check "every dead-letter names its reason and source" eval \
  '[ "$(jq -r "select(.[\"dlq.reason\"]==null or .[\"dlq.source.offset\"]==null) | .key" "$PAYSTREAM_RUN_DIR/dlq.jsonl" | wc -l)" -eq 0 ]'
check "payctl ledger verify passes" quietly "$PAYCTL" ledger verify
check "payctl reconcile passes" quietly "$PAYCTL" reconcile
check "workers stop cleanly on SIGTERM" "$STACK" stop-workers
check "no sanitizer reports" no_sanitizer_reports
finish
