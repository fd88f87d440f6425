/* load_mix: see load_mix.h. */
#include "load_mix.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "event.h"
#include "operation.h"

static const char *const NAMES[MIX_N] = {"sale", "authcap", "refund", "void"};
static const char *const SUFFIX[MIX_N] = {"", "-cap", "-ref", "-void"};

const char *load_mix_name(int f) { return f >= 0 && f < MIX_N ? NAMES[f] : "?"; }

int load_mix_parse(const char *s, load_mix *m) {
  memset(m, 0, sizeof *m);
  char buf[256];
  if (snprintf(buf, sizeof buf, "%s", s) >= (int)sizeof buf) goto bad;
  double sum = 0;
  for (char *save = NULL, *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
    char *eq = strchr(t, '=');
    if (!eq) goto bad;
    *eq = '\0';
    int f = -1;
    for (int i = 0; i < MIX_N; i++)
      if (strcmp(t, NAMES[i]) == 0) f = i;
    char *end;
    double v = strtod(eq + 1, &end);
    if (f < 0 || *end || end == eq + 1 || v < 0 || v > 100) goto bad;
    m->pct[f] = v;
    sum += v;
  }
  if (sum < 99.999 || sum > 100.001) goto bad;
  m->on = true;
  return 0;
bad:
  fprintf(stderr, "payctl: --mix wants NAME=PCT,... over sale, authcap, refund, void adding up "
                  "to 100 (e.g. sale=60,authcap=25,refund=10,void=5)\n");
  return -1;
}

int load_mix_pick(const load_mix *m, unsigned *rs) {
  double x = (double)rand_r(rs) / ((double)RAND_MAX + 1) * 100.0, acc = 0;
  for (int f = 0; f < MIX_N; f++) {
    acc += m->pct[f];
    if (x < acc) return f;
  }
  return MIX_SALE;
}

int load_mix_kind(int f) {
  return f == MIX_AUTHCAP || f == MIX_VOID ? KIND_AUTHORIZE : KIND_SALE;
}

bool load_mix_follow(gen *g, const gen_intent *in, int f) {
  if (f <= MIX_SALE || f >= MIX_N) return false;
  char key[340];
  snprintf(key, sizeof key, "%s%s", in->key, SUFFIX[f]);
  ps_money money = PAYMENTS__V1__MONEY__INIT;
  money.amount_minor = f == MIX_REFUND ? (in->amount / 2 > 0 ? in->amount / 2 : 1) : in->amount;
  money.currency = (char *)in->currency;
  ps_operation op = PAYMENTS__V1__PAYMENT_OPERATION__INIT;
  op.kind = f == MIX_AUTHCAP ? KIND_CAPTURE : f == MIX_REFUND ? KIND_REFUND : KIND_VOID;
  op.idempotency_key = key;
  op.merchant_id = (char *)in->merchant;
  op.payment_key = (char *)in->key;
  op.created_at_ms = ps_now_ms();
  if (f != MIX_VOID) op.amount = &money;
  op.final_capture = f == MIX_AUTHCAP;
  ps_event ev = PAYMENTS__V1__PAYMENT_EVENT__INIT;
  ev.schema_version = PS_SCHEMA_VERSION;
  ev.operation = &op;
  ev.published_at_ms = ps_now_ms();
  size_t len;
  uint8_t *buf = event_pack(&ev, &len);
  if (!buf) abort();
  gen_publish_event(g, in->key, buf, len); /* ordered with its payment */
  free(buf);
  return true;
}
