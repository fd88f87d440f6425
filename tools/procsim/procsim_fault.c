/* procsim_fault.c: what procsim is told to get wrong, and when. The run-time
 * configuration (POST /_sim/config?...), Stripe's magic payment methods (and
 * a few of our own), the fee schedule, refund declines and authorization
 * expiry. Every knob applies to every operation endpoint of both flavours.
 * Values are read without the store lock (single words; a test sets them
 * before the traffic it means them for). */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "money.h"
#include "procsim.h"

volatile int cfg_latency_ms;
volatile double cfg_fail_rate;
static volatile double timeout_rate; /* act, then answer only after hang_ms */
static volatile int hang_ms = 5000;
static volatile int fail_status = 500;
static volatile int slow_ms = 15000; /* for payment method pm_card_slow */
static volatile latency_dist lat_dist = LAT_FIXED;
static char required_key[256]; /* empty = any "Bearer sk_..." */
static volatile long long fixed_fee = 30;
static volatile bool fee_uncapped;
static atomic_int drop_next; /* act, then drop the connection, then refuse */
static volatile int refuse_ms = 3000;
static volatile double refund_decline_rate;
static atomic_int refund_decline_next;
static atomic_int refund_pending_next;
static atomic_int refund_minimal_next;
static volatile bool refund_decline_as_failed; /* Stripe: 200 status failed, not 402 */
static char refund_decline_payment[256];       /* every refund of this payment id */
static volatile long long auth_expiry_ms;

/* 62 ASCII bytes, then a two-byte character at bytes 63-64. */
#define MB_CUT_CODE "declined_" "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx" "\xc3\xa9_end"

static const decline_def declines[] = {
    {"pm_card_chargeDeclined", "card_declined", "generic_decline", NULL},
    {"pm_card_chargeDeclinedInsufficientFunds", "card_declined", "insufficient_funds", NULL},
    {"pm_card_chargeDeclinedLostCard", "card_declined", "lost_card", NULL},
    {"pm_card_chargeDeclinedStolenCard", "card_declined", "stolen_card", NULL},
    {"pm_card_chargeDeclinedFraudulent", "card_declined", "fraudulent", NULL},
    {"pm_card_chargeDeclinedExpiredCard", "expired_card", "expired_card", NULL},
    {"pm_card_chargeDeclinedIncorrectCvc", "incorrect_cvc", "incorrect_cvc", NULL},
    {"pm_card_chargeDeclinedProcessingError", "processing_error", "processing_error", NULL},
    {"pm_card_chargeDeclinedMultibyteCut", "card_declined", MB_CUT_CODE, NULL},
    {"pm_card_chargeDeclinedInvalidUtf8", "card_declined", "invalid_utf8",
     "{\"error\":{\"type\":\"card_error\",\"code\":\"card_declined\",\"decline_code\":"
     "\"invalid_\xff\xfe_utf8\",\"message\":\"Your card was declined \xc3\x28.\"}}"},
};

const decline_def *fault_decline(const char *pm) {
  for (size_t i = 0; pm && i < sizeof declines / sizeof declines[0]; i++)
    if (strcmp(pm, declines[i].pm) == 0) return &declines[i];
  return NULL;
}

int fault_delay_ms(const char *body) {
  if (body && strstr(body, "pm_card_slow")) return slow_ms;
  int base = cfg_latency_ms;
  if (base <= 0) return 0;
  if (lat_dist == LAT_UNIFORM) return g_random_int_range(0, 2 * base + 1);
  if (lat_dist == LAT_LONGTAIL) {
    double u = g_random_double();
    return u < 0.90 ? base : u < 0.99 ? 5 * base : 20 * base;
  }
  return base;
}

bool fault_fail_now(unsigned *status) {
  if (cfg_fail_rate <= 0 || g_random_double() >= cfg_fail_rate) return false;
  *status = (unsigned)fail_status;
  return true;
}

bool fault_hang_now(int *ms) {
  *ms = hang_ms;
  return timeout_rate > 0 && g_random_double() < timeout_rate;
}

bool fault_take_drop(void) {
  int left = atomic_load(&drop_next);
  while (left > 0 && !atomic_compare_exchange_weak(&drop_next, &left, left - 1)) {
  }
  return left > 0;
}

int fault_refuse_ms(void) { return refuse_ms; }

bool fault_api_key_ok(const char *auth) {
  return auth && strncmp(auth, "Bearer sk_", 10) == 0 &&
         (!required_key[0] || strcmp(auth + 7, required_key) == 0);
}

int64_t fault_fee(int64_t amount) {
  int64_t fee = 0;
  money_mul_ratio(amount, 29, 1000, &fee);
  fee += fixed_fee;
  if (fee > amount && !fee_uncapped) fee = amount;
  return fee;
}

bool fault_refund_declined(const char *payment_id, bool *as_failed) {
  *as_failed = refund_decline_as_failed;
  if (refund_decline_payment[0] && payment_id && strcmp(payment_id, refund_decline_payment) == 0)
    return true;
  int left = atomic_load(&refund_decline_next);
  while (left > 0 && !atomic_compare_exchange_weak(&refund_decline_next, &left, left - 1)) {
  }
  if (left > 0) return true;
  return refund_decline_rate > 0 && g_random_double() < refund_decline_rate;
}

bool fault_refund_minimal(void) {
  int left = atomic_load(&refund_minimal_next);
  while (left > 0 && !atomic_compare_exchange_weak(&refund_minimal_next, &left, left - 1)) {
  }
  return left > 0;
}

bool fault_refund_pending(void) {
  int left = atomic_load(&refund_pending_next);
  while (left > 0 && !atomic_compare_exchange_weak(&refund_pending_next, &left, left - 1)) {
  }
  return left > 0;
}

long long fault_auth_expiry_ms(void) { return auth_expiry_ms; }

static volatile long long key_lifetime_ms;
long long fault_key_lifetime_ms(void) { return key_lifetime_ms; }

enum MHD_Result fault_handle_config(struct MHD_Connection *c) {
  const char *v;
  if ((v = http_arg(c, "latency_ms"))) cfg_latency_ms = atoi(v);
  if ((v = http_arg(c, "fail_rate"))) cfg_fail_rate = atof(v);
  if ((v = http_arg(c, "timeout_rate"))) timeout_rate = atof(v);
  if ((v = http_arg(c, "hang_ms"))) hang_ms = atoi(v);
  if ((v = http_arg(c, "slow_ms"))) slow_ms = atoi(v);
  if ((v = http_arg(c, "fail_status")) && atoi(v) >= 400 && atoi(v) <= 599) fail_status = atoi(v);
  if ((v = http_arg(c, "latency")))
    lat_dist = strcmp(v, "uniform") == 0    ? LAT_UNIFORM
               : strcmp(v, "longtail") == 0 ? LAT_LONGTAIL
                                            : LAT_FIXED;
  if ((v = http_arg(c, "fixed_fee"))) {
    fixed_fee = atoll(v);
    fee_uncapped = true;
  }
  if ((v = http_arg(c, "refuse_ms"))) refuse_ms = atoi(v);
  if ((v = http_arg(c, "drop_next"))) atomic_store(&drop_next, atoi(v));
  if ((v = http_arg(c, "api_key"))) snprintf(required_key, sizeof required_key, "%s", v);
  if ((v = http_arg(c, "refund_decline_rate"))) refund_decline_rate = atof(v);
  if ((v = http_arg(c, "refund_decline_next"))) atomic_store(&refund_decline_next, atoi(v));
  if ((v = http_arg(c, "refund_pending_next"))) atomic_store(&refund_pending_next, atoi(v));
  if ((v = http_arg(c, "refund_minimal_next"))) atomic_store(&refund_minimal_next, atoi(v));
  if ((v = http_arg(c, "refund_decline_as")))
    refund_decline_as_failed = strcmp(v, "failed") == 0;
  if ((v = http_arg(c, "refund_decline_payment")))
    snprintf(refund_decline_payment, sizeof refund_decline_payment, "%s", v);
  if ((v = http_arg(c, "auth_expiry_ms"))) auth_expiry_ms = atoll(v);
  if ((v = http_arg(c, "key_lifetime_ms"))) key_lifetime_ms = atoll(v);
  static const char *dists[] = {"fixed", "uniform", "longtail"};
  json_t *j = json_pack(
      "{s:i,s:s,s:f,s:i,s:f,s:i,s:i,s:I,s:i,s:i,s:f,s:i,s:s,s:s,s:I}", "latency_ms",
      cfg_latency_ms, "latency", dists[lat_dist], "fail_rate", cfg_fail_rate, "fail_status",
      fail_status, "timeout_rate", timeout_rate, "hang_ms", hang_ms, "slow_ms", slow_ms,
      "fixed_fee", (json_int_t)fixed_fee, "drop_next", atomic_load(&drop_next), "refuse_ms",
      refuse_ms, "refund_decline_rate", refund_decline_rate, "refund_decline_next",
      atomic_load(&refund_decline_next), "refund_decline_as",
      refund_decline_as_failed ? "failed" : "error", "refund_decline_payment",
      refund_decline_payment, "auth_expiry_ms", (json_int_t)auth_expiry_ms);
  json_object_set_new(j, "key_lifetime_ms", json_integer((json_int_t)key_lifetime_ms));
  webhook_config(c, j);
  settle_config(c, j);
  return http_reply_json(c, 200, j);
}
