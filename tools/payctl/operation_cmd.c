/* payctl capture | void | refund: publishes one operation on an existing
 * payment (its own idempotency key, the payment named by key or id) to the
 * intents topic, keyed by the payment's key so it stays ordered with the
 * payment's other events. And `payctl authorize`: one authorization intent.
 * What happens to it is the pipeline's (its outcome on payments.outcomes,
 * `payctl payment show`). */
#include <glib.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "commands.h"
#include "event.h"
#include "gen.h"
#include "operation.h"
#include "opt.h"
#include "pgq.h"

static const char OP_USAGE[] =
    "usage: payctl capture <merchant> <payment-key> --key K --amount N --currency C [--final]\n"
    "       payctl void <merchant> <payment-key> --key K\n"
    "       payctl refund <merchant> <payment-key> --key K --amount N --currency C [--reason R]\n"
    "       (--payment-id: the second argument is the payment's id; its key is read from Postgres;\n"
    "        --kafka-key K publishes under another Kafka key than the payment's, for tests)\n"
    "       payctl authorize|sale <merchant> <key> --amount N --currency C [--customer C] [--pm PM]\n";

static int publish(payctl *p, const char *key, ps_event *ev) {
  char err[512];
  gen g;
  if (gen_open(&g, &p->cfg, NULL, err, sizeof err)) {
    fprintf(stderr, "payctl: %s\n", err);
    return PAYCTL_UNAVAILABLE;
  }
  ev->schema_version = PS_SCHEMA_VERSION;
  ev->published_at_ms = ps_now_ms();
  size_t len;
  uint8_t *buf = event_pack(ev, &len);
  if (!buf) abort();
  gen_publish_event(&g, key, buf, len);
  free(buf);
  gen_flush(&g);
  int rc = g.failed ? PAYCTL_UNAVAILABLE : PAYCTL_OK;
  gen_close(&g);
  return rc;
}

int cmd_operation(payctl *p, int argc, char **argv) {
  static const struct option longopts[] = {
      {"key", required_argument, NULL, 'k'},      {"amount", required_argument, NULL, 'a'},
      {"currency", required_argument, NULL, 'c'}, {"final", no_argument, NULL, 'f'},
      {"reason", required_argument, NULL, 'r'},   {"payment-id", no_argument, NULL, 'i'},
      {"customer", required_argument, NULL, 'u'}, {"pm", required_argument, NULL, 'p'},
      {"kafka-key", required_argument, NULL, 'K'}, {0, 0, 0, 0}};
  const char *cmd = argv[0];
  int kind = op_kind_from_name(cmd);
  const char *key = NULL, *currency = NULL, *reason = "", *customer = "cust_cli",
             *pm = "pm_card_visa";
  long long amount = 0;
  const char *kafka_key = NULL; /* tests: race one payment's operations across partitions */
  bool final = false, by_id = false, has_amount = false;
  opt_begin();
  for (int c; (c = opt_next(argc, argv, longopts)) != -1;) {
    if (c == 'k') key = optarg;
    else if (c == 'a' && opt_long("--amount", optarg, 1, INT64_MAX, &amount) == 0) has_amount = true;
    else if (c == 'c') currency = optarg;
    else if (c == 'f') final = true;
    else if (c == 'r') reason = optarg;
    else if (c == 'i') by_id = true;
    else if (c == 'u') customer = optarg;
    else if (c == 'p') pm = optarg;
    else if (c == 'K') kafka_key = optarg;
    else return opt_usage(cmd, OP_USAGE);
  }
  if (argc - optind != 2 || kind < 0) return opt_usage(cmd, OP_USAGE);
  const char *merchant = argv[optind], *ref = argv[optind + 1];
  ps_money money = PAYMENTS__V1__MONEY__INIT;
  money.amount_minor = amount;
  money.currency = (char *)(currency ? currency : "");
  ps_event ev = PAYMENTS__V1__PAYMENT_EVENT__INIT;

  if (kind == KIND_AUTHORIZE || (kind == KIND_SALE && strcmp(cmd, "sale") == 0)) {
    if (!has_amount || !currency) return opt_usage(cmd, OP_USAGE);
    ps_intent in = PAYMENTS__V1__PAYMENT_INTENT__INIT;
    Payments__V1__PaymentMethod m = PAYMENTS__V1__PAYMENT_METHOD__INIT;
    m.id = (char *)pm;
    in.idempotency_key = (char *)ref;
    in.merchant_id = (char *)merchant;
    in.customer_id = (char *)customer;
    in.amount = &money;
    in.created_at_ms = ps_now_ms();
    in.payment_method = &m;
    in.kind = (ps_kind)kind;
    ev.intent = &in;
    return publish(p, ref, &ev);
  }
  if (!key || (kind == KIND_VOID) == (has_amount || currency) || (final && kind != KIND_CAPTURE))
    return opt_usage(cmd, OP_USAGE);
  ps_operation op = PAYMENTS__V1__PAYMENT_OPERATION__INIT;
  op.kind = (ps_kind)kind;
  op.idempotency_key = (char *)key;
  op.merchant_id = (char *)merchant;
  op.final_capture = final;
  op.created_at_ms = ps_now_ms();
  op.reason = (char *)reason;
  if (kind != KIND_VOID) op.amount = &money;
  ev.operation = &op;
  if (!by_id) {
    op.payment_key = (char *)ref;
    return publish(p, kafka_key ? kafka_key : ref, &ev);
  }
  op.payment_id = (char *)ref;
  const char *v[] = {merchant, ref};
  PGresult *r = pgq_query(
      p, "SELECT idempotency_key FROM payments WHERE merchant_id = $1 AND payment_id = $2", 2, v);
  if (!r) return pgq_failure(p);
  /* An unknown id is the pipeline's to refuse (payment_not_found): keyed by the id. */
  gchar *pkey = g_strdup(PQntuples(r) ? PQgetvalue(r, 0, 0) : ref);
  PQclear(r);
  int rc = publish(p, kafka_key ? kafka_key : pkey, &ev);
  g_free(pkey);
  return rc;
}

/* payctl payment show <merchant> <key|payment_id>: state, amounts,
 * operations, attempts and postings. */
int cmd_payment(payctl *p, int argc, char **argv) {
  static const struct option no_options[] = {{0, 0, 0, 0}};
  opt_begin();
  if (opt_next(argc, argv, no_options) != -1 || argc - optind != 3 ||
      strcmp(argv[optind], "show") != 0)
    return opt_usage("payment", "usage: payctl payment show <merchant> <key|payment_id>");
  const char *v[] = {argv[optind + 1], argv[optind + 2]};
  PGresult *r = pgq_query(
      p,
      "SELECT payment_id, idempotency_key, kind, status, amount_minor, currency,"
      " authorized_minor, captured_minor, capturing_minor, refunded_minor, refunding_minor,"
      " released_minor, releasing_minor, disputed_minor, coalesce(processor, ''),"
      " coalesce(processor_charge_id, ''), coalesce(authorization_expires_at::text, '')"
      " FROM payments WHERE merchant_id = $1 AND (idempotency_key = $2 OR payment_id = $2)"
      " ORDER BY (payment_id = $2) DESC LIMIT 1",
      2, v);
  if (!r) return pgq_failure(p);
  if (PQntuples(r) == 0) {
    printf("no payment for merchant %s key or id %s\n", v[0], v[1]);
    PQclear(r);
    return PAYCTL_NOT_FOUND;
  }
#define G(i) PQgetvalue(r, 0, i)
  printf("payment_id:   %s\nkey:          %s\nkind:         %s\nstatus:       %s\n"
         "amount:       %s %s\nauthorized:   %s\ncaptured:     %s (in flight %s)\n"
         "refunded:     %s (in flight %s)\nreleased:     %s (in flight %s)\ndisputed:     %s\n"
         "processor:    %s %s\nexpires_at:   %s\n",
         G(0), G(1), G(2), G(3), G(4), G(5), G(6), G(7), G(8), G(9), G(10), G(11), G(12), G(13),
         G(14), G(15), G(16));
#undef G
  const char *pid[] = {PQgetvalue(r, 0, 0)};
  gchar *payment_id = g_strdup(pid[0]);
  PQclear(r);
  const char *id1[] = {payment_id};
  struct {
    const char *title, *sql;
  } parts[] = {
      {"operations",
       "SELECT operation_id, kind, idempotency_key, state, amount_minor, currency,"
       " coalesce(error_code, ''), coalesce(processor_op_id, ''), created_at"
       " FROM payment_operations WHERE payment_id = $1 ORDER BY created_at, operation_id"},
      {"attempts",
       "SELECT processor, state, idempotency_key, sends, refused, coalesce(processor_charge_id, ''),"
       " coalesce(decline_code, '') FROM charge_attempts WHERE payment_id = $1 ORDER BY created_at"},
      {"postings",
       "SELECT t.transaction_id, t.kind, coalesce(t.operation_id, ''), a.name, e.direction,"
       " e.amount_minor, e.currency FROM ledger_transactions t"
       " JOIN ledger_entries e USING (transaction_id) JOIN ledger_accounts a USING (account_id)"
       " WHERE t.payment_id = $1 ORDER BY e.entry_id"},
  };
  int rc = PAYCTL_OK;
  for (size_t k = 0; k < sizeof parts / sizeof *parts && rc == PAYCTL_OK; k++) {
    PGresult *q = pgq_query(p, parts[k].sql, 1, id1);
    if (!q) {
      rc = pgq_failure(p);
      break;
    }
    printf("%s:\n", parts[k].title);
    pgq_print(q, "  ", " ");
    PQclear(q);
  }
  g_free(payment_id);
  return rc;
}
