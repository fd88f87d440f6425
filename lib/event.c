/* event: protobuf helpers around the generated payments.v1 code. */
#include "event.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Decoding allocates through a budget: a hostile message (e.g. 131,072
 * empty metadata entries, 24 times their size in heap) fails to decode
 * instead of taking the worker's memory. Blocks come from malloc, so the
 * decoded event is freed as usual (event_free, default allocator). */
typedef struct decode_budget {
  size_t left;
  bool exceeded;
} decode_budget;

static void *budget_alloc(void *data, size_t size) {
  decode_budget *b = data;
  if (size > b->left) {
    b->exceeded = true;
    return NULL;
  }
  b->left -= size;
  return malloc(size);
}

static void budget_free(void *data, void *p) {
  (void)data;
  free(p);
}

size_t event_decode_budget(size_t len) { return EVENT_DECODE_BUDGET_FACTOR * len + 65536; }

ps_event *event_decode(const void *buf, size_t len, char *reason, size_t reasonlen) {
  if (!buf || len == 0) {
    snprintf(reason, reasonlen, "empty message");
    return NULL;
  }
  decode_budget budget = {event_decode_budget(len), false};
  ProtobufCAllocator alloc = {budget_alloc, budget_free, &budget};
  ps_event *ev = payments__v1__payment_event__unpack(&alloc, len, buf);
  if (!ev) {
    if (budget.exceeded)
      snprintf(reason, reasonlen, "decoding needs more than %zu bytes of memory",
               event_decode_budget(len));
    else
      snprintf(reason, reasonlen, "not a payments.v1.PaymentEvent");
    return NULL;
  }
  /* 0 means an upstream that left the field unset: schema 1 is the only one. */
  if (ev->schema_version > PS_SCHEMA_VERSION) {
    snprintf(reason, reasonlen, "unsupported schema_version %u", ev->schema_version);
    payments__v1__payment_event__free_unpacked(ev, NULL);
    return NULL;
  }
  if (!ev->intent == !ev->operation) {
    snprintf(reason, reasonlen, ev->intent ? "both an intent and an operation" : "missing intent");
    payments__v1__payment_event__free_unpacked(ev, NULL);
    return NULL;
  }
  return ev;
}

void event_free(ps_event *ev) {
  if (ev) payments__v1__payment_event__free_unpacked(ev, NULL);
}

uint8_t *event_pack(const ps_event *ev, size_t *len) {
  *len = payments__v1__payment_event__get_packed_size(ev);
  uint8_t *buf = malloc(*len ? *len : 1);
  if (buf) payments__v1__payment_event__pack(ev, buf);
  return buf;
}

uint8_t *outcome_pack(const ps_outcome *o, size_t *len) {
  *len = payments__v1__payment_outcome__get_packed_size(o);
  uint8_t *buf = malloc(*len ? *len : 1);
  if (buf) payments__v1__payment_outcome__pack(o, buf);
  return buf;
}

ps_outcome *outcome_decode(const void *buf, size_t len) {
  return payments__v1__payment_outcome__unpack(NULL, len, buf);
}

void outcome_free(ps_outcome *o) {
  if (o) payments__v1__payment_outcome__free_unpacked(o, NULL);
}

void outcome_from_event(outcome_buf *ob, const ps_event *ev, Payments__V1__OutcomeStatus status,
                        const char *code, const char *message) {
  payments__v1__payment_outcome__init(&ob->o);
  payments__v1__money__init(&ob->amount);
  ob->o.payment_id = ev->payment_id;
  ob->o.status = status;
  ob->o.error_code = (char *)(code ? code : "");
  ob->o.error_message = (char *)(message ? message : "");
  ob->o.published_at_ms = ev->published_at_ms;
  const ps_intent *in = ev->intent;
  if (in) {
    ob->o.merchant_id = in->merchant_id;
    ob->o.idempotency_key = in->idempotency_key;
    if (in->amount) {
      ob->amount.amount_minor = in->amount->amount_minor;
      ob->amount.currency = in->amount->currency;
      ob->o.amount = &ob->amount;
    }
  }
  if (ev->charge) {
    ob->o.processor = ev->charge->processor;
    ob->o.processor_charge_id = ev->charge->processor_charge_id;
  }
}

char *outcome_pack_hex(const ps_outcome *o) {
  size_t len;
  uint8_t *b = outcome_pack(o, &len);
  char *hex = malloc(2 * len + 1);
  if (!b || !hex) abort();
  hex_encode(b, len, hex);
  free(b);
  return hex;
}

const char *outcome_status_name(Payments__V1__OutcomeStatus s) {
  switch (s) {
  case OUTCOME_SUCCEEDED: return "succeeded";
  case OUTCOME_DECLINED: return "declined";
  case OUTCOME_BLOCKED: return "blocked";
  case OUTCOME_FAILED: return "failed";
  case OUTCOME_REJECTED: return "rejected";
  case OUTCOME_REVIEW: return "review";
  case OUTCOME_PENDING: return "pending";
  case OUTCOME_EXPIRED: return "expired";
  case OUTCOME_UPDATED: return "updated";
  default: return "unspecified";
  }
}
