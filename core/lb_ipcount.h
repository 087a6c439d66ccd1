/*
 * lb_ipcount.h: connections per client address, counted by every worker
 * together (max_conns_per_ip, SPEC §3.3). One shared zone holds a table
 * of (listener, client address) -> open connections; an IPv6 client
 * counts by its network of ipv6_prefix bits, so one host cannot dodge a
 * cap by rotating addresses. An entry leaves the table when its count
 * falls to zero; the table is sized for far more busy addresses than one
 * instance holds connections, and when it is nonetheless full a new
 * address is let in uncounted (and that is logged) rather than refused.
 */
#ifndef LB_IPCOUNT_H
#define LB_IPCOUNT_H

#define LB_IPCOUNT_ZONE     "lb_conns_per_ip"
#define LB_IPCOUNT_ENTRIES  (1 << 18)       /* 4 MiB of shared memory */

typedef struct lb_ipcount_s  lb_ipcount_t;

typedef enum {
    LB_IPCOUNT_OK = 0,          /* counted: release it when the connection ends */
    LB_IPCOUNT_OVER,            /* at the cap: not counted, refuse */
    LB_IPCOUNT_FULL,            /* the table is full: not counted, let in */
} lb_ipcount_verdict_t;

size_t        lb_ipcount_bytes(size_t entries);
/* Formats mem (zeroed, lb_ipcount_bytes(entries) long). */
lb_ipcount_t *lb_ipcount_init(void *mem, size_t entries, uint64_t seed);

/* The key of a client of listener_key (a hash of the listener's name):
 * the address, an IPv6 one cut to its first prefix bits. */
uint64_t lb_ipcount_key(const lb_ipcount_t *t, uint64_t listener_key,
                        const struct sockaddr *sa, int ipv6_prefix);

/* One more connection of key, if fewer than max are open. */
lb_ipcount_verdict_t lb_ipcount_take(lb_ipcount_t *t, uint64_t key, uint32_t max);
/* A counted connection of key ended. */
void     lb_ipcount_release(lb_ipcount_t *t, uint64_t key);
/* Open connections of key (0 when it has none). */
uint32_t lb_ipcount_get(lb_ipcount_t *t, uint64_t key);
size_t   lb_ipcount_used(lb_ipcount_t *t);

/* The instance's table, once the master mapped it (NULL when no listener
 * has max_conns_per_ip); workers inherit it. */
extern lb_ipcount_t  *lb_ipcount;

#endif
