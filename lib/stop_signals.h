/* stop_signals: what every long-running paystream process does with
 * signals: SIGTERM and SIGINT call the process's own handler (finish the
 * work in hand, then leave), SIGPIPE is ignored (a peer that hung up is an
 * error return, not a death). */
#ifndef PS_STOP_SIGNALS_H
#define PS_STOP_SIGNALS_H

void stop_signals_install(void (*on_stop)(int));

#endif
