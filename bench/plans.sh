#!/usr/bin/env bash
# bench/plans.sh: which pipeline statements scan a whole table. Populates a
# fresh stack with POP payments (the lifecycle mix: sales, authorizations
# captured or voided, partial refunds), then measures a further RUN
# payments: per table, sequential scans and the rows they read during the
# measured run (a batch-sized statement that reads the whole table shows as
# rows read far beyond the payments processed), the statements by time
# (pg_stat_statements, calls and mean ms per call) and, from auto_explain,
# every statement — trigger statements included — whose plan has a Seq Scan
# on a large table.
# usage: bench/plans.sh [build-dir] [populate-payments] [measured-payments]
source "$(dirname "$0")/lib.sh" "${1:-}"
POP=${2:-50000}
RUN=${3:-5000}
export PAYSTREAM_PROCSIM_LATENCY_MS=0
MIX="--mix sale=60,authcap=25,refund=10,void=5"
export PAYSTREAM_PG_OPTIONS="-c shared_preload_libraries=pg_stat_statements,auto_explain -c pg_stat_statements.track=all -c auto_explain.log_min_duration=0 -c auto_explain.log_nested_statements=on -c auto_explain.log_format=text"
new_stack
sql "CREATE EXTENSION IF NOT EXISTS pg_stat_statements" >/dev/null
# auto_explain logs nothing until the measured run (ALTER SYSTEM + reload).
sql "ALTER SYSTEM SET auto_explain.log_min_duration = -1" >/dev/null
sql "SELECT pg_reload_conf()" >/dev/null
for s in ingest fraud charge ledger; do
  env PAYSTREAM_LOG_LEVEL=warn PAYSTREAM_KAFKA_PROPERTIES="${WORKER_KAFKA_PROPERTIES:-}" "$STACK" start-worker "$s" 1
done
for s in ingest fraud charge ledger; do wait_ready "$s" 1; done
# shellcheck disable=SC2086
"$PAYCTL" load --run pop --count "$POP" $MIX --timeout 900 >/dev/null 2>&1 || true
sql "ANALYZE" >/dev/null
echo "populated: $(sql "SELECT count(*) FROM payments") payments, $(sql "SELECT count(*) FROM payment_operations") operations, $(sql "SELECT count(*) FROM ledger_transactions") ledger transactions"
snap() {
  # the cumulative statistics are flushed at most once a second
  sleep 1.5
  psql "$PAYSTREAM_PG_DSN" -qAtX -F $'\t' -c "SELECT relname, coalesce(seq_scan, 0), coalesce(seq_tup_read, 0),
    coalesce(idx_scan, 0) FROM pg_stat_user_tables ORDER BY relname"
}
snap >"$PAYSTREAM_RUN_DIR/tables0"
sql "SELECT pg_stat_statements_reset()" >/dev/null
pglog=$(cat "$PAYSTREAM_RUN_DIR/pgdata")/postgres.log
mark=$(wc -l <"$pglog")
sql "ALTER SYSTEM SET auto_explain.log_min_duration = 0" >/dev/null
sql "SELECT pg_reload_conf()" >/dev/null
# shellcheck disable=SC2086
"$PAYCTL" load --run measured --count "$RUN" $MIX --timeout 600 --json "$PAYSTREAM_RUN_DIR/load.json" >/dev/null 2>&1 || true
sql "ALTER SYSTEM SET auto_explain.log_min_duration = -1" >/dev/null
sql "SELECT pg_reload_conf()" >/dev/null
snap >"$PAYSTREAM_RUN_DIR/tables1"
echo "measured: $RUN payments (+ their operations), $(jq .throughput "$PAYSTREAM_RUN_DIR/load.json")/s, load avg $(cut -d' ' -f1 /proc/loadavg)"
echo
echo "| table | seq scans | rows read by seq scans | index scans |"
echo "|---|---|---|---|"
join -t $'\t' "$PAYSTREAM_RUN_DIR/tables0" "$PAYSTREAM_RUN_DIR/tables1" |
  awk -F'\t' '{ s = $5 - $2; r = $6 - $3; i = $7 - $4; if (s > 0 || i > 0) printf "| %s | %d | %d | %d |\n", $1, s, r, i }' |
  sort -t'|' -k4 -rn
echo
echo "| role | statement | calls | rows | mean ms | total ms |"
echo "|---|---|---|---|---|---|"
psql "$PAYSTREAM_PG_DSN" -qAtX -F '|' -c "SELECT r.rolname, left(regexp_replace(s.query, '\s+', ' ', 'g'), 110),
    s.calls, s.rows, round(s.mean_exec_time::numeric, 2), round(s.total_exec_time::numeric, 0)
  FROM pg_stat_statements s JOIN pg_roles r ON r.oid = s.userid
  ORDER BY s.total_exec_time DESC LIMIT 30" | sed 's/^/| /; s/$/ |/; s/|/ | /g; s/  */ /g'
echo
echo "Plans with a Seq Scan on a table of more than 1,000 rows (auto_explain, measured run):"
big=$(sql "SELECT string_agg(relname, '|') FROM pg_stat_user_tables WHERE n_live_tup > 1000")
tail -n +"$mark" "$pglog" | awk -v big="$big" '
  /LOG:  duration: .* plan:/ { if (plan != "" && hit) print plan "\n"; plan = $0; hit = 0; next }
  /^\t|^  / { plan = plan "\n" $0; if ($0 ~ ("Seq Scan on (" big ")( |$)")) hit = 1; next }
  { if (plan != "" && hit) print plan "\n"; plan = ""; hit = 0 }
  END { if (plan != "" && hit) print plan }' | { grep -E "Query Text|Seq Scan" || echo "  (none)"; } | sort | uniq -c | sort -rn | head -40
