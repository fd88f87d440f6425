#!/usr/bin/env bash
# bench/idle.sh: what the Kafka broker spends while the pipeline is idle —
# one instance per stage connected and assigned, no payments — in CPU per
# second of the broker JVM (by thread) and requests per second from each
# client connection (TCP data segments the broker received; librdkafka sends
# one request per segment at these sizes). An idle consumer re-sends its
# fetch every fetch.wait.max.ms (a real broker holds an empty fetch that
# long and answers at once when data arrives), so this is the price of a
# short fetch wait, paid every second whatever the load.
# usage: bench/idle.sh [build-dir] [seconds]   (WORKER_KAFKA_PROPERTIES as in bench/hops.sh, e.g. fetch.wait.max.ms=5)
source "$(dirname "$0")/lib.sh" "${1:-}"
SECS=${2:-20}
new_stack
for s in ingest fraud charge ledger; do
  env PAYSTREAM_LOG_LEVEL=warn PAYSTREAM_KAFKA_PROPERTIES="${WORKER_KAFKA_PROPERTIES:-}" "$STACK" start-worker "$s" 1
done
for s in ingest fraud charge ledger; do wait_ready "$s" 1; done
"$PAYCTL" load --run warm --count 200 >/dev/null 2>&1 || true
sleep 5
port=${PAYSTREAM_KAFKA_BOOTSTRAP##*:}
jvm=""
for f in /proc/[0-9]*/cmdline; do
  p=${f#/proc/}; p=${p%/cmdline}
  { tr '\0' ' ' <"$f" | grep -c " kafka.Kafka " >/dev/null; } 2>/dev/null || continue
  { tr '\0' '\n' <"/proc/$p/environ" | grep -cxF "PAYSTREAM_RUN_DIR=$PAYSTREAM_RUN_DIR" >/dev/null; } 2>/dev/null || continue
  jvm=$p && break
done
threads() { for t in /proc/"$jvm"/task/*; do
    printf '%s\t%s\n' "$(tr -d '0-9' <"$t/comm" 2>/dev/null | sed 's/[-_ ]*$//')" "$(sed 's/^.*) //' "$t/stat" 2>/dev/null | awk '{ print $12 + $13 }')"
  done | awk -F'\t' '{ c[$1] += $2 } END { for (n in c) printf "%s\t%d\n", n, c[n] }' | sort; }
segs() { ss -tin "( sport = :$port )" | awk '/^ESTAB/ { split($5, a, ":"); p = a[length(a)] } /data_segs_in/ { match($0, /data_segs_in:[0-9]+/); print p, substr($0, RSTART + 13, RLENGTH - 13) }' | sort; }
threads >"$PAYSTREAM_RUN_DIR/t0"; segs >"$PAYSTREAM_RUN_DIR/s0"
sleep "$SECS"
threads >"$PAYSTREAM_RUN_DIR/t1"; segs >"$PAYSTREAM_RUN_DIR/s1"
echo "idle ${SECS} s, workers' librdkafka settings: ${WORKER_KAFKA_PROPERTIES:-the defaults}, load avg $(cut -d' ' -f1 /proc/loadavg)"
join -t $'\t' "$PAYSTREAM_RUN_DIR/t0" "$PAYSTREAM_RUN_DIR/t1" |
  awk -F'\t' -v s="$SECS" '{ d = ($3 - $2) / 100 / s; tot += d; if (d >= 0.001) printf "  %-18s %5.1f %% of a core\n", $1, 100 * d } END { printf "broker JVM total: %.1f %% of a core\n", 100 * tot }' | sort -k2 -rn
join "$PAYSTREAM_RUN_DIR/s0" "$PAYSTREAM_RUN_DIR/s1" |
  awk -v s="$SECS" '{ r = ($3 - $2) / s; tot += r; n++ } END { printf "requests to the broker: %.0f/s over %d connections\n", tot, n }'
