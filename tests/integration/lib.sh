# tests/integration/lib.sh: the harness every integration scenario sources.
# Starts a private local stack (real Postgres, Redis, devbroker, procsim and
# the real worker binaries) in a temporary run directory, offers assertions
# and condition waits with deadlines, and always tears the stack down.
# Usage: source lib.sh; stack_up; ...; check "name" cmd...; finish
set -uo pipefail

BUILD=${1:?usage: $0 <build-dir>}
BUILD=$(cd "$BUILD" && pwd)
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
export PAYSTREAM_BIN_DIR=$BUILD
export PAYSTREAM_RUN_DIR=$(mktemp -d /tmp/paystream-test.XXXXXX)
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
STACK=$REPO/deploy/local/stack
PAYCTL=$BUILD/payctl
passed=0
failed=0

log() { printf '# %s\n' "$*"; }

teardown() {
  "$STACK" down >/dev/null 2>&1 || true
  if [ "$failed" -eq 0 ] && [ -z "${KEEP_RUN_DIR:-}" ]; then rm -rf "$PAYSTREAM_RUN_DIR"; fi
}
trap teardown EXIT

stack_up() {
  "$STACK" up || { echo "not ok - stack did not start"; exit 1; }
  # shellcheck disable=SC1091
  . "$PAYSTREAM_RUN_DIR/env"
}

# check NAME CMD...: records a pass when CMD succeeds.
check() {
  local name=$1; shift
  if "$@"; then
    passed=$((passed + 1)); echo "ok - $name"
  else
    failed=$((failed + 1)); echo "not ok - $name"
  fi
}

# eq NAME EXPECTED ACTUAL
eq() {
  if [ "$2" == "$3" ]; then
    passed=$((passed + 1)); echo "ok - $1"
  else
    failed=$((failed + 1)); echo "not ok - $1: expected '$2', got '$3'"
  fi
}

# wait_until SECONDS CMD...: polls CMD until it succeeds or the deadline passes.
wait_until() {
  local secs=$1; shift
  local end=$((SECONDS + secs))
  until "$@" >/dev/null 2>&1; do
    [ $SECONDS -lt $end ] || return 1
    sleep 0.2
  done
}

sql() { psql "$PAYSTREAM_PG_DSN" -qAtX -F $'\t' -c "$1"; }

# No sanitizer report in any worker or tool log.
no_sanitizer_reports() {
  ! grep -l -E 'AddressSanitizer|LeakSanitizer|runtime error:' "$PAYSTREAM_RUN_DIR"/logs/*.log \
    "$PAYSTREAM_RUN_DIR"/*.log 2>/dev/null
}

finish() {
  if [ "$failed" -ne 0 ]; then
    log "run directory kept for inspection: $PAYSTREAM_RUN_DIR"
    for f in "$PAYSTREAM_RUN_DIR"/logs/*.log; do
      [ -e "$f" ] || continue
      log "--- last lines of $f"; tail -n 20 "$f" | sed 's/^/#   /'
    done
  fi
  echo "$passed passed, $failed failed"
  [ "$failed" -eq 0 ]
}
