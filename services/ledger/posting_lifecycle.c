/* posting_lifecycle: see posting_lifecycle.h. */
#include "posting_lifecycle.h"

#include <stdio.h>
#include <string.h>

#include "money.h"

static void qualified(char *buf, const char *base, const char *processor) {
  snprintf(buf, POSTING_ACCOUNT_MAX, "%s:%s", base, processor);
}

static int hold_moves(const char *processor, int64_t amount, bool release,
                      posting_entry out[POSTING_LC_MAX_ENTRIES], int *n) {
  char holds[POSTING_ACCOUNT_MAX];
  qualified(holds, "asset:authorized_holds", processor);
  posting_put(out, n, release ? "liability:authorized_holds" : holds, 'D', amount);
  posting_put(out, n, release ? holds : "liability:authorized_holds", 'C', amount);
  return *n;
}

int posting_for_authorization(const char *processor, int64_t amount_minor,
                              posting_entry out[POSTING_LC_MAX_ENTRIES]) {
  if (amount_minor <= 0 || !posting_processor_ok(processor)) return -1;
  int n = 0;
  return hold_moves(processor, amount_minor, false, out, &n);
}

int posting_for_release(const char *processor, int64_t amount_minor,
                        posting_entry out[POSTING_LC_MAX_ENTRIES]) {
  if (amount_minor <= 0 || !posting_processor_ok(processor)) return -1;
  int n = 0;
  return hold_moves(processor, amount_minor, true, out, &n);
}

int posting_for_capture(const char *processor, int64_t amount_minor, int64_t fee_minor,
                        int64_t released_minor, posting_entry out[POSTING_LC_MAX_ENTRIES]) {
  int64_t held;
  if (amount_minor <= 0 || fee_minor < 0 || released_minor < 0 ||
      !posting_processor_ok(processor) || money_add(amount_minor, released_minor, &held))
    return -1;
  int n = 0;
  hold_moves(processor, held, true, out, &n);
  posting_charge_moves(processor, amount_minor, fee_minor, out, &n);
  return n;
}

int posting_for_refund(const char *processor, int64_t amount_minor,
                       posting_entry out[POSTING_LC_MAX_ENTRIES]) {
  if (amount_minor <= 0 || !posting_processor_ok(processor)) return -1;
  char receivable[POSTING_ACCOUNT_MAX];
  qualified(receivable, "asset:processor_receivable", processor);
  int n = 0;
  posting_put(out, &n, "revenue:refunds", 'D', amount_minor);
  posting_put(out, &n, "liability:refunds_payable", 'C', amount_minor);
  posting_put(out, &n, "liability:refunds_payable", 'D', amount_minor);
  posting_put(out, &n, receivable, 'C', amount_minor);
  return n;
}
