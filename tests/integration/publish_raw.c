/* publish-raw: a test tool that publishes arbitrary bytes to a topic, as a
 * broken or hostile producer would, and prints where they landed.
 *   publish-raw TOPIC KEY HEX   -> prints "partition offset" once acknowledged
 * Configuration (broker) comes from the PAYSTREAM_* variables. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "hex.h"
#include "kafka.h"

static rd_kafka_resp_err_t result = RD_KAFKA_RESP_ERR__IN_PROGRESS;
static int32_t partition;
static int64_t offset;

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque) {
  (void)rk, (void)opaque;
  result = m->err;
  partition = m->partition;
  offset = m->offset;
}

int main(int argc, char **argv) {
  if (argc != 4) {
    fprintf(stderr, "usage: publish-raw TOPIC KEY HEX\n");
    return 2;
  }
  size_t len;
  uint8_t *val = hex_decode(argv[3], &len);
  if (!val) {
    fprintf(stderr, "publish-raw: HEX is not hex\n");
    return 2;
  }
  cfg c;
  char err[512];
  if (cfg_load(&c, "publish-raw", err, sizeof err)) {
    fprintf(stderr, "publish-raw: %s\n", err);
    free(val);
    return 1;
  }
  rd_kafka_t *rk = kafka_producer_new(&c, on_delivery, err, sizeof err);
  int rc = 1;
  if (!rk) {
    fprintf(stderr, "publish-raw: %s\n", err);
  } else if (rd_kafka_producev(rk, RD_KAFKA_V_TOPIC(argv[1]),
                               RD_KAFKA_V_KEY(argv[2], strlen(argv[2])),
                               RD_KAFKA_V_VALUE(val, len), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                               RD_KAFKA_V_END)) {
    fprintf(stderr, "publish-raw: could not produce\n");
  } else {
    rd_kafka_flush(rk, 30000);
    if (result == RD_KAFKA_RESP_ERR_NO_ERROR) {
      printf("%d %lld\n", (int)partition, (long long)offset);
      rc = 0;
    } else {
      fprintf(stderr, "publish-raw: not delivered: %s\n", rd_kafka_err2str(result));
    }
  }
  if (rk) rd_kafka_destroy(rk);
  free(val);
  cfg_close(&c);
  return rc;
}
