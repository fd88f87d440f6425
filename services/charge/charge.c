/* charge: durable attempts, concurrent HTTP, recorded answers. */
#include "charge.h"

#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"
#include "metrics.h"
#include "breaker.h"
#include "paypal.h"
#include "stripe.h"

#define CHARGE_MAX_PROCESSORS 2

/* One processor we can charge at, with its own circuit breaker. */
typedef struct processor {
  const char *name;        /* in attempts and the ledger account */
  const char *url;         /* base URL */
  char *api_key;           /* secret: never logged */
  bool paypal;             /* flavour: PayPal-like, else Stripe-like */
  breaker br;
  /* Its series, looked up once: calls are per payment. */
  metric *m_seconds, *m_state, *m_calls[CHARGE_UNKNOWN + 1];
} processor;

typedef struct charge_state {
  processor proc[CHARGE_MAX_PROCESSORS]; /* primary first, then the backup */
  int nproc;
  long long timeout_ms, max_inflight, max_tries, deadline_ms;
  CURLM *multi;
} charge_state;

typedef struct citem {
  stage_msg *m;
  bool known, has_attempt, to_send;
  char status[16];         /* payment status */
  char state[16];          /* live attempt's state */
  int proc;                /* live attempt's processor index, -1 if unknown */
  int sends, refused;      /* of the live attempt (Postgres is the truth) */
  long long age_ms;        /* of the live attempt */
  int abandoned;           /* processors already abandoned for this payment */
  char *outcome_hex;
  char charge_id[128];
  int64_t fee_minor;
  charge_answer ans;       /* the answer of this batch's request */
  bool answered;           /* ans is definite and must be recorded */
  char fail_code[32];      /* set when we end the payment ourselves */
  bool failover;           /* nobody received it: move to the next processor */
  char *record_outcome_hex;
} citem;

void charge_idempotency_key(const char *payment_id, const char *processor, char *out, size_t len) {
  snprintf(out, len, "paystream:%s:%s", payment_id, processor);
}

long charge_backoff_ms(int round, double jitter) {
  long base = 100;
  for (int i = 0; i < round && base < 2000; i++) base *= 2;
  if (base > 2000) base = 2000;
  if (jitter < 0) jitter = 0;
  if (jitter >= 1) jitter = 0.999999;
  return base + (long)(jitter * (double)(base / 2 + 1));
}

static int proc_index(const charge_state *st, const char *name) {
  for (int i = 0; i < st->nproc; i++)
    if (strcmp(st->proc[i].name, name) == 0) return i;
  return -1;
}

/* The first attempt of a payment goes to the primary. */
static const char SQL_BEGIN_ATTEMPTS[] =
    "INSERT INTO charge_attempts (payment_id, processor, idempotency_key, amount_minor, currency)"
    " SELECT p.payment_id, $2, 'paystream:' || p.payment_id || ':' || $2, p.amount_minor,"
    " p.currency FROM unnest($1::text[]) AS u(id) JOIN payments p ON p.payment_id = u.id"
    " WHERE p.status IN ('scored', 'charging')"
    " AND NOT EXISTS (SELECT 1 FROM charge_attempts a WHERE a.payment_id = p.payment_id)"
    " ON CONFLICT DO NOTHING";

static const char SQL_MARK_CHARGING[] =
    "UPDATE payments SET status = 'charging', updated_at = now()"
    " WHERE payment_id = ANY($1::text[]) AND status = 'scored'";

/* Each payment with its live (not abandoned) attempt, if any. */
static const char SQL_READ[] =
    "SELECT u.ord, p.status, encode(p.outcome, 'hex'), a.state, a.processor_charge_id,"
    " a.fee_minor, a.processor, a.sends, a.refused,"
    " (extract(epoch FROM now() - a.created_at) * 1000)::bigint,"
    " (SELECT count(*) FROM charge_attempts x WHERE x.payment_id = u.id AND x.state = 'abandoned')"
    " FROM unnest($1::text[]) WITH ORDINALITY AS u(id, ord)"
    " JOIN payments p ON p.payment_id = u.id"
    " LEFT JOIN charge_attempts a ON a.payment_id = u.id AND a.state <> 'abandoned'";

/* Written before a request leaves: a crash after this leaves sends > refused,
 * so the attempt can never be abandoned for another processor. */
static const char SQL_COUNT_SENDS[] =
    "UPDATE charge_attempts SET sends = sends + 1, updated_at = now()"
    " FROM unnest($1::text[], $2::text[]) AS u(id, proc)"
    " WHERE payment_id = u.id AND processor = u.proc AND state = 'charging'"
    " RETURNING payment_id";

/* A refused connection proves this send never reached the processor. */
static const char SQL_COUNT_REFUSED[] =
    "UPDATE charge_attempts SET refused = refused + 1, updated_at = now()"
    " FROM unnest($1::text[], $2::text[]) AS u(id, proc)"
    " WHERE payment_id = u.id AND processor = u.proc AND state = 'charging'";

/* Failover: abandon an attempt nobody received and open one at the next
 * processor — the CHECK on abandoned and the one-live-attempt index make the
 * database refuse anything else. */
static const char SQL_ABANDON[] =
    "UPDATE charge_attempts SET state = 'abandoned', error = 'never received: ' || u.why,"
    " updated_at = now() FROM unnest($1::text[], $2::text[], $3::text[]) AS u(id, proc, why)"
    " WHERE payment_id = u.id AND processor = u.proc AND state = 'charging' AND sends = refused";

static const char SQL_FAILOVER[] =
    "INSERT INTO charge_attempts (payment_id, processor, idempotency_key, amount_minor, currency)"
    " SELECT p.payment_id, u.next, 'paystream:' || p.payment_id || ':' || u.next,"
    " p.amount_minor, p.currency FROM unnest($1::text[], $2::text[]) AS u(id, next)"
    " JOIN payments p ON p.payment_id = u.id AND p.status = 'charging'"
    " ON CONFLICT DO NOTHING";

static const char SQL_RECORD_ATTEMPTS[] =
    "UPDATE charge_attempts a SET state = u.s, processor_charge_id = u.cid,"
    " decline_code = u.dc, fee_minor = u.fee, error = u.err, updated_at = now()"
    " FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::bigint[],"
    " $7::text[]) AS u(id, proc, s, cid, dc, fee, err)"
    " WHERE a.payment_id = u.id AND a.processor = u.proc AND a.state = 'charging'";

static const char SQL_RECORD_PAYMENTS[] =
    "UPDATE payments p SET status = CASE u.s WHEN 'succeeded' THEN 'charged' ELSE u.s END,"
    " outcome = decode(u.o, 'hex'), error_code = u.code, processor = u.proc,"
    " processor_charge_id = u.cid, fee_minor = u.fee, updated_at = now()"
    " FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::bigint[], $6::text[],"
    " $7::text[]) AS u(id, proc, s, cid, fee, o, code)"
    " WHERE p.payment_id = u.id AND p.status = 'charging'";

/* ---- state in Postgres --------------------------------------------------- */

static int read_state(stage_ctx *ctx, const charge_state *st, citem *it, size_t n,
                      bool begin_attempts) {
  pg_array ids;
  pg_array_init(&ids);
  for (size_t i = 0; i < n; i++) pg_array_add_str(&ids, it[i].m->ev->payment_id);
  const char *p2[] = {pg_array_finish(&ids), st->proc[0].name};
  pg_stmt all[] = {{SQL_BEGIN_ATTEMPTS, 2, p2}, {SQL_MARK_CHARGING, 1, p2}, {SQL_READ, 1, p2}};
  pg_stmt *stmts = begin_attempts ? all : &all[2];
  int ns = begin_attempts ? 3 : 1;
  PGresult *res[3] = {0};
  char err[512];
  int rc = pg_pipeline(&ctx->pg, stmts, ns, res, err, sizeof err);
  pg_array_free(&ids);
  if (rc) {
    log_warn("reading charge state failed: %s", err);
    return -1;
  }
  PGresult *r = res[ns - 1];
  for (int row = 0; row < PQntuples(r); row++) {
    long ord = strtol(PQgetvalue(r, row, 0), NULL, 10);
    if (ord < 1 || (size_t)ord > n) continue;
    citem *x = &it[ord - 1];
    x->known = true;
    snprintf(x->status, sizeof x->status, "%s", PQgetvalue(r, row, 1));
    free(x->outcome_hex);
    x->outcome_hex = PQgetisnull(r, row, 2) ? NULL : strdup(PQgetvalue(r, row, 2));
    x->has_attempt = !PQgetisnull(r, row, 3);
    snprintf(x->state, sizeof x->state, "%s", PQgetvalue(r, row, 3));
    snprintf(x->charge_id, sizeof x->charge_id, "%s", PQgetvalue(r, row, 4));
    x->fee_minor = strtoll(PQgetvalue(r, row, 5), NULL, 10);
    x->proc = x->has_attempt ? proc_index(st, PQgetvalue(r, row, 6)) : -1;
    x->sends = atoi(PQgetvalue(r, row, 7));
    x->refused = atoi(PQgetvalue(r, row, 8));
    x->age_ms = strtoll(PQgetvalue(r, row, 9), NULL, 10);
    x->abandoned = atoi(PQgetvalue(r, row, 10));
  }
  pg_results_clear(res, ns);
  return 0;
}

static void build_outcome_hex(citem *x, const charge_state *st) {
  ps_event *ev = x->m->ev;
  ps_charge ch = PAYMENTS__V1__CHARGE_RESULT__INIT;
  ch.processor = (char *)(x->proc >= 0 ? st->proc[x->proc].name : "");
  ps_charge *saved = ev->charge;
  ev->charge = &ch;
  outcome_buf ob;
  char msg[200];
  if (x->ans.kind == CHARGE_DECLINED) {
    snprintf(msg, sizeof msg, "the card was declined (%s)", x->ans.decline_code);
    outcome_from_event(&ob, ev, OUTCOME_DECLINED, x->ans.decline_code, msg);
  } else {
    outcome_from_event(&ob, ev, OUTCOME_FAILED, x->fail_code, x->ans.error);
  }
  x->record_outcome_hex = outcome_pack_hex(&ob.o);
  ev->charge = saved;
}

/* Records every definite answer of this batch in one transaction. */
static int record_answers(stage_ctx *ctx, const charge_state *st, citem *it, size_t n) {
  pg_array a[7], p[7];
  pg_arrays_init(a, 7);
  pg_arrays_init(p, 7);
  int count = 0;
  for (size_t i = 0; i < n; i++) {
    citem *x = &it[i];
    if (!x->answered || x->proc < 0) continue;
    count++;
    const char *s = x->ans.kind == CHARGE_SUCCEEDED  ? "succeeded"
                    : x->ans.kind == CHARGE_DECLINED ? "declined"
                                                     : "failed";
    bool ok = x->ans.kind == CHARGE_SUCCEEDED;
    if (!ok && !x->fail_code[0]) snprintf(x->fail_code, sizeof x->fail_code, "processor_rejected");
    if (!ok) build_outcome_hex(x, st);
    const char *proc = st->proc[x->proc].name;
    pg_array_add_str(&a[0], x->m->ev->payment_id);
    pg_array_add_str(&a[1], proc);
    pg_array_add_str(&a[2], s);
    pg_array_add_str(&a[3], ok ? x->ans.charge_id : NULL);
    pg_array_add_str(&a[4], x->ans.kind == CHARGE_DECLINED ? x->ans.decline_code : NULL);
    if (ok) pg_array_add_int(&a[5], x->ans.fee_minor);
    else pg_array_add_str(&a[5], NULL);
    pg_array_add_str(&a[6], x->ans.error[0] ? x->ans.error : NULL);
    pg_array_add_str(&p[0], x->m->ev->payment_id);
    pg_array_add_str(&p[1], proc);
    pg_array_add_str(&p[2], s);
    pg_array_add_str(&p[3], ok ? x->ans.charge_id : NULL);
    if (ok) pg_array_add_int(&p[4], x->ans.fee_minor);
    else pg_array_add_str(&p[4], NULL);
    pg_array_add_str(&p[5], x->record_outcome_hex);
    pg_array_add_str(&p[6], ok ? NULL
                      : x->ans.kind == CHARGE_DECLINED ? x->ans.decline_code
                                                       : x->fail_code);
  }
  int rc = 0;
  if (count) {
    const char *pa[7], *pp[7];
    pg_arrays_finish(a, 7, pa);
    pg_arrays_finish(p, 7, pp);
    pg_stmt stmts[] = {{SQL_RECORD_ATTEMPTS, 7, pa}, {SQL_RECORD_PAYMENTS, 7, pp}};
    PGresult *res[2];
    char err[512];
    rc = pg_pipeline(&ctx->pg, stmts, 2, res, err, sizeof err);
    if (rc) log_warn("recording charge answers failed: %s", err);
    pg_results_clear(res, 2);
  }
  pg_arrays_free(a, 7);
  pg_arrays_free(p, 7);
  return rc;
}

/* Runs sql over the (payment id, processor) of the live attempt of every
 * item selected by want. On success *res holds the result (caller clears),
 * or NULL when nothing was selected. Returns 0 or -1. */
static int on_attempts(stage_ctx *ctx, const charge_state *st, const citem *it, size_t n,
                       const char *sql, bool (*want)(const citem *), PGresult **res) {
  pg_array a[2];
  pg_arrays_init(a, 2);
  int count = 0;
  for (size_t i = 0; i < n; i++) {
    if (!want(&it[i])) continue;
    count++;
    pg_array_add_str(&a[0], it[i].m->ev->payment_id);
    pg_array_add_str(&a[1], st->proc[it[i].proc].name);
  }
  *res = NULL;
  int rc = 0;
  if (count) {
    const char *pa[2];
    pg_arrays_finish(a, 2, pa);
    pg_stmt stmt = {sql, 2, pa};
    char err[512];
    rc = pg_pipeline(&ctx->pg, &stmt, 1, res, err, sizeof err);
    if (rc) log_warn("charge bookkeeping failed: %s", err);
  }
  pg_arrays_free(a, 2);
  return rc;
}

/* ---- HTTP through the multi interface --------------------------------------- */

typedef struct http_call {
  citem *item;
  CURL *easy;
  struct curl_slist *hdrs;
  char *body;
  char *resp;
  size_t resp_len;
  char errbuf[CURL_ERROR_SIZE];
  bool paypal;
  const processor *proc;
} http_call;

static size_t on_body(char *data, size_t size, size_t nmemb, void *ud) {
  http_call *c = ud;
  size_t n = size * nmemb;
  if (c->resp_len + n > 1 << 20) return 0; /* a processor answer is small */
  char *nb = realloc(c->resp, c->resp_len + n + 1);
  if (!nb) return 0;
  memcpy(nb + c->resp_len, data, n);
  c->resp = nb;
  c->resp_len += n;
  c->resp[c->resp_len] = '\0';
  return n;
}

static void call_setup(http_call *c, const charge_state *st, citem *x) {
  const ps_intent *in = x->m->ev->intent;
  const processor *pr = &st->proc[x->proc];
  char url[1024], hdr[512], key[256];
  memset(c, 0, sizeof *c);
  c->item = x;
  c->paypal = pr->paypal;
  c->proc = pr;
  c->easy = curl_easy_init();
  if (!c->easy) abort();
  charge_idempotency_key(x->m->ev->payment_id, pr->name, key, sizeof key);
  if (pr->paypal) {
    snprintf(url, sizeof url, "%s/v2/payments/captures", pr->url);
    c->body = paypal_build_body(in->amount->amount_minor, in->amount->currency,
                                in->payment_method->id, x->m->ev->payment_id);
    snprintf(hdr, sizeof hdr, "PayPal-Request-Id: %s", key);
    c->hdrs = curl_slist_append(c->hdrs, hdr);
    c->hdrs = curl_slist_append(c->hdrs, "Content-Type: application/json");
  } else {
    snprintf(url, sizeof url, "%s/v1/charges", pr->url);
    c->body = stripe_build_body(in->amount->amount_minor, in->amount->currency,
                                in->payment_method->id, x->m->ev->payment_id);
    snprintf(hdr, sizeof hdr, "Idempotency-Key: %s", key);
    c->hdrs = curl_slist_append(c->hdrs, hdr);
    c->hdrs = curl_slist_append(c->hdrs, "Content-Type: application/x-www-form-urlencoded");
  }
  if (!c->body) abort(); /* validated currencies always format */
  snprintf(hdr, sizeof hdr, "Authorization: Bearer %s", pr->api_key);
  c->hdrs = curl_slist_append(c->hdrs, hdr);
  curl_easy_setopt(c->easy, CURLOPT_URL, url);
  curl_easy_setopt(c->easy, CURLOPT_POSTFIELDS, c->body);
  curl_easy_setopt(c->easy, CURLOPT_HTTPHEADER, c->hdrs);
  curl_easy_setopt(c->easy, CURLOPT_WRITEFUNCTION, on_body);
  curl_easy_setopt(c->easy, CURLOPT_WRITEDATA, c);
  curl_easy_setopt(c->easy, CURLOPT_TIMEOUT_MS, (long)st->timeout_ms);
  curl_easy_setopt(c->easy, CURLOPT_CONNECTTIMEOUT_MS, 2000L);
  curl_easy_setopt(c->easy, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(c->easy, CURLOPT_ERRORBUFFER, c->errbuf);
  curl_easy_setopt(c->easy, CURLOPT_PRIVATE, c);
}

static void call_cleanup(http_call *c) {
  curl_easy_cleanup(c->easy);
  curl_slist_free_all(c->hdrs);
  free(c->body);
  free(c->resp);
}

/* Looks up a processor's series: latency, calls by result, breaker state. */
static void processor_metrics(processor *pr) {
  pr->m_seconds = metrics_histogram("paystream_processor_seconds", "Processor call latency",
                                    METRICS_LATENCY_BUCKETS, METRICS_LATENCY_NBUCKETS,
                                    "processor", pr->name, NULL);
  for (int k = 0; k <= CHARGE_UNKNOWN; k++)
    pr->m_calls[k] = metrics_counter("paystream_processor_calls_total",
                                     "Processor calls by result (not_sent, unknown and retryable "
                                     "are failures for the circuit breaker)",
                                     "processor", pr->name, "result",
                                     charge_kind_name((charge_kind)k), NULL);
  pr->m_state = metrics_gauge("paystream_circuit_breaker_state",
                              "Circuit breaker per processor: 0 closed, 1 half-open, 2 open",
                              "processor", pr->name, NULL);
}

static void observe_call(const processor *pr, CURL *easy, const charge_answer *a) {
  curl_off_t us = 0;
  curl_easy_getinfo(easy, CURLINFO_TOTAL_TIME_T, &us);
  metric_observe(pr->m_seconds, (double)us / 1e6);
  if (a->kind <= CHARGE_UNKNOWN) metric_add(pr->m_calls[a->kind], 1);
}

/* 0 closed, 1 half-open, 2 open: a graph that rises when things go wrong. */
static void export_breaker(const processor *pr, breaker_state s) {
  metric_set(pr->m_state, s == BREAKER_CLOSED ? 0 : s == BREAKER_HALF_OPEN ? 1 : 2);
}

static void call_finish(http_call *c, CURLcode cc) {
  charge_answer *a = &c->item->ans;
  if (cc == CURLE_OK) {
    long status = 0;
    curl_easy_getinfo(c->easy, CURLINFO_RESPONSE_CODE, &status);
    if (c->paypal) paypal_map_response(status, c->resp, c->resp_len, a);
    else stripe_map_response(status, c->resp, c->resp_len, a);
  } else {
    memset(a, 0, sizeof *a);
    /* Refused before any byte was sent: the processor provably has nothing. */
    a->kind = cc == CURLE_COULDNT_CONNECT ? CHARGE_NOT_SENT : CHARGE_UNKNOWN;
    snprintf(a->error, sizeof a->error, "%.150s", c->errbuf[0] ? c->errbuf : curl_easy_strerror(cc));
  }
  observe_call(c->proc, c->easy, a);
}

/* Sends every call concurrently (up to max_inflight at once) and waits. */
static void run_calls(charge_state *st, http_call *calls, size_t n) {
  static metric *inflight;
  if (!inflight)
    inflight = metrics_gauge("paystream_charges_in_flight", "Processor requests in flight", NULL);
  for (size_t i = 0; i < n; i++) curl_multi_add_handle(st->multi, calls[i].easy);
  int running = 1;
  while (running) {
    curl_multi_perform(st->multi, &running);
    metric_set(inflight, running);
    CURLMsg *msg;
    int left;
    while ((msg = curl_multi_info_read(st->multi, &left))) {
      if (msg->msg != CURLMSG_DONE) continue;
      http_call *c = NULL;
      curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&c);
      call_finish(c, msg->data.result);
      curl_multi_remove_handle(st->multi, msg->easy_handle);
    }
    if (running) curl_multi_poll(st->multi, NULL, 0, 100, NULL);
  }
}

static void sleep_ms(long ms) {
  struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
  nanosleep(&ts, NULL);
}

static bool sending(const citem *x) { return x->to_send; }

/* Counts this round's sends in Postgres before they leave, and keeps only
 * the sends whose attempt is still live there (another instance may have
 * moved it on). Returns 0 or -1. */
static int count_sends(stage_ctx *ctx, const charge_state *st, citem *it, size_t n) {
  PGresult *res;
  if (on_attempts(ctx, st, it, n, SQL_COUNT_SENDS, sending, &res)) return -1;
  for (size_t i = 0; i < n; i++) {
    if (!it[i].to_send) continue;
    bool live = false;
    for (int row = 0; res && row < PQntuples(res) && !live; row++)
      live = strcmp(PQgetvalue(res, row, 0), it[i].m->ev->payment_id) == 0;
    it[i].to_send = live;
  }
  if (res) PQclear(res);
  return 0;
}

/* After the requests: each refused connection counts toward the proof. */
static bool was_refused(const citem *x) { return x->to_send && x->ans.kind == CHARGE_NOT_SENT; }

static int count_refused(stage_ctx *ctx, const charge_state *st, citem *it, size_t n) {
  PGresult *res;
  if (on_attempts(ctx, st, it, n, SQL_COUNT_REFUSED, was_refused, &res)) return -1;
  if (res) PQclear(res);
  return 0;
}

/* Abandons the attempts nobody received and opens the next processor's, in
 * one transaction: a crash can never leave a payment without a live attempt. */
static int fail_over(stage_ctx *ctx, const charge_state *st, citem *it, size_t n) {
  pg_array a[4];
  pg_arrays_init(a, 4);
  int count = 0;
  for (size_t i = 0; i < n; i++) {
    if (!it[i].failover) continue;
    count++;
    pg_array_add_str(&a[0], it[i].m->ev->payment_id);
    pg_array_add_str(&a[1], st->proc[it[i].proc].name);
    pg_array_add_str(&a[2], "connection refused or circuit open");
    pg_array_add_str(&a[3], st->proc[it[i].proc + 1].name);
  }
  int rc = 0;
  if (count) {
    const char *pa[4];
    pg_arrays_finish(a, 4, pa);
    const char *pf[] = {pa[0], pa[3]};
    pg_stmt stmts[] = {{SQL_ABANDON, 3, pa}, {SQL_FAILOVER, 2, pf}};
    PGresult *res[2];
    char err[512];
    rc = pg_pipeline(&ctx->pg, stmts, 2, res, err, sizeof err);
    if (rc) log_warn("failing over failed: %s", err);
    pg_results_clear(res, 2);
  }
  pg_arrays_free(a, 4);
  return rc;
}

/* ---- one round of charging ---------------------------------------------------- */


/* Decides this round's sends: live `charging` attempts whose processor's
 * breaker lets a request through. A payment whose processor is open and
 * that nobody ever received is marked for failover ('F'). */
static size_t plan_round(charge_state *st, citem *it, size_t n, int64_t now) {
  size_t sends = 0;
  for (size_t i = 0; i < n; i++) {
    citem *x = &it[i];
    x->to_send = false;
    x->failover = false;
    if (!x->known || x->answered || !x->has_attempt || x->proc < 0 ||
        strcmp(x->state, "charging") != 0)
      continue;
    if (breaker_allow(&st->proc[x->proc].br, now)) {
      x->to_send = true;
      sends++;
    } else if (x->sends == x->refused) {
      x->failover = true; /* circuit open and never received */
    }
  }
  return sends;
}

/* After a round: a refused send counts toward the proof that nobody got the
 * charge; an attempt nobody received fails over to the next processor, or —
 * with none left — ends the payment `failed` (no processor has it). */
static void settle_round(charge_state *st, citem *it, size_t n, int64_t now) {
  for (size_t i = 0; i < n; i++) {
    citem *x = &it[i];
    if (x->to_send) {
      charge_kind k = x->ans.kind;
      bool failure = k == CHARGE_NOT_SENT || k == CHARGE_UNKNOWN || k == CHARGE_RETRYABLE;
      processor *pr = &st->proc[x->proc];
      breaker_state before = breaker_get_state(&pr->br, now);
      breaker_record(&pr->br, now, failure);
      breaker_state after = breaker_get_state(&pr->br, now);
      if (after != before)
        log_warn("circuit for %s: %s -> %s", pr->name, breaker_state_name(before),
                 breaker_state_name(after));
      export_breaker(pr, after);
      x->sends++;
      if (k == CHARGE_NOT_SENT) {
        x->refused++;
        if (x->sends == x->refused) x->failover = true;
      }
      x->answered = k == CHARGE_SUCCEEDED || k == CHARGE_DECLINED || k == CHARGE_REJECTED;
    }
    if (x->failover && x->proc + 1 >= st->nproc) {
      x->failover = false;
      x->answered = true;
      x->ans.kind = CHARGE_REJECTED;
      snprintf(x->fail_code, sizeof x->fail_code, "processor_unavailable");
      snprintf(x->ans.error, sizeof x->ans.error,
               "no processor could be reached; the payment was not charged");
    }
  }
}

/* Charges every live attempt, failing over when provably safe, retrying
 * what is not definite with back-off and jitter. Returns how many payments
 * stay ambiguous, or -1 on a Postgres failure. */
static long charge_all(stage_ctx *ctx, charge_state *st, citem *it, size_t n) {
  http_call *calls = calloc(n + 1, sizeof *calls);
  if (!calls) abort();
  long pending = 0;
  for (long long round = 0; round < st->max_tries; round++) {
    int64_t now = ps_mono_ms();
    size_t nsend = plan_round(st, it, n, now);
    for (int p = 0; p < st->nproc; p++)
      export_breaker(&st->proc[p], breaker_get_state(&st->proc[p].br, now));
    /* Durable before the requests leave: this attempt may now be received. */
    if (nsend && count_sends(ctx, st, it, n)) {
      free(calls);
      return -1;
    }
    size_t nc = 0;
    for (size_t i = 0; i < n; i++)
      if (it[i].to_send) call_setup(&calls[nc++], st, &it[i]);
    if (nc) run_calls(st, calls, nc);
    for (size_t i = 0; i < nc; i++) call_cleanup(&calls[i]);
    settle_round(st, it, n, ps_mono_ms());
    if (count_refused(ctx, st, it, n) ||
        fail_over(ctx, st, it, n)) {
      free(calls);
      return -1;
    }
    bool failed_over = false;
    pending = 0;
    for (size_t i = 0; i < n; i++) {
      citem *x = &it[i];
      if (x->failover) {
        log_ctx lc = {x->m->topic, x->m->partition, x->m->offset, x->m->ev->payment_id, NULL};
        log_at(LOG_WARN, &lc, "%s never received the charge; failing over to %s",
               st->proc[x->proc].name, st->proc[x->proc + 1].name);
        x->failover = false;
        failed_over = true;
        continue;
      }
      if (x->known && x->has_attempt && !x->answered && strcmp(x->state, "charging") == 0) {
        pending++;
        if (x->to_send) {
          log_ctx lc = {x->m->topic, x->m->partition, x->m->offset, x->m->ev->payment_id, NULL};
          log_at(LOG_WARN, &lc, "charge at %s not definite (%s): %s", st->proc[x->proc].name,
                 charge_kind_name(x->ans.kind), x->ans.error);
        }
      }
    }
    /* Postgres says where each payment's live attempt now is. */
    if (failed_over && read_state(ctx, st, it, n, false)) {
      free(calls);
      return -1;
    }
    if (pending == 0 && !failed_over) break;
    if (!failed_over && round + 1 < st->max_tries)
      sleep_ms(charge_backoff_ms((int)round, (double)rand() / ((double)RAND_MAX + 1)));
  }
  free(calls);
  /* Whatever is still live and unanswered (including a payment that failed
   * over in the last round) makes the batch retry; nothing is emitted for it. */
  pending = 0;
  for (size_t i = 0; i < n; i++)
    if (it[i].known && it[i].has_attempt && !it[i].answered && strcmp(it[i].state, "charging") == 0)
      pending++;
  return pending;
}

/* Ends payments whose attempt stayed ambiguous past the deadline: `failed`
 * with processor_timeout, never charged elsewhere; reconcile will show a
 * charge if the processor did take it. */
static void apply_deadline(const charge_state *st, citem *it, size_t n) {
  for (size_t i = 0; i < n; i++) {
    citem *x = &it[i];
    if (!x->known || x->answered || !x->has_attempt || strcmp(x->state, "charging") != 0 ||
        x->age_ms < st->deadline_ms || x->proc < 0)
      continue;
    x->answered = true;
    x->ans.kind = CHARGE_REJECTED;
    snprintf(x->fail_code, sizeof x->fail_code, "processor_timeout");
    snprintf(x->ans.error, sizeof x->ans.error,
             "no definite answer from %s before the deadline; not retried elsewhere",
             st->proc[x->proc].name);
  }
}

/* ---- emitting --------------------------------------------------------------- */

static void emit(stage_ctx *ctx, const charge_state *st, citem *x, outbox *out) {
  ps_event *ev = x->m->ev;
  if (x->has_attempt && strcmp(x->state, "succeeded") == 0 && x->proc >= 0) {
    ps_charge ch = PAYMENTS__V1__CHARGE_RESULT__INIT;
    ch.status = PAYMENTS__V1__CHARGE_STATUS__CHARGE_STATUS_SUCCEEDED;
    ch.processor = (char *)st->proc[x->proc].name;
    ch.processor_charge_id = x->charge_id;
    ch.fee_minor = x->fee_minor;
    ps_charge *saved = ev->charge;
    ev->charge = &ch;
    outbox_add_event(out, ctx->cfg->topics.charged, ev);
    ev->charge = saved;
    return;
  }
  if (x->outcome_hex)
    outbox_add_stored(out, ctx->cfg->topics.outcomes, ev->intent->idempotency_key, x->outcome_hex);
}

static void free_items(citem *it, size_t n) {
  for (size_t i = 0; i < n; i++) {
    free(it[i].outcome_hex);
    free(it[i].record_outcome_hex);
  }
  free(it);
}

static int charge_process(stage_ctx *ctx, stage_msg *msgs, size_t n, outbox *out) {
  charge_state *st = ctx->state;
  citem *it = calloc(n, sizeof *it);
  if (!it) abort();
  size_t nv = 0;
  for (size_t i = 0; i < n; i++) {
    const ps_event *ev = msgs[i].ev;
    if (!ev->fraud || ev->fraud->decision != PAYMENTS__V1__FRAUD_DECISION__FRAUD_DECISION_ALLOW ||
        !ev->intent->amount || !ev->intent->payment_method) {
      outbox_add_dlq(out, ctx->cfg->topics.dlq, "charge", &msgs[i], "not allowed by fraud");
      continue;
    }
    it[nv++].m = &msgs[i];
  }
  int rc = nv ? read_state(ctx, st, it, nv, true) : 0;
  long ambiguous = 0;
  if (rc == 0 && nv) {
    apply_deadline(st, it, nv);
    ambiguous = charge_all(ctx, st, it, nv);
    if (ambiguous < 0) rc = -1;
    if (rc == 0) rc = record_answers(ctx, st, it, nv);
  }
  if (rc == 0 && nv) rc = read_state(ctx, st, it, nv, false);
  if (rc == 0 && ambiguous > 0) {
    /* Nothing is given up or sent elsewhere: the batch is retried, and the
     * same idempotency key makes the processor answer the first charge. */
    log_warn("%ld charges still ambiguous; retrying the batch", ambiguous);
    rc = -1;
  }
  if (rc == 0) {
    for (size_t i = 0; i < nv; i++) {
      if (!it[i].known) {
        outbox_add_dlq(out, ctx->cfg->topics.dlq, "charge", it[i].m, "unknown payment_id");
        continue;
      }
      emit(ctx, st, &it[i], out);
    }
  }
  free_items(it, n);
  return rc;
}

static const char *charge_input(const cfg *c) { return c->topics.fraud_scored; }


/* Reads one processor's settings under PREFIX (PAYSTREAM_PROCESSOR or
 * PAYSTREAM_BACKUP_PROCESSOR). Returns 1 if configured, 0 if not, -1 on error. */
static int load_processor(processor *p, const char *prefix, const char *def_name,
                          const char *def_url, const breaker_cfg *bc, char *err, size_t errlen) {
  char var[96];
  snprintf(var, sizeof var, "%s_URL", prefix);
  p->url = cfg_env_str(var, def_url);
  if (!p->url) return 0;
  snprintf(var, sizeof var, "%s_NAME", prefix);
  p->name = cfg_env_str(var, def_name);
  for (const char *c = p->name; *c; c++)
    if (!((*c >= 'a' && *c <= 'z') || (*c >= '0' && *c <= '9') || *c == '_')) {
      snprintf(err, errlen, "%s must be lower-case letters, digits and _", var);
      return -1;
    }
  snprintf(var, sizeof var, "%s_API_KEY", prefix);
  p->api_key = cfg_secret(var, "sk_test_paystream", err, errlen);
  if (!p->api_key) return -1;
  snprintf(var, sizeof var, "%s_FLAVOUR", prefix);
  const char *fl = cfg_env_str(var, "stripe");
  if (strcmp(fl, "stripe") != 0 && strcmp(fl, "paypal") != 0) {
    snprintf(err, errlen, "%s must be stripe or paypal", var);
    return -1;
  }
  p->paypal = strcmp(fl, "paypal") == 0;
  breaker_init(&p->br, bc);
  processor_metrics(p);
  export_breaker(p, BREAKER_CLOSED);
  return 1;
}

static int charge_init(stage_ctx *ctx, char *err, size_t errlen) {
  static charge_state st;
  long long v;
  breaker_cfg bc;
  breaker_cfg_default(&bc);
  if (cfg_env_int("PAYSTREAM_PROCESSOR_TIMEOUT_MS", 10000, 1, 600000, &st.timeout_ms, err,
                  errlen) ||
      cfg_env_int("PAYSTREAM_CHARGE_MAX_INFLIGHT", 500, 1, 10000, &st.max_inflight, err, errlen) ||
      cfg_env_int("PAYSTREAM_CHARGE_MAX_TRIES", 4, 1, 100, &st.max_tries, err, errlen) ||
      cfg_env_int("PAYSTREAM_CHARGE_DEADLINE_MS", 600000, 1000, 7 * 86400000LL, &st.deadline_ms,
                  err, errlen) ||
      cfg_env_int("PAYSTREAM_BREAKER_WINDOW", bc.window, 1, BREAKER_MAX_WINDOW, &v, err, errlen))
    return -1;
  bc.window = (int)v;
  if (cfg_env_int("PAYSTREAM_BREAKER_MIN_REQUESTS", bc.min_requests, 1, 100000, &v, err, errlen))
    return -1;
  bc.min_requests = (int)v;
  if (cfg_env_int("PAYSTREAM_BREAKER_COOL_DOWN_MS", bc.cool_down_ms, 1, 3600000, &v, err, errlen))
    return -1;
  bc.cool_down_ms = v;
  if (cfg_env_int("PAYSTREAM_BREAKER_HALF_OPEN_PROBES", bc.half_open_probes, 1, 1000, &v, err,
                  errlen) ||
      cfg_env_double("PAYSTREAM_BREAKER_FAILURE_RATE", bc.failure_rate, 0.01, 1, &bc.failure_rate,
                     err, errlen))
    return -1;
  bc.half_open_probes = (int)v;
  if (load_processor(&st.proc[0], "PAYSTREAM_PROCESSOR", "stripe", "http://127.0.0.1:12111", &bc,
                     err, errlen) < 0)
    return -1;
  st.nproc = 1;
  int backup = load_processor(&st.proc[1], "PAYSTREAM_BACKUP_PROCESSOR", "backup", NULL, &bc, err,
                              errlen);
  if (backup < 0) return -1;
  if (backup) {
    if (strcmp(st.proc[1].name, st.proc[0].name) == 0) {
      snprintf(err, errlen, "PAYSTREAM_BACKUP_PROCESSOR_NAME must differ from the primary's");
      return -1;
    }
    st.nproc = 2;
  }
  curl_global_init(CURL_GLOBAL_DEFAULT);
  st.multi = curl_multi_init();
  curl_multi_setopt(st.multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, (long)st.max_inflight);
  curl_multi_setopt(st.multi, CURLMOPT_MAX_HOST_CONNECTIONS, (long)st.max_inflight);
  srand((unsigned)time(NULL));
  ctx->state = &st;
  log_info("charging at %s%s%s", st.proc[0].name, st.nproc > 1 ? ", failing over to " : "",
           st.nproc > 1 ? st.proc[1].name : "");
  return 0;
}

static void charge_destroy(stage_ctx *ctx) {
  charge_state *st = ctx->state;
  if (!st) return;
  curl_multi_cleanup(st->multi);
  for (int i = 0; i < st->nproc; i++) free(st->proc[i].api_key);
  curl_global_cleanup();
}

const stage_def charge_stage = {
    .name = "charge",
    .input_topic = charge_input,
    .requires_payment_id = true,
    .init = charge_init,
    .process = charge_process,
    .destroy = charge_destroy,
};
