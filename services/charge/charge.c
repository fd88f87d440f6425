/* charge: durable attempts, concurrent HTTP, recorded answers. */
#include "charge.h"

#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"
#include "stripe.h"

typedef struct charge_state {
  const char *processor;   /* name used in attempts and the ledger */
  const char *url;         /* base URL, e.g. http://127.0.0.1:8080 */
  char *api_key;           /* secret: never logged */
  long long timeout_ms, max_inflight, max_tries;
  CURLM *multi;
} charge_state;

typedef struct citem {
  stage_msg *m;
  bool known, has_attempt, to_send;
  char status[16];         /* payment status */
  char state[16];          /* attempt state */
  char *outcome_hex;
  char charge_id[128];
  int64_t fee_minor;
  charge_answer ans;       /* the answer of this batch's request */
  bool answered;           /* ans is definite and must be recorded */
  char *record_outcome_hex;
} citem;

void charge_idempotency_key(const char *payment_id, const char *processor, char *out, size_t len) {
  snprintf(out, len, "paystream:%s:%s", payment_id, processor);
}

static const char SQL_BEGIN_ATTEMPTS[] =
    "INSERT INTO charge_attempts (payment_id, processor, idempotency_key, amount_minor, currency)"
    " SELECT p.payment_id, $2, u.k, p.amount_minor, p.currency"
    " FROM unnest($1::text[], $3::text[]) AS u(id, k) JOIN payments p ON p.payment_id = u.id"
    " WHERE p.status IN ('scored', 'charging')"
    " ON CONFLICT DO NOTHING";

static const char SQL_MARK_CHARGING[] =
    "UPDATE payments SET status = 'charging', updated_at = now()"
    " WHERE payment_id = ANY($1::text[]) AND status = 'scored'";

static const char SQL_READ[] =
    "SELECT u.ord, p.status, encode(p.outcome, 'hex'), a.state, a.processor_charge_id,"
    " a.fee_minor"
    " FROM unnest($1::text[]) WITH ORDINALITY AS u(id, ord)"
    " JOIN payments p ON p.payment_id = u.id"
    " LEFT JOIN charge_attempts a ON a.payment_id = u.id AND a.processor = $2";

static const char SQL_RECORD_ATTEMPTS[] =
    "UPDATE charge_attempts a SET state = u.s, processor_charge_id = u.cid,"
    " decline_code = u.dc, fee_minor = u.fee, error = u.err, updated_at = now()"
    " FROM unnest($1::text[], $3::text[], $4::text[], $5::text[], $6::bigint[], $7::text[])"
    " AS u(id, s, cid, dc, fee, err)"
    " WHERE a.payment_id = u.id AND a.processor = $2 AND a.state = 'charging'";

static const char SQL_RECORD_PAYMENTS[] =
    "UPDATE payments p SET status = CASE u.s WHEN 'succeeded' THEN 'charged' ELSE u.s END,"
    " outcome = decode(u.o, 'hex'), error_code = u.code, processor = $2,"
    " processor_charge_id = u.cid, fee_minor = u.fee, updated_at = now()"
    " FROM unnest($1::text[], $3::text[], $4::text[], $5::bigint[], $6::text[], $7::text[])"
    " AS u(id, s, cid, fee, o, code)"
    " WHERE p.payment_id = u.id AND p.status = 'charging'";

/* ---- state in Postgres --------------------------------------------------- */

static int read_state(stage_ctx *ctx, const charge_state *st, citem *it, size_t n,
                      bool begin_attempts) {
  pg_array ids, keys;
  pg_array_init(&ids);
  pg_array_init(&keys);
  for (size_t i = 0; i < n; i++) {
    char key[256];
    charge_idempotency_key(it[i].m->ev->payment_id, st->processor, key, sizeof key);
    pg_array_add_str(&ids, it[i].m->ev->payment_id);
    pg_array_add_str(&keys, key);
  }
  const char *p3[] = {pg_array_finish(&ids), st->processor, pg_array_finish(&keys)};
  pg_stmt all[] = {{SQL_BEGIN_ATTEMPTS, 3, p3}, {SQL_MARK_CHARGING, 1, p3}, {SQL_READ, 2, p3}};
  pg_stmt *stmts = begin_attempts ? all : &all[2];
  int ns = begin_attempts ? 3 : 1;
  PGresult *res[3] = {0};
  char err[512];
  int rc = pg_pipeline(&ctx->pg, stmts, ns, res, err, sizeof err);
  pg_array_free(&ids);
  pg_array_free(&keys);
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
  }
  pg_results_clear(res, ns);
  return 0;
}

static void build_outcome_hex(citem *x, const charge_state *st) {
  ps_event *ev = x->m->ev;
  ps_charge ch = PAYMENTS__V1__CHARGE_RESULT__INIT;
  ch.processor = (char *)st->processor;
  ps_charge *saved = ev->charge;
  ev->charge = &ch;
  outcome_buf ob;
  char msg[200];
  if (x->ans.kind == CHARGE_DECLINED) {
    snprintf(msg, sizeof msg, "the card was declined (%s)", x->ans.decline_code);
    outcome_from_event(&ob, ev, OUTCOME_DECLINED, x->ans.decline_code, msg);
  } else {
    outcome_from_event(&ob, ev, OUTCOME_FAILED, "processor_rejected", x->ans.error);
  }
  size_t len;
  uint8_t *b = outcome_pack(&ob.o, &len);
  ev->charge = saved;
  x->record_outcome_hex = malloc(2 * len + 1);
  if (!b || !x->record_outcome_hex) abort();
  hex_encode(b, len, x->record_outcome_hex);
  free(b);
}

/* Records every definite answer of this batch in one transaction. */
static int record_answers(stage_ctx *ctx, const charge_state *st, citem *it, size_t n) {
  pg_array a[6], p[6];
  for (int i = 0; i < 6; i++) pg_array_init(&a[i]), pg_array_init(&p[i]);
  int count = 0;
  for (size_t i = 0; i < n; i++) {
    citem *x = &it[i];
    if (!x->answered) continue;
    count++;
    const char *s = x->ans.kind == CHARGE_SUCCEEDED  ? "succeeded"
                    : x->ans.kind == CHARGE_DECLINED ? "declined"
                                                     : "failed";
    bool ok = x->ans.kind == CHARGE_SUCCEEDED;
    if (!ok) build_outcome_hex(x, st);
    pg_array_add_str(&a[0], x->m->ev->payment_id);
    pg_array_add_str(&a[1], s);
    pg_array_add_str(&a[2], ok ? x->ans.charge_id : NULL);
    pg_array_add_str(&a[3], x->ans.kind == CHARGE_DECLINED ? x->ans.decline_code : NULL);
    if (ok) pg_array_add_int(&a[4], x->ans.fee_minor);
    else pg_array_add_str(&a[4], NULL);
    pg_array_add_str(&a[5], x->ans.error[0] ? x->ans.error : NULL);
    pg_array_add_str(&p[0], x->m->ev->payment_id);
    pg_array_add_str(&p[1], s);
    pg_array_add_str(&p[2], ok ? x->ans.charge_id : NULL);
    if (ok) pg_array_add_int(&p[3], x->ans.fee_minor);
    else pg_array_add_str(&p[3], NULL);
    pg_array_add_str(&p[4], x->record_outcome_hex);
    pg_array_add_str(&p[5], ok ? NULL
                      : x->ans.kind == CHARGE_DECLINED ? x->ans.decline_code
                                                       : "processor_rejected");
  }
  int rc = 0;
  if (count) {
    const char *pa[] = {pg_array_finish(&a[0]), st->processor, pg_array_finish(&a[1]),
                        pg_array_finish(&a[2]), pg_array_finish(&a[3]), pg_array_finish(&a[4]),
                        pg_array_finish(&a[5])};
    const char *pp[] = {pg_array_finish(&p[0]), st->processor, pg_array_finish(&p[1]),
                        pg_array_finish(&p[2]), pg_array_finish(&p[3]), pg_array_finish(&p[4]),
                        pg_array_finish(&p[5])};
    pg_stmt stmts[] = {{SQL_RECORD_ATTEMPTS, 7, pa}, {SQL_RECORD_PAYMENTS, 7, pp}};
    PGresult *res[2];
    char err[512];
    rc = pg_pipeline(&ctx->pg, stmts, 2, res, err, sizeof err);
    if (rc) log_warn("recording charge answers failed: %s", err);
    pg_results_clear(res, 2);
  }
  for (int i = 0; i < 6; i++) pg_array_free(&a[i]), pg_array_free(&p[i]);
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
  char url[1024], hdr[512], key[256];
  memset(c, 0, sizeof *c);
  c->item = x;
  c->easy = curl_easy_init();
  if (!c->easy) abort();
  snprintf(url, sizeof url, "%s/v1/charges", st->url);
  c->body = stripe_build_body(in->amount->amount_minor, in->amount->currency,
                              in->payment_method->id, x->m->ev->payment_id);
  charge_idempotency_key(x->m->ev->payment_id, st->processor, key, sizeof key);
  snprintf(hdr, sizeof hdr, "Idempotency-Key: %s", key);
  c->hdrs = curl_slist_append(c->hdrs, hdr);
  snprintf(hdr, sizeof hdr, "Authorization: Bearer %s", st->api_key);
  c->hdrs = curl_slist_append(c->hdrs, hdr);
  c->hdrs = curl_slist_append(c->hdrs, "Content-Type: application/x-www-form-urlencoded");
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

static void call_finish(http_call *c, CURLcode cc) {
  charge_answer *a = &c->item->ans;
  if (cc == CURLE_OK) {
    long status = 0;
    curl_easy_getinfo(c->easy, CURLINFO_RESPONSE_CODE, &status);
    stripe_map_response(status, c->resp, c->resp_len, a);
  } else {
    memset(a, 0, sizeof *a);
    /* Refused before any byte was sent: the processor provably has nothing. */
    a->kind = cc == CURLE_COULDNT_CONNECT ? CHARGE_NOT_SENT : CHARGE_UNKNOWN;
    snprintf(a->error, sizeof a->error, "%.150s", c->errbuf[0] ? c->errbuf : curl_easy_strerror(cc));
  }
}

/* Sends every call concurrently (up to max_inflight at once) and waits. */
static void run_calls(charge_state *st, http_call *calls, size_t n) {
  for (size_t i = 0; i < n; i++) curl_multi_add_handle(st->multi, calls[i].easy);
  int running = 1;
  while (running) {
    curl_multi_perform(st->multi, &running);
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

/* Charges every item marked to_send, retrying what is not definite with
 * exponential back-off and jitter. Returns how many stay ambiguous. */
static size_t charge_all(charge_state *st, citem *it, size_t n) {
  http_call *calls = calloc(n + 1, sizeof *calls);
  if (!calls) abort();
  size_t pending = 0;
  long backoff = 100;
  for (long long attempt = 0; attempt < st->max_tries; attempt++) {
    size_t nc = 0;
    for (size_t i = 0; i < n; i++)
      if (it[i].to_send && !it[i].answered) call_setup(&calls[nc++], st, &it[i]);
    if (nc == 0) break;
    run_calls(st, calls, nc);
    pending = 0;
    for (size_t i = 0; i < nc; i++) {
      citem *x = calls[i].item;
      charge_kind k = x->ans.kind;
      x->answered = k == CHARGE_SUCCEEDED || k == CHARGE_DECLINED || k == CHARGE_REJECTED;
      if (!x->answered) {
        pending++;
        log_ctx lc = {x->m->topic, x->m->partition, x->m->offset, x->m->ev->payment_id, NULL};
        log_at(LOG_WARN, &lc, "charge attempt %lld not definite (%s): %s", attempt + 1,
               charge_kind_name(k), x->ans.error);
      }
      call_cleanup(&calls[i]);
    }
    if (pending == 0) break;
    if (attempt + 1 < st->max_tries) sleep_ms(backoff + rand() % (backoff / 2 + 1));
    backoff *= 2;
  }
  free(calls);
  return pending;
}

/* ---- emitting --------------------------------------------------------------- */

static void emit(stage_ctx *ctx, const charge_state *st, citem *x, outbox *out) {
  ps_event *ev = x->m->ev;
  if (x->has_attempt && strcmp(x->state, "succeeded") == 0) {
    ps_charge ch = PAYMENTS__V1__CHARGE_RESULT__INIT;
    ch.status = PAYMENTS__V1__CHARGE_STATUS__CHARGE_STATUS_SUCCEEDED;
    ch.processor = (char *)st->processor;
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
  size_t ambiguous = 0;
  if (rc == 0) {
    for (size_t i = 0; i < nv; i++)
      it[i].to_send = it[i].has_attempt && strcmp(it[i].state, "charging") == 0;
    ambiguous = charge_all(st, it, nv);
    rc = record_answers(ctx, st, it, nv);
  }
  if (rc == 0 && nv) rc = read_state(ctx, st, it, nv, false);
  if (rc == 0 && ambiguous) {
    /* Nothing is given up or sent elsewhere: the batch is retried, and the
     * same idempotency key makes the processor answer the first charge. */
    log_warn("%zu charges still ambiguous; retrying the batch", ambiguous);
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

/* Reads a secret from NAME or from the file named by NAME_FILE. */
static char *read_secret(const char *name) {
  char fname[128];
  snprintf(fname, sizeof fname, "%s_FILE", name);
  const char *path = cfg_env_str(fname, NULL);
  if (!path) return strdup(cfg_env_str(name, "sk_test_paystream"));
  FILE *f = fopen(path, "r");
  if (!f) return NULL;
  char buf[512] = "";
  if (!fgets(buf, sizeof buf, f)) buf[0] = '\0';
  fclose(f);
  buf[strcspn(buf, "\r\n")] = '\0';
  return strdup(buf);
}

static int charge_init(stage_ctx *ctx, char *err, size_t errlen) {
  static charge_state st;
  st.processor = cfg_env_str("PAYSTREAM_PROCESSOR_NAME", "stripe");
  st.url = cfg_env_str("PAYSTREAM_PROCESSOR_URL", "http://127.0.0.1:12111");
  st.api_key = read_secret("PAYSTREAM_PROCESSOR_API_KEY");
  if (!st.api_key) {
    snprintf(err, errlen, "PAYSTREAM_PROCESSOR_API_KEY_FILE: could not read the file");
    return -1;
  }
  if (cfg_env_int("PAYSTREAM_PROCESSOR_TIMEOUT_MS", 10000, 1, 600000, &st.timeout_ms, err,
                  errlen) ||
      cfg_env_int("PAYSTREAM_CHARGE_MAX_INFLIGHT", 500, 1, 10000, &st.max_inflight, err, errlen) ||
      cfg_env_int("PAYSTREAM_CHARGE_MAX_TRIES", 4, 1, 100, &st.max_tries, err, errlen))
    return -1;
  curl_global_init(CURL_GLOBAL_DEFAULT);
  st.multi = curl_multi_init();
  curl_multi_setopt(st.multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, (long)st.max_inflight);
  curl_multi_setopt(st.multi, CURLMOPT_MAX_HOST_CONNECTIONS, (long)st.max_inflight);
  srand((unsigned)time(NULL));
  ctx->state = &st;
  return 0;
}

static void charge_destroy(stage_ctx *ctx) {
  charge_state *st = ctx->state;
  if (!st) return;
  curl_multi_cleanup(st->multi);
  free(st->api_key);
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
