/* procsim_net.c: procsim's sockets and clocks.
 * Waiting without a thread: injected latency suspends the connection and one
 * timer thread resumes it when its time comes, so one event loop serves
 * thousands of connections at 500 ms each (a thread per connection cost more
 * CPU than the operations themselves and competed with the pipeline).
 * Listeners: one daemon listens at a time; a refusal window (drop_next)
 * quiesces it, closes its listening socket and shuts every open connection
 * down (a client's idle kept-alive connections too: else its re-send would
 * simply go out on one of them), and a new daemon listens on the same
 * address when the window ends. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "procsim.h"

volatile sig_atomic_t net_running = 1;

typedef struct waiter {
  gint64 due; /* g_get_monotonic_time() */
  struct MHD_Connection *c;
} waiter;

static GMutex timer_lock;
static GCond timer_cond;
static GSequence *waiting; /* waiter*, by due */
static bool timers_stop;
static GThread *timers;

static gint by_due(gconstpointer a, gconstpointer b, gpointer ud) {
  (void)ud;
  gint64 x = ((const waiter *)a)->due, y = ((const waiter *)b)->due;
  return x < y ? -1 : x > y;
}

bool net_wait_then_resume(struct MHD_Connection *c, int ms) {
  waiter *w = g_new(waiter, 1);
  w->due = g_get_monotonic_time() + (gint64)ms * 1000;
  w->c = c;
  g_mutex_lock(&timer_lock);
  if (timers_stop) {
    g_mutex_unlock(&timer_lock);
    g_free(w);
    return false;
  }
  MHD_suspend_connection(c);
  GSequenceIter *it = g_sequence_insert_sorted(waiting, w, by_due, NULL);
  if (g_sequence_iter_is_begin(it)) g_cond_signal(&timer_cond);
  g_mutex_unlock(&timer_lock);
  return true;
}

/* Resumes each connection when it is due; on shutdown, all of them at once
 * (MHD must not stop with suspended connections). */
static gpointer timer_thread(gpointer ud) {
  (void)ud;
  g_mutex_lock(&timer_lock);
  for (;;) {
    GSequenceIter *first = g_sequence_get_begin_iter(waiting);
    if (g_sequence_iter_is_end(first)) {
      if (timers_stop) break;
      g_cond_wait(&timer_cond, &timer_lock);
      continue;
    }
    waiter *w = g_sequence_get(first);
    if (!timers_stop && w->due > g_get_monotonic_time()) {
      /* 2 ms of slack: whatever falls due meanwhile is resumed in the same
       * wake-up (one switch for many answers; 2 ms is noise on a processor). */
      g_cond_wait_until(&timer_cond, &timer_lock, w->due + 2000);
      continue;
    }
    g_sequence_remove(first);
    MHD_resume_connection(w->c);
    g_free(w);
  }
  g_mutex_unlock(&timer_lock);
  return NULL;
}

static GMutex daemons_lock;
static struct MHD_Daemon *daemons[64];
static int ndaemons;
static bool listening;
static GThread *reopener;
static struct sockaddr_in listen_addr; /* the bound port, once known */
static GHashTable *conn_fds;           /* MHD_Connection* -> its socket, under daemons_lock */

static void on_connection(void *cls, struct MHD_Connection *c, void **socket_context,
                          enum MHD_ConnectionNotificationCode code) {
  (void)cls;
  (void)socket_context;
  const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
  g_mutex_lock(&daemons_lock);
  if (code == MHD_CONNECTION_NOTIFY_STARTED && ci)
    g_hash_table_insert(conn_fds, c, GINT_TO_POINTER(ci->connect_fd));
  else
    g_hash_table_remove(conn_fds, c);
  g_mutex_unlock(&daemons_lock);
}

static struct MHD_Daemon *start_daemon(void) {
  /* One epoll event loop (thousands of connections, fds past FD_SETSIZE);
   * injected latency suspends a connection instead of holding a thread. */
  return MHD_start_daemon(
      MHD_USE_EPOLL_INTERNAL_THREAD | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG, 0, NULL,
      NULL, http_on_request, NULL, MHD_OPTION_SOCK_ADDR, &listen_addr,
      MHD_OPTION_LISTENING_ADDRESS_REUSE, (unsigned)1, MHD_OPTION_CONNECTION_LIMIT,
      (unsigned)4000, MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)120, MHD_OPTION_NOTIFY_COMPLETED,
      http_on_completed, NULL, MHD_OPTION_NOTIFY_CONNECTION, on_connection, NULL,
      MHD_OPTION_END);
}

static gpointer reopen_after(gpointer ud) {
  g_usleep((gulong)GPOINTER_TO_INT(ud) * 1000);
  g_mutex_lock(&daemons_lock);
  struct MHD_Daemon *d = net_running && ndaemons < 64 ? start_daemon() : NULL;
  if (d) daemons[ndaemons++] = d;
  else if (net_running) fprintf(stderr, "procsim: could not listen again\n");
  listening = d != NULL;
  g_mutex_unlock(&daemons_lock);
  if (d) fprintf(stderr, "procsim: accepting connections again\n");
  return NULL;
}

/* Called from a request handler (quiescing the daemon from its own thread is
 * allowed). */
void net_refuse_connections(void) {
  int ms = fault_refuse_ms();
  g_mutex_lock(&daemons_lock);
  if (listening && ndaemons > 0) {
    MHD_socket fd = MHD_quiesce_daemon(daemons[ndaemons - 1]);
    if (fd != MHD_INVALID_SOCKET) close(fd);
    GHashTableIter it;
    gpointer c, cfd;
    g_hash_table_iter_init(&it, conn_fds);
    while (g_hash_table_iter_next(&it, &c, &cfd)) shutdown(GPOINTER_TO_INT(cfd), SHUT_RDWR);
    listening = false;
    if (reopener) g_thread_join(reopener); /* done: it set listening */
    reopener = g_thread_new("procsim-reopen", reopen_after, GINT_TO_POINTER(ms));
    fprintf(stderr, "procsim: refusing connections for %d ms\n", ms);
  }
  g_mutex_unlock(&daemons_lock);
}

int net_start(const char *bind, unsigned port, unsigned *bound) {
  conn_fds = g_hash_table_new(g_direct_hash, g_direct_equal);
  listen_addr.sin_family = AF_INET;
  listen_addr.sin_port = htons((uint16_t)port);
  if (inet_pton(AF_INET, bind, &listen_addr.sin_addr) != 1) {
    fprintf(stderr, "procsim: --bind wants an IPv4 address, got %s\n", bind);
    return -1;
  }
  waiting = g_sequence_new(NULL);
  timers = g_thread_new("procsim-timers", timer_thread, NULL);
  g_mutex_lock(&daemons_lock);
  struct MHD_Daemon *d = start_daemon();
  if (d) {
    daemons[ndaemons++] = d;
    listening = true;
  }
  g_mutex_unlock(&daemons_lock);
  if (!d) {
    fprintf(stderr, "procsim: could not listen on %s:%u\n", bind, port);
    return -1;
  }
  const union MHD_DaemonInfo *info = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
  *bound = info ? info->port : port;
  listen_addr.sin_port = htons((uint16_t)*bound); /* a new listener takes the same port */
  return 0;
}

void net_stop(void) {
  /* Resume whatever waits (MHD must not stop with suspended connections):
   * a waiting operation is still made; its answer may not reach the client. */
  g_mutex_lock(&timer_lock);
  timers_stop = true;
  g_cond_signal(&timer_cond);
  g_mutex_unlock(&timer_lock);
  if (timers) g_thread_join(timers);
  g_mutex_lock(&daemons_lock);
  GThread *r = reopener;
  reopener = NULL;
  g_mutex_unlock(&daemons_lock);
  if (r) g_thread_join(r); /* net_running is 0: it opens nothing */
  for (int i = ndaemons - 1; i >= 0; i--) MHD_stop_daemon(daemons[i]);
  g_sequence_free(waiting);
  g_hash_table_destroy(conn_fds);
}
