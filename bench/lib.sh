# bench/lib.sh: what every benchmark script shares. Source it with the
# build directory as its argument (default <repo>/build, a release build).
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=$(cd "${1:-$repo/build}" && pwd)
export PAYSTREAM_BIN_DIR=$BUILD PAYSTREAM_PARTITIONS=${PAYSTREAM_PARTITIONS:-8}
STACK=$repo/deploy/local/stack
# The broker runs as long as a benchmark: full JIT (not the tests' quick-
# start client compiler), one GC thread on this 2-core machine, 1 GiB heap.
export PAYSTREAM_KAFKA_JVM_OPTS=${PAYSTREAM_KAFKA_JVM_OPTS:--XX:+UseSerialGC -XX:-UsePerfData}
export PAYSTREAM_KAFKA_HEAP=${PAYSTREAM_KAFKA_HEAP:-1g}
PAYCTL=$BUILD/payctl

cleanup() { [ -n "${KEEP_STACK:-}" ] || "$STACK" down >/dev/null 2>&1 || true; }
trap cleanup EXIT
sql() { psql "$PAYSTREAM_PG_DSN" -qAtX -c "$1"; }
now_ms() { date +%s%3N; }

# Starts a fresh local stack in its own run directory and loads its env.
new_stack() {
  export PAYSTREAM_RUN_DIR=$(mktemp -d /tmp/paystream-bench.XXXXXX)
  "$STACK" up >/dev/null
  . "$PAYSTREAM_RUN_DIR/env"
}

# Waits until worker S-I answers /readyz with 200 (partitions assigned).
wait_ready() {
  local port
  until [ -s "$PAYSTREAM_RUN_DIR/metrics/$1-$2.port" ] &&
    port=$(cat "$PAYSTREAM_RUN_DIR/metrics/$1-$2.port") &&
    [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/readyz")" = 200 ]; do
    sleep 0.2
  done
}
