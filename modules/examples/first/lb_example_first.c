/*
 * lb_example_first.c: an example balancer, balance = "first": every
 * connection goes to the first usable server in the order the servers are
 * written, so that the next one is used only when it is down, failed or at
 * max_conns (HAProxy users know it as `balance first`: few servers busy,
 * the others free to be powered down). A balancer module is a module of
 * type LB_MODULE_BALANCER whose ctx is its lb_upstream_balancer_t; it
 * needs nothing but lb_upstream.h. docs/modules.md §9 walks through it.
 */
#include "lb_core.h"
#include "lb_upstream.h"

/* The usable server that comes first in the file. servers[] holds the
 * primaries (or the backups) in the order they were written. */
static ssize_t
lb_example_first_get(lb_upstream_peer_t *pr, lb_upstream_server_t *servers, size_t n,
                     bool backup, bool *usable)
{
    size_t  i;

    for (i = 0; i < n; i++) {
        if (usable[i]) {
            return (ssize_t) i;
        }
    }
    return -1;
}

static const lb_upstream_balancer_t  lb_example_first_balancer = {
    .name = "first",
    .get = lb_example_first_get,
};

lb_module_t  lb_example_first_module = {
    .name = "example_first",
    .type = LB_MODULE_BALANCER,
    .ctx = &lb_example_first_balancer,
};
