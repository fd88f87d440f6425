/* charge: durable attempts, concurrent HTTP, recorded answers — as a
 * continuous pipeline. Every payment is an item that moves through phases
 * on its own: read from Postgres, sent (the send counted first), answered,
 * recorded, emitted. Each cycle admits new messages, starts what is ready
 * while in-flight slots are free, settles whatever answered, records and
 * emits what finished; kloop commits each partition up to its first
 * unfinished payment. A slow answer holds only its own payment. */
#include "charge.h"

#include <curl/curl.h>
#include <errno.h>
#include <glib.h>
#include <sys/epoll.h>
#include <unistd.h>
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

typedef enum phase {
  PH_NEW,      /* (re-)read its state from Postgres */
  PH_WAIT_DUP, /* another message of the same payment goes first */
  PH_READY,    /* a live `charging` attempt: send at next_try_ms */
  PH_INFLIGHT, /* a request is out */
  PH_RECORD,   /* a definite answer to record */
  PH_DONE,     /* emit and drop */
} phase;

struct citem;

typedef struct http_call {
  struct citem *item;
  CURL *easy;
  CURLM *multi;            /* the shard it runs in */
  struct curl_slist *hdrs;
  char *body;
  char *resp;
  size_t resp_len;
  char errbuf[CURL_ERROR_SIZE];
  bool paypal;
  const processor *proc;
} http_call;

typedef struct citem {
  ps_event *ev;            /* owned */
  int32_t partition;
  int64_t offset;
  phase ph;
  bool active;             /* holds its payment's place in the active set */
  bool known, has_attempt;
  char state[16];          /* live attempt's state */
  int proc;                /* live attempt's processor index, -1 if unknown */
  int sends, refused;      /* of the live attempt (Postgres is the truth) */
  int64_t created_ms;      /* the live attempt's creation, on our monotonic clock */
  char *outcome_hex;
  char charge_id[128];
  int64_t fee_minor;
  charge_answer ans;       /* the answer of the last request */
  bool answered;           /* ans is definite and must be recorded */
  char fail_code[32];      /* set when we end the payment ourselves */
  bool to_send;            /* chosen to send this cycle */
  bool unread;             /* its state could not be learnt this cycle */
  bool refused_now;        /* a refused send to add to the proof */
  bool failover;           /* nobody received it: move to the next processor */
  int tries;               /* ambiguous answers so far, for the back-off */
  int64_t next_try_ms;
  char *record_outcome_hex;
  void *raw, *key;         /* the message, for the DLQ */
  size_t rawlen, keylen;
  http_call call;
} citem;

#define CHARGE_SHARD_CONNS 64

typedef struct shard {
  CURLM *multi;
  int idx, epfd;
  int64_t timer_due;       /* curl's timeout on our monotonic clock, -1: none */
} shard;

typedef struct charge_state {
  processor proc[CHARGE_MAX_PROCESSORS]; /* primary first, then the backup */
  int nproc;
  long long timeout_ms, max_inflight, deadline_ms;
  /* The transfers are driven by socket events (curl_multi_socket_action on
   * epoll): a cycle costs what moved, not what is in flight — with a slow
   * processor thousands of requests wait, and perform/poll would visit
   * every one of them each cycle. They are spread over multi handles of at
   * most CHARGE_SHARD_CONNS connections each: to start a request, libcurl
   * walks its multi's connections to the host looking for an idle one
   * (a fifth of the worker's CPU with 2,000 in flight in one multi). */
  struct shard *shards;
  int nshards, next_shard;
  int epfd;
  CURL **pool;             /* finished easy handles, reset, for the next calls */
  size_t npool;
  citem **items;           /* kept, in admission order */
  size_t n, cap;
  size_t inflight;
  GHashTable *active;      /* payment ids with an item past PH_WAIT_DUP */
  metric *m_inflight, *m_pending;
} charge_state;

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

/* The first attempt of a payment goes to the primary; sends (from $3) counts
 * a first send that leaves right after this commits. */
static const char SQL_BEGIN_ATTEMPTS[] =
    "INSERT INTO charge_attempts (payment_id, processor, idempotency_key, amount_minor, currency,"
    " sends) SELECT p.payment_id, $2, 'paystream:' || p.payment_id || ':' || $2, p.amount_minor,"
    " p.currency, u.s FROM unnest($1::text[], $3::int[]) AS u(id, s)"
    " JOIN payments p ON p.payment_id = u.id"
    " WHERE p.status IN ('scored', 'charging')"
    " AND NOT EXISTS (SELECT 1 FROM charge_attempts a WHERE a.payment_id = p.payment_id)"
    " ON CONFLICT DO NOTHING RETURNING payment_id";

/* A payment whose first attempt was opened above is `charging` now. */
static const char SQL_MARK_CHARGING[] =
    "UPDATE payments SET status = 'charging', updated_at = now()"
    " WHERE payment_id = ANY($1::text[]) AND status = 'scored'";

/* Each payment with its live (not abandoned) attempt, if any: for what the
 * cycle's own writes do not tell (redeliveries, failovers, races). */
static const char SQL_READ[] =
    "SELECT u.ord, encode(p.outcome, 'hex'), a.state, a.processor_charge_id,"
    " a.fee_minor, a.processor, a.sends, a.refused,"
    " (extract(epoch FROM now() - a.created_at) * 1000)::bigint"
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
    " WHERE a.payment_id = u.id AND a.processor = u.proc AND a.state = 'charging'"
    " RETURNING a.payment_id";

static const char SQL_RECORD_PAYMENTS[] =
    "UPDATE payments p SET status = CASE u.s WHEN 'succeeded' THEN 'charged' ELSE u.s END,"
    " outcome = decode(u.o, 'hex'), error_code = u.code, processor = u.proc,"
    " processor_charge_id = u.cid, fee_minor = u.fee, updated_at = now()"
    " FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::bigint[], $6::text[],"
    " $7::text[]) AS u(id, proc, s, cid, fee, o, code)"
    " WHERE p.payment_id = u.id AND p.status = 'charging'"
    " RETURNING p.payment_id";

/* ---- state in Postgres: one round trip per cycle ------------------------------ */

/* Fills items from a SQL_READ result (u.ord is the 1-based index). */
static void parse_read(const charge_state *st, PGresult *r, citem **it, size_t n, int64_t now) {
  for (int row = 0; row < PQntuples(r); row++) {
    long ord = strtol(PQgetvalue(r, row, 0), NULL, 10);
    if (ord < 1 || (size_t)ord > n) continue;
    citem *x = it[ord - 1];
    x->known = true;
    free(x->outcome_hex);
    x->outcome_hex = PQgetisnull(r, row, 1) ? NULL : strdup(PQgetvalue(r, row, 1));
    x->has_attempt = !PQgetisnull(r, row, 2);
    snprintf(x->state, sizeof x->state, "%s", PQgetvalue(r, row, 2));
    snprintf(x->charge_id, sizeof x->charge_id, "%s", PQgetvalue(r, row, 3));
    x->fee_minor = strtoll(PQgetvalue(r, row, 4), NULL, 10);
    x->proc = x->has_attempt ? proc_index(st, PQgetvalue(r, row, 5)) : -1;
    x->sends = atoi(PQgetvalue(r, row, 6));
    x->refused = atoi(PQgetvalue(r, row, 7));
    x->created_ms = now - strtoll(PQgetvalue(r, row, 8), NULL, 10);
  }
}

static void build_outcome_hex(citem *x, const charge_state *st) {
  ps_event *ev = x->ev;
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
  free(x->record_outcome_hex);
  x->record_outcome_hex = outcome_pack_hex(&ob.o);
  ev->charge = saved;
}

/* The first column of every row of r, as a set (valid while r lives). */
static GHashTable *returned_ids(PGresult *r) {
  GHashTable *h = g_hash_table_new(g_str_hash, g_str_equal);
  for (int row = 0; r && row < PQntuples(r); row++) g_hash_table_add(h, PQgetvalue(r, row, 0));
  return h;
}

/* The attempt state a definite answer is recorded as. */
static const char *answer_state(const citem *x) {
  return x->ans.kind == CHARGE_SUCCEEDED  ? "succeeded"
         : x->ans.kind == CHARGE_DECLINED ? "declined"
                                          : "failed";
}

/* Its answer was recorded in this cycle's transaction: the state is what
 * was written. */
static void know_recorded(citem *x) {
  bool ok = x->ans.kind == CHARGE_SUCCEEDED;
  x->known = x->has_attempt = true;
  snprintf(x->state, sizeof x->state, "%s", answer_state(x));
  free(x->outcome_hex);
  x->outcome_hex = ok || !x->record_outcome_hex ? NULL : strdup(x->record_outcome_hex);
  snprintf(x->charge_id, sizeof x->charge_id, "%s", ok ? x->ans.charge_id : "");
  x->fee_minor = ok ? x->ans.fee_minor : 0;
}

/* Its first attempt was opened at the primary in this cycle's transaction
 * (a send counted with it has not been answered: local sends stay 0). */
static void know_opened(citem *x, int64_t now) {
  x->known = x->has_attempt = true;
  snprintf(x->state, sizeof x->state, "charging");
  free(x->outcome_hex);
  x->outcome_hex = NULL;
  x->charge_id[0] = '\0';
  x->fee_minor = 0;
  x->proc = 0;
  x->sends = x->refused = 0;
  x->created_ms = now;
}

/* Reads the state of items the cycle's writes did not tell, in a second
 * round trip (the first has committed; this one only reads). Items it
 * cannot read are marked unread and looked at again later. */
static void read_state(stage_ctx *ctx, const charge_state *st, citem **it, size_t n) {
  if (!n) return;
  pg_array ids;
  pg_arrays_init(&ids, 1);
  for (size_t i = 0; i < n; i++) pg_array_add_str(&ids, it[i]->ev->payment_id);
  const char *p[1];
  pg_arrays_finish(&ids, 1, p);
  pg_stmt stmt = {SQL_READ, 1, p};
  PGresult *res[1] = {0};
  char err[512];
  if (pg_pipeline(&ctx->pg, &stmt, 1, res, err, sizeof err) == 0) {
    parse_read(st, res[0], it, n, ps_mono_ms());
  } else {
    log_warn("charge state read failed (read again later): %s", err);
    for (size_t i = 0; i < n; i++) it[i]->unread = true;
  }
  pg_results_clear(res, 1);
  pg_arrays_free(&ids, 1);
}

/* What one cycle asks of Postgres. Every group may be empty. */
typedef struct trip {
  citem **fresh; size_t nfresh; /* open first attempts (send counted for the eager), read */
  citem **book; size_t nbook;   /* refused sends; failovers */
  citem **rec; size_t nrec;     /* definite answers to record, then read back */
  citem **send; size_t nsend;   /* sends to count before they leave */
  size_t neager;                /* the first neager fresh are sent right after the trip */
} trip;

/* Statement parameters: the arrays, finished, live until the trip ends. */
#define TRIP_ARRAYS 20

/* Everything the cycle must make durable or learn, in one transaction and
 * one round trip, in this order: refused sends and failovers; answers
 * (then read back: the truth to emit); first attempts (then read); counted
 * sends (RETURNING: only still-live attempts may be sent). Returns 0, or -1
 * when nothing of it happened. */
static int round_trip(stage_ctx *ctx, const charge_state *st, trip *t) {
  pg_array a[TRIP_ARRAYS];
  pg_arrays_init(a, TRIP_ARRAYS);
  /* book: 0 refused ids, 1 their processors, 2 failover ids, 3 processors, 4 why, 5 next */
  for (size_t i = 0; i < t->nbook; i++) {
    const citem *x = t->book[i];
    if (x->refused_now) {
      pg_array_add_str(&a[0], x->ev->payment_id);
      pg_array_add_str(&a[1], st->proc[x->proc].name);
    }
    if (x->failover) {
      pg_array_add_str(&a[2], x->ev->payment_id);
      pg_array_add_str(&a[3], st->proc[x->proc].name);
      pg_array_add_str(&a[4], "connection refused or circuit open");
      pg_array_add_str(&a[5], st->proc[x->proc + 1].name);
    }
  }
  /* rec: 6..11 attempts (id, proc, state, charge id, decline, fee, error
   * shares 6,7,8,9), payments' outcome and code */
  for (size_t i = 0; i < t->nrec; i++) {
    citem *x = t->rec[i];
    const char *s = answer_state(x);
    bool ok = x->ans.kind == CHARGE_SUCCEEDED;
    if (!ok && !x->fail_code[0]) snprintf(x->fail_code, sizeof x->fail_code, "processor_rejected");
    if (!ok) build_outcome_hex(x, st);
    pg_array_add_str(&a[6], x->ev->payment_id);
    pg_array_add_str(&a[7], st->proc[x->proc].name);
    pg_array_add_str(&a[8], s);
    pg_array_add_str(&a[9], ok ? x->ans.charge_id : NULL);
    pg_array_add_str(&a[10], x->ans.kind == CHARGE_DECLINED ? x->ans.decline_code : NULL);
    if (ok) pg_array_add_int(&a[11], x->ans.fee_minor);
    else pg_array_add_str(&a[11], NULL);
    pg_array_add_str(&a[12], x->ans.error[0] ? x->ans.error : NULL);
    pg_array_add_str(&a[13], x->record_outcome_hex);
    pg_array_add_str(&a[14], ok ? NULL
                      : x->ans.kind == CHARGE_DECLINED ? x->ans.decline_code
                                                       : x->fail_code);
  }
  /* fresh: 15 ids, 18 their counted sends (1 for the eager); send: 16 ids, 17 processors */
  for (size_t i = 0; i < t->nfresh; i++) {
    pg_array_add_str(&a[15], t->fresh[i]->ev->payment_id);
    pg_array_add_int(&a[18], i < t->neager ? 1 : 0);
  }
  for (size_t i = 0; i < t->nsend; i++) {
    pg_array_add_str(&a[16], t->send[i]->ev->payment_id);
    pg_array_add_str(&a[17], st->proc[t->send[i]->proc].name);
  }
  const char *p[TRIP_ARRAYS];
  pg_arrays_finish(a, TRIP_ARRAYS, p);
  const char *refused[] = {p[0], p[1]}, *abandon[] = {p[2], p[3], p[4]}, *next[] = {p[2], p[5]};
  const char *att[] = {p[6], p[7], p[8], p[9], p[10], p[11], p[12]};
  const char *pay[] = {p[6], p[7], p[8], p[9], p[11], p[13], p[14]};
  const char *fresh[] = {p[15], st->proc[0].name, p[18]};
  const char *sends[] = {p[16], p[17]};
  pg_stmt stmts[12];
  int ns = 0, i_att = -1, i_pay = -1, i_begin = -1, i_send = -1;
  if (t->nbook) {
    stmts[ns++] = (pg_stmt){SQL_COUNT_REFUSED, 2, refused};
    stmts[ns++] = (pg_stmt){SQL_ABANDON, 3, abandon};
    stmts[ns++] = (pg_stmt){SQL_FAILOVER, 2, next};
  }
  if (t->nrec) {
    i_att = ns;
    stmts[ns++] = (pg_stmt){SQL_RECORD_ATTEMPTS, 7, att};
    i_pay = ns;
    stmts[ns++] = (pg_stmt){SQL_RECORD_PAYMENTS, 7, pay};
  }
  if (t->nfresh) {
    i_begin = ns;
    stmts[ns++] = (pg_stmt){SQL_BEGIN_ATTEMPTS, 3, fresh};
    stmts[ns++] = (pg_stmt){SQL_MARK_CHARGING, 1, fresh};
  }
  if (t->nsend) {
    i_send = ns;
    stmts[ns++] = (pg_stmt){SQL_COUNT_SENDS, 2, sends};
  }
  int rc = 0;
  if (ns) {
    PGresult *res[12] = {0};
    char err[512];
    rc = pg_pipeline(&ctx->pg, stmts, ns, res, err, sizeof err);
    if (rc) {
      log_warn("charge bookkeeping failed (retried next cycle): %s", err);
    } else {
      int64_t now = ps_mono_ms();
      /* What our own writes say needs no read: an answer recorded in both
       * tables, an attempt opened here. The rest is read below. */
      citem **unknown = malloc((t->nrec + t->nfresh + 1) * sizeof *unknown);
      if (!unknown) abort();
      size_t nunknown = 0;
      if (i_att >= 0) {
        GHashTable *att_done = returned_ids(res[i_att]), *pay_done = returned_ids(res[i_pay]);
        for (size_t i = 0; i < t->nrec; i++) {
          citem *x = t->rec[i];
          if (g_hash_table_contains(att_done, x->ev->payment_id) &&
              g_hash_table_contains(pay_done, x->ev->payment_id))
            know_recorded(x);
          else
            unknown[nunknown++] = x;
        }
        g_hash_table_destroy(att_done);
        g_hash_table_destroy(pay_done);
      }
      if (i_begin >= 0) {
        GHashTable *opened = returned_ids(res[i_begin]);
        for (size_t i = 0; i < t->nfresh; i++) {
          citem *x = t->fresh[i];
          if (g_hash_table_contains(opened, x->ev->payment_id)) {
            know_opened(x, now);
            x->to_send = i < t->neager; /* its first send is counted: it leaves right after */
          } else {
            x->to_send = false;
            unknown[nunknown++] = x;
          }
        }
        g_hash_table_destroy(opened);
      }
      if (i_send >= 0) {
        GHashTable *live = returned_ids(res[i_send]);
        for (size_t i = 0; i < t->nsend; i++)
          t->send[i]->to_send = g_hash_table_contains(live, t->send[i]->ev->payment_id);
        g_hash_table_destroy(live);
      }
      read_state(ctx, st, unknown, nunknown);
      free(unknown);
    }
    pg_results_clear(res, ns);
  }
  pg_arrays_free(a, TRIP_ARRAYS);
  return rc;
}

/* ---- HTTP through the multi interface --------------------------------------- */

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

static void call_setup(http_call *c, charge_state *st, citem *x) {
  const ps_intent *in = x->ev->intent;
  const processor *pr = &st->proc[x->proc];
  char url[1024], hdr[512], key[256];
  memset(c, 0, sizeof *c);
  c->item = x;
  c->paypal = pr->paypal;
  c->proc = pr;
  c->easy = st->npool ? st->pool[--st->npool] : curl_easy_init();
  if (!c->easy) abort();
  charge_idempotency_key(x->ev->payment_id, pr->name, key, sizeof key);
  if (pr->paypal) {
    snprintf(url, sizeof url, "%s/v2/payments/captures", pr->url);
    c->body = paypal_build_body(in->amount->amount_minor, in->amount->currency,
                                in->payment_method->id, x->ev->payment_id);
    snprintf(hdr, sizeof hdr, "PayPal-Request-Id: %s", key);
    c->hdrs = curl_slist_append(c->hdrs, hdr);
    c->hdrs = curl_slist_append(c->hdrs, "Content-Type: application/json");
  } else {
    snprintf(url, sizeof url, "%s/v1/charges", pr->url);
    c->body = stripe_build_body(in->amount->amount_minor, in->amount->currency,
                                in->payment_method->id, x->ev->payment_id);
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

/* The easy handle goes back to the pool (a handle and its buffers are
 * allocated once, not per charge). */
static void call_cleanup(charge_state *st, http_call *c) {
  if (st->npool < (size_t)st->max_inflight) {
    curl_easy_reset(c->easy);
    st->pool[st->npool++] = c->easy;
  } else {
    curl_easy_cleanup(c->easy);
  }
  curl_slist_free_all(c->hdrs);
  free(c->body);
  free(c->resp);
  memset(c, 0, sizeof *c);
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

/* ---- an item's way through -------------------------------------------------- */

static log_ctx item_ctx(const stage_ctx *ctx, const citem *x) {
  log_ctx lc = {ctx->cfg->topics.fraud_scored, x->partition, x->offset, x->ev->payment_id, NULL};
  return lc;
}

/* Ends the payment ourselves: recorded `failed` with code, never charged. */
static void end_failed(citem *x, const char *code, const char *why) {
  x->answered = true;
  x->failover = false;
  x->ans.kind = CHARGE_REJECTED;
  snprintf(x->fail_code, sizeof x->fail_code, "%s", code);
  snprintf(x->ans.error, sizeof x->ans.error, "%s", why);
  x->ph = PH_RECORD;
}

/* After its state was read: what the item does next. */
static void classify(stage_ctx *ctx, citem *x, int64_t now) {
  x->answered = false;
  x->to_send = x->refused_now = x->failover = false;
  if (!x->known || !x->has_attempt || strcmp(x->state, "charging") != 0) {
    x->ph = PH_DONE;
    return;
  }
  if (x->proc < 0) {
    /* Its processor is no longer configured: it may hold the charge, so
     * nothing else may be tried. Look again later; an operator must act. */
    log_ctx lc = item_ctx(ctx, x);
    log_at(LOG_ERROR, &lc, "live attempt at a processor that is not configured; waiting");
    x->ph = PH_NEW;
    x->next_try_ms = now + 5000;
    return;
  }
  x->ph = PH_READY;
}

/* A finished request: the breaker learns, a refused send adds to the proof,
 * a definite answer is recorded, anything else waits and is retried on the
 * same processor with the same key. */
static void settle(stage_ctx *ctx, charge_state *st, citem *x, int64_t now) {
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
  x->ph = PH_READY;
  if (k == CHARGE_SUCCEEDED || k == CHARGE_DECLINED || k == CHARGE_REJECTED) {
    x->answered = true;
    x->ph = PH_RECORD;
    return;
  }
  if (k == CHARGE_NOT_SENT) {
    x->refused++;
    x->refused_now = true;
    if (x->sends == x->refused && x->proc + 1 < st->nproc) {
      x->failover = true; /* nobody has it: safe to go elsewhere */
      return;
    }
    /* The last processor: wait for it, as for an ambiguous answer. */
  }
  log_ctx lc = item_ctx(ctx, x);
  log_at(LOG_WARN, &lc, "charge at %s not definite (%s): %s", pr->name, charge_kind_name(k),
         x->ans.error);
  x->next_try_ms = now + charge_backoff_ms(x->tries++, (double)rand() / ((double)RAND_MAX + 1));
}

/* ---- the pending set ---------------------------------------------------------- */

static void item_free(charge_state *st, citem *x) {
  if (x->ph == PH_INFLIGHT) {
    curl_multi_remove_handle(x->call.multi, x->call.easy);
    call_cleanup(st, &x->call);
    breaker_release(&st->proc[x->proc].br);
    st->inflight--;
  }
  if (x->active) g_hash_table_remove(st->active, x->ev->payment_id);
  event_free(x->ev);
  free(x->outcome_hex);
  free(x->record_outcome_hex);
  free(x->raw);
  free(x->key);
  free(x);
}

static void keep(charge_state *st, citem *x) {
  if (st->n == st->cap) {
    size_t cap = st->cap ? st->cap * 2 : 256;
    citem **nv = realloc(st->items, cap * sizeof *nv);
    if (!nv) abort();
    st->items = nv;
    st->cap = cap;
  }
  st->items[st->n++] = x;
}

/* ---- the cycle ------------------------------------------------------------------ */

/* Starts the request of an item whose send is counted. */
static void start_call(charge_state *st, citem *x) {
  call_setup(&x->call, st, x);
  x->call.multi = st->shards[st->next_shard].multi;
  st->next_shard = (st->next_shard + 1) % st->nshards;
  curl_multi_add_handle(x->call.multi, x->call.easy);
  x->ph = PH_INFLIGHT;
  x->to_send = false;
  st->inflight++;
}

/* Plans the cycle's round trip: duplicates whose turn came and other items
 * to (re-)read; due items to send while slots are free (deadline first,
 * then the breaker decides between sending, failing over — nobody ever
 * received it — and waiting); refused sends, failovers and answers to make
 * durable. */
static void plan(charge_state *st, trip *t, int64_t now) {
  size_t room = st->inflight < (size_t)st->max_inflight ? (size_t)st->max_inflight - st->inflight : 0;
  for (size_t i = 0; i < st->n; i++) {
    citem *x = st->items[i];
    if (x->ph == PH_WAIT_DUP && !g_hash_table_contains(st->active, x->ev->payment_id)) {
      g_hash_table_add(st->active, x->ev->payment_id);
      x->active = true;
      x->ph = PH_NEW;
      x->next_try_ms = 0;
    }
    if (x->ph == PH_NEW && x->next_try_ms <= now) {
      t->fresh[t->nfresh++] = x;
      continue;
    }
    if (x->ph == PH_READY && !x->failover && x->next_try_ms <= now) {
      if (now - x->created_ms >= st->deadline_ms) {
        /* Nobody ever received it: not charged. Else the processor may have it. */
        char why[160];
        if (x->sends == x->refused) {
          end_failed(x, "processor_unavailable",
                     "no processor could be reached before the deadline; the payment was not "
                     "charged");
        } else {
          snprintf(why, sizeof why,
                   "no definite answer from %s before the deadline; not retried elsewhere",
                   st->proc[x->proc].name);
          end_failed(x, "processor_timeout", why);
        }
      } else if (t->nsend < room) {
        if (breaker_allow(&st->proc[x->proc].br, now)) {
          t->send[t->nsend++] = x;
        } else if (x->sends == x->refused && x->proc + 1 < st->nproc) {
          x->failover = true; /* circuit open and never received */
        } else {
          /* It may have it, or there is nowhere else: wait for the circuit. */
          x->next_try_ms = now + 100;
        }
      }
    }
    if (x->refused_now || x->failover) t->book[t->nbook++] = x;
    if (x->ph == PH_RECORD) t->rec[t->nrec++] = x;
  }
  /* First attempts go out right after the trip, as many as have a slot
   * after the due sends, when the primary is healthy; the rest are opened
   * now and sent when slots free (counted then, in a later trip). */
  size_t left = room > t->nsend ? room - t->nsend : 0;
  t->neager = breaker_get_state(&st->proc[0].br, now) != BREAKER_CLOSED ? 0
              : t->nfresh < left                                          ? t->nfresh
                                                                          : left;
  for (int p = 0; p < st->nproc; p++)
    export_breaker(&st->proc[p], breaker_get_state(&st->proc[p].br, now));
}

/* Applies the trip's results: sends leave, reads classify, failovers are
 * re-read next cycle. On failure nothing happened: retry later. */
static void apply(stage_ctx *ctx, charge_state *st, trip *t, int rc, int64_t now) {
  for (size_t i = 0; i < t->nsend; i++) {
    citem *x = t->send[i];
    if (rc == 0 && x->to_send) {
      start_call(st, x);
      continue;
    }
    breaker_release(&st->proc[x->proc].br); /* not sent: no verdict */
    if (rc) x->next_try_ms = now + 500;
    else x->ph = PH_NEW; /* moved on elsewhere: read the truth */
  }
  for (size_t i = 0; i < t->nbook; i++) {
    citem *x = t->book[i];
    if (x->failover && rc == 0) {
      log_ctx lc = item_ctx(ctx, x);
      log_at(LOG_WARN, &lc, "%s never received the charge; failing over to %s",
             st->proc[x->proc].name, st->proc[x->proc + 1].name);
    }
    /* Failed over, or the proof could not be written: Postgres says what
     * is live now (without the proof, it stays on the same processor). */
    if ((x->failover || rc) && x->ph != PH_RECORD) {
      x->ph = PH_NEW;
      x->next_try_ms = rc ? now + 500 : 0;
    }
    x->refused_now = x->failover = false;
  }
  for (size_t i = 0; i < t->nrec; i++) {
    citem *x = t->rec[i];
    if (rc) continue; /* recorded next cycle */
    if (x->unread) {
      x->unread = false; /* recorded: learn its state from Postgres */
      x->ph = PH_NEW;
      x->next_try_ms = now + 500;
      continue;
    }
    classify(ctx, x, now);
  }
  for (size_t i = 0; i < t->nfresh; i++) {
    citem *x = t->fresh[i];
    if (rc || x->unread) {
      x->unread = false;
      x->next_try_ms = now + 500;
      continue;
    }
    bool send = x->to_send;
    classify(ctx, x, now);
    if (send && x->ph == PH_READY) {
      breaker_allow(&st->proc[x->proc].br, now); /* closed: always */
      start_call(st, x);
    }
  }
}

/* curl says which sockets of a shard to watch for what. */
static int on_socket(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp) {
  (void)easy;
  (void)socketp;
  shard *sh = userp;
  if (what == CURL_POLL_REMOVE) {
    epoll_ctl(sh->epfd, EPOLL_CTL_DEL, fd, NULL); /* already gone if closed */
    return 0;
  }
  struct epoll_event ev = {.events = ((what & CURL_POLL_IN) ? EPOLLIN : 0u) |
                                     ((what & CURL_POLL_OUT) ? EPOLLOUT : 0u),
                           .data.u64 = (uint64_t)sh->idx << 32 | (uint32_t)fd};
  if (epoll_ctl(sh->epfd, EPOLL_CTL_MOD, fd, &ev) == 0) return 0;
  if (errno == ENOENT && epoll_ctl(sh->epfd, EPOLL_CTL_ADD, fd, &ev) == 0) return 0;
  log_error("charge: cannot watch a processor connection: %s", strerror(errno));
  return -1; /* curl fails that transfer: an unknown answer, retried */
}

/* curl says when a shard next needs to run without a socket event. */
static int on_timer(CURLM *multi, long timeout_ms, void *userp) {
  (void)multi;
  shard *sh = userp;
  sh->timer_due = timeout_ms < 0 ? -1 : ps_mono_ms() + timeout_ms;
  return 0;
}

/* Runs curl's due timers: new requests start, timeouts fire. */
static void run_timers(charge_state *st) {
  int running;
  int64_t now = ps_mono_ms();
  for (int k = 0; k < st->nshards; k++) {
    shard *sh = &st->shards[k];
    for (int i = 0; i < 8 && sh->timer_due >= 0 && sh->timer_due <= now; i++) {
      sh->timer_due = -1;
      curl_multi_socket_action(sh->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    }
  }
}

/* Drives the transfers, waiting at most wait_ms for a socket to move (or
 * curl's next timer), and settles every finished one. */
static void drive(stage_ctx *ctx, charge_state *st, int wait_ms) {
  int64_t now = ps_mono_ms();
  for (int k = 0; k < st->nshards; k++) {
    int64_t due = st->shards[k].timer_due;
    if (due >= 0 && due - now < wait_ms) wait_ms = due > now ? (int)(due - now) : 0;
  }
  struct epoll_event evs[256];
  int n = epoll_wait(st->epfd, evs, 256, wait_ms);
  for (int i = 0; i < n; i++) {
    int mask = ((evs[i].events & EPOLLIN) ? CURL_CSELECT_IN : 0) |
               ((evs[i].events & EPOLLOUT) ? CURL_CSELECT_OUT : 0) |
               ((evs[i].events & (EPOLLERR | EPOLLHUP)) ? CURL_CSELECT_ERR : 0);
    int running;
    curl_multi_socket_action(st->shards[evs[i].data.u64 >> 32].multi,
                             (curl_socket_t)(uint32_t)evs[i].data.u64, mask, &running);
  }
  run_timers(st);
  now = ps_mono_ms();
  for (int k = 0; k < st->nshards; k++) {
    CURLMsg *msg;
    int left;
    while ((msg = curl_multi_info_read(st->shards[k].multi, &left))) {
      if (msg->msg != CURLMSG_DONE) continue;
      http_call *c = NULL;
      curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&c);
      CURLcode cc = msg->data.result;
      curl_multi_remove_handle(c->multi, c->easy);
      citem *x = c->item;
      call_finish(c, cc);
      call_cleanup(st, c);
      st->inflight--;
      settle(ctx, st, x, now);
    }
  }
}

/* Emits what finished and drops it. */
static void emit_done(stage_ctx *ctx, charge_state *st, outbox *out) {
  size_t k = 0;
  for (size_t i = 0; i < st->n; i++) {
    citem *x = st->items[i];
    if (x->ph != PH_DONE) {
      st->items[k++] = x;
      continue;
    }
    ps_event *ev = x->ev;
    if (!x->known) {
      stage_msg m = {ev, ctx->cfg->topics.fraud_scored, x->partition, x->offset, x->raw,
                     x->rawlen, x->key, x->keylen};
      outbox_add_dlq(out, ctx->cfg->topics.dlq, "charge", &m, "unknown payment_id");
    } else if (x->has_attempt && strcmp(x->state, "succeeded") == 0 && x->proc >= 0) {
      ps_charge ch = PAYMENTS__V1__CHARGE_RESULT__INIT;
      ch.status = PAYMENTS__V1__CHARGE_STATUS__CHARGE_STATUS_SUCCEEDED;
      ch.processor = (char *)st->proc[x->proc].name;
      ch.processor_charge_id = x->charge_id;
      ch.fee_minor = x->fee_minor;
      ps_charge *saved = ev->charge;
      ev->charge = &ch;
      outbox_add_event(out, ctx->cfg->topics.charged, ev);
      ev->charge = saved;
    } else if (x->outcome_hex) {
      outbox_add_stored(out, ctx->cfg->topics.outcomes, ev->intent->idempotency_key,
                        x->outcome_hex);
    }
    item_free(st, x);
  }
  st->n = k;
}

/* One cycle: answers in (waiting at most wait_ms), one round trip to
 * Postgres, requests out, finished payments emitted. */
static void charge_progress(stage_ctx *ctx, outbox *out, int wait_ms) {
  charge_state *st = ctx->state;
  drive(ctx, st, st->inflight ? wait_ms : 0);
  citem **sel = malloc((4 * st->n + 1) * sizeof *sel);
  if (!sel) abort();
  trip t = {.fresh = sel, .book = sel + st->n, .rec = sel + 2 * st->n, .send = sel + 3 * st->n};
  int64_t now = ps_mono_ms();
  plan(st, &t, now);
  int rc = round_trip(ctx, st, &t);
  apply(ctx, st, &t, rc, ps_mono_ms());
  free(sel);
  run_timers(st); /* the new requests leave now */
  emit_done(ctx, st, out);
  metric_set(st->m_inflight, (double)st->inflight);
  metric_set(st->m_pending, (double)st->n);
  /* Nothing in flight (all waiting to retry): do not spin. */
  if (!st->inflight && wait_ms > 0 && st->n) {
    struct timespec ts = {0, (long)wait_ms * 1000000L};
    nanosleep(&ts, NULL);
  }
}

/* Admits new messages without a round trip: they are read (and, with a
 * healthy primary, sent) in the next cycle's trip. Never fails. */
static int charge_process(stage_ctx *ctx, stage_msg *msgs, size_t n, outbox *out) {
  charge_state *st = ctx->state;
  for (size_t i = 0; i < n; i++) {
    const ps_event *ev = msgs[i].ev;
    if (!ev->fraud || ev->fraud->decision != PAYMENTS__V1__FRAUD_DECISION__FRAUD_DECISION_ALLOW ||
        !ev->intent->amount || !ev->intent->payment_method) {
      outbox_add_dlq(out, ctx->cfg->topics.dlq, "charge", &msgs[i], "not allowed by fraud");
      continue;
    }
    citem *x = calloc(1, sizeof *x);
    if (!x) abort();
    x->ev = msgs[i].ev;
    msgs[i].ev = NULL; /* ours now */
    x->partition = msgs[i].partition;
    x->offset = msgs[i].offset;
    x->proc = -1;
    /* Kept for the DLQ, should Postgres not know the payment. */
    x->raw = malloc(msgs[i].rawlen + 1);
    x->key = malloc(msgs[i].keylen + 1);
    if (!x->raw || !x->key) abort();
    memcpy(x->raw, msgs[i].raw, msgs[i].rawlen);
    memcpy(x->key, msgs[i].key, msgs[i].keylen);
    x->rawlen = msgs[i].rawlen;
    x->keylen = msgs[i].keylen;
    keep(st, x);
    if (g_hash_table_contains(st->active, x->ev->payment_id)) {
      x->ph = PH_WAIT_DUP; /* per-payment order: after the one in progress */
      continue;
    }
    g_hash_table_add(st->active, x->ev->payment_id);
    x->active = true;
    x->ph = PH_NEW;
  }
  return 0;
}

static size_t charge_pending(stage_ctx *ctx) { return ((charge_state *)ctx->state)->n; }

/* Keeps up to twice the in-flight limit: a slot that frees is refilled at
 * once from items already read. */
static size_t charge_capacity(stage_ctx *ctx) {
  const charge_state *st = ctx->state;
  size_t max = 2 * (size_t)st->max_inflight;
  return st->n < max ? max - st->n : 0;
}

static void charge_floors(stage_ctx *ctx, int64_t *floor, int32_t nparts) {
  const charge_state *st = ctx->state;
  for (size_t i = 0; i < st->n; i++) {
    const citem *x = st->items[i];
    if (x->partition < nparts && (floor[x->partition] < 0 || x->offset < floor[x->partition]))
      floor[x->partition] = x->offset;
  }
}

/* A lost partition's payments are dropped mid-flight: their attempts are
 * durable, and the next owner resends with the same key. */
static void charge_revoked(stage_ctx *ctx, int32_t partition) {
  charge_state *st = ctx->state;
  size_t k = 0, dropped = 0;
  for (size_t i = 0; i < st->n; i++) {
    citem *x = st->items[i];
    if (x->partition == partition) {
      item_free(st, x);
      dropped++;
    } else {
      st->items[k++] = x;
    }
  }
  st->n = k;
  if (dropped) log_info("partition %d revoked: %zu payments left to the next owner", partition, dropped);
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
      cfg_env_int("PAYSTREAM_CHARGE_MAX_INFLIGHT", 1000, 1, 10000, &st.max_inflight, err, errlen) ||
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
  st.epfd = epoll_create1(EPOLL_CLOEXEC);
  st.pool = malloc((size_t)st.max_inflight * sizeof *st.pool);
  st.nshards = (int)((st.max_inflight + CHARGE_SHARD_CONNS - 1) / CHARGE_SHARD_CONNS);
  st.shards = calloc((size_t)st.nshards, sizeof *st.shards);
  if (st.epfd < 0 || !st.pool || !st.shards) {
    snprintf(err, errlen, "charge: cannot set up HTTP: %s", strerror(errno));
    return -1;
  }
  for (int k = 0; k < st.nshards; k++) {
    shard *sh = &st.shards[k];
    sh->idx = k;
    sh->epfd = st.epfd;
    sh->timer_due = -1;
    if (!(sh->multi = curl_multi_init())) {
      snprintf(err, errlen, "charge: cannot set up HTTP");
      return -1;
    }
    curl_multi_setopt(sh->multi, CURLMOPT_SOCKETFUNCTION, on_socket);
    curl_multi_setopt(sh->multi, CURLMOPT_SOCKETDATA, sh);
    curl_multi_setopt(sh->multi, CURLMOPT_TIMERFUNCTION, on_timer);
    curl_multi_setopt(sh->multi, CURLMOPT_TIMERDATA, sh);
  }
  st.active = g_hash_table_new(g_str_hash, g_str_equal);
  st.m_inflight = metrics_gauge("paystream_charges_in_flight", "Processor requests in flight", NULL);
  st.m_pending = metrics_gauge("paystream_charges_pending",
                               "Payments the charge worker holds (in flight, waiting to retry, "
                               "being recorded); their offsets are not committed yet",
                               NULL);
  srand((unsigned)time(NULL));
  ctx->state = &st;
  log_info("charging at %s%s%s", st.proc[0].name, st.nproc > 1 ? ", failing over to " : "",
           st.nproc > 1 ? st.proc[1].name : "");
  return 0;
}

static void charge_destroy(stage_ctx *ctx) {
  charge_state *st = ctx->state;
  if (!st) return;
  for (size_t i = 0; i < st->n; i++) item_free(st, st->items[i]);
  free(st->items);
  g_hash_table_destroy(st->active);
  for (int k = 0; k < st->nshards; k++) curl_multi_cleanup(st->shards[k].multi);
  free(st->shards);
  for (size_t i = 0; i < st->npool; i++) curl_easy_cleanup(st->pool[i]);
  free(st->pool);
  close(st->epfd);
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
    .progress = charge_progress,
    .pending = charge_pending,
    .capacity = charge_capacity,
    .floors = charge_floors,
    .revoked = charge_revoked,
};
