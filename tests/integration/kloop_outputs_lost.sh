#!/usr/bin/env bash
# A failed produce stops every later commit (lib/kloop.c outputs_lost): the
# continuous charge stage frees a payment once its outputs are queued, so a
# commit after an undelivered output — the revoke as the worker leaves
# included — would skip that payment for good. The real broker refuses
# charge's payments.charged events (the topic's max.message.bytes lowered
# below their size): the worker must exit without committing past them, and
# once the topic takes them again a new worker redoes them from Postgres —
# every payment is posted and ends succeeded, none is left `charged`.
source "$(dirname "$0")/lib.sh"
stack_up
for s in ingest fraud ledger charge; do "$STACK" start-worker "$s" 1; done
"$PAYCTL" publish --count 10 --run warm >/dev/null
check "the pipeline runs" "$PAYCTL" wait --terminal 10 --timeout 120
topic_config() { # topic_config ARGS...: kafka-configs on payments.charged
  local libs; libs=$(cat "$PAYSTREAM_RUN_DIR/kafka/libs")
  java -Xmx128m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -cp "$libs/*" kafka.admin.ConfigCommand \
    --bootstrap-server "$(cat "$PAYSTREAM_RUN_DIR/kafka.bootstrap")" --entity-type topics \
    --entity-name payments.charged --alter "$@"
}
check "payments.charged refuses messages over 64 bytes" quietly topic_config --add-config max.message.bytes=64
charge_pid=$(cat "$PAYSTREAM_RUN_DIR/pids/charge-1.pid")
"$PAYCTL" publish --count 20 --run lost >/dev/null
exited() { [ -e "$PAYSTREAM_RUN_DIR/exits/charge-1.$charge_pid" ]; }
check "the charge worker stops on the undelivered output" wait_until 120 exited
eq "  ... with a failure status" "1" "$(cat "$PAYSTREAM_RUN_DIR/exits/charge-1.$charge_pid")"
check "  ... saying so" qgrep "outputs not delivered" "$PAYSTREAM_RUN_DIR/logs/charge-1.log"
rm -f "$PAYSTREAM_RUN_DIR/pids/charge-1.pid"   # accounted for: not stopped by stop-workers
lost=$(sql "SELECT count(*) FROM payments WHERE idempotency_key LIKE 'lost-%' AND status = 'charged'")
check "some charged payments' events were not delivered" test "$lost" -ge 1
check "payments.charged takes them again" quietly topic_config --delete-config max.message.bytes
"$STACK" start-worker charge 2
ended() { [ "$(sql "SELECT count(*) FROM payments WHERE idempotency_key LIKE 'lost-%' AND outcome IS NOT NULL")" = 20 ]; }
check "a new charge worker redoes them: every payment ends" wait_until 120 ended
eq "none is left charged" "0" "$(sql "SELECT count(*) FROM payments WHERE status = 'charged'")"
eq "each charged payment is posted once" "$(sql "SELECT count(*) FROM payments WHERE status = 'succeeded'")" \
  "$(sql "SELECT count(*) FROM ledger_transactions")"
eq "charged once each at the processor" "$(sql "SELECT count(*) FROM payments WHERE status = 'succeeded'")" \
  "$(curl -sf "$PAYSTREAM_PROCESSOR_URL/v1/charges" | jq '.data | length')"
check "workers stop cleanly on SIGTERM" "$STACK" stop-workers
check "no sanitizer reports" no_sanitizer_reports
finish
