/* breaker: circuit breaker state machine. */
#include "breaker.h"

#include <string.h>

void breaker_cfg_default(breaker_cfg *c) {
  c->window = 50;
  c->min_requests = 10;
  c->failure_rate = 0.5;
  c->cool_down_ms = 5000;
  c->half_open_probes = 3;
}

void breaker_init(breaker *b, const breaker_cfg *c) {
  memset(b, 0, sizeof *b);
  b->cfg = *c;
  if (b->cfg.window < 1) b->cfg.window = 1;
  if (b->cfg.window > BREAKER_MAX_WINDOW) b->cfg.window = BREAKER_MAX_WINDOW;
  if (b->cfg.half_open_probes < 1) b->cfg.half_open_probes = 1;
  b->state = BREAKER_CLOSED;
}

static void reset_window(breaker *b) {
  b->count = b->next = b->failures = 0;
}

static void trip(breaker *b, int64_t now_ms) {
  b->state = BREAKER_OPEN;
  b->opened_at_ms = now_ms;
  b->probes_in_flight = 0;
  reset_window(b);
}

breaker_state breaker_get_state(const breaker *b, int64_t now_ms) {
  if (b->state == BREAKER_OPEN && now_ms - b->opened_at_ms >= b->cfg.cool_down_ms)
    return BREAKER_HALF_OPEN;
  return b->state;
}

bool breaker_allow(breaker *b, int64_t now_ms) {
  if (b->state == BREAKER_OPEN && now_ms - b->opened_at_ms >= b->cfg.cool_down_ms) {
    b->state = BREAKER_HALF_OPEN;
    b->probes_in_flight = 0;
  }
  switch (b->state) {
  case BREAKER_CLOSED: return true;
  case BREAKER_OPEN: return false;
  default:
    if (b->probes_in_flight >= b->cfg.half_open_probes) return false;
    b->probes_in_flight++;
    return true;
  }
}

void breaker_record(breaker *b, int64_t now_ms, bool failure) {
  if (b->state == BREAKER_HALF_OPEN) {
    if (b->probes_in_flight > 0) b->probes_in_flight--;
    if (failure) trip(b, now_ms);
    else {
      b->state = BREAKER_CLOSED;
      reset_window(b);
    }
    return;
  }
  if (b->state == BREAKER_OPEN) return; /* a straggler from before it opened */
  if (b->count == b->cfg.window) {
    b->failures -= b->results[b->next]; /* the oldest leaves the window */
  } else {
    b->count++;
  }
  b->results[b->next] = failure;
  b->failures += failure;
  b->next = (b->next + 1) % b->cfg.window;
  if (b->count >= b->cfg.min_requests &&
      (double)b->failures >= b->cfg.failure_rate * (double)b->count)
    trip(b, now_ms);
}

void breaker_release(breaker *b) {
  if (b->state == BREAKER_HALF_OPEN && b->probes_in_flight > 0) b->probes_in_flight--;
}

void breaker_record_query(breaker *b, int64_t now_ms, bool failure) {
  if (failure) breaker_record(b, now_ms, true);
  else breaker_release(b);
}

const char *breaker_state_name(breaker_state s) {
  return s == BREAKER_CLOSED ? "closed" : s == BREAKER_OPEN ? "open" : "half_open";
}
