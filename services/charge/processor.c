/* processor: configuration, metrics and breaker export per processor. */
#include "processor.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "safe_text.h"

void charge_answer_error(charge_answer *a, const char *fmt, ...) {
  char tmp[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(tmp, sizeof tmp, fmt, ap);
  va_end(ap);
  safe_text_copy(a->error, sizeof a->error, tmp, strlen(tmp));
}

void charge_answer_text(char *dst, size_t cap, const char *src) {
  safe_text_copy(dst, cap, src, src ? strlen(src) : 0);
}

void charge_answer_id(charge_answer *a, const char *id) {
  free(a->charge_id);
  a->charge_id = safe_text_dup(id, strlen(id));
}

void charge_answer_clear(charge_answer *a) {
  free(a->charge_id);
  memset(a, 0, sizeof *a);
}

bool charge_op_answer_failed(const charge_answer *a) {
  if (a->kind == CHARGE_SUCCEEDED || a->kind == CHARGE_DECLINED || a->kind == CHARGE_REJECTED)
    return false;
  /* the processor answered: a key or id it does not know, no verdict by
   * id, our refund still pending (review3 3: ten of them polled in a quiet
   * hour opened the circuit). A pending answer to our own request (its send
   * or the replay of its key) is the processor's whether or not the body
   * names our refund (a minimal reply does not: s11 review 1); one a search
   * found counts only when it is ours. */
  return !a->lookup_unknown && !a->search_none && !a->query_answered &&
         !(a->pending_ref && (a->ref_named || !a->searched));
}

const char *charge_kind_name(charge_kind k) {
  static const char *names[] = {"succeeded", "declined", "rejected",
                                "not_sent",  "retryable", "unknown"};
  return k <= CHARGE_UNKNOWN ? names[k] : "?";
}

int processor_index(const processor *procs, int n, const char *name) {
  for (int i = 0; i < n; i++)
    if (strcmp(procs[i].name, name) == 0) return i;
  return -1;
}

/* Looks up a processor's series: latency, calls by result, breaker state. */
static void processor_metrics(processor *pr) {
  pr->m_seconds = metrics_histogram("paystream_processor_seconds", "Processor call latency",
                                    METRICS_LATENCY_BUCKETS, METRICS_LATENCY_NBUCKETS,
                                    "processor", pr->name, NULL);
  for (int k = 0; k <= CHARGE_UNKNOWN; k++)
    pr->m_calls[k] = metrics_counter("paystream_processor_calls_total",
                                     "Processor calls by result (not_sent, unknown and retryable "
                                     "are failures for the circuit breaker)",
                                     "processor", pr->name, "result",
                                     charge_kind_name((charge_kind)k), NULL);
  pr->m_state = metrics_gauge("paystream_circuit_breaker_state",
                              "Circuit breaker per processor: 0 closed, 1 half-open, 2 open",
                              "processor", pr->name, NULL);
}

void processor_observe_call(const processor *pr, int64_t total_us, const charge_answer *a) {
  metric_observe(pr->m_seconds, (double)total_us / 1e6);
  if (a->kind <= CHARGE_UNKNOWN) metric_add(pr->m_calls[a->kind], 1);
}

/* 0 closed, 1 half-open, 2 open: a graph that rises when things go wrong. */
void processor_export_breaker(const processor *pr, breaker_state s) {
  metric_set(pr->m_state, s == BREAKER_CLOSED ? 0 : s == BREAKER_HALF_OPEN ? 1 : 2);
}

int processor_load(processor *p, const char *prefix, const char *def_name, const char *def_url,
                   const breaker_cfg *bc, char *err, size_t errlen) {
  char var[96];
  snprintf(var, sizeof var, "%s_URL", prefix);
  p->url = cfg_env_str(var, def_url);
  if (!p->url) return 0;
  snprintf(var, sizeof var, "%s_NAME", prefix);
  p->name = cfg_env_str(var, def_name);
  /* The ledger books it under asset:processor_receivable:<name>, which
   * takes at most PROCESSOR_NAME_MAX (ledger posting.c): a longer name
   * would charge and then never post. */
  if (!p->name[0] || strlen(p->name) > PROCESSOR_NAME_MAX) {
    snprintf(err, errlen, "%s must be 1 to %d characters (the ledger's account name)", var,
             PROCESSOR_NAME_MAX);
    return -1;
  }
  for (const char *c = p->name; *c; c++)
    if (!((*c >= 'a' && *c <= 'z') || (*c >= '0' && *c <= '9') || *c == '_')) {
      snprintf(err, errlen, "%s must be lower-case letters, digits and _", var);
      return -1;
    }
  snprintf(var, sizeof var, "%s_API_KEY", prefix);
  p->api_key = cfg_secret(var, "sk_test_paystream", err, errlen);
  if (!p->api_key) return -1;
  snprintf(var, sizeof var, "%s_FLAVOUR", prefix);
  const char *fl = cfg_env_str(var, "stripe");
  if (strcmp(fl, "stripe") != 0 && strcmp(fl, "paypal") != 0) {
    snprintf(err, errlen, "%s must be stripe or paypal", var);
    return -1;
  }
  p->paypal = strcmp(fl, "paypal") == 0;
  breaker_init(&p->br, bc);
  processor_metrics(p);
  processor_export_breaker(p, BREAKER_CLOSED);
  return 1;
}
