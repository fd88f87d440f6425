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

#define FEATURES_VERSION "paystream-fraud-features-v3"
#define FEATURES_N 34

/* History: at most HIST_MAX earlier payments of the customer within
 * HIST_WINDOW_MS before this one (the newest first), and the card's and the
 * device's payments at this merchant within 24 h (LINK_WINDOW_MS), and the
 * merchants that saw the card in 24 h. Counts are capped at HIST_MAX + 1. */
#define HIST_MAX 64
#define HIST_WINDOW_MS (30LL * 24 * 3600 * 1000)
#define HOUR_MS 3600000LL
#define DAY_MS (24 * HOUR_MS)
#define MINUTE_MS 60000LL
#define LINK_WINDOW_MS DAY_MS

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
  char ipblock[48]; /* the IP's /24 (IPv4) or /48 (IPv6); "" when unknown (v1 members) */
} hist_entry;

/* Encodes the payment as a history member (fields joined by '|', ids with
 * '|' replaced). Deterministic: the same payment always gives the same
 * member, so adding it twice (retry, replay, two instances) is one member. */
void hist_encode(const ps_intent *in, const char *payment_id, char *out, size_t outlen);
/* Decodes a member (v2, or a v1 member written before ipblock); returns
 * 0, or -1 when it is not one. */
int hist_decode(const char *member, hist_entry *out);

/* The network block of an IP (first three octets of IPv4, first three
 * groups of IPv6), "" when absent. */
void features_ipblock(const char *ip, char *out, size_t outlen);

/* One earlier payment of a card or a device at this merchant, as kept in
 * `fraud:card:{merchant}:{fingerprint}` (a = device, b = customer) and
 * `fraud:device:{merchant}:{device}` (a = customer, b = card); member =
 * link_encode, score = at. */
typedef struct link_entry {
  char payment_id[72];
  int64_t at_ms;
  char a[72], b[72];
} link_entry;

void link_encode(const char *payment_id, const char *a, const char *b, char *out, size_t outlen);
/* Decodes a member scored at; a bare payment id (the v1 card member) has
 * empty a and b. Returns 0 or -1. */
int link_decode(const char *member, int64_t at, link_entry *out);

/* A merchant that saw the card, with the latest time it did
 * (`fraud:card-merchants:{fingerprint}`, ZADD GT: times only grow). */
typedef struct merchant_seen {
  char merchant[72];
  int64_t at_ms;
} merchant_seen;

/* Everything the stage read about a payment's past, in any order. */
typedef struct fraud_history {
  const hist_entry *cust;
  size_t ncust;
  const link_entry *card, *device;
  size_t ncard, ndevice;
  const merchant_seen *merchants;
  size_t nmerchants;
} fraud_history;

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
  long customer_count_10m;        /* this customer's payments in 10 min, this one included */
  long customer_count_1h;         /* ... in the hour */
  long customer_count_24h;
  long card_count_10m;            /* this card's payments at this merchant, this one included */
  long card_count_1h;
  long card_count_24h;
  long device_count_10m;          /* this device's payments at this merchant, this one included */
  long device_count_1h;
  long device_count_24h;
  long distinct_cards_24h;        /* this customer's cards in 24 h, this one included */
  long distinct_devices_24h;      /* this customer's devices in 24 h, this one included */
  long distinct_countries_24h;    /* this customer's request countries in 24 h, this one included */
  long card_devices_24h;          /* devices this card was used from here in 24 h, this one included */
  long card_customers_24h;        /* accounts this card paid for here in 24 h, this one included */
  long card_merchants_24h;        /* merchants that saw this card in 24 h, this one included */
  long device_customers_24h;      /* accounts on this device here in 24 h, this one included */
  long device_cards_24h;          /* cards used on this device here in 24 h, this one included */
  long history_count;             /* earlier payments in the history window */
  double spend_1h_usd;            /* this customer's spending in the hour, this one included */
  double minutes_since_prev;      /* since the customer's previous payment (-1: none) */
  double amount_z;                /* log-amount z-score against the customer's history (0: < 3 payments) */
  double history_hours;           /* since the customer's oldest payment in the window (0: none) */
  bool device_recent;             /* device new to the customer, or first used < 24 h ago after older payments on others */
  bool card_new;                  /* card not seen in the customer's history */
  bool ipblock_new;               /* IP block not seen in the customer's history */
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

/* Adds the history-derived signals. Entries of this payment, later than it
 * or older than their window are ignored; only the newest HIST_MAX of the
 * customer's count. The worker reads h from Redis, fraud-train rebuilds it
 * in memory: both call this. */
void signals_from_history(const ps_intent *in, const char *payment_id, const fraud_history *h,
                          fraud_signals *s);

/* The model's input. History features are NaN (missing) when the history
 * was unavailable. */
void features_vector(const fraud_signals *s, float out[FEATURES_N]);
extern const char *const features_names[FEATURES_N];
/* Per feature: 1 more never safer, -1 more never riskier, 0 either (training constraints). */
extern const signed char features_monotone[FEATURES_N];

/* Great-circle distance in km. */
double features_haversine_km(double lat1, double lon1, double lat2, double lon2);

#endif
