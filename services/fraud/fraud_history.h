/* fraud_history: what the fraud stage keeps in Redis about earlier
 * payments and how a batch reads it. Per payment: the customer's history
 * (`fraud:customer:{merchant}:{customer}`, 7 days), the card's and the
 * device's at this merchant (`fraud:card:{merchant}:{fingerprint}`,
 * `fraud:device:{merchant}:{device}`, 24 h), the merchants that saw the
 * card (`fraud:card-merchants:{fingerprint}`, one member per merchant) and
 * the blocklists. Sorted sets scored by the payment's own created_at; the
 * same member added twice is one member (retries, replays, two instances
 * count a payment once). */
#ifndef FRAUD_HISTORY_H
#define FRAUD_HISTORY_H

#include <stddef.h>

#include "event.h"
#include "fraud_features.h"
#include "rds.h"

/* Fills sigs[i] for evs[i] (fresh payments): the intent's own signals,
 * then adds every payment to its histories, reads them back and trims
 * them — all adds, then all reads, then all trims, so each payment sees
 * the batch's other payments not later than it in any order — and checks
 * the blocklists. Redis down: history_unavailable and
 * blocklist_unavailable are set (the rules decide what that means). */
void history_gather(rds *r, const ps_event *const *evs, fraud_signals *const *sigs, size_t n);

#endif
