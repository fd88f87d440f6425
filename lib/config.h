/* config: every setting comes from the environment (PAYSTREAM_*), with
 * defaults that point at the local stack (deploy/local). A bad value is a
 * start-up error naming the variable; the README lists every variable. */
#ifndef PS_CONFIG_H
#define PS_CONFIG_H

#include <stddef.h>
#include <stdint.h>

typedef struct cfg_topics {
  const char *intents, *requests, *fraud_scored, *charged, *ledgered, *outcomes, *dlq;
  const char *processor_events; /* webhook receiver's output (services/webhook) */
} cfg_topics;

typedef struct cfg {
  const char *stage;          /* ingest | fraud | charge | ledger | tool name */
  const char *kafka_bootstrap;
  const char *group_id;       /* consumer group; defaults to the stage name */
  int session_timeout_ms;
  int batch_max;              /* messages per batch */
  int batch_wait_ms;          /* how long a batch may wait to fill */
  int max_message_bytes;      /* larger inputs are dead-lettered unread */
  cfg_topics topics;
  const char *pg_dsn;         /* may hold a password: never log it */
  const char *redis_host;
  const char *redis_user;     /* Redis 6+ ACL user, or NULL */
  const char *redis_password; /* secret: never logged; NULL = no AUTH */
  int redis_port;
  int redis_timeout_ms;
  int pg_prepare;             /* 1: prepare pipeline statements once per connection */
  int pg_serializable;        /* 1: PAYSTREAM_PG_ISOLATION=serializable (benchmarks) */
  const char *kafka_properties;      /* "k=v;k=v": librdkafka settings, never secrets */
  const char *kafka_properties_file; /* k=v lines: where Kafka secrets belong */
  const char *log_level;
  const char *metrics_addr;      /* host:port for /metrics /healthz /readyz, or off */
  const char *metrics_port_file; /* written with the bound port (port 0: any free one) */
  int stats_interval_ms;         /* librdkafka statistics: consumer lag, broker state */
  int exactly_once;              /* 1: workers use Kafka transactions (PAYSTREAM_EXACTLY_ONCE) */
  char transactional_id[256];    /* set by cfg_transactional_id (workers only): the
                                    producer is transactional when it is not empty */
  int heartbeat_timeout_s;       /* /healthz fails when the loop has not turned for this long */
  char *owned[4];                /* secrets read from files, freed by cfg_close */
} cfg;

/* Fills c from the environment. Returns 0, or -1 with a message naming the
 * offending variable in err. */
int cfg_load(cfg *c, const char *stage, char *err, size_t errlen);
void cfg_close(cfg *c);
/* Sets c->transactional_id to ${PAYSTREAM_TXN_PREFIX:-paystream}-STAGE-
 * ${PAYSTREAM_INSTANCE_ID:-hostname}. Returns 0, or -1 with err. */
int cfg_transactional_id(cfg *c, char *err, size_t errlen);

/* Reads a secret from NAME, or from the file named by NAME_FILE (the way
 * container orchestrators mount secrets; one trailing newline is dropped).
 * Returns a malloc'd string, def's copy when neither is set (NULL if def is
 * NULL), or NULL with err set when the file cannot be read. */
char *cfg_secret(const char *name, const char *def, char *err, size_t errlen);

/* Reads an optional variable; returns def when unset or empty. */
const char *cfg_env_str(const char *name, const char *def);
/* Reads an integer in [min, max]; returns 0, or -1 with err set. */
int cfg_env_int(const char *name, long long def, long long min, long long max, long long *out,
                char *err, size_t errlen);
/* Reads a decimal number in [min, max] (scores and weights, never money). */
int cfg_env_double(const char *name, double def, double min, double max, double *out, char *err,
                   size_t errlen);

#endif
