/*
 * lb_upstream_resolve.h: host-name server addresses (SPEC §3.2: `address
 * = "app.internal:8080"`, `resolve_interval`), resolved with the system
 * resolver (getaddrinfo) off the event loops.
 *
 * The master keeps what each name resolved to. A configuration load takes
 * the names' last good addresses, waiting for a name it has never seen
 * for at most LB_RESOLVE_LOAD_WAIT in all (a load is never held longer:
 * a name not answered by then has no servers until it is). A thread of
 * the master resolves every name again each resolve_interval, each
 * lookup on a thread of its own so that one that never returns holds up
 * nothing else; when a name's addresses change, the master reloads the
 * configuration from the same file (as lbctl reload would: connections in
 * flight finish on the workers they are on), unless the file changed
 * since it was loaded, which waits for the operator's own reload. A
 * failed or empty answer keeps the last good addresses and is logged once
 * until the name answers again.
 */
#ifndef LB_UPSTREAM_RESOLVE_H
#define LB_UPSTREAM_RESOLVE_H

#include "lb_core.h"

#define LB_RESOLVE_MAX_ADDRS   32       /* addresses kept of one name */
#define LB_RESOLVE_LOAD_WAIT   2000     /* ms a load waits for new names, in all */

/* Whether text is "NAME:PORT" with a host name (not an IP address):
 * fills host (up to 253 bytes) and port. */
bool lb_resolve_is_host(const char *text, char *host, size_t size, char *port);

/* A load begins: names it does not use again are forgotten at its end. */
void lb_resolve_load_begin(void);
/* At load: the addresses of host:port now (sorted, at most max), asking the
 * resolver when the name is new. Their count, possibly 0. */
size_t lb_resolve_addrs(const char *host, const char *port, lb_msec_t interval,
                        lb_addr_t *out, size_t max);
/* In the master, once a configuration is in force: starts the resolving
 * thread (once) and records the file, whose change holds automatic
 * reloads back. */
void lb_resolve_master(const char *conf_file);

#endif
