/* processor: what the charge stage knows about the processors it charges at —
 * each one's name, URL, flavour, secret and circuit breaker, its metrics, and
 * what one HTTP exchange with it means for a payment (charge_kind,
 * charge_answer). The flavours (stripe.c, paypal.c) map their answers into
 * these; charge.c decides what to do with them. */
#ifndef CHARGE_PROCESSOR_H
#define CHARGE_PROCESSOR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "breaker.h"
#include "metrics.h"

#define CHARGE_MAX_PROCESSORS 2

/* What one HTTP exchange means for the payment. */
typedef enum charge_kind {
  CHARGE_SUCCEEDED,  /* charged: charge id and fee known */
  CHARGE_DECLINED,   /* terminal: decline code */
  CHARGE_REJECTED,   /* the processor refused the request itself (4xx): not charged */
  CHARGE_NOT_SENT,   /* provably never reached the processor (nothing written) */
  CHARGE_RETRYABLE,  /* the processor said "not now" (429, 409 in progress): not charged */
  CHARGE_UNKNOWN,    /* ambiguous (timeout, reset, 5xx, garbled 200): retry same key */
} charge_kind;

/* Every text in it is valid UTF-8 (safe_text.h), the charge id whole, the
 * others cut on a character boundary: Postgres stores it as it is. The map
 * functions overwrite an answer without freeing it; whoever holds a
 * succeeded one frees it with charge_answer_clear. */
typedef struct charge_answer {
  charge_kind kind;
  char *charge_id;         /* succeeded: the processor's id, whole (malloc'd); else NULL */
  char error_code[64];     /* declined: the processor's code (card_declined, expired_card, ...) */
  char decline_code[64];   /* declined: the issuer's reason (generic_decline, ...) */
  int64_t fee_minor;
  char error[512];
  bool looked_up;          /* the answer of a status query (charge_lookup.h) */
  bool lookup_unknown;     /* that query said the key never reached the processor */
  bool searched;           /* a status search by our own id (charge_lookup.h), not by key */
  bool search_none;        /* that search found nothing carrying the id */
  bool resource_missing;   /* 404 resource_missing / INVALID_RESOURCE_ID: what the request
                              acts on does not exist at the processor (lifecycle_proc.h) */
  bool pending_ref;        /* a refund the processor holds `pending` / `PENDING`: charge_id is
                              its refund id, for asking its current state (refund_status.h) */
  bool ref_named;          /* with pending_ref: the body names our refund (its amount, our
                              operation id): only then is its id kept (lifecycle_proc.h) */
  bool by_id;              /* the answer of a refund's query by its processor id */
  bool query_answered;     /* a by-id answer the processor gave that is no verdict (a 2xx
                              not naming ours, a 4xx but 408/429): not a breaker failure */
} charge_answer;

const char *charge_kind_name(charge_kind k);

/* Whether an operation's answer a counts as a failure of its processor for
 * the breaker: only one the processor did not give or that says it could
 * not act (timeout, 5xx, 409, 429, an unreadable or foreign 2xx). A
 * verdict, a 4xx, "key unknown", "nothing found", a by-id answer without
 * a verdict (query_answered) and a refund answered pending (pending_ref:
 * to its send or the replay of its key, whatever the body names; to a
 * search, only with ref_named) are answers. */
bool charge_op_answer_failed(const charge_answer *a);

/* Sets a->error from a printf format, safely cut. */
void charge_answer_error(charge_answer *a, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Copies processor text (a code) into dst[cap], safely cut. */
void charge_answer_text(char *dst, size_t cap, const char *src);

/* Sets a->charge_id to the whole id, made valid UTF-8. */
void charge_answer_id(charge_answer *a, const char *id);

/* Frees what a holds and zeroes it. */
void charge_answer_clear(charge_answer *a);

/* The longest processor name: the ledger's account name for it
 * (asset:processor_receivable:<name>) allows 32 (services/ledger/posting.c). */
#define PROCESSOR_NAME_MAX 32

/* One processor we can charge at, with its own circuit breaker. */
typedef struct processor {
  const char *name;        /* in attempts and the ledger account */
  const char *url;         /* base URL */
  char *api_key;           /* secret: never logged */
  bool paypal;             /* flavour: PayPal-like, else Stripe-like */
  breaker br;
  /* Its series, looked up once: calls are per payment. */
  metric *m_seconds, *m_state, *m_calls[CHARGE_UNKNOWN + 1];
} processor;

/* Reads one processor's settings under PREFIX (PAYSTREAM_PROCESSOR or
 * PAYSTREAM_BACKUP_PROCESSOR) and looks up its series. Returns 1 if
 * configured, 0 if not (no URL), -1 on error (err says which variable). */
int processor_load(processor *p, const char *prefix, const char *def_name, const char *def_url,
                   const breaker_cfg *bc, char *err, size_t errlen);

/* The index of the processor called name among procs[0..n), or -1. */
int processor_index(const processor *procs, int n, const char *name);

/* Counts one finished call (latency total_us, result a->kind). */
void processor_observe_call(const processor *pr, int64_t total_us, const charge_answer *a);

/* Exports the breaker's state: 0 closed, 1 half-open, 2 open. */
void processor_export_breaker(const processor *pr, breaker_state s);

#endif
