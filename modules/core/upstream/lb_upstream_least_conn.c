/*
 * lb_upstream_least_conn.c: balance = "least_conn": the server with the
 * fewest active connections per unit of weight, counted across all
 * workers (the counts live in the shared state zone); ties go round robin
 * so that an idle set is not all sent to its first server.
 */
#include "lb_upstream.h"

static ssize_t
lb_upstream_least_conn_get(lb_upstream_peer_t *pr, lb_upstream_server_t *servers, size_t n,
                           bool backup, bool *usable)
{
    uint64_t   a, b;
    int64_t    w[LB_UPSTREAM_MAX_SERVERS];
    lb_msec_t  now = lb_current_msec;
    size_t     i, j, best_n = 0;
    ssize_t    best = -1;

    for (i = 0; i < n; i++) {
        if (!usable[i]) {
            continue;
        }
        w[i] = lb_upstream_weight(&servers[i], now);
        if (best != -1) {
            /* active_i / w_i against active_best / w_best, without division */
            a = (uint64_t) __atomic_load_n(&servers[i].state->active, __ATOMIC_RELAXED)
                * (uint64_t) w[best];
            b = (uint64_t) __atomic_load_n(&servers[best].state->active, __ATOMIC_RELAXED)
                * (uint64_t) w[i];
            if (a > b) {
                usable[i] = false;
                continue;
            }
            if (a < b) {
                for (j = 0; j < i; j++) {
                    usable[j] = false;
                }
                best_n = 0;
            }
        }
        best = (ssize_t) i;
        best_n++;
    }
    return best_n > 1 ? lb_upstream_swrr(servers, n, usable, now) : best;
}

const lb_upstream_balancer_t  lb_upstream_least_conn = {
    .name = "least_conn",
    .get = lb_upstream_least_conn_get,
};
