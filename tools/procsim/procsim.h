/* procsim.h: the processor simulator's shared declarations. procsim speaks a
 * Stripe-like and a PayPal-like flavour of a card processor's API (sales,
 * authorizations, captures, voids, refunds, status queries), keeps what it
 * did in memory, injects faults on command, and tells tests what happened.
 * docs/procsim.md is the user's reference; the files are:
 *   procsim_main.c    arguments, start and stop
 *   procsim_net.c     the listeners (refusal windows) and the timer thread
 *   procsim_http.c    one request's way through: body, idempotency, faults,
 *                     delays, the answer, routing
 *   procsim_fault.c   run-time configuration (/_sim/config), magic cards, fees
 *   procsim_store.c   the processor's objects, idempotency keys, the
 *                     operations log, /_sim/totals
 *   procsim_stripe.c  Stripe-like endpoints
 *   procsim_paypal.c  PayPal-like endpoints
 *   procsim_webhook.c signed events to a URL per flavour (retries, faults)
 *   procsim_dispute.c disputes and late refund failures on command
 *   procsim_settle.c  the daily settlement report (CSV)
 *   procsim_search.c  the status search by the caller's own id
 * Every object is guarded by one lock (store_lock); an operation runs whole
 * under it, so concurrent captures and refunds can never overdraw. */
#ifndef PROCSIM_H
#define PROCSIM_H

#include <glib.h>
#include <jansson.h>
#include <microhttpd.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>

typedef enum flavour { STRIPE, PAYPAL } flavour;

/* ---- procsim_fault.c ------------------------------------------------------- */
typedef enum { LAT_FIXED, LAT_UNIFORM, LAT_LONGTAIL } latency_dist;

typedef struct decline_def {
  const char *pm, *code, *decline;
  const char *raw; /* the answer verbatim (bytes jansson would not write) */
} decline_def;

extern volatile int cfg_latency_ms;
extern volatile double cfg_fail_rate;

/* The decline a magic payment method asks for, or NULL. */
const decline_def *fault_decline(const char *pm);
/* This request's injected latency (the slow card's for bodies naming it). */
int fault_delay_ms(const char *body);
/* Whether to fail before acting (and the status), or to hide the answer. */
bool fault_fail_now(unsigned *status);
bool fault_hang_now(int *hang_ms);
/* Takes one of the drop_next budget; the refusal window's length. */
bool fault_take_drop(void);
int fault_refuse_ms(void);
bool fault_api_key_ok(const char *authorization);
/* The fee on a captured amount (2.9 % + the fixed part, capped at the amount
 * unless fixed_fee was set). */
int64_t fault_fee(int64_t amount);
/* Whether this refund is declined (refund_decline_rate, refund_decline_next,
 * refund_decline_payment); *as_failed: Stripe answers 200 status "failed". */
bool fault_refund_declined(const char *payment_id, bool *as_failed);
/* Whether this refund is answered pending (refund_pending_next=N: the next N). */
bool fault_refund_pending(void);
/* Whether this PayPal-like refund is answered in the minimal form even when
 * the whole object was asked for (refund_minimal_next=N: the next N; a
 * gateway or API version that ignores Prefer). */
bool fault_refund_minimal(void);
/* How long an answered idempotency key is remembered, ms (0: for ever). */
long long fault_key_lifetime_ms(void);
/* Authorization lifetime in ms (0: never expires). */
long long fault_auth_expiry_ms(void);
enum MHD_Result fault_handle_config(struct MHD_Connection *c);

/* ---- procsim_http.c -------------------------------------------------------- */
typedef enum { REQ_NEW, REQ_DELAYED, REQ_HUNG } req_phase;
typedef struct sim_req sim_req;
/* Performs an operation after its delay: returns the HTTP status and sets
 * *body (malloc'd, the answer in its flavour). Runs once per executed key. */
typedef unsigned (*sim_exec)(sim_req *q, char **body);

struct sim_req {
  char *data; /* the raw upload */
  size_t len;
  struct MHD_PostProcessor *pp;
  GHashTable *form; /* parsed form fields (Stripe-like) */
  json_t *json;     /* parsed body (PayPal-like), or NULL */
  req_phase ph;
  flavour fl;
  bool legacy; /* the PayPal-like sale keeps its original error words */
  sim_exec exec;
  char *url;    /* the path (part of what idempotency compares) */
  char *target; /* the object id in the path */
  char *key;    /* idempotency key */
  unsigned status;
  char *answer;
  bool full;          /* PayPal-like: Prefer: return=representation (else the minimal answer) */
  char *search_body;  /* what the search keeps instead of the answer (malloc'd), or NULL */
};

enum MHD_Result http_reply(struct MHD_Connection *c, unsigned status, const char *body);
/* Replies with a json_t (stolen). */
enum MHD_Result http_reply_json(struct MHD_Connection *c, unsigned status, json_t *j);
/* An error answer in a flavour: Stripe {"error":{type,code,message}},
 * PayPal {"name","message","details":[{"issue"}]}; code may be NULL. */
char *http_error(flavour fl, unsigned status, const char *code, const char *message);
char *stripe_error_body(const char *type, const char *code, const char *decline,
                        const char *message);
/* Runs an idempotent operation through the pipeline (count, API key,
 * idempotency, latency, faults, exec, store the answer). */
enum MHD_Result http_operation(struct MHD_Connection *c, sim_req *q, flavour fl, sim_exec exec,
                               const char *target);
/* Status queries fail like operations do (fail_rate): true when *r is that
 * failure's answer. */
bool http_query_fails(struct MHD_Connection *c, flavour fl, enum MHD_Result *r);
/* The answer an idempotency key got: 404 never reached, 409 in progress. */
enum MHD_Result http_lookup(struct MHD_Connection *c, flavour fl, const char *key);
/* libmicrohttpd's callbacks (procsim_net.c starts the daemon with them). */
enum MHD_Result http_on_request(void *cls, struct MHD_Connection *c, const char *url,
                                const char *method, const char *version,
                                const char *upload_data, size_t *upload_size, void **con_cls);
void http_on_completed(void *cls, struct MHD_Connection *c, void **con_cls,
                       enum MHD_RequestTerminationCode toe);
const char *http_arg(struct MHD_Connection *c, const char *name);
/* A form field (Stripe-like requests). */
const char *req_form(sim_req *q, const char *name);

/* ---- procsim_stripe.c / procsim_paypal.c ---------------------------------- */
/* Routes a request of the flavour; MHD_NO with *handled false when the path
 * is not the flavour's. */
enum MHD_Result stripe_route(struct MHD_Connection *c, sim_req *q, const char *method,
                             const char *url, bool *handled);
enum MHD_Result paypal_route(struct MHD_Connection *c, sim_req *q, const char *method,
                             const char *url, bool *handled);

/* The sale both flavours share (Stripe words; PayPal rewords them). */
unsigned stripe_do_charge(GHashTable *form, flavour fl, const char *key, char **body);
/* An object as a Stripe-like event's data.object ("payment_intent",
 * "refund", or a capture as "charge"). */
json_t *stripe_event_object(const char *kind, const void *obj);
json_t *paypal_event_object(const char *kind, const void *obj);
/* url == prefix + one path segment + suffix: that segment (g_free), or NULL. */
char *path_id(const char *url, const char *prefix, const char *suffix);

/* ---- procsim_net.c --------------------------------------------------------- */
/* Suspends c until ms from now; false when shutting down (answer now). */
bool net_wait_then_resume(struct MHD_Connection *c, int ms);
/* Closes the listener for refuse_ms and shuts every connection down. */
void net_refuse_connections(void);
int net_start(const char *bind, unsigned port, unsigned *bound);
void net_stop(void);
extern volatile sig_atomic_t net_running;

/* ---- procsim_store.c ------------------------------------------------------- */
typedef enum {
  PS_FAILED,     /* declined */
  PS_AUTHORIZED, /* capturable left (possibly partly captured) */
  PS_CAPTURED,   /* sale, or authorization captured for good */
  PS_VOIDED,
  PS_EXPIRED,
} pay_state;

typedef struct sim_payment sim_payment;

typedef struct sim_capture {
  char id[40];
  sim_payment *p;
  int64_t amount, fee, refunded;
  bool final;
  gint64 at; /* unix µs */
} sim_capture;

typedef struct sim_refund {
  char id[40];
  sim_payment *p;
  sim_capture *first; /* the capture it is against (first one for a spread) */
  GArray *parts;      /* refund_part: what it took from each capture */
  int64_t amount;
  bool failed;
  bool pending;       /* answered pending (refund_pending_next): no verdict yet */
  char *failure_reason;
  char *refund_ref; /* metadata[refund_id] */
  gint64 at;
  gint64 failed_at; /* a late failure (/_sim/refund_fail); 0 = none */
} sim_refund;

typedef struct refund_part {
  sim_capture *c;
  int64_t amount;
} refund_part;

typedef struct sim_dispute {
  char id[40];
  sim_payment *p;
  sim_capture *c;
  int64_t amount, fee;
  int64_t withdrawn; /* held from the merchant now */
  int64_t reinstated; /* given back (won or reinstated) */
  char status[32];    /* needs_response | won | lost */
  const char *last;   /* what just happened: created, funds_withdrawn, funds_reinstated, closed
                         (sticky: a plain update leaves it) */
  gint64 at, withdrawn_at, reinstated_at;
  /* Every money movement so far, in order (PayPal's money_movements: the
   * seller DEBITed on a withdrawal, CREDITed on a reinstatement; the
   * dispute's fee a DEBIT of its own, with the first withdrawal). */
  struct {
    bool credit;
    bool fee; /* reason DISPUTE_FEE, not a movement of the disputed funds */
    int64_t amount;
    gint64 at;
  } moves[32];
  int nmoves;
} sim_dispute;

struct sim_payment {
  char id[40];       /* ch_ (Stripe sale), pi_ (intent), AUTH- (PayPal), ch_ (PayPal sale) */
  char order_id[40]; /* PayPal order */
  flavour fl;
  bool sale;
  pay_state st;
  char *payment_id; /* metadata[payment_id] / custom_id */
  char currency[8]; /* upper case */
  char *pm;
  char *decline_code;
  char *cancel_reason;
  int64_t amount, capturable, captured, refunded, voided, expired, released;
  gint64 at, expires_at; /* unix µs; expires_at 0 = never */
  GPtrArray *captures;   /* sim_capture* (owned) */
  GPtrArray *refunds;    /* sim_refund* (owned) */
  GPtrArray *disputes;   /* sim_dispute* (owned) */
};

void store_init(void);
void store_destroy(void);
void store_lock(void);
void store_unlock(void);
/* Under the lock: */
void store_new_id(const char *prefix, char *out, size_t len);
sim_payment *store_payment_new(flavour fl, bool sale, const char *payment_id,
                               const char *currency, int64_t amount, const char *pm);
sim_payment *store_payment(const char *id); /* by its id or its order's; expiry applied */
sim_capture *store_capture_new(sim_payment *p, int64_t amount, bool final);
sim_capture *store_capture(const char *id);
sim_refund *store_refund(const char *id);
/* Money left to refund on a payment (captured - refunded - disputed) and on
 * one capture (its amount - its refunds, capped by the payment's). */
int64_t store_refundable(const sim_payment *p);
int64_t store_capture_refundable(const sim_capture *c);
/* Refunds amount (<= refundable, checked by the caller) from c, or spread
 * over the payment's captures in order when c is NULL. */
sim_refund *store_refund_new(sim_payment *p, sim_capture *c, int64_t amount, bool failed,
                             const char *refund_ref);
/* Releases what is still capturable: how names where it went. */
void store_release(sim_payment *p, pay_state to, const char *reason);
/* Appends to the operations log (what, which object, amount, status). */
void store_log(const char *op, const sim_payment *p, const char *object_id, int64_t amount,
               int64_t fee, const char *status, const char *key);
/* Keeps every charge attempt for GET /v1/charges (the legacy list). */
void store_list_charge(json_t *charge);
json_t *store_charge_list(void);
json_t *store_charge_page(size_t limit, const char *starting_after, bool *more);

/* Idempotency keys (under their own use of the lock). */
typedef enum { KEY_NEW, KEY_DONE, KEY_BUSY, KEY_MISMATCH } key_state;
key_state store_key_claim(const char *key, const char *params, unsigned *status, char **body);
void store_key_done(const char *key, unsigned status, const char *body);
void store_key_forget(const char *key);
/* The stored answer of key: KEY_NEW when never seen. */
key_state store_key_answer(const char *key, unsigned *status, char **body);

void store_count_request(const char *key);
json_t *store_requests_json(void);
/* /_sim/totals and /_sim/operations for a payment id (NULL: every one). */
json_t *store_totals_json(const char *payment_id);
json_t *store_operations_json(const char *payment_id);

/* Releases every authorization past its lifetime (the sender thread calls
 * it, so expiry events go out without anyone asking). Takes the lock. */
void store_expire_sweep(void);
/* Every payment in creation order (under the lock; for the settlement). */
GPtrArray *store_all_payments(void);
/* The operations log, json_t* in order (under the lock). */
GPtrArray *store_ops(void);

/* ---- procsim_webhook.c ----------------------------------------------------- */
/* Emits the event for what happened to p (under the store lock): what is one
 * of sale, sale_failed, authorized, authorize_failed, captured, voided,
 * expired, refunded, refund_failed, dispute_created, dispute_withdrawn,
 * dispute_reinstated, dispute_closed; obj the capture, refund, dispute or
 * payment it is about. */
void webhook_event(const char *what, const sim_payment *p, const void *obj);
void webhook_emit(flavour fl, const char *type, const char *payment_id, json_t *object);
void webhook_configure(const char *url, const char *secret);
void webhook_config(struct MHD_Connection *c, json_t *out);
json_t *webhook_list_json(const char *payment_id);
void webhook_start(void);
void webhook_stop(void);

/* ---- procsim_dispute.c ----------------------------------------------------- */
/* POST /_sim/dispute and /_sim/refund_fail. */
enum MHD_Result dispute_handle(struct MHD_Connection *c);
enum MHD_Result dispute_refund_fail(struct MHD_Connection *c);
/* POST /_sim/refund_complete?refund=ID: a pending refund succeeds (procsim_refund.c). */
enum MHD_Result refund_complete_handle(struct MHD_Connection *c);

/* ---- procsim_search.c ------------------------------------------------------ */
/* Keeps an executed request's answer under the id it carried (a sale's or
 * authorization's payment id, a refund's id). */
void search_note(const sim_req *q, unsigned status, const char *body);
/* GET /v1/_search, /v2/_search. */
enum MHD_Result search_handle(struct MHD_Connection *c, flavour fl);

/* ---- procsim_settle.c ------------------------------------------------------ */
enum MHD_Result settle_handle(struct MHD_Connection *c);
/* The time an operation is logged at (epoch ms): now, or backdate_ms. */
gint64 settle_clock_ms(void);
/* Whether a Stripe-like sale's charge.succeeded carries its fee. */
bool settle_webhook_sale_fee(void);
/* /_sim/config's backdate_ms and webhook_sale_fee (into out). */
void settle_config(struct MHD_Connection *c, json_t *out);
bool settle_operations_listed(void);
int settle_list_default_limit(void);

/* Amount helpers: minor units <-> PayPal decimal strings. */
long long money_parse_decimal(const char *v, const char *currency);
void money_format_decimal(int64_t minor, const char *currency, char *out, size_t len);
/* RFC 3339 UTC of a unix-µs time. */
void time_rfc3339(gint64 us, char *out, size_t len);

#endif
