/* review_show: `payctl review show <payment>` (review_show.c). */
#ifndef PAYCTL_REVIEW_SHOW_H
#define PAYCTL_REVIEW_SHOW_H

#include "payctl.h"

/* Prints the payment's request facts, fraud scores, reasons (rules and
 * model features) and decision history. Returns a PAYCTL_* exit code. */
int review_show(payctl *p, const char *id);

#endif
