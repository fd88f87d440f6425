#!/usr/bin/env bash
# The model in the live pipeline, on patterns it never trained on: the
# committed model was trained on fraudgen; a scenariogen data set (the
# independent generator: BIN enumeration, card testing then cash-out,
# stolen cards on fresh methods, account takeover with impossible travel,
# velocity abuse from a new device, triangulation; travellers, households,
# guests, salary days …) is published through the real workers, and
# fraud's decisions, made from the history the stage builds in Redis as the
# payments flow, are compared with the labels — per pattern, against the
# issue 21 targets with a margin, and against fraud-train's offline
# evaluation of the same model on the same data (one feature code path:
# any train/serve skew shows as a gap). Held and blocked payments name
# the model features that drove them.
source "$(dirname "$0")/lib.sh"
R=$PAYSTREAM_RUN_DIR
"$BUILD/scenariogen" --people 500 --days 14 --seed 11 >"$R/data.jsonl"
n=$(wc -l <"$R/data.jsonl")
check "scenariogen is deterministic for a seed" sh -c "'$BUILD/scenariogen' --people 500 --days 14 --seed 11 | cmp -s - '$R/data.jsonl'"
# 14 of its 15 patterns: no salary day (the 15th, the 25th) falls in two weeks from the 1st
check "and writes 14 patterns" sh -c "[ \$(jq -r .pattern '$R/data.jsonl' | sort -u | wc -l) -eq 14 ]"
check "fraud-train evaluates the committed model on the data set offline" quietly \
  "$BUILD/fraud-train" --model "$REPO/models/fraud-model.json" --eval "$R/data.jsonl" --report "$R/offline.md"
offline=$(grep -oE 'Fraud held or blocked: \*\*[0-9.]+' "$R/offline.md" | grep -oE '[0-9.]+$')
stack_up
"$STACK" workers 1
# Published in time order, 100 intents at a time, each lot assessed before
# the next: traffic arrives over time as in production. Published all at
# once, two weeks of payments cross partitions and batches in any order
# (a backlog is fetched in chunks per partition), and a takeover scored
# before the owner's payment minutes earlier cannot see it.
assessed() { [ "$(sql "SELECT count(*) FROM fraud_assessments")" -ge "$1" ]; }
split -l 100 -d -a 3 "$R/data.jsonl" "$R/lot."
done_n=0 ok=0
for lot in "$R"/lot.*; do
  "$PAYCTL" publish --json "$lot" --run fp >/dev/null || break
  done_n=$((done_n + $(wc -l <"$lot")))
  wait_until 120 assessed "$done_n" || break
  ok=$done_n
done
eq "payctl publish --json publishes the data set lot by lot, every payment assessed" "$n" "$ok"
jq -r '[("fp-" + .intent.idempotency_key), .label, .pattern] | @tsv' "$R/data.jsonl" | sort >"$R/labels"
sql "SELECT p.idempotency_key, a.decision FROM payments p JOIN fraud_assessments a USING (payment_id)" | sort >"$R/decisions"
join -t $'\t' "$R/labels" "$R/decisions" >"$R/joined"
eq "every labelled payment has a decision" "$n" "$(wc -l <"$R/joined")"
awk -F'\t' '{ n[$3] += 1; d[$3, $4] += 1; l[$3] = $2 }
  END { for (p in n) printf "  %-24s label %d: %4d payments, allow %5.1f %%, review %5.1f %%, block %5.1f %%\n",
        p, l[p], n[p], 100 * d[p, "allow"] / n[p], 100 * d[p, "review"] / n[p], 100 * d[p, "block"] / n[p] }' \
  "$R/joined" | sort -k3,3r -k1,1 | tee "$R/patterns"
read -r fraud caught legit blocked held < <(awk -F'\t' '
  $2 == 1 { f++; if ($4 != "allow") c++ }
  $2 == 0 { l++; if ($4 == "block") b++; if ($4 == "review") h++ }
  END { print f + 0, c + 0, l + 0, b + 0, h + 0 }' "$R/joined")
live=$(echo "scale=1; 100 * $caught / $fraud" | bc -l)
log "fraud held or blocked: $caught of $fraud ($live %, offline $offline %); legitimate blocked $blocked, held $held of $legit"
# Issue 21's targets are 95 % / 0.5 % / 2 %. This small data set's figure
# is 96.9 % offline; small sets vary (94-97 % across seeds 11-15) and the
# large one's is 96.1 % (bench/fraud-model.md). Asserted: 93 % (the target
# less a margin for payments that arrive out of order, below), and the
# legitimate bounds as set.
check "at least 93 % of the fraud is held or blocked ($caught of $fraud)" test $((caught * 100)) -ge $((fraud * 93))
check "at most 0.5 % of legitimate payments are blocked ($blocked of $legit)" test $((blocked * 1000)) -le $((legit * 5))
check "at most 2 % of legitimate payments are held for review ($held of $legit)" test $((held * 100)) -le $((legit * 2))
# The run replays ten days in seconds: payments minutes apart in event time
# can reach the stage in either order across partitions and batches (in
# production they arrive minutes apart), so a few see less history live
# than offline. A feature computed differently in serving would show as a
# far larger gap.
check "the live catch rate is within 3 points of fraud-train's offline one ($live vs $offline)" \
  sh -c "echo 'd = $live - $offline; d <= 3 && d >= -3' | bc -l | grep -qx 1"
for p in bin_enumeration card_test_cashout ato_impossible_travel; do
  allowed=$(awk -F'\t' -v p=$p '$3 == p && $4 == "allow"' "$R/joined" | wc -l)
  total=$(awk -F'\t' -v p=$p '$3 == p' "$R/joined" | wc -l)
  # 15 %: a pattern has ~20 payments in this set, one payment is ~5 points
  check "$p is stopped: at most 15 % allowed ($allowed of $total)" test $((allowed * 100)) -le $((total * 15))
done
explained=$(sql "SELECT count(*) FROM fraud_assessments WHERE decision <> 'allow' AND array_to_string(reasons, ',') LIKE '%model:%'")
check "held and blocked payments name the model features that drove them ($explained)" test "$explained" -gt 0
# payctl review show prints them apart from the rules, prefix stripped.
ex=$(sql "SELECT payment_id FROM fraud_assessments WHERE decision <> 'allow' AND array_to_string(reasons, ',') LIKE '%model:%' ORDER BY payment_id LIMIT 1")
feat=$(sql "SELECT substr(r, 7) FROM fraud_assessments, unnest(reasons) r WHERE payment_id = '$ex' AND r LIKE 'model:%' LIMIT 1")
"$PAYCTL" review show "$ex" >"$R/show.txt"
check "payctl review show lists the model features of $ex ($feat)" grep -qE "^model: +([a-z0-9_]+, )*$feat(,|\$)" "$R/show.txt"
check "and the rules apart, without model features" sh -c "grep -E '^rules: ' '$R/show.txt' | grep -vq 'model:'"
check "workers stop cleanly on SIGTERM" "$STACK" stop-workers
check "payctl ledger verify passes" quietly "$PAYCTL" ledger verify
check "no sanitizer reports" no_sanitizer_reports
finish
