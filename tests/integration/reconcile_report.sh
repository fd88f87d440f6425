#!/usr/bin/env bash
# Settlement reconciliation (#20): procsim's daily settlement report for the
# primary processor, matched line by line by `payctl reconcile --report`.
# A clean run (two sales, an authorization captured in two parts, a refund,
# a refund the processor declined) reconciles with no mismatch and posts its
# payout once — run twice, one payout transaction; the books verify; cash
# holds the net and the processor's receivable is back to zero. Each kind of
# mismatch is found, alone, with a non-zero exit and nothing posted: a line
# missing from the report, an amount and a fee changed, a refund the
# processor made that Postgres holds as declined, a payout that is not its
# lines' net, and money moved at the processor outside the pipeline (a
# direct charge). A dispute withdrawal is matched against postings the owner
# writes as DESIGN prescribes (the events stage is not in this stack).
source "$(dirname "$0")/lib.sh"
stack_up
"$STACK" workers 1
SIM=$PAYSTREAM_PROCESSOR_URL
PROC=${PAYSTREAM_PROCESSOR_NAME:-stripe}
T=$PAYSTREAM_RUN_DIR
op_is() { [ "$(sql "SELECT state FROM payment_operations WHERE merchant_id = 'm1' AND idempotency_key = '$1'")" = "$2" ]; }
op_col() { sql "SELECT $2 FROM payment_operations WHERE merchant_id = 'm1' AND idempotency_key = '$1'"; }
payouts() { sql "SELECT count(*) FROM settlement_payouts"; }
payout_txs() { sql "SELECT count(*) FROM ledger_transactions WHERE kind = 'payout'"; }
balance() { sql "SELECT coalesce(sum(balance), 0) FROM ledger_accounts WHERE name = '$1' AND currency = 'USD'"; }
reconcile() { "$PAYCTL" reconcile --report "$1" --processor "$PROC" > "$T/out.txt" 2>&1; echo $? >> "$T/out.txt"; }
# mismatches FILE: the MISMATCH lines of the last run
mismatch_lines() { grep '^MISMATCH' "$T/out.txt"; }
exit_code() { tail -n 1 "$T/out.txt"; }

# doctor IN OUT PYTHON: rewrites the report's rows (a list of lists, header
# first) with PYTHON, then sets each payout line to its lines' net, so only
# the doctored difference remains.
doctor() {
  python3 - "$1" "$2" "$3" <<'EOF'
import csv, sys
rows = list(csv.reader(open(sys.argv[1])))
exec(sys.argv[3])
net = {}
for r in rows[1:]:
    if r[0] != 'payout':
        net[r[6]] = net.get(r[6], 0) + int(r[3]) - int(r[4])
for r in rows[1:]:
    if r[0] == 'payout':
        r[3] = str(net.get(r[6], 0))
csv.writer(open(sys.argv[2], 'w', newline=''), lineterminator='\n').writerows(rows)
EOF
}

# ---- the day's traffic through the pipeline ----------------------------------
"$PAYCTL" sale m1 sale-1 --amount 1000 --currency USD --customer c-r1 >/dev/null
"$PAYCTL" sale m1 sale-2 --amount 2500 --currency USD --customer c-r2 >/dev/null
"$PAYCTL" authorize m1 auth-1 --amount 3000 --currency USD --customer c-r3 >/dev/null
check "the sales succeed" wait_until 120 is_status sale-2 succeeded
check "the authorization is held" wait_until 120 is_status auth-1 authorized
"$PAYCTL" capture m1 auth-1 --key cap-1 --amount 1000 --currency USD >/dev/null
check "the first capture is posted" wait_until 120 op_is cap-1 posted
"$PAYCTL" capture m1 auth-1 --key cap-2 --amount 1500 --currency USD >/dev/null
check "the second capture is posted" wait_until 120 op_is cap-2 posted
check "sale-1 succeeded" is_status sale-1 succeeded
"$PAYCTL" refund m1 sale-1 --key ref-1 --amount 400 --currency USD >/dev/null
check "the refund is posted" wait_until 120 op_is ref-1 posted
sim "refund_decline_next=1"
"$PAYCTL" refund m1 sale-2 --key ref-2 --amount 600 --currency USD >/dev/null
check "the refund the processor declines ends declined" wait_until 120 op_is ref-2 declined

DAY=$(date -u +%F)
curl -sf "$SIM/_sim/settlement?day=$DAY&flavour=stripe" > "$T/clean.csv"
eq "the report has 2 charges, 2 captures, 1 refund and a payout" "charge charge capture capture refund payout" \
  "$(tail -n +2 "$T/clean.csv" | cut -d, -f1 | tr '\n' ' ' | sed 's/ $//')"
NET=$(awk -F, '$1 == "payout" { print $4 }' "$T/clean.csv")
CAP1=$(op_col cap-1 processor_op_id); SALE1=$(pid_of sale-1)

# ---- each kind of mismatch, alone; nothing posted ---------------------------
only() { # only KIND OBJECT: exit 1, exactly one mismatch, of KIND naming OBJECT, nothing posted
  [ "$(exit_code)" = 1 ] && [ "$(mismatch_lines | wc -l)" -eq 1 ] &&
    mismatch_lines | qgrep "^MISMATCH $1: .*$2" && qgrep 'payouts not posted' "$T/out.txt" &&
    [ "$(payouts)" = 0 ] && [ "$(payout_txs)" = 0 ] || { log "$(cat "$T/out.txt")"; return 1; }
}
doctor "$T/clean.csv" "$T/missing.csv" "rows = [r for r in rows if r[2] != '$CAP1']"
reconcile "$T/missing.csv"
check "a capture missing from the report: in_ledger_not_at_processor" only in_ledger_not_at_processor "$CAP1"
doctor "$T/clean.csv" "$T/amount.csv" "[r.__setitem__(3, '1001') for r in rows if r[0] == 'charge' and r[1] == '$SALE1']"
reconcile "$T/amount.csv"
check "a charge's amount changed: amount_differs" only amount_differs "$SALE1"
doctor "$T/clean.csv" "$T/fee.csv" "[r.__setitem__(4, str(int(r[4]) + 1)) for r in rows if r[2] == '$CAP1']"
reconcile "$T/fee.csv"
check "a capture's fee changed: fee_differs" only fee_differs "$CAP1"
REF2=$(op_col ref-2 "coalesce(processor_op_id, 're_declined')"); SALE2=$(pid_of sale-2)
doctor "$T/clean.csv" "$T/status.csv" \
  "rows.insert(len(rows) - 1, ['refund', '$SALE2', '$REF2', '-600', '0', 'USD', rows[-1][6]])"
reconcile "$T/status.csv"
check "a refund the processor made that Postgres holds declined: status_differs" \
  only status_differs "operation declined"
doctor "$T/clean.csv" "$T/twice.csv" \
  "rows.insert(len(rows) - 1, [r for r in rows if r[0] == 'charge' and r[1] == '$SALE1'][0][:2] + ['ch_second'] + [r for r in rows if r[0] == 'charge' and r[1] == '$SALE1'][0][3:])"
reconcile "$T/twice.csv"
check "a payment charged twice at the processor (a second charge object): at_processor_not_in_ledger" \
  only at_processor_not_in_ledger "ch_second: a second charge"
awk -F, 'BEGIN { OFS = "," } $1 == "payout" { $4 = $4 + 1 } { print }' "$T/clean.csv" > "$T/payout.csv"
reconcile "$T/payout.csv"
check "a payout that is not its lines' net: payout_differs" only payout_differs "its lines net $NET"

head -n 3 "$T/clean.csv" > "$T/bad.csv"; echo 'charge,P,ch_x,12x,0,USD,po_x' >> "$T/bad.csv"
check "a malformed report is refused (exit 2) naming its line" \
  exits_with 2 "bad.csv line 4 is not a settlement line" "$PAYCTL" reconcile --report "$T/bad.csv"
check "a missing report: not found (exit 3)" exits_with 3 "No such file" "$PAYCTL" reconcile --report "$T/nope.csv"
check "an impossible day: usage (exit 2)" exits_with 2 "give the report's day" \
  "$PAYCTL" reconcile --report "$T/clean.csv" --day 2026-02-30
eq "nothing posted by any of them" "0 0" "$(payouts) $(payout_txs)"

# ---- the clean report: no mismatch, the payout posted once -----------------------
reconcile "$T/clean.csv"
eq "the clean report reconciles (exit 0)" 0 "$(exit_code)"
check "with no mismatch" qgrep ', 0 mismatches' "$T/out.txt"
check "and posts its payout" qgrep "^payout po_.* posted (ledger transaction" "$T/out.txt"
reconcile "$T/clean.csv"
eq "the same report again reconciles (exit 0)" 0 "$(exit_code)"
check "and says the payout was already posted" qgrep "already posted" "$T/out.txt"
eq "one payout transaction" "1 1" "$(payouts) $(payout_txs)"
check "payctl ledger verify is clean" quietly "$PAYCTL" ledger verify
eq "cash holds the net payout" "$NET" "$(balance asset:cash)"
eq "the processor's receivable is back to zero" 0 "$(balance "asset:processor_receivable:$PROC")"
check "payctl reconcile (charges, captures and refunds) is clean" \
  exits_with 0 "^operations: 3 captures and refunds at the processors" "$PAYCTL" reconcile
check "(2 charges, 5 postings)" exits_with 0 "^reconcile: 2 processor charges, 5 ledger postings, 0 differences" \
  "$PAYCTL" reconcile
# no stage role can post a payout outside reconcile (the ledger role may
# insert ledger transactions and entries, but a payout needs its
# settlement_payouts row)
LEDGER_DSN="${PAYSTREAM_PG_DSN/user=postgres/} user=paystream_ledger"
cat > "$T/forged.sql" <<SQL
WITH tx AS (INSERT INTO ledger_transactions (payment_id, kind) VALUES (NULL, 'payout')
  RETURNING transaction_id)
INSERT INTO ledger_entries (transaction_id, account_id, currency, direction, amount_minor)
SELECT tx.transaction_id, a.account_id, 'USD', u.d, 100 FROM tx CROSS JOIN
  (VALUES ('asset:cash', 'D'), ('asset:processor_receivable:$PROC', 'C')) AS u(n, d)
  JOIN ledger_accounts a ON a.name = u.n AND a.currency = 'USD';
SQL
forge_payout() { psql "$LEDGER_DSN" -qAtX -v ON_ERROR_STOP=1 -f "$T/forged.sql" > "$T/forged.txt" 2>&1; }
check "the ledger role cannot post a payout of its own" eval '! forge_payout'
check "refused for the missing settlement_payouts row" qgrep "without its settlement_payouts row" "$T/forged.txt"
# the same report by two runs at once still posts once (the primary key decides)
"$PAYCTL" reconcile --report "$T/clean.csv" --processor "$PROC" >/dev/null 2>&1 &
"$PAYCTL" reconcile --report "$T/clean.csv" --processor "$PROC" >/dev/null 2>&1
wait
eq "still one payout transaction" "1 1" "$(payouts) $(payout_txs)"

# ---- money moved at the processor outside the pipeline -------------------------
CODE=$(curl -s -o "$T/direct.json" -w '%{http_code}' -X POST -H "Authorization: Bearer $PAYSTREAM_PROCESSOR_API_KEY" \
  -H "Idempotency-Key: direct-1" -H "Content-Type: application/x-www-form-urlencoded" \
  --data-binary 'amount=777&currency=usd&payment_method=pm_card_visa&metadata[payment_id]=pay_direct_1' \
  "$SIM/v1/charges")
eq "a direct charge at procsim succeeds" 200 "$CODE"
curl -sf "$SIM/_sim/settlement?day=$DAY&flavour=stripe" > "$T/direct.csv"
reconcile "$T/direct.csv"
eq "the report with the direct charge fails (exit 1)" 1 "$(exit_code)"
check "the direct charge is at_processor_not_in_ledger" \
  qgrep "^MISMATCH at_processor_not_in_ledger: charge pay_direct_1 .*no such payment" "$T/out.txt"
check "and its payout differs from the one posted" qgrep "^MISMATCH payout_differs: .*already posted $NET" "$T/out.txt"
eq "nothing more posted" "1 1" "$(payouts) $(payout_txs)"
check "payctl reconcile lists the direct charge too" \
  exits_with 1 "charge without a succeeded payment" "$PAYCTL" reconcile
# a refund made at procsim outside the pipeline
CH2=$(sql "SELECT processor_charge_id FROM charge_attempts WHERE payment_id = '$SALE2' AND state = 'succeeded'")
CODE=$(curl -s -o "$T/direct.json" -w '%{http_code}' -X POST -H "Authorization: Bearer $PAYSTREAM_PROCESSOR_API_KEY" \
  -H "Idempotency-Key: direct-2" -H "Content-Type: application/x-www-form-urlencoded" \
  --data-binary "charge=$CH2&amount=100&metadata[payment_id]=$SALE2" "$SIM/v1/refunds")
eq "a direct refund at procsim succeeds" 200 "$CODE"
DRE=$(jq -r .id "$T/direct.json")
check "payctl reconcile lists the direct refund" \
  exits_with 1 "DIFFERENCE operation without a succeeded operation: refund $DRE $SALE2 unknown operation" \
  "$PAYCTL" reconcile
curl -sf "$SIM/_sim/settlement?day=$DAY&flavour=stripe" > "$T/direct2.csv"
reconcile "$T/direct2.csv"
check "and the report lists it at_processor_not_in_ledger" \
  qgrep "^MISMATCH at_processor_not_in_ledger: refund $SALE2 $DRE: no such operation" "$T/out.txt"
# ---- a dispute: matched against the asset:disputed_funds postings -------------
# The events stage (not part of this test's stack) writes them; here the
# owner writes the postings DESIGN's table prescribes for a withdrawal of D
# with fee X (kind 'chargeback'), to check the matching, not the stage.
dispute_lines() { grep "^MISMATCH [a-z_]*: dispute_" "$T/out.txt"; }
CH1=$(sql "SELECT processor_charge_id FROM charge_attempts WHERE payment_id = '$SALE1' AND state = 'succeeded'")
DP=$(curl -sf -X POST "$SIM/_sim/dispute?charge=$CH1&amount=300&fee=1500" | jq -r .id)
curl -sf -X POST "$SIM/_sim/dispute?id=$DP&action=funds_withdrawn" >/dev/null
curl -sf "$SIM/_sim/settlement?day=$DAY&flavour=stripe" > "$T/dispute.csv"
check "the report has the withdrawal with its fee" qgrep "^dispute_withdrawal,$SALE1,$DP,-300,1500," "$T/dispute.csv"
reconcile "$T/dispute.csv"
check "a withdrawal nothing posted is at_processor_not_in_ledger" \
  qgrep "^MISMATCH at_processor_not_in_ledger: dispute_withdrawal $SALE1 $DP: nothing posted" "$T/out.txt"
sql "INSERT INTO ledger_accounts (name, currency, type) VALUES ('asset:disputed_funds', 'USD', 'asset'),
  ('expense:chargebacks', 'USD', 'expense') ON CONFLICT (name, currency) DO NOTHING" >/dev/null
sql "WITH tx AS (INSERT INTO ledger_transactions (payment_id, kind) VALUES ('$SALE1', 'chargeback')
  RETURNING transaction_id) INSERT INTO ledger_entries (transaction_id, account_id, currency, direction,
  amount_minor) SELECT tx.transaction_id, a.account_id, 'USD', u.d, u.amt FROM tx CROSS JOIN (VALUES
  ('asset:disputed_funds', 'D', 300), ('asset:processor_receivable:$PROC', 'C', 300),
  ('expense:chargebacks', 'D', 1500), ('asset:processor_receivable:$PROC', 'C', 1500)) AS u(n, d, amt)
  JOIN ledger_accounts a ON a.name = u.n AND a.currency = 'USD'" >/dev/null
reconcile "$T/dispute.csv"
eq "with its postings the withdrawal matches" "" "$(dispute_lines)"
doctor "$T/dispute.csv" "$T/dispute_fee.csv" "[r.__setitem__(4, '1400') for r in rows if r[2] == '$DP']"
reconcile "$T/dispute_fee.csv"
check "a withdrawal's fee changed: fee_differs" \
  qgrep "^MISMATCH fee_differs: dispute_withdrawal $SALE1 $DP: report 1400, posted 1500" "$T/out.txt"
curl -sf -X POST "$SIM/_sim/dispute?id=$DP&action=funds_reinstated" >/dev/null
curl -sf "$SIM/_sim/settlement?day=$DAY&flavour=stripe" > "$T/reinstated.csv"
reconcile "$T/reinstated.csv"
eq "the reinstatement, not posted, is at_processor_not_in_ledger (and only it)" \
  "MISMATCH at_processor_not_in_ledger: dispute_reinstatement $SALE1 $DP: nothing posted on $DAY" \
  "$(dispute_lines)"
check "payctl ledger verify is still clean" quietly "$PAYCTL" ledger verify
check "no sanitizer reports" no_sanitizer_reports
finish
