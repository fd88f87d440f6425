#!/usr/bin/env bash
# A charge worker holding more processor connections than select() can
# watch (file descriptors past 1024) still answers /healthz, /readyz and
# /metrics: a liveness probe must not fail — and get the worker restarted —
# because it is busy. 1,200 charges are held in flight against a processor
# that answers after 8 s; while they are out, the probes answer and the
# in-flight gauge says 1,100 or more; then every payment is charged once.
source "$(dirname "$0")/lib.sh"
stack_up
curl -sf -X POST "$PAYSTREAM_PROCESSOR_URL/_sim/config?latency_ms=8000" >/dev/null
for s in ingest fraud ledger; do "$STACK" start-worker "$s" 1; done
PAYSTREAM_CHARGE_MAX_INFLIGHT=1500 PAYSTREAM_PROCESSOR_TIMEOUT_MS=60000 "$STACK" start-worker charge 1
pid=$(cat "$PAYSTREAM_RUN_DIR/pids/charge-1.pid")
M=$PAYSTREAM_RUN_DIR/manifest.jsonl
"$PAYCTL" publish --count 1200 --declines 0 --fraud 0 --duplicates 0 --run busy --manifest "$M" >/dev/null
# Counted from the kernel, not from the worker: its endpoints are what is tested.
open_fds() { find "/proc/$pid/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l; }
many_fds() { [ "$(open_fds)" -gt 1100 ]; }
check "the charge worker holds over 1,100 descriptors (processor connections)" wait_until 60 many_fds
log "charge worker holds $(open_fds) descriptors"
check "/healthz answers" "$STACK" http charge 1 /healthz
# Ready (200), not just answering: its first Kafka statistics may still be
# on their way when the descriptors are counted (then it says "connecting").
check "/readyz answers ready" wait_until 30 "$STACK" http charge 1 /readyz
inflight=$(metric charge 1 paystream_charges_in_flight)
log "in flight per /metrics: $inflight"
check "/metrics answers with the requests in flight" test "$inflight" -ge 1100
grep_fdsetsize() { ! qgrep "FD_SETSIZE" "$PAYSTREAM_RUN_DIR/logs/charge-1.log"; }
check "no connection refused for its descriptor number" grep_fdsetsize
expected=$(manifest_terminal "$M")
check "every payment reaches its outcome" wait_until 120 all_terminal
check "workers stop cleanly" "$STACK" stop-workers
assert_invariants "$M"
check "no sanitizer reports" no_sanitizer_reports
finish
