/* refund_status: a refund the processor answered `pending` (Stripe) /
 * `PENDING` (PayPal) has no verdict yet, and the replay of that first
 * answer (charge_lookup.h's status query) says `pending` for ever, even
 * after the processor failed or completed it. So the processor's refund id
 * from that answer is kept on the operation (processor_op_id, written only
 * while it is `processing` and has none), and from then on the refund's
 * CURRENT state is asked for by that id (GET /v1/refunds/{id}, GET
 * /v2/payments/refunds/{id}) instead of the replay: succeeded / COMPLETED
 * is recorded as a success (028 then applies a kept failure:
 * succeeded-then-reversed), failed / canceled / FAILED / CANCELLED as a
 * decline with the processor's reason (the reservation given back, a kept
 * failure moot), both through ps_settle_operation (conditional on
 * `processing`); still pending stays held, asked again on the back-off.
 * A refund still pending REFUND_PENDING_BOUND_DAYS after its first send
 * is never decided by us: it stays `processing`, its reason written for
 * charge_unresolved, with an ALERT once per worker. */
#ifndef REFUND_STATUS_H
#define REFUND_STATUS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kloop.h"
#include "log.h"
#include "charge_http.h"
#include "processor.h"

#define REFUND_PENDING_BOUND_DAYS 7

#define REFUND_ID_MAX 128

/* A plain processor refund id: 1..REFUND_ID_MAX of [A-Za-z0-9_-]. Only
 * such an id is kept and asked by; any other is never kept (an ALERT,
 * once per operation) and the refund is asked by the replay query. */
bool refund_status_id_usable(const char *refund_id);

/* The path of the query for refund id (flavour's route) into out[len].
 * Returns 0, or -1 for an id that is not a plain id. */
int refund_status_path(bool paypal, const char *refund_id, char *out, size_t len);

/* Keeps the processor's refund id of a pending refund on operation op_id
 * (conditional: still `processing`, a refund, no id yet) — only a usable
 * one (refund_status_id_usable). Returns whether it was kept now. */
bool refund_status_keep_id(stage_ctx *ctx, const log_ctx *lc, const char *op_id,
                           const char *refund_id);

/* A refund still pending at the processor: past the bound (Postgres
 * decides from its first send), its reason is written for
 * charge_unresolved. Returns true when it is past the bound. */
bool refund_status_past_bound(stage_ctx *ctx, const char *op_id);

/* Starts an operation's request rq, or with lookup the question about it:
 * a refund's current state by the id kept (ask->refund_id, a usable one),
 * else the replay of key (charge_http_start_op). Returns 0, or -1
 * (nothing sent; rq->body freed either way). */
int refund_status_start(charge_http *h, http_call *c, const processor *pr, lc_request *rq,
                        const char *key, int kind, const lc_refund_ask *ask, bool lookup,
                        void *owner);

/* A refund's answer a without a verdict, by any path: its send, the replay
 * of its key, the search by our operation id (past the key's lifetime), the
 * query by its refund id. A pending one naming our refund (a->ref_named)
 * has its id kept (*kept: now; from then on it is asked by id — past the
 * key's lifetime too, where the replay no longer answers and the search
 * only ever repeats the first answer). Every such answer checks the
 * pending bound (ALERT once it is past: review3 1, no path escapes it).
 * Returns when to ask again for a pending one or any by-id answer
 * (refund_status_backoff_ms over held_ms), -1 for others (a timeout or
 * 5xx to its send: the caller's back-off). */
long refund_status_on_answer(stage_ctx *ctx, const log_ctx *lc, const char *op_id,
                             const char *proc, const charge_answer *a, int64_t held_ms,
                             bool *kept);

/* When to ask again about a refund the processor says is still pending,
 * held for held_ms so far: every 2-3 s at first (a late failure or success
 * is usually minutes away), 20-30 s after a minute, 5-7.5 min after an
 * hour — a pending refund may last days, and every one asked every 2 s
 * would spend the processor's rate limit. jitter in [0, 1). */
long refund_status_backoff_ms(int64_t held_ms, double jitter);

#endif
