/* payctl reconcile --report FILE: one processor's daily settlement report
 * (docs/procsim.md "Settlement report") against Postgres and the ledger,
 * then the payout posted once.
 *
 * The report's lines are loaded into a temporary table and matched in SQL,
 * each to our record of that movement by identity, never by the day we
 * posted it:
 *   charge, capture, refund      one by one, to the payment (sale) or the
 *       payment_operations row (capture, refund; by processor_op_id) and to
 *       the ledger transaction posted for it. A movement's posted amount is
 *       what it moved on asset:processor_receivable:{p} plus its processing
 *       fee, so the sale, capture and refund postings are read alike.
 *   dispute_withdrawal, dispute_reinstatement, refund_failure   per
 *       payment, type and object (the dispute's processor_dispute_id, the
 *       refund's processor_op_id) against the postings of that dispute or
 *       refund not yet in a payout (SQL_DISPUTE_TXS has the rules).
 *   payout                       = the sum of its lines' amounts minus fees.
 * A clean report records every movement it matched with its payout
 * (settlement_movements, migration 030: each in exactly one payout), so a
 * movement the processor made at 23:59:59.9 and we posted at 00:00:00.4 is
 * settled by its own day's report and not expected in the next day's.
 * Which of our movements a day's report must list: those in no payout
 * posted inside the day, away from its edges (DUE), or overdue.
 * Mismatch kinds (one line each, "MISMATCH <kind>: ..."):
 *   at_processor_not_in_ledger (also: a movement already settled in another
 *   payout), in_ledger_not_at_processor (DUE, in no payout, not in the
 *   report), amount_differs, fee_differs (against a known fee only: a sale
 *   a webhook settled without its fee has it unknown, and the report's fee
 *   is posted for it once, settlement_fees), status_differs (Postgres holds
 *   the movement but not as done: a charging/failed payment, a
 *   processing/declined operation), payout_differs (the payout is not its
 *   lines' net, or was already posted with another amount).
 * Only a clean report posts its payouts (debit asset:cash, credit
 * asset:processor_receivable:{p}), each once per (processor, payout_id):
 * settlement_payouts' primary key decides (migration 026), in the statement
 * that writes the ledger transaction. With a mismatch nothing is posted
 * (exit 1): cash posted against a receivable that does not agree with the
 * processor would hide the difference; run it again once it is explained. */
#include "reconcile_report.h"

#include <errno.h>
#include <glib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "opt.h"
#include "pgq.h"

enum { NCOL = 7 };
static const char HEADER[] = "type,payment_id,processor_object_id,amount_minor,fee_minor,"
                             "currency,payout_id";
static const char *const TYPES[] = {"charge", "capture", "refund", "dispute_withdrawal",
                                    "dispute_reinstatement", "refund_failure", "payout"};

/* Splits one CSV record (RFC 4180 quoting) into at most NCOL fields.
 * Returns the number of fields, or -1 on a bad quote. */
static int csv_split(const char *line, GString *f[NCOL]) {
  int n = 0;
  const char *s = line;
  for (;;) {
    if (n == NCOL) return NCOL + 1;
    g_string_truncate(f[n], 0);
    if (*s == '"') {
      for (s++;; s++) {
        if (!*s) return -1;
        if (*s == '"' && s[1] == '"') g_string_append_c(f[n], *s++);
        else if (*s == '"') break;
        else g_string_append_c(f[n], *s);
      }
      s++;
      if (*s && *s != ',') return -1;
    } else {
      size_t len = strcspn(s, ",");
      g_string_append_len(f[n], s, (gssize)len);
      s += len;
    }
    n++;
    if (*s != ',') return n;
    s++;
  }
}

static bool is_type(const char *t) {
  for (size_t i = 0; i < G_N_ELEMENTS(TYPES); i++)
    if (strcmp(t, TYPES[i]) == 0) return true;
  return false;
}

static bool is_money(const char *s) {
  char *end;
  errno = 0;
  (void)strtoll(s, &end, 10);
  return *s && !errno && !*end;
}

/* Parses the report into the arrays (type, payment_id, object_id, amount,
 * fee, currency, payout_id). Returns the number of lines, or -1 (printed). */
static long parse_report(const char *path, const char *text, pg_array a[NCOL]) {
  gchar **lines = g_strsplit(text, "\n", -1);
  GString *f[NCOL];
  for (int i = 0; i < NCOL; i++) f[i] = g_string_new(NULL);
  long n = 0, bad = lines[0] ? 0 : 1; /* an empty file has no header */
  for (int i = 0; lines[i] && !bad; i++) {
    g_strchomp(lines[i]); /* CRLF, trailing blanks */
    if (i == 0) {
      if (strcmp(lines[0], HEADER) != 0) bad = 1;
      continue;
    }
    if (!*lines[i]) continue;
    if (csv_split(lines[i], f) != NCOL || !is_type(f[0]->str) || !is_money(f[3]->str) ||
        !is_money(f[4]->str) || strlen(f[5]->str) != 3) {
      bad = i + 1;
      break;
    }
    for (int c = 0; c < NCOL; c++) pg_array_add_str(&a[c], f[c]->str);
    n++;
  }
  if (bad)
    fprintf(stderr, "payctl reconcile: %s line %ld is not a settlement line (expected '%s')\n", path,
            bad, HEADER);
  for (int i = 0; i < NCOL; i++) g_string_free(f[i], TRUE);
  g_strfreev(lines);
  return bad ? -1 : n;
}

static const char SQL_LOAD[] =
    "CREATE TEMP TABLE report_lines AS SELECT u.line, u.type, u.payment_id, u.object_id,"
    " u.amount::bigint AS amount, u.fee::bigint AS fee, u.currency, u.payout_id"
    " FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],"
    " $7::text[]) WITH ORDINALITY AS u(type, payment_id, object_id, amount, fee, currency,"
    " payout_id, line)";

/* The report's day as timestamptz bounds, UTC ($2). */
#define DAY_FROM "(($2::date)::timestamp AT TIME ZONE 'UTC')"
#define DAY_TO "((($2::date) + 1)::timestamp AT TIME ZONE 'UTC')"
/* How far our posting time may be from the processor's time at a day's
 * edge (the processor's clock, its cut-off, our delay in posting). */
#define TOLERANCE "interval '2 minutes'"
/* A movement of ours in no payout this many days after it was posted is a
 * mismatch (its own day's report may have been reconciled out of order,
 * or not yet). */
#define OVERDUE_DAYS "3"
#define LATE_FROM "((($2::date) - " OVERDUE_DAYS ")::timestamp AT TIME ZONE 'UTC')"
#define LATE_TO "((($2::date) - " OVERDUE_DAYS " + 1)::timestamp AT TIME ZONE 'UTC')"
/* Settled movements are recorded from migration 030 on: "overdue" counts
 * only from the first day recorded at $1. */
#define SINCE                                                                              \
  "(coalesce((SELECT min(s.day) FROM settlement_movements s WHERE s.processor = $1),"      \
  " $2::date)::timestamp AT TIME ZONE 'UTC')"
/* A movement of ours, in no payout and not in the report, that the report
 * of day $2 should have listed: posted inside the day away from its edges,
 * or overdue (posted on the day OVERDUE_DAYS before). Near an edge the
 * processor may have put it on the neighbouring day, whose report settles
 * it (the days are matched by identity, never by our posting time). */
#define DUE(col)                                                                           \
  "((" col " >= " DAY_FROM " + " TOLERANCE " AND " col " < " DAY_TO " - " TOLERANCE ")"  \
  " OR (" col " >= " LATE_FROM " AND " col " < " LATE_TO " AND " col " >= " SINCE "))"
/* Postings the report of day $2 may name or should have listed. */
#define NEAR(col) "(" col " >= " LATE_FROM " AND " col " < " DAY_TO " + " TOLERANCE ")"

/* What Postgres and the ledger hold for the processor ($1): sales and
 * capture/refund operations named by the report or posted near its day
 * ($2), each with its ledger posting's effect and the payout that settled
 * it, if any (settlement_movements, 030). A sale's fee is NULL while
 * unknown (a webhook settled it without one) and not yet learned from a
 * report (settlement_fees). */
static const char SQL_BOOK[] =
    "CREATE TEMP TABLE book_moves AS"
    " WITH tx AS (SELECT t.transaction_id, t.payment_id, t.operation_id, t.kind, t.created_at,"
    "   coalesce(sum(CASE e.direction WHEN 'D' THEN e.amount_minor ELSE -e.amount_minor END)"
    "     FILTER (WHERE a.name = 'asset:processor_receivable:' || $1), 0) AS net,"
    "   coalesce(sum(e.amount_minor) FILTER (WHERE a.name = 'expense:processing_fees'"
    "     AND e.direction = 'D'), 0) AS fee"
    "  FROM ledger_transactions t JOIN ledger_entries e USING (transaction_id)"
    "  JOIN ledger_accounts a ON a.account_id = e.account_id"
    "  WHERE t.kind IN ('payment', 'capture', 'refund') AND (" NEAR("t.created_at")
    "   OR t.payment_id IN (SELECT payment_id FROM report_lines))"
    "  GROUP BY t.transaction_id),"
    " moves AS ("
    "  SELECT 'charge'::text AS type, p.payment_id, coalesce(c.processor_charge_id, '') AS object_id,"
    "   p.amount_minor AS amount, coalesce(c.fee_minor, f.fee_minor) AS fee,"
    "   p.currency::text AS currency,"
    "   'payment ' || p.status || ', attempt ' || c.state AS state,"
    "   p.status = 'succeeded' AND c.state = 'succeeded' AS settled, tx.transaction_id,"
    "   tx.created_at AS posted_at, tx.net + tx.fee AS posted_amount,"
    "   tx.fee + coalesce(f.fee_minor, 0) AS posted_fee"
    "  FROM payments p JOIN charge_attempts c ON c.payment_id = p.payment_id"
    "   AND c.processor = $1"
    "  LEFT JOIN tx ON tx.payment_id = p.payment_id AND tx.kind = 'payment'"
    "   AND tx.operation_id IS NULL"
    "  LEFT JOIN settlement_fees f ON f.payment_id = p.payment_id AND f.processor = $1"
    "  WHERE p.kind = 'sale' AND (p.payment_id IN (SELECT payment_id FROM report_lines)"
    "   OR tx.transaction_id IS NOT NULL)"
    "  UNION ALL"
    "  SELECT o.kind, o.payment_id, coalesce(o.processor_op_id, ''),"
    "   CASE o.kind WHEN 'refund' THEN -o.amount_minor ELSE o.amount_minor END,"
    "   coalesce(o.fee_minor, 0), o.currency::text, 'operation ' || o.state,"
    "   o.state IN ('succeeded', 'posted'), tx.transaction_id, tx.created_at,"
    "   tx.net + tx.fee, tx.fee"
    "  FROM payment_operations o LEFT JOIN tx ON tx.operation_id = o.operation_id"
    "   AND tx.kind = o.kind"
    "  WHERE o.kind IN ('capture', 'refund') AND o.processor = $1"
    "   AND o.state IN ('processing', 'succeeded', 'declined', 'posted')"
    "   AND (o.payment_id IN (SELECT payment_id FROM report_lines)"
    "    OR tx.transaction_id IS NOT NULL))"
    " SELECT row_number() OVER () AS bid, m.*, s.payout_id AS settled_in, s.day AS settled_day"
    " FROM moves m LEFT JOIN settlement_movements s ON s.transaction_id = m.transaction_id";

/* Each report line of a matched type with the book movement it names: a
 * sale by its payment; an operation by processor object id, else one of
 * the payment's operations of that type and amount Postgres holds without
 * an id (not settled: a declined or unanswered one). */
static const char SQL_MATCH[] =
    "CREATE TEMP TABLE matched AS SELECT r.*, b.bid, b.amount AS b_amount, b.fee AS b_fee,"
    " b.currency AS b_currency, b.state AS b_state, b.settled, b.transaction_id,"
    " b.posted_amount, b.posted_fee, b.settled_in, b.settled_day,"
    " b.type = 'charge' AND b.bid IS NOT NULL AND b.fee IS NULL AS fee_unknown"
    " FROM report_lines r LEFT JOIN LATERAL (SELECT * FROM book_moves b"
    "  WHERE b.type = r.type AND b.payment_id = r.payment_id"
    "   AND (b.object_id = r.object_id OR (b.object_id = '' AND b.amount = r.amount)"
    "    OR r.type = 'charge')"
    "  ORDER BY b.object_id = r.object_id DESC, b.amount = r.amount DESC LIMIT 1) b ON true"
    " WHERE r.type IN ('charge', 'capture', 'refund')";

/* Dispute and late-refund-failure postings not yet in a payout, each
 * classified (DESIGN's postings): withdrawal = debits of
 * asset:disputed_funds (its fee: expense:chargebacks debits of a
 * transaction that credits no disputed funds), reinstatement = credits of
 * asset:disputed_funds in a transaction that debits the receivable, refund
 * failure = debits of the receivable in a refund operation's transaction.
 * Each is matched by identity to the report's line of its payment and type
 * naming its dispute (processor_dispute_id) or refund (processor_op_id) —
 * a posting that names neither, to that payment's line of its type — and
 * kept when matched or DUE. Postings already settled are left out unless
 * in a payout of this very report (the same report run again matches
 * them again and posts nothing). */
static const char SQL_DISPUTE_TXS[] =
    "CREATE TEMP TABLE dispute_txs AS"
    " WITH tx AS (SELECT t.transaction_id, t.payment_id, t.created_at,"
    "   coalesce(d.processor_dispute_id, o.processor_op_id, '') AS object_id,"
    "   coalesce(sum(e.amount_minor) FILTER (WHERE a.name = 'asset:disputed_funds'"
    "    AND e.direction = 'D'), 0) AS dd,"
    "   coalesce(sum(e.amount_minor) FILTER (WHERE a.name = 'asset:disputed_funds'"
    "    AND e.direction = 'C'), 0) AS dc,"
    "   coalesce(sum(e.amount_minor) FILTER (WHERE a.name = 'asset:processor_receivable:' || $1"
    "    AND e.direction = 'D'), 0) AS rd,"
    "   coalesce(sum(e.amount_minor) FILTER (WHERE a.name = 'expense:chargebacks'"
    "    AND e.direction = 'D'), 0) AS chb,"
    "   coalesce(bool_or(o.kind = 'refund'), false) AS of_refund"
    "  FROM ledger_transactions t JOIN ledger_entries e USING (transaction_id)"
    "  JOIN ledger_accounts a ON a.account_id = e.account_id"
    "  LEFT JOIN payment_operations o ON o.operation_id = t.operation_id"
    "  LEFT JOIN disputes d ON d.dispute_id = t.dispute_id"
    "  WHERE t.payment_id IS NOT NULL"
    "   AND t.kind NOT IN ('payment', 'capture', 'refund', 'settlement_fee')"
    "   AND (" NEAR("t.created_at") " OR t.payment_id IN (SELECT payment_id FROM report_lines))"
    "   AND NOT EXISTS (SELECT 1 FROM settlement_movements s"
    "    WHERE s.transaction_id = t.transaction_id AND NOT EXISTS (SELECT 1 FROM report_lines r"
    "     WHERE r.type = 'payout' AND r.payout_id = s.payout_id))"
    "  GROUP BY t.transaction_id, d.processor_dispute_id, o.processor_op_id),"
    " cls AS (SELECT tx.*, CASE WHEN dd > 0 OR (chb > 0 AND dc = 0) THEN 'dispute_withdrawal'"
    "   WHEN dc > 0 AND rd > 0 THEN 'dispute_reinstatement'"
    "   WHEN of_refund AND rd > 0 THEN 'refund_failure' END AS type FROM tx)"
    " SELECT c.transaction_id, c.payment_id, c.type, c.created_at,"
    "  coalesce(l.object_id, c.object_id) AS object_id, l.payout_id,"
    "  CASE c.type WHEN 'dispute_withdrawal' THEN -c.dd WHEN 'dispute_reinstatement' THEN c.dc"
    "   ELSE c.rd END AS amount,"
    "  CASE WHEN c.type = 'dispute_withdrawal' AND c.dc = 0 THEN c.chb ELSE 0 END AS fee"
    " FROM cls c LEFT JOIN LATERAL (SELECT r.object_id, r.payout_id FROM report_lines r"
    "  WHERE r.payment_id = c.payment_id AND r.type = c.type"
    "   AND (r.object_id = c.object_id OR c.object_id = '')"
    "  ORDER BY r.object_id = c.object_id DESC, r.line LIMIT 1) l ON true"
    " WHERE c.type IS NOT NULL AND (l.object_id IS NOT NULL OR " DUE("c.created_at") ")";

/* Those movements per payment, type and object: the report's lines against
 * the postings. */
static const char SQL_DISPUTES[] =
    "CREATE TEMP TABLE dispute_moves AS"
    " WITH ledger AS (SELECT payment_id, type, object_id, sum(amount) AS amount, sum(fee) AS fee"
    "  FROM dispute_txs GROUP BY payment_id, type, object_id),"
    " lines AS (SELECT payment_id, type, object_id, sum(amount) AS amount, sum(fee) AS fee"
    "  FROM report_lines"
    "  WHERE type IN ('dispute_withdrawal', 'dispute_reinstatement', 'refund_failure')"
    "  GROUP BY payment_id, type, object_id)"
    " SELECT coalesce(l.payment_id, g.payment_id) AS payment_id, coalesce(l.type, g.type) AS type,"
    "  coalesce(l.object_id, g.object_id) AS objects, l.amount AS r_amount, l.fee AS r_fee,"
    "  g.amount AS g_amount, coalesce(g.fee, 0) AS g_fee"
    " FROM lines l FULL JOIN ledger g ON g.payment_id = l.payment_id AND g.type = l.type"
    "  AND g.object_id = l.object_id";

/* Each query lists mismatches of one kind as (type, payment_id, object,
 * detail). $1 processor, $2 day. */
static const struct {
  const char *kind, *sql;
} checks[] = {
    {"at_processor_not_in_ledger",
     "SELECT type, payment_id, object_id, CASE WHEN bid IS NULL THEN"
     " 'no such ' || CASE type WHEN 'charge' THEN 'payment' ELSE 'operation' END || ' at ' || $1"
     " ELSE 'not posted (' || b_state || ')' END FROM matched"
     " WHERE (bid IS NULL OR (settled AND transaction_id IS NULL)) AND $2::text IS NOT NULL"
     " ORDER BY line"},
    {"at_processor_not_in_ledger",
     "SELECT type, payment_id, objects, 'nothing posted on ' || $2 FROM dispute_moves"
     " WHERE $1::text IS NOT NULL AND g_amount IS NULL ORDER BY payment_id, type"},
    /* A payment charged twice at the processor: a second line (another
     * object, or the same one listed again) that matched the movement a
     * first line already matched. Its money is not in the ledger. */
    {"at_processor_not_in_ledger",
     "SELECT m.type, m.payment_id, m.object_id, 'a second ' || m.type || ' for this payment"
     " (postgres holds ' || coalesce(nullif(b.object_id, ''), 'another') || ')'"
     " FROM matched m JOIN book_moves b ON b.bid = m.bid"
     " WHERE ((b.object_id <> '' AND m.object_id <> b.object_id)"
     "  OR EXISTS (SELECT 1 FROM matched x WHERE x.bid = m.bid AND x.line < m.line"
     "   AND (b.object_id = '' OR x.object_id = b.object_id)))"
     " AND $1::text IS NOT NULL AND $2::text IS NOT NULL ORDER BY m.line"},
    /* The same movement reported again (another day, another payout). */
    {"at_processor_not_in_ledger",
     "SELECT type, payment_id, object_id, 'already settled in payout ' || settled_in || ' of '"
     " || settled_day FROM matched WHERE settled_in IS NOT NULL AND settled_in <> payout_id"
     " AND $1::text IS NOT NULL AND $2::text IS NOT NULL ORDER BY line"},
    {"in_ledger_not_at_processor",
     "SELECT b.type, b.payment_id, b.object_id, 'posted ' || b.posted_at"
     " || ', in no payout and not in the report'"
     " FROM book_moves b WHERE b.settled AND b.transaction_id IS NOT NULL AND b.settled_in IS NULL"
     " AND " DUE("b.posted_at") " AND NOT EXISTS (SELECT 1 FROM matched m WHERE m.bid = b.bid)"
     " ORDER BY b.posted_at"},
    {"in_ledger_not_at_processor",
     "SELECT type, payment_id, objects, 'posted ' || g_amount || ', in no payout and not in the"
     " report' FROM dispute_moves WHERE $1::text IS NOT NULL AND $2::text IS NOT NULL"
     " AND r_amount IS NULL ORDER BY payment_id, type"},
    {"status_differs",
     "SELECT type, payment_id, object_id, 'processor moved ' || amount || ' ' || currency ||"
     " ', postgres holds ' || b_state FROM matched WHERE bid IS NOT NULL AND NOT settled"
     " AND $1::text IS NOT NULL AND $2::text IS NOT NULL ORDER BY line"},
    {"amount_differs",
     "SELECT type, payment_id, object_id, 'report ' || amount || ' ' || currency ||"
     " ', postgres ' || b_amount || ' ' || b_currency ||"
     " coalesce(', posted ' || posted_amount, '') FROM matched WHERE bid IS NOT NULL AND settled"
     " AND (b_amount <> amount OR b_currency <> currency OR posted_amount <> amount)"
     " AND $1::text IS NOT NULL AND $2::text IS NOT NULL ORDER BY line"},
    {"amount_differs",
     "SELECT type, payment_id, objects, 'report ' || r_amount || ', posted ' || g_amount ||"
     " ' on ' || $2 FROM dispute_moves WHERE r_amount <> g_amount AND $1::text IS NOT NULL"
     " ORDER BY payment_id, type"},
    /* Only against a known fee: an unknown one (NULL) is posted from the
     * report with the payout. */
    {"fee_differs",
     "SELECT type, payment_id, object_id, 'report ' || fee || ', postgres ' || b_fee ||"
     " coalesce(', posted ' || posted_fee, '') FROM matched WHERE bid IS NOT NULL AND settled"
     " AND b_fee IS NOT NULL AND (b_fee <> fee OR posted_fee <> fee) AND $1::text IS NOT NULL"
     " AND $2::text IS NOT NULL ORDER BY line"},
    {"fee_differs",
     "SELECT type, payment_id, objects, 'report ' || r_fee || ', posted ' || g_fee ||"
     " ' on ' || $2 FROM dispute_moves WHERE r_fee <> g_fee AND $1::text IS NOT NULL"
     " ORDER BY payment_id, type"},
    {"payout_differs",
     "SELECT 'payout', '', p.payout_id, 'report ' || p.amount || ' ' || p.currency ||"
     " ', its lines net ' || coalesce(s.net::text, 'nothing') || coalesce(' ' || s.cur, '')"
     " FROM report_lines p LEFT JOIN (SELECT payout_id, sum(amount - fee) AS net,"
     "  string_agg(DISTINCT currency, '/') AS cur FROM report_lines WHERE type <> 'payout'"
     "  GROUP BY payout_id) s ON s.payout_id = p.payout_id"
     " WHERE p.type = 'payout' AND (s.net IS DISTINCT FROM p.amount OR s.cur <> p.currency"
     "  OR p.object_id <> p.payout_id OR (SELECT count(*) FROM report_lines d"
     "   WHERE d.type = 'payout' AND d.payout_id = p.payout_id) > 1)"
     " AND $1::text IS NOT NULL AND $2::text IS NOT NULL ORDER BY p.line"},
    {"payout_differs",
     "SELECT 'payout', '', r.payout_id || ' (no payout line)', 'lines net ' || sum(r.amount - r.fee)"
     " FROM report_lines r WHERE r.type <> 'payout' AND $1::text IS NOT NULL"
     " AND $2::text IS NOT NULL AND NOT EXISTS (SELECT 1 FROM report_lines p"
     "  WHERE p.type = 'payout' AND p.payout_id = r.payout_id) GROUP BY r.payout_id"},
    {"payout_differs",
     "SELECT 'payout', '', s.payout_id, 'already posted ' || s.amount_minor || ' ' || s.currency ||"
     " ' (transaction ' || s.transaction_id || '), report ' || r.amount || ' ' || r.currency"
     " FROM report_lines r JOIN settlement_payouts s ON s.processor = $1"
     " AND s.payout_id = r.payout_id WHERE r.type = 'payout' AND $2::text IS NOT NULL"
     " AND (s.amount_minor <> r.amount OR s.currency <> r.currency)"},
};

/* Prints every mismatch; returns their number, or -1 (query failed). */
static long mismatches(payctl *p, const char *const v[2]) {
  long found = 0;
  for (size_t c = 0; c < G_N_ELEMENTS(checks); c++) {
    PGresult *r = pgq_query(p, checks[c].sql, 2, v);
    if (!r) return -1;
    for (int row = 0; row < PQntuples(r); row++, found++)
      printf("MISMATCH %s: %s %s %s: %s\n", checks[c].kind, PQgetvalue(r, row, 0),
             *PQgetvalue(r, row, 1) ? PQgetvalue(r, row, 1) : "-", PQgetvalue(r, row, 2),
             PQgetvalue(r, row, 3));
    PQclear(r);
  }
  return found;
}

static const char SQL_ACCOUNTS[] =
    "INSERT INTO ledger_accounts (name, currency, type)"
    " SELECT n, c, split_part(n, ':', 1) FROM ("
    "  SELECT unnest(ARRAY['asset:cash', 'asset:processor_receivable:' || $1]) AS n,"
    "   r.currency AS c FROM report_lines r WHERE r.type = 'payout' AND r.amount <> 0"
    "  UNION SELECT unnest(ARRAY['expense:processing_fees', 'asset:processor_receivable:' || $1]),"
    "   m.currency FROM matched m WHERE m.fee_unknown AND m.fee > 0) x"
    " ON CONFLICT (name, currency) DO NOTHING";

/* The movements this report settles: its matched sales and operations not
 * yet in a payout, its dispute and refund-failure postings, and the fees it
 * posts now (the rows of `fees`, in SQL_POST). */
#define SETTLED_NOW                                                                        \
  "SELECT transaction_id, payout_id FROM matched"                                          \
  " WHERE transaction_id IS NOT NULL AND settled_in IS NULL"                               \
  " UNION SELECT transaction_id, payout_id FROM dispute_txs WHERE payout_id IS NOT NULL"   \
  " UNION SELECT transaction_id, payout_id FROM fees"

/* One statement posts it all, so a failure leaves nothing of it:
 *  - every payout line, once: the settlement_payouts row decides (ON
 *    CONFLICT DO NOTHING on its primary key), the ledger transaction and
 *    its two entries follow from it;
 *  - the fee of each sale whose fee was unknown, once: settlement_fees'
 *    primary key decides, posted expense:processing_fees against the
 *    receivable (as a sale's own fee) in a `settlement_fee` transaction;
 *  - each movement settled in exactly one payout: settlement_movements'
 *    primary key refuses a second (the whole statement fails); recorded
 *    with the payouts this run posted (a zero-net payout has no row: its
 *    movements are recorded unless already).
 * Returns, per payout, whether this run posted it and its transaction. */
static const char SQL_POST[] =
    "WITH po AS (INSERT INTO settlement_payouts (processor, payout_id, day, currency, amount_minor,"
    "   transaction_id, report_sha256)"
    "  SELECT $1, r.payout_id, $2::date, r.currency, r.amount,"
    "   nextval('ledger_transactions_transaction_id_seq'), $3"
    "  FROM report_lines r WHERE r.type = 'payout' AND r.amount <> 0"
    "  ON CONFLICT DO NOTHING RETURNING payout_id, transaction_id, amount_minor, currency),"
    " fees AS (INSERT INTO settlement_fees (payment_id, processor, fee_minor, transaction_id,"
    "   payout_id, day)"
    "  SELECT m.payment_id, $1, m.fee, nextval('ledger_transactions_transaction_id_seq'),"
    "   m.payout_id, $2::date FROM matched m"
    "  WHERE m.fee_unknown AND m.fee > 0 AND m.settled AND m.transaction_id IS NOT NULL"
    "  ON CONFLICT DO NOTHING RETURNING payment_id, transaction_id, fee_minor, payout_id),"
    " tx AS (INSERT INTO ledger_transactions (transaction_id, payment_id, kind)"
    "  SELECT transaction_id, NULL, 'payout' FROM po"
    "  UNION ALL SELECT transaction_id, payment_id, 'settlement_fee' FROM fees"
    "  RETURNING transaction_id),"
    " e AS (INSERT INTO ledger_entries (transaction_id, account_id, currency, direction,"
    "   amount_minor)"
    "  SELECT x.transaction_id, a.account_id, x.currency, x.d, x.amt FROM ("
    "   SELECT po.transaction_id, po.currency::text AS currency, u.n, u.d,"
    "    abs(po.amount_minor) AS amt"
    "   FROM tx JOIN po USING (transaction_id) CROSS JOIN LATERAL (VALUES"
    "    ('asset:cash', CASE WHEN po.amount_minor > 0 THEN 'D' ELSE 'C' END),"
    "    ('asset:processor_receivable:' || $1, CASE WHEN po.amount_minor > 0 THEN 'C' ELSE 'D' END))"
    "    AS u(n, d)"
    "   UNION ALL SELECT f.transaction_id, p.currency::text, u.n, u.d, f.fee_minor"
    "   FROM tx JOIN fees f USING (transaction_id) JOIN payments p ON p.payment_id = f.payment_id"
    "   CROSS JOIN (VALUES ('expense:processing_fees', 'D'),"
    "    ('asset:processor_receivable:' || $1, 'C')) AS u(n, d)) x"
    "  JOIN ledger_accounts a ON a.name = x.n AND a.currency = x.currency"
    "  RETURNING 1),"
    " mv AS (INSERT INTO settlement_movements (transaction_id, processor, payout_id, day)"
    "  SELECT s.transaction_id, $1, s.payout_id, $2::date FROM (" SETTLED_NOW ") s"
    "  WHERE s.payout_id IN (SELECT payout_id FROM po) RETURNING 1),"
    " mv0 AS (INSERT INTO settlement_movements (transaction_id, processor, payout_id, day)"
    "  SELECT s.transaction_id, $1, s.payout_id, $2::date FROM (" SETTLED_NOW ") s"
    "  WHERE s.payout_id IN (SELECT payout_id FROM report_lines WHERE type = 'payout'"
    "   AND amount = 0) ON CONFLICT DO NOTHING RETURNING 1)"
    " SELECT r.payout_id, r.amount || ' ' || r.currency, po.transaction_id IS NOT NULL,"
    "  coalesce(po.transaction_id, s.transaction_id),"
    "  (SELECT count(*) FROM e) + (SELECT count(*) FROM mv) + (SELECT count(*) FROM mv0)"
    " FROM report_lines r LEFT JOIN po ON po.payout_id = r.payout_id"
    " LEFT JOIN settlement_payouts s ON s.processor = $1 AND s.payout_id = r.payout_id"
    " WHERE r.type = 'payout' ORDER BY r.line";

/* The fees of this report's sales learned from it (now or by an earlier
 * run). */
static const char SQL_FEES[] =
    "SELECT f.payment_id, f.fee_minor, f.transaction_id FROM settlement_fees f"
    " JOIN matched m ON m.payment_id = f.payment_id AND m.type = 'charge'"
    " WHERE f.processor = $1 ORDER BY m.line";

static int post_payouts(payctl *p, const char *processor, const char *day, const char *sha) {
  const char *v[] = {processor, day, sha};
  PGresult *r = pgq_query(p, SQL_ACCOUNTS, 1, v);
  if (!r) return pgq_failure(p);
  PQclear(r);
  if (!(r = pgq_query(p, SQL_POST, 3, v))) return pgq_failure(p);
  for (int row = 0; row < PQntuples(r); row++) {
    const char *id = PQgetvalue(r, row, 0), *amt = PQgetvalue(r, row, 1);
    if (PQgetisnull(r, row, 3))
      printf("payout %s: %s, nothing to post\n", id, amt);
    else if (strcmp(PQgetvalue(r, row, 2), "t") == 0)
      printf("payout %s: %s posted (ledger transaction %s)\n", id, amt, PQgetvalue(r, row, 3));
    else
      printf("payout %s: %s already posted (ledger transaction %s)\n", id, amt,
             PQgetvalue(r, row, 3));
  }
  PQclear(r);
  if (!(r = pgq_query(p, SQL_FEES, 1, v))) return pgq_failure(p);
  for (int row = 0; row < PQntuples(r); row++)
    printf("fee of %s: %s, from the settlement report (ledger transaction %s)\n",
           PQgetvalue(r, row, 0), PQgetvalue(r, row, 1), PQgetvalue(r, row, 2));
  PQclear(r);
  return PAYCTL_OK;
}

/* A calendar day written YYYY-MM-DD. */
static bool day_ok(const char *day) {
  int y, m, d, end = 0;
  return day && strlen(day) == 10 && sscanf(day, "%4d-%2d-%2d%n", &y, &m, &d, &end) == 3 &&
         end == 10 && g_date_valid_dmy((GDateDay)d, (GDateMonth)m, (GDateYear)y);
}

int reconcile_report(payctl *p, int argc, char **argv) {
  static const struct option opts[] = {{"report", required_argument, 0, 'r'},
                                       {"processor", required_argument, 0, 'p'},
                                       {"day", required_argument, 0, 'd'},
                                       {0, 0, 0, 0}};
  const char *path = NULL, *processor = cfg_env_str("PAYSTREAM_PROCESSOR_NAME", "stripe"),
             *day = NULL;
  opt_begin();
  for (int c; (c = opt_next(argc, argv, opts)) != -1;) {
    if (c == 'r') path = optarg;
    else if (c == 'p') processor = optarg;
    else if (c == 'd') day = optarg;
    else return opt_usage("reconcile", RECONCILE_REPORT_USAGE);
  }
  if (!path || optind != argc) return opt_usage("reconcile", RECONCILE_REPORT_USAGE);
  gchar *text = NULL;
  gsize len = 0;
  GError *gerr = NULL;
  if (!g_file_get_contents(path, &text, &len, &gerr)) {
    fprintf(stderr, "payctl reconcile: %s\n", gerr->message);
    g_error_free(gerr);
    return PAYCTL_NOT_FOUND;
  }
  pg_array a[NCOL];
  pg_arrays_init(a, NCOL);
  long n = parse_report(path, text, a);
  char derived[11] = {0};
  if (n >= 0 && !day) {
    /* procsim's payout ids end _YYYYMMDD_CUR; the first one names the day */
    const char *s = strstr(text, "\npayout,");
    const char *u = s ? strchr(s + 8, '_') : NULL;
    if (u && strlen(u) > 9 && u[9] == '_')
      snprintf(derived, sizeof derived, "%.4s-%.2s-%.2s", u + 1, u + 5, u + 7);
    day = *derived ? derived : NULL;
  }
  int rc = PAYCTL_OK;
  if (n < 0) rc = PAYCTL_USAGE;
  else if (!day_ok(day)) {
    fprintf(stderr, "payctl reconcile: %s: give the report's day as --day YYYY-MM-DD (no payout"
                    " line names it)\n", path);
    rc = PAYCTL_USAGE;
  }
  gchar *sha = g_compute_checksum_for_data(G_CHECKSUM_SHA256, (const guchar *)text, len);
  g_free(text);
  const char *params[NCOL];
  pg_arrays_finish(a, NCOL, params);
  const char *v[] = {processor, day};
  const char *stmts[] = {SQL_LOAD, SQL_BOOK, SQL_MATCH, SQL_DISPUTE_TXS, SQL_DISPUTES};
  const int nparams[] = {NCOL, 2, 0, 2, 0};
  for (size_t i = 0; i < G_N_ELEMENTS(stmts) && rc == PAYCTL_OK; i++) {
    PGresult *r = pgq_query(p, stmts[i], nparams[i], i == 0 ? params : v);
    if (!r) rc = pgq_failure(p);
    PQclear(r);
  }
  pg_arrays_free(a, NCOL);
  long found = rc == PAYCTL_OK ? mismatches(p, v) : 0;
  if (found < 0) rc = pgq_failure(p);
  if (rc == PAYCTL_OK) {
    printf("reconcile %s: %ld report lines for %s on %s, %ld mismatches\n", path, n, processor, day,
           found);
    if (found) {
      printf("payouts not posted: the report does not agree with the books\n");
      rc = PAYCTL_FAILED;
    } else {
      rc = post_payouts(p, processor, day, sha);
    }
  }
  g_free(sha);
  return rc;
}
