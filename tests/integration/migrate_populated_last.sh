#!/usr/bin/env bash
# Upgrade from the last landed release (migrations up to 034) to head, on a
# database the whole lifecycle has written to: the database is created at
# 034 and the pipeline (these binaries: their readiness only reports the
# schema, lib/schema.h) runs sales, an authorization captured in part and
# one held, refunds, a dispute lost (withdrawal, fee, loss), the day's
# settlement reconciled (payout posted), and a refund whose late failure is
# kept while the refund still has no answer. Head's migrations then apply
# to it; the postings, balances and payout recorded before are unchanged,
# the refund in flight across the upgrade ends (its failure resolved), the
# books verify, and a fresh payment runs through the pipeline.
source "$(dirname "$0")/lib.sh"
PREVIOUS=034
MIG_PREV=$PAYSTREAM_RUN_DIR/migrations-$PREVIOUS
mkdir -p "$MIG_PREV"
for f in "$REPO"/db/migrations/*.sql; do
  n=$(basename "$f"); [ "$((10#${n%%_*}))" -le "$((10#$PREVIOUS))" ] && cp "$f" "$MIG_PREV/"
done
export PAYSTREAM_MIGRATIONS_DIR=$MIG_PREV
R=$PAYSTREAM_RUN_DIR
stack_up
eq "the database is at the last release" "$(basename "$(ls "$MIG_PREV"/*.sql | sort | tail -1)")" \
  "$(sql "SELECT max(version) FROM schema_migrations")"
export PAYSTREAM_PROCESSOR_TIMEOUT_MS=4000  # the held refund's answer times out
start_events_pipeline
SIM=$PAYSTREAM_PROCESSOR_URL
WH="http://127.0.0.1:$(cat "$R/webhook/webhook-1.port")/webhooks"
SECRET=$(cat "$R/secrets/webhook-stripe")
post() { curl -sf -X POST "$SIM$1"; }
sale() { "$PAYCTL" sale m1 "$1" --amount 10000 --currency USD --customer "c-$1" >/dev/null; }
refund() { "$PAYCTL" refund m1 "$1" --key "$2" --amount "$3" --currency USD >/dev/null; }
op_col() { sql "SELECT $2 FROM payment_operations WHERE merchant_id = 'm1' AND idempotency_key = '$1'"; }
charge_of() { sql "SELECT processor_charge_id FROM payments WHERE payment_id = '$1'"; }
dispute_is() { [ "$(sql "SELECT status FROM disputes WHERE processor_dispute_id = '$1'")" = "$2" ]; }
verify() { check "payctl ledger verify is clean ($1)" quietly "$PAYCTL" ledger verify; }

# ---- the last release at work ------------------------------------------------------
for s in plain lost kept; do sale "$s"; done
"$PAYCTL" authorize m1 auth-cap --amount 1000 --currency USD --customer c-a1 >/dev/null
"$PAYCTL" authorize m1 auth-held --amount 700 --currency USD --customer c-a2 >/dev/null
for s in plain lost kept; do check "sale $s succeeds" wait_until 120 is_status "$s" succeeded; done
for s in auth-cap auth-held; do check "$s is authorized" wait_until 120 is_status "$s" authorized; done
"$PAYCTL" capture m1 auth-cap --key cap-1 --amount 400 --currency USD >/dev/null
refund plain plain-r 2500
check "a partial capture is posted" wait_until 120 eval '[ "$(op_col cap-1 state)" = posted ]'
check "a refund is posted" wait_until 120 eval '[ "$(op_col plain-r state)" = posted ]'
post "/_sim/config?stripe_webhook_url=$WH/stripe&stripe_webhook_secret=$SECRET&webhook_retry_ms=100" >/dev/null
P=$(pid_of lost)
DP=$(post "/_sim/dispute?charge=$(charge_of "$P")&amount=4000&fee=1500" | jq -r .id)
post "/_sim/dispute?id=$DP&action=funds_withdrawn" >/dev/null
post "/_sim/dispute?id=$DP&action=lost" >/dev/null
check "a dispute ends lost" wait_until 60 dispute_is "$DP" lost
check "every stage caught up" wait_until 60 caught_up charge ledger
DAY=$(date -u +%F)
curl -sf "$SIM/_sim/settlement?day=$DAY&flavour=stripe" >"$R/settlement.csv"
check "the day's settlement reconciles (exit 0)" quietly "$PAYCTL" reconcile --report "$R/settlement.csv" --processor stripe
eq "its payout is posted" 1 "$(sql "SELECT count(*) FROM settlement_payouts")"
# A refund that acts, its success webhook lost, its answer timing out, then
# every status query answered 503:
# its late failure webhook is kept while it has no answer.
P=$(pid_of kept)
post "/_sim/config?webhook_lose_next=1&timeout_rate=1&hang_ms=10000" >/dev/null
refund kept kept-r 4000
received() { [ "$(curl -sf "$SIM/_sim/requests" | jq -r --arg k "op_$(op_col kept-r operation_id)" '.by_key[$k] // 0')" -ge 1 ]; }
check "procsim has the refund" wait_until 60 received
post "/_sim/config?timeout_rate=0&fail_rate=1&fail_status=503" >/dev/null
OP=$(op_col kept-r operation_id)
RE=$(curl -sf "$SIM/_sim/operations?payment_id=$P" | jq -r '.data[] | select(.op == "refund") | .object_id' | head -1)
eq "procsim fails the refund late" 200 "$(curl -s -o /dev/null -w '%{http_code}' -X POST "$SIM/_sim/refund_fail?refund=$RE")"
kept() { [ "$(sql "SELECT state FROM refund_failures WHERE operation_id = '$OP'")" = kept ]; }
check "the failure is kept, the refund still processing" wait_until 60 kept
eq "the refund has no answer yet" processing "$(op_col kept-r state)"
eq "every table the lifecycle writes holds rows" "t" \
  "$(sql "SELECT bool_and(n > 0) FROM (SELECT count(*) n FROM payments WHERE kind = 'authorize' AND status = 'authorized'
          UNION ALL SELECT count(*) FROM payment_operations WHERE kind = 'capture' AND state = 'posted'
          UNION ALL SELECT count(*) FROM payment_operations WHERE kind = 'refund' AND state = 'posted'
          UNION ALL SELECT count(*) FROM refund_failures WHERE state = 'kept'
          UNION ALL SELECT count(*) FROM disputes WHERE status = 'lost'
          UNION ALL SELECT count(*) FROM processor_events
          UNION ALL SELECT count(*) FROM settlement_payouts
          UNION ALL SELECT count(*) FROM ledger_entries) c")"
verify "at the last release"
snapshot() {
  sql "SELECT md5(string_agg(t.transaction_id || t.payment_id || t.kind || e.entry_id || e.account_id || e.direction || e.amount_minor || e.currency, ','
                  ORDER BY e.entry_id)) FROM ledger_transactions t JOIN ledger_entries e USING (transaction_id)
        WHERE t.transaction_id <= $T0"
  sql "SELECT md5(string_agg(row(s.*)::text, ',' ORDER BY row(s.*)::text)) FROM settlement_payouts s"
  sql "SELECT md5(string_agg(row(d.*)::text, ',' ORDER BY d.processor_dispute_id)) FROM disputes d"
}
T0=$(sql "SELECT max(transaction_id) FROM ledger_transactions")
before=$(snapshot)

# ---- head's migrations, applied while the refund is in flight ---------------------
check "head's migrations apply to the populated, live database" \
  env PAYSTREAM_MIGRATIONS_DIR="$REPO/db/migrations" "$PAYCTL" migrate
eq "the database is at head" "$(basename "$(ls "$REPO"/db/migrations/*.sql | sort | tail -1)")" \
  "$(sql "SELECT max(version) FROM schema_migrations")"
eq "the postings, the payout and the disputes recorded before are unchanged" "$before" "$(snapshot)"
verify "right after the migration"

# ---- the workers carry on at head ---------------------------------------------------
post "/_sim/config?fail_rate=0" >/dev/null
check "the refund in flight across the upgrade ends" wait_until 120 op_done kept-r
resolved() { [ "$(sql "SELECT state FROM refund_failures WHERE operation_id = '$OP'")" != kept ]; }
check "its kept failure is resolved" wait_until 60 resolved
log "kept-r: $(op_col kept-r state) reversed=$(op_col kept-r reversed), failure $(sql "SELECT state FROM refund_failures WHERE operation_id = '$OP'")"
"$PAYCTL" capture m1 auth-held --key cap-h --amount 700 --currency USD >/dev/null
check "the authorization held across the upgrade is captured" wait_until 120 eval '[ "$(op_col cap-h state)" = posted ]'
sale fresh
check "a fresh sale succeeds" wait_until 120 is_status fresh succeeded
refund fresh fresh-r 1000
check "and is refunded in part" wait_until 120 eval '[ "$(op_col fresh-r state)" = posted ]'
check "every stage caught up" wait_until 60 caught_up charge ledger
verify "at head"
check "workers stop cleanly on SIGTERM" "$STACK" stop-workers
check "no sanitizer reports" no_sanitizer_reports
finish
