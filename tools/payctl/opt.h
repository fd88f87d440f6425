/* opt: how every payctl command reads its command line. Options are parsed
 * with getopt_long over the command's own arguments (argv[0] is the
 * command's name); every number is checked whole and in range, so a typo
 * is a usage error (PAYCTL_USAGE) with a message naming the option, never
 * a silent 0. */
#ifndef PAYCTL_OPT_H
#define PAYCTL_OPT_H

#include <getopt.h>
#include <stdbool.h>
#include <stdint.h>

/* Starts parsing a new argument vector (resets getopt's state). */
void opt_begin(void);

/* The next option: its val, -1 after the last one (positional arguments
 * are then argv[optind..argc)), or '?' after printing what was wrong
 * ("payctl CMD: unknown option --x", "option --x needs a value"). Long
 * options only: every option in longopts needs a val that is not '?'. */
int opt_next(int argc, char **argv, const struct option *longopts);

/* Parses s as a whole number in [min, max] into *out. Returns 0, or -1
 * after printing "payctl: NAME takes a whole number from MIN to MAX, not 'S'". */
int opt_long(const char *name, const char *s, long long min, long long max, long long *out);

/* The same for a decimal number (percentages; never money). */
int opt_double(const char *name, const char *s, double min, double max, double *out);

/* Parses an RFC 3339 / ISO 8601 time with a zone (2026-11-25T10:00:00Z,
 * 2026-11-25T11:00:00.250+01:00) into epoch milliseconds. Returns 0, or -1
 * after printing what is expected. */
int opt_time_ms(const char *name, const char *s, int64_t *out);

/* Prints "payctl CMD: MSG" for a command line that makes no sense and
 * returns PAYCTL_USAGE, so a command can `return opt_usage(...)`. */
int opt_usage(const char *cmd, const char *msg);

#endif
