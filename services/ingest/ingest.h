/* ingest: idempotent intake. Consumes payments.intents, validates, claims
 * (merchant_id, idempotency_key) in Postgres (the truth; Redis caches the
 * claim and, once known, the outcome) and forwards new payments to
 * payments.requests. Duplicates of finished payments get the stored outcome
 * again with replayed=true; duplicates of in-flight payments are absorbed;
 * the same key with other parameters is rejected (idempotency_key_reused). */
#ifndef INGEST_H
#define INGEST_H

#include <stdbool.h>
#include <stdint.h>

#include "event.h"
#include "kloop.h"

/* Identifiers: pay_ + 24 hex of SHA-256 over the scope, so every instance and
 * every replay derives the same id for the same (merchant, key). */
#define PS_ID_LEN 29 /* "pay_" + 24 hex + NUL */
void ingest_payment_id(const char *merchant, const char *key, char out[PS_ID_LEN]);
/* rej_ + 24 hex over the message's source and bytes: stable across replays. */
void ingest_rejection_id(const char *topic, int32_t partition, int64_t offset, const void *raw,
                         size_t rawlen, char out[PS_ID_LEN]);

/* Fingerprint of the canonical request: merchant, customer, amount, currency
 * (upper case), payment method, description, and metadata. Surrounding
 * whitespace (space, tab, CR, LF) of the description and of every metadata
 * key and value is not part of the request: it is trimmed, and metadata is
 * sorted on exactly what is hashed (trimmed key, then trimmed value), so
 * {" b":"1","a":"2"} and {"a":"2","b":"1"} are one request and "2 " equals
 * "2". Time, context (IP, device) and the key itself are not part of it: a
 * client retrying from another IP is the same request. */
void ingest_fingerprint(const ps_intent *in, char out[65]);

/* What ingest knows of a claim, from Postgres or the Redis cache. */
typedef struct claim_record {
  char payment_id[PS_ID_LEN];
  char fingerprint[65];
  char origin_topic[256];
  int32_t origin_partition;
  int64_t origin_offset;
  bool terminal;          /* a terminal outcome is stored */
  char *outcome_hex;      /* stored PaymentOutcome, hex; NULL unless terminal */
} claim_record;

typedef enum ingest_action {
  INGEST_FORWARD,        /* new, or the claiming message itself redelivered */
  INGEST_EMIT_STORED,    /* the claiming message again, payment finished */
  INGEST_REPLAY_STORED,  /* a duplicate request, payment finished */
  INGEST_ABSORB,         /* a duplicate request, payment in flight */
  INGEST_REJECT_REUSED,  /* same key, other parameters */
} ingest_action;

/* Decides what a valid message does given its claim record. The claiming
 * message is recognised by its source coordinates, so a redelivery after a
 * crash between claim and forward still forwards (nothing lost). */
ingest_action ingest_decide(const char *fingerprint, const char *topic, int32_t partition,
                            int64_t offset, const claim_record *rec);

/* Cache value codec: "v1|payment_id|fingerprint|topic|partition|offset|outcome_hex". */
char *ingest_cache_encode(const claim_record *rec);
/* Parses into rec (rec->outcome_hex malloc'd or NULL). Returns 0 or -1. */
int ingest_cache_decode(const char *s, size_t len, claim_record *rec);

extern const stage_def ingest_stage;

#endif
