/* config: environment parsing with range checks. */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

const char *cfg_env_str(const char *name, const char *def) {
  const char *v = getenv(name);
  return (v && *v) ? v : def;
}

int cfg_env_int(const char *name, long long def, long long min, long long max, long long *out,
                char *err, size_t errlen) {
  const char *v = getenv(name);
  if (!v || !*v) {
    *out = def;
    return 0;
  }
  char *end;
  errno = 0;
  long long x = strtoll(v, &end, 10);
  if (errno || *end || x < min || x > max) {
    snprintf(err, errlen, "%s must be an integer in [%lld, %lld], got '%s'", name, min, max, v);
    return -1;
  }
  *out = x;
  return 0;
}

int cfg_env_double(const char *name, double def, double min, double max, double *out, char *err,
                   size_t errlen) {
  const char *v = getenv(name);
  if (!v || !*v) {
    *out = def;
    return 0;
  }
  char *end;
  errno = 0;
  double x = strtod(v, &end);
  if (errno || *end || !(x >= min && x <= max)) {
    snprintf(err, errlen, "%s must be a number in [%g, %g], got '%s'", name, min, max, v);
    return -1;
  }
  *out = x;
  return 0;
}

int cfg_load(cfg *c, const char *stage, char *err, size_t errlen) {
  long long v;
  c->stage = stage;
  c->kafka_bootstrap = cfg_env_str("PAYSTREAM_KAFKA_BOOTSTRAP", "127.0.0.1:9092");
  c->group_id = cfg_env_str("PAYSTREAM_GROUP_ID", stage);
  c->topics.intents = cfg_env_str("PAYSTREAM_TOPIC_INTENTS", "payments.intents");
  c->topics.requests = cfg_env_str("PAYSTREAM_TOPIC_REQUESTS", "payments.requests");
  c->topics.fraud_scored = cfg_env_str("PAYSTREAM_TOPIC_FRAUD_SCORED", "payments.fraud-scored");
  c->topics.charged = cfg_env_str("PAYSTREAM_TOPIC_CHARGED", "payments.charged");
  c->topics.ledgered = cfg_env_str("PAYSTREAM_TOPIC_LEDGERED", "payments.ledgered");
  c->topics.outcomes = cfg_env_str("PAYSTREAM_TOPIC_OUTCOMES", "payments.outcomes");
  c->topics.dlq = cfg_env_str("PAYSTREAM_TOPIC_DLQ", "payments.dlq");
  c->pg_dsn = cfg_env_str("PAYSTREAM_PG_DSN", "host=127.0.0.1 port=5432 dbname=paystream");
  c->redis_host = cfg_env_str("PAYSTREAM_REDIS_HOST", "127.0.0.1");
  c->log_level = cfg_env_str("PAYSTREAM_LOG_LEVEL", "info");
  c->metrics_addr = cfg_env_str("PAYSTREAM_METRICS_ADDR", "0.0.0.0:9400");
  c->metrics_port_file = cfg_env_str("PAYSTREAM_METRICS_PORT_FILE", NULL);

  if (cfg_env_int("PAYSTREAM_SESSION_TIMEOUT_MS", 6000, 1000, 300000, &v, err, errlen)) return -1;
  c->session_timeout_ms = (int)v;
  if (cfg_env_int("PAYSTREAM_BATCH_MAX", 500, 1, 100000, &v, err, errlen)) return -1;
  c->batch_max = (int)v;
  if (cfg_env_int("PAYSTREAM_BATCH_WAIT_MS", 20, 0, 60000, &v, err, errlen)) return -1;
  c->batch_wait_ms = (int)v;
  if (cfg_env_int("PAYSTREAM_MAX_MESSAGE_BYTES", 262144, 64, 100 << 20, &v, err, errlen)) return -1;
  c->max_message_bytes = (int)v;
  if (cfg_env_int("PAYSTREAM_REDIS_PORT", 6379, 1, 65535, &v, err, errlen)) return -1;
  c->redis_port = (int)v;
  if (cfg_env_int("PAYSTREAM_REDIS_TIMEOUT_MS", 200, 1, 60000, &v, err, errlen)) return -1;
  c->redis_timeout_ms = (int)v;
  if (cfg_env_int("PAYSTREAM_STATS_INTERVAL_MS", 5000, 100, 3600000, &v, err, errlen)) return -1;
  c->stats_interval_ms = (int)v;
  return 0;
}
