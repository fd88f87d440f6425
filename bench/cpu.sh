#!/usr/bin/env bash
# bench/cpu.sh: where the CPU goes at maximum load. Runs `payctl load`
# (as fast as possible, processor latency 0) through one instance per stage
# and reports, per process, the CPU seconds it used during the run and its
# share, plus CPU microseconds per payment — the budget to cut from to
# raise end-to-end throughput on this 2-core machine.
# usage: bench/cpu.sh [build-dir] [payments]
# (WORKER_KAFKA_PROPERTIES: the workers' librdkafka settings, default none: lib/kafka.c's fetch.wait.max.ms=100;
#  CPU_SQL: an SQL statement run first, an experiment to compare)
source "$(dirname "$0")/lib.sh" "${1:-}"
N=${2:-30000}
# pg_stat_statements: which statements the Postgres time goes to.
export PAYSTREAM_PG_OPTIONS=${PAYSTREAM_PG_OPTIONS:-"-c shared_preload_libraries=pg_stat_statements -c pg_stat_statements.track=all"}
new_stack
sql "CREATE EXTENSION IF NOT EXISTS pg_stat_statements" >/dev/null
[ -n "${CPU_SQL:-}" ] && sql "$CPU_SQL" >/dev/null  # an experiment: e.g. a setting to compare
for s in ingest fraud charge ledger; do
  env PAYSTREAM_LOG_LEVEL=warn PAYSTREAM_KAFKA_PROPERTIES="${WORKER_KAFKA_PROPERTIES:-}" "$STACK" start-worker "$s" 1
done
for s in ingest fraud charge ledger; do wait_ready "$s" 1; done
"$PAYCTL" load --run warm --count 1000 >/dev/null 2>&1 || true

# CPU ticks (user + system, 1/100 s) of every process by name, from
# /proc: a Postgres backend counts under its role, other Postgres
# processes (WAL writer, checkpointer, ...) as "postgres (server)", the
# Kafka broker's JVM as "kafka broker (JVM)". Only this run's stack, not
# another on the same machine: its postmaster and the postmaster's children,
# its Redis (Postgres and Redis overwrite their environment with their
# process titles), and the processes whose environment has its
# PAYSTREAM_RUN_DIR (the workers, procsim and the broker inherit it).
snapshot() {
  local f pid name args t pm rd ppid
  pm=$(head -n1 "$(cat "$PAYSTREAM_RUN_DIR/pgdata")/data/postmaster.pid")
  rd=$(cat "$PAYSTREAM_RUN_DIR/redis.pid")
  for f in /proc/[0-9]*/stat; do
    pid=${f#/proc/}; pid=${pid%/stat}
    { read -r -a st <"$f"; } 2>/dev/null || continue  # it may have exited
    ppid=$(sed 's/^.*) //' "$f" 2>/dev/null | cut -d' ' -f2) || continue
    [ "$pid" = "$pm" ] || [ "$ppid" = "$pm" ] || [ "$pid" = "$rd" ] ||
      { tr '\0' '\n' <"/proc/$pid/environ"; } 2>/dev/null | grep -cxF "PAYSTREAM_RUN_DIR=$PAYSTREAM_RUN_DIR" >/dev/null || continue
    args=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) || continue
    case "$args" in
      *" kafka.Kafka "*) name="kafka broker (JVM)" ;;
      postgres:\ paystream_*|postgres:\ postgres\ *) name="postgres backend ${args#postgres: }"; name=${name%% paystream *} ;;
      postgres:*|*/postgres\ *) name="postgres (server)" ;;
      *ps-ingest*|*ps-fraud*|*ps-charge*|*ps-ledger*|*procsim*|*redis-server*|*payctl*)
        name=$(basename "${args%% *}") ;;
      *) continue ;;
    esac
    # fields after "(comm)": utime is the 14th field, stime the 15th
    t=$(sed 's/^.*) //' "$f" | awk '{ print $12 + $13 }')
    printf '%s\t%s\t%s\n' "$name" "$pid" "$t"
  done | awk -F'\t' '{ cpu[$1] += $3 } END { for (n in cpu) printf "%s\t%d\n", n, cpu[n] }' | sort
}
# The broker JVM's CPU by thread (Java names its native threads: request
# handlers, network processors, JIT compilers, GC ...), numbers stripped so
# that a pool counts as one line.
jvm_threads() {
  local pid="" p f t name
  for f in /proc/[0-9]*/cmdline; do
    p=${f#/proc/}; p=${p%/cmdline}
    { tr '\0' ' ' <"$f" | grep -c " kafka.Kafka " >/dev/null; } 2>/dev/null || continue
    { tr '\0' '\n' <"/proc/$p/environ" | grep -cxF "PAYSTREAM_RUN_DIR=$PAYSTREAM_RUN_DIR" >/dev/null; } 2>/dev/null || continue
    pid=$p && break
  done
  [ -n "$pid" ] || return 0
  for t in /proc/"$pid"/task/*; do
    name=$(tr -d '0-9' <"$t/comm" 2>/dev/null | sed 's/[-_ ]*$//') || continue
    printf '%s\t%s\n' "$name" "$(sed 's/^.*) //' "$t/stat" 2>/dev/null | awk '{ print $12 + $13 }')"
  done | awk -F'\t' '{ cpu[$1] += $2 } END { for (n in cpu) printf "%s\t%d\n", n, cpu[n] }' | sort
}
snapshot >"$PAYSTREAM_RUN_DIR/cpu0"
jvm_threads >"$PAYSTREAM_RUN_DIR/jvm0"
sql "SELECT pg_stat_statements_reset()" >/dev/null
t0=$(now_ms)
TIMEFORMAT='%U %S'
{ time "$PAYCTL" load --run cpu --count "$N" --json "$PAYSTREAM_RUN_DIR/load.json" >/dev/null 2>&1; } \
  2>"$PAYSTREAM_RUN_DIR/load.time"
t1=$(now_ms)
snapshot >"$PAYSTREAM_RUN_DIR/cpu1"
jvm_threads >"$PAYSTREAM_RUN_DIR/jvm1"
# The load generator ran and exited between the snapshots: its own times.
printf 'payctl load (generator)\t0\n' >>"$PAYSTREAM_RUN_DIR/cpu0"
printf 'payctl load (generator)\t%.0f\n' "$(awk '{ print ($1 + $2) * 100 }' "$PAYSTREAM_RUN_DIR/load.time")" >>"$PAYSTREAM_RUN_DIR/cpu1"
sort -o "$PAYSTREAM_RUN_DIR/cpu0" "$PAYSTREAM_RUN_DIR/cpu0"
sort -o "$PAYSTREAM_RUN_DIR/cpu1" "$PAYSTREAM_RUN_DIR/cpu1"
secs=$(echo "($t1 - $t0) / 1000" | bc -l)
printf '%d payments in %.1f s (%.0f/s); CPU seconds by process during the run:\n\n' "$N" "$secs" \
  "$(jq -r .throughput "$PAYSTREAM_RUN_DIR/load.json")"
echo "| process | CPU s | share of 2 cores | CPU µs per payment |"
echo "|---|---|---|---|"
join -t $'\t' -a 2 -e 0 -o 0,1.2,2.2 "$PAYSTREAM_RUN_DIR/cpu0" "$PAYSTREAM_RUN_DIR/cpu1" |
  awk -F'\t' -v s="$secs" -v n="$N" '{ d = ($3 - $2) / 100; if (d > 0) printf "| %s | %.1f | %.0f %% | %.0f |\n", $1, d, 100 * d / (2 * s), d * 1e6 / n }' |
  sort -t'|' -k3 -rn

echo
echo "The broker JVM's CPU by thread (pools summed):"
echo
echo "| JVM thread | CPU s | CPU µs per payment |"
echo "|---|---|---|"
join -t $'\t' -a 2 -e 0 -o 0,1.2,2.2 "$PAYSTREAM_RUN_DIR/jvm0" "$PAYSTREAM_RUN_DIR/jvm1" |
  awk -F'\t' -v n="$N" '{ d = ($3 - $2) / 100; if (d >= 0.05) printf "| %s | %.1f | %.0f |\n", $1, d, d * 1e6 / n }' |
  sort -t'|' -k3 -rn

echo
echo "Postgres statements by total execution time during the run (pg_stat_statements):"
echo
echo "| role | statement | calls | rows | total ms | µs per payment |"
echo "|---|---|---|---|---|---|"
psql "$PAYSTREAM_PG_DSN" -qAtX -F '|' -c "SELECT r.rolname, left(regexp_replace(s.query, '\s+', ' ', 'g'), 90),
    s.calls, s.rows, round(s.total_exec_time::numeric, 0), round((s.total_exec_time * 1000 / $N)::numeric, 1)
  FROM pg_stat_statements s JOIN pg_roles r ON r.oid = s.userid
  WHERE s.total_exec_time * 1000 / $N >= 2 ORDER BY s.total_exec_time DESC LIMIT 20" |
  sed 's/^/| /; s/$/ |/; s/|/ | /g; s/  */ /g'
