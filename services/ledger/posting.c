/* posting: posting rules for the double-entry ledger. */
#include "posting.h"

#include <stdio.h>
#include <string.h>

#include "money.h"

void posting_put(posting_entry *out, int *n, const char *account, char dir, int64_t amount) {
  snprintf(out[*n].account, sizeof out[*n].account, "%s", account);
  out[*n].direction = dir;
  out[*n].amount_minor = amount;
  (*n)++;
}

bool posting_processor_ok(const char *p) {
  size_t n = p ? strlen(p) : 0;
  if (n == 0 || n > 32) return false;
  for (size_t i = 0; i < n; i++)
    if (!((p[i] >= 'a' && p[i] <= 'z') || (p[i] >= '0' && p[i] <= '9') || p[i] == '_'))
      return false;
  return true;
}

void posting_charge_moves(const char *processor, int64_t amount_minor, int64_t fee_minor,
                          posting_entry *out, int *n) {
  char receivable[POSTING_ACCOUNT_MAX];
  snprintf(receivable, sizeof receivable, "asset:processor_receivable:%s", processor);
  posting_put(out, n, receivable, 'D', amount_minor);
  posting_put(out, n, "revenue:payments", 'C', amount_minor);
  if (fee_minor > 0) {
    posting_put(out, n, "expense:processing_fees", 'D', fee_minor);
    posting_put(out, n, receivable, 'C', fee_minor);
  }
}

int posting_for_payment(const char *processor, int64_t amount_minor, int64_t fee_minor,
                        posting_entry out[POSTING_MAX_ENTRIES]) {
  /* A fee above the amount is legal (a fixed fee on a small payment): the
   * receivable goes negative and the transaction still balances. */
  if (amount_minor <= 0 || fee_minor < 0 || !posting_processor_ok(processor))
    return -1;
  int n = 0;
  posting_charge_moves(processor, amount_minor, fee_minor, out, &n);
  return n;
}

bool posting_balanced(const posting_entry *e, int n) {
  int64_t debit = 0, credit = 0;
  for (int i = 0; i < n; i++) {
    if (e[i].amount_minor <= 0) return false;
    int64_t *side = e[i].direction == 'D' ? &debit : &credit;
    if (e[i].direction != 'D' && e[i].direction != 'C') return false;
    if (money_add(*side, e[i].amount_minor, side)) return false;
  }
  return debit == credit;
}

const char *posting_account_type(const char *account) {
  static const char *types[] = {"asset", "liability", "equity", "revenue", "expense"};
  for (size_t i = 0; i < 5; i++) {
    size_t n = strlen(types[i]);
    if (strncmp(account, types[i], n) == 0 && account[n] == ':') return types[i];
  }
  return NULL;
}
