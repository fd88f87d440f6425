/* event: the payments.v1 protobuf messages as the pipeline uses them —
 * decode with reasons (for the DLQ), pack into heap buffers, and build the
 * one terminal answer (PaymentOutcome) from an event. */
#ifndef PS_EVENT_H
#define PS_EVENT_H

#include <stddef.h>
#include <stdint.h>

#include "hex.h" /* stored outcomes travel as hex */
#include "payments.pb-c.h"

typedef Payments__V1__PaymentEvent ps_event;
typedef Payments__V1__PaymentIntent ps_intent;
typedef Payments__V1__PaymentOperation ps_operation;
typedef Payments__V1__PaymentOutcome ps_outcome;
typedef Payments__V1__Money ps_money;
typedef Payments__V1__FraudAssessment ps_fraud;
typedef Payments__V1__ChargeResult ps_charge;

#define PS_SCHEMA_VERSION 1u

/* Outcome statuses under short names. */
#define OUTCOME_SUCCEEDED PAYMENTS__V1__OUTCOME_STATUS__OUTCOME_STATUS_SUCCEEDED
#define OUTCOME_DECLINED PAYMENTS__V1__OUTCOME_STATUS__OUTCOME_STATUS_DECLINED
#define OUTCOME_BLOCKED PAYMENTS__V1__OUTCOME_STATUS__OUTCOME_STATUS_BLOCKED
#define OUTCOME_FAILED PAYMENTS__V1__OUTCOME_STATUS__OUTCOME_STATUS_FAILED
#define OUTCOME_REJECTED PAYMENTS__V1__OUTCOME_STATUS__OUTCOME_STATUS_REJECTED
#define OUTCOME_REVIEW PAYMENTS__V1__OUTCOME_STATUS__OUTCOME_STATUS_REVIEW
#define OUTCOME_PENDING PAYMENTS__V1__OUTCOME_STATUS__OUTCOME_STATUS_PENDING
#define OUTCOME_EXPIRED PAYMENTS__V1__OUTCOME_STATUS__OUTCOME_STATUS_EXPIRED
#define OUTCOME_UPDATED PAYMENTS__V1__OUTCOME_STATUS__OUTCOME_STATUS_UPDATED

/* Decodes a PaymentEvent. Returns NULL with a short reason when the bytes are
 * not a PaymentEvent, the schema version is unknown, or it carries neither or
 * both of an intent and an operation (exactly one is a request).
 * Free with event_free. */
ps_event *event_decode(const void *buf, size_t len, char *reason, size_t reasonlen);
/* Decoding a message of len bytes may allocate at most this much (4 times
 * its size plus 64 KiB); a message that needs more is refused with a reason
 * (dead-lettered), so no message can take a worker's memory. */
#define EVENT_DECODE_BUDGET_FACTOR 4
size_t event_decode_budget(size_t len);
void event_free(ps_event *ev);

/* Packs into a malloc'd buffer the caller frees. */
uint8_t *event_pack(const ps_event *ev, size_t *len);
uint8_t *outcome_pack(const ps_outcome *o, size_t *len);
ps_outcome *outcome_decode(const void *buf, size_t len);
void outcome_free(ps_outcome *o);

/* A caller-owned outcome with storage for its amount. */
typedef struct outcome_buf {
  ps_outcome o;
  ps_money amount;
} outcome_buf;

/* Fills ob from ev's identity (payment id, merchant, key, amount, published
 * time) with the given status and error; strings are borrowed from ev. */
void outcome_from_event(outcome_buf *ob, const ps_event *ev, Payments__V1__OutcomeStatus status,
                        const char *code, const char *message);

/* "succeeded", "declined", ... */
const char *outcome_status_name(Payments__V1__OutcomeStatus s);

/* Packs an outcome as hex, ready to be stored (bytea) and later re-sent
 * byte-identical. Returns a malloc'd string; aborts on out of memory. */
char *outcome_pack_hex(const ps_outcome *o);

#endif
