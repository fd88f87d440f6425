/* gen: see gen.h. */
#include "clock.h"
#include "gen.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "event.h"
#include "kafka.h"
#include "pg.h" /* ps_now_ms */

const char *const gen_decline_pms[3] = {"pm_card_chargeDeclined",
                                        "pm_card_chargeDeclinedInsufficientFunds",
                                        "pm_card_chargeDeclinedExpiredCard"};
static const char *currencies[] = {"USD", "EUR", "GBP", "USD", "JPY"};

/* Delivery reports carry no generator (kafka_producer_new sets no opaque),
 * and a process runs one generator: its failures are counted here. */
static long delivery_failures;

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque) {
  (void)rk;
  (void)opaque;
  if (m->err) {
    if (delivery_failures++ == 0)
      fprintf(stderr, "payctl: delivery failed: %s\n", rd_kafka_err2str(m->err));
  } else if (m->_private) {
    ((gen_intent *)m->_private)->partition = m->partition;
  }
}

int gen_open(gen *g, const cfg *c, const char *manifest_path, char *err, size_t errlen) {
  memset(g, 0, sizeof *g);
  g->topic = c->topics.intents;
  if (manifest_path && !(g->manifest = fopen(manifest_path, "w"))) {
    snprintf(err, errlen, "could not write %s", manifest_path);
    return -1;
  }
  g->producer = kafka_producer_new(c, on_delivery, err, errlen);
  if (!g->producer) {
    if (g->manifest) fclose(g->manifest);
    g->manifest = NULL;
    return -2;
  }
  return 0;
}

void gen_flush(gen *g) {
  while (rd_kafka_outq_len(g->producer) > 0) rd_kafka_flush(g->producer, 1000);
  g->failed = delivery_failures;
}

void gen_close(gen *g) {
  if (g->producer) {
    gen_flush(g);
    rd_kafka_destroy(g->producer);
  }
  if (g->manifest) fclose(g->manifest);
  g->producer = NULL;
  g->manifest = NULL;
}

/* Hands one message to the producer, waiting while its queue is full. A
 * message it refuses outright counts as failed. */
static void produce(gen *g, const char *key, const void *val, size_t len, int32_t partition,
                    gen_intent *track) {
  for (;;) {
    rd_kafka_resp_err_t e = rd_kafka_producev(
        g->producer, RD_KAFKA_V_TOPIC(g->topic), RD_KAFKA_V_KEY(key, strlen(key)),
        RD_KAFKA_V_PARTITION(partition), RD_KAFKA_V_OPAQUE(track),
        RD_KAFKA_V_VALUE((void *)val, len), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
        RD_KAFKA_V_END);
    if (!e) break;
    if (e != RD_KAFKA_RESP_ERR__QUEUE_FULL) {
      if (delivery_failures++ == 0)
        fprintf(stderr, "payctl: produce failed: %s\n", rd_kafka_err2str(e));
      return;
    }
    rd_kafka_poll(g->producer, 10);
  }
  rd_kafka_poll(g->producer, 0);
  g->produced++;
}

void gen_record(gen *g, const char *kind, const gen_intent *in, const char *expect,
                const char *code) {
  if (!g->manifest) return;
  json_t *o = json_pack("{s:s,s:s,s:s,s:s,s:I,s:s}", "kind", kind, "merchant", in->merchant,
                        "key", in->key, "currency", in->currency, "amount",
                        (json_int_t)in->amount, "expect", expect);
  if (code) json_object_set_new(o, "code", json_string(code));
  char *s = json_dumps(o, JSON_COMPACT);
  fprintf(g->manifest, "%s\n", s);
  free(s);
  json_decref(o);
}

void gen_publish_event(gen *g, const char *key, const void *val, size_t len) {
  produce(g, key, val, len, RD_KAFKA_PARTITION_UA, NULL);
}

/* Padding: metadata entries of up to 400 bytes (validation allows 500). */
#define PAD_MAX 50
typedef struct padding {
  Payments__V1__PaymentIntent__MetadataEntry e[PAD_MAX], *p[PAD_MAX];
  char v[PAD_MAX][401], k[PAD_MAX][16];
  size_t n;
} padding;

static void pad(padding *pd, long bytes) {
  /* Random letters: padding that compression cannot shrink. */
  static const char letters[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
  pd->n = 0;
  for (long left = bytes; left > 0 && pd->n < PAD_MAX; pd->n++, left -= 400) {
    size_t i = pd->n, n = left > 400 ? 400 : (size_t)left;
    payments__v1__payment_intent__metadata_entry__init(&pd->e[i]);
    snprintf(pd->k[i], sizeof pd->k[i], "pad%zu", i);
    for (size_t k = 0; k < n; k++) pd->v[i][k] = letters[rand() % 62];
    pd->v[i][n] = '\0';
    pd->e[i].key = pd->k[i];
    pd->e[i].value = pd->v[i];
    pd->p[i] = &pd->e[i];
  }
}

void gen_publish_intent(gen *g, const gen_intent *gi, bool omit_amount, int32_t partition,
                        gen_intent *track) {
  ps_money money = PAYMENTS__V1__MONEY__INIT;
  money.amount_minor = gi->amount;
  money.currency = (char *)gi->currency;
  Payments__V1__PaymentMethod pm = PAYMENTS__V1__PAYMENT_METHOD__INIT;
  pm.id = (char *)gi->pm;
  /* One card per customer: the magic method names (pm_card_visa, ...) steer
   * procsim, the fingerprint is what fraud's card velocity counts. */
  char fp[64];
  snprintf(fp, sizeof fp, "fp_%s", gi->customer);
  pm.fingerprint = fp;
  pm.created_at_ms = gi->created_at_ms - 90LL * 86400 * 1000;
  pm.card_country = "US";
  Payments__V1__RequestContext cx = PAYMENTS__V1__REQUEST_CONTEXT__INIT;
  cx.ip = "198.51.100.7";
  cx.country = "US";
  cx.latitude = 40.7;
  cx.longitude = -74.0;
  cx.device_id = "dev_demo";
  cx.email = "customer@example.com";
  ps_intent in = PAYMENTS__V1__PAYMENT_INTENT__INIT;
  in.idempotency_key = (char *)gi->key;
  in.merchant_id = (char *)gi->merchant;
  in.customer_id = (char *)gi->customer;
  in.amount = omit_amount ? NULL : &money;
  in.created_at_ms = gi->created_at_ms;
  in.payment_method = &pm;
  in.context = &cx;
  in.description = "paystream demo order";
  in.kind = (Payments__V1__RequestKind)gi->kind;
  static padding pd; /* ~25 KiB: not on the stack */
  pad(&pd, g->padding_bytes);
  in.metadata = pd.p;
  in.n_metadata = pd.n;
  ps_event ev = PAYMENTS__V1__PAYMENT_EVENT__INIT;
  ev.schema_version = PS_SCHEMA_VERSION;
  ev.intent = &in;
  ev.published_at_ms = g->stamp_ms ? g->stamp_ms : ps_now_ms();
  size_t len;
  uint8_t *buf = event_pack(&ev, &len);
  produce(g, gi->key, buf, len, partition, track);
  free(buf);
}

void gen_base(gen_intent *in, const gen_mix *m, long i, unsigned *rs) {
  memset(in, 0, sizeof *in);
  snprintf(in->key, sizeof in->key, "%s-%06ld", m->run, i);
  snprintf(in->merchant, sizeof in->merchant, "m_%ld", i % 3 + 1);
  snprintf(in->customer, sizeof in->customer, "cus_%s_%ld", m->run,
           (long)(rand_r(rs) % (unsigned)m->customers));
  snprintf(in->currency, sizeof in->currency, "%s", currencies[rand_r(rs) % 5]);
  in->amount = 100 + rand_r(rs) % 50000;
  snprintf(in->pm, sizeof in->pm, "%s", rand_r(rs) % 2 ? "pm_card_visa" : "pm_card_mastercard");
  in->created_at_ms = ps_now_ms() - rand_r(rs) % 60000;
}

void gen_publish_invalid(gen *g, const gen_mix *m, long i) {
  gen_intent in;
  unsigned rs = m->seed + 7 * (unsigned)i;
  gen_base(&in, m, 900000 + i, &rs);
  const char *code = NULL;
  bool omit_amount = false;
  switch (i % 8) {
  case 0: in.key[0] = '\0'; code = "idempotency_key_invalid"; break;
  case 1: memset(in.key, 'k', 300); in.key[300] = '\0'; code = "idempotency_key_invalid"; break;
  case 2: in.amount = 0; code = "amount_invalid"; break;
  case 3: in.amount = -500; code = "amount_invalid"; break;
  case 4: snprintf(in.currency, sizeof in.currency, "XXX"); code = "currency_invalid"; break;
  case 5: omit_amount = true; code = "amount_missing"; break;
  case 6: in.amount = INT64_MAX; code = "amount_too_large"; break;
  default:
    snprintf(in.merchant, sizeof in.merchant, "bad merchant!");
    code = "merchant_id_invalid";
  }
  gen_publish_intent(g, &in, omit_amount, RD_KAFKA_PARTITION_UA, NULL);
  gen_record(g, "invalid", &in, "rejected", code);
}

void gen_publish_garbage(gen *g, const gen_mix *m, long i) {
  unsigned rs = m->seed + 13 * (unsigned)i;
  uint8_t buf[64];
  buf[0] = 0x07; /* field 0, wire type 7: never a valid protobuf */
  for (size_t k = 1; k < sizeof buf; k++) buf[k] = (uint8_t)rand_r(&rs);
  gen_intent in = {0};
  snprintf(in.key, sizeof in.key, "garbage-%s-%ld", m->run, i);
  produce(g, in.key, buf, sizeof buf, RD_KAFKA_PARTITION_UA, NULL);
  gen_record(g, "garbage", &in, "dlq", "undecodable");
}

/* Damages a packed message in place (len may shrink or grow by up to 32;
 * out has room for len + 64). */
static void damage(uint8_t *out, size_t *len, unsigned *rs) {
  size_t n = *len;
  switch (rand_r(rs) % 4) {
  case 0: /* flip a few bits */
    for (int k = 0, c = 1 + rand_r(rs) % 4; k < c; k++)
      out[rand_r(rs) % n] ^= (uint8_t)(1u << (rand_r(rs) % 8));
    break;
  case 1: /* cut it short */
    *len = (size_t)rand_r(rs) % n;
    break;
  case 2: /* overwrite a run with junk */
    for (size_t k = (size_t)rand_r(rs) % n, e = k + 1 + (size_t)rand_r(rs) % 8; k < e && k < n;
         k++)
      out[k] = (uint8_t)rand_r(rs);
    break;
  default: /* append junk */
    for (int k = 0, c = 1 + rand_r(rs) % 32; k < c; k++) out[(*len)++] = (uint8_t)rand_r(rs);
  }
}

/* A valid intent, packed, then damaged. Each keeps its own Kafka key so
 * the DLQ and the logs can name it. */
void gen_publish_fuzz(gen *g, const gen_mix *m, long i) {
  unsigned rs = m->seed * 31u + (unsigned)i;
  gen_intent gi;
  gen_base(&gi, m, 800000 + i, &rs);
  ps_money money = PAYMENTS__V1__MONEY__INIT;
  money.amount_minor = gi.amount;
  money.currency = gi.currency;
  Payments__V1__PaymentMethod pm = PAYMENTS__V1__PAYMENT_METHOD__INIT;
  pm.id = gi.pm;
  ps_intent in = PAYMENTS__V1__PAYMENT_INTENT__INIT;
  in.idempotency_key = gi.key;
  in.merchant_id = gi.merchant;
  in.customer_id = gi.customer;
  in.amount = &money;
  in.created_at_ms = gi.created_at_ms;
  in.payment_method = &pm;
  ps_event ev = PAYMENTS__V1__PAYMENT_EVENT__INIT;
  ev.schema_version = PS_SCHEMA_VERSION;
  ev.intent = &in;
  size_t len;
  uint8_t *buf = event_pack(&ev, &len);
  uint8_t *out = malloc(len + 64);
  if (!out) abort();
  memcpy(out, buf, len);
  damage(out, &len, &rs);
  char key[64];
  snprintf(key, sizeof key, "fuzz-%s-%ld", m->run, i);
  produce(g, key, out, len, RD_KAFKA_PARTITION_UA, NULL);
  free(buf);
  free(out);
  snprintf(gi.key, sizeof gi.key, "%s", key);
  gen_record(g, "fuzz", &gi, "any", NULL);
}
