#!/usr/bin/env bash
# payctl's command line: every command is in `payctl --help`, in payctl.c's
# header and in the README; a bad command line (an invalid number, time or
# duration, an unknown option) exits 2 with a message naming it; missing
# things exit 3, a refusal by the current state 4, a dependency down 5.
# payctl reconcile checks every configured processor (primary and backup,
# summed) with API keys read as the workers read them (NAME or NAME_FILE).
source "$(dirname "$0")/lib.sh"

SRC=$REPO/tools/payctl/payctl.c
help_list() { "$PAYCTL" --help | sed -n '/^commands:/,/^$/p' | sed '1d;$d'; }
header_list() { sed -n '/Commands (as `payctl --help` lists them):/,/^ \*$/p' "$SRC" | sed '1d;$d' | sed 's/^ \* //'; }
check "payctl --help exits 0" quietly "$PAYCTL" --help
eq "payctl.c's header lists exactly the commands --help lists" "$(help_list)" "$(header_list)"
eq "--help lists every row of the dispatch table" "$(grep -cE '^ +\{"[a-z]+", cmd_' "$SRC")" "$(help_list | wc -l)"
check "(and the table is not empty)" test "$(help_list | wc -l)" -ge 15
in_readme() {
  local c
  for c in $(help_list | awk '{print $1}'); do
    qgrep "^| \`payctl $c\b" "$REPO/README.md" || { log "README lacks payctl $c"; return 1; }
    "$PAYCTL" "$c" --help | qgrep "^  payctl $c" || { log "payctl $c --help"; return 1; }
  done
}
check "every command has its README row and its own --help" in_readme
check "--help documents the exit codes" eval '"$PAYCTL" --help | qgrep "^  5  unavailable"'

# Usage errors: exit 2, before anything is touched (no stack is up yet).
check "no command: usage" exits_with 2 "^usage: payctl <command>" "$PAYCTL"
check "an unknown command" exits_with 2 "unknown command 'frobnicate'" "$PAYCTL" frobnicate
check "an invalid count" exits_with 2 "--count takes a whole number from 0 to [0-9]+, not '12abc'" \
  "$PAYCTL" publish --count 12abc
check "a count in another style" exits_with 2 "--count takes a whole number" "$PAYCTL" publish --count=1e3
check "an unknown option" exits_with 2 "payctl publish: unknown option --bogus" "$PAYCTL" publish --bogus 1
check "a missing value" exits_with 2 "payctl wait: option --terminal needs a value" "$PAYCTL" wait --terminal
check "a negative target" exits_with 2 "--terminal takes a whole number from 0" "$PAYCTL" wait --terminal -3
check "a non-numeric timeout" exits_with 2 "--timeout takes a whole number" "$PAYCTL" wait --terminal 1 --timeout 5s
check "a rate that is not a number" exits_with 2 "--rate takes a whole number" "$PAYCTL" load --rate fast
check "a percentage out of range" exits_with 2 "--declines takes a number from 0 to 100, not '150'" \
  "$PAYCTL" load --declines 150
check "an offset that is not a number" exits_with 2 "--to-offset takes a whole number from 0" \
  "$PAYCTL" replay --stage ingest --to-offset 1e3
check "a partition list with junk" exits_with 2 "--partitions takes a whole number" \
  "$PAYCTL" replay --stage ingest --to-offset earliest --partitions 0,x
check "an unknown stage" exits_with 2 "--stage must be ingest, fraud, charge or ledger" \
  "$PAYCTL" replay --stage nowhere --to-offset earliest
check "both targets at once" exits_with 2 "exactly one of --to-offset and --to-time" \
  "$PAYCTL" replay --stage ingest --to-offset earliest --to-time 2026-11-25T10:00:00Z
check "a dead letter's partition that is not a number" exits_with 2 "<partition> takes a whole number" \
  "$PAYCTL" dlq show zero 1
check "a duration in words" exits_with 2 "--older-than takes a duration like 30d" \
  "$PAYCTL" idempotency prune --older-than "3 weeks"
check "an unknown ledger verb" exits_with 2 "usage: payctl ledger verify" "$PAYCTL" ledger frobnicate
check "an unknown blocklist kind" exits_with 2 "usage: payctl blocklist" "$PAYCTL" blocklist add phone 555
check "counts that do not add up" exits_with 2 "the counts do not add up" "$PAYCTL" publish --count 5 --duplicates 9
check "a bad setting is a usage error naming it" exits_with 2 "PAYSTREAM_REDIS_PORT" \
  env PAYSTREAM_REDIS_PORT=notaport "$PAYCTL" summary
check "Postgres down: unavailable (exit 5)" exits_with 5 "could not connect to postgres" \
  env PAYSTREAM_PG_DSN="host=127.0.0.1 port=1 dbname=paystream user=postgres connect_timeout=2" "$PAYCTL" summary

stack_up
# Not found (3) and refused (4).
check "status of no payment" exits_with 3 "no payment for merchant m_1 key nokey" "$PAYCTL" status m_1 nokey
check "no such account" exits_with 3 "no account nope:account" "$PAYCTL" ledger balance nope:account
check "no entries for a payment" exits_with 3 "no ledger entries for pay_nope" "$PAYCTL" ledger entries pay_nope
check "no such claim" exits_with 3 "no claim for merchant m_1 key nokey" "$PAYCTL" idempotency show m_1 nokey
check "no such dead letter" exits_with 3 "no message at payments.dlq\[0\]@999999" "$PAYCTL" dlq show 0 999999
check "no such file to publish" exits_with 3 "could not open /nonexistent.jsonl" \
  "$PAYCTL" publish --json /nonexistent.jsonl

# reconcile with an empty database: both processors are asked, each with
# the key from its own _FILE (a stand-in processor records what it got).
R=$PAYSTREAM_RUN_DIR
printf 'sk_primary_from_file\n' >"$R/primary.key"
printf 'sk_backup_from_file\n' >"$R/backup.key"
python3 - "$R/capture.port" "$R/capture.auth" <<'PY' &
import http.server, sys
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        with open(sys.argv[2], "a") as f: f.write(self.headers.get("Authorization", "") + "\n")
        b = b'{"object":"list","data":[]}'
        self.send_response(200); self.send_header("Content-Length", str(len(b))); self.end_headers()
        self.wfile.write(b)
    def log_message(self, *a): pass
s = http.server.HTTPServer(("127.0.0.1", 0), H)
open(sys.argv[1], "w").write(str(s.server_address[1]))
for _ in range(4): s.handle_request()  # charges, then operations, of each
PY
capture=$!
check "the stand-in processor listens" wait_until 20 test -s "$R/capture.port"
CAPTURE=http://127.0.0.1:$(cat "$R/capture.port")
check "reconcile reads both keys from their _FILE" exits_with 0 "0 processor charges, 0 ledger postings, 0 differences" \
  env PAYSTREAM_PROCESSOR_URL="$CAPTURE" PAYSTREAM_PROCESSOR_API_KEY_FILE="$R/primary.key" \
  PAYSTREAM_BACKUP_PROCESSOR_URL="$CAPTURE" PAYSTREAM_BACKUP_PROCESSOR_API_KEY_FILE="$R/backup.key" "$PAYCTL" reconcile
check "the stand-in was asked four times" wait_until 20 eval "! kill -0 $capture 2>/dev/null"
kill "$capture" 2>/dev/null
eq "with each processor's own key" "Bearer sk_primary_from_file,Bearer sk_backup_from_file,Bearer sk_primary_from_file,Bearer sk_backup_from_file" \
  "$(paste -sd, "$R/capture.auth")"
check "an unreadable key file is a setting error naming the variable" \
  exits_with 2 "PAYSTREAM_BACKUP_PROCESSOR_API_KEY_FILE: could not read /nonexistent" \
  env PAYSTREAM_BACKUP_PROCESSOR_URL="$PAYSTREAM_PROCESSOR_URL" \
  PAYSTREAM_BACKUP_PROCESSOR_API_KEY_FILE=/nonexistent "$PAYCTL" reconcile
check "a processor that cannot be reached: unavailable (exit 5)" \
  exits_with 5 "could not list the charges of processor backup" \
  env PAYSTREAM_BACKUP_PROCESSOR_URL=http://127.0.0.1:9 "$PAYCTL" reconcile

# Charges at both processors: a load on the primary, then one while the
# primary refuses connections, which fails over to the backup.
"$STACK" start-backup-procsim
BACKUP_URL=http://127.0.0.1:$(cat "$R/backup.port")
export PAYSTREAM_BACKUP_PROCESSOR_URL=$BACKUP_URL PAYSTREAM_BACKUP_PROCESSOR_NAME=backup
for s in ingest fraud ledger; do "$STACK" start-worker "$s" 1; done
"$STACK" start-worker charge 1
settled() { [ "$(sql "SELECT count(*) = $1 AND bool_and(status = 'succeeded') FROM payments")" = t ]; }
"$PAYCTL" publish --count 20 --run pri >/dev/null
check "a load on the primary settles" wait_until 90 settled 20
check "replay refuses while the stage's workers hold partitions (exit 4)" \
  exits_with 4 "group ingest has live members holding [0-9]+ of the partitions" \
  "$PAYCTL" replay --stage ingest --to-offset earliest
PAYSTREAM_STOP_TIMEOUT=20 "$STACK" stop-workers >/dev/null
for s in ingest fraud ledger; do "$STACK" start-worker "$s" 2; done
PAYSTREAM_PROCESSOR_URL_OVERRIDE=http://127.0.0.1:9 "$STACK" start-worker charge 2
"$PAYCTL" publish --count 20 --run bk >/dev/null
check "a load with the primary down settles" wait_until 120 settled 40
backup_charges() { curl -sf "$BACKUP_URL/v1/charges" | jq '[.data[] | select(.status=="succeeded")] | length'; }
eq "the second load was charged at the backup" "20" "$(backup_charges)"
check "reconcile matches the charges of both processors" exits_with 0 \
  "^reconcile: 40 processor charges, 40 ledger postings, 0 differences" "$PAYCTL" reconcile
# What reconcile said when it asked only the primary: the backup's payments
# looked posted without a charge.
check "asked only the primary, the backup's 20 look uncharged (exit 1)" exits_with 1 \
  "20 processor charges, 40 ledger postings, 20 differences" env -u PAYSTREAM_BACKUP_PROCESSOR_URL "$PAYCTL" reconcile
# A payment charged at both processors is charged twice, whatever each list says alone.
twice=$(sql "SELECT payment_id FROM payments WHERE idempotency_key = 'pri-000000'")
amount=$(sql "SELECT amount_minor FROM payments WHERE payment_id = '$twice'")
currency=$(sql "SELECT lower(currency) FROM payments WHERE payment_id = '$twice'")
curl -sf -X POST "$BACKUP_URL/v1/charges" -H 'Authorization: Bearer sk_test_local' -H 'Idempotency-Key: manual-second' \
  --data "amount=$amount&currency=$currency&payment_method=pm_card_visa&metadata%5Bpayment_id%5D=$twice" >/dev/null
check "a second charge at the other processor is found (exit 1)" exits_with 1 \
  "DIFFERENCE charged more than once: $twice .* at stripe.* at backup|DIFFERENCE charged more than once: $twice .* at backup.* at stripe" \
  "$PAYCTL" reconcile
check "workers stop cleanly on SIGTERM" "$STACK" stop-workers
check "no sanitizer reports" no_sanitizer_reports
finish
