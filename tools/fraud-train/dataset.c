/* dataset: replaying a labelled data set into feature rows. */
#include "dataset.h"

#include <glib.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "intent_json.h"

/* History handed to signals_from_history: a superset of what counts (the
 * worker reads at most HIST_MAX + 1 per key, newest first). */
#define TAIL 256

typedef struct hist {
  hist_entry *e;
  size_t n, cap;
} hist;
typedef struct links {
  link_entry *e;
  size_t n, cap;
} links;

static void *grow_array(void *p, size_t *cap, size_t n, size_t size) {
  if (n < *cap) return p;
  *cap = *cap ? *cap * 2 : 16;
  p = realloc(p, *cap * size);
  if (!p) abort();
  return p;
}

static void free_hist(void *p) {
  hist *h = p;
  free(h->e);
  free(h);
}
static void free_links(void *p) {
  links *l = p;
  free(l->e);
  free(l);
}

static void *lookup(GHashTable *t, const char *key, size_t size) {
  void *v = g_hash_table_lookup(t, key);
  if (!v) {
    v = calloc(1, size);
    if (!v) abort();
    g_hash_table_insert(t, g_strdup(key), v);
  }
  return v;
}

static void grow(dataset *d) {
  if (d->n < d->cap) return;
  d->cap = d->cap ? d->cap * 2 : 8192;
  d->x = realloc(d->x, d->cap * FEATURES_N * sizeof *d->x);
  d->y = realloc(d->y, d->cap * sizeof *d->y);
  d->rule = realloc(d->rule, d->cap * sizeof *d->rule);
  d->rule_block = realloc(d->rule_block, d->cap * sizeof *d->rule_block);
  d->force_review = realloc(d->force_review, d->cap * sizeof *d->force_review);
  d->pattern = realloc(d->pattern, d->cap * sizeof *d->pattern);
  d->fired = realloc(d->fired, d->cap * sizeof *d->fired);
  d->test = realloc(d->test, d->cap * sizeof *d->test);
  d->degraded = realloc(d->degraded, d->cap * sizeof *d->degraded);
  if (!d->x || !d->y || !d->rule || !d->rule_block || !d->force_review || !d->pattern || !d->fired ||
      !d->test || !d->degraded)
    abort();
}

static void add_row(dataset *d, const rules_cfg *rc, const fraud_signals *s, float label,
                    const char *pattern, bool test, bool degraded) {
  rules_result rr;
  rules_evaluate(rc, s, &rr);
  grow(d);
  features_vector(s, &d->x[d->n * FEATURES_N]);
  d->y[d->n] = label;
  d->rule[d->n] = rr.rule_score;
  d->rule_block[d->n] = rr.block;
  d->force_review[d->n] = rr.force_review;
  d->fired[d->n] = 0;
  for (size_t i = 0; i < rr.nreasons; i++) {
    rule_id id;
    if (rule_parse(rr.reasons[i], &id) == 0) d->fired[d->n] |= 1ULL << id;
  }
  d->pattern[d->n] = g_strdup(pattern ? pattern : "?");
  d->test[d->n] = test;
  d->degraded[d->n] = degraded;
  d->n++;
}

static void add_link(links *l, const char *pid, const char *a, const char *b, int64_t at) {
  char member[512];
  link_encode(pid, a, b, member, sizeof member);
  l->e = grow_array(l->e, &l->cap, l->n, sizeof *l->e);
  if (link_decode(member, at, &l->e[l->n]) == 0) l->n++;
}

int dataset_load(const char *path, const rules_cfg *rc, bool degraded_copies, dataset *d) {
  FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "r");
  if (!f) {
    fprintf(stderr, "fraud-train: could not open %s\n", path);
    return -1;
  }
  GHashTable *cust = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, free_hist);
  GHashTable *card = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, free_links);
  GHashTable *device = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, free_links);
  /* card fingerprint -> (merchant -> latest time, as ZADD GT keeps it) */
  GHashTable *cardm = g_hash_table_new_full(g_str_hash, g_str_equal, g_free,
                                            (GDestroyNotify)g_hash_table_destroy);
  char *line = NULL;
  size_t lcap = 0;
  long lineno = 0;
  int rc_ = 0;
  while (getline(&line, &lcap, f) > 0) {
    lineno++;
    json_error_t je;
    json_t *o = json_loads(line, 0, &je);
    char err[256], key[400];
    ps_intent *in = o ? intent_from_json(json_object_get(o, "intent"), err, sizeof err) : NULL;
    if (!in) {
      fprintf(stderr, "fraud-train: %s:%ld: %s\n", path, lineno, o ? err : je.text);
      json_decref(o);
      rc_ = -1;
      break;
    }
    const char *pid = in->idempotency_key, *m = in->merchant_id;
    const char *fp = in->payment_method && in->payment_method->fingerprint ? in->payment_method->fingerprint : "";
    const char *dev = in->context && in->context->device_id ? in->context->device_id : "";
    snprintf(key, sizeof key, "%s/%s", m, in->customer_id);
    hist *h = lookup(cust, key, sizeof *h);
    snprintf(key, sizeof key, "%s/%s", m, fp);
    links *cl = *fp ? lookup(card, key, sizeof *cl) : NULL;
    snprintf(key, sizeof key, "%s/%s", m, dev);
    links *dl = *dev ? lookup(device, key, sizeof *dl) : NULL;
    GHashTable *ms = *fp ? g_hash_table_lookup(cardm, fp) : NULL;
    if (*fp && !ms) {
      ms = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_free);
      g_hash_table_insert(cardm, g_strdup(fp), ms);
    }
    merchant_seen seen[HIST_MAX + 1];
    size_t nseen = 0;
    GHashTableIter it;
    gpointer k, v;
    if (ms) {
      g_hash_table_iter_init(&it, ms);
      while (nseen < HIST_MAX + 1 && g_hash_table_iter_next(&it, &k, &v)) {
        snprintf(seen[nseen].merchant, sizeof seen->merchant, "%s", (const char *)k);
        seen[nseen++].at_ms = *(int64_t *)v;
      }
    }
    fraud_history hi = {.merchants = seen, .nmerchants = nseen};
    hi.cust = h->n > TAIL ? h->e + h->n - TAIL : h->e;
    hi.ncust = h->n > TAIL ? TAIL : h->n;
    if (cl) hi.card = cl->n > TAIL ? cl->e + cl->n - TAIL : cl->e, hi.ncard = cl->n > TAIL ? TAIL : cl->n;
    if (dl)
      hi.device = dl->n > TAIL ? dl->e + dl->n - TAIL : dl->e, hi.ndevice = dl->n > TAIL ? TAIL : dl->n;
    fraud_signals s;
    signals_from_intent(in, &s);
    signals_from_history(in, pid, &hi, &s);
    bool test = g_str_hash(in->customer_id) % 5 == 0;
    const char *pattern = json_string_value(json_object_get(o, "pattern"));
    float label = (float)json_integer_value(json_object_get(o, "label"));
    add_row(d, rc, &s, label, pattern, test, false);
    /* Every tenth payment also as the worker sees it with Redis down (no
     * history: those features missing), so the model has learned what to
     * say then. The held-out part stays as served normally. */
    if (degraded_copies && lineno % 10 == 0 && !test) {
      fraud_signals sp = s;
      sp.history_unavailable = sp.blocklist_unavailable = true;
      add_row(d, rc, &sp, label, pattern, false, true);
    }
    /* Then it joins the histories, as the worker's ZADDs put it in Redis. */
    char member[512];
    hist_encode(in, pid, member, sizeof member);
    h->e = grow_array(h->e, &h->cap, h->n, sizeof *h->e);
    if (hist_decode(member, &h->e[h->n]) == 0) h->n++;
    if (cl) add_link(cl, pid, dev, in->customer_id, in->created_at_ms);
    if (dl) add_link(dl, pid, in->customer_id, fp, in->created_at_ms);
    if (ms) {
      int64_t *at = g_hash_table_lookup(ms, m);
      if (!at) {
        at = g_new(int64_t, 1);
        *at = in->created_at_ms;
        g_hash_table_insert(ms, g_strdup(m), at);
      } else if (in->created_at_ms > *at) {
        *at = in->created_at_ms;
      }
    }
    payments__v1__payment_intent__free_unpacked(in, NULL);
    json_decref(o);
  }
  free(line);
  if (f != stdin) fclose(f);
  g_hash_table_destroy(cust);
  g_hash_table_destroy(card);
  g_hash_table_destroy(device);
  g_hash_table_destroy(cardm);
  return rc_;
}

void dataset_free(dataset *d) {
  for (size_t i = 0; i < d->n; i++) g_free(d->pattern[i]);
  free(d->x), free(d->y), free(d->rule), free(d->rule_block), free(d->force_review), free(d->fired),
      free(d->pattern), free(d->test), free(d->degraded);
  memset(d, 0, sizeof *d);
}
