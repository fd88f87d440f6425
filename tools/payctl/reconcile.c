/* payctl reconcile: every configured processor's charges and operations
 * against our payments, operations and ledger postings. Every successful
 * charge, at any processor, must belong to exactly one succeeded payment
 * posted exactly once, for the same amount and currency; every posting must
 * have its charge. Every capture and refund the processor made must be one
 * succeeded payment_operations row of that processor (by processor_op_id),
 * posted, for the same amount and currency; every succeeded one must be
 * the processor's. The processors are the ones the charge workers use — the primary
 * (PAYSTREAM_PROCESSOR_*) and, when PAYSTREAM_BACKUP_PROCESSOR_URL is set,
 * the backup — with their API keys read the same way (NAME or NAME_FILE).
 * Their lists are loaded into a temporary table and matched in SQL. Exits 1
 * on any difference, 5 when a processor's list cannot be read. Lists are
 * read Stripe's way, page by page (fetch_list). Operations come from
 * procsim's GET /_sim/operations; a real processor has no such list (404):
 * then the charges alone are reconciled here, and the captures and refunds
 * by --report FILE (the settlement report), which is reconcile_report.c. */
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

/* GETs one page of a processor's list; returns its parsed JSON (NULL when
 * not 200 or not JSON), the HTTP status in *status. */
static json_t *fetch_page(const processor *proc, const char *url, long *status, CURLcode *cc) {
  gchar *auth = g_strdup_printf("Authorization: Bearer %s", proc->api_key);
  CURL *c = curl_easy_init();
  struct curl_slist *h = curl_slist_append(NULL, auth);
  GString *body = g_string_new(NULL);
  curl_easy_setopt(c, CURLOPT_URL, url);
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, body);
  curl_easy_setopt(c, CURLOPT_TIMEOUT, 60L);
  *cc = curl_easy_perform(c);
  *status = 0;
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, status);
  curl_slist_free_all(h);
  curl_easy_cleanup(c);
  json_t *root = NULL;
  if (*cc == CURLE_OK && *status == 200) root = json_loadb(body->str, body->len, 0, NULL);
  g_string_free(body, TRUE);
  g_free(auth);
  return root;
}

/* A safety bound: 100 objects a page, so a million of them. */
#define MAX_PAGES 10000

/* GETs one of a processor's lists (path, what it lists) the way Stripe
 * paginates them — limit=100, then starting_after=<the page's last id>
 * while has_more — and returns all their objects in one array, or NULL
 * (error printed). When absent is not NULL, a 404 on the first page sets it
 * and returns NULL quietly: this processor does not serve that list. */
static json_t *fetch_list(const processor *proc, const char *path, const char *what,
                          bool *absent) {
  json_t *all = json_array();
  gchar *after = NULL;
  for (int page = 0; all; page++) {
    if (page == MAX_PAGES) {
      fprintf(stderr, "payctl: the %s of processor %s have more than %d pages; giving up\n", what,
              proc->name, MAX_PAGES);
      json_decref(all);
      all = NULL;
      break;
    }
    char *esc = after ? curl_easy_escape(NULL, after, 0) : NULL;
    gchar *url = g_strdup_printf("%s%s?limit=100%s%s", proc->url, path,
                                 esc ? "&starting_after=" : "", esc ? esc : "");
    curl_free(esc);
    long status;
    CURLcode cc;
    json_t *root = fetch_page(proc, url, &status, &cc);
    g_free(url);
    json_t *data = json_object_get(root, "data");
    json_t *last = json_array_get(data, json_array_size(data) - 1);
    bool more = json_is_true(json_object_get(root, "has_more"));
    const char *last_id = json_string_value(json_object_get(last, "id"));
    if (page == 0 && absent && cc == CURLE_OK && status == 404) {
      *absent = true;
      json_decref(all);
      all = NULL;
    } else if (!json_is_array(data) || (more && !last_id)) {
      fprintf(stderr, "payctl: could not list the %s of processor %s (%s, HTTP %ld)\n", what,
              proc->name,
              cc != CURLE_OK ? curl_easy_strerror(cc) : status != 200 ? "refused" : "not a list",
              status);
      json_decref(all);
      all = NULL;
    } else {
      json_array_extend(all, data);
      g_free(after);
      after = more ? g_strdup(last_id) : NULL;
    }
    json_decref(root);
    if (all && !after) break;
  }
  g_free(after);
  return all;
}

static void add_upper(pg_array *a, const char *cur) {
  char up[4] = {0};
  for (int k = 0; cur && k < 3 && cur[k]; k++) up[k] = (char)(cur[k] & ~0x20);
  pg_array_add_str(a, up);
}

/* Adds a list's successful charges to the arrays; returns their number. */
static size_t add_charges(pg_array *a, const char *processor, json_t *data) {
  size_t i, n = 0;
  json_t *ch;
  json_array_foreach(data, i, ch) {
    const char *status = json_string_value(json_object_get(ch, "status"));
    if (!status || strcmp(status, "succeeded") != 0) continue;
    pg_array_add_str(&a[0], json_string_value(json_object_get(ch, "id")));
    pg_array_add_str(&a[1], json_string_value(
                                json_object_get(json_object_get(ch, "metadata"), "payment_id")));
    pg_array_add_int(&a[2], json_integer_value(json_object_get(ch, "amount")));
    add_upper(&a[3], json_string_value(json_object_get(ch, "currency")));
    pg_array_add_str(&a[4], processor);
    n++;
  }
  return n;
}

/* Adds an operations log's succeeded captures and refunds (kind, object id,
 * payment id, amount, currency, processor); returns their number. */
static size_t add_ops(pg_array *a, const char *processor, json_t *data) {
  size_t i, n = 0;
  json_t *op;
  json_array_foreach(data, i, op) {
    const char *kind = json_string_value(json_object_get(op, "op"));
    const char *status = json_string_value(json_object_get(op, "status"));
    if (!kind || !status || strcmp(status, "succeeded") != 0 ||
        (strcmp(kind, "capture") != 0 && strcmp(kind, "refund") != 0))
      continue;
    pg_array_add_str(&a[0], kind);
    pg_array_add_str(&a[1], json_string_value(json_object_get(op, "object_id")));
    pg_array_add_str(&a[2], json_string_value(json_object_get(op, "payment_id")));
    pg_array_add_int(&a[3], json_integer_value(json_object_get(op, "amount")));
    add_upper(&a[4], json_string_value(json_object_get(op, "currency")));
    pg_array_add_str(&a[5], processor);
    n++;
  }
  return n;
}

static const char SQL_LOAD[] =
    "CREATE TEMP TABLE processor_charges AS SELECT * FROM unnest($1::text[], $2::text[],"
    " $3::bigint[], $4::text[], $5::text[]) AS u(charge_id, payment_id, amount_minor, currency,"
    " processor)";
static const char SQL_LOAD_OPS[] =
    "CREATE TEMP TABLE processor_ops AS SELECT * FROM unnest($1::text[], $2::text[],"
    " $3::text[], $4::bigint[], $5::text[], $6::text[]) AS u(kind, object_id, payment_id,"
    " amount_minor, currency, processor)";

/* Each query lists one kind of difference: a label and two columns. A
 * charge is named by its id, and by its processor too when there are two
 * ($1: whether to). */
#define CHARGE_NAME "c.charge_id || CASE WHEN $1 THEN ' at ' || c.processor ELSE '' END"
static const struct {
  const char *label, *sql;
  bool ops; /* needs the processors' operations (processor_ops) */
} checks[] = {
    {"charged more than once",
     "SELECT c.payment_id, string_agg(" CHARGE_NAME ", ',') FROM processor_charges c"
     " GROUP BY c.payment_id HAVING count(*) > 1", false},
    {"charge without a succeeded payment",
     "SELECT " CHARGE_NAME ", coalesce(p.status, 'unknown payment') FROM processor_charges c"
     " LEFT JOIN payments p ON p.payment_id = c.payment_id"
     " WHERE p.status IS DISTINCT FROM 'succeeded'", false},
    {"charge without a ledger posting",
     "SELECT " CHARGE_NAME ", c.payment_id FROM processor_charges c WHERE NOT EXISTS"
     " (SELECT 1 FROM ledger_transactions t WHERE t.payment_id = c.payment_id"
     " AND t.kind = 'payment')", false},
    {"posting without a charge",
     "SELECT t.payment_id, t.transaction_id::text FROM ledger_transactions t"
     " WHERE $1::boolean IS NOT NULL AND t.kind = 'payment' AND NOT EXISTS"
     " (SELECT 1 FROM processor_charges c WHERE c.payment_id = t.payment_id)", false},
    {"posted amount differs from the charge",
     "SELECT c.payment_id, c.amount_minor || ' ' || c.currency || ' charged, ' ||"
     " e.amount_minor || ' ' || e.currency || ' posted' ||"
     " CASE WHEN $1 THEN ' (' || c.processor || ')' ELSE '' END FROM processor_charges c"
     " JOIN ledger_transactions t ON t.payment_id = c.payment_id AND t.kind = 'payment'"
     " JOIN ledger_entries e ON e.transaction_id = t.transaction_id AND e.direction = 'C'"
     " JOIN ledger_accounts a ON a.account_id = e.account_id AND a.name = 'revenue:payments'"
     " WHERE e.amount_minor <> c.amount_minor OR e.currency <> c.currency", false},
    {"operation without a succeeded operation",
     "SELECT o.kind || ' ' || o.object_id || CASE WHEN $1 THEN ' at ' || o.processor ELSE '' END,"
     " o.payment_id || ' ' || coalesce((SELECT 'operation ' || x.state FROM payment_operations x"
     "  WHERE x.processor_op_id = o.object_id AND x.processor = o.processor), 'unknown operation')"
     " FROM processor_ops o WHERE NOT EXISTS (SELECT 1 FROM payment_operations x"
     "  WHERE x.processor_op_id = o.object_id AND x.processor = o.processor AND x.kind = o.kind"
     "  AND x.state IN ('succeeded', 'posted'))", true},
    {"succeeded operation the processor does not have",
     "SELECT x.kind || ' ' || x.operation_id, x.payment_id || ' ' || coalesce(x.processor_op_id,"
     " 'no processor id') || CASE WHEN $1 THEN ' at ' || x.processor ELSE '' END"
     " FROM payment_operations x WHERE x.state IN ('succeeded', 'posted')"
     " AND x.kind IN ('capture', 'refund') AND NOT EXISTS (SELECT 1 FROM processor_ops o"
     "  WHERE o.object_id = x.processor_op_id AND o.processor = x.processor AND o.kind = x.kind)",
     true},
    {"operation without a ledger posting",
     "SELECT x.kind || ' ' || x.operation_id, x.payment_id || ' ' || x.state"
     " FROM payment_operations x WHERE $1::boolean IS NOT NULL AND x.state IN ('succeeded',"
     " 'posted') AND x.kind IN ('capture', 'refund') AND NOT EXISTS (SELECT 1"
     "  FROM ledger_transactions t WHERE t.operation_id = x.operation_id AND t.kind = x.kind)",
     false},
    {"operation amount differs",
     "SELECT x.kind || ' ' || x.operation_id, o.amount_minor || ' ' || o.currency ||"
     " ' at the processor, ' || x.amount_minor || ' ' || x.currency || ' in postgres'"
     " || CASE WHEN $1 THEN ' (' || o.processor || ')' ELSE '' END FROM processor_ops o"
     " JOIN payment_operations x ON x.processor_op_id = o.object_id AND x.processor = o.processor"
     "  AND x.kind = o.kind AND x.state IN ('succeeded', 'posted')"
     " WHERE x.amount_minor <> o.amount_minor OR x.currency <> o.currency", true},
};

/* Loads one list of every processor (path) with add into table (sql,
 * ncol columns). Returns PAYCTL_OK and the count in *n, or the exit code.
 * With unlisted (not NULL), a processor that does not serve the list is no
 * error: its name is appended to *unlisted. */
static int load_list(payctl *p, const processor *procs, int nproc, const char *path,
                     const char *what, size_t (*add)(pg_array *, const char *, json_t *),
                     const char *sql, int ncol, size_t *n, GString *unlisted) {
  pg_array a[6];
  pg_arrays_init(a, ncol);
  int rc = PAYCTL_OK;
  *n = 0;
  for (int i = 0; i < nproc && rc == PAYCTL_OK; i++) {
    bool absent = false;
    json_t *data = fetch_list(&procs[i], path, what, unlisted ? &absent : NULL);
    if (absent) g_string_append_printf(unlisted, "%s%s", unlisted->len ? ", " : "", procs[i].name);
    else if (!data) rc = PAYCTL_UNAVAILABLE;
    else *n += add(a, procs[i].name, data);
    if (data) json_decref(data);
  }
  if (rc == PAYCTL_OK) {
    const char *params[6];
    pg_arrays_finish(a, ncol, params);
    PGresult *r = pgq_query(p, sql, ncol, params);
    if (!r) rc = pgq_failure(p);
    PQclear(r);
  }
  pg_arrays_free(a, ncol);
  return rc;
}

/* Prints every difference (those about the processors' operations only
 * with ops); returns their number, or -1 (query failed). */
static long differences(payctl *p, bool name_processor, bool ops) {
  const char *v[] = {name_processor ? "true" : "false"};
  long found = 0;
  for (size_t c = 0; c < sizeof checks / sizeof checks[0]; c++) {
    if (checks[c].ops && !ops) continue;
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
  size_t n = 0, nops = 0;
  GString *unlisted = g_string_new(NULL);
  if (nproc == 0) {
    fprintf(stderr, "payctl: %s\n", err);
    rc = PAYCTL_USAGE;
  } else {
    curl_global_init(CURL_GLOBAL_DEFAULT);
    rc = load_list(p, procs, nproc, "/v1/charges", "charges", add_charges, SQL_LOAD, 5, &n,
                   NULL);
    if (rc == PAYCTL_OK)
      rc = load_list(p, procs, nproc, "/_sim/operations", "operations", add_ops, SQL_LOAD_OPS, 6,
                     &nops, unlisted);
  }
  long found = rc == PAYCTL_OK ? differences(p, nproc > 1, unlisted->len == 0) : 0;
  PGresult *r = NULL;
  if (found < 0 ||
      (rc == PAYCTL_OK &&
       !(r = pgq_query(p,
                       "SELECT count(*) FROM ledger_transactions"
                       " WHERE kind IN ('payment', 'capture', 'refund')",
                       0, NULL))))
    rc = pgq_failure(p);
  if (r) {
    printf("reconcile: %zu processor charges, %s ledger postings, %ld differences\n", n,
           PQgetvalue(r, 0, 0), found);
    if (unlisted->len)
      printf("operations: not listed by processor %s: their captures and refunds are not"
             " reconciled here; payctl reconcile --report (the settlement report) does\n",
             unlisted->str);
    else
      printf("operations: %zu captures and refunds at the processors\n", nops);
    if (nproc > 1) printf("processors: %s, %s\n", procs[0].name, procs[1].name);
    rc = found ? PAYCTL_FAILED : PAYCTL_OK;
    PQclear(r);
  }
  g_string_free(unlisted, TRUE);
  free(procs[0].api_key);
  free(procs[1].api_key);
  if (nproc) curl_global_cleanup();
  return rc;
}
