/* validate_op: ingest's checks on an operation (capture, void, refund) as
 * upstream sent it, its identifiers and fingerprint. Pure: unit-tested
 * (tests/unit/test_validate_op.c). What needs the payment (found, currency,
 * capturable, refundable, expired) is decided in Postgres
 * (ps_accept_operation, migration 013), never here. */
#ifndef INGEST_VALIDATE_OP_H
#define INGEST_VALIDATE_OP_H

#include "event.h"
#include "ingest.h"
#include "validate.h"

/* Upstream sets only the request: payment_id, operation_id, payment_key and
 * the stage results must be empty (stage_fields_set), and no field may be
 * unknown to this schema (unknown_fields). */
int validate_operation_intake(const ps_event *ev, validation_error *err);

/* Field rules: idempotency_key_invalid, merchant_id_invalid, kind_invalid
 * (not CAPTURE/VOID/REFUND), payment_ref_invalid (exactly one of payment_key
 * and payment_id, well-formed), amount_invalid (capture/refund: missing,
 * <= 0 or above the largest payment; void: an amount given),
 * currency_invalid, created_at_invalid, reason_invalid, final_capture on a
 * non-capture (amount_invalid is not it: kind_invalid). */
int validate_operation(const ps_operation *op, validation_error *err);

/* Upper-cases the currency in place. */
void validate_operation_normalise(ps_operation *op);

/* op_ + 24 hex of SHA-256 over (merchant, key) in the operations' scope. */
void ingest_operation_id(const char *merchant, const char *key, char out[PS_ID_LEN]);

/* Fingerprint of the canonical operation: kind, merchant, the payment as
 * named (key or id, and which), amount, currency, final_capture, reason
 * (trimmed). created_at is not part of it (a retry is the same request). */
void ingest_operation_fingerprint(const ps_operation *op, char out[65]);

#endif
