/* log: JSON-lines structured logging to stderr, shared by every binary.
 * One line per event: {"ts":..,"level":..,"stage":..,"msg":.., fields...}.
 * Never pass secrets (API keys, DSNs with passwords) to these functions. */
#ifndef PS_LOG_H
#define PS_LOG_H

#include <stddef.h>
#include <stdint.h>

typedef enum { LOG_DEBUG = 0, LOG_INFO, LOG_WARN, LOG_ERROR } log_level;

/* Where a log line comes from in the pipeline; any field may be NULL / -1. */
typedef struct log_ctx {
  const char *topic;
  int32_t partition;
  int64_t offset;
  const char *payment_id;
  const char *idempotency_key;
} log_ctx;

#define LOG_CTX_NONE ((const log_ctx *)0)

void log_init(const char *stage, log_level min);
/* Parses "debug|info|warn|error"; returns -1 on anything else. */
int log_level_parse(const char *s, log_level *out);
void log_at(log_level lvl, const log_ctx *ctx, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Appends s to buf[len..] as JSON string content ('"' and '\\' escaped,
 * control characters as \u00XX), stopping before an escape that would not
 * fit; buf always ends NUL-terminated (cap > len). Returns the new length. */
size_t log_json_escape(char *buf, size_t cap, size_t len, const char *s);

#define log_debug(...) log_at(LOG_DEBUG, LOG_CTX_NONE, __VA_ARGS__)
#define log_info(...) log_at(LOG_INFO, LOG_CTX_NONE, __VA_ARGS__)
#define log_warn(...) log_at(LOG_WARN, LOG_CTX_NONE, __VA_ARGS__)
#define log_error(...) log_at(LOG_ERROR, LOG_CTX_NONE, __VA_ARGS__)

#endif
