#!/usr/bin/env bash
# procsim_events: what procsim says on its own. Signed webhooks for every
# operation of both flavours (verified by a stdlib receiver,
# procsim_receiver.py, that also proves a wrong secret is detected), retries
# on non-2xx, injected duplication, loss, reordering and delay, expiry
# events without anyone asking, disputes (opened, funds withdrawn,
# reinstated, won, lost) and late refund failures on command, and the daily
# settlement report (every money movement, fees, net payout).
source "$(dirname "$0")/lib.sh"

T=$PAYSTREAM_RUN_DIR
STRIPE_SECRET=whsec_stripe_test PAYPAL_SECRET=whsec_paypal_test PAYPAL_WEBHOOK_ID=WH-TEST \
  /usr/bin/python3 "$REPO/tests/integration/procsim_receiver.py" "$T/receiver.port" "$T/events.jsonl" \
  >"$T/receiver.log" 2>&1 &
RECEIVER=$!
trap 'kill "$RECEIVER" 2>/dev/null; teardown' EXIT
wait_until 20 test -s "$T/receiver.port" || { echo "not ok - receiver did not start"; exit 1; }
RP=$(cat "$T/receiver.port")
touch "$T/events.jsonl"
"$STACK" start-backup-procsim || { echo "not ok - procsim did not start"; exit 1; }
PS="http://127.0.0.1:$(cat "$T/backup.port")"
AUTH="Authorization: Bearer sk_test_local"

sim() { curl -sf -X POST "$PS/_sim/config?$1" >/dev/null; }
sp() { curl -s -H "$AUTH" -H "Idempotency-Key: $1" -X POST ${3:+--data "$3"} "$PS$2"; }
pp() { curl -s -H "$AUTH" -H "PayPal-Request-Id: $1" -H 'Content-Type: application/json' \
  -X POST ${3:+--data-binary "$3"} "$PS$2"; }
sale() { sp "sale-$1" /v1/charges "amount=${2:-1000}&currency=usd&payment_method=pm_card_visa&metadata[payment_id]=$1" | jq -r .id; }
# events PID: the event types received (valid ones, each delivery once per line) for a payment.
events() { jq -r --arg p "$1" 'select(.payment_id == $p and .valid and .answered == 200) | .type' "$T/events.jsonl"; }
has_event() { events "$1" | qgrep -x -- "$2"; }
count_deliveries() { jq -r --arg p "$1" 'select(.payment_id == $p) | .id' "$T/events.jsonl" | wc -l; }
hook_state() { curl -sf "$PS/_sim/webhooks?payment_id=$1" | jq -r "[.data[] | .state] | join(\" \")"; }
usd() { printf '{"currency_code":"USD","value":"%s"}' "$1"; }

sim "stripe_webhook_url=http://127.0.0.1:$RP/stripe&paypal_webhook_url=http://127.0.0.1:$RP/paypal&stripe_webhook_secret=whsec_stripe_test&paypal_webhook_secret=whsec_paypal_test&paypal_webhook_id=WH-TEST&webhook_retry_ms=100"
check "the config never echoes a secret" bash -c "! curl -sf -X POST '$PS/_sim/config' | grep -q whsec_"

log "stripe-like events, signed"
sale P1 >/dev/null
check "charge.succeeded arrives, signature valid" wait_until 20 has_event P1 charge.succeeded
PI=$(sp a2 /v1/payment_intents 'amount=1000&currency=usd&capture_method=manual&confirm=true&payment_method=pm_card_visa&metadata[payment_id]=P2' | jq -r .id)
sp c2 "/v1/payment_intents/$PI/capture" 'amount_to_capture=400&final_capture=false' >/dev/null
sp r2 /v1/refunds "payment_intent=$PI&amount=100&metadata[payment_id]=P2" >/dev/null
sp v2 "/v1/payment_intents/$PI/cancel" >/dev/null
all_p2() { [ "$(events P2 | tr '\n' ' ')" = "payment_intent.amount_capturable_updated charge.captured refund.updated payment_intent.canceled " ]; }
check "authorize, capture, refund, void events in order, all valid" wait_until 20 all_p2
sp d3 /v1/charges 'amount=500&currency=usd&payment_method=pm_card_chargeDeclined&metadata[payment_id]=P3' >/dev/null
check "a declined sale sends charge.failed" wait_until 20 has_event P3 charge.failed

log "paypal-like events, signed"
ORDER=$(printf '{"intent":"AUTHORIZE","purchase_units":[{"custom_id":"Q1","amount":%s}],"payment_source":"pm_card_visa"}' "$(usd 10.00)")
AUTHID=$(pp qa1 /v2/checkout/orders "$ORDER" | jq -r '.purchase_units[0].payments.authorizations[0].id')
CAP=$(pp qc1 "/v2/payments/authorizations/$AUTHID/capture" "{\"amount\":$(usd 4.00)}" | jq -r .id)
pp qr1 "/v2/payments/captures/$CAP/refund" "{\"amount\":$(usd 1.00),\"custom_id\":\"Q1\"}" >/dev/null
pp qv1 "/v2/payments/authorizations/$AUTHID/void" >/dev/null
all_q1() { [ "$(events Q1 | tr '\n' ' ')" = "PAYMENT.AUTHORIZATION.CREATED PAYMENT.CAPTURE.COMPLETED PAYMENT.CAPTURE.REFUNDED PAYMENT.AUTHORIZATION.VOIDED " ]; }
check "authorize, capture, refund, void events in order, all valid" wait_until 20 all_q1

log "a wrong secret is detected by the receiver"
sim stripe_webhook_secret=not_the_secret
sale P4 >/dev/null
arrived_p4() { [ "$(count_deliveries P4)" -ge 1 ]; }
check "the event signed with another secret arrives" wait_until 20 arrived_p4
eq "and fails verification" false "$(jq -r 'select(.payment_id == "P4") | .valid' "$T/events.jsonl" | head -1)"
sim stripe_webhook_secret=whsec_stripe_test

log "retries, duplication, loss, reordering, delay"
curl -sf -X POST "http://127.0.0.1:$RP/fail?n=2" >/dev/null
sale P5 >/dev/null
check "refused twice, delivered on the third attempt" wait_until 20 has_event P5 charge.succeeded
eq "three deliveries of one event" "3 1" \
  "$(jq -r 'select(.payment_id == "P5") | .id' "$T/events.jsonl" | wc -l) $(jq -r 'select(.payment_id == "P5") | .id' "$T/events.jsonl" | sort -u | wc -l)"
eq "procsim counts the attempts" "delivered 3" \
  "$(curl -sf "$PS/_sim/webhooks?payment_id=P5" | jq -r '.data[0] | "\(.state) \(.attempts)"')"
sim webhook_dup_rate=1
sale P6 >/dev/null
twice() { [ "$(events P6 | wc -l)" = 2 ]; }
check "a duplicated event arrives twice" wait_until 20 twice
eq "with the same event id" 1 "$(jq -r 'select(.payment_id == "P6") | .id' "$T/events.jsonl" | sort -u | wc -l)"
sim webhook_dup_rate=0
sim webhook_lose_next=1
sale P7 >/dev/null
sale P8 >/dev/null
check "the event after a lost one arrives" wait_until 20 has_event P8 charge.succeeded
eq "the lost event never does" "0 lost" "$(count_deliveries P7) $(hook_state P7)"
sim 'webhook_reorder_next=1&webhook_reorder_ms=4000'
sale P9 >/dev/null
sale P10 >/dev/null
both() { has_event P9 charge.succeeded && has_event P10 charge.succeeded; }
check "held-back and later events both arrive" wait_until 20 both
eq "the later event overtook the held one" "P10 P9" \
  "$(jq -r 'select(.payment_id == "P9" or .payment_id == "P10") | .payment_id' "$T/events.jsonl" | tr '\n' ' ' | sed 's/ $//')"
sim webhook_delay_ms=5000
sale P11 >/dev/null
eq "a delayed event is pending at first" "pending 0" "$(hook_state P11) $(count_deliveries P11)"
check "and arrives later" wait_until 20 has_event P11 charge.succeeded
sim webhook_delay_ms=0

log "expiry is announced without anyone asking"
sim auth_expiry_ms=300
sp a12 /v1/payment_intents 'amount=700&currency=usd&capture_method=manual&confirm=true&payment_method=pm_card_visa&metadata[payment_id]=P12' >/dev/null
sim auth_expiry_ms=0
check "payment_intent.canceled (expired) arrives" wait_until 20 has_event P12 payment_intent.canceled
eq "with cancellation_reason expired" expired \
  "$(jq -r 'select(.payment_id == "P12" and .type == "payment_intent.canceled") | .object.cancellation_reason' "$T/events.jsonl" | head -1)"

log "disputes"
CH13=$(sale P13 1000)
D13=$(curl -sf -X POST "$PS/_sim/dispute?charge=$CH13&amount=600&fee=1500" | jq -r .id)
check "dispute opened" [ "${D13:0:3}" = dp_ ]
eq "a second dispute above what is left refused" 400 \
  "$(curl -s -o /dev/null -w '%{http_code}' -X POST "$PS/_sim/dispute?charge=$CH13&amount=500")"
eq "an open dispute's amount is not refundable" amount_too_large \
  "$(sp r13o /v1/refunds "charge=$CH13&amount=500&metadata[payment_id]=P13" | jq -r .error.code)"
curl -sf -X POST "$PS/_sim/dispute?id=$D13&action=funds_withdrawn" >/dev/null
eq "withdrawn funds are not refundable" amount_too_large \
  "$(sp r13 /v1/refunds "charge=$CH13&amount=500&metadata[payment_id]=P13" | jq -r .error.code)"
eq "what is left is" succeeded "$(sp r13b /v1/refunds "charge=$CH13&amount=400&metadata[payment_id]=P13" | jq -r .status)"
curl -sf -X POST "$PS/_sim/dispute?id=$D13&action=won" >/dev/null
disputed13() { [ "$(events P13 | grep dispute | tr '\n' ' ')" = "charge.dispute.created charge.dispute.funds_withdrawn charge.dispute.funds_reinstated charge.dispute.closed " ]; }
check "created, funds withdrawn, reinstated, closed" wait_until 20 disputed13
eq "closed won" won "$(jq -r 'select(.payment_id == "P13" and .type == "charge.dispute.closed") | .object.status' "$T/events.jsonl")"
eq "a won dispute holds nothing" 0 "$(curl -sf "$PS/_sim/totals?payment_id=P13" | jq -r .disputed)"
CH14=$(sale P14 1000)
D14=$(curl -sf -X POST "$PS/_sim/dispute?charge=$CH14&amount=300&fee=1500" | jq -r .id)
curl -sf -X POST "$PS/_sim/dispute?id=$D14&action=lost" >/dev/null
lost14() { [ "$(events P14 | grep dispute | tr '\n' ' ')" = "charge.dispute.created charge.dispute.funds_withdrawn charge.dispute.closed " ]; }
check "lost without a withdrawal first: withdrawn, then closed" wait_until 20 lost14
eq "a lost dispute keeps the funds" "300 1500" \
  "$(curl -sf "$PS/_sim/totals?payment_id=P14" | jq -r '"\(.disputed) \(.dispute_fees)"')"
eq "a closed dispute takes no more commands" 409 \
  "$(curl -s -o /dev/null -w '%{http_code}' -X POST "$PS/_sim/dispute?id=$D14&action=won")"
SALEQ=$(pp qs2 /v2/payments/captures "{\"amount\":$(usd 20.00),\"payment_source\":\"pm_card_visa\",\"custom_id\":\"Q2\"}" | jq -r .id)
DQ=$(curl -sf -X POST "$PS/_sim/dispute?charge=$SALEQ&amount=500" | jq -r .id)
curl -sf -X POST "$PS/_sim/dispute?id=$DQ&action=lost" >/dev/null
lostq() { [ "$(events Q2 | grep DISPUTE | tr '\n' ' ')" = "CUSTOMER.DISPUTE.CREATED CUSTOMER.DISPUTE.UPDATED CUSTOMER.DISPUTE.RESOLVED " ]; }
check "paypal-like dispute events" wait_until 20 lostq
eq "resolved lost" lost "$(jq -r 'select(.payment_id == "Q2" and .type == "CUSTOMER.DISPUTE.RESOLVED") | .object.outcome' "$T/events.jsonl")"

log "late refund failure"
CH15=$(sale P15 1000)
RE15=$(sp r15 /v1/refunds "charge=$CH15&amount=1000&metadata[payment_id]=P15" | jq -r .id)
eq "refund fails late" failed "$(curl -sf -X POST "$PS/_sim/refund_fail?refund=$RE15" | jq -r .status)"
failed15() { [ "$(events P15 | grep -c refund.updated)" = 2 ]; }
check "refund.updated succeeded, then failed" wait_until 20 failed15
eq "the failed refund's event says failed" failed \
  "$(jq -r 'select(.payment_id == "P15" and .type == "refund.updated") | .object.status' "$T/events.jsonl" | tail -1)"
eq "the amount is refundable again" "0 succeeded" \
  "$(curl -sf "$PS/_sim/totals?payment_id=P15" | jq -r .refunded) $(sp r15b /v1/refunds "charge=$CH15&amount=1000&metadata[payment_id]=P15" | jq -r .status)"
REFQ=$(pp qr2 "/v2/payments/captures/$SALEQ/refund" "{\"amount\":$(usd 1.00),\"custom_id\":\"Q2\"}" | jq -r .id)
curl -sf -X POST "$PS/_sim/refund_fail?refund=$REFQ" >/dev/null
check "PAYMENT.REFUND.FAILED" wait_until 20 has_event Q2 PAYMENT.REFUND.FAILED

log "daily settlement report"
DAY=$(date -u +%F)
curl -sf "$PS/_sim/settlement?day=$DAY" >"$T/settle.csv"
curl -sf "$PS/_sim/settlement?day=$DAY" >"$T/settle2.csv"
check "the same day twice gives the same report" cmp -s "$T/settle.csv" "$T/settle2.csv"
eq "header" "type,payment_id,processor_object_id,amount_minor,fee_minor,currency,payout_id" "$(head -1 "$T/settle.csv")"
row() { awk -F, -v t="$1" -v p="$2" '$1 == t && $2 == p { print $4 " " $5 }' "$T/settle.csv" | tr '\n' ' ' | sed 's/ $//'; }
eq "a sale" "1000 59" "$(row charge P1)"
eq "a capture" "400 42" "$(row capture P2)"
eq "a refund" "-100 0" "$(row refund P2)"
eq "a withdrawal with its fee, a reinstatement" "-600 1500" "$(row dispute_withdrawal P13)"
eq "a reinstatement" "600 0" "$(row dispute_reinstatement P13)"
eq "a refund and its late failure" "-1000 0 -1000 0" "$(row refund P15)"
eq "the late failure gives it back" "1000 0" "$(row refund_failure P15)"
eq "no line for a declined sale" "" "$(row charge P3)"
net() { awk -F, -v f="$1" 'NR > 1 && $1 != "payout" && $7 ~ f { s += $4 - $5 } END { print s }' "$T/settle.csv"; }
eq "stripe-like payout is the net" "$(net '^po_')" "$(awk -F, '$1 == "payout" && $3 ~ /^po_/ { print $4 }' "$T/settle.csv")"
eq "paypal-like payout is the net" "$(net '^PAYOUT_')" "$(awk -F, '$1 == "payout" && $3 ~ /^PAYOUT_/ { print $4 }' "$T/settle.csv")"
eq "another day is empty" 1 "$(curl -sf "$PS/_sim/settlement?day=2001-01-01" | wc -l)"
eq "a malformed day is refused" 400 "$(curl -s -o /dev/null -w '%{http_code}' "$PS/_sim/settlement?day=yesterday")"

log "procsim stops cleanly"
pid=$(cat "$T/procsim-backup.pid")
kill -TERM "$pid"
gone() { pid_gone "$pid"; }
check "procsim exits on SIGTERM" wait_until 20 gone
check "no sanitizer report from procsim" no_sanitizer_reports
finish
