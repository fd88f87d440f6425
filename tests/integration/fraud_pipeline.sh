#!/usr/bin/env bash
# The model in the live pipeline: a fresh fraudgen data set (another seed
# than the committed model's) is published through the real workers, and
# fraud's decisions, made from the history the stage builds in Redis as the
# payments flow, are compared with the data set's labels: most fraud is
# held or blocked, almost no legitimate payment is. No train/serve skew
# would show here as a collapse of one or the other.
source "$(dirname "$0")/lib.sh"
R=$PAYSTREAM_RUN_DIR
"$BUILD/fraudgen" --customers 300 --days 10 --seed 11 >"$R/data.jsonl"
n=$(wc -l <"$R/data.jsonl")
stack_up
"$STACK" workers 1
check "payctl publish --json publishes the data set ($n intents)" quietly "$PAYCTL" publish --json "$R/data.jsonl" --run fp
assessed() { [ "$(sql "SELECT count(*) FROM fraud_assessments")" -ge "$n" ]; }
check "every payment is assessed" wait_until 180 assessed
jq -r '[("fp-" + .intent.idempotency_key), .label, .pattern] | @tsv' "$R/data.jsonl" | sort >"$R/labels"
sql "SELECT p.idempotency_key, a.decision FROM payments p JOIN fraud_assessments a USING (payment_id)" | sort >"$R/decisions"
join -t $'\t' "$R/labels" "$R/decisions" >"$R/joined"
eq "every labelled payment has a decision" "$n" "$(wc -l <"$R/joined")"
read -r fraud caught legit flagged < <(awk -F'\t' '
  $2 == 1 { f++; if ($4 != "allow") c++ }
  $2 == 0 { l++; if ($4 != "allow") g++ }
  END { print f + 0, c + 0, l + 0, g + 0 }' "$R/joined")
log "fraud held or blocked: $caught of $fraud; legitimate held or blocked: $flagged of $legit"
check "at least 80 % of the fraud is held or blocked ($caught of $fraud)" test $((caught * 100)) -ge $((fraud * 80))
check "at most 2 % of legitimate payments are held or blocked ($flagged of $legit)" test $((flagged * 100)) -le $((legit * 2))
ct=$(awk -F'\t' '$3 == "card_testing"' "$R/joined" | wc -l)
ct_allowed=$(awk -F'\t' '$3 == "card_testing" && $4 == "allow"' "$R/joined" | wc -l)
check "card testing is stopped: at most 10 % of its payments allowed ($ct_allowed of $ct)" test $((ct_allowed * 10)) -le "$ct"
check "workers stop cleanly on SIGTERM" "$STACK" stop-workers
check "payctl ledger verify passes" quietly "$PAYCTL" ledger verify
check "no sanitizer reports" no_sanitizer_reports
finish
