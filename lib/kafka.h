/* kafka: librdkafka handles configured the way every paystream process
 * needs them — producers that compress and hash keys like Java clients,
 * consumers that commit by hand and never skip an offset silently. */
#ifndef PS_KAFKA_H
#define PS_KAFKA_H

#include <librdkafka/rdkafka.h>
#include <stdbool.h>
#include <stddef.h>

#include "config.h"

/* A producer with delivery reports (dr_msg_cb may be NULL). */
rd_kafka_t *kafka_producer_new(const cfg *c, void (*dr_msg_cb)(rd_kafka_t *,
                                                               const rd_kafka_message_t *, void *),
                               char *err, size_t errlen);

/* Called after partitions are assigned, and before they are revoked (the
 * caller still owns them and may commit). */
typedef void (*kafka_rebalance_fn)(void *opaque, bool assigned,
                                   const rd_kafka_topic_partition_list_t *parts);

/* A group consumer (group = c->group_id) subscribed to topic. Offsets are
 * committed only by the caller; a partition with no committed offset starts
 * at the beginning; an out-of-range offset is an error, never a jump.
 * on_rebalance may be NULL. One per process. */
rd_kafka_t *kafka_consumer_new(const cfg *c, const char *topic, kafka_rebalance_fn on_rebalance,
                               void *opaque, char *err, size_t errlen);

/* rd_kafka_committed for parts, asked in slices of at most 1 s for up to
 * timeout_ms in all, stamping the loop's heartbeat (metrics_heartbeat)
 * before each: the group coordinator may take long to answer (a broker
 * just restarted, loading its offsets), and the caller is the worker's
 * loop (a rebalance runs inside its poll), whose heartbeat /healthz judges.
 * A slice that times out is asked again; a late answer to it is dropped by
 * librdkafka. Returns the last slice's error, or 0 with parts filled in. */
rd_kafka_resp_err_t kafka_committed(rd_kafka_t *rk, rd_kafka_topic_partition_list_t *parts,
                                    int timeout_ms);

/* Applies c->kafka_properties (PAYSTREAM_KAFKA_PROPERTIES, "k=v;k=v",
 * e.g. security.protocol, sasl.mechanism), then the key=value lines of
 * c->kafka_properties_file (PAYSTREAM_KAFKA_PROPERTIES_FILE, '#' comments),
 * to conf. Secrets belong in the file: a value may hold any character
 * there, while the variable is split on ';'. Returns 0, or -1 with err
 * naming the source and the key; values are never echoed, nor librdkafka's
 * message about a secret-looking key. */
int kafka_apply_properties(const cfg *c, rd_kafka_conf_t *conf, char *err, size_t errlen);

/* The same for a caller without a loaded cfg (payctl's ad-hoc handles):
 * reads the two variables through config. */
int kafka_apply_extra(rd_kafka_conf_t *conf, char *err, size_t errlen);

#endif
