/* payctl: the operator's command line. Reads the same PAYSTREAM_* variables
 * as the workers. This file is only the dispatcher: it loads the
 * configuration and calls one command from the table below; each command
 * lives in the file named for it (commands.h) and shares helpers that are
 * not here (pgq, kafka_util, opt, gen).
 *
 * Commands (as `payctl --help` lists them):
 *   migrate      apply db/migrations in order, each once, each in a transaction
 *   publish      publish generated intents, or intents from JSON lines
 *   load         open-loop load: publishes at a rate, reports throughput and end-to-end latency
 *   status       show one payment
 *   wait         wait until N intents are terminal
 *   summary      outcomes by status and end-to-end throughput
 *   ledger       recompute and check the books; balances; one account; a payment's entries
 *   reconcile    every processor's charges, captures and refunds vs Postgres vs postings
 *   replay       move a stage's consumer-group offsets back (stop its workers first)
 *   lag          committed offset, end offset and lag per partition
 *   idempotency  a claim in Postgres and its Redis cache entry; retention
 *   outcomes     payments.outcomes as JSON lines (no group, no commit)
 *   dlq          dead letters: as JSON lines, one in detail, re-published to their source
 *   blocklist    the fraud stage's blocklists (Redis sets)
 *   review       payments fraud holds for review; approve sends one on to charge, reject ends it
 *   charges      charge attempts the processor may hold without a definite answer, oldest first
 *   payment      one payment's lifecycle: state, amounts, operations, attempts, postings
 *   authorize    publish one authorization (hold only) intent
 *   sale         publish one sale intent
 *   capture      publish a capture of an authorization, with its own idempotency key
 *   void         publish a void (release what is left of an authorization)
 *   refund       publish a refund of captured money, with its own idempotency key
 *   expire       the authorization-expiry sweeper: release every authorization past its window
 *
 * Exit codes (payctl.h): 0 ok, 1 failed or differences found, 2 usage or
 * configuration error, 3 not found, 4 refused by the current state,
 * 5 a dependency unavailable. */
#include <stdio.h>
#include <string.h>

#include "commands.h"
#include "log.h"

typedef struct command {
  const char *name;
  int (*run)(payctl *p, int argc, char **argv);
  const char *synopsis; /* arguments, one line per form */
  const char *summary;
} command;

static const command commands[] = {
    {"migrate", cmd_migrate, "", "apply db/migrations in order, each once, each in a transaction"},
    {"publish", cmd_publish,
     "[--count N] [--duplicates N] [--conflicts N] [--declines N] [--fraud N] [--slow N]\n"
     "  [--invalid N] [--garbage N] [--fuzz N] [--cross-partition N] [--customers N]\n"
     "  [--padding BYTES] [--seed S] [--run NAME] [--manifest FILE]\n"
     "| --json FILE|- [--run PREFIX]",
     "publish generated intents, or intents from JSON lines\n"
     "generated: a mix of valid, declining, fraudulent, slow, invalid, undecodable and\n"
     "damaged intents, duplicates and reused keys, with a manifest of what each must end\n"
     "as; --json: a test's crafted payments or fraudgen's data set, as they are"},
    {"load", cmd_load,
     "[--count N] [--rate PER_S] [--declines PCT] [--fraud PCT] [--duplicates PCT]\n"
     "  [--repeat-customers PCT] [--timeout S] [--seed S] [--run NAME] [--json FILE]",
     "open-loop load: publishes at a rate, reports throughput and end-to-end latency"},
    {"status", cmd_status, "<merchant> <idempotency-key>", "show one payment"},
    {"wait", cmd_wait, "--terminal N [--timeout S]", "wait until N intents are terminal"},
    {"summary", cmd_summary, "", "outcomes by status and end-to-end throughput"},
    {"ledger", cmd_ledger, "verify | balances | balance <account> | entries <payment>",
     "recompute and check the books; balances; one account; a payment's entries"},
    {"reconcile", cmd_reconcile, "[--report FILE [--processor NAME] [--day YYYY-MM-DD]]",
     "every processor's charges, captures and refunds vs Postgres vs postings\n"
     "primary and backup: charged twice (across processors), a charge without a succeeded\n"
     "payment or without a posting, a posting without a charge, amount or currency\n"
     "differences; a capture or refund without a succeeded operation, or the reverse, or\n"
     "without a posting, or of another amount; exit 1 on any\n"
     "--report: a processor's daily settlement CSV (NAME: PAYSTREAM_PROCESSOR_NAME, stripe)\n"
     "line by line against payments, operations and postings; mismatch kinds:\n"
     "at_processor_not_in_ledger, in_ledger_not_at_processor (that day), amount_differs,\n"
     "fee_differs, status_differs, payout_differs; exit 1 on any and nothing posted;\n"
     "clean: each payout posted once (asset:cash / asset:processor_receivable:NAME),\n"
     "the same report again posts nothing more"},
    {"replay", cmd_replay,
     "--stage S (--to-offset earliest|N | --to-time 2026-11-25T10:00:00Z)\n"
     "  [--partitions 0,1,...] [--force]",
     "move a stage's consumer-group offsets back (stop its workers first)"},
    {"lag", cmd_lag, "--stage S", "committed offset, end offset and lag per partition"},
    {"idempotency", cmd_idempotency,
     "show <merchant> <key> | prune --older-than 30d|12h|90m|3600s",
     "a claim in Postgres and its Redis cache entry; retention"},
    {"outcomes", cmd_outcomes, "", "payments.outcomes as JSON lines (no group, no commit)"},
    {"dlq", cmd_dlq, "list | show <partition> <offset> | redrive [--dry-run]",
     "dead letters: as JSON lines, one in detail, re-published to their source"},
    {"blocklist", cmd_blocklist,
     "add|remove <card|ip|email|device> <value> | list [card|ip|email|device]",
     "the fraud stage's blocklists (Redis sets)"},
    {"review", cmd_review, "list | show <payment> | approve|reject <payment> [--operator NAME]",
     "payments fraud holds for review; approve sends one on to charge, reject ends it"},
    {"charges", cmd_charges, "unresolved [--older-than SECONDS]",
     "charge attempts the processor may hold without a definite answer, oldest first\n"
     "never given up: the charge worker retries each on the same processor with the same\n"
     "key until it answers; check a long-unresolved one against the processor"},
    {"payment", cmd_payment, "show <merchant> <key|payment_id>",
     "one payment's lifecycle: state, amounts, operations, attempts, postings"},
    {"authorize", cmd_operation, "<merchant> <key> --amount N --currency C [--customer C] [--pm PM]",
     "publish one authorization (hold only) intent"},
    {"sale", cmd_operation, "<merchant> <key> --amount N --currency C [--customer C] [--pm PM]",
     "publish one sale intent"},
    {"capture", cmd_operation,
     "<merchant> <payment-key> --key K --amount N --currency C [--final] [--payment-id]",
     "publish a capture of an authorization, with its own idempotency key"},
    {"void", cmd_operation, "<merchant> <payment-key> --key K [--payment-id]",
     "publish a void (release what is left of an authorization)"},
    {"refund", cmd_operation,
     "<merchant> <payment-key> --key K --amount N --currency C [--reason R] [--payment-id]",
     "publish a refund of captured money, with its own idempotency key"},
    {"expire", cmd_expire, "[--limit N] [--every SECONDS]",
     "the authorization-expiry sweeper: release every authorization past its window\n"
     "(terminal state, hold reversed in the ledger, in Postgres) and publish the\n"
     "merchant's outcomes (status expired); safe to run several at once"},
};

static const char EXIT_CODES[] =
    "exit codes:\n"
    "  0  done; a check found nothing wrong\n"
    "  1  a check found differences (ledger verify, reconcile), or the operation did not\n"
    "     complete (wait or load timed out, a migration failed)\n"
    "  2  usage: unknown command or option, an invalid number, time or duration, or a\n"
    "     bad PAYSTREAM_* setting; nothing was done\n"
    "  3  not found: the payment, claim, account, dead letter, file or topic named\n"
    "  4  refused by the current state: a payment decided otherwise or not held for\n"
    "     review, a consumer group with live members\n"
    "  5  unavailable: Postgres, Redis, Kafka or a processor could not be reached or failed\n"
    "     (migrate: a lock held by a long transaction, lock_timeout on every retry)\n";

/* Prints a synopsis with its continuation lines indented under the name. */
static void print_synopsis(FILE *f, const command *c) {
  fprintf(f, "  payctl %s%s", c->name, *c->synopsis ? " " : "");
  for (const char *s = c->synopsis; *s; s++) {
    fputc(*s, f);
    if (*s == '\n') fprintf(f, "%*s", (int)strlen(c->name) + 8, "");
  }
  fputc('\n', f);
}

static void print_help(FILE *f) {
  fprintf(f, "usage: payctl <command> [arguments]   (payctl <command> --help for one)\n"
             "configuration: the PAYSTREAM_* environment, as the workers read it\n\ncommands:\n");
  for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
    fprintf(f, "  %-12s %.*s\n", commands[i].name, (int)strcspn(commands[i].summary, "\n"),
            commands[i].summary); /* the first line; `payctl CMD --help` has the rest */
  fprintf(f, "\n");
  for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++) print_synopsis(f, &commands[i]);
  fprintf(f, "\n%s", EXIT_CODES);
}

static const command *find(const char *name) {
  for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
    if (strcmp(commands[i].name, name) == 0) return &commands[i];
  return NULL;
}

static int is_help(const char *a) {
  return strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0 || strcmp(a, "help") == 0;
}

int main(int argc, char **argv) {
  if (argc < 2) {
    print_help(stderr);
    return PAYCTL_USAGE;
  }
  if (is_help(argv[1])) {
    print_help(stdout);
    return PAYCTL_OK;
  }
  const command *c = find(argv[1]);
  if (!c) {
    fprintf(stderr, "payctl: unknown command '%s' (payctl --help lists them)\n", argv[1]);
    return PAYCTL_USAGE;
  }
  if (argc == 3 && (strcmp(argv[2], "--help") == 0 || strcmp(argv[2], "-h") == 0)) {
    printf("usage:\n");
    print_synopsis(stdout, c);
    printf("%s\n", c->summary);
    return PAYCTL_OK;
  }
  static payctl p;
  char err[512];
  if (cfg_load(&p.cfg, "payctl", err, sizeof err)) {
    fprintf(stderr, "payctl: %s\n", err);
    return PAYCTL_USAGE;
  }
  log_init("payctl", LOG_WARN);
  pg_init(&p.pg, p.cfg.pg_dsn, "payctl", p.cfg.pg_prepare != 0);
  int rc = c->run(&p, argc - 1, argv + 1); /* the command's argv[0] is its name */
  pg_close(&p.pg);
  cfg_close(&p.cfg);
  return rc;
}
