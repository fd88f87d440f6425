/* wh_config: the webhook receiver's settings, from the environment like
 * every worker's (lib/config.c reads the shared ones: Kafka, logging,
 * metrics). The processors it accepts, each with its flavour and signing
 * secret, are named in PAYSTREAM_WEBHOOK_PROCESSORS; secrets come from
 * PAYSTREAM_WEBHOOK_SECRET_<NAME> or its _FILE and are never logged. */
#ifndef WEBHOOK_CONFIG_H
#define WEBHOOK_CONFIG_H

#include <stddef.h>
#include <stdint.h>

#include "metrics.h"
#include "normalise.h"

#define WH_MAX_PROCESSORS 8

typedef struct wh_processor {
  char name[64];      /* /webhooks/<name>; lower-case letters, digits, _ */
  wh_flavour flavour;
  char *secret;       /* secret: never logged */
  char *webhook_id;   /* paypal: PAYSTREAM_WEBHOOK_ID_<NAME>, the only accepted PayPal-Webhook-Id, or NULL */
  metric *received, *published, *failed;
} wh_processor;

typedef struct wh_config {
  wh_processor procs[WH_MAX_PROCESSORS];
  int nprocs;
  const char *addr;      /* PAYSTREAM_WEBHOOK_ADDR host:port (port 0: any free one) */
  const char *port_file; /* PAYSTREAM_WEBHOOK_PORT_FILE: written with the bound port */
  int64_t tolerance_s;   /* PAYSTREAM_WEBHOOK_TOLERANCE_S */
  size_t max_body;       /* PAYSTREAM_WEBHOOK_MAX_BODY_BYTES */
  int delivery_timeout_ms; /* PAYSTREAM_WEBHOOK_DELIVERY_TIMEOUT_MS */
  int threads;           /* PAYSTREAM_WEBHOOK_THREADS */
  int conn_timeout_s;    /* PAYSTREAM_WEBHOOK_CONNECTION_TIMEOUT_S: idle client dropped */
  int max_conns;         /* PAYSTREAM_WEBHOOK_MAX_CONNECTIONS */
} wh_config;

/* Fills wc from the environment. Returns 0, or -1 with err naming the
 * variable (never a secret's value). */
int wh_config_load(wh_config *wc, char *err, size_t errlen);

/* The processor called name, or NULL. */
const wh_processor *wh_config_find(const wh_config *wc, const char *name);

/* Wipes and frees the secrets. */
void wh_config_close(wh_config *wc);

#endif
