/* libFuzzer target: everything ingest does with untrusted bytes before
 * Postgres — decode, validate, normalise, fingerprint, derive ids — plus the
 * Redis cache codec, which also reads bytes it does not control. Any crash,
 * sanitizer report or leak is a finding. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "event.h"
#include "ingest.h"
#include "validate.h"
#include "validate_op.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char reason[128];
  ps_event *ev = event_decode(data, size, reason, sizeof reason);
  if (ev) {
    validation_error verr;
    /* An event carries an intent or an operation (event_decode refuses
     * anything else). */
    if (ev->intent && validate_intent(ev->intent, &verr) == 0) {
      validate_normalise(ev->intent);
      char fp[65], id[PS_ID_LEN];
      ingest_fingerprint(ev->intent, fp);
      ingest_payment_id(ev->intent->merchant_id, ev->intent->idempotency_key, id);
    }
    if (ev->operation && validate_operation_intake(ev, &verr) == 0 &&
        validate_operation(ev->operation, &verr) == 0) {
      validate_operation_normalise(ev->operation);
      char fp[65], id[PS_ID_LEN];
      ingest_operation_fingerprint(ev->operation, fp);
      ingest_operation_id(ev->operation->merchant_id, ev->operation->idempotency_key, id);
    }
    size_t len;
    uint8_t *again = event_pack(ev, &len);
    free(again);
    event_free(ev);
  }
  char rid[PS_ID_LEN];
  ingest_rejection_id("payments.intents", 0, 0, data, size, rid);
  claim_record rec;
  if (ingest_cache_decode((const char *)data, size, &rec) == 0) free(rec.outcome_hex);
  return 0;
}
