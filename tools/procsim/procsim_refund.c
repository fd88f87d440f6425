/* procsim_refund: the later verdict of a refund answered pending
 * (/_sim/config?refund_pending_next=N). Its money is held as refunded from
 * the start (as a real processor holds it); a failure gives it back
 * (/_sim/refund_fail, procsim_dispute.c); POST /_sim/refund_complete?refund=ID
 * completes it: status succeeded / COMPLETED from then on (GET of the refund
 * by id), and its succeeded webhook is sent. The stored first answer (the
 * _lookup replay) still says pending, as a processor's idempotent replay does. */
#include <string.h>

#include "procsim.h"

enum MHD_Result refund_complete_handle(struct MHD_Connection *c) {
  const char *id = http_arg(c, "refund");
  store_lock();
  sim_refund *r = store_refund(id);
  if (!r || !r->pending || r->failed) {
    store_unlock();
    const char *why = r ? "the refund is not pending" : "no such refund";
    return http_reply_json(c, r ? 409 : 404,
                           json_pack("{s:{s:s,s:s}}", "error", "type", "invalid_request_error",
                                     "message", why));
  }
  r->pending = false;
  /* the refund movement, for the settlement report, from its completion */
  store_log("refund", r->p, r->id, r->amount, 0, "succeeded", NULL);
  webhook_event("refunded", r->p, r);
  json_t *j = json_pack("{s:s,s:s,s:I}", "id", r->id, "status", "succeeded", "amount",
                        (json_int_t)r->amount);
  store_unlock();
  return http_reply_json(c, 200, j);
}
