/* operation: what every stage shares about payment operations (capture,
 * void, refund — the lifecycle, DESIGN "Payment lifecycle"): the kind names
 * stored in Postgres, the columns a stage reads an operation row with, and
 * the operation's outcome built from that row alone, so whichever stage
 * (re)sends it, it is byte-identical for the same message. */
#ifndef PS_OPERATION_H
#define PS_OPERATION_H

#include <libpq-fe.h>
#include <stdint.h>

#include "event.h"

typedef Payments__V1__RequestKind ps_kind;
#define KIND_SALE PAYMENTS__V1__REQUEST_KIND__REQUEST_KIND_SALE
#define KIND_AUTHORIZE PAYMENTS__V1__REQUEST_KIND__REQUEST_KIND_AUTHORIZE
#define KIND_CAPTURE PAYMENTS__V1__REQUEST_KIND__REQUEST_KIND_CAPTURE
#define KIND_VOID PAYMENTS__V1__REQUEST_KIND__REQUEST_KIND_VOID
#define KIND_REFUND PAYMENTS__V1__REQUEST_KIND__REQUEST_KIND_REFUND

/* "sale", "authorize", "capture", "void", "refund"; NULL for anything else. */
const char *op_kind_name(ps_kind k);
/* The inverse; -1 for an unknown name. */
int op_kind_from_name(const char *name);

/* An operation row as read with OP_ROW_COLUMNS (o = payment_operations,
 * p = its payment, LEFT JOINed). Strings point into the PGresult. */
typedef struct op_row {
  const char *operation_id, *merchant_id, *idempotency_key, *fingerprint, *kind, *state;
  const char *payment_id;     /* "" when payment_not_found */
  const char *payment_key;    /* the payment's idempotency key, "" when none */
  const char *error_code, *error_message, *currency, *processor, *processor_op_id;
  const char *decline_code, *source_topic;
  int64_t amount_minor, fee_minor, authorized_minor, captured_minor, refunded_minor;
  int32_t source_partition;
  int64_t source_offset;
} op_row;

#define OP_ROW_NCOLS 22
#define OP_ROW_COLUMNS                                                                        \
  "o.operation_id, o.merchant_id, o.idempotency_key, o.fingerprint, o.kind, o.state,"        \
  " coalesce(o.payment_id, ''), coalesce(p.idempotency_key, ''), coalesce(o.error_code, ''),"  \
  " coalesce(o.error_message, ''), o.currency, coalesce(o.processor, ''),"                   \
  " coalesce(o.processor_op_id, ''), coalesce(o.decline_code, ''), o.source_topic,"          \
  " o.amount_minor, coalesce(o.fee_minor, 0), coalesce(o.result_authorized_minor, 0),"       \
  " coalesce(o.result_captured_minor, 0), coalesce(o.result_refunded_minor, 0),"             \
  " o.source_partition, o.source_offset"

/* Reads columns [col, col + OP_ROW_NCOLS) of row. */
void op_row_read(const PGresult *r, int row, int col, op_row *out);

/* The operation's outcome: rejected/declined/succeeded (posted), pending for
 * any other state. Strings are borrowed from the row. */
void op_outcome(outcome_buf *ob, const op_row *r, int64_t published_at_ms);

#endif
