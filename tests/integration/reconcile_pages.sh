#!/usr/bin/env bash
# Plain payctl reconcile against a processor's list APIs as a real one
# serves them (#22 / #20):
#  - charges are listed Stripe's way, page by page (limit=100,
#    starting_after, has_more): 120 charges, with procsim answering at most
#    10 to a list without a limit (Stripe's default), reconcile clean;
#  - a processor without procsim's GET /_sim/operations (404): the charges
#    are reconciled, a note says the captures and refunds are left to
#    payctl reconcile --report, and that alone is no failure (exit 0);
#  - any other failure to read a list is still unavailable (exit 5).
source "$(dirname "$0")/lib.sh"
R=$PAYSTREAM_RUN_DIR
stack_up
"$STACK" workers 1
SIM="http://127.0.0.1:$(cat "$R/procsim.port")"
post() { curl -sf -X POST "$SIM$1"; }
settled() { [ "$(sql "SELECT count(*) = $1 AND bool_and(status = 'succeeded') FROM payments")" = t ]; }

"$PAYCTL" publish --count 120 --run pages >/dev/null
check "120 payments settle" wait_until 150 settled 120
post "/_sim/config?list_default_limit=10" >/dev/null
eq "procsim answers a list without a limit with Stripe's default page" "10 true" \
  "$(curl -sf "$SIM/v1/charges" | jq -r '"\(.data | length) \(.has_more)"')"
eq "and pages the Stripe way" "100 true 20 false" \
  "$(first=$(curl -sf "$SIM/v1/charges?limit=100"); last=$(jq -r '.data[-1].id' <<<"$first")
     echo "$(jq -r '"\(.data | length) \(.has_more)"' <<<"$first") $(curl -sf "$SIM/v1/charges?limit=100&starting_after=$last" | jq -r '"\(.data | length) \(.has_more)"')")"
check "120 charges over several pages reconcile clean" exits_with 0 \
  "^reconcile: 120 processor charges, 120 ledger postings, 0 differences" "$PAYCTL" reconcile

post "/_sim/config?sim_operations_list=0" >/dev/null
eq "this processor has no operations list" "404" \
  "$(curl -s -o /dev/null -w '%{http_code}' "$SIM/_sim/operations")"
check "without it the charges reconcile (exit 0)" exits_with 0 \
  "^reconcile: 120 processor charges, 120 ledger postings, 0 differences" "$PAYCTL" reconcile
check "and it says captures and refunds are left to the settlement report" exits_with 0 \
  "operations: not listed by processor stripe: .*payctl reconcile --report" "$PAYCTL" reconcile
check "a list that cannot be read is still unavailable (exit 5)" \
  exits_with 5 "could not list the charges of processor stripe" \
  env PAYSTREAM_PROCESSOR_URL="$SIM/nowhere" "$PAYCTL" reconcile
check "workers stop cleanly on SIGTERM" "$STACK" stop-workers
check "no sanitizer reports" no_sanitizer_reports
finish
