/* op_json: payment operations as JSON lines for `payctl publish --json`:
 * {"operation": {"kind": "capture"|"void"|"refund", "idempotency_key",
 * "merchant_id", "payment_key" | "payment_id", "amount_minor", "currency",
 * "final_capture", "reason", "created_at_ms"}} (created_at_ms defaults to
 * now). An intent line may carry "kind": "authorize". */
#ifndef PAYCTL_OP_JSON_H
#define PAYCTL_OP_JSON_H

#include <jansson.h>
#include <stddef.h>

#include "event.h"

/* Fills op (strings borrowed from o, amount into *money). Returns 0, or -1
 * with a reason in err. */
int op_from_json(const json_t *o, ps_operation *op, ps_money *money, char *err, size_t errlen);

#endif
