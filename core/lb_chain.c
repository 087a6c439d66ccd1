/*
 * lb_chain.c: chains of byte views (see lb_chain.h).
 */
#include "lb_core.h"

size_t
lb_chain_len(const lb_chain_t *cl)
{
    size_t  n = 0;

    for ( ; cl; cl = cl->next) {
        n += lb_chain_link_len(cl);
    }
    return n;
}

lb_chain_t *
lb_chain_first(lb_chain_t *cl)
{
    while (cl && cl->pos == cl->last) {
        cl = cl->next;
    }
    return cl;
}

lb_chain_t *
lb_chain_link_array(lb_chain_t *arr, size_t n)
{
    size_t  i;

    if (n == 0) {
        return NULL;
    }
    for (i = 0; i + 1 < n; i++) {
        arr[i].next = &arr[i + 1];
    }
    arr[n - 1].next = NULL;
    return arr;
}
