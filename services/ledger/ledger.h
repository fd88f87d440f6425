/* ledger: double-entry bookkeeping. Consumes payments.charged and posts each
 * successful payment once, many payments per Postgres transaction, with hot
 * account balances updated once per batch by their summed delta. The
 * database refuses an unbalanced transaction, a second posting and any edit
 * of entries. Ends the payment `succeeded` and publishes its outcome and the
 * ledgered event. */
#ifndef LEDGER_H
#define LEDGER_H

#include "kloop.h"

extern const stage_def ledger_stage;

#endif
