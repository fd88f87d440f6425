/* kafka_util: the Kafka handles payctl's commands share — a consumer that
 * never commits on its own, a topic's partition count, and joining a
 * consumer group to act as one of its members (replay, dlq redrive). */
#ifndef PAYCTL_KAFKA_UTIL_H
#define PAYCTL_KAFKA_UTIL_H

#include <librdkafka/rdkafka.h>
#include <stdbool.h>

#include "config.h"

/* A consumer handle in group with auto-commit off, optionally reporting
 * the end of each partition. Returns NULL (error printed) on failure. */
rd_kafka_t *kutil_consumer(const cfg *c, const char *group, bool partition_eof);

/* A topic's partition count; -1 if the broker does not know the topic, -2
 * if the broker did not answer. */
int kutil_partition_count(rd_kafka_t *rk, const char *topic);

/* Joins rk's group subscribed to topic and waits up to timeout_s for the
 * assignment. Returns the assigned list (caller destroys) or NULL. */
rd_kafka_topic_partition_list_t *kutil_join_group(rd_kafka_t *rk, const char *topic,
                                                  int timeout_s);

/* Where a stage's input comes from: its topic, or NULL for no such stage. */
const char *kutil_stage_topic(const cfg *c, const char *stage);

#endif
