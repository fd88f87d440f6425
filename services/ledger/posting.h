/* posting: the ledger's posting rules, in one place. Pure: given a payment's
 * facts, the balanced entries it posts. Refunds and chargebacks will add
 * their rules here (accounts liability:refunds_payable, expense:chargebacks). */
#ifndef LEDGER_POSTING_H
#define LEDGER_POSTING_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define POSTING_MAX_ENTRIES 4
#define POSTING_ACCOUNT_MAX 96

typedef struct posting_entry {
  char account[POSTING_ACCOUNT_MAX]; /* "<type>:<name>[:<qualifier>]" */
  char direction;                    /* 'D' or 'C' */
  int64_t amount_minor;              /* > 0 */
} posting_entry;

/* A successful payment of amount with processor fee:
 *   Dr asset:processor_receivable:{processor}  amount
 *   Cr revenue:payments                          amount
 *   Dr expense:processing_fees                   fee   (only when fee > 0)
 *   Cr asset:processor_receivable:{processor}  fee
 * A fee above the amount posts too (the receivable's net is negative).
 * Returns the number of entries, or -1 for impossible input (amount <= 0,
 * fee < 0, bad processor name). */
int posting_for_payment(const char *processor, int64_t amount_minor, int64_t fee_minor,
                        posting_entry out[POSTING_MAX_ENTRIES]);

/* Shared by posting_lifecycle.c's rules:
 * a processor name as accounts carry it: 1-32 of [a-z0-9_]; */
bool posting_processor_ok(const char *processor);
/* appends one entry at out[*n] and counts it; */
void posting_put(posting_entry *out, int *n, const char *account, char dir, int64_t amount);
/* the money a charge or capture moves (posting_for_payment's entries),
 * appended at out[*n]: receivable/revenue amount, fee/receivable fee. */
void posting_charge_moves(const char *processor, int64_t amount_minor, int64_t fee_minor,
                          posting_entry *out, int *n);

/* Debits equal credits (single currency); false on overflow too. */
bool posting_balanced(const posting_entry *e, int n);

/* The account type is the name's first segment. */
const char *posting_account_type(const char *account);

#endif
