/* rules_config: loads the fraud rules file (YAML, parsed with libyaml) over
 * the built-in defaults, and validates it: an unknown key, a value of the
 * wrong type or out of range is an error naming the key and the line. The
 * format is documented in config/fraud-rules.yaml and the README. */
#ifndef FRAUD_RULES_CONFIG_H
#define FRAUD_RULES_CONFIG_H

#include <stddef.h>

#include "rules.h"

/* Loads path into c (defaults first; the file overrides what it names).
 * Returns 0, or -1 with a message in err. */
int rules_config_load(const char *path, rules_cfg *c, char *err, size_t errlen);

/* The same from a string (tests). */
int rules_config_parse(const char *yaml, size_t len, rules_cfg *c, char *err, size_t errlen);

#endif
