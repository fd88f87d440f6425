/* reconcile_report: `payctl reconcile --report FILE` — a processor's daily
 * settlement report against Postgres and the ledger; posts its payouts
 * once when it agrees (reconcile_report.c has the matching rules). */
#ifndef PAYCTL_RECONCILE_REPORT_H
#define PAYCTL_RECONCILE_REPORT_H

#include "payctl.h"

#define RECONCILE_REPORT_SYNOPSIS "--report FILE [--processor NAME] [--day YYYY-MM-DD]"
#define RECONCILE_REPORT_USAGE "usage: payctl reconcile " RECONCILE_REPORT_SYNOPSIS

/* argv as cmd_reconcile got it (argv[0] "reconcile"). Exit codes: 0 clean
 * (payouts posted, or already posted), 1 mismatches (nothing posted), 2
 * usage or a malformed report, 3 no such file, 5 Postgres unavailable. */
int reconcile_report(payctl *p, int argc, char **argv);

#endif
