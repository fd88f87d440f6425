#!/usr/bin/env bash
# Settlement reconciliation by the processor's day, not ours (#20 review 5),
# and the fee of a sale a webhook settled without one — through the real
# chain (charge, ledger, procsim webhooks -> ps-webhook -> ps-events):
#  - a sale and a dispute withdrawal the processor dated 23:59:59.9 of the
#    day before (procsim's backdate_ms) that the ledger posted after that
#    midnight: yesterday's report reconciles clean and posts its payout;
#    today's report does not list them and reconciles clean too; every
#    movement is settled in exactly one payout (settlement_movements), and a
#    report that lists one again is refused;
#  - a sale whose answers are all lost, settled by a charge.succeeded that
#    carries no fee (as a real Stripe event): its fee is unknown, not 0;
#    today's report posts the processor's fee once (expense vs receivable),
#    with no fee_differs; the receivable is zero after both payouts; a
#    report with another fee for it afterwards is fee_differs.
source "$(dirname "$0")/lib.sh"
R=$PAYSTREAM_RUN_DIR
stack_up
start_events_pipeline
SIM="http://127.0.0.1:$(cat "$R/procsim.port")"
WH="http://127.0.0.1:$(cat "$R/webhook/webhook-1.port")/webhooks"
SECRET=$(cat "$R/secrets/webhook-stripe")
post() { curl -sf -X POST "$SIM$1"; }
sale() { "$PAYCTL" sale m1 "$1" --amount "$2" --currency USD --customer "c-$1" >/dev/null; }
balance() { sql "SELECT coalesce(sum(balance), 0) FROM ledger_accounts WHERE name = '$1' AND currency = 'USD'"; }
reconcile() { "$PAYCTL" reconcile --report "$1" --processor stripe > "$R/out.txt" 2>&1; echo $? >> "$R/out.txt"; }
exit_code() { tail -n 1 "$R/out.txt"; }
mismatches() { grep '^MISMATCH' "$R/out.txt"; }
TODAY=$(date -u +%F)
YDAY=$(date -u -d "$TODAY - 1 day" +%F)
MIDNIGHT_MS=$(( $(date -u -d "$TODAY" +%s) * 1000 ))

log "today's sale; then one the processor dates 23:59:59.9 yesterday"
sale today 2000
check "today's sale succeeds" wait_until 120 is_status today succeeded
post "/_sim/config?backdate_ms=$((MIDNIGHT_MS - 100))" >/dev/null
sale late 10000
check "the late sale succeeds" wait_until 120 is_status late succeeded
P=$(pid_of late)
post "/_sim/config?stripe_webhook_url=$WH/stripe&stripe_webhook_secret=$SECRET&webhook_retry_ms=100" >/dev/null
DP=$(post "/_sim/dispute?charge=$(sql "SELECT processor_charge_id FROM payments WHERE payment_id = '$P'")&amount=3000&fee=1500" | jq -r .id)
post "/_sim/dispute?id=$DP&action=funds_withdrawn" >/dev/null
withdrawn() { [ "$(sql "SELECT count(*) FROM ledger_transactions WHERE payment_id = '$P' AND kind LIKE 'dispute\_%'")" = 2 ]; }
check "its withdrawal and fee are posted" wait_until 60 withdrawn
post "/_sim/config?backdate_ms=0" >/dev/null
eq "the ledger posted them after the processor's midnight" "3 3" \
  "$(sql "SELECT count(*), count(*) FILTER (WHERE created_at >= '$TODAY'::timestamp AT TIME ZONE 'UTC')
          FROM ledger_transactions WHERE payment_id = '$P' AND kind NOT LIKE 'dispute_lost%'" | tr '\t' ' ')"

log "a sale settled by a webhook that carries no fee"
post "/_sim/config?webhook_sale_fee=0&drop_next=1&refuse_ms=20000" >/dev/null
sale unknown 2500
U=""
has_pid() { U=$(pid_of unknown); [ -n "$U" ]; }
check "the sale is accepted" wait_until 60 has_pid
check "it succeeds" wait_until 120 is_status unknown succeeded
eq "settled by its webhook" "charge_settled" \
  "$(sql "SELECT f.effect FROM processor_event_effects f JOIN processor_events e USING (processor, event_id)
          WHERE f.payment_id = '$U' AND e.type = 'charge.succeeded'")"
eq "its fee is unknown (NULL), not 0" "t t" \
  "$(sql "SELECT p.fee_minor IS NULL, a.fee_minor IS NULL FROM payments p JOIN charge_attempts a
          USING (payment_id) WHERE p.payment_id = '$U' AND a.state = 'succeeded'" | tr '\t' ' ')"
answers() { curl -sf "$SIM/_sim/totals?payment_id=$U" >/dev/null; }
check "procsim answers again" wait_until 90 answers

log "the reports"
curl -sf "$SIM/_sim/settlement?day=$YDAY&flavour=stripe" > "$R/yday.csv"
curl -sf "$SIM/_sim/settlement?day=$TODAY&flavour=stripe" > "$R/today.csv"
eq "yesterday's report: the late sale and its withdrawal" "charge,$P dispute_withdrawal,$P payout," \
  "$(tail -n +2 "$R/yday.csv" | cut -d, -f1,2 | tr '\n' ' ' | sed 's/ $//')"
check "today's report does not list them" eval "! qgrep ',$P,' '$R/today.csv'"
UFEE=$(awk -F, -v p="$U" '$1 == "charge" && $2 == p { print $5 }' "$R/today.csv")
check "today's report has the webhook-settled sale with its fee" test "${UFEE:-0}" -gt 0

reconcile "$R/yday.csv"
eq "yesterday's report reconciles (exit 0)" 0 "$(exit_code)"
eq "with no mismatch" "" "$(mismatches)"
check "and posts its payout" qgrep "^payout po_${YDAY//-/}_USD: .* posted (ledger transaction" "$R/out.txt"
reconcile "$R/today.csv"
eq "today's report reconciles (exit 0)" 0 "$(exit_code)"
eq "with no mismatch (the late movements are not expected in it; no fee_differs)" "" "$(mismatches)"
check "and posts its payout" qgrep "^payout po_${TODAY//-/}_USD: .* posted (ledger transaction" "$R/out.txt"
check "and the unknown fee from the report" qgrep "^fee of $U: $UFEE, from the settlement report" "$R/out.txt"
log "$(grep -v '^0$' "$R/out.txt" | head -5)"

eq "each of the late movements settled in yesterday's payout" "po_${YDAY//-/}_USD 3" \
  "$(sql "SELECT string_agg(DISTINCT s.payout_id, ','), count(*) FROM settlement_movements s
          JOIN ledger_transactions t USING (transaction_id) WHERE t.payment_id = '$P'" | tr '\t' ' ')"
eq "today's in today's" "po_${TODAY//-/}_USD 3" \
  "$(sql "SELECT string_agg(DISTINCT s.payout_id, ','), count(*) FROM settlement_movements s
          JOIN ledger_transactions t USING (transaction_id) WHERE t.payment_id IN ('$(pid_of today)', '$U')" | tr '\t' ' ')"
eq "the fee posted once: expense against the receivable" \
  "settlement_fee expense:processing_fees D $UFEE
settlement_fee asset:processor_receivable:stripe C $UFEE" \
  "$(sql "SELECT t.kind, a.name, e.direction, e.amount_minor FROM ledger_transactions t
          JOIN ledger_entries e USING (transaction_id) JOIN ledger_accounts a USING (account_id)
          WHERE t.payment_id = '$U' AND t.kind = 'settlement_fee' ORDER BY e.entry_id" | tr '\t' ' ')"
reconcile "$R/today.csv"
eq "today's report again reconciles (exit 0)" 0 "$(exit_code)"
check "the payout already posted" qgrep "already posted" "$R/out.txt"
eq "still one payout per day, one fee" "2 2 1" \
  "$(sql "SELECT (SELECT count(*) FROM settlement_payouts), (SELECT count(*) FROM ledger_transactions WHERE kind = 'payout'),
          (SELECT count(*) FROM ledger_transactions WHERE kind = 'settlement_fee')" | tr '\t' ' ')"
NET=$(awk -F, '$1 == "payout" { s += $4 } END { print s }' "$R/yday.csv" "$R/today.csv")
eq "cash holds both days' payouts" "$NET" "$(balance asset:cash)"
eq "the processor's receivable is back to zero" 0 "$(balance asset:processor_receivable:stripe)"
check "payctl ledger verify is clean" quietly "$PAYCTL" ledger verify

log "what stays a mismatch"
awk -F, -v p="$U" 'BEGIN { OFS = "," } $1 == "charge" && $2 == p { $5 = $5 + 1 } { print }' "$R/today.csv" |
  awk -F, 'BEGIN { OFS = "," } $1 == "payout" { $4 = $4 - 1 } { print }' > "$R/fee.csv"
reconcile "$R/fee.csv"
eq "another fee for the sale whose fee is now known: exit 1" 1 "$(exit_code)"
check "fee_differs" qgrep "^MISMATCH fee_differs: charge $U .*report $((UFEE + 1)), postgres $UFEE" "$R/out.txt"
{ head -n -1 "$R/today.csv"; grep "^charge,$P," "$R/yday.csv"; tail -n 1 "$R/today.csv"; } |
  awk -F, -v p="$P" 'BEGIN { OFS = "," } $1 == "charge" && $2 == p { $7 = "po_'"${TODAY//-/}"'_USD" } { print }' > "$R/again.csv"
reconcile "$R/again.csv"
check "a movement reported again, in another payout: at_processor_not_in_ledger" \
  qgrep "^MISMATCH at_processor_not_in_ledger: charge $P .*already settled in payout po_${YDAY//-/}_USD" "$R/out.txt"
eq "nothing more posted" "2 1" \
  "$(sql "SELECT (SELECT count(*) FROM settlement_payouts), (SELECT count(*) FROM ledger_transactions WHERE kind = 'settlement_fee')" | tr '\t' ' ')"
# the guards: a fee is learned only for a sale whose fee is unknown, and no
# stage role can post a settlement fee outside reconcile (the ledger role may
# insert ledger transactions, but a settlement_fee needs its settlement_fees row)
TP=$(pid_of today)
sql "INSERT INTO settlement_fees (payment_id, processor, fee_minor, transaction_id, payout_id, day)
  SELECT '$TP', 'stripe', 1, transaction_id, 'po_x', '$TODAY' FROM ledger_transactions WHERE payment_id = '$TP'
  AND kind = 'payment'" > "$R/known.txt" 2>&1
check "a settlement fee for a sale with a known fee is refused" \
  qgrep "$TP has no succeeded charge at stripe with an unknown fee" "$R/known.txt"
LEDGER_DSN="${PAYSTREAM_PG_DSN/user=postgres/} user=paystream_ledger"
forge_fee() {
  psql "$LEDGER_DSN" -qAtX -v ON_ERROR_STOP=1 -c "WITH tx AS (INSERT INTO ledger_transactions (payment_id, kind)
    VALUES ('$TP', 'settlement_fee') RETURNING transaction_id)
    INSERT INTO ledger_entries (transaction_id, account_id, currency, direction, amount_minor)
    SELECT tx.transaction_id, a.account_id, 'USD', u.d, 100 FROM tx CROSS JOIN
    (VALUES ('expense:processing_fees', 'D'), ('asset:processor_receivable:stripe', 'C')) AS u(n, d)
    JOIN ledger_accounts a ON a.name = u.n AND a.currency = 'USD'" > "$R/forged.txt" 2>&1
}
check "the ledger role cannot post a settlement fee of its own" eval '! forge_fee'
check "refused for the missing settlement_fees row" qgrep "without its settlement_fees row" "$R/forged.txt"
KINDS=$(sql "SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conname = 'ledger_transactions_kind_check'")
check "settlement_fee is a ledger kind of no dispute" qgrep "dispute_id IS NULL.*'settlement_fee'.*dispute_id IS NOT NULL" <<<"$KINDS"
check "and payout is no longer in the dispute-kind list (026's replace)" \
  eval "! qgrep \"dispute_id IS NOT NULL.*'payout'\" <<<\"\$KINDS\""
check "no sanitizer reports" no_sanitizer_reports
finish
