/* opt: see opt.h. */
#include "opt.h"

#include <errno.h>
#include <glib.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "payctl.h"

void opt_begin(void) {
  optind = 0; /* glibc: 0 re-initialises getopt completely */
  opterr = 0; /* our own messages, naming the command */
}

/* getopt_long needs a short-option string; ours start with ':' so a
 * missing value is told apart from an unknown option. */
int opt_next(int argc, char **argv, const struct option *longopts) {
  int c = getopt_long(argc, argv, ":", longopts, NULL);
  if (c == ':') {
    fprintf(stderr, "payctl %s: option %s needs a value\n", argv[0], argv[optind - 1]);
    return '?';
  }
  if (c == '?') {
    fprintf(stderr, "payctl %s: unknown option %s\n", argv[0], argv[optind - 1]);
    return '?';
  }
  return c;
}

int opt_long(const char *name, const char *s, long long min, long long max, long long *out) {
  char *end;
  errno = 0;
  long long v = strtoll(s, &end, 10);
  if (errno || end == s || *end || v < min || v > max) {
    fprintf(stderr, "payctl: %s takes a whole number from %lld to %lld, not '%s'\n", name, min,
            max, s);
    return -1;
  }
  *out = v;
  return 0;
}

int opt_double(const char *name, const char *s, double min, double max, double *out) {
  char *end;
  errno = 0;
  double v = strtod(s, &end);
  if (errno || end == s || *end || isnan(v) || v < min || v > max) {
    fprintf(stderr, "payctl: %s takes a number from %g to %g, not '%s'\n", name, min, max, s);
    return -1;
  }
  *out = v;
  return 0;
}

int opt_time_ms(const char *name, const char *s, int64_t *out) {
  /* No default zone: a time without one is refused rather than guessed. */
  GDateTime *t = g_date_time_new_from_iso8601(s, NULL);
  if (!t) {
    fprintf(stderr, "payctl: %s takes an RFC 3339 time with a zone (2026-11-25T10:00:00Z), "
                    "not '%s'\n", name, s);
    return -1;
  }
  *out = g_date_time_to_unix(t) * 1000 + g_date_time_get_microsecond(t) / 1000;
  g_date_time_unref(t);
  return 0;
}

int opt_usage(const char *cmd, const char *msg) {
  fprintf(stderr, "payctl %s: %s\n", cmd, msg);
  return PAYCTL_USAGE;
}
