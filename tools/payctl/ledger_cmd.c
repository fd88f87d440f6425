/* payctl ledger verify | balances | balance | entries: the books, checked
 * from first principles and shown.
 * verify recomputes every balance from its entries, checks every
 * transaction balances per currency and the trial balance (sum of all
 * balances per currency is zero), and exits 1 on any mismatch. balance
 * and entries exit 3 when there is no such account or no entry. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "commands.h"
#include "opt.h"
#include "pgq.h"

static const char SQL_BALANCE_MISMATCH[] =
    "SELECT a.name, a.currency, a.balance, coalesce(sum(CASE e.direction WHEN 'D'"
    " THEN e.amount_minor ELSE -e.amount_minor END), 0) AS computed"
    " FROM ledger_accounts a LEFT JOIN ledger_entries e ON e.account_id = a.account_id"
    " GROUP BY a.account_id HAVING a.balance <> coalesce(sum(CASE e.direction WHEN 'D'"
    " THEN e.amount_minor ELSE -e.amount_minor END), 0)";

static const char SQL_UNBALANCED_TX[] =
    "SELECT transaction_id, currency, sum(CASE direction WHEN 'D' THEN amount_minor"
    " ELSE -amount_minor END) FROM ledger_entries GROUP BY transaction_id, currency"
    " HAVING sum(CASE direction WHEN 'D' THEN amount_minor ELSE -amount_minor END) <> 0";

static const char SQL_TRIAL[] =
    "SELECT currency, sum(CASE WHEN balance > 0 THEN balance ELSE 0 END),"
    " sum(CASE WHEN balance < 0 THEN -balance ELSE 0 END)"
    " FROM ledger_accounts GROUP BY currency ORDER BY currency";

static const char SQL_BALANCES[] =
    "SELECT name, currency, type, CASE WHEN type IN ('asset', 'expense') THEN balance"
    " ELSE -balance END FROM ledger_accounts ORDER BY currency, name";

static int verify(payctl *p) {
  int bad = 0;
  PGresult *r = pgq_query(p, SQL_BALANCE_MISMATCH, 0, NULL);
  if (!r) return pgq_failure(p);
  for (int i = 0; i < PQntuples(r); i++, bad++)
    printf("MISMATCH account %s %s: stored balance %s, entries sum to %s\n", PQgetvalue(r, i, 0),
           PQgetvalue(r, i, 1), PQgetvalue(r, i, 2), PQgetvalue(r, i, 3));
  PQclear(r);
  r = pgq_query(p, SQL_UNBALANCED_TX, 0, NULL);
  if (!r) return pgq_failure(p);
  for (int i = 0; i < PQntuples(r); i++, bad++)
    printf("UNBALANCED transaction %s in %s: debits - credits = %s\n", PQgetvalue(r, i, 0),
           PQgetvalue(r, i, 1), PQgetvalue(r, i, 2));
  PQclear(r);
  r = pgq_query(p, SQL_TRIAL, 0, NULL);
  if (!r) return pgq_failure(p);
  printf("trial balance\n%-8s %20s %20s\n", "currency", "debits", "credits");
  for (int i = 0; i < PQntuples(r); i++) {
    const char *d = PQgetvalue(r, i, 1), *c = PQgetvalue(r, i, 2);
    int ok = strcmp(d, c) == 0;
    printf("%-8s %20s %20s %s\n", PQgetvalue(r, i, 0), d, c, ok ? "balanced" : "UNBALANCED");
    if (!ok) bad++;
  }
  PQclear(r);
  r = pgq_query(p, "SELECT count(*) FROM ledger_transactions", 0, NULL);
  if (!r) return pgq_failure(p);
  printf("%s transactions checked\n", PQgetvalue(r, 0, 0));
  PQclear(r);
  if (bad) printf("ledger verify: %d problems\n", bad);
  else printf("ledger verify: OK\n");
  return bad ? PAYCTL_FAILED : PAYCTL_OK;
}

static int balances(payctl *p) {
  PGresult *r = pgq_query(p, SQL_BALANCES, 0, NULL);
  if (!r) return pgq_failure(p);
  printf("%-44s %-4s %-8s %18s\n", "account", "cur", "type", "balance");
  for (int i = 0; i < PQntuples(r); i++)
    printf("%-44s %-4s %-8s %18s\n", PQgetvalue(r, i, 0), PQgetvalue(r, i, 1),
           PQgetvalue(r, i, 2), PQgetvalue(r, i, 3));
  PQclear(r);
  return PAYCTL_OK;
}

/* One account's balance per currency, on its normal side, with the sum of
 * its entries recomputed next to it. */
static int balance(payctl *p, const char *account) {
  const char *v[] = {account};
  PGresult *r = pgq_query(
      p,
      "SELECT a.currency, a.type, CASE WHEN a.type IN ('asset', 'expense') THEN a.balance"
      " ELSE -a.balance END, count(e.entry_id), coalesce(sum(CASE e.direction WHEN 'D'"
      " THEN e.amount_minor ELSE -e.amount_minor END), 0) = a.balance"
      " FROM ledger_accounts a LEFT JOIN ledger_entries e ON e.account_id = a.account_id"
      " WHERE a.name = $1 GROUP BY a.account_id ORDER BY a.currency",
      1, v);
  if (!r) return pgq_failure(p);
  int n = PQntuples(r), bad = 0;
  if (n == 0) printf("no account %s\n", account);
  for (int i = 0; i < n; i++) {
    int ok = strcmp(PQgetvalue(r, i, 4), "t") == 0;
    bad += !ok;
    printf("%s %s (%s): %s over %s entries%s\n", account, PQgetvalue(r, i, 0), PQgetvalue(r, i, 1),
           PQgetvalue(r, i, 2), PQgetvalue(r, i, 3), ok ? "" : "  MISMATCH with its entries");
  }
  PQclear(r);
  return n == 0 ? PAYCTL_NOT_FOUND : bad ? PAYCTL_FAILED : PAYCTL_OK;
}

/* Every ledger entry of one payment. */
static int entries(payctl *p, const char *payment_id) {
  const char *v[] = {payment_id};
  PGresult *r = pgq_query(
      p,
      "SELECT t.transaction_id, t.kind, t.created_at, a.name, e.currency, e.direction,"
      " e.amount_minor FROM ledger_transactions t JOIN ledger_entries e USING (transaction_id)"
      " JOIN ledger_accounts a ON a.account_id = e.account_id WHERE t.payment_id = $1"
      " ORDER BY e.entry_id",
      1, v);
  if (!r) return pgq_failure(p);
  int n = PQntuples(r);
  if (n == 0) printf("no ledger entries for %s\n", payment_id);
  for (int i = 0; i < n; i++)
    printf("tx %s %-8s %s  %-40s %s %s %15s\n", PQgetvalue(r, i, 0), PQgetvalue(r, i, 1),
           PQgetvalue(r, i, 2), PQgetvalue(r, i, 3), PQgetvalue(r, i, 4),
           PQgetvalue(r, i, 5)[0] == 'D' ? "Dr" : "Cr", PQgetvalue(r, i, 6));
  PQclear(r);
  return n ? PAYCTL_OK : PAYCTL_NOT_FOUND;
}

int cmd_ledger(payctl *p, int argc, char **argv) {
  static const struct option none[] = {{0, 0, 0, 0}};
  opt_begin();
  int c = opt_next(argc, argv, none);
  const char *verb = optind < argc ? argv[optind] : "";
  int n = argc - optind; /* the verb and its arguments */
  if (c == -1 && n == 1 && strcmp(verb, "verify") == 0) return verify(p);
  if (c == -1 && n == 1 && strcmp(verb, "balances") == 0) return balances(p);
  if (c == -1 && n == 2 && strcmp(verb, "balance") == 0) return balance(p, argv[optind + 1]);
  if (c == -1 && n == 2 && strcmp(verb, "entries") == 0) return entries(p, argv[optind + 1]);
  return opt_usage("ledger", "usage: payctl ledger verify | balances | balance <account> | "
                             "entries <payment>");
}
