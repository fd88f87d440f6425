#!/usr/bin/env bash
# The webhook receiver (services/webhook) against the real broker: forged
# deliveries are refused and publish nothing; a valid one delivered three
# times is published three times with the same event id (dropping the
# copies is the applying stage's job: it dedups on (processor, event_id));
# oversized bodies, garbage and stalled clients do not stop it serving; and
# SIGKILLed mid-load, every event it answered 2xx is on the topic; /healthz
# fails while its Kafka producer's delivery reports stop with events waiting.
source "$(dirname "$0")/lib.sh"
PY=(/usr/bin/python3 "$(dirname "$0")/webhook_client.py")
R=$PAYSTREAM_RUN_DIR
TOPIC=payments.processor-events
stack_up
STRIPE=$(cat "$R/secrets/webhook-stripe") PAYPAL=$(cat "$R/secrets/webhook-paypal")

start_webhook() {
  "$STACK" start-worker webhook 1
  wait_until 30 test -s "$R/webhook/webhook-1.port" || return 1
  URL=http://127.0.0.1:$(cat "$R/webhook/webhook-1.port")/webhooks
  wait_until 60 ready webhook 1
}
# Linger (batching) stretches the time between a send and its acknowledgement,
# so that answering before the acknowledgement would lose events to the kill
# below instead of hiding in a microsecond window.
export PAYSTREAM_KAFKA_PROPERTIES="linger.ms=200"
# Kafka unavailable must be answered (503) well before a processor gives up.
export PAYSTREAM_WEBHOOK_DELIVERY_TIMEOUT_MS=3000
check "the receiver starts and is ready (Kafka reachable)" start_webhook

published() { "$BUILD/kadmin" offsets "$TOPIC" | awk '{ n += $3 - $2 } END { print n + 0 }'; }
send() { "${PY[@]}" send "$@" 2>>"$R/client.log"; }

# 1. forged deliveries
eq "a bad signature is refused" 400 "$(send "$URL/stripe" stripe "$STRIPE" evt_f1 pay_f --sig "$(printf '%064d' 7)")"
eq "a validly signed but old delivery is refused" 400 "$(send "$URL/stripe" stripe "$STRIPE" evt_f2 pay_f --t-offset -301)"
eq "a delivery from the future is refused" 400 "$(send "$URL/stripe" stripe "$STRIPE" evt_f3 pay_f --t-offset 400)"
eq "the other processor's secret is refused (stripe)" 400 "$(send "$URL/stripe" stripe "$PAYPAL" evt_f4 pay_f)"
eq "the other processor's secret is refused (paypal)" 400 "$(send "$URL/paypal" paypal "$STRIPE" WH-f5 pay_f)"
eq "an old paypal transmission is refused" 400 "$(send "$URL/paypal" paypal "$PAYPAL" WH-f6 pay_f --t-offset -301)"
eq "an unknown processor is 404" 404 "$(send "$URL/adyen" stripe "$STRIPE" evt_f7 pay_f)"
eq "a forged delivery publishes nothing" 0 "$(published)"
refusals() { metric webhook 1 "paystream_webhook_refused_total{stage=\"webhook\",processor=\"$1\",reason=\"$2\"}"; }
eq "refusals are counted by reason (stripe bad signature)" 2 "$(refusals stripe bad_signature)"
eq "refusals are counted by reason (stripe stale)" 2 "$(refusals stripe stale)"
eq "refusals are counted by reason (paypal)" 2 "$(( $(refusals paypal bad_signature) + $(refusals paypal stale) ))"

# 2. the same valid delivery, three times: three 2xx, three copies, one event id
for i in 1 2 3; do
  eq "valid delivery $i is acknowledged" 200 "$(send "$URL/stripe" stripe "$STRIPE" evt_dup pay_dup)"
done
eq "a valid paypal delivery is acknowledged" 200 "$(send "$URL/paypal" paypal "$PAYPAL" WH-pp1 pay_pp)"
"${PY[@]}" topic "$PAYSTREAM_KAFKA_BOOTSTRAP" "$TOPIC" >"$R/topic1" 2>>"$R/client.log"
eq "each copy is on the topic, keyed by its payment, same event id" 3 \
  "$(grep -c '^evt_dup pay_dup pay_dup stripe body_ok$' "$R/topic1")"
eq "the paypal event is on the topic, keyed by its custom_id" 1 \
  "$(grep -c '^WH-pp1 pay_pp pay_pp paypal body_ok$' "$R/topic1")"
eq "nothing else was published" 4 "$(wc -l <"$R/topic1")"

# 3. bad input does not stop it serving
head -c 70000 /dev/zero | tr '\0' 'x' >"$R/big"
eq "an oversized body (declared) is 413" 413 "$("${PY[@]}" raw "$URL/stripe" "$R/big")"
head -c 100000 /dev/zero | tr '\0' 'x' >"$R/over"
eq "an oversized chunked body is 413 (nothing past the limit kept)" 413 "$("${PY[@]}" raw "$URL/stripe" "$R/over" --chunked)"
head -c 3000000 /dev/zero | tr '\0' 'x' >"$R/huge"
eq "an endless chunked body is cut off while reading" closed "$("${PY[@]}" raw "$URL/stripe" "$R/huge" --chunked)"
head -c 2000 /dev/urandom >"$R/garbage"
eq "unsigned garbage is 400" 400 "$("${PY[@]}" raw "$URL/stripe" "$R/garbage")"
signed_garbage() { # a correctly signed body that is not an event
  local t; t=$(date +%s)
  printf 'not json' >"$R/sg"
  curl -s -o /dev/null -w '%{http_code}' -H "Stripe-Signature: t=$t,v1=$(printf '%s.not json' "$t" |
    openssl dgst -sha256 -hmac "$STRIPE" | awk '{print $NF}')" --data-binary @"$R/sg" "$URL/stripe"
}
eq "signed garbage is 400 (malformed body)" 400 "$(signed_garbage)"
eq "a GET is 405" 405 "$(curl -s -o /dev/null -w '%{http_code}' "$URL/stripe")"
"${PY[@]}" slow 127.0.0.1 "$(cat "$R/webhook/webhook-1.port")" 40 8 >"$R/slow.out" 2>>"$R/client.log" &
slow=$!
wait_until 10 qgrep stalled "$R/slow.out"
start=$SECONDS
eq "with 40 stalled clients a valid delivery is still acknowledged" 200 "$(send "$URL/stripe" stripe "$STRIPE" evt_after_bad pay_ok)"
check "... promptly" test $((SECONDS - start)) -lt 5
wait "$slow"
eq "nothing from the bad input was published" 5 "$(published)"

# 4. SIGKILL mid-load: every 2xx is on the topic
: >"$R/acked"
"${PY[@]}" load "$URL/stripe" "$STRIPE" 3000 24 kill "$R/acked" 2>"$R/load.log" &
load=$!
acked() { [ "$(wc -l <"$R/acked")" -ge "$1" ]; }
check "the load is being acknowledged" wait_until 120 acked 100
check "the receiver is SIGKILLed mid-load" "$STACK" kill-worker webhook 1
wait "$load"
log "load: $(wc -l <"$R/acked") acknowledged; $(cat "$R/load.log")"
check "the kill interrupted the load (not every event was acknowledged)" test "$(wc -l <"$R/acked")" -lt 3000
"${PY[@]}" topic "$PAYSTREAM_KAFKA_BOOTSTRAP" "$TOPIC" >"$R/topic2" 2>>"$R/client.log"
awk '{print $1}' "$R/topic2" | sort -u >"$R/on_topic"
sort -u "$R/acked" >"$R/acked.sorted"
eq "every acknowledged event is on the topic" 0 "$(comm -23 "$R/acked.sorted" "$R/on_topic" | wc -l)"
eq "every message on the topic is a well-formed event" 0 "$(grep -vc ' body_ok$' "$R/topic2")"

# 5. it comes back and stops cleanly
check "the receiver restarts" start_webhook
eq "and acknowledges again" 200 "$(send "$URL/stripe" stripe "$STRIPE" evt_restarted pay_ok)"
# 6. Kafka away: not ready, and a delivery is answered 503 (the processor
# retries), never 2xx; back: ready and acknowledging again.
"$STACK" kafka-down >/dev/null
check "without Kafka the receiver is not ready" wait_until 60 not_ready webhook 1
eq "a delivery Kafka cannot acknowledge is 503" 503 "$(send "$URL/stripe" stripe "$STRIPE" evt_no_kafka pay_nk)"
check "failed deliveries are counted" test "$(metric webhook 1 'paystream_webhook_publish_failed_total{stage="webhook",processor="stripe"}')" -ge 1
"$STACK" kafka-up >/dev/null
check "with Kafka back it is ready" wait_until 120 ready webhook 1
eq "and acknowledges deliveries" 200 "$(send "$URL/stripe" stripe "$STRIPE" evt_kafka_back pay_kb)"
check "it stops cleanly on SIGTERM" "$STACK" stop-workers

# 7. Liveness is the producer's delivery path: /healthz fails while an event
# waits for Kafka with no delivery report for PAYSTREAM_HEARTBEAT_TIMEOUT_S
# (3 s here; the delivery timeout of 120 s keeps librdkafka's own timeout
# from reporting it meanwhile), and passes again once reports come. Idle,
# or with Kafka away and nothing waiting, it stays ok.
export PAYSTREAM_HEARTBEAT_TIMEOUT_S=3 PAYSTREAM_WEBHOOK_DELIVERY_TIMEOUT_MS=120000
check "the receiver starts with a 3 s heartbeat timeout" start_webhook
healthz_is() { [ "$(http_status webhook 1 /healthz)" = "$1" ]; }
stays_ok() { # SECONDS: /healthz answers 200 at every look for that long
  local end=$((SECONDS + $1))
  while [ $SECONDS -lt $end ]; do healthz_is 200 || return 1; sleep 0.2; done
}
check "idle, /healthz stays ok past the heartbeat timeout" stays_ok 6
"$STACK" kafka-down >/dev/null
check "Kafka away and nothing waiting: /healthz stays ok" stays_ok 6
send "$URL/stripe" stripe "$STRIPE" evt_stuck pay_stuck >/dev/null &
sender=$!
check "an event waiting with no delivery report fails /healthz" wait_until 30 healthz_is 503
check "... saying the heartbeat stopped" sh -c "curl -s http://127.0.0.1:$(cat "$R/metrics/webhook-1.port")/healthz | grep -q 'no heartbeat'"
"$STACK" kafka-up >/dev/null
check "once Kafka acknowledges it /healthz passes again" wait_until 90 healthz_is 200
wait "$sender" || true
on_topic() { "${PY[@]}" topic "$PAYSTREAM_KAFKA_BOOTSTRAP" "$TOPIC" 2>>"$R/client.log" | qgrep '^evt_stuck '; }
check "the event that waited is on the topic" wait_until 60 on_topic
unset PAYSTREAM_HEARTBEAT_TIMEOUT_S PAYSTREAM_WEBHOOK_DELIVERY_TIMEOUT_MS
check "it stops cleanly on SIGTERM" "$STACK" stop-workers
check "no sanitizer reports" no_sanitizer_reports
finish
