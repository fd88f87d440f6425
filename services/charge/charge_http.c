/* charge_http: processor requests over libcurl multi, on epoll. */
#include "clock.h"
#include "charge_http.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "charge.h"
#include "log.h"
#include "charge_lookup.h"
#include "refund_status.h"
#include "lifecycle_proc.h"
#include "paypal.h"
#include "pg.h"
#include "stripe.h"

static size_t on_body(char *data, size_t size, size_t nmemb, void *ud) {
  http_call *c = ud;
  size_t n = size * nmemb;
  if (c->resp_len + n > 1 << 20) return 0; /* a processor answer is small */
  char *nb = realloc(c->resp, c->resp_len + n + 1);
  if (!nb) return 0;
  memcpy(nb + c->resp_len, data, n);
  c->resp = nb;
  c->resp_len += n;
  c->resp[c->resp_len] = '\0';
  return n;
}

/* Sets c up for a POST of body (taken over) or, body NULL, a GET, to
 * pr's url + path with key as the processor's idempotency key. */
static void call_prepare(charge_http *h, http_call *c, const processor *pr, const char *path,
                         char *body, bool json, const char *key, void *owner) {
  char url[1024], hdr[512];
  memset(c, 0, sizeof *c);
  c->owner = owner;
  c->proc = pr;
  c->easy = h->npool ? h->pool[--h->npool] : curl_easy_init();
  if (!c->easy) abort();
  snprintf(url, sizeof url, "%s%s", pr->url, path);
  c->body = body;
  if (body) {
    snprintf(hdr, sizeof hdr, "%s: %s", pr->paypal ? "PayPal-Request-Id" : "Idempotency-Key", key);
    c->hdrs = curl_slist_append(c->hdrs, hdr);
    c->hdrs = curl_slist_append(c->hdrs, json ? "Content-Type: application/json"
                                              : "Content-Type: application/x-www-form-urlencoded");
    /* PayPal answers a POST with id, status and links only (return=minimal,
     * its default; a void: 204, no body) unless asked for the whole object:
     * a refund's amount and invoice_id (lc_check_pending), a capture's fee,
     * an order's authorization are read from it. */
    if (pr->paypal) c->hdrs = curl_slist_append(c->hdrs, "Prefer: return=representation");
  }
  snprintf(hdr, sizeof hdr, "Authorization: Bearer %s", pr->api_key ? pr->api_key : "");
  c->hdrs = curl_slist_append(c->hdrs, hdr);
  curl_easy_setopt(c->easy, CURLOPT_URL, url);
  if (body) curl_easy_setopt(c->easy, CURLOPT_POSTFIELDS, c->body);
  else curl_easy_setopt(c->easy, CURLOPT_HTTPGET, 1L);
  curl_easy_setopt(c->easy, CURLOPT_HTTPHEADER, c->hdrs);
  curl_easy_setopt(c->easy, CURLOPT_WRITEFUNCTION, on_body);
  curl_easy_setopt(c->easy, CURLOPT_WRITEDATA, c);
  curl_easy_setopt(c->easy, CURLOPT_TIMEOUT_MS, (long)h->timeout_ms);
  curl_easy_setopt(c->easy, CURLOPT_CONNECTTIMEOUT_MS, 2000L);
  curl_easy_setopt(c->easy, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(c->easy, CURLOPT_ERRORBUFFER, c->errbuf);
  curl_easy_setopt(c->easy, CURLOPT_PRIVATE, c);
}

/* The sale's or authorization's request (or its lookup). Returns 0, or -1
 * when it cannot be built (nothing allocated, c untouched): an
 * authorization never falls back to the sale's body. */
static int call_setup(charge_http *h, http_call *c, const processor *pr,
                      const charge_request *rq, void *owner) {
  char key[256], path[512];
  charge_idempotency_key(rq->payment_id, pr->name, key, sizeof key);
  char *body = NULL;
  bool json = pr->paypal;
  if (rq->lookup && rq->search) {
    charge_search_path(pr->paypal, SEARCH_PAYMENT, rq->payment_id, path, sizeof path);
  } else if (rq->lookup) {
    charge_lookup_path(pr->paypal, key, path, sizeof path);
  } else if (rq->authorize) { /* lifecycle: a hold, at the same processor with the same key */
    lc_request lr;
    if (lc_authorize_request(pr->paypal, rq->amount_minor, rq->currency, rq->payment_method,
                             rq->payment_id, &lr) != 0 || !lr.body)
      return -1;
    body = lr.body;
    json = lr.json;
    snprintf(path, sizeof path, "%s", lr.path);
  } else if (pr->paypal) {
    snprintf(path, sizeof path, "/v2/payments/captures");
    body = paypal_build_body(rq->amount_minor, rq->currency, rq->payment_method, rq->payment_id);
  } else {
    snprintf(path, sizeof path, "/v1/charges");
    body = stripe_build_body(rq->amount_minor, rq->currency, rq->payment_method, rq->payment_id);
  }
  if (!rq->lookup && !body) return -1;
  call_prepare(h, c, pr, path, body, json, key, owner);
  c->mode = rq->authorize ? CALL_AUTHORIZE : CALL_SALE;
  c->lookup = rq->lookup;
  c->search = rq->lookup && rq->search;
  return 0;
}

/* The easy handle goes back to the pool (a handle and its buffers are
 * allocated once, not per charge). */
static void call_cleanup(charge_http *h, http_call *c) {
  if (h->npool < h->pool_cap) {
    curl_easy_reset(c->easy);
    h->pool[h->npool++] = c->easy;
  } else {
    curl_easy_cleanup(c->easy);
  }
  curl_slist_free_all(c->hdrs);
  free(c->body);
  free(c->resp);
  memset(c, 0, sizeof *c);
}

void charge_http_map_failure(CURLcode cc, long request_size, const char *errtext,
                             charge_answer *a) {
  memset(a, 0, sizeof *a);
  a->kind = request_size == 0 ? CHARGE_NOT_SENT : CHARGE_UNKNOWN;
  charge_answer_error(a, "%s", errtext && errtext[0] ? errtext : curl_easy_strerror(cc));
}

static void call_finish(http_call *c, CURLcode cc, charge_answer *a) {
  if (cc == CURLE_OK) {
    long status = 0;
    bool paypal = c->proc->paypal;
    curl_easy_getinfo(c->easy, CURLINFO_RESPONSE_CODE, &status);
    bool replay = c->lookup && !c->by_id; /* a refund's state by id reads as its reply */
    lookup_said ls = c->search ? charge_search_classify(paypal, status, c->resp, c->resp_len)
                     : replay  ? charge_lookup_classify(paypal, status, c->resp, c->resp_len)
                               : LOOKUP_FOUND;
    if (ls != LOOKUP_FOUND) {
      memset(a, 0, sizeof *a);
      a->kind = CHARGE_UNKNOWN;
      a->lookup_unknown = ls == LOOKUP_UNKNOWN && !c->search;
      a->search_none = ls == LOOKUP_UNKNOWN && c->search;
      charge_answer_error(a, "status %s: HTTP %ld%s", c->search ? "search" : "query", status,
                          a->lookup_unknown ? " (key unknown: never reached the processor)"
                          : a->search_none  ? " (nothing carries our id at the processor)"
                                            : "");
    } else if (c->by_id) {
      lc_refund_ask ask = {c->refund_id, c->currency, c->operation_id, c->amount_minor,
                           c->payment_id, NULL};
      lc_map_refund_by_id(paypal, status, c->resp, c->resp_len, &ask, a);
    } else if (c->mode == CALL_OPERATION) {
      /* The target only for the POST's own answer: a 204 to a replay or a
       * search (a proxy's) is no void (s11 final review 2). */
      lc_map_operation(paypal, (ps_kind)c->op_kind, status, c->resp, c->resp_len, c->currency,
                       c->lookup ? NULL : c->target, a);
      lc_refund_ask ask = {NULL, c->currency, c->operation_id, c->amount_minor, c->payment_id,
                           NULL};
      if (a->pending_ref) lc_check_pending(paypal, c->resp, c->resp_len, &ask, a);
      if (c->search) lc_check_search(paypal, status, c->resp, c->resp_len, &ask, a);
    } else if (c->mode == CALL_AUTHORIZE) {
      lc_map_authorize(paypal, status, c->resp, c->resp_len, a);
    } else if (paypal) {
      paypal_map_response(status, c->resp, c->resp_len, a);
    } else {
      stripe_map_response(status, c->resp, c->resp_len, a);
    }
    a->looked_up = c->lookup;
    a->searched = c->search;
  } else {
    long sent = -1; /* unknown counts as written */
    if (curl_easy_getinfo(c->easy, CURLINFO_REQUEST_SIZE, &sent) != CURLE_OK) sent = -1;
    charge_http_map_failure(cc, sent, c->errbuf, a);
    if (c->lookup && a->kind == CHARGE_NOT_SENT) a->kind = CHARGE_UNKNOWN; /* asked nothing */
    a->looked_up = c->lookup;
    a->searched = c->search;
  }
  a->by_id = c->by_id;
  curl_off_t us = 0;
  curl_easy_getinfo(c->easy, CURLINFO_TOTAL_TIME_T, &us);
  processor_observe_call(c->proc, (int64_t)us, a);
}

static int call_add(charge_http *h, http_call *c) {
  c->multi = h->shards[h->next_shard].multi;
  h->next_shard = (h->next_shard + 1) % h->nshards;
  CURLMcode mc = curl_multi_add_handle(c->multi, c->easy);
  if (mc != CURLM_OK) {
    log_error("charge: cannot start a processor request: %s", curl_multi_strerror(mc));
    call_cleanup(h, c);
    return -1;
  }
  h->inflight++;
  return 0;
}

int charge_http_start(charge_http *h, http_call *c, const processor *pr, const charge_request *rq,
                      void *owner) {
  if (call_setup(h, c, pr, rq, owner)) return CHARGE_HTTP_UNBUILDABLE;
  return call_add(h, c);
}

static void call_ask(http_call *c, const lc_refund_ask *ask) {
  snprintf(c->currency, sizeof c->currency, "%s", ask->currency);
  snprintf(c->refund_id, sizeof c->refund_id, "%s", ask->refund_id ? ask->refund_id : "");
  snprintf(c->operation_id, sizeof c->operation_id, "%s", ask->operation_id);
  snprintf(c->payment_id, sizeof c->payment_id, "%s", ask->payment_id ? ask->payment_id : "");
  snprintf(c->target, sizeof c->target, "%s", ask->target ? ask->target : "");
  c->amount_minor = ask->amount_minor;
}

int charge_http_start_op(charge_http *h, http_call *c, const processor *pr, lc_request *rq,
                         const char *key, int op_kind, const lc_refund_ask *ask, bool lookup,
                         void *owner) {
  char path[512];
  if (lookup) {
    charge_lookup_path(pr->paypal, key, path, sizeof path);
    free(rq->body);
  } else {
    snprintf(path, sizeof path, "%s", rq->path);
  }
  call_prepare(h, c, pr, path, lookup ? NULL : rq->body, rq->json, key, owner);
  rq->body = NULL; /* c's now */
  c->mode = CALL_OPERATION;
  c->lookup = lookup;
  c->op_kind = op_kind;
  call_ask(c, ask);
  return call_add(h, c);
}

int charge_http_start_search_op(charge_http *h, http_call *c, const processor *pr, int what,
                                const char *id, int op_kind, const lc_refund_ask *ask,
                                void *owner) {
  char path[512];
  charge_search_path(pr->paypal, (search_ref)what, id, path, sizeof path);
  call_prepare(h, c, pr, path, NULL, false, "", owner);
  c->mode = CALL_OPERATION;
  c->lookup = c->search = true;
  c->op_kind = op_kind;
  call_ask(c, ask);
  return call_add(h, c);
}

int charge_http_start_refund_status(charge_http *h, http_call *c, const processor *pr,
                                    const lc_refund_ask *ask, void *owner) {
  char path[512];
  if (refund_status_path(pr->paypal, ask->refund_id, path, sizeof path)) return -1;
  call_prepare(h, c, pr, path, NULL, false, "", owner);
  c->mode = CALL_OPERATION;
  c->lookup = c->by_id = true;
  c->op_kind = KIND_REFUND;
  call_ask(c, ask);
  return call_add(h, c);
}

void charge_http_cancel(charge_http *h, http_call *c) {
  curl_multi_remove_handle(c->multi, c->easy);
  call_cleanup(h, c);
  h->inflight--;
}

/* curl says which sockets of a shard to watch for what. */
static int on_socket(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp) {
  (void)easy;
  (void)socketp;
  http_shard *sh = userp;
  if (what == CURL_POLL_REMOVE) {
    epoll_ctl(sh->epfd, EPOLL_CTL_DEL, fd, NULL); /* already gone if closed */
    return 0;
  }
  struct epoll_event ev = {.events = ((what & CURL_POLL_IN) ? EPOLLIN : 0u) |
                                     ((what & CURL_POLL_OUT) ? EPOLLOUT : 0u),
                           .data.u64 = (uint64_t)sh->idx << 32 | (uint32_t)fd};
  if (epoll_ctl(sh->epfd, EPOLL_CTL_MOD, fd, &ev) == 0) return 0;
  if (errno == ENOENT && epoll_ctl(sh->epfd, EPOLL_CTL_ADD, fd, &ev) == 0) return 0;
  log_error("charge: cannot watch a processor connection: %s", strerror(errno));
  return -1; /* curl fails that transfer: an unknown answer, retried */
}

/* curl says when a shard next needs to run without a socket event. */
static int on_timer(CURLM *multi, long timeout_ms, void *userp) {
  (void)multi;
  http_shard *sh = userp;
  sh->timer_due = timeout_ms < 0 ? -1 : ps_mono_ms() + timeout_ms;
  return 0;
}

void charge_http_run_timers(charge_http *h) {
  int running;
  int64_t now = ps_mono_ms();
  for (int k = 0; k < h->nshards; k++) {
    http_shard *sh = &h->shards[k];
    for (int i = 0; i < 8 && sh->timer_due >= 0 && sh->timer_due <= now; i++) {
      sh->timer_due = -1;
      curl_multi_socket_action(sh->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    }
  }
}

void charge_http_drive(charge_http *h, int wait_ms, charge_http_done done, void *ud) {
  int64_t now = ps_mono_ms();
  for (int k = 0; k < h->nshards; k++) {
    int64_t due = h->shards[k].timer_due;
    if (due >= 0 && due - now < wait_ms) wait_ms = due > now ? (int)(due - now) : 0;
  }
  struct epoll_event evs[256];
  int n = epoll_wait(h->epfd, evs, 256, wait_ms);
  for (int i = 0; i < n; i++) {
    int mask = ((evs[i].events & EPOLLIN) ? CURL_CSELECT_IN : 0) |
               ((evs[i].events & EPOLLOUT) ? CURL_CSELECT_OUT : 0) |
               ((evs[i].events & (EPOLLERR | EPOLLHUP)) ? CURL_CSELECT_ERR : 0);
    int running;
    curl_multi_socket_action(h->shards[evs[i].data.u64 >> 32].multi,
                             (curl_socket_t)(uint32_t)evs[i].data.u64, mask, &running);
  }
  charge_http_run_timers(h);
  for (int k = 0; k < h->nshards; k++) {
    CURLMsg *msg;
    int left;
    while ((msg = curl_multi_info_read(h->shards[k].multi, &left))) {
      if (msg->msg != CURLMSG_DONE) continue;
      http_call *c = NULL;
      curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&c);
      CURLcode cc = msg->data.result;
      curl_multi_remove_handle(c->multi, c->easy);
      charge_answer a;
      call_finish(c, cc, &a);
      void *owner = c->owner;
      call_cleanup(h, c);
      h->inflight--;
      done(owner, &a, ud);
    }
  }
}

int charge_http_init(charge_http *h, long long max_inflight, long long timeout_ms, char *err,
                     size_t errlen) {
  memset(h, 0, sizeof *h);
  h->timeout_ms = timeout_ms;
  h->epfd = epoll_create1(EPOLL_CLOEXEC);
  h->pool_cap = (size_t)max_inflight;
  h->pool = malloc(h->pool_cap * sizeof *h->pool);
  h->nshards = (int)((max_inflight + CHARGE_SHARD_CONNS - 1) / CHARGE_SHARD_CONNS);
  h->shards = calloc((size_t)h->nshards, sizeof *h->shards);
  if (h->epfd < 0 || !h->pool || !h->shards) {
    snprintf(err, errlen, "charge: cannot set up HTTP: %s", strerror(errno));
    return -1;
  }
  for (int k = 0; k < h->nshards; k++) {
    http_shard *sh = &h->shards[k];
    sh->idx = k;
    sh->epfd = h->epfd;
    sh->timer_due = -1;
    if (!(sh->multi = curl_multi_init())) {
      snprintf(err, errlen, "charge: cannot set up HTTP");
      return -1;
    }
    curl_multi_setopt(sh->multi, CURLMOPT_SOCKETFUNCTION, on_socket);
    curl_multi_setopt(sh->multi, CURLMOPT_SOCKETDATA, sh);
    curl_multi_setopt(sh->multi, CURLMOPT_TIMERFUNCTION, on_timer);
    curl_multi_setopt(sh->multi, CURLMOPT_TIMERDATA, sh);
  }
  return 0;
}

void charge_http_close(charge_http *h) {
  for (int k = 0; k < h->nshards; k++)
    if (h->shards[k].multi) curl_multi_cleanup(h->shards[k].multi);
  free(h->shards);
  for (size_t i = 0; i < h->npool; i++) curl_easy_cleanup(h->pool[i]);
  free(h->pool);
  if (h->epfd >= 0) close(h->epfd);
}
