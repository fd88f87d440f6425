/* charge_db: attempts in Postgres, one round trip per cycle. */
#include "clock.h"
#include "charge_db.h"

#include <glib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "pg.h"

/* The first attempt of a payment goes to the primary; sends (from $3) counts
 * a first send that leaves right after this commits. The money is the
 * payment's as recorded: an event whose copy disagrees opens nothing (it is
 * read, and dead-lettered, instead). */
static const char SQL_BEGIN_ATTEMPTS[] =
    "INSERT INTO charge_attempts (payment_id, processor, idempotency_key, amount_minor, currency,"
    " sends) SELECT p.payment_id, $2, 'paystream:' || p.payment_id || ':' || $2, p.amount_minor,"
    " p.currency, u.s FROM unnest($1::text[], $3::int[], $4::bigint[], $5::text[], $6::text[])"
    " AS u(id, s, amt, cur, pm)"
    " JOIN payments p ON p.payment_id = u.id AND p.amount_minor = u.amt AND p.currency = u.cur"
    " AND p.payment_method = u.pm"
    " WHERE p.status IN ('scored', 'charging')"
    " AND NOT EXISTS (SELECT 1 FROM charge_attempts a WHERE a.payment_id = p.payment_id)"
    " ON CONFLICT DO NOTHING RETURNING payment_id,"
    " (SELECT to_jsonb(k)->>'kind' FROM payments k WHERE k.payment_id = charge_attempts.payment_id)";

/* A payment whose first attempt was opened above is `charging` now. */
static const char SQL_MARK_CHARGING[] =
    "UPDATE payments SET status = 'charging', updated_at = now()"
    " WHERE payment_id = ANY($1::text[]) AND status = 'scored'"
    " AND EXISTS (SELECT 1 FROM charge_attempts a WHERE a.payment_id = payments.payment_id)";

/* Each payment with its live (not abandoned) attempt, if any: for what the
 * cycle's own writes do not tell (redeliveries, failovers, races). */
static const char SQL_READ[] =
    "SELECT u.ord, encode(p.outcome, 'hex'), a.state, a.processor_charge_id,"
    " a.fee_minor, a.processor, a.sends, a.refused,"
    " (extract(epoch FROM now() - a.created_at) * 1000)::bigint,"
    " p.amount_minor, p.currency, p.payment_method, p.status, to_jsonb(p)->>'kind',"
    " CASE WHEN to_jsonb(a) ? 'settled_by' THEN coalesce(to_jsonb(a)->>'settled_by', '')"
    "      ELSE 'charge' END,"
    /* the first send's age (027's first_sent_at; before it, or sent before
     * it, created_at: never later than the first send) */
    " CASE WHEN a.sends > 0 THEN (extract(epoch FROM now() - coalesce("
    "   (to_jsonb(a)->>'first_sent_at')::timestamptz, a.created_at)) * 1000)::bigint END"
    " FROM unnest($1::text[]) WITH ORDINALITY AS u(id, ord)"
    " JOIN payments p ON p.payment_id = u.id"
    " LEFT JOIN charge_attempts a ON a.payment_id = u.id AND a.state <> 'abandoned'";

/* Written before a request leaves: a crash after this leaves sends > refused,
 * so the attempt can never be abandoned for another processor. */
static const char SQL_COUNT_SENDS[] =
    "UPDATE charge_attempts SET sends = sends + 1, updated_at = now()"
    " FROM unnest($1::text[], $2::text[]) AS u(id, proc)"
    " WHERE payment_id = u.id AND processor = u.proc AND state = 'charging'"
    " RETURNING payment_id";

/* A send that provably wrote nothing never reached the processor. */
static const char SQL_COUNT_REFUSED[] =
    "UPDATE charge_attempts SET refused = refused + 1, updated_at = now()"
    " FROM unnest($1::text[], $2::text[]) AS u(id, proc)"
    " WHERE payment_id = u.id AND processor = u.proc AND state = 'charging'";

/* Failover: abandon an attempt nobody received and open one at the next
 * processor — the CHECK on abandoned and the one-live-attempt index make the
 * database refuse anything else. */
static const char SQL_ABANDON[] =
    "UPDATE charge_attempts SET state = 'abandoned', error = 'never received: ' || u.why,"
    " updated_at = now() FROM unnest($1::text[], $2::text[], $3::text[]) AS u(id, proc, why)"
    " WHERE payment_id = u.id AND processor = u.proc AND state = 'charging' AND sends = refused";

static const char SQL_FAILOVER[] =
    "INSERT INTO charge_attempts (payment_id, processor, idempotency_key, amount_minor, currency)"
    " SELECT p.payment_id, u.next, 'paystream:' || p.payment_id || ':' || u.next,"
    " p.amount_minor, p.currency FROM unnest($1::text[], $2::text[]) AS u(id, next)"
    " JOIN payments p ON p.payment_id = u.id AND p.status = 'charging'"
    " ON CONFLICT DO NOTHING";

/* `failed` only for an attempt that no send beyond the answered one may
 * have reached (own = 1: this is the processor's answer to one counted
 * send; own = 0: we end it ourselves, so every send must have been refused
 * — another worker's send counted meanwhile keeps it open): an ambiguous
 * attempt is never given up. */
static const char SQL_RECORD_ATTEMPTS[] =
    "UPDATE charge_attempts a SET state = u.s, processor_charge_id = u.cid,"
    " decline_code = u.dc, fee_minor = u.fee, error = u.err, updated_at = now()"
    " FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::bigint[],"
    " $7::text[], $8::int[]) AS u(id, proc, s, cid, dc, fee, err, own)"
    " WHERE a.payment_id = u.id AND a.processor = u.proc AND a.state = 'charging'"
    " AND (u.s <> 'failed' OR a.sends <= a.refused + u.own)"
    " RETURNING a.payment_id";

static const char SQL_RECORD_PAYMENTS[] =
    "UPDATE payments p SET status = CASE u.s WHEN 'succeeded' THEN 'charged' ELSE u.s END,"
    " outcome = decode(u.o, 'hex'), error_code = u.code, processor = u.proc,"
    " processor_charge_id = u.cid, fee_minor = u.fee, updated_at = now()"
    " FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::bigint[], $6::text[],"
    " $7::text[]) AS u(id, proc, s, cid, fee, o, code)"
    " WHERE p.payment_id = u.id AND p.status = 'charging'"
    " AND EXISTS (SELECT 1 FROM charge_attempts a WHERE a.payment_id = u.id"
    " AND a.processor = u.proc AND a.state = u.s)"
    " RETURNING p.payment_id";

static char *dup_or_null(PGresult *r, int row, int col);

/* The end of an isolated payment (charge.c isolate), in its own
 * transaction: an attempt nobody received (every send provably refused,
 * counted in SQL, not from our copy) ends `failed`; the payment then ends
 * `failed` with its outcome unless an attempt may hold the charge (it stays
 * `charging`, listed in charge_unresolved). Then what Postgres holds. */
static const char SQL_ISOLATE_ATTEMPT[] =
    "UPDATE charge_attempts SET state = 'failed', error = $2, updated_at = now()"
    " WHERE payment_id = $1 AND state = 'charging' AND sends = refused";

static const char SQL_ISOLATE_PAYMENT[] =
    "UPDATE payments p SET status = 'failed', outcome = decode($2, 'hex'),"
    " error_code = 'charge_data_error', updated_at = now()"
    " WHERE p.payment_id = $1 AND p.status IN ('scored', 'charging')"
    " AND NOT EXISTS (SELECT 1 FROM charge_attempts a WHERE a.payment_id = p.payment_id"
    "   AND a.state NOT IN ('abandoned', 'failed'))";

static const char SQL_ISOLATE_READ[] =
    "SELECT p.status, encode(p.outcome, 'hex'), EXISTS (SELECT 1 FROM charge_attempts a"
    "   WHERE a.payment_id = p.payment_id AND a.state = 'charging' AND a.sends > a.refused)"
    " FROM payments p WHERE p.payment_id = $1";

int charge_db_isolate_end(stage_ctx *ctx, citem *x, const char *outcome_hex, char *err,
                          size_t errlen) {
  const char *pa[] = {x->ev->payment_id, "isolated: postgres refused its data"};
  const char *pp[] = {x->ev->payment_id, outcome_hex};
  const char *pr[] = {x->ev->payment_id};
  pg_stmt stmts[] = {{SQL_ISOLATE_ATTEMPT, 2, pa}, {SQL_ISOLATE_PAYMENT, 2, pp},
                     {SQL_ISOLATE_READ, 1, pr}};
  PGresult *res[3] = {0};
  int rc = pg_pipeline(&ctx->pg, stmts, 3, res, err, errlen);
  if (rc == 0) {
    item_row *d = &x->db;
    free(d->outcome_hex);
    d->outcome_hex = NULL;
    x->end_status[0] = 0;
    x->may_hold = false;
    if (PQntuples(res[2]) == 1) {
      snprintf(x->end_status, sizeof x->end_status, "%s", PQgetvalue(res[2], 0, 0));
      d->outcome_hex = dup_or_null(res[2], 0, 1);
      x->may_hold = PQgetvalue(res[2], 0, 2)[0] == 't';
    }
  }
  pg_results_clear(res, 3);
  return rc;
}

const char *charge_db_answer_state(const citem *x) {
  return x->ans.kind == CHARGE_SUCCEEDED  ? "succeeded"
         : x->ans.kind == CHARGE_DECLINED ? "declined"
                                          : "failed";
}

void charge_db_row_free(item_row *r) {
  free(r->proc_name);
  free(r->outcome_hex);
  free(r->charge_id);
  free(r->payment_method);
  r->proc_name = r->outcome_hex = r->charge_id = r->payment_method = NULL;
}

static char *dup_or_null(PGresult *r, int row, int col) {
  if (PQgetisnull(r, row, col)) return NULL;
  char *s = strdup(PQgetvalue(r, row, col));
  if (!s) abort();
  return s;
}

/* Fills items from a SQL_READ result (u.ord is the 1-based index). */
static void parse_read(const processor *procs, int nproc, PGresult *r, citem **it, size_t n,
                       int64_t now) {
  for (int row = 0; row < PQntuples(r); row++) {
    long ord = strtol(PQgetvalue(r, row, 0), NULL, 10);
    if (ord < 1 || (size_t)ord > n) continue;
    citem *x = it[ord - 1];
    item_row *d = &x->db;
    charge_db_row_free(d);
    d->known = true;
    d->outcome_hex = dup_or_null(r, row, 1);
    d->has_attempt = !PQgetisnull(r, row, 2);
    snprintf(d->state, sizeof d->state, "%s", PQgetvalue(r, row, 2));
    d->charge_id = dup_or_null(r, row, 3);
    d->fee_minor = strtoll(PQgetvalue(r, row, 4), NULL, 10);
    d->proc_name = dup_or_null(r, row, 5);
    d->proc = d->proc_name ? processor_index(procs, nproc, d->proc_name) : -1;
    d->sends = atoi(PQgetvalue(r, row, 6));
    d->refused = atoi(PQgetvalue(r, row, 7));
    d->created_ms = now - strtoll(PQgetvalue(r, row, 8), NULL, 10);
    d->amount_minor = strtoll(PQgetvalue(r, row, 9), NULL, 10);
    snprintf(d->currency, sizeof d->currency, "%s", PQgetvalue(r, row, 10));
    d->payment_method = dup_or_null(r, row, 11);
    snprintf(d->pay_status, sizeof d->pay_status, "%s", PQgetvalue(r, row, 12));
    d->authorize = strcmp(PQgetvalue(r, row, 13), "authorize") == 0; /* Postgres's, not the event's */
    d->settled_by_charge = strcmp(PQgetvalue(r, row, 14), "charge") == 0;
    d->first_sent_ms = 0;
    if (!PQgetisnull(r, row, 15)) {
      d->first_sent_ms = now - strtoll(PQgetvalue(r, row, 15), NULL, 10);
      if (!d->first_sent_ms) d->first_sent_ms = 1;
    }
    x->said = SAID_READ;
  }
}

/* The first column of every row of r, as a set (valid while r lives). */
static GHashTable *returned_ids(PGresult *r) {
  GHashTable *h = g_hash_table_new(g_str_hash, g_str_equal);
  for (int row = 0; r && row < PQntuples(r); row++) g_hash_table_add(h, PQgetvalue(r, row, 0));
  return h;
}

/* Its answer was recorded in this trip: the state is what was written. */
static void know_recorded(citem *x, const processor *procs) {
  bool ok = x->ans.kind == CHARGE_SUCCEEDED;
  item_row *d = &x->db;
  d->known = d->has_attempt = true;
  snprintf(d->state, sizeof d->state, "%s", charge_db_answer_state(x));
  free(d->outcome_hex);
  d->outcome_hex = ok || !x->record_outcome_hex ? NULL : strdup(x->record_outcome_hex);
  free(d->charge_id);
  d->charge_id = ok ? strdup(x->ans.charge_id) : NULL;
  free(d->proc_name);
  d->proc_name = strdup(procs[d->proc].name);
  d->fee_minor = ok ? x->ans.fee_minor : 0;
  d->settled_by_charge = true;
  x->said = SAID_WRITTEN;
}

/* Its first attempt was opened at the primary in this trip (a send counted
 * with it has not been answered: local sends stay 0). The money it is sent
 * with was checked equal to the payment's by the INSERT. */
static void know_opened(citem *x, const processor *procs, int64_t now, bool authorize) {
  item_row *d = &x->db;
  const ps_intent *in = x->ev->intent;
  charge_db_row_free(d);
  d->known = d->has_attempt = true;
  snprintf(d->state, sizeof d->state, "charging");
  snprintf(d->pay_status, sizeof d->pay_status, "charging");
  d->fee_minor = 0;
  d->proc = 0;
  d->proc_name = strdup(procs[0].name);
  d->sends = d->refused = 0;
  d->created_ms = now;
  d->first_sent_ms = 0; /* an eager send sets it as it starts */
  d->amount_minor = in->amount->amount_minor;
  snprintf(d->currency, sizeof d->currency, "%s", in->amount->currency);
  d->payment_method = strdup(in->payment_method->id);
  d->authorize = authorize;
  x->said = SAID_WRITTEN;
}

/* Reads the state of items the trip's writes did not tell, in a second
 * round trip (the first has committed; this one only reads). Items it
 * cannot read are SAID_UNREAD and looked at again later. */
static void read_state(stage_ctx *ctx, const processor *procs, int nproc, citem **it, size_t n) {
  if (!n) return;
  pg_array ids;
  pg_arrays_init(&ids, 1);
  for (size_t i = 0; i < n; i++) {
    pg_array_add_str(&ids, it[i]->ev->payment_id);
    it[i]->said = SAID_UNREAD;       /* until its row says otherwise */
    it[i]->db.known = false;         /* no row: Postgres does not know the payment */
  }
  const char *p[1];
  pg_arrays_finish(&ids, 1, p);
  pg_stmt stmt = {SQL_READ, 1, p};
  PGresult *res[1] = {0};
  char err[512];
  if (pg_pipeline(&ctx->pg, &stmt, 1, res, err, sizeof err) == 0) {
    for (size_t i = 0; i < n; i++) it[i]->said = SAID_READ;
    parse_read(procs, nproc, res[0], it, n, ps_mono_ms());
  } else {
    log_warn("charge state read failed (read again later): %s", err);
  }
  pg_results_clear(res, 1);
  pg_arrays_free(&ids, 1);
}

/* The trip's statement parameters, one array per column, by name. */
typedef struct trip_arrays {
  pg_array refused_id, refused_proc;                              /* SQL_COUNT_REFUSED */
  pg_array failover_id, failover_proc, failover_why, failover_next; /* SQL_ABANDON, _FAILOVER */
  pg_array rec_id, rec_proc, rec_state, rec_charge_id, rec_decline, rec_fee, rec_error,
      rec_outcome, rec_code, rec_own;                             /* SQL_RECORD_* */
  pg_array fresh_id, fresh_sends, fresh_amount, fresh_currency, fresh_pm; /* SQL_BEGIN_ATTEMPTS */
  pg_array send_id, send_proc;                                    /* SQL_COUNT_SENDS */
} trip_arrays;

/* The same, finished: the literals bound as parameters. */
typedef struct trip_params {
  const char *refused_id, *refused_proc;
  const char *failover_id, *failover_proc, *failover_why, *failover_next;
  const char *rec_id, *rec_proc, *rec_state, *rec_charge_id, *rec_decline, *rec_fee, *rec_error,
      *rec_outcome, *rec_code, *rec_own;
  const char *fresh_id, *fresh_sends, *fresh_amount, *fresh_currency, *fresh_pm;
  const char *send_id, *send_proc;
} trip_params;

#define TRIP_NARRAYS (sizeof(trip_arrays) / sizeof(pg_array))
_Static_assert(sizeof(trip_arrays) == TRIP_NARRAYS * sizeof(pg_array), "no padding");
_Static_assert(sizeof(trip_params) == TRIP_NARRAYS * sizeof(const char *), "one literal each");

/* Both structs are their members in order, all of one type: walked as arrays. */
static pg_array *arrays_of(trip_arrays *a) { return (pg_array *)(void *)a; }

static void fill_arrays(trip_arrays *a, const processor *procs, const trip *t) {
  for (size_t i = 0; i < t->nbook; i++) {
    const citem *x = t->book[i];
    const char *pid = x->ev->payment_id, *proc = procs[x->db.proc].name;
    if (x->st == IT_REFUSED || x->st == IT_REFUSED_FAILOVER) {
      pg_array_add_str(&a->refused_id, pid);
      pg_array_add_str(&a->refused_proc, proc);
    }
    if (x->st == IT_REFUSED_FAILOVER || x->st == IT_FAILOVER) {
      pg_array_add_str(&a->failover_id, pid);
      pg_array_add_str(&a->failover_proc, proc);
      pg_array_add_str(&a->failover_why, "nothing written or circuit open");
      pg_array_add_str(&a->failover_next, procs[x->db.proc + 1].name);
    }
  }
  for (size_t i = 0; i < t->nrec; i++) {
    const citem *x = t->rec[i];
    bool ok = x->ans.kind == CHARGE_SUCCEEDED, dec = x->ans.kind == CHARGE_DECLINED;
    pg_array_add_str(&a->rec_id, x->ev->payment_id);
    pg_array_add_str(&a->rec_proc, procs[x->db.proc].name);
    pg_array_add_str(&a->rec_state, charge_db_answer_state(x));
    pg_array_add_str(&a->rec_charge_id, ok ? x->ans.charge_id : NULL);
    pg_array_add_str(&a->rec_decline, dec ? x->ans.decline_code : NULL);
    if (ok) pg_array_add_int(&a->rec_fee, x->ans.fee_minor);
    else pg_array_add_str(&a->rec_fee, NULL);
    pg_array_add_str(&a->rec_error, x->ans.error[0] ? x->ans.error : NULL);
    pg_array_add_str(&a->rec_outcome, x->record_outcome_hex);
    pg_array_add_str(&a->rec_code, ok ? NULL : dec ? x->ans.decline_code : x->fail_code);
    pg_array_add_int(&a->rec_own, x->never_sent ? 0 : 1); /* answers one counted send */
  }
  for (size_t i = 0; i < t->nfresh; i++) {
    const ps_intent *in = t->fresh[i]->ev->intent;
    pg_array_add_str(&a->fresh_id, t->fresh[i]->ev->payment_id);
    pg_array_add_int(&a->fresh_sends, i < t->neager ? 1 : 0);
    pg_array_add_int(&a->fresh_amount, in->amount->amount_minor);
    pg_array_add_str(&a->fresh_currency, in->amount->currency);
    pg_array_add_str(&a->fresh_pm, in->payment_method->id);
  }
  for (size_t i = 0; i < t->nsend; i++) {
    pg_array_add_str(&a->send_id, t->send[i]->ev->payment_id);
    pg_array_add_str(&a->send_proc, procs[t->send[i]->db.proc].name);
  }
}

static void say_all(trip *t, trip_said s) {
  for (size_t i = 0; i < t->nfresh; i++) t->fresh[i]->said = s;
  for (size_t i = 0; i < t->nbook; i++) t->book[i]->said = s;
  for (size_t i = 0; i < t->nrec; i++) t->rec[i]->said = s;
  for (size_t i = 0; i < t->nsend; i++) t->send[i]->said = s;
}

/* What the committed trip's results say about each item; the rest is read. */
static void learn(stage_ctx *ctx, const processor *procs, int nproc, trip *t, PGresult **res,
                  int i_att, int i_pay, int i_begin, int i_send) {
  int64_t now = ps_mono_ms();
  citem **unknown = malloc((t->nrec + t->nfresh + 1) * sizeof *unknown);
  if (!unknown) abort();
  size_t nunknown = 0;
  for (size_t i = 0; i < t->nbook; i++) t->book[i]->said = SAID_BOOKED;
  if (i_att >= 0) {
    GHashTable *att_done = returned_ids(res[i_att]), *pay_done = returned_ids(res[i_pay]);
    for (size_t i = 0; i < t->nrec; i++) {
      citem *x = t->rec[i];
      if (g_hash_table_contains(att_done, x->ev->payment_id) &&
          g_hash_table_contains(pay_done, x->ev->payment_id))
        know_recorded(x, procs);
      else
        unknown[nunknown++] = x;
    }
    g_hash_table_destroy(att_done);
    g_hash_table_destroy(pay_done);
  }
  if (i_begin >= 0) {
    GHashTable *opened = g_hash_table_new(g_str_hash, g_str_equal); /* id -> payments.kind */
    for (int row = 0; row < PQntuples(res[i_begin]); row++)
      g_hash_table_insert(opened, PQgetvalue(res[i_begin], row, 0),
                          PQgetvalue(res[i_begin], row, 1));
    for (size_t i = 0; i < t->nfresh; i++) {
      citem *x = t->fresh[i];
      const char *kind = g_hash_table_lookup(opened, x->ev->payment_id);
      if (kind) {
        know_opened(x, procs, now, strcmp(kind, "authorize") == 0);
        if (i < t->neager) x->said = SAID_COUNTED; /* its first send is counted: it leaves */
      } else {
        unknown[nunknown++] = x;
      }
    }
    g_hash_table_destroy(opened);
  }
  if (i_send >= 0) {
    GHashTable *live = returned_ids(res[i_send]);
    for (size_t i = 0; i < t->nsend; i++)
      t->send[i]->said =
          g_hash_table_contains(live, t->send[i]->ev->payment_id) ? SAID_COUNTED : SAID_NOT_LIVE;
    g_hash_table_destroy(live);
  }
  read_state(ctx, procs, nproc, unknown, nunknown);
  free(unknown);
}

/* Everything the cycle must make durable or learn, in one transaction and
 * one round trip, in this order: refused sends and failovers; answers
 * (then read back: the truth to emit); first attempts (then read); counted
 * sends (RETURNING: only still-live attempts may be sent). Returns 0, or -1
 * with err set when nothing of it happened. */
static int round_trip(stage_ctx *ctx, const processor *procs, int nproc, trip *t, char *err,
                      size_t errlen) {
  trip_arrays a;
  trip_params p;
  pg_arrays_init(arrays_of(&a), (int)TRIP_NARRAYS);
  fill_arrays(&a, procs, t);
  pg_arrays_finish(arrays_of(&a), (int)TRIP_NARRAYS, (const char **)(void *)&p);
  const char *refused[] = {p.refused_id, p.refused_proc};
  const char *abandon[] = {p.failover_id, p.failover_proc, p.failover_why};
  const char *next[] = {p.failover_id, p.failover_next};
  const char *att[] = {p.rec_id, p.rec_proc, p.rec_state, p.rec_charge_id,
                       p.rec_decline, p.rec_fee, p.rec_error, p.rec_own};
  const char *pay[] = {p.rec_id, p.rec_proc, p.rec_state, p.rec_charge_id,
                       p.rec_fee, p.rec_outcome, p.rec_code};
  const char *fresh[] = {p.fresh_id,     procs[0].name,    p.fresh_sends,
                         p.fresh_amount, p.fresh_currency, p.fresh_pm};
  const char *sends[] = {p.send_id, p.send_proc};
  pg_stmt stmts[12];
  int ns = 0, i_att = -1, i_pay = -1, i_begin = -1, i_send = -1;
  if (t->nbook) {
    stmts[ns++] = (pg_stmt){SQL_COUNT_REFUSED, 2, refused};
    stmts[ns++] = (pg_stmt){SQL_ABANDON, 3, abandon};
    stmts[ns++] = (pg_stmt){SQL_FAILOVER, 2, next};
  }
  if (t->nrec) {
    i_att = ns;
    stmts[ns++] = (pg_stmt){SQL_RECORD_ATTEMPTS, 8, att};
    i_pay = ns;
    stmts[ns++] = (pg_stmt){SQL_RECORD_PAYMENTS, 7, pay};
  }
  if (t->nfresh) {
    i_begin = ns;
    stmts[ns++] = (pg_stmt){SQL_BEGIN_ATTEMPTS, 6, fresh};
    stmts[ns++] = (pg_stmt){SQL_MARK_CHARGING, 1, fresh};
  }
  if (t->nsend) {
    i_send = ns;
    stmts[ns++] = (pg_stmt){SQL_COUNT_SENDS, 2, sends};
  }
  int rc = 0;
  if (ns) {
    PGresult *res[12] = {0};
    rc = pg_pipeline(&ctx->pg, stmts, ns, res, err, errlen);
    if (rc == 0) learn(ctx, procs, nproc, t, res, i_att, i_pay, i_begin, i_send);
    pg_results_clear(res, ns);
  }
  pg_arrays_free(arrays_of(&a), (int)TRIP_NARRAYS);
  return rc;
}

static size_t trip_size(const trip *t) { return t->nfresh + t->nbook + t->nrec + t->nsend; }

/* The first (half) or the rest of each group of t. */
static trip trip_part(const trip *t, bool first) {
  size_t hf = t->nfresh / 2, hb = t->nbook / 2, hr = t->nrec / 2, hs = t->nsend / 2;
  /* Never an empty half: the first takes the odd one of the first non-empty group. */
  if (!hf && !hb && !hr && !hs) {
    if (t->nfresh) hf = 1;
    else if (t->nbook) hb = 1;
    else if (t->nrec) hr = 1;
    else hs = 1;
  }
  size_t eager1 = t->neager < hf ? t->neager : hf;
  if (first) return (trip){t->fresh, hf, t->book, hb, t->rec, hr, t->send, hs, eager1};
  return (trip){t->fresh + hf, t->nfresh - hf, t->book + hb, t->nbook - hb,
                t->rec + hr,   t->nrec - hr,     t->send + hs, t->nsend - hs,
                t->neager - eager1};
}

/* The one item of a trip. */
static citem *trip_only(const trip *t) {
  return t->nfresh ? t->fresh[0] : t->nbook ? t->book[0] : t->nrec ? t->rec[0] : t->send[0];
}

int charge_db_trip(stage_ctx *ctx, const processor *procs, int nproc, trip *t) {
  char err[512];
  if (!trip_size(t)) return 0;
  if (round_trip(ctx, procs, nproc, t, err, sizeof err) == 0) return 0;
  if (!pg_err_is_data_error(err)) {
    log_warn("charge bookkeeping failed (retried next cycle): %s", err);
    say_all(t, SAID_FAILED);
    return -1;
  }
  if (trip_size(t) == 1) {
    /* Refused on its own: retrying it would fail the same way, and hold
     * every payment behind it. */
    citem *x = trip_only(t);
    x->said = SAID_ISOLATED;
    snprintf(x->reason, sizeof x->reason, "charge data error: %.200s", err);
    return 0;
  }
  /* Each half is its own transaction; a half that committed stays
   * committed if the other is split again (each write is conditional). */
  trip first = trip_part(t, true), rest = trip_part(t, false);
  int a = charge_db_trip(ctx, procs, nproc, &first);
  int b = charge_db_trip(ctx, procs, nproc, &rest);
  return a || b ? -1 : 0;
}
