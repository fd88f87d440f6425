/* posting_lifecycle: the ledger's posting rules for the payment lifecycle
 * (DESIGN "Payment lifecycle" table), beside posting.h's sale. Pure: the
 * balanced entries of one money movement, each its own ledger transaction
 * (ledger_transactions.kind in parentheses). {p} is the processor.
 *   authorization of A (authorization):
 *     Dr asset:authorized_holds:{p} A          Cr liability:authorized_holds A
 *   capture of A, fee F, releasing R more (capture; R > 0 for a final
 *   capture of less than what was left):
 *     Dr liability:authorized_holds A+R        Cr asset:authorized_holds:{p} A+R
 *     Dr asset:processor_receivable:{p} A      Cr revenue:payments A
 *     Dr expense:processing_fees F             Cr asset:processor_receivable:{p} F
 *   void or expiry of R (release):
 *     Dr liability:authorized_holds R          Cr asset:authorized_holds:{p} R
 *   refund of R, succeeded (refund): requested, then paid out —
 *     Dr revenue:refunds R                     Cr liability:refunds_payable R
 *     Dr liability:refunds_payable R           Cr asset:processor_receivable:{p} R
 * Each returns the number of entries, or -1 for impossible input
 * (amounts <= 0 where required, negative fee or release, bad processor). */
#ifndef LEDGER_POSTING_LIFECYCLE_H
#define LEDGER_POSTING_LIFECYCLE_H

#include "posting.h"

#define POSTING_LC_MAX_ENTRIES 6

int posting_for_authorization(const char *processor, int64_t amount_minor,
                              posting_entry out[POSTING_LC_MAX_ENTRIES]);
int posting_for_capture(const char *processor, int64_t amount_minor, int64_t fee_minor,
                        int64_t released_minor, posting_entry out[POSTING_LC_MAX_ENTRIES]);
int posting_for_release(const char *processor, int64_t amount_minor,
                        posting_entry out[POSTING_LC_MAX_ENTRIES]);
int posting_for_refund(const char *processor, int64_t amount_minor,
                       posting_entry out[POSTING_LC_MAX_ENTRIES]);

#endif
