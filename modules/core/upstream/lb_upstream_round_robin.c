/*
 * lb_upstream_round_robin.c: balance = "round_robin", smooth weighted round
 * robin (a 5:1:1 set goes a a b a c a a, never five in a row). Each worker
 * keeps its own sequence (lb_upstream_server_t.current); init_worker of
 * the upstream module starts worker N N steps in.
 */
#include "lb_upstream.h"

static ssize_t
lb_upstream_round_robin_get(lb_upstream_peer_t *pr, lb_upstream_server_t *servers, size_t n,
                            bool backup, bool *usable)
{
    return lb_upstream_swrr(servers, n, usable, lb_current_msec);
}

const lb_upstream_balancer_t  lb_upstream_round_robin = {
    .name = "round_robin",
    .get = lb_upstream_round_robin_get,
};
