/* wh_config: environment parsing for the webhook receiver. */
#include "wh_config.h"

#include <ctype.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"

static int valid_name(const char *s) {
  if (!*s) return 0;
  for (; *s; s++)
    if (!((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') || *s == '_')) return 0;
  return 1;
}

static void upper(const char *s, char *out, size_t cap) {
  size_t i = 0;
  for (; s[i] && i + 1 < cap; i++) out[i] = (char)toupper((unsigned char)s[i]);
  out[i] = '\0';
}

/* One "name:flavour" entry: the secret is required, the webhook id optional. */
static int load_processor(wh_processor *p, const char *entry, char *err, size_t errlen) {
  const char *colon = strchr(entry, ':');
  const char *fl = colon ? colon + 1 : "stripe";
  size_t nlen = colon ? (size_t)(colon - entry) : strlen(entry);
  if (nlen == 0 || nlen >= sizeof p->name) goto bad;
  memcpy(p->name, entry, nlen);
  p->name[nlen] = '\0';
  if (!valid_name(p->name)) goto bad;
  if (strcmp(fl, "stripe") == 0) p->flavour = WH_STRIPE;
  else if (strcmp(fl, "paypal") == 0) p->flavour = WH_PAYPAL;
  else goto bad;
  char up[64], var[128];
  upper(p->name, up, sizeof up);
  snprintf(var, sizeof var, "PAYSTREAM_WEBHOOK_SECRET_%s", up);
  err[0] = '\0';
  p->secret = cfg_secret(var, NULL, err, errlen);
  if (err[0]) return -1;
  if (!p->secret || !*p->secret) {
    snprintf(err, errlen, "%s (or %s_FILE) must be set: the signing secret for %s", var, var,
             p->name);
    return -1;
  }
  snprintf(var, sizeof var, "PAYSTREAM_WEBHOOK_ID_%s", up);
  const char *id = cfg_env_str(var, NULL);
  p->webhook_id = id ? strdup(id) : NULL;
  p->received = metrics_counter("paystream_webhook_received_total",
                                "Webhook deliveries received in full", "processor", p->name, NULL);
  p->published = metrics_counter("paystream_webhook_published_total",
                                 "Webhook events durable on Kafka and answered 2xx", "processor",
                                 p->name, NULL);
  p->failed = metrics_counter("paystream_webhook_publish_failed_total",
                              "Webhook events Kafka did not acknowledge (answered 503)",
                              "processor", p->name, NULL);
  return 0;
bad:
  snprintf(err, errlen,
           "PAYSTREAM_WEBHOOK_PROCESSORS: entries are name:stripe or name:paypal, names "
           "lower-case letters, digits and _ (got '%s')",
           entry);
  return -1;
}

static int load_processors(wh_config *wc, char *err, size_t errlen) {
  char *list = strdup(cfg_env_str("PAYSTREAM_WEBHOOK_PROCESSORS", "stripe:stripe")), *save;
  if (!list) abort();
  int rc = 0;
  for (char *e = strtok_r(list, ",", &save); e && rc == 0; e = strtok_r(NULL, ",", &save)) {
    while (*e == ' ') e++;
    if (wc->nprocs == WH_MAX_PROCESSORS) {
      snprintf(err, errlen, "PAYSTREAM_WEBHOOK_PROCESSORS: at most %d", WH_MAX_PROCESSORS);
      rc = -1;
    } else if (rc == 0) {
      rc = load_processor(&wc->procs[wc->nprocs], e, err, errlen);
      wc->nprocs++;
      for (int i = 0; rc == 0 && i < wc->nprocs - 1; i++)
        if (strcmp(wc->procs[i].name, wc->procs[wc->nprocs - 1].name) == 0) {
          snprintf(err, errlen, "PAYSTREAM_WEBHOOK_PROCESSORS names %s twice", wc->procs[i].name);
          rc = -1;
        }
    }
  }
  free(list);
  if (rc == 0 && wc->nprocs == 0) {
    snprintf(err, errlen, "PAYSTREAM_WEBHOOK_PROCESSORS names no processor");
    rc = -1;
  }
  return rc;
}

int wh_config_load(wh_config *wc, char *err, size_t errlen) {
  memset(wc, 0, sizeof *wc);
  long long v;
  wc->addr = cfg_env_str("PAYSTREAM_WEBHOOK_ADDR", "0.0.0.0:9410");
  wc->port_file = cfg_env_str("PAYSTREAM_WEBHOOK_PORT_FILE", NULL);
  if (cfg_env_int("PAYSTREAM_WEBHOOK_TOLERANCE_S", 300, 1, 86400, &v, err, errlen)) return -1;
  wc->tolerance_s = v;
  if (cfg_env_int("PAYSTREAM_WEBHOOK_MAX_BODY_BYTES", 65536, 256, 16 << 20, &v, err, errlen))
    return -1;
  wc->max_body = (size_t)v;
  if (cfg_env_int("PAYSTREAM_WEBHOOK_DELIVERY_TIMEOUT_MS", 10000, 100, 300000, &v, err, errlen))
    return -1;
  wc->delivery_timeout_ms = (int)v;
  if (cfg_env_int("PAYSTREAM_WEBHOOK_THREADS", 2, 1, 64, &v, err, errlen)) return -1;
  wc->threads = (int)v;
  if (cfg_env_int("PAYSTREAM_WEBHOOK_CONNECTION_TIMEOUT_S", 10, 1, 3600, &v, err, errlen))
    return -1;
  wc->conn_timeout_s = (int)v;
  if (cfg_env_int("PAYSTREAM_WEBHOOK_MAX_CONNECTIONS", 512, 4, 100000, &v, err, errlen)) return -1;
  wc->max_conns = (int)v;
  return load_processors(wc, err, errlen);
}

const wh_processor *wh_config_find(const wh_config *wc, const char *name) {
  for (int i = 0; i < wc->nprocs; i++)
    if (strcmp(wc->procs[i].name, name) == 0) return &wc->procs[i];
  return NULL;
}

void wh_config_close(wh_config *wc) {
  for (int i = 0; i < wc->nprocs; i++) {
    if (wc->procs[i].secret) OPENSSL_cleanse(wc->procs[i].secret, strlen(wc->procs[i].secret));
    free(wc->procs[i].secret);
    free(wc->procs[i].webhook_id);
  }
  wc->nprocs = 0;
}
