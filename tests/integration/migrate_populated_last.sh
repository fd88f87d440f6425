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
# Head's ps-events calls a function only head's schema has (035), so at
# 034 the processor's webhooks are caught as they are sent and applied the
# way 034's ps-events applied them (apply_hooks); head's receiver and events
# stage start once head's migrations are in. No stage's readiness is waited
# on before the migration: every head binary reports the older schema.
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
"$STACK" workers 1
SIM=$PAYSTREAM_PROCESSOR_URL
SECRET=$(cat "$R/secrets/webhook-stripe")

# The processor's webhooks while the database is at 034: a listener answers
# 200 and keeps each body (procsim sends compact JSON, one per delivery, in
# order); its pid file makes the stack stop it with the workers.
HOOKS=$R/hooks.jsonl
: >"$HOOKS"
echo 0 >"$R/hooks.applied"
python3 -c '
import http.server, os, sys
out = open(sys.argv[1], "ab", buffering=0)
class H(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        out.write(body.replace(b"\n", b" ") + b"\n")
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()
    def log_message(self, *a):
        pass
srv = http.server.HTTPServer(("127.0.0.1", 0), H)
with open(sys.argv[2] + ".tmp", "w") as f:
    f.write(str(srv.server_address[1]))
os.rename(sys.argv[2] + ".tmp", sys.argv[2])
srv.serve_forever()
' "$HOOKS" "$R/hooks.port" </dev/null >>"$R/logs/hooks.log" 2>&1 &
echo $! >"$R/pids/hooks-capture.pid"
check "the webhook listener for 034 listens" wait_until 30 test -s "$R/hooks.port"

# What 034's ps-events did with one event, as the events role
# (services/events/events.c, event_map.c, apply.c at the 034 release): the
# receiver's fields of a Stripe event (services/webhook/normalise.c), its
# processor_events row, then 028's ps_apply_processor_event with the action,
# dispute status, fee and refund operation the event maps to.
EV_DSN=${PAYSTREAM_PG_DSN/user=postgres/user=paystream_events}
hook_fields() {
  jq -r 'def s(x): if (x | type) == "string" then x else "" end;
    def fee(o): if (o.fee | type) == "number" and o.fee >= 0 then o.fee
                elif (o.fee_minor | type) == "number" and o.fee_minor >= 0 then o.fee_minor else "" end;
    . as $r | .data.object as $o | s($o.object) as $k | s(.type) as $t | s($o.status) as $st
    | (if $k == "payment_intent" then s($o.id) else s($o.payment_intent) end) as $pi
    | (if $k == "charge" then s($o.id) elif $k == "payment_intent" then s($o.latest_charge)
       else s($o.charge) end) as $ch
    | (if $t == "charge.succeeded" and $pi == "" then ["charge_succeeded", "", fee($o), ""]
       elif $t == "charge.failed" and $pi == "" then ["charge_failed", "", "", ""]
       elif ($t == "refund.updated" or $t == "refund.failed" or $t == "charge.refund.updated")
            and $st == "failed" then ["refund_failed", "", "", s($o.metadata.refund_id)]
       elif ($t == "refund.updated" or $t == "refund.created" or $t == "charge.refund.updated")
            and $st == "succeeded" then ["refund_succeeded", "", "", s($o.metadata.refund_id)]
       elif ($t | startswith("charge.dispute.")) then
         ({"charge.dispute.created": "open", "charge.dispute.funds_withdrawn": "withdrawn",
           "charge.dispute.funds_reinstated": "reinstated"}[$t]
          // (if $t == "charge.dispute.closed" and ($st == "won" or $st == "lost") then $st else null end)) as $ds
         | if $ds then ["dispute", $ds, fee($o), ""] else ["none", "", "", ""] end
       else ["none", "", "", ""] end) as $m
    | s($r.id), $t, s($o.metadata.payment_id), s($o.id), $k, $ch, $pi, $st,
      (if ($o.amount | type) == "number" then $o.amount else "" end | tostring),
      (if ($o.amount | type) == "number" then s($o.currency) | ascii_upcase else "" end),
      (if ($r.created | type) == "number" and $r.created > 0 then $r.created * 1000 else 0 end | tostring),
      $m[0], $m[1], ($m[2] | tostring), $m[3]'
}
apply_hook() {
  local line=$1 n=$2 f
  mapfile -t f < <(hook_fields <<<"$line")
  [ "${#f[@]}" = 15 ] || { echo "event $n: unreadable" >&2; return 1; }
  # The receiver refuses an event without id, type or payment: never applied.
  [ -n "${f[0]}" ] && [ -n "${f[1]}" ] && [ -n "${f[2]}" ] || return 0
  # A declined sale needs the outcome 034's ps-events built in C: none here.
  [ "${f[11]}" != charge_failed ] || { echo "event $n: a declined sale" >&2; return 1; }
  psql "$EV_DSN" -qAtX -F ' ' -v ON_ERROR_STOP=1 -v proc=stripe -v evid="${f[0]}" -v type="${f[1]}" \
    -v pid="${f[2]}" -v oid="${f[3]}" -v otype="${f[4]}" -v ch="${f[5]}" -v pi="${f[6]}" -v st="${f[7]}" \
    -v amt="${f[8]}" -v cur="${f[9]}" -v occ="${f[10]}" -v recv="$(date +%s%3N)" \
    -v body="$(printf '%s' "$line" | xxd -p | tr -d '\n')" -v off="$n" \
    -v action="${f[11]}" -v ds="${f[12]}" -v fee="${f[13]}" -v op="${f[14]}" -f - <<'SQL'
BEGIN;
INSERT INTO processor_events (processor, event_id, flavour, type, payment_id, object_id,
  object_type, charge_id, payment_intent_id, status, amount_minor, currency, occurred_at,
  received_at, raw_body, kafka_partition, kafka_offset)
VALUES (:'proc', :'evid', 'stripe', :'type', :'pid', :'oid', :'otype', :'ch', :'pi', :'st',
  NULLIF(:'amt', '')::bigint, NULLIF(:'cur', ''),
  CASE WHEN :'occ'::bigint > 0 THEN to_timestamp(:'occ'::bigint / 1000.0) END,
  to_timestamp(:'recv'::bigint / 1000.0), decode(:'body', 'hex'), 0, :'off'::bigint)
ON CONFLICT (processor, event_id) DO NOTHING;
SELECT :'evid', :'type', effect, note FROM ps_apply_processor_event(:'proc', :'evid', :'action',
  :'ds', NULLIF(:'fee', '')::bigint, NULL, '', :'op');
COMMIT;
SQL
}
# apply_hooks: every event delivered so far and not yet applied, in order.
apply_hooks() {
  local done total line
  done=$(cat "$R/hooks.applied") total=$(wc -l <"$HOOKS")
  while [ "$done" -lt "$total" ]; do
    line=$(sed -n "$((done + 1))p" "$HOOKS")
    apply_hook "$line" "$((done + 1))" >>"$R/hooks.applied.log" 2>&1 || return 1
    done=$((done + 1))
    echo "$done" >"$R/hooks.applied"
  done
}
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
CAUGHT="http://127.0.0.1:$(cat "$R/hooks.port")/stripe"
post "/_sim/config?stripe_webhook_url=$CAUGHT&stripe_webhook_secret=$SECRET&webhook_retry_ms=100" >/dev/null
P=$(pid_of lost)
DP=$(post "/_sim/dispute?charge=$(charge_of "$P")&amount=4000&fee=1500" | jq -r .id)
post "/_sim/dispute?id=$DP&action=funds_withdrawn" >/dev/null
post "/_sim/dispute?id=$DP&action=lost" >/dev/null
check "a dispute ends lost" wait_until 60 eval 'apply_hooks && dispute_is "$DP" lost'
eq "the dispute: withdrawn seen, 4000 held, fee 1500" "t 4000 1500" \
  "$(sql "SELECT seen_withdrawn, held_minor, fee_minor FROM disputes WHERE processor_dispute_id = '$DP'" | tr '\t' ' ')"
eq "DESIGN's postings for a lost dispute, each once" \
  "dispute_withdrawal asset:disputed_funds D 4000
dispute_withdrawal asset:processor_receivable:stripe C 4000
dispute_fee expense:chargebacks D 1500
dispute_fee asset:processor_receivable:stripe C 1500
dispute_lost expense:chargebacks D 4000
dispute_lost asset:disputed_funds C 4000" \
  "$(sql "SELECT split_part(t.kind, ':', 1), a.name, e.direction, e.amount_minor FROM ledger_transactions t
          JOIN ledger_entries e USING (transaction_id) JOIN ledger_accounts a USING (account_id)
         WHERE t.payment_id = '$P' AND t.kind LIKE 'dispute%' ORDER BY t.transaction_id, e.entry_id" | tr '\t' ' ')"
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
check "the failure is kept, the refund still processing" wait_until 60 eval 'apply_hooks && kept'
eq "the refund has no answer yet" processing "$(op_col kept-r state)"
# The events 034 applied: the dispute's three and the late failure (the
# refund's success was lost), none forwarded on to the ledger (034's
# ps-events forwarded only a settled charge or refund; the dispute's
# postings are the function's own). The listener stops.
check "every event caught at 034 is applied" apply_hooks
eq "the events applied at 034: the dispute's three, the refund's failure" \
  "charge.dispute.closed dispute
charge.dispute.created dispute
charge.dispute.funds_withdrawn dispute
refund.updated refund_failure_kept" \
  "$(sql "SELECT e.type, f.effect FROM processor_events e
          LEFT JOIN processor_event_effects f USING (processor, event_id) ORDER BY 1, 2" | tr '\t' ' ')"
CAP=$(cat "$R/pids/hooks-capture.pid")
kill "$CAP" && wait "$CAP" 2>/dev/null
rm -f "$R/pids/hooks-capture.pid"
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
"$STACK" start-worker webhook 1
"$STACK" start-worker events 1
check "the receiver is ready" wait_until 60 ready webhook 1
check "the events stage is ready at head" wait_until 60 ready events 1
WH="http://127.0.0.1:$(cat "$R/webhook/webhook-1.port")/webhooks"
post "/_sim/config?stripe_webhook_url=$WH/stripe&stripe_webhook_secret=$SECRET" >/dev/null
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
