#!/usr/bin/env bash
# The model in the live pipeline, on patterns it never trained on: the
# committed model was trained on fraudgen; a scenariogen data set (the
# independent generator: BIN enumeration, card testing then cash-out,
# stolen cards on fresh methods, account takeover with impossible travel,
# velocity abuse from a new device, triangulation; travellers, households,
# guests, salary days …) is published through the real workers, and
# fraud's decisions, made from the history the stage builds in Redis as the
# payments flow, are compared with the labels — per pattern, against the
# issue 21 targets, and payment by payment against fraud-train's offline
# evaluation of the same model on the same data (one feature code path:
# any train/serve skew shows as payments whose decision or model
# probability differ). Held and blocked payments name
# the model features that drove them.
source "$(dirname "$0")/lib.sh"
R=$PAYSTREAM_RUN_DIR
"$BUILD/scenariogen" --people 500 --days 14 --seed 11 >"$R/data.jsonl"
n=$(wc -l <"$R/data.jsonl")
check "scenariogen is deterministic for a seed" sh -c "'$BUILD/scenariogen' --people 500 --days 14 --seed 11 | cmp -s - '$R/data.jsonl'"
# 14 of its 15 patterns: no salary day (the 15th, the 25th) falls in two weeks from the 1st
check "and writes 14 patterns" sh -c "[ \$(jq -r .pattern '$R/data.jsonl' | sort -u | wc -l) -eq 14 ]"
# Offline: fraud-train's evaluation, and its decision and model probability
# for every payment (rows in the data set's order).
check "fraud-train evaluates the committed model on the data set offline" quietly env \
  FRAUD_TRAIN_DUMP="$R/offline.tsv" "$BUILD/fraud-train" --model "$REPO/models/fraud-model.json" \
  --eval "$R/data.jsonl" --report "$R/offline.md"
offline=$(grep -oE 'Fraud held or blocked: \*\*[0-9.]+' "$R/offline.md" | grep -oE '[0-9.]+$')
jq -r '"fp-" + .intent.idempotency_key' "$R/data.jsonl" |
  paste - <(cut -f3,4 "$R/offline.tsv" | awk -F'\t' 'BEGIN { split("allow review block", d, " ") }
    { print d[$1 + 1] "\t" $2 }') | sort >"$R/offline.dec"
stack_up
"$STACK" workers 1
# Published lot by lot, each lot assessed before the next, as traffic that
# arrives over time. Within a lot the pipeline delivers payments across
# partitions and batches in any order, so a lot never holds two payments
# that share a history (the merchant's customer, the card, the merchant's
# device): a payment's lot is one after the latest lot of the earlier
# payments it shares one with. Every payment is then scored after the
# payments before it in its histories, as fraud-train replays them, and
# live must equal offline payment by payment. (Lots of 100 consecutive
# payments let a takeover be scored before the owner's payment minutes
# earlier: 93.8-95.1 % live against 96.9 % offline.)
jq -r '[.intent.merchant_id + "/" + .intent.customer_id, .intent.payment_method.fingerprint // "",
        .intent.merchant_id + "/" + (.intent.context.device_id // "")] | @tsv' "$R/data.jsonl" |
  awk -F'\t' '{ k[1] = "c" $1; k[2] = $2 == "" ? "" : "f" $2; k[3] = $3 ~ /\/$/ ? "" : "d" $3; l = 0
    for (i = 1; i <= 3; i++) if (k[i] != "" && last[k[i]] > l) l = last[k[i]]
    l++; for (i = 1; i <= 3; i++) if (k[i] != "") last[k[i]] = l; print l }' |
  paste -d ' ' - "$R/data.jsonl" | awk -v R="$R" '{ f = sprintf("%s/lot.%03d", R, $1); sub(/^[0-9]+ /, ""); print >f }'
assessed() { [ "$(sql "SELECT count(*) FROM fraud_assessments")" -ge "$1" ]; }
done_n=0 ok=0
for lot in $(ls "$R"/lot.* | sort); do
  "$PAYCTL" publish --json "$lot" --run fp >/dev/null || break
  done_n=$((done_n + $(wc -l <"$lot")))
  wait_until 300 assessed "$done_n" || break # the first lot holds ~800 payments
  ok=$done_n
done
log "published in $(ls "$R"/lot.* | wc -l) lots"
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
# large one's is 96.1 % (bench/fraud-model.md). Live equals offline (below)
# and the data set is fixed by its seed, so the targets are asserted as set.
check "at least 95 % of the fraud is held or blocked ($caught of $fraud)" test $((caught * 100)) -ge $((fraud * 95))
check "at most 0.5 % of legitimate payments are blocked ($blocked of $legit)" test $((blocked * 1000)) -le $((legit * 5))
check "at most 2 % of legitimate payments are held for review ($held of $legit)" test $((held * 100)) -le $((legit * 2))
# One feature code path, one history per payment: any gap is a feature
# served differently (or a payment scored before its history).
sql "SELECT p.idempotency_key, a.decision, CASE WHEN a.model_version = 'skipped' THEN '-' ELSE a.ml_score::text END
     FROM payments p JOIN fraud_assessments a USING (payment_id)" | sort >"$R/live.dec"
join -t $'\t' "$R/offline.dec" "$R/live.dec" >"$R/both"
awk -F'\t' '$2 != $4 || ($5 != "-" && ($3 - $5 > 0.0015 || $5 - $3 > 0.0015))' "$R/both" >"$R/differ"
check "every payment's live decision and model probability are fraud-train's offline ones ($(wc -l <"$R/differ") of $(wc -l <"$R/both") differ; live $live %, offline $offline %)" \
  sh -c "[ $(wc -l <"$R/both") -eq $n ] && [ ! -s '$R/differ' ]"
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
check "payctl review show lists the model features of $ex ($feat)" qgrep -E "^model: +([a-z0-9_]+, )*$feat(,|\$)" "$R/show.txt"
check "and the rules apart, without model features" sh -c "grep -E '^rules: ' '$R/show.txt' | grep -vq 'model:'"
check "workers stop cleanly on SIGTERM" "$STACK" stop-workers
check "payctl ledger verify passes" quietly "$PAYCTL" ledger verify
check "no sanitizer reports" no_sanitizer_reports
finish
