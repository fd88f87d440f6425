/* forge-charged: a test tool that publishes a hand-made payments.charged
 * event (a forged or hand-redriven copy: any amount, currency, processor
 * and fee) for a payment, as a hostile or careless producer would. The
 * ledger must post only what Postgres recorded.
 *   forge-charged PAYMENT_ID MERCHANT KEY AMOUNT CURRENCY PROCESSOR FEE CHARGE_ID
 * Configuration (broker, topic names) comes from the PAYSTREAM_* variables. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "config.h"
#include "event.h"
#include "kafka.h"
#include "pg.h"

static int delivery_failed;

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque) {
  (void)rk;
  (void)opaque;
  if (m->err) delivery_failed = 1;
}

int main(int argc, char **argv) {
  if (argc != 9) {
    fprintf(stderr, "usage: forge-charged PAYMENT_ID MERCHANT KEY AMOUNT CURRENCY PROCESSOR FEE "
                    "CHARGE_ID\n");
    return 2;
  }
  cfg c;
  char err[512];
  if (cfg_load(&c, "forge", err, sizeof err)) {
    fprintf(stderr, "forge-charged: %s\n", err);
    return 1;
  }
  Payments__V1__Money money = PAYMENTS__V1__MONEY__INIT;
  money.amount_minor = strtoll(argv[4], NULL, 10);
  money.currency = argv[5];
  Payments__V1__PaymentIntent in = PAYMENTS__V1__PAYMENT_INTENT__INIT;
  in.merchant_id = argv[2];
  in.idempotency_key = argv[3];
  in.customer_id = "forged";
  in.amount = &money;
  Payments__V1__ChargeResult ch = PAYMENTS__V1__CHARGE_RESULT__INIT;
  ch.status = PAYMENTS__V1__CHARGE_STATUS__CHARGE_STATUS_SUCCEEDED;
  ch.processor = argv[6];
  ch.fee_minor = strtoll(argv[7], NULL, 10);
  ch.processor_charge_id = argv[8];
  ps_event ev = PAYMENTS__V1__PAYMENT_EVENT__INIT;
  ev.schema_version = PS_SCHEMA_VERSION;
  ev.intent = &in;
  ev.payment_id = argv[1];
  ev.charge = &ch;
  ev.published_at_ms = ps_now_ms();

  rd_kafka_t *rk = kafka_producer_new(&c, on_delivery, err, sizeof err);
  if (!rk) {
    fprintf(stderr, "forge-charged: %s\n", err);
    cfg_close(&c);
    return 1;
  }
  size_t len;
  uint8_t *buf = event_pack(&ev, &len);
  rd_kafka_resp_err_t e = rd_kafka_producev(
      rk, RD_KAFKA_V_TOPIC(c.topics.charged), RD_KAFKA_V_KEY(in.idempotency_key,
                                                             strlen(in.idempotency_key)),
      RD_KAFKA_V_VALUE(buf, len), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END);
  free(buf);
  if (!e) rd_kafka_flush(rk, 10000);
  int rc = e || delivery_failed || rd_kafka_outq_len(rk) > 0;
  if (rc) fprintf(stderr, "forge-charged: could not publish to %s\n", c.topics.charged);
  rd_kafka_destroy(rk);
  cfg_close(&c);
  return rc;
}
