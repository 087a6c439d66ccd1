/*
 * lb_upstream_hash.c: balance = "hash": the peer's key (hash_key: a
 * variable expression for http, the client address for tcp and udp) is
 * looked up in a Maglev table (lb_upstream_maglev.h) built at load from
 * the configured servers, one table for the primaries and one for the
 * backups. A server that cannot take the connection (down, failed, full,
 * already tried) is passed over by walking the key's own probe sequence,
 * so only its keys move and the table is never rebuilt for a change of
 * state. Two lbd instances with the same servers make the same choice.
 */
#include "lb_upstream.h"
#include "lb_upstream_maglev.h"

typedef struct {
    lb_maglev_t  table[2];      /* primaries, backups */
} lb_upstream_hash_t;

static void
lb_upstream_hash_cleanup(void *data)
{
    lb_upstream_hash_t  *h = data;

    lb_maglev_free(&h->table[0]);
    lb_maglev_free(&h->table[1]);
}

static int
lb_upstream_hash_build(lb_conf_t *cf, lb_maglev_t *m, lb_upstream_server_t *servers, size_t n)
{
    const char  **names;
    uint32_t     *weights;
    size_t        i;

    if (n == 0) {
        return LB_OK;
    }
    names = lb_palloc(cf->pool, n * sizeof(char *));
    weights = lb_palloc(cf->pool, n * sizeof(uint32_t));
    if (names == NULL || weights == NULL) {
        return LB_ERROR;
    }
    for (i = 0; i < n; i++) {
        names[i] = servers[i].addr.text;
        /* a name's addresses share its weight, in hundredths */
        weights[i] = (uint32_t) lb_max(servers[i].weight * 100
                                       / (servers[i].share > 1 ? servers[i].share : 1), 1);
    }
    return lb_maglev_build(m, names, weights, n, lb_maglev_size(n, 0));
}

static int
lb_upstream_hash_init(lb_conf_t *cf, lb_upstream_t *u)
{
    lb_upstream_hash_t  *h = lb_pcalloc(cf->pool, sizeof(*h));

    if (h == NULL || lb_pool_cleanup_add(cf->pool, lb_upstream_hash_cleanup, h) != LB_OK) {
        return lb_conf_error(cf, cf->group, "out of memory");
    }
    if (lb_upstream_hash_build(cf, &h->table[0], u->servers, u->nprimary) != LB_OK
        || lb_upstream_hash_build(cf, &h->table[1], u->servers + u->nprimary,
                                  u->nservers - u->nprimary) != LB_OK)
    {
        return lb_conf_error(cf, cf->group, "out of memory for the hash table of %s",
                             cf->block);
    }
    u->balancer_data = h;
    return LB_OK;
}

static bool
lb_upstream_hash_usable(void *arg, size_t i)
{
    return ((const bool *) arg)[i];
}

static ssize_t
lb_upstream_hash_get(lb_upstream_peer_t *pr, lb_upstream_server_t *servers, size_t n,
                     bool backup, bool *usable)
{
    lb_upstream_hash_t  *h = pr->u->balancer_data;

    if (!pr->has_key) {
        /* nothing to hash on (an empty hash_key value): spread them */
        return lb_upstream_swrr(servers, n, usable, lb_current_msec);
    }
    return lb_maglev_lookup(&h->table[backup], pr->key, lb_upstream_hash_usable, usable);
}

const lb_upstream_balancer_t  lb_upstream_hash = {
    .name = "hash",
    .flags = LB_BALANCER_KEY,
    .init_upstream = lb_upstream_hash_init,
    .get = lb_upstream_hash_get,
};
