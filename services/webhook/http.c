/* http: POST /webhooks/<processor> — read, verify, normalise, send, and
 * answer once Kafka has spoken. */
#include "http.h"

#include <microhttpd.h>
#include <netdb.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "http_listen.h"
#include "log.h"
#include "metrics.h"
#include "sig_paypal.h"
#include "sig_stripe.h"

#define PREFIX "/webhooks/"

typedef enum req_state {
  REQ_READING,  /* body arriving */
  REQ_DISCARDING, /* body over the limit: the rest is read and dropped, then 413 */
  REQ_WAITING,  /* sent; the connection is suspended until the delivery report */
  REQ_DELIVERED, /* the report came: answer it */
  REQ_ANSWERED, /* a response is queued; anything still arriving is dropped */
} req_state;

typedef struct request {
  wh_server *srv;
  const wh_processor *proc;
  struct MHD_Connection *conn;
  req_state state;
  char *body;
  size_t len, cap;
  size_t discarded;
  bool ok; /* delivered durably */
  double started;
} request;

struct wh_server {
  const wh_config *wc;
  wh_producer *producer;
  struct MHD_Daemon *d;
  pthread_mutex_t mu; /* orders suspend before resume; guards closing, active */
  bool closing;
  int active;
  metric *latency;
};

/* ---- answers ---------------------------------------------------------------- */

static enum MHD_Result respond(struct MHD_Connection *c, unsigned status, const char *body) {
  struct MHD_Response *r =
      MHD_create_response_from_buffer(strlen(body), (void *)body, MHD_RESPMEM_PERSISTENT);
  MHD_add_response_header(r, "Content-Type", "application/json");
  enum MHD_Result ret = MHD_queue_response(c, status, r);
  MHD_destroy_response(r);
  return ret;
}

static void count_refusal(const char *processor, const char *reason) {
  metric_add(metrics_counter("paystream_webhook_refused_total",
                             "Webhook deliveries refused, by reason", "processor", processor,
                             "reason", reason, NULL),
             1);
}

/* A refusal: status and a JSON body naming the reason, counted. The URL's
 * own text never becomes a label (an unknown name is "unknown"). */
static enum MHD_Result refuse(struct MHD_Connection *c, const wh_processor *p, unsigned status,
                              const char *reason) {
  static const struct {
    const char *reason, *body;
  } bodies[] = {
      {"unknown_processor", "{\"error\":\"unknown_processor\"}\n"},
      {"method", "{\"error\":\"method_not_allowed\"}\n"},
      {"too_large", "{\"error\":\"body_too_large\"}\n"},
      {"malformed_signature", "{\"error\":\"malformed_signature\"}\n"},
      {"bad_signature", "{\"error\":\"bad_signature\"}\n"},
      {"stale", "{\"error\":\"timestamp_outside_tolerance\"}\n"},
      {"malformed_body", "{\"error\":\"malformed_body\"}\n"},
      {"unavailable", "{\"error\":\"unavailable\"}\n"},
  };
  const char *body = "{\"error\":\"refused\"}\n";
  for (size_t i = 0; i < sizeof bodies / sizeof bodies[0]; i++)
    if (strcmp(bodies[i].reason, reason) == 0) body = bodies[i].body;
  count_refusal(p ? p->name : "unknown", reason);
  return respond(c, status, body);
}

static enum MHD_Result refuse_request(request *r, unsigned status, const char *reason) {
  r->state = REQ_ANSWERED;
  metric_observe(r->srv->latency, metrics_now() - r->started);
  return refuse(r->conn, r->proc, status, reason);
}

/* ---- the steps of one delivery ------------------------------------------------- */

/* First call, headers only: route, method, declared length. */
static enum MHD_Result begin(wh_server *s, struct MHD_Connection *c, const char *url,
                             const char *method, void **con_cls) {
  if (strncmp(url, PREFIX, strlen(PREFIX)) != 0) return refuse(c, NULL, 404, "unknown_processor");
  const wh_processor *p = wh_config_find(s->wc, url + strlen(PREFIX));
  if (!p) return refuse(c, NULL, 404, "unknown_processor");
  if (strcmp(method, "POST") != 0) return refuse(c, p, 405, "method");
  const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
  if (cl && strtoull(cl, NULL, 10) > s->wc->max_body) return refuse(c, p, 413, "too_large");
  request *r = calloc(1, sizeof *r);
  if (!r) abort();
  r->srv = s;
  r->proc = p;
  r->conn = c;
  r->started = metrics_now();
  pthread_mutex_lock(&s->mu);
  s->active++;
  pthread_mutex_unlock(&s->mu);
  *con_cls = r;
  return MHD_YES;
}

/* How much of an oversized body is read (and dropped) so that its sender
 * hears 413; past it the connection is closed without an answer. */
#define DISCARD_FACTOR 4

/* A chunk of body: kept while within the limit. A chunked body has no
 * declared length, so the limit is enforced here, as it arrives: nothing
 * past it is stored. MHD (0.9) cannot answer in the middle of a body, so
 * the rest is read and dropped and 413 answered at its end — unless it goes
 * on past DISCARD_FACTOR times the limit, when the connection is closed. */
static enum MHD_Result read_chunk(request *r, const char *data, size_t n) {
  size_t max = r->srv->wc->max_body;
  if (r->state == REQ_DISCARDING || n > max - r->len) {
    r->state = REQ_DISCARDING;
    r->discarded += n;
    free(r->body);
    r->body = NULL;
    r->len = r->cap = 0;
    if (r->discarded <= DISCARD_FACTOR * max) return MHD_YES;
    log_warn("webhook body for %s over %zu bytes: connection closed", r->proc->name, max);
    count_refusal(r->proc->name, "too_large");
    r->state = REQ_ANSWERED;
    return MHD_NO;
  }
  if (r->len + n > r->cap) {
    size_t cap = r->cap ? r->cap : 4096;
    while (cap < r->len + n) cap *= 2;
    if (cap > max) cap = max;
    char *b = realloc(r->body, cap);
    if (!b) abort();
    r->body = b;
    r->cap = cap;
  }
  memcpy(r->body + r->len, data, n);
  r->len += n;
  return MHD_YES;
}

static const char *header(struct MHD_Connection *c, const char *name) {
  return MHD_lookup_connection_value(c, MHD_HEADER_KIND, name);
}

static sig_result verify(const request *r) {
  const wh_processor *p = r->proc;
  int64_t now = (int64_t)time(NULL);
  if (p->flavour == WH_STRIPE)
    return sig_stripe_verify(header(r->conn, "Stripe-Signature"), r->body, r->len, p->secret, now,
                             r->srv->wc->tolerance_s);
  paypal_headers h = {
      .transmission_id = header(r->conn, "PayPal-Transmission-Id"),
      .transmission_time = header(r->conn, "PayPal-Transmission-Time"),
      .webhook_id = header(r->conn, "PayPal-Webhook-Id"),
      .signature = header(r->conn, "PayPal-Transmission-Sig"),
  };
  return sig_paypal_verify(&h, r->body, r->len, p->secret, p->webhook_id, now,
                           r->srv->wc->tolerance_s);
}

/* The whole body is in: verify, normalise, send, and suspend until the
 * delivery report. The send and the suspension happen under the server's
 * lock, which the delivery callback also takes: the resume can never come
 * before the suspend. */
static enum MHD_Result complete(request *r) {
  wh_server *s = r->srv;
  metric_add(r->proc->received, 1);
  sig_result sr = verify(r);
  if (sr != SIG_OK) {
    log_warn("webhook for %s refused: %s", r->proc->name, sig_result_name(sr));
    return refuse_request(r, 400, sig_result_name(sr));
  }
  wh_event ev;
  char err[256];
  struct timespec now;
  clock_gettime(CLOCK_REALTIME, &now);
  int64_t now_ms = (int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000;
  if (wh_normalise(r->proc->flavour, r->proc->name, r->body, r->len, now_ms, &ev, err,
                   sizeof err) != 0) {
    log_warn("webhook for %s refused: signed but malformed: %s", r->proc->name, err);
    return refuse_request(r, 400, "malformed_body");
  }
  pthread_mutex_lock(&s->mu);
  int rc = -1;
  if (s->closing) snprintf(err, sizeof err, "stopping");
  else rc = wh_producer_send(s->producer, &ev, r->proc->name, r, err, sizeof err);
  if (rc == 0) {
    r->state = REQ_WAITING;
    MHD_suspend_connection(r->conn);
  }
  pthread_mutex_unlock(&s->mu);
  if (rc != 0) log_warn("webhook event %s from %s not sent: %s", ev.event_id, r->proc->name, err);
  else log_debug("webhook event %s (%s) from %s sent", ev.event_id, ev.type, r->proc->name);
  wh_event_clear(&ev);
  if (rc != 0) {
    metric_add(r->proc->failed, 1);
    return refuse_request(r, 503, "unavailable");
  }
  return MHD_YES;
}

void wh_server_delivered(void *opaque, bool ok, const char *why) {
  (void)why; /* logged by the producer */
  request *r = opaque;
  wh_server *s = r->srv;
  pthread_mutex_lock(&s->mu);
  r->ok = ok;
  r->state = REQ_DELIVERED;
  MHD_resume_connection(r->conn); /* r belongs to MHD's thread from here on */
  pthread_mutex_unlock(&s->mu);
}

static enum MHD_Result answer_delivery(request *r) {
  r->state = REQ_ANSWERED;
  metric_observe(r->srv->latency, metrics_now() - r->started);
  if (!r->ok) {
    metric_add(r->proc->failed, 1);
    count_refusal(r->proc->name, "unavailable");
    return respond(r->conn, 503, "{\"error\":\"unavailable\"}\n");
  }
  metric_add(r->proc->published, 1);
  return respond(r->conn, 200, "{\"received\":true}\n");
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version, const char *upload,
                                  size_t *upload_size, void **con_cls) {
  (void)version;
  request *r = *con_cls;
  if (!r) return begin(cls, c, url, method, con_cls);
  size_t n = *upload_size;
  *upload_size = 0;
  switch (r->state) {
  case REQ_READING: return n ? read_chunk(r, upload, n) : complete(r);
  case REQ_DISCARDING: return n ? read_chunk(r, upload, n) : refuse_request(r, 413, "too_large");
  case REQ_DELIVERED: return answer_delivery(r);
  case REQ_WAITING:
  case REQ_ANSWERED: return MHD_YES;
  }
  return MHD_YES;
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls,
                         enum MHD_RequestTerminationCode toe) {
  (void)c, (void)toe;
  wh_server *s = cls;
  request *r = *con_cls;
  if (!r) return;
  *con_cls = NULL;
  free(r->body);
  free(r);
  pthread_mutex_lock(&s->mu);
  s->active--;
  pthread_mutex_unlock(&s->mu);
}

/* ---- lifecycle ----------------------------------------------------------------- */

wh_server *wh_server_new(const wh_config *wc) {
  wh_server *s = calloc(1, sizeof *s);
  if (!s) abort();
  s->wc = wc;
  pthread_mutex_init(&s->mu, NULL);
  s->latency = metrics_histogram("paystream_webhook_seconds",
                                 "From a delivery's headers to its answer", METRICS_LATENCY_BUCKETS,
                                 METRICS_LATENCY_NBUCKETS, NULL);
  return s;
}

int wh_server_start(wh_server *s, wh_producer *p, char *err, size_t errlen) {
  s->producer = p;
  const char *addr = s->wc->addr;
  struct addrinfo *ai = http_listen_resolve("PAYSTREAM_WEBHOOK_ADDR", "host:port", addr, err, errlen);
  if (!ai) return -1;
  /* epoll: a slow client holds a descriptor, and there may be many; a
   * thread pool so one slow verification does not hold up the others. */
  unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME |
                   MHD_USE_ITC | MHD_USE_ERROR_LOG;
  if (ai->ai_family == AF_INET6) flags |= MHD_USE_IPv6;
  s->d = MHD_start_daemon(
      flags, 0, NULL, NULL, on_request, s, MHD_OPTION_SOCK_ADDR, ai->ai_addr,
      MHD_OPTION_THREAD_POOL_SIZE, (unsigned)s->wc->threads, MHD_OPTION_CONNECTION_LIMIT,
      (unsigned)s->wc->max_conns, MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)s->wc->conn_timeout_s,
      MHD_OPTION_NOTIFY_COMPLETED, on_completed, s, MHD_OPTION_END);
  freeaddrinfo(ai);
  if (!s->d) {
    snprintf(err, errlen, "could not listen on %s (address in use?)", addr);
    return -1;
  }
  unsigned port;
  if (http_listen_publish(s->d, "PAYSTREAM_WEBHOOK_PORT_FILE", s->wc->port_file, &port, err, errlen))
    return -1;
  log_info("accepting webhooks on port %u for %d processor(s)", port, s->wc->nprocs);
  metrics_set_check("listener", true, true, "");
  return 0;
}

void wh_server_close(wh_server *s) {
  pthread_mutex_lock(&s->mu);
  s->closing = true;
  pthread_mutex_unlock(&s->mu);
  if (!s->d) return;
  MHD_socket fd = MHD_quiesce_daemon(s->d);
  if (fd != MHD_INVALID_SOCKET) close(fd);
  metrics_set_check("listener", false, true, "stopping");
}

int wh_server_wait_idle(wh_server *s, int timeout_ms) {
  double deadline = metrics_now() + timeout_ms / 1000.0;
  for (;;) {
    pthread_mutex_lock(&s->mu);
    int active = s->active;
    pthread_mutex_unlock(&s->mu);
    if (active == 0 || metrics_now() >= deadline) return active;
    usleep(10 * 1000);
  }
}

void wh_server_destroy(wh_server *s) {
  if (!s) return;
  if (s->d) MHD_stop_daemon(s->d);
  pthread_mutex_destroy(&s->mu);
  free(s);
}
