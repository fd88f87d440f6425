/* metrics: a small Prometheus registry and the worker's HTTP endpoint
 * (/metrics, /healthz, /readyz) served by libmicrohttpd on its own thread.
 *
 * A series is a name plus a label set; asking for the same pair again returns
 * the same series, so callers may look series up where they use them
 * (label values are escaped here). Updates take one mutex: workers update
 * per batch, not per message, so contention is nil. Every series carries the
 * worker's stage as a label. Without metrics_serve nothing is exported and
 * the calls only cost a lookup (tools share the runtime). */
#ifndef PS_METRICS_H
#define PS_METRICS_H

#include <stdbool.h>
#include <stddef.h>

typedef struct metric metric;

/* Labels are given as alternating name/value strings, terminated by NULL:
 * metrics_counter("x_total", "help", "topic", t, NULL). */
metric *metrics_counter(const char *name, const char *help, ...);
metric *metrics_gauge(const char *name, const char *help, ...);
/* bounds: ascending upper bounds (seconds, or counts), +Inf is implied. */
metric *metrics_histogram(const char *name, const char *help, const double *bounds, int nbounds,
                          ...);

void metric_add(metric *m, double v);     /* counters and gauges */
void metric_set(metric *m, double v);     /* gauges */
void metric_observe(metric *m, double v); /* histograms */
double metric_value(metric *m);           /* counters and gauges (tests, readiness) */

/* Monotonic clock in seconds, for timing what is observed. */
double metrics_now(void);

/* Shared buckets: latencies in seconds, and batch sizes. */
extern const double METRICS_LATENCY_BUCKETS[];
extern const int METRICS_LATENCY_NBUCKETS;
extern const double METRICS_SIZE_BUCKETS[];
extern const int METRICS_SIZE_NBUCKETS;

/* Writes the whole registry in Prometheus text format (0.0.4). Returns a
 * malloc'd string the caller frees. */
char *metrics_render(void);

/* Readiness is reported by the worker: each named check is ok or not, with
 * a short reason. /readyz answers 200 when every required check is ok, else
 * 503, and lists all checks either way (a check that is not required, such as
 * Redis for a stage that degrades without it, is shown but does not make the
 * worker unready). */
void metrics_set_check(const char *name, bool ok, bool required, const char *why);

/* Liveness: /healthz answers 200 while the worker loop calls
 * metrics_heartbeat at least every `seconds` (set once, at start; 0 or
 * never set: /healthz is always 200), else 503 naming how long it stalled. */
void metrics_set_heartbeat_timeout(int seconds);
void metrics_heartbeat(void);
/* Brackets a blocking Kafka call (begin true, then false): /readyz reports
 * Kafka not ok once it has waited 2 s. */
void metrics_kafka_call(bool begin);

/* Sets the stage label and starts serving on addr ("host:port"; port 0
 * picks a free one). If port_file is set, writes the bound port there once
 * listening. Returns 0, or -1 with err set. addr "off" disables serving. */
int metrics_serve(const char *stage, const char *addr, const char *port_file, char *err,
                  size_t errlen);
void metrics_stop(void);

#endif
