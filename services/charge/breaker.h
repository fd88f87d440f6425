/* breaker: a circuit breaker per processor. Closed: requests flow and their
 * results fill a sliding window; when at least min_requests results in the
 * window and the failure rate reaches failure_rate, it opens. Open: nothing
 * is sent until cool_down_ms has passed, then it half-opens. Half-open: up to
 * half_open_probes requests are let through; a success closes it, a failure
 * opens it again. Pure logic over a caller-supplied clock: unit-tested. */
#ifndef CHARGE_BREAKER_H
#define CHARGE_BREAKER_H

#include <stdbool.h>
#include <stdint.h>

#define BREAKER_MAX_WINDOW 1024

typedef enum breaker_state { BREAKER_CLOSED, BREAKER_OPEN, BREAKER_HALF_OPEN } breaker_state;

typedef struct breaker_cfg {
  int window;           /* results remembered (<= BREAKER_MAX_WINDOW) */
  int min_requests;     /* no verdict on fewer results than this */
  double failure_rate;  /* opens at or above this share of failures */
  int64_t cool_down_ms; /* open -> half-open after this long */
  int half_open_probes; /* requests let through while half-open */
} breaker_cfg;

typedef struct breaker {
  breaker_cfg cfg;
  breaker_state state;
  bool results[BREAKER_MAX_WINDOW]; /* true = failure */
  int count, next, failures;
  int64_t opened_at_ms;
  int probes_in_flight;
} breaker;

void breaker_cfg_default(breaker_cfg *c);
void breaker_init(breaker *b, const breaker_cfg *c);

/* Whether a request may be sent now; in half-open, each true consumes a
 * probe slot that breaker_record gives back. */
bool breaker_allow(breaker *b, int64_t now_ms);

/* Records a sent request's result: failure = the processor failed us
 * (refused, timed out, 5xx); a decline is a healthy processor's success. */
void breaker_record(breaker *b, int64_t now_ms, bool failure);

/* Records a status query's result (a key's replay, a search, a refund by
 * id): a failure counts as breaker_record's; an answer is neutral — the
 * probe slot given back, nothing recorded: a GET answered says nothing of
 * whether requests that act (POSTs) work, so it neither closes a half-open
 * circuit nor dilutes the window of an outage of those (s11 review 5). */
void breaker_record_query(breaker *b, int64_t now_ms, bool failure);

/* Gives back a probe slot that breaker_allow granted to a request that was
 * never sent (no verdict either way). */
void breaker_release(breaker *b);

breaker_state breaker_get_state(const breaker *b, int64_t now_ms);
const char *breaker_state_name(breaker_state s);

#endif
