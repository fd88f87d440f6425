/* fraud_features: the one definition of what the fraud stage knows about a
 * payment — the signals the rules read and the vector the model scores —
 * computed from the intent and the customer's and card's recent history.
 * The worker (history from Redis) and fraud-train (history rebuilt in
 * memory from a data set) call the same functions, so training and serving
 * cannot drift apart. Changing what a feature means changes
 * FEATURES_VERSION, and a model trained on another version is refused. */
#ifndef FRAUD_FEATURES_H
#define FRAUD_FEATURES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "event.h"

#define FEATURES_VERSION "paystream-fraud-features-v1"
#define FEATURES_N 14

/* History: at most HIST_MAX earlier payments of the customer within
 * HIST_WINDOW_MS before this one (the newest first), and the times of the
 * card's payments within 24 h. Counts are therefore capped at HIST_MAX + 1. */
#define HIST_MAX 64
#define HIST_WINDOW_MS (7LL * 24 * 3600 * 1000)
#define HOUR_MS 3600000LL
#define DAY_MS (24 * HOUR_MS)

/* One earlier payment of the customer, as kept in the Redis sorted set
 * `fraud:customer:{merchant}:{customer}` (member = hist_encode, score = at). */
typedef struct hist_entry {
  char payment_id[72];
  int64_t at_ms;
  int64_t amount_minor;
  char currency[4];
  char country[4];
  double lat, lon;
  bool has_loc;
  char device[72];
  char card[72];
} hist_entry;

/* Encodes the payment as a history member (fields joined by '|', ids with
 * '|' replaced). Deterministic: the same payment always gives the same
 * member, so adding it twice (retry, replay, two instances) is one member. */
void hist_encode(const ps_intent *in, const char *payment_id, char *out, size_t outlen);
/* Decodes a member; returns 0, or -1 when it is not one. */
int hist_decode(const char *member, hist_entry *out);

typedef enum blocklist_kind {
  BLOCKLIST_CARD,   /* payment method fingerprint */
  BLOCKLIST_IP,
  BLOCKLIST_EMAIL,
  BLOCKLIST_DEVICE,
  BLOCKLIST_KINDS
} blocklist_kind;

/* What the rules and the model know about one payment. */
typedef struct fraud_signals {
  int64_t amount_minor;
  char currency[4];
  double amount_usd;              /* approximate, for features only; never money */
  bool history_unavailable;       /* Redis could not answer */
  long customer_count_1h;         /* this customer's payments in the hour, this one included */
  long customer_count_24h;
  long card_count_1h;             /* this card's payments, this one included */
  long card_count_24h;
  long distinct_cards_24h;        /* this customer's cards in 24 h, this one included */
  long history_count;             /* earlier payments in the history window */
  bool country_new;               /* request country not among the customer's recent ones */
  bool country_mismatch;          /* request country differs from the card's country */
  double travel_km;               /* from the customer's previous located payment */
  double travel_kmh;              /* speed needed to get here from there (0: unknown) */
  double pm_age_hours;            /* -1: the method's creation time is unknown */
  bool device_new;                /* device not seen in the customer's history */
  double amount_ratio;            /* amount / mean of earlier amounts in the currency (0: none) */
  bool blocklisted[BLOCKLIST_KINDS];
  bool blocklist_unavailable;
} fraud_signals;

/* Fills the history-independent signals from the intent. */
void signals_from_intent(const ps_intent *in, fraud_signals *s);

/* Adds the history-derived signals. cust: earlier payments of the customer
 * in any order (entries of this payment, later than it or older than the
 * window are ignored; only the newest HIST_MAX count); card_times: times of
 * the card's other payments (those outside the 24 h before it ignored). */
void signals_from_history(const ps_intent *in, const char *payment_id, const hist_entry *cust,
                          size_t ncust, const int64_t *card_times, size_t ncard, fraud_signals *s);

/* The model's input. History features are NaN (missing) when the history
 * was unavailable. */
void features_vector(const fraud_signals *s, float out[FEATURES_N]);
extern const char *const features_names[FEATURES_N];

/* Great-circle distance in km. */
double features_haversine_km(double lat1, double lon1, double lat2, double lon2);

#endif
