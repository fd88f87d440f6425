/* config: environment parsing with range checks. */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

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

char *cfg_secret(const char *name, const char *def, char *err, size_t errlen) {
  char fname[128];
  snprintf(fname, sizeof fname, "%s_FILE", name);
  const char *path = cfg_env_str(fname, NULL);
  if (!path) {
    const char *v = cfg_env_str(name, def);
    return v ? strdup(v) : NULL;
  }
  FILE *f = fopen(path, "r");
  if (!f) {
    snprintf(err, errlen, "%s: could not read %s", fname, path);
    return NULL;
  }
  char buf[4096] = "";
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  fclose(f);
  buf[n] = '\0';
  if (n && buf[n - 1] == '\n') buf[--n] = '\0';
  if (n && buf[n - 1] == '\r') buf[--n] = '\0';
  return strdup(buf);
}

void cfg_close(cfg *c) {
  for (size_t i = 0; i < sizeof c->owned / sizeof c->owned[0]; i++) {
    free(c->owned[i]);
    c->owned[i] = NULL;
  }
}

/* Reads a secret into c->owned[slot]; NULL when unset and def is NULL. */
static int load_secret(cfg *c, int slot, const char **out, const char *name, const char *def,
                       char *err, size_t errlen) {
  err[0] = '\0';
  c->owned[slot] = cfg_secret(name, def, err, errlen);
  *out = c->owned[slot];
  return err[0] ? -1 : 0;
}

int cfg_load(cfg *c, const char *stage, char *err, size_t errlen) {
  long long v;
  memset(c, 0, sizeof *c);
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
  c->topics.processor_events =
      cfg_env_str("PAYSTREAM_TOPIC_PROCESSOR_EVENTS", "payments.processor-events");
  if (load_secret(c, 0, &c->pg_dsn, "PAYSTREAM_PG_DSN",
                  "host=127.0.0.1 port=5432 dbname=paystream", err, errlen) ||
      load_secret(c, 1, &c->redis_password, "PAYSTREAM_REDIS_PASSWORD", NULL, err, errlen))
    return -1;
  c->redis_host = cfg_env_str("PAYSTREAM_REDIS_HOST", "127.0.0.1");
  c->redis_user = cfg_env_str("PAYSTREAM_REDIS_USER", NULL);
  c->log_level = cfg_env_str("PAYSTREAM_LOG_LEVEL", "info");
  c->metrics_addr = cfg_env_str("PAYSTREAM_METRICS_ADDR", "0.0.0.0:9400");
  c->metrics_port_file = cfg_env_str("PAYSTREAM_METRICS_PORT_FILE", NULL);

  if (cfg_env_int("PAYSTREAM_SESSION_TIMEOUT_MS", 6000, 1000, 300000, &v, err, errlen)) return -1;
  c->session_timeout_ms = (int)v;
  if (cfg_env_int("PAYSTREAM_BATCH_MAX", 500, 1, 100000, &v, err, errlen)) return -1;
  c->batch_max = (int)v;
  if (cfg_env_int("PAYSTREAM_BATCH_WAIT_MS", 0, 0, 60000, &v, err, errlen)) return -1;
  c->batch_wait_ms = (int)v;
  if (cfg_env_int("PAYSTREAM_MAX_MESSAGE_BYTES", 262144, 64, 100 << 20, &v, err, errlen)) return -1;
  c->max_message_bytes = (int)v;
  /* 0 behind a pooler that does not keep prepared statements across
   * transactions (PgBouncer in transaction mode before 1.21). */
  if (cfg_env_int("PAYSTREAM_PG_PREPARE", 1, 0, 1, &v, err, errlen)) return -1;
  c->pg_prepare = (int)v;
  /* Anything but serializable is the default, read committed. */
  c->pg_serializable = strcmp(cfg_env_str("PAYSTREAM_PG_ISOLATION", ""), "serializable") == 0;
  c->kafka_properties = cfg_env_str("PAYSTREAM_KAFKA_PROPERTIES", NULL);
  c->kafka_properties_file = cfg_env_str("PAYSTREAM_KAFKA_PROPERTIES_FILE", NULL);
  if (cfg_env_int("PAYSTREAM_REDIS_PORT", 6379, 1, 65535, &v, err, errlen)) return -1;
  c->redis_port = (int)v;
  if (cfg_env_int("PAYSTREAM_REDIS_TIMEOUT_MS", 200, 1, 60000, &v, err, errlen)) return -1;
  c->redis_timeout_ms = (int)v;
  if (cfg_env_int("PAYSTREAM_STATS_INTERVAL_MS", 5000, 100, 3600000, &v, err, errlen)) return -1;
  c->stats_interval_ms = (int)v;
  if (cfg_env_int("PAYSTREAM_HEARTBEAT_TIMEOUT_S", 60, 1, 86400, &v, err, errlen)) return -1;
  c->heartbeat_timeout_s = (int)v;
  if (cfg_env_int("PAYSTREAM_EXACTLY_ONCE", 0, 0, 1, &v, err, errlen)) return -1;
  c->exactly_once = (int)v;
  return 0;
}

int cfg_transactional_id(cfg *c, char *err, size_t errlen) {
  /* PREFIX-STAGE-INSTANCE: stable per instance, so a restarted instance
   * fences its zombie (Kafka ACLs grant the prefix). The instance id
   * defaults to the host name (a StatefulSet's pod name). */
  char host[128] = "";
  if (gethostname(host, sizeof host - 1)) host[0] = '\0';
  const char *prefix = cfg_env_str("PAYSTREAM_TXN_PREFIX", "paystream");
  const char *inst = cfg_env_str("PAYSTREAM_INSTANCE_ID", host[0] ? host : "0");
  int w = snprintf(c->transactional_id, sizeof c->transactional_id, "%s-%s-%s", prefix, c->stage,
                   inst);
  if (w < 0 || (size_t)w >= sizeof c->transactional_id) {
    c->transactional_id[0] = '\0';
    snprintf(err, errlen, "PAYSTREAM_TXN_PREFIX, PAYSTREAM_INSTANCE_ID: transactional.id too long");
    return -1;
  }
  return 0;
}
