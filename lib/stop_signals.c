/* stop_signals: see stop_signals.h. */
#include "stop_signals.h"

#include <signal.h>
#include <string.h>

void stop_signals_install(void (*on_stop)(int)) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_stop;
  sigaction(SIGTERM, &sa, NULL);
  sigaction(SIGINT, &sa, NULL);
  signal(SIGPIPE, SIG_IGN);
}
