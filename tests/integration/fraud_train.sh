#!/usr/bin/env bash
# Training to serving: fraudgen writes a labelled data set, fraud-train
# trains on it through the XGBoost C API and reports on a held-out split,
# the fraud worker serves the new model; a model trained on other features
# is refused at start with a message naming the variable and the versions.
source "$(dirname "$0")/lib.sh"
R=$PAYSTREAM_RUN_DIR
check "fraudgen writes a data set" sh -c "'$BUILD/fraudgen' --customers 400 --days 14 --seed 7 >'$R/data.jsonl'"
check "which has every pattern" sh -c "[ \$(jq -r .pattern '$R/data.jsonl' | sort -u | wc -l) -eq 9 ]"
check "and is deterministic for a seed" sh -c "'$BUILD/fraudgen' --customers 400 --days 14 --seed 7 | cmp -s - '$R/data.jsonl'"
check "fraud-train trains and reports" quietly "$BUILD/fraud-train" --data "$R/data.jsonl" --out "$R/model.json" --report "$R/report.md" --rounds 60
auc=$(awk -F'|' '/^\| model alone/ { gsub(/ /, "", $3); print $3 }' "$R/report.md")
check "the held-out ROC-AUC is above 0.9 (got $auc)" sh -c "echo '$auc > 0.9' | bc -l | grep -qx 1"
check "the report gives precision and recall at both thresholds" grep -q 'precision > 0.50 | recall > 0.50 | precision > 0.80 | recall > 0.80' "$R/report.md"
check "the model carries its feature version" grep -q 'paystream-fraud-features-v2' "$R/model.json"
check "a bad rules file stops fraud-train (exit 1, naming the file)" exits_with 1 \
  '^fraud-train: fraud rules: could not open /nonexistent: No such file or directory$' \
  "$BUILD/fraud-train" --data "$R/data.jsonl" --out "$R/x.json" --rules /nonexistent
check "and writes no model" test ! -e "$R/x.json"

stack_up
export PAYSTREAM_FRAUD_MODEL=$R/model.json
"$STACK" workers 1
check "the worker serves the new model" wait_until 60 grep -q "fraud model gbt-d5-r60-s42" "$R/logs/fraud-1.log"
"$PAYCTL" publish --count 50 --run tr >/dev/null
settled() { [ "$(sql "SELECT count(*) FROM payments WHERE outcome IS NOT NULL")" = 50 ]; }
check "a run settles" wait_until 90 settled
eq "scored by the new model" "50" "$(sql "SELECT count(*) FROM fraud_assessments WHERE model_version LIKE 'gbt-d5-r60-s42-n%'")"
check "workers stop" "$STACK" stop-workers

sed 's/paystream-fraud-features-v2/paystream-fraud-features-v0/' "$R/model.json" >"$R/old.json"
rm -f "$R/logs/fraud-9.log"
PAYSTREAM_FRAUD_MODEL=$R/old.json "$STACK" start-worker fraud 9
exited() { ! kill -0 "$(cat "$R/pids/fraud-9.pid")" 2>/dev/null; }
check "a worker given a model of other features exits" wait_until 30 exited
check "with the configuration error's status (2), recorded by the supervisor" wait_until 10 eval '[ "$(exit_status fraud 9)" = 2 ]'
check "naming the variable and both versions" grep -q "PAYSTREAM_FRAUD_MODEL: fraud model .* was trained on features 'paystream-fraud-features-v0', this worker computes 'paystream-fraud-features-v2'" "$R/logs/fraud-9.log"
PAYSTREAM_FRAUD_MODEL=$R/missing.json "$STACK" start-worker fraud 8
exited8() { ! kill -0 "$(cat "$R/pids/fraud-8.pid")" 2>/dev/null; }
check "a worker whose model file is missing exits" wait_until 30 exited8
check "with status 2" wait_until 10 eval '[ "$(exit_status fraud 8)" = 2 ]'
check "naming the file" grep -q "PAYSTREAM_FRAUD_MODEL: could not load fraud model $R/missing.json" "$R/logs/fraud-8.log"
check "no sanitizer reports" no_sanitizer_reports
finish
