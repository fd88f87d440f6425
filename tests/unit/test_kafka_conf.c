/* Unit tests for the producer every worker and payctl use (lib/kafka.c):
 * the settings that keep a delivered message written hold whatever an
 * operator puts in PAYSTREAM_KAFKA_PROPERTIES. No broker is needed:
 * rd_kafka_new does not connect before the first request. */
#include <criterion/criterion.h>
#include <librdkafka/rdkafka.h>
#include <string.h>

#include "config.h"
#include "kafka.h"

static void get(rd_kafka_t *rk, const char *name, char *out, size_t cap) {
  size_t n = cap;
  cr_assert_eq(rd_kafka_conf_get(rd_kafka_conf(rk), name, out, &n), RD_KAFKA_CONF_OK, "%s", name);
}

static rd_kafka_t *producer(const char *properties) {
  cfg c;
  memset(&c, 0, sizeof c);
  c.stage = "test";
  c.kafka_bootstrap = "127.0.0.1:1";
  c.kafka_properties = properties;
  char err[512] = "";
  rd_kafka_t *rk = kafka_producer_new(&c, NULL, err, sizeof err);
  cr_assert_not_null(rk, "%s", err);
  return rk;
}

/* librdkafka 2.0.2 loses a message whose request failed NOT_LEADER while a
 * later request in flight succeeded (lib/kafka.c): one in flight. */
Test(kafka_conf, one_request_in_flight_idempotent_acks_all) {
  rd_kafka_t *rk = producer(NULL);
  char v[64];
  get(rk, "max.in.flight.requests.per.connection", v, sizeof v);
  cr_assert_str_eq(v, "1");
  get(rk, "enable.idempotence", v, sizeof v);
  cr_assert_str_eq(v, "true");
  get(rk, "acks", v, sizeof v);
  cr_assert_str_eq(v, "-1");
  rd_kafka_destroy(rk);
}

Test(kafka_conf, operator_properties_cannot_undo_them) {
  rd_kafka_t *rk = producer("max.in.flight.requests.per.connection=5;acks=1;linger.ms=20");
  char v[64];
  get(rk, "max.in.flight.requests.per.connection", v, sizeof v);
  cr_assert_str_eq(v, "1");
  get(rk, "acks", v, sizeof v);
  cr_assert_str_eq(v, "-1");
  rd_kafka_destroy(rk);
}
