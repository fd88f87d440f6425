/* http_listen: see http_listen.h. */
#include "http_listen.h"

#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

struct addrinfo *http_listen_resolve(const char *var, const char *forms, const char *addr,
                                     char *err, size_t errlen) {
  const char *colon = strrchr(addr, ':');
  if (!colon) {
    snprintf(err, errlen, "%s must be %s, got '%s'", var, forms, addr);
    return NULL;
  }
  char host[256];
  snprintf(host, sizeof host, "%.*s", (int)(colon - addr), addr);
  /* [::1]:9400 */
  char *h = host;
  if (*h == '[' && h[strlen(h) - 1] == ']') {
    h[strlen(h) - 1] = '\0';
    h++;
  }
  struct addrinfo hints = {0}, *ai = NULL;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  hints.ai_socktype = SOCK_STREAM;
  int gai = getaddrinfo(*h ? h : NULL, colon + 1, &hints, &ai);
  if (gai) {
    snprintf(err, errlen, "%s '%s': %s", var, addr, gai_strerror(gai));
    return NULL;
  }
  return ai;
}

int http_listen_publish(struct MHD_Daemon *d, const char *var, const char *port_file,
                        unsigned *port, char *err, size_t errlen) {
  const union MHD_DaemonInfo *info = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
  *port = info ? info->port : 0;
  if (!port_file || !*port_file) return 0;
  char tmp[4096];
  snprintf(tmp, sizeof tmp, "%s.tmp", port_file);
  FILE *f = fopen(tmp, "w");
  if (!f || fprintf(f, "%u\n", *port) < 0 || fclose(f) != 0 || rename(tmp, port_file) != 0) {
    snprintf(err, errlen, "%s: could not write %s", var, port_file);
    return -1;
  }
  return 0;
}
