/* payctl: the operator's command line. This header is what every command
 * shares and nothing more: the context a command receives (configuration
 * and a Postgres connection that connects on first use) and the exit codes
 * every command answers with. The dispatcher (payctl.c) calls the commands
 * (commands.h); commands never call back into it — they use the helpers in
 * pgq.h, kafka_util.h, opt.h and gen.h. */
#ifndef PAYCTL_H
#define PAYCTL_H

#include "config.h"
#include "clock.h"
#include "pg.h"

typedef struct payctl {
  cfg cfg;
  pg_conn pg;
} payctl;

/* Exit codes: scripts may rely on them (README, payctl --help). */
enum {
  PAYCTL_OK = 0,          /* done; a check found nothing wrong */
  PAYCTL_FAILED = 1,      /* a check found differences, or the operation did not complete */
  PAYCTL_USAGE = 2,       /* bad command line (unknown command or option, invalid number,
                             time or duration) or bad configuration: nothing was done */
  PAYCTL_NOT_FOUND = 3,   /* the named payment, claim, account, message or topic does not exist */
  PAYCTL_REFUSED = 4,     /* the current state forbids it (a payment decided otherwise or not
                             held for review; a consumer group with live members) */
  PAYCTL_UNAVAILABLE = 5, /* a dependency (Postgres, Redis, Kafka, the processor) could not be
                             reached or failed */
};

#endif
