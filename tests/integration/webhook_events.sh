#!/usr/bin/env bash
# Processor events recorded once: the receiver publishes every delivery it
# acknowledges (three deliveries of one event are three messages), and the
# events stage (services/events) records each (processor, event_id) once in
# processor_events — also across a SIGKILL and a re-read of the topic; what
# it cannot record (garbage, another schema, a row Postgres refuses) goes to
# the DLQ with the reason before its offset is committed.
source "$(dirname "$0")/lib.sh"
PY=(/usr/bin/python3 "$(dirname "$0")/webhook_client.py")
R=$PAYSTREAM_RUN_DIR
stack_up
STRIPE=$(cat "$R/secrets/webhook-stripe") PAYPAL=$(cat "$R/secrets/webhook-paypal")
"$STACK" start-worker webhook 1
"$STACK" start-worker events 1
check "the receiver is ready" wait_until 60 ready webhook 1
check "the events stage is ready" wait_until 60 ready events 1
URL=http://127.0.0.1:$(cat "$R/webhook/webhook-1.port")/webhooks
send() { "${PY[@]}" send "$@" 2>>"$R/client.log"; }
rows() { sql "SELECT count(*) FROM processor_events"; }
rows_are() { [ "$(rows)" = "$1" ]; }
published() { "$BUILD/kadmin" offsets payments.processor-events | awk '{ n += $3 - $2 } END { print n + 0 }'; }

for i in 1 2 3; do
  eq "delivery $i of evt_a is acknowledged" 200 "$(send "$URL/stripe" stripe "$STRIPE" evt_a pay_a)"
done
eq "a paypal event is acknowledged" 200 "$(send "$URL/paypal" paypal "$PAYPAL" WH-b pay_b)"
eq "four messages on the topic" 4 "$(published)"
check "two events recorded" wait_until 60 rows_are 2
eq "evt_a is recorded once" 1 "$(sql "SELECT count(*) FROM processor_events WHERE processor = 'stripe' AND event_id = 'evt_a'")"
eq "with what the processor said" "pay_a charge.succeeded 1234 USD ch_evt_a evt_a" \
  "$(sql "SELECT payment_id, type, amount_minor, currency, charge_id, convert_from(raw_body, 'UTF8')::json->>'id'
            FROM processor_events WHERE event_id = 'evt_a'" | tr '\t' ' ')"
eq "the paypal one too" "pay_b PAYMENT.CAPTURE.COMPLETED 1234 USD paypal" \
  "$(sql "SELECT payment_id, type, amount_minor, currency, flavour FROM processor_events WHERE event_id = 'WH-b'" | tr '\t' ' ')"
duplicates() { metric events 1 'paystream_processor_events_total{stage="events",result="duplicate"}'; }
dup_is() { [ "$(duplicates)" = "$1" ]; }
check "the two copies were seen as duplicates" wait_until 30 dup_is 2

# SIGKILL the stage, deliver again meanwhile, restart: nothing twice.
check "the events stage is SIGKILLed" "$STACK" kill-worker events 1
eq "evt_a delivered a fourth time" 200 "$(send "$URL/stripe" stripe "$STRIPE" evt_a pay_a)"
eq "a new event while the stage is down" 200 "$(send "$URL/stripe" stripe "$STRIPE" evt_c pay_c)"
"$STACK" start-worker events 1
check "after the restart the new event is recorded" wait_until 60 rows_are 3
eq "and evt_a is still recorded once" 1 "$(sql "SELECT count(*) FROM processor_events WHERE event_id = 'evt_a'")"

# Bad input is never lost: what the stage cannot record goes to the DLQ with
# the reason and its source, acknowledged before the offset is committed.
raw() { "$BUILD/publish-raw" payments.processor-events "$1" "$2"; }
GARBAGE=$(raw bad-garbage 6761726261676521)                          # "garbage!"
SCHEMA2=$(raw bad-schema 0802120673747269706522066576745f7632)       # schema_version 2
REFUSED=$(raw bad-row 0801120673747269706522076576745f6261642a0178) # no flavour: the table refuses it
eq "a valid event after them is acknowledged" 200 "$(send "$URL/stripe" stripe "$STRIPE" evt_d pay_d)"
check "the valid event after the bad ones is recorded" wait_until 60 rows_are 4
dead_lettered() { metric events 1 'paystream_messages_dead_lettered_total{stage="events"'; }
dead_is() { [ "$(dead_lettered)" = "$1" ]; }
check "three dead letters counted" wait_until 60 dead_is 3
"$PAYCTL" dlq list >"$R/dlq.jsonl"
letter() { # letter KEY: "partition offset | reason" of its dead letter from the events stage
  jq -r --arg k "$1" 'select(.key == $k and .["dlq.stage"] == "events"
      and .["dlq.source.topic"] == "payments.processor-events")
    | "\(.["dlq.source.partition"]) \(.["dlq.source.offset"]) | \(.["dlq.reason"])"' "$R/dlq.jsonl"
}
eq "the garbage is dead-lettered with its source and reason" "$GARBAGE | undecodable processor event" \
  "$(letter bad-garbage)"
eq "the wrong schema too" "$SCHEMA2 | unsupported schema_version 2 (this stage reads 1)" "$(letter bad-schema)"
eq "and the row Postgres refuses" "$REFUSED | postgres refused the event: 23514: ERROR:  new row for\
 relation \"processor_events\" violates check constraint \"processor_events_flavour_check\"" "$(letter bad-row)"
eq "none of them recorded" 0 "$(sql "SELECT count(*) FROM processor_events WHERE event_id IN ('evt_v2', 'evt_bad')")"

# A dead letter Kafka does not acknowledge (its topic does not exist yet) is
# retried and the offset not committed: killed and restarted once the topic
# exists, the stage dead-letters the same message.
LATE=payments.dlq-late
check "the events stage is SIGKILLed again" "$STACK" kill-worker events 1
PAYSTREAM_TOPIC_DLQ=$LATE "$STACK" start-worker events 1
LOST=$(raw bad-late 6761726261676521)
dlq_failed() { qgrep -E 'could not produce a dead letter|dead letter not delivered' "$R/logs/events-1.log"; }
check "the dead letter to a missing topic fails" wait_until 120 dlq_failed
check "the events stage is SIGKILLed while retrying" "$STACK" kill-worker events 1
check "the late DLQ topic is created" env PAYSTREAM_TOPIC_DLQ=$LATE "$BUILD/kadmin" create
PAYSTREAM_TOPIC_DLQ=$LATE "$STACK" start-worker events 1
late_letter() {
  PAYSTREAM_TOPIC_DLQ=$LATE "$PAYCTL" dlq list >"$R/dlq-late.jsonl" || return 1
  [ "$(jq -r 'select(.key == "bad-late") | "\(.["dlq.source.partition"]) \(.["dlq.source.offset"])"' \
    "$R/dlq-late.jsonl")" = "$LOST" ]
}
check "after the restart the same message is dead-lettered" wait_until 90 late_letter

# The record is append-only, for the stage and for the owner.
DSN_BASE=${PAYSTREAM_PG_DSN/user=postgres/}
denied() {
  local out
  out=$(psql "$DSN_BASE user=paystream_events" -qAtX -v ON_ERROR_STOP=1 -c "$1" 2>&1)
  qgrep 'permission denied' <<<"$out" || { log "expected permission denied, got: $out"; return 1; }
}
check "the stage cannot rewrite an event" denied "UPDATE processor_events SET status = 'x'"
check "the stage cannot delete an event" denied "DELETE FROM processor_events"
check "the owner cannot rewrite an event either" refused "UPDATE processor_events SET status = 'x'" "append-only"
check "both stop cleanly on SIGTERM" "$STACK" stop-workers
check "no sanitizer reports" no_sanitizer_reports
finish
