/* http_listen: the parts of starting a libmicrohttpd server that every
 * paystream listener shares (the metrics/probe server, ps-webhook):
 * resolving the configured address and publishing the bound port. */
#ifndef PS_HTTP_LISTEN_H
#define PS_HTTP_LISTEN_H

#include <microhttpd.h>
#include <netdb.h>
#include <stddef.h>

/* Resolves addr ("host:port", "[v6]:port", ":port" for every address) for
 * a listening socket; free it with freeaddrinfo. NULL on error, with err
 * naming var (the setting) and forms (what it accepts, e.g. "host:port"). */
struct addrinfo *http_listen_resolve(const char *var, const char *forms, const char *addr,
                                     char *err, size_t errlen);

/* The port d listens on (port 0 in the address: the one the kernel chose),
 * written to port_file when one is set (atomically: written whole, then
 * renamed). Returns 0, or -1 with err naming var (the port file setting). */
int http_listen_publish(struct MHD_Daemon *d, const char *var, const char *port_file,
                        unsigned *port, char *err, size_t errlen);

#endif
