/*
 * lb_upstream_random_two.c: balance = "random_two", the power of two
 * random choices: two distinct usable servers at random, the one with
 * fewer active connections per unit of weight wins. Nearly as even as
 * least_conn, without every worker herding onto the same least loaded
 * server between two updates of the shared counts.
 */
#include "lb_upstream.h"

static ssize_t
lb_upstream_random_two_get(lb_upstream_peer_t *pr, lb_upstream_server_t *servers, size_t n,
                           bool backup, bool *usable)
{
    size_t     idx[LB_UPSTREAM_MAX_SERVERS], m = 0, i;
    ssize_t    x, y;
    uint64_t   ax, ay;
    lb_msec_t  now = lb_current_msec;

    for (i = 0; i < n; i++) {
        if (usable[i]) {
            idx[m++] = i;
        }
    }
    if (m == 0) {
        return -1;
    }
    x = (ssize_t) idx[(size_t) random() % m];
    if (m == 1) {
        return x;
    }
    do {
        y = (ssize_t) idx[(size_t) random() % m];
    } while (y == x);
    ax = __atomic_load_n(&servers[x].state->active, __ATOMIC_RELAXED);
    ay = __atomic_load_n(&servers[y].state->active, __ATOMIC_RELAXED);
    return ay * (uint64_t) lb_upstream_weight(&servers[x], now)
           < ax * (uint64_t) lb_upstream_weight(&servers[y], now) ? y : x;
}

const lb_upstream_balancer_t  lb_upstream_random_two = {
    .name = "random_two",
    .get = lb_upstream_random_two_get,
};
