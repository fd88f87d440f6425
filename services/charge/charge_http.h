/* charge_http: the charge stage's HTTP transport — processor requests through
 * libcurl's multi interface, driven by socket events on one epoll set, spread
 * over shards of at most CHARGE_SHARD_CONNS connections, with a pool of easy
 * handles. It knows processors and requests, not payments: each call carries
 * an opaque owner that the done callback gets back with the answer. */
#ifndef CHARGE_HTTP_H
#define CHARGE_HTTP_H

#include <curl/curl.h>
#include <stddef.h>
#include <stdint.h>

#include "lifecycle_proc.h"
#include "processor.h"

#define CHARGE_SHARD_CONNS 64

typedef struct http_call {
  void *owner;             /* whom the answer is for */
  CURL *easy;
  CURLM *multi;            /* the shard it runs in */
  struct curl_slist *hdrs;
  char *body;
  char *resp;
  size_t resp_len;
  char errbuf[CURL_ERROR_SIZE];
  const processor *proc;
  int mode;                /* how its answer is read: CALL_SALE, CALL_AUTHORIZE, CALL_OPERATION */
  bool lookup;             /* a status query for the key (charge_lookup.h), not the request */
  bool search;             /* with lookup: a search by our own id instead of the key */
  bool by_id;              /* with lookup: a refund's current state, by the processor's id */
  int op_kind;             /* CALL_OPERATION: the operation's ps_kind */
  char currency[4];        /* CALL_OPERATION: the operation's currency */
  char refund_id[130];     /* by_id: the refund asked for; a refund's call: its amount, */
  char operation_id[64];   /* our operation id and payment id (lc_refund_ask) */
  char payment_id[130];
  int64_t amount_minor;
  char target[130];        /* CALL_OPERATION: what the request names (lc_refund_ask) */
} http_call;

/* How the answer of a call (or of the request a lookup finds) is read. */
enum { CALL_SALE, CALL_AUTHORIZE, CALL_OPERATION };

typedef struct http_shard {
  CURLM *multi;
  int idx, epfd;
  int64_t timer_due;       /* curl's timeout on our monotonic clock, -1: none */
} http_shard;

typedef struct charge_http {
  /* The transfers are driven by socket events (curl_multi_socket_action on
   * epoll): a cycle costs what moved, not what is in flight — with a slow
   * processor thousands of requests wait, and perform/poll would visit
   * every one of them each cycle. They are spread over multi handles of at
   * most CHARGE_SHARD_CONNS connections each: to start a request, libcurl
   * walks its multi's connections to the host looking for an idle one
   * (a fifth of the worker's CPU with 2,000 in flight in one multi). */
  http_shard *shards;
  int nshards, next_shard;
  int epfd;
  CURL **pool;             /* finished easy handles, reset, for the next calls */
  size_t npool, pool_cap;
  long long timeout_ms;
  size_t inflight;
} charge_http;

/* What a charge request says: the money as Postgres recorded it. */
typedef struct charge_request {
  const char *payment_id;
  int64_t amount_minor;
  const char *currency;
  const char *payment_method;
  bool authorize;          /* an authorization (hold only): lifecycle_proc.h, from payments.kind */
  bool lookup;             /* ask the processor what the key got instead (charge_lookup.h) */
  bool search;             /* with lookup: search by the payment id instead (past the key's life) */
} charge_request;

/* The answer to owner's call; the callee takes over what it holds (its
 * charge id: charge_answer_clear). */
typedef void (*charge_http_done)(void *owner, const charge_answer *a, void *ud);

/* Sets up the shards for up to max_inflight requests, each limited to
 * timeout_ms. Returns 0, or -1 with err set. */
int charge_http_init(charge_http *h, long long max_inflight, long long timeout_ms, char *err,
                     size_t errlen);
void charge_http_close(charge_http *h);

/* Starts the request for rq at pr with the processor idempotency key derived
 * from the payment (or, with rq->lookup, the status query for that key).
 * Returns 0, -1 when curl refused it, or CHARGE_HTTP_UNBUILDABLE (nothing
 * was sent either way; c is clean again). */
int charge_http_start(charge_http *h, http_call *c, const processor *pr, const charge_request *rq,
                      void *owner);

/* charge_http_start's refusal of a request that cannot be built (a data
 * error: nothing was sent, and it would fail the same way again). */
#define CHARGE_HTTP_UNBUILDABLE (-2)

/* Starts an operation's request rq (its body taken over) with key at pr, or,
 * with lookup, the status query for key. A refund's pending answer is
 * checked against ask (lc_check_pending; its refund_id unused). Returns 0
 * or -1 (nothing sent). */
int charge_http_start_op(charge_http *h, http_call *c, const processor *pr, lc_request *rq,
                         const char *key, int op_kind, const lc_refund_ask *ask, bool lookup,
                         void *owner);

/* Starts the query of a refund's current state by the processor's refund
 * id (GET /v1/refunds/{id}, /v2/payments/refunds/{id}); its answer is read
 * by lc_map_refund_by_id (a verdict only from a 2xx naming that refund:
 * ask's refund id, amount in its currency, its operation id, its payment
 * id when the body carries one), looked_up and by_id. Returns 0 or -1
 * (nothing sent; an id that is not one). */
int charge_http_start_refund_status(charge_http *h, http_call *c, const processor *pr,
                                    const lc_refund_ask *ask, void *owner);

/* Starts the search for an operation by our own id (what: charge_lookup.h);
 * its answer is read as op_kind's reply, a refund's pending one checked
 * against ask (lc_check_pending, as a send's). Returns 0 or -1 (nothing
 * sent). */
int charge_http_start_search_op(charge_http *h, http_call *c, const processor *pr, int what,
                                const char *id, int op_kind, const lc_refund_ask *ask,
                                void *owner);

/* Abandons a call in flight (its answer is never read). */
void charge_http_cancel(charge_http *h, http_call *c);

/* Drives the transfers, waiting at most wait_ms for a socket to move (or
 * curl's next timer), and calls done for every finished one. */
void charge_http_drive(charge_http *h, int wait_ms, charge_http_done done, void *ud);

/* Runs curl's due timers: new requests start, timeouts fire. */
void charge_http_run_timers(charge_http *h);

/* Maps a finished transfer to an answer. A transfer that failed counts as
 * never received only when nothing of the request was written (request_size
 * 0): libcurl re-sends a request whose kept-alive connection died on a fresh
 * connection, and reports that connection's "couldn't connect" although the
 * first copy reached the processor. Pure; unit-tested. */
void charge_http_map_failure(CURLcode cc, long request_size, const char *errtext,
                             charge_answer *a);

#endif
