/* ledger: double-entry bookkeeping. Consumes payments.charged and posts each
 * successful payment once, many payments per Postgres transaction, from what
 * Postgres recorded (the payment's amount and currency, the succeeded
 * attempt's processor and fee); an event that disagrees is dead-lettered.
 * The database moves hot account balances once per statement by their
 * summed delta, and refuses an unbalanced transaction, a second posting and
 * any edit of entries. Ends the payment `succeeded` and publishes its
 * outcome and the ledgered event. */
#ifndef LEDGER_H
#define LEDGER_H

#include "kloop.h"

extern const stage_def ledger_stage;

#endif
