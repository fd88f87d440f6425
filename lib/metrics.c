/* metrics: registry, text exposition and the HTTP endpoint. */
#include "metrics.h"

#include <microhttpd.h>
#include <netdb.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "http_listen.h"

typedef enum { M_COUNTER, M_GAUGE, M_HISTOGRAM } metric_kind;

typedef struct family {
  char *name, *help;
  metric_kind kind;
  const double *bounds;
  int nbounds;
  struct metric *series, *last;
  struct family *next;
} family;

struct metric {
  family *f;
  char *labels; /* rendered: k="v",k2="v2" (may be empty) */
  double value; /* counter/gauge; histogram sum */
  uint64_t count;
  uint64_t *buckets; /* histogram: nbounds + 1 (the last is +Inf) */
  metric *next;
};

#define MAX_CHECKS 8

typedef struct check {
  char name[32];
  bool ok, required;
  char why[160];
} check;

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static family *families, *families_last;
static char stage_label[64] = "";
static check checks[MAX_CHECKS];
static int nchecks;
static struct MHD_Daemon *daemon_;

const double METRICS_LATENCY_BUCKETS[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                          0.1,    0.25,  0.5,    1,     2.5,  5,     10};
const int METRICS_LATENCY_NBUCKETS =
    (int)(sizeof METRICS_LATENCY_BUCKETS / sizeof METRICS_LATENCY_BUCKETS[0]);
const double METRICS_SIZE_BUCKETS[] = {1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000};
const int METRICS_SIZE_NBUCKETS =
    (int)(sizeof METRICS_SIZE_BUCKETS / sizeof METRICS_SIZE_BUCKETS[0]);

/* ---- a growable string -------------------------------------------------- */

typedef struct sbuf {
  char *p;
  size_t len, cap;
} sbuf;

static void sb_grow(sbuf *b, size_t need) {
  if (b->len + need + 1 <= b->cap) return;
  size_t cap = b->cap ? b->cap : 256;
  while (cap < b->len + need + 1) cap *= 2;
  char *p = realloc(b->p, cap);
  if (!p) abort();
  b->p = p;
  b->cap = cap;
}

static void sb_printf(sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_printf(sbuf *b, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(NULL, 0, fmt, ap);
  va_end(ap);
  if (n < 0) return;
  sb_grow(b, (size_t)n);
  va_start(ap, fmt);
  vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
  va_end(ap);
  b->len += (size_t)n;
}

/* Label values escape backslash, quote and newline (exposition format). */
static void sb_label_value(sbuf *b, const char *v) {
  for (; *v; v++) {
    if (*v == '\\' || *v == '"') sb_printf(b, "\\%c", *v);
    else if (*v == '\n') sb_printf(b, "\\n");
    else sb_printf(b, "%c", *v);
  }
}

/* ---- registry ------------------------------------------------------------ */

static char *render_labels(va_list ap) {
  sbuf b = {0};
  sb_grow(&b, 0);
  b.p[0] = '\0';
  for (;;) {
    const char *k = va_arg(ap, const char *);
    if (!k) break;
    const char *v = va_arg(ap, const char *);
    sb_printf(&b, "%s%s=\"", b.len ? "," : "", k);
    sb_label_value(&b, v ? v : "");
    sb_printf(&b, "\"");
  }
  return b.p;
}

static family *family_get(const char *name, const char *help, metric_kind kind,
                          const double *bounds, int nbounds) {
  for (family *f = families; f; f = f->next)
    if (strcmp(f->name, name) == 0) {
      if (f->kind != kind) abort(); /* a programming error: one name, one kind */
      return f;
    }
  family *f = calloc(1, sizeof *f);
  if (!f) abort();
  f->name = strdup(name);
  f->help = strdup(help);
  f->kind = kind;
  f->bounds = bounds;
  f->nbounds = nbounds;
  if (families_last) families_last->next = f;
  else families = f;
  families_last = f;
  return f;
}

static metric *series_get(metric_kind kind, const char *name, const char *help,
                          const double *bounds, int nbounds, va_list ap) {
  char *labels = render_labels(ap);
  pthread_mutex_lock(&mu);
  family *f = family_get(name, help, kind, bounds, nbounds);
  metric *m = f->series;
  while (m && strcmp(m->labels, labels) != 0) m = m->next;
  if (!m) {
    m = calloc(1, sizeof *m);
    if (!m) abort();
    m->f = f;
    m->labels = labels;
    labels = NULL;
    if (kind == M_HISTOGRAM) {
      m->buckets = calloc((size_t)nbounds + 1, sizeof *m->buckets);
      if (!m->buckets) abort();
    }
    if (f->last) f->last->next = m;
    else f->series = m;
    f->last = m;
  }
  pthread_mutex_unlock(&mu);
  free(labels);
  return m;
}

metric *metrics_counter(const char *name, const char *help, ...) {
  va_list ap;
  va_start(ap, help);
  metric *m = series_get(M_COUNTER, name, help, NULL, 0, ap);
  va_end(ap);
  return m;
}

metric *metrics_gauge(const char *name, const char *help, ...) {
  va_list ap;
  va_start(ap, help);
  metric *m = series_get(M_GAUGE, name, help, NULL, 0, ap);
  va_end(ap);
  return m;
}

metric *metrics_histogram(const char *name, const char *help, const double *bounds, int nbounds,
                          ...) {
  va_list ap;
  va_start(ap, nbounds);
  metric *m = series_get(M_HISTOGRAM, name, help, bounds, nbounds, ap);
  va_end(ap);
  return m;
}

void metric_add(metric *m, double v) {
  pthread_mutex_lock(&mu);
  m->value += v;
  pthread_mutex_unlock(&mu);
}

void metric_set(metric *m, double v) {
  pthread_mutex_lock(&mu);
  m->value = v;
  pthread_mutex_unlock(&mu);
}

double metric_value(metric *m) {
  pthread_mutex_lock(&mu);
  double v = m->value;
  pthread_mutex_unlock(&mu);
  return v;
}

void metric_observe(metric *m, double v) {
  pthread_mutex_lock(&mu);
  int i = 0;
  while (i < m->f->nbounds && v > m->f->bounds[i]) i++;
  m->buckets[i]++;
  m->count++;
  m->value += v;
  pthread_mutex_unlock(&mu);
}

double metrics_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ---- exposition ----------------------------------------------------------- */

static void render_series_name(sbuf *b, const char *name, const char *suffix, const metric *m,
                               const char *extra) {
  sb_printf(b, "%s%s{", name, suffix);
  bool any = false;
  if (*stage_label) {
    sb_printf(b, "stage=\"%s\"", stage_label);
    any = true;
  }
  if (*m->labels) {
    sb_printf(b, "%s%s", any ? "," : "", m->labels);
    any = true;
  }
  if (extra) sb_printf(b, "%s%s", any ? "," : "", extra);
  sb_printf(b, "} ");
}

static void render_family(sbuf *b, const family *f) {
  static const char *types[] = {"counter", "gauge", "histogram"};
  sb_printf(b, "# HELP %s %s\n# TYPE %s %s\n", f->name, f->help, f->name, types[f->kind]);
  for (const metric *m = f->series; m; m = m->next) {
    if (f->kind != M_HISTOGRAM) {
      render_series_name(b, f->name, "", m, NULL);
      sb_printf(b, "%.17g\n", m->value);
      continue;
    }
    uint64_t cum = 0;
    for (int i = 0; i <= f->nbounds; i++) {
      char le[48];
      cum += m->buckets[i];
      if (i < f->nbounds) snprintf(le, sizeof le, "le=\"%g\"", f->bounds[i]);
      else snprintf(le, sizeof le, "le=\"+Inf\"");
      render_series_name(b, f->name, "_bucket", m, le);
      sb_printf(b, "%llu\n", (unsigned long long)cum);
    }
    render_series_name(b, f->name, "_sum", m, NULL);
    sb_printf(b, "%.17g\n", m->value);
    render_series_name(b, f->name, "_count", m, NULL);
    sb_printf(b, "%llu\n", (unsigned long long)m->count);
  }
}

char *metrics_render(void) {
  sbuf b = {0};
  sb_grow(&b, 0);
  b.p[0] = '\0';
  pthread_mutex_lock(&mu);
  for (const family *f = families; f; f = f->next) render_family(&b, f);
  pthread_mutex_unlock(&mu);
  return b.p;
}

/* ---- readiness -------------------------------------------------------------- */

void metrics_set_check(const char *name, bool ok, bool required, const char *why) {
  pthread_mutex_lock(&mu);
  int i = 0;
  while (i < nchecks && strcmp(checks[i].name, name) != 0) i++;
  if (i == nchecks && nchecks < MAX_CHECKS) {
    snprintf(checks[i].name, sizeof checks[i].name, "%s", name);
    nchecks++;
  }
  if (i < MAX_CHECKS) {
    checks[i].ok = ok;
    checks[i].required = required;
    snprintf(checks[i].why, sizeof checks[i].why, "%s", why ? why : "");
  }
  pthread_mutex_unlock(&mu);
}

/* ---- liveness ---------------------------------------------------------------- */

/* The worker loop stamps each turn; /healthz fails once it has not turned
 * for heartbeat_timeout seconds (a hung loop is restarted, a waiting one
 * is not: every wait in the loop is bounded and stamps). */
static _Atomic int64_t heartbeat_ms;
static _Atomic int heartbeat_timeout_s;

static int64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void metrics_heartbeat(void) { heartbeat_ms = now_ms(); }

void metrics_set_heartbeat_timeout(int seconds) {
  heartbeat_ms = now_ms();
  heartbeat_timeout_s = seconds;
}

/* 0 when alive, else the seconds since the loop last turned. */
static int64_t stalled_s(void) {
  int timeout = heartbeat_timeout_s;
  if (timeout <= 0) return 0;
  int64_t idle = (now_ms() - heartbeat_ms) / 1000;
  return idle >= timeout ? idle : 0;
}

/* A blocking Kafka call in the loop (a synchronous offset commit waits for
 * the group coordinator as long as the broker is away) serves no callback
 * that could report the outage: the HTTP thread judges its age itself. */
static _Atomic int64_t kafka_call_since_ms;

void metrics_kafka_call(bool begin) { kafka_call_since_ms = begin ? now_ms() : 0; }

/* Returns the body ("ok" or one line per check) and whether all are ok. */
static char *render_ready(bool *ready) {
  int64_t since = kafka_call_since_ms;
  int64_t blocked_s = since ? (now_ms() - since) / 1000 : 0;
  sbuf b = {0};
  sb_grow(&b, 0);
  b.p[0] = '\0';
  *ready = true;
  pthread_mutex_lock(&mu);
  if (nchecks == 0) *ready = false;
  for (int i = 0; i < nchecks; i++) {
    if (blocked_s >= 2 && checks[i].ok && strcmp(checks[i].name, "kafka") == 0) {
      *ready = false;
      sb_printf(&b, "kafka not ok: a Kafka call has waited %lld s\n", (long long)blocked_s);
      continue;
    }
    if (!checks[i].ok && checks[i].required) *ready = false;
    sb_printf(&b, "%s %s%s%s%s\n", checks[i].name, checks[i].ok ? "ok" : "not ok",
              checks[i].required ? "" : " (not required)", *checks[i].why ? ": " : "",
              checks[i].why);
  }
  pthread_mutex_unlock(&mu);
  if (nchecks == 0) sb_printf(&b, "starting\n");
  return b.p;
}

/* ---- HTTP ----------------------------------------------------------------- */

static enum MHD_Result reply(struct MHD_Connection *c, unsigned status, char *body,
                             const char *ctype) {
  struct MHD_Response *r =
      MHD_create_response_from_buffer(strlen(body), body, MHD_RESPMEM_MUST_FREE);
  MHD_add_response_header(r, "Content-Type", ctype);
  enum MHD_Result ret = MHD_queue_response(c, status, r);
  MHD_destroy_response(r);
  return ret;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version, const char *upload,
                                  size_t *upload_size, void **con_cls) {
  (void)cls, (void)version, (void)upload, (void)upload_size, (void)con_cls;
  if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0)
    return reply(c, MHD_HTTP_METHOD_NOT_ALLOWED, strdup("GET only\n"), "text/plain");
  if (strcmp(url, "/metrics") == 0)
    return reply(c, MHD_HTTP_OK, metrics_render(), "text/plain; version=0.0.4; charset=utf-8");
  if (strcmp(url, "/healthz") == 0) {
    int64_t stalled = stalled_s();
    if (!stalled) return reply(c, MHD_HTTP_OK, strdup("ok\n"), "text/plain");
    char body[96];
    snprintf(body, sizeof body, "worker loop stalled: no heartbeat for %lld s\n",
             (long long)stalled);
    return reply(c, MHD_HTTP_SERVICE_UNAVAILABLE, strdup(body), "text/plain");
  }
  if (strcmp(url, "/readyz") == 0) {
    bool ready;
    char *body = render_ready(&ready);
    return reply(c, ready ? MHD_HTTP_OK : MHD_HTTP_SERVICE_UNAVAILABLE, body, "text/plain");
  }
  return reply(c, MHD_HTTP_NOT_FOUND, strdup("not found: try /metrics, /healthz, /readyz\n"),
               "text/plain");
}

int metrics_serve(const char *stage, const char *addr, const char *port_file, char *err,
                  size_t errlen) {
  snprintf(stage_label, sizeof stage_label, "%s", stage);
  if (strcmp(addr, "off") == 0) return 0;
  struct addrinfo *ai =
      http_listen_resolve("PAYSTREAM_METRICS_ADDR", "host:port or off", addr, err, errlen);
  if (!ai) return -1;
  /* epoll (MHD_USE_AUTO picks it on Linux), not select(): a charge worker
   * holds a connection per request in flight, so a probe's socket can be
   * past descriptor 1024, which select() cannot watch — the probes then
   * fail exactly when the worker is busiest. */
  unsigned flags = MHD_USE_AUTO_INTERNAL_THREAD | MHD_USE_ERROR_LOG;
  if (ai->ai_family == AF_INET6) flags |= MHD_USE_IPv6;
  daemon_ = MHD_start_daemon(flags, 0, NULL, NULL, on_request, NULL, MHD_OPTION_SOCK_ADDR,
                             ai->ai_addr, MHD_OPTION_CONNECTION_LIMIT, (unsigned)32,
                             MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)10, MHD_OPTION_END);
  freeaddrinfo(ai);
  if (!daemon_) {
    snprintf(err, errlen, "could not serve metrics on %s (address in use?)", addr);
    return -1;
  }
  unsigned port;
  if (http_listen_publish(daemon_, "PAYSTREAM_METRICS_PORT_FILE", port_file, &port, err, errlen)) {
    metrics_stop();
    return -1;
  }
  return 0;
}

void metrics_stop(void) {
  if (daemon_) MHD_stop_daemon(daemon_);
  daemon_ = NULL;
}
