#!/usr/bin/env bash
# A migration never queues a live table's queries behind a long transaction
# for longer than lock_timeout. A test-only migration ALTERs `payments`
# while another session holds a long transaction on it: payctl migrate's
# attempt times out on the lock (PAYSTREAM_MIGRATE_LOCK_TIMEOUT_MS), rolls
# back at once and tries again later, so others' reads and writes of
# `payments` meanwhile finish within their own deadline. With its retries
# exhausted it exits 5 saying which lock it waited for, nothing of the file
# applied; once the long transaction ends, the migration applies.
source "$(dirname "$0")/lib.sh"
stack_up  # at head, through the same runner (033 and 034 set their own lock_timeout)
eq "the database is at head" "$(basename "$(ls "$REPO"/db/migrations/*.sql | sort | tail -1)")" \
  "$(sql "SELECT max(version) FROM schema_migrations")"
MIG=$PAYSTREAM_RUN_DIR/migrations-test
mkdir -p "$MIG"
cp "$REPO"/db/migrations/*.sql "$MIG/"
cat >"$MIG/999_lock_test.sql" <<'SQL'
CREATE TABLE lock_test_marker (x int);
ALTER TABLE payments ADD COLUMN lock_test int;
SQL
export PAYSTREAM_MIGRATIONS_DIR=$MIG PAYSTREAM_MIGRATE_LOCK_TIMEOUT_MS=1000

# The long transaction: a lock on payments held until this test ends it.
hold() {
  PGAPPNAME=long-txn psql "$PAYSTREAM_PG_DSN" -qAtX -c "BEGIN" \
    -c "LOCK TABLE payments IN ACCESS SHARE MODE" -c "SELECT pg_sleep(600)" >/dev/null 2>&1 &
}
held() {
  [ "$(sql "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a USING (pid)
            WHERE a.application_name = 'long-txn' AND l.relation = 'payments'::regclass AND l.granted")" -eq 1 ]
}
release() { sql "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'long-txn'" >/dev/null; }
# The migration's ALTER is queued on payments (every later query on it queues behind).
alter_waiting() {
  [ "$(sql "SELECT count(*) FROM pg_locks WHERE relation = 'payments'::regclass
            AND mode = 'AccessExclusiveLock' AND NOT granted")" -ge 1 ]
}
# Another session reads and writes payments, with its own 5 s deadline.
others_served() {
  local t0=$SECONDS
  psql "$PAYSTREAM_PG_DSN" -qAtX -v ON_ERROR_STOP=1 -c "SET statement_timeout = 5000" \
    -c "SELECT count(*) FROM payments" -c "UPDATE payments SET updated_at = updated_at WHERE false" \
    >/dev/null 2>"$PAYSTREAM_RUN_DIR/others.err" || { log "others: $(cat "$PAYSTREAM_RUN_DIR/others.err")"; return 1; }
  log "others served in $((SECONDS - t0)) s"
}
# migrate_bg OUT [env...]: payctl migrate in the background; its exit status in OUT.rc.
migrate_bg() {
  local out=$1; shift
  ( env "$@" timeout 150 "$PAYCTL" migrate >"$out" 2>&1; echo $? >"$out.rc" ) &
}
migrate_done() { [ -s "$1.rc" ]; }
nothing_applied() {
  [ "$(sql "SELECT (to_regclass('lock_test_marker') IS NULL)::text || ' ' ||
              (SELECT count(*) FROM information_schema.columns WHERE table_name = 'payments' AND column_name = 'lock_test') || ' ' ||
              (SELECT count(*) FROM schema_migrations WHERE version = '999_lock_test.sql')")" = "true 0 0" ]
}

# ---- retries exhausted --------------------------------------------------------------
hold
check "a long transaction holds payments" wait_until 30 held
A=$PAYSTREAM_RUN_DIR/migrate-a.log
migrate_bg "$A" PAYSTREAM_MIGRATE_RETRIES=2
check "the migration's ALTER queues behind the long transaction" wait_until 60 alter_waiting
check "others' reads and writes of payments are served meanwhile (5 s deadline, lock_timeout 1 s)" others_served
check "payctl migrate gives up within its retries" wait_until 120 migrate_done "$A"
eq "it exits 5 (unavailable)" 5 "$(cat "$A.rc" 2>/dev/null)"
check "it says it retried" qgrep "rolled back, attempt 3 of 3" "$A"
check "it says which lock it waited for and that nothing was applied" \
  qgrep -E "999_lock_test.sql not applied: waited for AccessExclusiveLock on table payments \(held by pid [0-9]+\).*nothing of it was applied" "$A"
check "nothing of the file is applied (no table, no column, not recorded)" nothing_applied
check "the long transaction is still there (the migration never broke it)" held
[ "$failed" -eq 0 ] || cat "$A"

# ---- the long transaction ends while it retries ---------------------------------------
B=$PAYSTREAM_RUN_DIR/migrate-b.log
migrate_bg "$B" PAYSTREAM_MIGRATE_RETRIES=100
check "the ALTER queues again" wait_until 60 alter_waiting
check "others are served again while it waits" others_served
retried() { qgrep "rolled back, attempt" "$B"; }
check "it rolls back and retries" wait_until 60 retried
release
check "once the long transaction ends, the migration applies" wait_until 120 migrate_done "$B"
eq "it exits 0" 0 "$(cat "$B.rc" 2>/dev/null)"
check "it says so" qgrep "applied 999_lock_test.sql" "$B"
eq "the file applied whole (table, column, recorded)" "false 1 1" \
  "$(sql "SELECT (to_regclass('lock_test_marker') IS NULL)::text || ' ' ||
              (SELECT count(*) FROM information_schema.columns WHERE table_name = 'payments' AND column_name = 'lock_test') || ' ' ||
              (SELECT count(*) FROM schema_migrations WHERE version = '999_lock_test.sql')")"
[ "$failed" -eq 0 ] || cat "$B"

# ---- another migrator applies a file while this one waits for the lock --------------------
# The file is found missing outside the migrators' lock; another migrator
# holding the lock applies it meanwhile. Asked again under the lock, it is
# not run a second time (its CREATE TABLE would fail if it were).
# race N [env...]: migration 999N, applied by another migrator while payctl
# migrate (with env) waits for the migrators' lock.
race() {
  local n=$1 f="999$1_race_test.sql"; shift
  echo "CREATE TABLE race_test_marker_$n (x int);" >"$MIG/$f"
  PGAPPNAME=other-migrator psql "$PAYSTREAM_PG_DSN" -qAtX -v ON_ERROR_STOP=1 -c "BEGIN" \
    -c "SELECT pg_advisory_xact_lock(4242)" \
    -c "DO \$\$ BEGIN FOR i IN 1..1200 LOOP
          EXIT WHEN EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND NOT granted);
          PERFORM pg_sleep(0.1); END LOOP; END \$\$" \
    -c "CREATE TABLE race_test_marker_$n (x int)" \
    -c "INSERT INTO schema_migrations (version) VALUES ('$f')" -c "COMMIT" \
    >"$PAYSTREAM_RUN_DIR/other-$n.log" 2>&1 &
  other_holds() {
    [ "$(sql "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a USING (pid)
              WHERE a.application_name = 'other-migrator' AND l.locktype = 'advisory' AND l.granted")" -eq 1 ]
  }
  check "another migrator holds the migrators' lock" wait_until 30 other_holds
  local out=$PAYSTREAM_RUN_DIR/migrate-race-$n.log
  migrate_bg "$out" "$@"
  check "payctl migrate ends" wait_until 120 migrate_done "$out"
  eq "it exits 0" 0 "$(cat "$out.rc" 2>/dev/null)"
  check "it says the other migrator applied the file" qgrep "$f was applied by another migrator" "$out"
  eq "the file ran once (recorded once)" 1 "$(sql "SELECT count(*) FROM schema_migrations WHERE version = '$f'")"
  [ "$failed" -eq 0 ] || cat "$out" "$PAYSTREAM_RUN_DIR/other-$n.log"
}
race 1
# The same where transactions default to a snapshot taken at their first
# statement (the lock's wait): the re-check runs READ COMMITTED all the same.
race 2 PAYSTREAM_PG_DSN="$PAYSTREAM_PG_DSN options='-c default_transaction_isolation=serializable'"
check "no sanitizer reports" no_sanitizer_reports
finish
