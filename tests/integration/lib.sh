# tests/integration/lib.sh: the harness every integration scenario sources.
# Starts a private local stack (real Postgres, Redis, Apache Kafka, procsim
# and the real worker binaries) in a temporary run directory, offers assertions
# and condition waits with deadlines, and always tears the stack down.
# Usage: source lib.sh; stack_up; ...; check "name" cmd...; finish
set -uo pipefail
# qgrep ARGS...: grep -q that reads its whole input. Under pipefail
# `cmd | grep -q X` fails at random: grep leaves at the first match and cmd,
# still writing, dies of SIGPIPE (141), which pipefail reports as the
# pipeline's status (events_apply_paypal's "won" outcome: 5 failures in 5
# where payctl outcomes printed more after the match). Use it, not grep -q,
# in every test that sources this file (not needed inside sh -c / bash -c).
qgrep() { grep -c "$@" >/dev/null; }

BUILD=${1:?usage: $0 <build-dir>}
BUILD=$(cd "$BUILD" && pwd)
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
export PAYSTREAM_BIN_DIR=$BUILD
export PAYSTREAM_RUN_DIR=$(mktemp -d /tmp/paystream-test.XXXXXX)
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
STACK=$REPO/deploy/local/stack
PAYCTL=$BUILD/payctl
passed=0
failed=0

log() { printf '# %s\n' "$*"; }

teardown() {
  "$STACK" down >/dev/null 2>&1 || true
  if [ "$failed" -eq 0 ] && [ -z "${KEEP_RUN_DIR:-}" ]; then rm -rf "$PAYSTREAM_RUN_DIR"; fi
}
trap teardown EXIT

# stack_up [--brokers N]
stack_up() {
  "$STACK" up "$@" || { echo "not ok - stack did not start"; exit 1; }
  # shellcheck disable=SC1091
  . "$PAYSTREAM_RUN_DIR/env"
}

# check NAME CMD...: records a pass when CMD succeeds (and returns its verdict).
check() {
  local name=$1; shift
  if "$@"; then
    passed=$((passed + 1)); echo "ok - $name"
  else
    failed=$((failed + 1)); echo "not ok - $name"; return 1
  fi
}

# eq NAME EXPECTED ACTUAL
eq() {
  if [ "$2" == "$3" ]; then
    passed=$((passed + 1)); echo "ok - $1"
  else
    failed=$((failed + 1)); echo "not ok - $1: expected '$2', got '$3'"
  fi
}

# wait_until SECONDS CMD...: polls CMD until it succeeds or the deadline passes.
wait_until() {
  local secs=$1; shift
  local end=$((SECONDS + secs))
  until "$@" >/dev/null 2>&1; do
    [ $SECONDS -lt $end ] || return 1
    sleep 0.2
  done
}

quietly() { "$@" >/dev/null 2>&1; }
# redis_is_ours PORT: the Redis answering on PORT is this run's (its dir is
# the run directory), not another stack's that took a freed port.
redis_is_ours() {
  [ "$(redis-cli -p "$1" config get dir 2>/dev/null | sed -n 2p)" = "$(cd "$PAYSTREAM_RUN_DIR" && pwd -P)" ]
}
# serve_on_free_port NAME READY CMD...: starts CMD in the background with
# every @PORT@ in its arguments replaced by a free port, and prints the port
# once READY PORT succeeds. A free port may be taken by someone else between
# the check and the bind: when CMD exits (lost the race) or READY fails for
# 30 s, it is stopped and tried again on another port (5 times). The pid is
# written to $PAYSTREAM_RUN_DIR/pids/NAME.pid (stop-workers stops it).
serve_on_free_port() {
  local name=$1 ready=$2 port pid try a; shift 2
  for try in 1 2 3 4 5; do
    port=$("$STACK" free-port) || return 1
    local args=()
    for a in "$@"; do args+=("${a//@PORT@/$port}"); done
    "${args[@]}" >>"$PAYSTREAM_RUN_DIR/$name.log" 2>&1 &
    pid=$!
    local end=$((SECONDS + 30))
    while kill -0 "$pid" 2>/dev/null && [ $SECONDS -lt $end ]; do
      if "$ready" "$port" >/dev/null 2>&1; then
        echo "$pid" >"$PAYSTREAM_RUN_DIR/pids/$name.pid"
        echo "$port"; return 0
      fi
      sleep 0.2
    done
    kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null
    log "$name did not serve on port $port (try $try): another port"
  done
  return 1
}
# pid_gone PID: no such process, or only a zombie (nothing reaps a process
# whose parent exited where PID 1 does not).
pid_gone() { local s; ! s=$(ps -o stat= -p "$1" 2>/dev/null) || [[ $s == Z* ]]; }

# http_status STAGE INSTANCE PATH: the HTTP status a worker's probe answers.
http_status() {
  curl -s -o /dev/null -w '%{http_code}' \
    "http://127.0.0.1:$(cat "$PAYSTREAM_RUN_DIR/metrics/$1-$2.port")$3"
}
# probe_body STAGE INSTANCE PATH: the body, whatever the status (a 503's too).
probe_body() { curl -s "http://127.0.0.1:$(cat "$PAYSTREAM_RUN_DIR/metrics/$1-$2.port")$3"; }
ready() { [ "$(http_status "$1" "$2" /readyz)" = 200 ]; }
not_ready() { [ "$(http_status "$1" "$2" /readyz)" = 503 ]; }

# metric STAGE INSTANCE SERIES: the sum of a worker's /metrics samples whose
# line starts with SERIES (a name, or a name and the start of its labels).
# Prints nothing and fails when the endpoint does not answer 2xx or has no
# such series, so a dead worker never reads as "0".
metric() {
  local body
  body=$("$STACK" http "$1" "$2" /metrics) || { echo "metric: $1-$2 /metrics did not answer" >&2; return 1; }
  awk -v s="$3" 'index($0, s) == 1 { sum += $NF; n++ } END { if (n) printf "%d\n", sum; else exit 1 }' <<<"$body" \
    || { echo "metric: $1-$2 exports no series $3" >&2; return 1; }
}

sql() { psql "$PAYSTREAM_PG_DSN" -qAtX -F $'\t' -c "$1"; }
# Payments and operations of merchant m1 (the lifecycle scenarios) by key:
# status_of KEY, is_status KEY STATUS, pid_of KEY, op_state KEY [MERCHANT]
# ("state code"), op_done KEY (posted, rejected or declined). A scenario
# that means something else by one of these names defines its own.
status_of() { sql "SELECT status FROM payments WHERE merchant_id = 'm1' AND idempotency_key = '$1'"; }
is_status() { [ "$(status_of "$1")" = "$2" ]; }
pid_of() { sql "SELECT payment_id FROM payments WHERE merchant_id = 'm1' AND idempotency_key = '$1'"; }
op_state() { sql "SELECT state || ' ' || coalesce(error_code, '') FROM payment_operations WHERE merchant_id = '${2:-m1}' AND idempotency_key = '$1'" | sed 's/ $//'; }
op_done() { case "$(op_state "$1")" in posted|rejected*|declined*) return 0 ;; *) return 1 ;; esac; }
# sql_refused SQL PATTERN: Postgres refuses the statement with a message
# matching PATTERN (refused is the old name, kept for callers).
sql_refused() {
  local out
  out=$(psql "$PAYSTREAM_PG_DSN" -qAtX -v ON_ERROR_STOP=1 -c "$1" 2>&1) && return 1
  qgrep -- "$2" <<<"$out"
}
refused() { sql_refused "$@"; }
# exits_with CODE PATTERN CMD...: CMD exits with exactly CODE (payctl --help
# lists payctl's) and says PATTERN (grep -E, stdout or stderr), so a crash
# or a different failure does not pass for the refusal a test expects.
exits_with() {
  local want=$1 pattern=$2 out rc; shift 2
  out=$("$@" 2>&1); rc=$?
  [ "$rc" -eq "$want" ] && qgrep -E -- "$pattern" <<<"$out" && return 0
  log "expected exit $want and /$pattern/; got exit $rc: $(head -c 400 <<<"$out")"
  return 1
}

# No sanitizer report in any worker or tool log.
no_sanitizer_reports() {
  ! grep -l -E 'AddressSanitizer|LeakSanitizer|runtime error:' "$PAYSTREAM_RUN_DIR"/logs/*.log \
    "$PAYSTREAM_RUN_DIR"/*.log 2>/dev/null
}

finish() {
  if [ "$failed" -ne 0 ]; then
    log "run directory kept for inspection: $PAYSTREAM_RUN_DIR"
    for f in "$PAYSTREAM_RUN_DIR"/logs/*.log; do
      [ -e "$f" ] || continue
      log "--- last lines of $f"; tail -n 20 "$f" | sed 's/^/#   /'
    done
  fi
  echo "$passed passed, $failed failed"
  [ "$failed" -eq 0 ]
}

# publish_trickle CHUNKS SIZE PAUSE_S PREFIX [payctl publish options...]
# Publishes CHUNKS batches of SIZE intents, PAUSE_S apart (open loop), each
# with its own run name and manifest ($PAYSTREAM_RUN_DIR/PREFIX-N.jsonl).
publish_trickle() {
  local chunks=$1 size=$2 pause=$3 prefix=$4; shift 4
  for i in $(seq 1 "$chunks"); do
    "$PAYCTL" publish --count "$size" --run "$prefix$i" --seed "$i" \
      --manifest "$PAYSTREAM_RUN_DIR/$prefix-$i.jsonl" "$@" >/dev/null || return 1
    sleep "$pause"
  done
}

# exit_status STAGE I: the exit status the supervisor recorded for worker
# STAGE-I's last start (nothing while it runs).
exit_status() {
  local pid; pid=$(cat "$PAYSTREAM_RUN_DIR/pids/$1-$2.pid") || return 1
  cat "$PAYSTREAM_RUN_DIR/exits/$1-$2.$pid" 2>/dev/null
}

# Workers log "partitions assigned" once they own partitions.
assigned() { qgrep 'partitions assigned' "$PAYSTREAM_RUN_DIR/logs/$1.log"; }

# all_terminal [N]: exactly N intents (default $expected) are terminal.
all_terminal() { [ "$(terminal_count)" -eq "${1:-$expected}" ]; }
# terminal_exactly N [TIMEOUT]: payctl wait (at least N terminal), then
# exactly N: one more would be a request processed twice.
terminal_exactly() {
  "$PAYCTL" wait --terminal "$1" --timeout "${2:-240}" >/dev/null || return 1
  local have; have=$(terminal_count)
  [ "$have" -eq "$1" ] || { log "expected exactly $1 terminal, found $have"; return 1; }
}
# caught_up [STAGE...]: each stage's group (default all four) committed
# everything: total lag 0.
caught_up() {
  local s
  for s in ${*:-ingest fraud charge ledger}; do
    "$PAYCTL" lag --stage "$s" | qgrep "total lag 0" || return 1
  done
}
# sim QUERY [URL]: configures procsim (default the primary), e.g.
# sim "fail_rate=1&fail_status=503".
sim() { curl -sf -X POST "${2:-$PAYSTREAM_PROCESSOR_URL}/_sim/config?$1" >/dev/null; }
# processor_charges [URL]: procsim's charge list, one JSON object a line.
processor_charges() { curl -sf "${1:-$PAYSTREAM_PROCESSOR_URL}/v1/charges" | jq -c '.data[]'; }
now_ms() { date +%s%3N; }
# intent KEY [FILTER [JQ_ARGS...]]: one intent as JSON (payctl publish
# --json's input): merchant m_1, customer cus_KEY, 15.00 USD, created now
# (or at $now when the script set it), paid with pm_card_visa. FILTER, a jq
# update such as '.amount_minor = 4200 | .customer_id = $c', changes it;
# JQ_ARGS (--arg c cus_1 ...) are its variables.
intent() {
  local k=$1 f=${2:-.}
  shift; [ $# -eq 0 ] || shift
  jq -nc --arg k "$k" --argjson t "${now:-$(now_ms)}" "$@" \
    '{idempotency_key: $k, merchant_id: "m_1", customer_id: ("cus_" + $k), amount_minor: 1500,
      currency: "USD", created_at_ms: $t, payment_method: {id: "pm_card_visa"}} | '"$f"
}

terminal_count() {
  sql "SELECT (SELECT count(*) FROM payments WHERE outcome IS NOT NULL) + (SELECT count(*) FROM rejections)"
}
payment_count() { sql "SELECT count(*) FROM payments"; }

# Expected terminal count for a manifest: every line but duplicates and garbage.
manifest_terminal() { jq -r 'select(.kind|test("^duplicate|^garbage")|not) | .key' "$1" | wc -l; }

# assert_invariants MANIFEST: what DESIGN.md promises, checked from Postgres,
# procsim's charge list and payments.outcomes, against what was published.
assert_invariants() {
  local M=$1 R=$PAYSTREAM_RUN_DIR
  local valid='select(.kind=="valid" or .kind=="decline" or .kind=="fraud" or .kind=="slow")'
  local base; base=$(jq -r "$valid | .key" "$M" | wc -l)

  # 1. one request, one payment
  eq "one payment per valid key" "$base" "$(payment_count)"
  eq "no (merchant, key) has two payments" "0" \
    "$(sql "SELECT count(*) FROM (SELECT 1 FROM payments GROUP BY merchant_id, idempotency_key HAVING count(*) > 1) d")"
  jq -r "$valid | [.merchant,.key,.expect] | @tsv" "$M" | sort >"$R/status.exp"
  sql "SELECT merchant_id, idempotency_key, status FROM payments" | sort >"$R/status.act"
  check "each valid intent ends as expected" cmp -s "$R/status.exp" "$R/status.act"
  eq "no payment left in flight" "0" "$(sql "SELECT count(*) FROM payments WHERE outcome IS NULL")"
  jq -r "$valid | [.merchant,.key,.amount] | @tsv" "$M" | sort >"$R/amounts.exp"
  sql "SELECT merchant_id, idempotency_key, amount_minor FROM payments" | sort >"$R/amounts.act"
  check "every payment has its original amount (reused keys changed nothing)" cmp -s "$R/amounts.exp" "$R/amounts.act"
  eq "reused keys are rejected" "$(jq -r 'select(.kind=="conflict") | .key' "$M" | wc -l)" \
    "$(sql "SELECT count(*) FROM rejections WHERE error_code = 'idempotency_key_reused'")"
  jq -r 'select(.kind=="invalid") | .code' "$M" | sort | uniq -c >"$R/codes.exp"
  sql "SELECT error_code FROM rejections WHERE error_code <> 'idempotency_key_reused'" | sort | uniq -c >"$R/codes.act"
  check "invalid intents are rejected with the right codes" cmp -s "$R/codes.exp" "$R/codes.act"

  # 2. never charge twice (the processor's own record)
  curl -sf "$PAYSTREAM_PROCESSOR_URL/v1/charges" >"$R/charges.json"
  eq "no payment charged twice at the processor" "0" \
    "$(jq '[.data[] | select(.status=="succeeded") | .metadata.payment_id] | group_by(.) | map(select(length > 1)) | length' "$R/charges.json")"
  jq -r '.data[] | select(.status=="succeeded") | [.metadata.payment_id, .amount] | @tsv' "$R/charges.json" | sort >"$R/charged.act"
  sql "SELECT payment_id, amount_minor FROM payments WHERE status = 'succeeded'" | sort >"$R/charged.exp"
  check "each charge at the processor is for its payment's original amount" cmp -s "$R/charged.exp" "$R/charged.act"
  eq "every succeeded payment charged exactly once" "$(sql "SELECT count(*) FROM payments WHERE status='succeeded'")" \
    "$(jq '[.data[] | select(.status=="succeeded")] | length' "$R/charges.json")"

  # 4. one outcome per intent, identical when re-sent. Outcomes are produced
  # after the database commit, and payctl outcomes reads to the high watermark
  # it finds at start: read until every terminal outcome is there (or 60 s).
  local O=$R/outcomes.jsonl
  outcomes_complete() {
    "$PAYCTL" outcomes >"$O" 2>/dev/null &&
      [ "$(jq -r 'select(.replayed==false and .status!="review") | .payment_id' "$O" | sort -u | wc -l)" -ge "$(manifest_terminal "$M")" ]
  }
  wait_until 60 outcomes_complete || log "outcomes still short after 60 s"
  eq "one terminal outcome per payment and rejection" "$(manifest_terminal "$M")" \
    "$(jq -r 'select(.replayed==false and .status!="review") | .payment_id' "$O" | sort -u | wc -l)"
  eq "re-sent outcomes are byte-identical" "0" \
    "$(jq -r 'select(.replayed==false) | [.payment_id,.raw] | @tsv' "$O" | sort -u | cut -f1 | uniq -d | wc -l)"
  jq -r "$valid | [.key,.expect] | @tsv" "$M" | sort >"$R/outcome.exp"
  jq -r 'select(.replayed==false and (.payment_id|startswith("pay_"))) | [.idempotency_key,.status] | @tsv' "$O" | sort -u >"$R/outcome.act"
  check "each valid intent's outcome has the expected status" cmp -s "$R/outcome.exp" "$R/outcome.act"
  jq -r 'select(.replayed==true) | [.payment_id,.status] | @tsv' "$O" | sort -u >"$R/replayed"
  jq -r 'select(.replayed==false) | [.payment_id,.status] | @tsv' "$O" | sort -u >"$R/originals"
  eq "replayed outcomes repeat the original status" "0" "$(comm -23 "$R/replayed" "$R/originals" | wc -l)"
  jq -r 'select(.kind|startswith("duplicate")) | .key' "$M" | sort -u >"$R/dup.keys"
  eq "only duplicated keys get replayed outcomes" "0" \
    "$(jq -r 'select(.replayed==true) | .idempotency_key' "$O" | sort -u | comm -23 - "$R/dup.keys" | wc -l)"

  # 3. the books balance and match the processor
  check "payctl ledger verify passes" quietly "$PAYCTL" ledger verify
  eq "one ledger posting per succeeded payment" "$(sql "SELECT count(*) FROM payments WHERE status='succeeded'")" \
    "$(sql "SELECT count(*) FROM ledger_transactions")"
  sql "SELECT currency, -balance FROM ledger_accounts WHERE name = 'revenue:payments' ORDER BY currency" >"$R/revenue.act"
  jq -r '[.data[] | select(.status=="succeeded")] | group_by(.currency) | .[] | [(.[0].currency|ascii_upcase), (map(.amount)|add)] | @tsv' "$R/charges.json" | sort >"$R/revenue.exp"
  check "posted revenue equals the processor's successful charges" cmp -s "$R/revenue.exp" "$R/revenue.act"
}

# kill_and_restart STAGE-I: SIGKILLs that worker and starts it again. Each
# line is printed only once its action is seen done: "SIGKILLed STAGE-I PID"
# when it is gone and its supervisor recorded 137 (128 + SIGKILL),
# "restarted STAGE-I PID" when a new process runs (chaos tests count them).
kill_and_restart() {
  local victim=$1 stage=${1%-*} inst=${1#*-} pid new
  pid=$(cat "$PAYSTREAM_RUN_DIR/pids/$victim.pid")
  kill -KILL "$pid" && wait_until 10 test -e "$PAYSTREAM_RUN_DIR/exits/$victim.$pid" &&
    [ "$(cat "$PAYSTREAM_RUN_DIR/exits/$victim.$pid")" = 137 ] && echo "SIGKILLed $victim $pid"
  "$STACK" start-worker "$stage" "$inst" && new=$(cat "$PAYSTREAM_RUN_DIR/pids/$victim.pid") &&
    [ "$new" != "$pid" ] && kill -0 "$new" && echo "restarted $victim $new"
}

# start_events_pipeline: one instance of every worker, the webhook receiver
# and the events stage, each ready (the processor-event scenarios' start).
start_events_pipeline() {
  "$STACK" workers 1
  "$STACK" start-worker webhook 1
  "$STACK" start-worker events 1
  check "the receiver is ready" wait_until 60 ready webhook 1
  check "the events stage is ready" wait_until 60 ready events 1
}

# check_dispute_lost PROCESSOR: what must hold once a dispute of 4000 (fee
# 1500) on a 10000 sale was lost (payment $P, dispute $DP): its state,
# DESIGN's postings each once, the hold, the merchant's outcome, refunds
# never returning more than was captured, procsim's totals, a clean verify.
# Uses the scenario's own postings, amounts, refund and verify, and $SIM.
check_dispute_lost() {
  eq "the dispute: lost, withdrawn seen, 4000 held, fee 1500" "lost t 4000 1500" \
    "$(sql "SELECT status, seen_withdrawn, held_minor, fee_minor FROM disputes WHERE processor_dispute_id = '$DP'" | tr '\t' ' ')"
  eq "DESIGN's postings for a lost dispute, each once" \
  "dispute_withdrawal asset:disputed_funds D 4000
dispute_withdrawal asset:processor_receivable:$1 C 4000
dispute_fee expense:chargebacks D 1500
dispute_fee asset:processor_receivable:$1 C 1500
dispute_lost expense:chargebacks D 4000
dispute_lost asset:disputed_funds C 4000" "$(postings "$P")"
  eq "the payment holds 4000 disputed" "10000 0 4000" "$(amounts "$P")"
  lost_outcome() { "$PAYCTL" outcomes 2>/dev/null | jq -c --arg p "$P" 'select(.payment_id == $p and .status == "updated" and .dispute_status == "lost" and .disputed == 4000 and .processor_event == "dispute")' | qgrep .; }
  check "the merchant hears of it: an outcome updated / lost" wait_until 120 lost_outcome
  refund lost lost-r1 6001
  check "a refund of more than captured − disputed ends" wait_until 60 op_done lost-r1
  eq "it is refused" "rejected amount_exceeds_refundable" "$(op_state lost-r1)"
  refund lost lost-r2 6000
  check "a refund of what is left ends" wait_until 60 op_done lost-r2
  eq "it is refunded" "posted" "$(op_state lost-r2)"
  eq "dispute + refunds = what was captured, never more" "10000 6000 4000" "$(amounts "$P")"
  eq "procsim agrees" "10000 6000 4000" \
    "$(curl -sf "$SIM/_sim/totals?payment_id=$P" | jq -r '"\(.captured) \(.refunded) \(.disputed)"')"
  verify "lost"
}

# Postgres without fsync and full-page writes for every scenario's stack
# (durability across an OS crash only; deploy/local/stack's pg_fast_conf
# says why the scenarios' crashes are unaffected). PAYSTREAM_PG_FAST=0 to
# run a scenario with the durable settings.
export PAYSTREAM_PG_FAST=${PAYSTREAM_PG_FAST:-1}
