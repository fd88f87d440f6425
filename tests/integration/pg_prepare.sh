#!/usr/bin/env bash
# Prepared statements are a switch: PAYSTREAM_PG_PREPARE=0 (for a pooler
# that does not keep them across transactions, e.g. PgBouncer in
# transaction mode before 1.21) sends every statement unnamed, and the
# pipeline is whole; the default prepares each pipeline statement once per
# connection and executes it by name. Postgres's own statement log says
# which. A value other than 0 or 1 is a start-up error naming the variable.
source "$(dirname "$0")/lib.sh"
export PAYSTREAM_PG_OPTIONS="-c log_statement=all"
pglog() { cat "$(cat "$PAYSTREAM_RUN_DIR/pgdata")/postgres.log"; }
named() { pglog | grep -c 'execute ps[0-9]' || true; }
unnamed() { pglog | grep -c 'execute <unnamed>' || true; }

out=$(PAYSTREAM_PG_PREPARE=maybe "$BUILD/ps-ledger" 2>&1) && status=0 || status=$?
check "a bad value stops the worker at start" test "$status" -ne 0
check "and the error names the variable" qgrep "PAYSTREAM_PG_PREPARE" <<<"$out"

export PAYSTREAM_PG_PREPARE=0
stack_up
"$STACK" workers 1
M=$PAYSTREAM_RUN_DIR/manifest.jsonl
"$PAYCTL" publish --count 300 --duplicates 20 --declines 10 --run off --manifest "$M" >/dev/null
check "with prepared statements off every intent reaches its outcome" \
  "$PAYCTL" wait --terminal "$(manifest_terminal "$M")" --timeout 120
eq "no statement was executed by name" "0" "$(named)"
check "statements were executed unnamed" test "$(unnamed)" -gt 0

# The default, for the ledger only: its batches are executed by name.
pid=$(cat "$PAYSTREAM_RUN_DIR/pids/ledger-1.pid")
kill -TERM "$pid"
gone() { ! kill -0 "$pid" 2>/dev/null; }
check "the ledger worker stops on SIGTERM" wait_until 20 gone
rm -f "$PAYSTREAM_RUN_DIR/pids/ledger-1.pid"
unset PAYSTREAM_PG_PREPARE
"$STACK" start-worker ledger 2
"$PAYCTL" publish --count 100 --run on --manifest "$PAYSTREAM_RUN_DIR/on.jsonl" >/dev/null
cat "$PAYSTREAM_RUN_DIR/on.jsonl" >>"$M"
check "by default every intent reaches its outcome too" \
  "$PAYCTL" wait --terminal "$(manifest_terminal "$M")" --timeout 120
check "and the ledger's statements were executed by name" test "$(named)" -gt 0
check "workers stop cleanly" "$STACK" stop-workers
assert_invariants "$M"
check "no sanitizer reports" no_sanitizer_reports
finish
