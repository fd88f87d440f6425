#!/usr/bin/env bash
# procsim_ops: the processor simulator's payment lifecycle, both flavours,
# against procsim alone (no pipeline): authorize, partial and multiple
# captures, void, partial and multiple refunds, idempotency of every
# operation (replay = same answer, other parameters refused, in progress
# 409), over-capture / over-refund refused, capture after void or expiry
# refused, void after partial capture releases only the rest, injected
# refund declines, faults on operations, racing refunds never exceeding the
# capture, and the status queries (_lookup by key, GET by id).
# Money is proved with /_sim/totals (what procsim holds, not what it said).
source "$(dirname "$0")/lib.sh"

"$STACK" start-backup-procsim || { echo "not ok - procsim did not start"; exit 1; }
PS="http://127.0.0.1:$(cat "$PAYSTREAM_RUN_DIR/backup.port")"
T=$PAYSTREAM_RUN_DIR
AUTH="Authorization: Bearer sk_test_local"

# call METHOD PATH [HEADER] [BODY] [CONTENT-TYPE]: sets CODE and BODY.
call() {
  local args=(-s -o "$T/out" -w '%{http_code}' -X "$1" -H "$AUTH")
  [ -n "${3:-}" ] && args+=(-H "$3")
  [ -n "${PREFER:-}" ] && args+=(-H "Prefer: $PREFER")
  [ -n "${5:-}" ] && args+=(-H "Content-Type: $5")
  [ -n "${4:-}" ] && args+=(--data-binary "$4")
  CODE=$(curl "${args[@]}" "$PS$2")
  BODY=$(cat "$T/out" 2>/dev/null)
}
sp() { call POST "$2" "Idempotency-Key: $1" "${3:-}" application/x-www-form-urlencoded; }
pp() { call POST "$2" "PayPal-Request-Id: $1" "${3:-}" application/json; }
get() { call GET "$1"; }
j() { jq -r "$1" <<<"$BODY"; }
sim() { curl -sf -X POST "$PS/_sim/config?$1" >/dev/null; }
total() { curl -sf "$PS/_sim/totals?payment_id=$1" | jq -r ".$2"; }
usd() { printf '{"currency_code":"USD","value":"%s"}' "$1"; }

log "stripe-like: authorize, partial captures, refunds, void"
sp a1 /v1/payment_intents 'amount=1000&currency=usd&capture_method=manual&confirm=true&payment_method=pm_card_visa&metadata[payment_id]=P1'
eq "authorize answers 200" 200 "$CODE"
eq "authorized intent requires capture" "requires_capture 1000 0 P1" \
  "$(j '"\(.status) \(.amount_capturable) \(.amount_received) \(.metadata.payment_id)"')"
PI=$(j .id); FIRST=$BODY
sp a1 /v1/payment_intents 'amount=1000&currency=usd&capture_method=manual&confirm=true&payment_method=pm_card_visa&metadata[payment_id]=P1'
eq "authorize replayed with its key returns the same answer" "200 $FIRST" "$CODE $BODY"
sp a1 /v1/payment_intents 'amount=999&currency=usd&capture_method=manual&confirm=true&payment_method=pm_card_visa&metadata[payment_id]=P1'
eq "authorize key reused with other params is refused" "400 idempotency_error" "$CODE $(j .error.type)"
eq "one authorization at the processor" 1000 "$(total P1 authorized)"

sp c1 "/v1/payment_intents/$PI/capture" 'amount_to_capture=300&final_capture=false'
eq "partial capture" "200 requires_capture 300 700" \
  "$CODE $(j '"\(.status) \(.amount_received) \(.amount_capturable)"')"
CAP1=$(j .capture_id); CAPTURE1=$BODY
check "capture has an id and a fee" [ "${CAP1:0:3}" = ch_ ] && [ "$(j .fee)" -gt 0 ]
sp c1 "/v1/payment_intents/$PI/capture" 'amount_to_capture=300&final_capture=false'
eq "capture replayed returns the same answer" "200 $CAPTURE1" "$CODE $BODY"
sp c1 "/v1/payment_intents/$PI/capture" 'amount_to_capture=301&final_capture=false'
eq "capture key reused with other params is refused" "400 idempotency_error" "$CODE $(j .error.type)"
eq "the replayed capture captured once" 300 "$(total P1 captured)"
sp c2 "/v1/payment_intents/$PI/capture" 'amount_to_capture=800&final_capture=false'
eq "over-capture refused" "400 amount_too_large" "$CODE $(j .error.code)"
sp c3 "/v1/payment_intents/$PI/capture" 'amount_to_capture=200&final_capture=false'
eq "second partial capture" "200 500 500" "$CODE $(j '"\(.amount_received) \(.amount_capturable)"')"

sp r0 /v1/refunds "payment_intent=$PI&amount=600&metadata[payment_id]=P1"
eq "refund above the captured amount refused" "400 amount_too_large" "$CODE $(j .error.code)"
sp r1 /v1/refunds "payment_intent=$PI&amount=200&metadata[payment_id]=P1&metadata[refund_id]=R1"
eq "partial refund" "200 succeeded 200 R1" "$CODE $(j '"\(.status) \(.amount) \(.metadata.refund_id)"')"
RE1=$(j .id); REFUND1=$BODY
sp r1 /v1/refunds "payment_intent=$PI&amount=200&metadata[payment_id]=P1&metadata[refund_id]=R1"
eq "refund replayed returns the same answer" "200 $REFUND1" "$CODE $BODY"
sp r1 /v1/refunds "payment_intent=$PI&amount=201&metadata[payment_id]=P1&metadata[refund_id]=R1"
eq "refund key reused with other params is refused" "400 idempotency_error" "$CODE $(j .error.type)"
sp r2 /v1/refunds "payment_intent=$PI&amount=300&metadata[payment_id]=P1"
eq "second refund up to what was captured" "200 succeeded" "$CODE $(j .status)"
sp r3 /v1/refunds "payment_intent=$PI&amount=1&metadata[payment_id]=P1"
eq "refund beyond a fully refunded payment refused" "400 charge_already_refunded" "$CODE $(j .error.code)"

sp v1 "/v1/payment_intents/$PI/cancel"
eq "void after partial captures releases the rest" "200 canceled 0 500" \
  "$CODE $(j '"\(.status) \(.amount_capturable) \(.amount_received)"')"
sp c4 "/v1/payment_intents/$PI/capture" 'amount_to_capture=100'
eq "capture after void refused" "400 payment_intent_unexpected_state" "$CODE $(j .error.code)"
sp v2 "/v1/payment_intents/$PI/cancel"
eq "void after void refused" "400 payment_intent_unexpected_state" "$CODE $(j .error.code)"
eq "totals: authorized captured refunded voided" "1000 500 500 500" \
  "$(curl -sf "$PS/_sim/totals?payment_id=P1" | jq -r '"\(.authorized) \(.captured) \(.refunded) \(.voided)"')"
eq "operations log for P1" "authorize capture capture refund refund void" \
  "$(curl -sf "$PS/_sim/operations?payment_id=P1" | jq -r '[.data[].op] | join(" ")')"

log "stripe-like: full capture, then no void; declines"
sp a2 /v1/payment_intents 'amount=700&currency=usd&capture_method=manual&confirm=true&payment_method=pm_card_visa&metadata[payment_id]=P2'
PI2=$(j .id)
sp c5 "/v1/payment_intents/$PI2/capture"
eq "capture without an amount captures it all" "200 succeeded 700 0" \
  "$CODE $(j '"\(.status) \(.amount_received) \(.amount_capturable)"')"
sp v3 "/v1/payment_intents/$PI2/cancel"
eq "void after full capture refused" "400 payment_intent_unexpected_state" "$CODE $(j .error.code)"
sp a3 /v1/payment_intents 'amount=700&currency=usd&capture_method=manual&confirm=true&payment_method=pm_card_visa&metadata[payment_id]=P3'
sp c6 "/v1/payment_intents/$(j .id)/capture" 'amount_to_capture=100'
eq "final capture (default) releases the rest" "succeeded 100 0" \
  "$(j '"\(.status) \(.amount_received) \(.amount_capturable)"')"
eq "released by the final capture" 600 "$(total P3 released)"
sp a4 /v1/payment_intents 'amount=700&currency=usd&capture_method=manual&confirm=true&payment_method=pm_card_chargeDeclinedInsufficientFunds&metadata[payment_id]=P4'
eq "declined authorization" "402 card_declined insufficient_funds" \
  "$CODE $(j '"\(.error.code) \(.error.decline_code)"')"
eq "a declined authorization holds nothing" 0 "$(total P4 authorized)"

log "stripe-like: refunds of a sale, declines"
sp s1 /v1/charges 'amount=2000&currency=usd&payment_method=pm_card_visa&metadata[payment_id]=P5'
CH=$(j .id)
eq "sale unchanged" "200 succeeded true" "$CODE $(j '"\(.status) \(.paid)"')"
sp r4 /v1/refunds "charge=$CH&amount=500&metadata[payment_id]=P5"
eq "refund of a sale by charge" "200 succeeded $CH" "$CODE $(j '"\(.status) \(.charge)"')"
sim refund_decline_next=1
sp r5 /v1/refunds "charge=$CH&amount=100&metadata[payment_id]=P5"
eq "injected refund decline" "402 insufficient_funds" "$CODE $(j .error.code)"
sp r5 /v1/refunds "charge=$CH&amount=100&metadata[payment_id]=P5"
eq "a declined refund replays its decline" "402 insufficient_funds" "$CODE $(j .error.code)"
sim 'refund_decline_next=1&refund_decline_as=failed'
sp r6 /v1/refunds "charge=$CH&amount=100&metadata[payment_id]=P5"
eq "injected refund failure as a failed refund" "200 failed insufficient_funds" \
  "$CODE $(j '"\(.status) \(.failure_reason)"')"
sim 'refund_decline_as=error'
eq "failed refunds take nothing" "500 200" \
  "$(curl -sf "$PS/_sim/totals?payment_id=P5" | jq -r '"\(.refunded) \(.refund_failed)"')"

log "stripe-like: racing refunds never exceed the capture"
sp s2 /v1/charges 'amount=1000&currency=usd&payment_method=pm_card_visa&metadata[payment_id]=P6'
CH6=$(j .id)
for i in $(seq 1 25); do
  curl -s -o "$T/race.$i" -w '%{http_code}\n' -H "$AUTH" -H "Idempotency-Key: race-$i" \
    --data "charge=$CH6&amount=100&metadata[payment_id]=P6" "$PS/v1/refunds" >"$T/race.$i.code" &
done
wait
eq "exactly the refunds that fit succeeded" 10 "$(cat "$T"/race.*.code | grep -c '^200$')"
eq "the others were refused" 15 "$(cat "$T"/race.*.code | grep -c '^400$')"
eq "refunded never above captured" "1000 1000" \
  "$(curl -sf "$PS/_sim/totals?payment_id=P6" | jq -r '"\(.captured) \(.refunded)"')"

log "stripe-like: authorization expiry"
sim auth_expiry_ms=300
sp a5 /v1/payment_intents 'amount=900&currency=usd&capture_method=manual&confirm=true&payment_method=pm_card_visa&metadata[payment_id]=P7'
PI7=$(j .id)
sim auth_expiry_ms=0
expired() { [ "$(total P7 expired)" = 900 ]; }
check "the authorization expires by itself" wait_until 10 expired
sp c7 "/v1/payment_intents/$PI7/capture" 'amount_to_capture=100'
eq "capture after expiry refused" "400 payment_intent_unexpected_state" "$CODE $(j .error.code)"
get "/v1/payment_intents/$PI7"
eq "an expired intent is canceled (expired)" "200 canceled expired" \
  "$CODE $(j '"\(.status) \(.cancellation_reason)"')"

log "stripe-like: faults apply to operations"
sp a6 /v1/payment_intents 'amount=800&currency=usd&capture_method=manual&confirm=true&payment_method=pm_card_visa&metadata[payment_id]=P8'
PI8=$(j .id)
sim 'fail_rate=1&fail_status=503'
sp c8 "/v1/payment_intents/$PI8/capture" 'amount_to_capture=100&final_capture=false'
eq "an outage refuses a capture" 503 "$CODE"
eq "nothing captured during the outage" 0 "$(total P8 captured)"
get "/v1/_lookup?idempotency_key=c1"
eq "status queries fail in an outage too" 503 "$CODE"
get "/v1/payment_intents/$PI8"
eq "GET by id fails in an outage too" 503 "$CODE"
sim fail_rate=0
sp c8 "/v1/payment_intents/$PI8/capture" 'amount_to_capture=100&final_capture=false'
eq "the capture retried with its key is made" "200 100" "$CODE $(j .amount_received)"
sim 'drop_next=1&refuse_ms=500'
sp r7 /v1/refunds "payment_intent=$PI8&amount=50&metadata[payment_id]=P8"
eq "a dropped refund gets no answer" 000 "$CODE"
refunded50() { sp r7 /v1/refunds "payment_intent=$PI8&amount=50&metadata[payment_id]=P8"; [ "$CODE" = 200 ]; }
check "the refund re-sent with its key is answered" wait_until 20 refunded50
eq "the dropped refund was made once" 50 "$(total P8 refunded)"
eq "every refund request counted" 2 "$(curl -sf "$PS/_sim/requests" | jq -r '.by_key.r7')"

log "stripe-like: status queries"
curl -s -H "$AUTH" "$PS/v1/_lookup?idempotency_key=c1" >"$T/lookup"
eq "lookup by key returns the capture's answer" "$CAPTURE1" "$(cat "$T/lookup")"
eq "lookup needs the API key" 401 "$(curl -s -o /dev/null -w '%{http_code}' "$PS/v1/_lookup?idempotency_key=c1")"
get "/v1/_lookup?idempotency_key=never-sent"
eq "lookup of a key that never reached the processor" "404 idempotency_key_unknown" "$CODE $(j .error.code)"
get "/v1/_lookup?idempotency_key=a4"
eq "lookup of a declined key returns the decline" "402 card_declined" "$CODE $(j .error.code)"
sim latency_ms=2000
curl -s -o /dev/null -H "$AUTH" -H 'Idempotency-Key: slow1' \
  --data 'amount=100&currency=usd&payment_method=pm_card_visa&metadata[payment_id]=P9' "$PS/v1/charges" &
slow=$!
busy() { get "/v1/_lookup?idempotency_key=slow1"; [ "$CODE" = 409 ]; }
check "lookup while the request is in progress answers 409" wait_until 5 busy
sim latency_ms=0
wait "$slow"
get "/v1/_lookup?idempotency_key=slow1"
eq "lookup after it finished returns the charge" "200 succeeded P9" "$CODE $(j '"\(.status) \(.metadata.payment_id)"')"
get "/v1/payment_intents/$PI"
eq "GET payment intent" "200 canceled 500 500" "$CODE $(j '"\(.status) \(.amount_received) \(.amount_refunded)"')"
get "/v1/charges/$CAP1"
eq "GET a capture as a charge" "200 300 $PI" "$CODE $(j '"\(.amount_captured) \(.payment_intent)"')"
get "/v1/refunds/$RE1"
eq "GET refund" "200 succeeded 200" "$CODE $(j '"\(.status) \(.amount)"')"
get "/v1/refunds/re_nope"
eq "GET of an unknown object" "404 resource_missing" "$CODE $(j .error.code)"

log "paypal-like: authorize, captures, refunds, void"
ORDER=$(printf '{"intent":"AUTHORIZE","purchase_units":[{"custom_id":"Q1","amount":%s}],"payment_source":"pm_card_visa"}' "$(usd 10.00)")
pp pa1 /v2/checkout/orders "$ORDER"
eq "authorize (order) answers 201 with an authorization" "201 COMPLETED CREATED Q1" \
  "$CODE $(j '"\(.status) \(.purchase_units[0].payments.authorizations[0].status) \(.purchase_units[0].payments.authorizations[0].custom_id)"')"
AUTHID=$(j '.purchase_units[0].payments.authorizations[0].id'); PFIRST=$BODY
pp pa1 /v2/checkout/orders "$ORDER"
eq "order replayed returns the same answer" "201 $PFIRST" "$CODE $BODY"
pp pa1 /v2/checkout/orders "${ORDER/10.00/9.99}"
eq "request id reused with other params is refused" "422 DUPLICATE_REQUEST_ID" "$CODE $(j '.details[0].issue')"
pp pc1 "/v2/payments/authorizations/$AUTHID/capture" "{\"amount\":$(usd 3.00),\"final_capture\":false}"
eq "partial capture" "201 COMPLETED 3.00 Q1" "$CODE $(j '"\(.status) \(.amount.value) \(.custom_id)"')"
CAPID=$(j .id); PCAP=$BODY
check "capture has a fee" [ "$(j .seller_receivable_breakdown.paypal_fee.value)" != null ]
pp pc1 "/v2/payments/authorizations/$AUTHID/capture" "{\"amount\":$(usd 3.00),\"final_capture\":false}"
eq "capture replayed returns the same answer" "201 $PCAP" "$CODE $BODY"
pp pc2 "/v2/payments/authorizations/$AUTHID/capture" "{\"amount\":$(usd 8.00),\"final_capture\":false}"
eq "over-capture refused" "422 MAX_CAPTURE_AMOUNT_EXCEEDED" "$CODE $(j '.details[0].issue')"
pp pc3 "/v2/payments/authorizations/$AUTHID/capture" "{\"amount\":$(usd 2.00),\"final_capture\":false}"
eq "second partial capture" "201 2.00" "$CODE $(j .amount.value)"
get "/v2/payments/authorizations/$AUTHID"
eq "authorization partly captured" "200 PARTIALLY_CAPTURED 5.00" "$CODE $(j '"\(.status) \(.capturable_amount.value)"')"
pp pr0 "/v2/payments/captures/$CAPID/refund" "{\"amount\":$(usd 4.00),\"custom_id\":\"Q1\"}"
eq "refund above the capture refused" "422 REFUND_AMOUNT_EXCEEDED" "$CODE $(j '.details[0].issue')"
pp pr1 "/v2/payments/captures/$CAPID/refund" "{\"amount\":$(usd 2.00),\"custom_id\":\"Q1\"}"
eq "partial refund, PayPal's default minimal answer: id, status, links" "201 COMPLETED null self" \
  "$CODE $(j '"\(.status) \(.amount.value) \(.links[0].rel)"')"
REFID=$(j .id); PREF=$BODY
pp pr1 "/v2/payments/captures/$CAPID/refund" "{\"amount\":$(usd 2.00),\"custom_id\":\"Q1\"}"
eq "refund replayed returns the same answer" "201 $PREF" "$CODE $BODY"
PREFER=return=representation pp pr2 "/v2/payments/captures/$CAPID/refund" "{\"amount\":$(usd 1.00),\"custom_id\":\"Q1\"}"
eq "second refund up to the capture, the whole refund asked for" "201 COMPLETED 1.00 Q1" \
  "$CODE $(j '"\(.status) \(.amount.value) \(.custom_id)"')"
pp pr3 "/v2/payments/captures/$CAPID/refund" "{\"amount\":$(usd 0.01),\"custom_id\":\"Q1\"}"
eq "refund of a fully refunded capture refused" "422 REFUND_AMOUNT_EXCEEDED" "$CODE $(j '.details[0].issue')"
sim refund_decline_next=1
pp pr4 "/v2/payments/captures/$CAPID/refund" "{\"amount\":$(usd 0.01)}"
eq "nothing left on that capture even for a declined refund" "422 REFUND_AMOUNT_EXCEEDED" "$CODE $(j '.details[0].issue')"
pp pv1 "/v2/payments/authorizations/$AUTHID/void"
eq "void after partial captures" "200 VOIDED" "$CODE $(j .status)"
pp pc4 "/v2/payments/authorizations/$AUTHID/capture" "{\"amount\":$(usd 1.00)}"
eq "capture after void refused" "422 AUTHORIZATION_VOIDED" "$CODE $(j '.details[0].issue')"
pp pv2 "/v2/payments/authorizations/$AUTHID/void"
eq "void after void refused" "422 PREVIOUSLY_VOIDED" "$CODE $(j '.details[0].issue')"
eq "totals: authorized captured refunded voided" "1000 500 300 500" \
  "$(curl -sf "$PS/_sim/totals?payment_id=Q1" | jq -r '"\(.authorized) \(.captured) \(.refunded) \(.voided)"')"

log "paypal-like: full capture, decline, refund decline, expiry"
pp pa2 /v2/checkout/orders "${ORDER/Q1/Q2}"
AUTH2=$(j '.purchase_units[0].payments.authorizations[0].id')
pp pc5 "/v2/payments/authorizations/$AUTH2/capture" '{"final_capture":true}'
eq "capture without an amount captures it all" "201 10.00 true" "$CODE $(j '"\(.amount.value) \(.final_capture)"')"
CAP2=$(j .id)
pp pv3 "/v2/payments/authorizations/$AUTH2/void"
eq "void after full capture refused" "422 PREVIOUSLY_CAPTURED" "$CODE $(j '.details[0].issue')"
pp pr5 "/v2/payments/captures/$CAP2/refund" "{\"amount\":$(usd 1.00)}"
eq "injected refund decline" "422 REFUND_FAILED_INSUFFICIENT_FUNDS" "$CODE $(j '.details[0].issue')"
eq "the declined refund took nothing" "0 100" \
  "$(curl -sf "$PS/_sim/totals?payment_id=Q2" | jq -r '"\(.refunded) \(.refund_failed)"')"
pp pa3 /v2/checkout/orders "$(sed 's/pm_card_visa/pm_card_chargeDeclined/; s/Q1/Q3/' <<<"$ORDER")"
eq "declined authorization" "422 INSTRUMENT_DECLINED" "$CODE $(j '.details[0].issue')"
sim auth_expiry_ms=300
pp pa4 /v2/checkout/orders "${ORDER/Q1/Q4}"
AUTH4=$(j '.purchase_units[0].payments.authorizations[0].id')
sim auth_expiry_ms=0
expired4() { [ "$(total Q4 expired)" = 1000 ]; }
check "the authorization expires by itself" wait_until 10 expired4
pp pc6 "/v2/payments/authorizations/$AUTH4/capture" "{\"amount\":$(usd 1.00)}"
eq "capture after expiry refused" "422 AUTHORIZATION_EXPIRED" "$CODE $(j '.details[0].issue')"

log "paypal-like: the sale and status queries"
pp ps1 /v2/payments/captures "{\"amount\":$(usd 20.00),\"payment_source\":\"pm_card_visa\",\"custom_id\":\"Q5\"}"
eq "sale unchanged" "201 COMPLETED" "$CODE $(j .status)"
SALE=$(j .id)
pp pr6 "/v2/payments/captures/$SALE/refund" "{\"amount\":$(usd 5.00),\"custom_id\":\"Q5\"}"
eq "refund of a sale" "201 COMPLETED" "$CODE $(j .status)"
curl -s -H "$AUTH" "$PS/v2/_lookup?request_id=pc1" >"$T/lookup"
eq "lookup by request id returns the capture's answer" "$PCAP" "$(cat "$T/lookup")"
get "/v2/_lookup?request_id=never-sent"
eq "lookup of an unknown request id" 404 "$CODE"
get "/v2/payments/captures/$CAPID"
eq "GET capture" "200 REFUNDED" "$CODE $(j .status)"
get "/v2/payments/refunds/$REFID"
eq "GET refund" "200 COMPLETED 2.00" "$CODE $(j '"\(.status) \(.amount.value)"')"
get "/v2/checkout/orders/$(jq -r .id <<<"$PFIRST")"
eq "GET order" "200 VOIDED" "$CODE $(j '.purchase_units[0].payments.authorizations[0].status')"
get "/v2/payments/authorizations/AUTH-nope"
eq "GET of an unknown authorization" "404 INVALID_RESOURCE_ID" "$CODE $(j '.details[0].issue')"

log "procsim stops cleanly"
pid=$(cat "$T/procsim-backup.pid")
kill -TERM "$pid"
gone() { pid_gone "$pid"; }
check "procsim exits on SIGTERM" wait_until 20 gone
check "no sanitizer report from procsim" no_sanitizer_reports
finish
