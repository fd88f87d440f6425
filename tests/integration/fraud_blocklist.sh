#!/usr/bin/env bash
# Blocklists: `payctl blocklist` adds a device, then an email (matched
# case-insensitively); the next payments are blocked by rules with the
# blocklist's reason code and never reach the processor; after removal they
# are charged again. With Redis down the stage fails open, saying so.
source "$(dirname "$0")/lib.sh"
stack_up
"$STACK" workers 1
run_of() { # run_of RUN STATUS: payments of a run that ended with STATUS
  sql "SELECT count(*) FROM payments WHERE idempotency_key LIKE '$1-%' AND status = '$2'"
}
reason_of() { # reason_of RUN REASON: assessments of a run with REASON
  sql "SELECT count(*) FROM fraud_assessments a JOIN payments p USING (payment_id)
       WHERE p.idempotency_key LIKE '$1-%' AND '$2' = ANY (a.reasons)"
}
publish_run() { "$PAYCTL" publish --count 20 --run "$1" >/dev/null; }
settled() { [ "$(sql "SELECT count(*) FROM payments WHERE idempotency_key LIKE '$1-%' AND outcome IS NOT NULL")" = 20 ]; }
charges() { curl -sf "$PAYSTREAM_PROCESSOR_URL/v1/charges" | jq '[.data[] | select(.status=="succeeded")] | length'; }

publish_run before
check "an ordinary run settles" wait_until 60 settled before
eq "and is charged" 20 "$(run_of before succeeded)"

check "payctl blocklist add device" quietly "$PAYCTL" blocklist add device dev_demo
check "payctl blocklist list shows it" sh -c "'$PAYCTL' blocklist list device | grep -qx 'device	dev_demo'"
n0=$(charges)
publish_run device
check "the next run settles" wait_until 60 settled device
eq "every payment from the blocklisted device is blocked" 20 "$(run_of device blocked)"
eq "with the reason blocklist_device" 20 "$(reason_of device blocklist_device)"
eq "none reached the processor" "$n0" "$(charges)"

check "payctl blocklist remove device" quietly "$PAYCTL" blocklist remove device dev_demo
check "payctl blocklist add email (stored lower-cased)" quietly "$PAYCTL" blocklist add email Customer@Example.COM
check "the email is listed lower-cased" sh -c "'$PAYCTL' blocklist list email | grep -qx 'email	customer@example.com'"
publish_run email
check "the email run settles" wait_until 60 settled email
eq "payments from the blocklisted email are blocked" 20 "$(reason_of email blocklist_email)"
eq "and only for the email, not the removed device" 0 "$(reason_of email blocklist_device)"

check "payctl blocklist remove email" quietly "$PAYCTL" blocklist remove email customer@example.com
publish_run after
check "after removal a run settles" wait_until 60 settled after
eq "and is charged again" 20 "$(run_of after succeeded)"

redis-cli -p "$PAYSTREAM_REDIS_PORT" shutdown nosave >/dev/null 2>&1
publish_run noredis
check "with Redis down a run still settles" wait_until 90 settled noredis
eq "fail-open: every payment charged" 20 "$(run_of noredis succeeded)"
eq "each assessment saying blocklist_unavailable" 20 "$(reason_of noredis blocklist_unavailable)"
check "payctl blocklist says Redis is unavailable (exit 5)" \
  exits_with 5 "payctl: redis unavailable at 127.0.0.1:$PAYSTREAM_REDIS_PORT" "$PAYCTL" blocklist list
check "workers stop cleanly on SIGTERM" "$STACK" stop-workers
check "payctl ledger verify passes" quietly "$PAYCTL" ledger verify
check "no sanitizer reports" no_sanitizer_reports
finish
