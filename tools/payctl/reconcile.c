/* payctl reconcile: the processor's charges against our payments and our
 * ledger postings. Every successful charge must belong to exactly one
 * succeeded payment posted exactly once, for the same amount and currency;
 * every posting must have its charge. The processor's list is loaded into a
 * temporary table and matched in SQL. Exits 1 on any difference.
 * (procsim serves the whole list at GET /v1/charges; a real processor's list
 * API is paginated — the loader is the one place to extend.) */
#include <curl/curl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "payctl.h"

typedef struct body {
  char *data;
  size_t len;
} body;

static size_t on_body(char *d, size_t size, size_t nmemb, void *ud) {
  body *b = ud;
  size_t n = size * nmemb;
  char *nd = realloc(b->data, b->len + n + 1);
  if (!nd) return 0;
  memcpy(nd + b->len, d, n);
  b->data = nd;
  b->len += n;
  b->data[b->len] = '\0';
  return n;
}

/* GETs the processor's charge list; returns the parsed JSON or NULL. */
static json_t *fetch_charges(void) {
  const char *base = cfg_env_str("PAYSTREAM_PROCESSOR_URL", "http://127.0.0.1:12111");
  char url[1024], auth[600];
  snprintf(url, sizeof url, "%s/v1/charges", base);
  snprintf(auth, sizeof auth, "Authorization: Bearer %s",
           cfg_env_str("PAYSTREAM_PROCESSOR_API_KEY", "sk_test_paystream"));
  CURL *c = curl_easy_init();
  struct curl_slist *h = curl_slist_append(NULL, auth);
  body b = {0};
  curl_easy_setopt(c, CURLOPT_URL, url);
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
  curl_easy_setopt(c, CURLOPT_TIMEOUT, 60L);
  CURLcode cc = curl_easy_perform(c);
  long status = 0;
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
  curl_slist_free_all(h);
  curl_easy_cleanup(c);
  json_t *root = NULL;
  if (cc == CURLE_OK && status == 200) root = json_loadb(b.data, b.len, 0, NULL);
  else fprintf(stderr, "payctl: could not list the processor's charges (%s, HTTP %ld)\n",
               curl_easy_strerror(cc), status);
  free(b.data);
  return root;
}

static const char SQL_LOAD[] =
    "CREATE TEMP TABLE processor_charges AS SELECT * FROM unnest($1::text[], $2::text[],"
    " $3::bigint[], $4::text[]) AS u(charge_id, payment_id, amount_minor, currency)";

/* Each query lists one kind of difference: a label and two columns. */
static const struct {
  const char *label, *sql;
} checks[] = {
    {"charged more than once",
     "SELECT payment_id, string_agg(charge_id, ',') FROM processor_charges"
     " GROUP BY payment_id HAVING count(*) > 1"},
    {"charge without a succeeded payment",
     "SELECT c.charge_id, coalesce(p.status, 'unknown payment') FROM processor_charges c"
     " LEFT JOIN payments p ON p.payment_id = c.payment_id"
     " WHERE p.status IS DISTINCT FROM 'succeeded'"},
    {"charge without a ledger posting",
     "SELECT c.charge_id, c.payment_id FROM processor_charges c WHERE NOT EXISTS"
     " (SELECT 1 FROM ledger_transactions t WHERE t.payment_id = c.payment_id"
     " AND t.kind = 'payment')"},
    {"posting without a charge",
     "SELECT t.payment_id, t.transaction_id::text FROM ledger_transactions t"
     " WHERE t.kind = 'payment' AND NOT EXISTS"
     " (SELECT 1 FROM processor_charges c WHERE c.payment_id = t.payment_id)"},
    {"posted amount differs from the charge",
     "SELECT c.payment_id, c.amount_minor || ' ' || c.currency || ' charged, ' ||"
     " e.amount_minor || ' ' || e.currency || ' posted' FROM processor_charges c"
     " JOIN ledger_transactions t ON t.payment_id = c.payment_id AND t.kind = 'payment'"
     " JOIN ledger_entries e ON e.transaction_id = t.transaction_id AND e.direction = 'C'"
     " JOIN ledger_accounts a ON a.account_id = e.account_id AND a.name = 'revenue:payments'"
     " WHERE e.amount_minor <> c.amount_minor OR e.currency <> c.currency"},
};

int cmd_reconcile(payctl *p, int argc, char **argv) {
  (void)argv;
  if (argc != 0) {
    fprintf(stderr, "usage: payctl reconcile\n");
    return 2;
  }
  json_t *root = fetch_charges();
  json_t *data = root ? json_object_get(root, "data") : NULL;
  if (!json_is_array(data)) {
    if (root) json_decref(root);
    return 1;
  }
  pg_array a[4];
  pg_arrays_init(a, 4);
  size_t i, n = 0;
  json_t *ch;
  json_array_foreach(data, i, ch) {
    const char *status = json_string_value(json_object_get(ch, "status"));
    if (!status || strcmp(status, "succeeded") != 0) continue;
    const char *cur = json_string_value(json_object_get(ch, "currency"));
    char up[4] = {0};
    for (int k = 0; cur && k < 3 && cur[k]; k++) up[k] = (char)(cur[k] & ~0x20);
    pg_array_add_str(&a[0], json_string_value(json_object_get(ch, "id")));
    pg_array_add_str(&a[1],
                     json_string_value(json_object_get(json_object_get(ch, "metadata"), "payment_id")));
    pg_array_add_int(&a[2], json_integer_value(json_object_get(ch, "amount")));
    pg_array_add_str(&a[3], up);
    n++;
  }
  json_decref(root);
  const char *params[4];
  pg_arrays_finish(a, 4, params);
  PGresult *r = payctl_query(p, SQL_LOAD, 4, params);
  pg_arrays_free(a, 4);
  if (!r) return 1;
  PQclear(r);

  long differences = 0;
  for (size_t c = 0; c < sizeof checks / sizeof checks[0]; c++) {
    r = payctl_query(p, checks[c].sql, 0, NULL);
    if (!r) return 1;
    for (int row = 0; row < PQntuples(r); row++, differences++)
      printf("DIFFERENCE %s: %s %s\n", checks[c].label, PQgetvalue(r, row, 0),
             PQgetvalue(r, row, 1));
    PQclear(r);
  }
  r = payctl_query(p, "SELECT count(*) FROM ledger_transactions WHERE kind = 'payment'", 0, NULL);
  if (!r) return 1;
  printf("reconcile: %zu processor charges, %s ledger postings, %ld differences\n", n,
         PQgetvalue(r, 0, 0), differences);
  PQclear(r);
  return differences ? 1 : 0;
}
