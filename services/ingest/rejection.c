/* rejection: see rejection.h. */
#include "rejection.h"

#include "log.h"
#include "validate.h"

const char SQL_REJECT[] =
    "INSERT INTO rejections (rejection_id, merchant_id, idempotency_key, error_code,"
    " error_message, source_topic, source_partition, source_offset)"
    " SELECT r, m, k, code, msg, t, sp, so FROM unnest($1::text[], $2::text[], $3::text[],"
    " $4::text[], $5::text[], $6::text[], $7::int[], $8::bigint[])"
    " AS u(r, m, k, code, msg, t, sp, so)"
    " ON CONFLICT (rejection_id) DO NOTHING";

void rejection_refused_begin(pg_array *r, const stage_msg *m, const char *what, const char *why) {
  log_ctx lc = {m->topic, m->partition, m->offset, NULL, NULL};
  log_at(LOG_ERROR, &lc, "ALERT postgres refused this %s on its own: %s", what, why);
  pg_arrays_init(r, REJECTION_NCOLS);
}

static const char *storable(const char *s) { return validate_text(s, 255) ? s : NULL; }

void rejection_add(pg_array *r, const char *rejection_id, const char *merchant, const char *key,
                   const char *code, const char *message, const stage_msg *m) {
  pg_array_add_str(&r[0], rejection_id);
  pg_array_add_str(&r[1], storable(merchant));
  pg_array_add_str(&r[2], storable(key));
  pg_array_add_str(&r[3], code);
  pg_array_add_str(&r[4], message);
  pg_array_add_str(&r[5], m->topic);
  pg_array_add_int(&r[6], m->partition);
  pg_array_add_int(&r[7], m->offset);
}

int rejection_store(pg_conn *pg, pg_array *r, char *err, size_t errlen) {
  const char *pr[REJECTION_NCOLS];
  pg_arrays_finish(r, REJECTION_NCOLS, pr);
  pg_stmt st = {SQL_REJECT, REJECTION_NCOLS, pr};
  PGresult *res = NULL;
  int rc = pg_pipeline(pg, &st, 1, &res, err, errlen);
  pg_results_clear(&res, 1);
  pg_arrays_free(r, REJECTION_NCOLS);
  return rc;
}
