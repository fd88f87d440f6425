/* payctl charges unresolved [--older-than SECONDS]: the charge attempts the
 * processor may hold without a definite answer (view charge_unresolved,
 * migration 008), oldest first. They are never given up: the charge worker
 * retries each with the same key until the processor answers; this is what
 * an operator checks against the processor when one stays long. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "payctl.h"

static int usage(void) {
  fprintf(stderr, "usage: payctl charges unresolved [--older-than SECONDS]\n");
  return 2;
}

static int unresolved(payctl *p, long long older_than_s) {
  char secs[32];
  snprintf(secs, sizeof secs, "%lld", older_than_s);
  const char *params[] = {secs};
  PGresult *r = payctl_query(
      p,
      "SELECT payment_id, merchant_id, idempotency_key, processor, processor_idempotency_key,"
      " amount_minor, currency, sends, refused, (extract(epoch FROM age))::bigint,"
      " coalesce(last_error, '')"
      " FROM charge_unresolved WHERE age >= make_interval(secs => $1::bigint)"
      " ORDER BY created_at, payment_id",
      1, params);
  if (!r) return 1;
  printf("payment_id\tmerchant\tidempotency_key\tprocessor\tprocessor_key\tamount_minor\tcurrency"
         "\tsends\trefused\tage_s\tlast_error\n");
  for (int i = 0; i < PQntuples(r); i++) {
    for (int c = 0; c < PQnfields(r); c++) printf("%s%s", c ? "\t" : "", PQgetvalue(r, i, c));
    printf("\n");
  }
  PQclear(r);
  return 0;
}

int cmd_charges(payctl *p, int argc, char **argv) {
  if (argc < 1 || strcmp(argv[0], "unresolved") != 0) return usage();
  static const struct option opts[] = {{"older-than", required_argument, NULL, 'o'},
                                       {NULL, 0, NULL, 0}};
  long long older = 0;
  int c;
  optind = 1;
  while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
    char *end = NULL;
    if (c != 'o') return usage();
    older = strtoll(optarg, &end, 10);
    if (!*optarg || *end || older < 0) return usage();
  }
  if (optind != argc) return usage();
  return unresolved(p, older);
}
