/* gen: the intent generator behind `payctl publish` and `payctl load`.
 * Builds intents as upstream would publish them — valid ones (with a
 * payment method that steers procsim: approve, decline, slow), invalid
 * ones (one validation rule each), undecodable bytes and randomly damaged
 * messages — publishes them to the intents topic, and writes a manifest
 * (JSON lines: what each message is and what it must end as) that tests
 * and the demo check against. */
#ifndef PAYCTL_GEN_H
#define PAYCTL_GEN_H

#include <librdkafka/rdkafka.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "config.h"

/* What the generated intents look like (publish's options; load sets a few). */
typedef struct gen_mix {
  long count, duplicates, conflicts, declines, fraud, slow, invalid, garbage;
  long cross;     /* duplicates produced to another partition than their original */
  long customers; /* distinct customers (repeat customers trip velocity rules) */
  long fuzz;      /* valid intents with random damage: bit flips, cuts, junk */
  long padding;   /* bytes of metadata added to every valid intent */
  unsigned seed;
  const char *manifest, *run;
} gen_mix;

typedef struct gen_intent {
  char key[320], merchant[32], customer[32], pm[64], currency[4];
  int64_t amount;
  int64_t created_at_ms;
  int32_t partition; /* where the original landed (from the delivery report) */
  int kind;          /* RequestKind: 0 sale (the default), 1 authorize (load --mix) */
} gen_intent;

typedef struct gen {
  rd_kafka_t *producer; /* owned */
  const char *topic;
  FILE *manifest;       /* owned; NULL: no manifest */
  long produced;        /* messages handed to the producer */
  long failed;          /* messages the broker did not take (delivery reports) */
  long padding_bytes;   /* metadata bytes per valid intent */
  int64_t stamp_ms;     /* published_at_ms to stamp (0: now) */
} gen;

/* The payment methods procsim declines, with three decline codes. */
extern const char *const gen_decline_pms[3];

/* Opens a producer to the intents topic and, when manifest_path is set,
 * the manifest. Returns 0, or with err set (nothing left open) -1 when
 * the manifest cannot be written, -2 when the producer cannot be made. */
int gen_open(gen *g, const cfg *c, const char *manifest_path, char *err, size_t errlen);
/* Waits for every delivery report. */
void gen_flush(gen *g);
/* Flushes, then closes the producer and the manifest. */
void gen_close(gen *g);

/* Fills in the i-th valid intent of run m (random fields from *rs). */
void gen_base(gen_intent *in, const gen_mix *m, long i, unsigned *rs);
/* Publishes in to partition (RD_KAFKA_PARTITION_UA: the partitioner
 * decides); track (may be NULL) receives the partition it landed on and must
 * outlive the delivery report. omit_amount leaves the amount out. */
void gen_publish_intent(gen *g, const gen_intent *in, bool omit_amount, int32_t partition,
                        gen_intent *track);
/* Publishes one intent as it is, keyed key. */
void gen_publish_event(gen *g, const char *key, const void *val, size_t len);
/* The i-th invalid intent (one validation rule each, in rotation), the
 * i-th undecodable message and the i-th damaged one, each recorded. */
void gen_publish_invalid(gen *g, const gen_mix *m, long i);
void gen_publish_garbage(gen *g, const gen_mix *m, long i);
void gen_publish_fuzz(gen *g, const gen_mix *m, long i);
/* Writes one manifest line (code may be NULL). */
void gen_record(gen *g, const char *kind, const gen_intent *in, const char *expect,
                const char *code);

#endif
