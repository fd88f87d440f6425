/* log: JSON-lines logging. One fprintf per line so concurrent threads do not
 * interleave within a line. */
#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

static const char *log_stage = "paystream";
static log_level log_min = LOG_INFO;

static const char *level_names[] = {"debug", "info", "warn", "error"};

void log_init(const char *stage, log_level min) {
  log_stage = stage;
  log_min = min;
}

int log_level_parse(const char *s, log_level *out) {
  for (int i = 0; i < 4; i++) {
    if (strcmp(s, level_names[i]) == 0) {
      *out = (log_level)i;
      return 0;
    }
  }
  return -1;
}

size_t log_json_escape(char *buf, size_t cap, size_t len, const char *s) {
  for (; *s && len + 7 < cap; s++) {
    unsigned char c = (unsigned char)*s;
    if (c == '"' || c == '\\') {
      buf[len++] = '\\';
      buf[len++] = (char)c;
    } else if (c < 0x20) {
      len += (size_t)snprintf(buf + len, cap - len, "\\u%04x", c);
    } else {
      buf[len++] = (char)c;
    }
  }
  buf[len] = '\0';
  return len;
}

static size_t add_str(char *buf, size_t cap, size_t len, const char *k, const char *v) {
  if (!v || len + 8 >= cap) return len;
  len += (size_t)snprintf(buf + len, cap - len, ",\"%s\":\"", k);
  if (len >= cap) return cap - 1;
  len = log_json_escape(buf, cap, len, v);
  if (len + 2 < cap) {
    buf[len++] = '"';
    buf[len] = '\0';
  }
  return len;
}

void log_at(log_level lvl, const log_ctx *ctx, const char *fmt, ...) {
  if (lvl < log_min) return;
  char msg[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);

  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  struct tm tm;
  gmtime_r(&ts.tv_sec, &tm);
  char when[40];
  size_t w = strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%S", &tm);
  snprintf(when + w, sizeof when - w, ".%03ldZ", ts.tv_nsec / 1000000);

  char line[2048];
  size_t len = (size_t)snprintf(line, sizeof line, "{\"ts\":\"%s\",\"level\":\"%s\"", when,
                                level_names[lvl]);
  len = add_str(line, sizeof line, len, "stage", log_stage);
  len = add_str(line, sizeof line, len, "msg", msg);
  if (ctx) {
    len = add_str(line, sizeof line, len, "topic", ctx->topic);
    if (ctx->partition >= 0 && len < sizeof line)
      len += (size_t)snprintf(line + len, sizeof line - len, ",\"partition\":%d", ctx->partition);
    if (ctx->offset >= 0 && len < sizeof line)
      len += (size_t)snprintf(line + len, sizeof line - len, ",\"offset\":%lld",
                              (long long)ctx->offset);
    len = add_str(line, sizeof line, len, "payment_id", ctx->payment_id);
    len = add_str(line, sizeof line, len, "idempotency_key", ctx->idempotency_key);
  }
  if (len > sizeof line - 3) len = sizeof line - 3;
  fprintf(stderr, "%.*s}\n", (int)len, line);
}
