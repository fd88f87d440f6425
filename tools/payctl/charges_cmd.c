/* payctl charges unresolved [--older-than SECONDS]: the charge attempts the
 * processor may hold without a definite answer (view charge_unresolved,
 * migration 008), oldest first. They are never given up: the charge worker
 * retries each with the same key until the processor answers; this is what
 * an operator checks against the processor when one stays long. */
#include <stdio.h>
#include <string.h>

#include "commands.h"
#include "opt.h"
#include "pgq.h"

static int usage(void) {
  fprintf(stderr, "usage: payctl charges unresolved [--older-than SECONDS]\n");
  return PAYCTL_USAGE;
}

static int unresolved(payctl *p, long long older_than_s) {
  char secs[32];
  snprintf(secs, sizeof secs, "%lld", older_than_s);
  const char *params[] = {secs};
  PGresult *r = pgq_query(
      p,
      "SELECT payment_id, merchant_id, idempotency_key, processor, processor_idempotency_key,"
      " amount_minor, currency, sends, refused, (extract(epoch FROM age))::bigint,"
      " coalesce(last_error, '')"
      " FROM charge_unresolved WHERE age >= make_interval(secs => $1::bigint)"
      " ORDER BY created_at, payment_id",
      1, params);
  if (!r) return pgq_failure(p);
  printf("payment_id\tmerchant\tidempotency_key\tprocessor\tprocessor_key\tamount_minor\tcurrency"
         "\tsends\trefused\tage_s\tlast_error\n");
  pgq_print(r, "", "\t");
  PQclear(r);
  return PAYCTL_OK;
}

int cmd_charges(payctl *p, int argc, char **argv) {
  static const struct option longopts[] = {{"older-than", required_argument, NULL, 'o'},
                                           {0, 0, 0, 0}};
  long long older = 0;
  opt_begin();
  for (int c; (c = opt_next(argc, argv, longopts)) != -1;) {
    if (c != 'o') return usage();
    if (opt_long("--older-than", optarg, 0, 100LL * 365 * 86400, &older) != 0) return PAYCTL_USAGE;
  }
  if (argc - optind != 1 || strcmp(argv[optind], "unresolved") != 0) return usage();
  return unresolved(p, older);
}
