/* fraud_history: the fraud stage's Redis state, read and written in one
 * pipelined round trip per batch. */
#include "fraud_history.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "rules.h"

/* The values a payment is matched against blocklists on (NULL: absent). */
static const char *blocklist_value(const ps_intent *in, blocklist_kind k) {
  const char *v = NULL;
  switch (k) {
  case BLOCKLIST_CARD: v = in->payment_method ? in->payment_method->fingerprint : NULL; break;
  case BLOCKLIST_IP: v = in->context ? in->context->ip : NULL; break;
  case BLOCKLIST_EMAIL: v = in->context ? in->context->email : NULL; break;
  case BLOCKLIST_DEVICE: v = in->context ? in->context->device_id : NULL; break;
  default: break;
  }
  return v && *v ? v : NULL;
}

/* Per payment: customer, card and device histories (ZADD,
 * ZREVRANGEBYSCORE, trim, expire each), the merchants that saw the card
 * (the same), blocklists. */
#define SIGNAL_CMDS (16 + BLOCKLIST_KINDS)
#define ARG_LEN 512

/* One history window in Redis: a sorted set scored by event time. */
typedef struct window {
  char key[240], member[ARG_LEN], min[24], trim[24], ttl[24];
} window;

typedef struct sigbuf {
  char at[24], limit[24];
  window cust, card, device, merchants;
  char val[BLOCKLIST_KINDS][256];
  int n_cust, n_card, n_device, n_merchants; /* where their history reads are, or -1 */
  bool has_card, has_device;
  int bl[BLOCKLIST_KINDS];
} sigbuf;

/* History is trimmed below (the earlier of the event's time and the
 * worker's clock) minus the window. Event time alone would let one payment
 * dated far in the future empty the key of everything real; bounded by the
 * clock, a trim never removes what a payment dated now or later can read.
 * Features still use event time only: the clock decides what is deleted,
 * never what is counted. */
static int64_t trim_bound(int64_t t) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  int64_t now = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
  return t < now ? t : now;
}

/* A batch's Redis work is queued in three passes over its payments: every
 * payment's adds, then every read, then every trim and expiry. So each
 * payment sees every other payment of the batch that is not later than it
 * whatever their order in the batch (a retried or replayed batch scores
 * the same in any order), and no trim runs before a read it could cut. */
typedef enum pass { PASS_ADD, PASS_READ, PASS_TRIM } pass;

/* Queues this pass's commands for a window of span_ms ending at this
 * payment's time. Add: w->member (the same member twice is a no-op: a
 * retry or replay counts once; gt: its time only moves forward). Read: the
 * newest HIST_MAX + 1 up to this payment's own time (returns the read's
 * index). Trim what fell out (trim_bound), expire the key after ttl_ms. */
static int queue_window(pass ps, window *w, const char *at, int64_t t, int64_t span_ms,
                        int64_t ttl_ms, bool withscores, bool gt, const char *limit, rds_cmd *cmds,
                        size_t *ncmd) {
  snprintf(w->min, sizeof w->min, "%lld", (long long)(t - span_ms));
  snprintf(w->trim, sizeof w->trim, "(%lld", (long long)(trim_bound(t) - span_ms));
  snprintf(w->ttl, sizeof w->ttl, "%lld", (long long)ttl_ms);
  const char *zadd[] = {"ZADD", w->key, at, w->member};
  const char *zadd_gt[] = {"ZADD", w->key, "GT", at, w->member};
  const char *range[] = {"ZREVRANGEBYSCORE", w->key, at, w->min, "LIMIT", "0", limit, "WITHSCORES"};
  const char *trim[] = {"ZREMRANGEBYSCORE", w->key, "-inf", w->trim};
  const char *exp[] = {"PEXPIRE", w->key, w->ttl};
  int read = -1;
  switch (ps) {
  case PASS_ADD:
    if (gt) rds_cmd_set(&cmds[(*ncmd)++], 5, zadd_gt);
    else rds_cmd_set(&cmds[(*ncmd)++], 4, zadd);
    break;
  case PASS_READ:
    read = (int)*ncmd;
    rds_cmd_set(&cmds[(*ncmd)++], withscores ? 8 : 7, range);
    break;
  case PASS_TRIM:
    rds_cmd_set(&cmds[(*ncmd)++], 4, trim);
    rds_cmd_set(&cmds[(*ncmd)++], 3, exp);
    break;
  }
  return read;
}

/* Fills the payment's keys and members (once, before the first pass). */
static void prepare_signals(const ps_event *ev, sigbuf *b) {
  const ps_intent *in = ev->intent;
  const char *pid = ev->payment_id;
  snprintf(b->at, sizeof b->at, "%lld", (long long)in->created_at_ms);
  snprintf(b->limit, sizeof b->limit, "%d", HIST_MAX + 1);
  hist_encode(in, pid, b->cust.member, sizeof b->cust.member);
  snprintf(b->cust.key, sizeof b->cust.key, "fraud:customer:{%s}:%s", in->merchant_id,
           in->customer_id);
  /* Card and device histories are per merchant: one merchant's traffic
   * (or its clock) cannot crowd out or trim another's. Across merchants
   * only the set of merchants is shared, one member each. */
  const char *fp = blocklist_value(in, BLOCKLIST_CARD), *dev = blocklist_value(in, BLOCKLIST_DEVICE);
  b->has_card = fp != NULL, b->has_device = dev != NULL;
  if (fp) {
    snprintf(b->card.key, sizeof b->card.key, "fraud:card:{%s}:%s", in->merchant_id, fp);
    link_encode(pid, dev, in->customer_id, b->card.member, sizeof b->card.member);
    snprintf(b->merchants.key, sizeof b->merchants.key, "fraud:card-merchants:{%s}", fp);
    snprintf(b->merchants.member, sizeof b->merchants.member, "%s", in->merchant_id);
  }
  if (dev) {
    snprintf(b->device.key, sizeof b->device.key, "fraud:device:{%s}:%s", in->merchant_id, dev);
    link_encode(pid, in->customer_id, fp, b->device.member, sizeof b->device.member);
  }
  for (int k = 0; k < BLOCKLIST_KINDS; k++) {
    const char *v = blocklist_value(in, (blocklist_kind)k);
    if (v) blocklist_normalize((blocklist_kind)k, v, b->val[k], sizeof b->val[k]);
    b->bl[k] = -1;
  }
}

static void queue_signals(pass ps, const ps_event *ev, sigbuf *b, rds_cmd *cmds, size_t *ncmd) {
  int64_t t = ev->intent->created_at_ms;
  int r = queue_window(ps, &b->cust, b->at, t, HIST_WINDOW_MS, HIST_WINDOW_MS + DAY_MS, false,
                       false, b->limit, cmds, ncmd);
  if (ps == PASS_READ) b->n_cust = r, b->n_card = b->n_device = b->n_merchants = -1;
  if (b->has_card) {
    r = queue_window(ps, &b->card, b->at, t, LINK_WINDOW_MS, 2 * DAY_MS, true, false, b->limit,
                     cmds, ncmd);
    if (ps == PASS_READ) b->n_card = r;
    r = queue_window(ps, &b->merchants, b->at, t, DAY_MS, 2 * DAY_MS, true, true, b->limit, cmds,
                     ncmd);
    if (ps == PASS_READ) b->n_merchants = r;
  }
  if (b->has_device) {
    r = queue_window(ps, &b->device, b->at, t, LINK_WINDOW_MS, 2 * DAY_MS, true, false, b->limit,
                     cmds, ncmd);
    if (ps == PASS_READ) b->n_device = r;
  }
  for (int k = 0; ps == PASS_READ && k < BLOCKLIST_KINDS; k++) {
    if (!blocklist_value(ev->intent, (blocklist_kind)k)) continue;
    const char *ismember[] = {"SISMEMBER", blocklist_key((blocklist_kind)k), b->val[k]};
    b->bl[k] = (int)*ncmd;
    rds_cmd_set(&cmds[(*ncmd)++], 3, ismember);
  }
}

/* The reply at index i when it is a member/score array; NULL when absent
 * (i < 0). *bad is set when it should be there and is not. */
static redisReply *scored_reply(redisReply **rep, int i, bool *bad) {
  if (i < 0) return NULL;
  redisReply *r = rep[i];
  if (!r || r->type != REDIS_REPLY_ARRAY) *bad = true;
  return *bad ? NULL : r;
}

/* Decodes a WITHSCORES link reply into l; returns the count. */
static size_t read_links(const redisReply *r, link_entry *l) {
  size_t n = 0;
  for (size_t i = 0; r && i + 1 < r->elements; i += 2)
    if (r->element[i]->type == REDIS_REPLY_STRING && r->element[i + 1]->type == REDIS_REPLY_STRING &&
        link_decode(r->element[i]->str, strtoll(r->element[i + 1]->str, NULL, 10), &l[n]) == 0)
      n++;
  return n;
}

/* Turns the replies into signals; false when the history could not be read. */
static bool read_history(const ps_event *ev, fraud_signals *sig, const sigbuf *b,
                         redisReply **rep) {
  const ps_intent *in = ev->intent;
  bool bad = false;
  redisReply *c = scored_reply(rep, b->n_cust, &bad), *k = scored_reply(rep, b->n_card, &bad),
             *d = scored_reply(rep, b->n_device, &bad), *m = scored_reply(rep, b->n_merchants, &bad);
  if (bad || !c) return false;
  hist_entry *h = calloc(c->elements + 1, sizeof *h);
  link_entry *kl = calloc((k ? k->elements / 2 : 0) + 1, sizeof *kl);
  link_entry *dl = calloc((d ? d->elements / 2 : 0) + 1, sizeof *dl);
  merchant_seen *ms = calloc((m ? m->elements / 2 : 0) + 1, sizeof *ms);
  if (!h || !kl || !dl || !ms) abort();
  fraud_history hi = {.cust = h, .card = kl, .device = dl, .merchants = ms};
  for (size_t i = 0; i < c->elements; i++)
    if (c->element[i]->type == REDIS_REPLY_STRING && hist_decode(c->element[i]->str, &h[hi.ncust]) == 0)
      hi.ncust++;
  hi.ncard = read_links(k, kl);
  hi.ndevice = read_links(d, dl);
  for (size_t i = 0; m && i + 1 < m->elements; i += 2) {
    if (m->element[i]->type != REDIS_REPLY_STRING || m->element[i + 1]->type != REDIS_REPLY_STRING)
      continue;
    snprintf(ms[hi.nmerchants].merchant, sizeof ms->merchant, "%s", m->element[i]->str);
    ms[hi.nmerchants++].at_ms = strtoll(m->element[i + 1]->str, NULL, 10);
  }
  signals_from_history(in, ev->payment_id, &hi, sig);
  free(h), free(kl), free(dl), free(ms);
  return true;
}

void history_gather(rds *r, const ps_event *const *evs, fraud_signals *const *sigs, size_t n) {
  size_t ncmd = 0;
  rds_cmd *cmds = calloc(SIGNAL_CMDS * n + 1, sizeof *cmds);
  sigbuf *bufs = calloc(n + 1, sizeof *bufs);
  redisReply **rep = calloc(SIGNAL_CMDS * n + 1, sizeof *rep);
  if (!cmds || !bufs || !rep) abort();
  for (size_t i = 0; i < n; i++) {
    signals_from_intent(evs[i]->intent, sigs[i]);
    prepare_signals(evs[i], &bufs[i]);
  }
  for (pass ps = PASS_ADD; ps <= PASS_TRIM; ps++)
    for (size_t i = 0; i < n; i++) queue_signals(ps, evs[i], &bufs[i], cmds, &ncmd);
  bool ok = ncmd > 0 && rds_pipeline(r, cmds, (int)ncmd, rep) == 0;
  for (size_t i = 0; i < n; i++) {
    fraud_signals *s = sigs[i];
    s->history_unavailable = !(ok && read_history(evs[i], s, &bufs[i], rep));
    s->blocklist_unavailable = !ok;
    for (int k = 0; ok && k < BLOCKLIST_KINDS; k++) {
      redisReply *b = bufs[i].bl[k] >= 0 ? rep[bufs[i].bl[k]] : NULL;
      s->blocklisted[k] = b && b->type == REDIS_REPLY_INTEGER && b->integer == 1;
    }
  }
  for (size_t j = 0; ok && j < ncmd; j++) freeReplyObject(rep[j]);
  free(cmds);
  free(bufs);
  free(rep);
}
