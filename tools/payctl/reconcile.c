/* payctl reconcile: every configured processor's charges against our
 * payments and our ledger postings. Every successful charge, at any
 * processor, must belong to exactly one succeeded payment posted exactly
 * once, for the same amount and currency; every posting must have its
 * charge. The processors are the ones the charge workers use — the primary
 * (PAYSTREAM_PROCESSOR_*) and, when PAYSTREAM_BACKUP_PROCESSOR_URL is set,
 * the backup — with their API keys read the same way (NAME or NAME_FILE).
 * Their lists are loaded into a temporary table and matched in SQL. Exits 1
 * on any difference, 5 when a processor's list cannot be read.
 * (procsim serves the whole list at GET /v1/charges; a real processor's list
 * API is paginated — fetch_charges is the one place to extend.) */
#include <curl/curl.h>
#include <glib.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "commands.h"
#include "opt.h"
#include "pgq.h"
#include "reconcile_report.h"

typedef struct processor {
  const char *name, *url;
  char *api_key; /* secret: never printed */
} processor;

/* Reads one processor's settings under prefix (as the charge stage does).
 * Returns 1 if configured, 0 if not, -1 with err set. */
static int load_processor(processor *p, const char *prefix, const char *def_name,
                          const char *def_url, char *err, size_t errlen) {
  gchar *var = g_strdup_printf("%s_URL", prefix);
  p->url = cfg_env_str(var, def_url);
  g_free(var);
  if (!p->url) return 0;
  var = g_strdup_printf("%s_NAME", prefix);
  p->name = cfg_env_str(var, def_name);
  g_free(var);
  var = g_strdup_printf("%s_API_KEY", prefix);
  p->api_key = cfg_secret(var, "sk_test_paystream", err, errlen);
  g_free(var);
  return p->api_key ? 1 : -1;
}

static size_t on_body(char *d, size_t size, size_t nmemb, void *ud) {
  g_string_append_len(ud, d, (gssize)(size * nmemb));
  return size * nmemb;
}

/* GETs one processor's charge list; returns the parsed JSON or NULL
 * (error printed). */
static json_t *fetch_charges(const processor *proc) {
  gchar *url = g_strdup_printf("%s/v1/charges", proc->url);
  gchar *auth = g_strdup_printf("Authorization: Bearer %s", proc->api_key);
  CURL *c = curl_easy_init();
  struct curl_slist *h = curl_slist_append(NULL, auth);
  GString *body = g_string_new(NULL);
  curl_easy_setopt(c, CURLOPT_URL, url);
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, body);
  curl_easy_setopt(c, CURLOPT_TIMEOUT, 60L);
  CURLcode cc = curl_easy_perform(c);
  long status = 0;
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
  curl_slist_free_all(h);
  curl_easy_cleanup(c);
  json_t *root = NULL;
  if (cc == CURLE_OK && status == 200) root = json_loadb(body->str, body->len, 0, NULL);
  bool ok = cc == CURLE_OK && status == 200;
  if (!root || !json_is_array(json_object_get(root, "data")))
    fprintf(stderr, "payctl: could not list the charges of processor %s (%s, HTTP %ld)\n",
            proc->name, ok ? "not a charge list" : curl_easy_strerror(cc), status);
  g_string_free(body, TRUE);
  g_free(auth);
  g_free(url);
  return root;
}

/* Adds a list's successful charges to the arrays; returns their number. */
static size_t add_charges(pg_array *a, const char *processor, json_t *data) {
  size_t i, n = 0;
  json_t *ch;
  json_array_foreach(data, i, ch) {
    const char *status = json_string_value(json_object_get(ch, "status"));
    if (!status || strcmp(status, "succeeded") != 0) continue;
    const char *cur = json_string_value(json_object_get(ch, "currency"));
    char up[4] = {0};
    for (int k = 0; cur && k < 3 && cur[k]; k++) up[k] = (char)(cur[k] & ~0x20);
    pg_array_add_str(&a[0], json_string_value(json_object_get(ch, "id")));
    pg_array_add_str(&a[1], json_string_value(
                                json_object_get(json_object_get(ch, "metadata"), "payment_id")));
    pg_array_add_int(&a[2], json_integer_value(json_object_get(ch, "amount")));
    pg_array_add_str(&a[3], up);
    pg_array_add_str(&a[4], processor);
    n++;
  }
  return n;
}

static const char SQL_LOAD[] =
    "CREATE TEMP TABLE processor_charges AS SELECT * FROM unnest($1::text[], $2::text[],"
    " $3::bigint[], $4::text[], $5::text[]) AS u(charge_id, payment_id, amount_minor, currency,"
    " processor)";

/* Each query lists one kind of difference: a label and two columns. A
 * charge is named by its id, and by its processor too when there are two
 * ($1: whether to). */
#define CHARGE_NAME "c.charge_id || CASE WHEN $1 THEN ' at ' || c.processor ELSE '' END"
static const struct {
  const char *label, *sql;
} checks[] = {
    {"charged more than once",
     "SELECT c.payment_id, string_agg(" CHARGE_NAME ", ',') FROM processor_charges c"
     " GROUP BY c.payment_id HAVING count(*) > 1"},
    {"charge without a succeeded payment",
     "SELECT " CHARGE_NAME ", coalesce(p.status, 'unknown payment') FROM processor_charges c"
     " LEFT JOIN payments p ON p.payment_id = c.payment_id"
     " WHERE p.status IS DISTINCT FROM 'succeeded'"},
    {"charge without a ledger posting",
     "SELECT " CHARGE_NAME ", c.payment_id FROM processor_charges c WHERE NOT EXISTS"
     " (SELECT 1 FROM ledger_transactions t WHERE t.payment_id = c.payment_id"
     " AND t.kind = 'payment')"},
    {"posting without a charge",
     "SELECT t.payment_id, t.transaction_id::text FROM ledger_transactions t"
     " WHERE $1::boolean IS NOT NULL AND t.kind = 'payment' AND NOT EXISTS"
     " (SELECT 1 FROM processor_charges c WHERE c.payment_id = t.payment_id)"},
    {"posted amount differs from the charge",
     "SELECT c.payment_id, c.amount_minor || ' ' || c.currency || ' charged, ' ||"
     " e.amount_minor || ' ' || e.currency || ' posted' ||"
     " CASE WHEN $1 THEN ' (' || c.processor || ')' ELSE '' END FROM processor_charges c"
     " JOIN ledger_transactions t ON t.payment_id = c.payment_id AND t.kind = 'payment'"
     " JOIN ledger_entries e ON e.transaction_id = t.transaction_id AND e.direction = 'C'"
     " JOIN ledger_accounts a ON a.account_id = e.account_id AND a.name = 'revenue:payments'"
     " WHERE e.amount_minor <> c.amount_minor OR e.currency <> c.currency"},
};

/* Loads every processor's successful charges into processor_charges.
 * Returns PAYCTL_OK and the count in *n, or the exit code. */
static int load_charges(payctl *p, const processor *procs, int nproc, size_t *n) {
  pg_array a[5];
  pg_arrays_init(a, 5);
  int rc = PAYCTL_OK;
  *n = 0;
  for (int i = 0; i < nproc && rc == PAYCTL_OK; i++) {
    json_t *root = fetch_charges(&procs[i]);
    if (!root || !json_is_array(json_object_get(root, "data"))) rc = PAYCTL_UNAVAILABLE;
    else *n += add_charges(a, procs[i].name, json_object_get(root, "data"));
    if (root) json_decref(root);
  }
  if (rc == PAYCTL_OK) {
    const char *params[5];
    pg_arrays_finish(a, 5, params);
    PGresult *r = pgq_query(p, SQL_LOAD, 5, params);
    if (!r) rc = pgq_failure(p);
    PQclear(r);
  }
  pg_arrays_free(a, 5);
  return rc;
}

/* Prints every difference; returns their number, or -1 (query failed). */
static long differences(payctl *p, bool name_processor) {
  const char *v[] = {name_processor ? "true" : "false"};
  long found = 0;
  for (size_t c = 0; c < sizeof checks / sizeof checks[0]; c++) {
    PGresult *r = pgq_query(p, checks[c].sql, 1, v);
    if (!r) return -1;
    for (int row = 0; row < PQntuples(r); row++, found++)
      printf("DIFFERENCE %s: %s %s\n", checks[c].label, PQgetvalue(r, row, 0),
             PQgetvalue(r, row, 1));
    PQclear(r);
  }
  return found;
}

int cmd_reconcile(payctl *p, int argc, char **argv) {
  for (int i = 1; i < argc; i++)
    if (strcmp(argv[i], "--report") == 0 || strncmp(argv[i], "--report=", 9) == 0)
      return reconcile_report(p, argc, argv);
  static const struct option none[] = {{0, 0, 0, 0}};
  opt_begin();
  if (opt_next(argc, argv, none) != -1 || optind != argc)
    return opt_usage("reconcile", "usage: payctl reconcile\n       payctl reconcile " RECONCILE_REPORT_SYNOPSIS);
  processor procs[2] = {{0}};
  char err[512];
  int nproc = 0, backup = -1;
  if (load_processor(&procs[0], "PAYSTREAM_PROCESSOR", "stripe", "http://127.0.0.1:12111", err,
                     sizeof err) == 1 &&
      (backup = load_processor(&procs[1], "PAYSTREAM_BACKUP_PROCESSOR", "backup", NULL, err,
                               sizeof err)) >= 0)
    nproc = 1 + backup;
  int rc = PAYCTL_OK;
  size_t n = 0;
  if (nproc == 0) {
    fprintf(stderr, "payctl: %s\n", err);
    rc = PAYCTL_USAGE;
  } else {
    curl_global_init(CURL_GLOBAL_DEFAULT);
    rc = load_charges(p, procs, nproc, &n);
  }
  long found = rc == PAYCTL_OK ? differences(p, nproc > 1) : 0;
  PGresult *r = NULL;
  if (found < 0 ||
      (rc == PAYCTL_OK &&
       !(r = pgq_query(p, "SELECT count(*) FROM ledger_transactions WHERE kind = 'payment'", 0,
                       NULL))))
    rc = pgq_failure(p);
  if (r) {
    printf("reconcile: %zu processor charges, %s ledger postings, %ld differences\n", n,
           PQgetvalue(r, 0, 0), found);
    if (nproc > 1) printf("processors: %s, %s\n", procs[0].name, procs[1].name);
    rc = found ? PAYCTL_FAILED : PAYCTL_OK;
    PQclear(r);
  }
  free(procs[0].api_key);
  free(procs[1].api_key);
  if (nproc) curl_global_cleanup();
  return rc;
}
