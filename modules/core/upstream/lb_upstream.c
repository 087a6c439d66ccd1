/*
 * lb_upstream.c: the upstreams = { } section, server selection (smooth
 * weighted round robin, least connections, power of two random choices)
 * and the shared per-server state.
 */
#include "lb_upstream.h"

#define LB_UPSTREAM_ZONE        "lb_upstream_state"
#define LB_UPSTREAM_ZONE_SLOTS  4096

typedef struct {
    lb_array_t   upstreams;             /* lb_upstream_t * */
    lb_shm_zone_t *zone;
} lb_upstream_main_conf_t;

/* Shared memory: a fixed table of server states keyed by
 * "UPSTREAM ADDRESS", so a reload finds the state of a server it keeps. */
typedef struct {
    char                      key[192];
    unsigned                  generation;   /* last configuration that used it */
    bool                      used;
    lb_upstream_peer_state_t  state;
} lb_upstream_slot_t;

typedef struct {
    lb_shm_lock_t        lock;
    lb_upstream_slot_t   slots[LB_UPSTREAM_ZONE_SLOTS];
} lb_upstream_shm_t;

static const char *const  lb_balance_names[] = {
    "round_robin", "least_conn", "random_two", "hash", NULL
};

static int lb_upstream_set_upstreams(lb_conf_t *cf, const lb_setting_t *s,
                                     config_setting_t *v, void *conf);
static int lb_upstream_set_servers(lb_conf_t *cf, const lb_setting_t *s,
                                   config_setting_t *v, void *conf);
static void *lb_upstream_create_conf(lb_conf_t *cf, unsigned ctx);
static int lb_upstream_merge_conf(lb_conf_t *cf, unsigned ctx, void *parent, void *conf);
static int lb_upstream_init_conf(lb_conf_t *cf);
static int lb_upstream_init_master(lb_cycle_t *cycle);
static int lb_upstream_init_worker(lb_cycle_t *cycle);

static const lb_setting_t  lb_upstream_settings[] = {
    { "upstreams", LB_SET_CUSTOM, LB_CTX_GLOBAL, NULL, 0, 0, 0, NULL,
      lb_upstream_set_upstreams, 0 },

    { "balance", LB_SET_ENUM, LB_CTX_UPSTREAM, "round_robin", 0, 0,
      offsetof(lb_upstream_t, balance), lb_balance_names, NULL, 0 },
    { "hash_key", LB_SET_STR, LB_CTX_UPSTREAM, "$remote_addr", 0, 0,
      offsetof(lb_upstream_t, hash_key), NULL, NULL, 0 },
    { "servers", LB_SET_CUSTOM, LB_CTX_UPSTREAM, NULL, 0, 0, 0, NULL,
      lb_upstream_set_servers, LB_SETTING_REQUIRED },
    { "connect_timeout", LB_SET_DURATION, LB_CTX_UPSTREAM, "5s", 1, 3600000,
      offsetof(lb_upstream_t, connect_timeout), NULL, NULL, 0 },
    { "read_timeout", LB_SET_DURATION, LB_CTX_UPSTREAM, "60s", 1, 86400000,
      offsetof(lb_upstream_t, read_timeout), NULL, NULL, 0 },
    { "send_timeout", LB_SET_DURATION, LB_CTX_UPSTREAM, "60s", 1, 86400000,
      offsetof(lb_upstream_t, send_timeout), NULL, NULL, 0 },
    { "response_head_timeout", LB_SET_DURATION, LB_CTX_UPSTREAM, "60s", 1, 86400000,
      offsetof(lb_upstream_t, response_head_timeout), NULL, NULL, 0 },
    { "retries", LB_SET_INT, LB_CTX_UPSTREAM, "2", 0, 100,
      offsetof(lb_upstream_t, retries), NULL, NULL, 0 },
    { "keepalive", LB_SET_INT, LB_CTX_UPSTREAM, "32", 0, 100000,
      offsetof(lb_upstream_t, keepalive), NULL, NULL, 0 },
    { "proxy_protocol", LB_SET_INT, LB_CTX_UPSTREAM, "0", 0, 2,
      offsetof(lb_upstream_t, proxy_protocol), NULL, NULL, 0 },

    { "address", LB_SET_ADDR, LB_CTX_SERVER, NULL, 0, 0,
      offsetof(lb_upstream_server_t, addr), NULL, NULL, LB_SETTING_REQUIRED },
    { "weight", LB_SET_INT, LB_CTX_SERVER, "1", 1, 1000,
      offsetof(lb_upstream_server_t, weight), NULL, NULL, 0 },
    { "max_conns", LB_SET_INT, LB_CTX_SERVER, "0", 0, 10000000,
      offsetof(lb_upstream_server_t, max_conns), NULL, NULL, 0 },
    { "backup", LB_SET_BOOL, LB_CTX_SERVER, "false", 0, 0,
      offsetof(lb_upstream_server_t, backup), NULL, NULL, 0 },
    lb_setting_end
};

lb_module_t  lb_core_upstream_module = {
    "core_upstream", LB_MODULE_CORE, NULL, lb_upstream_settings,
    LB_CTX_GLOBAL | LB_CTX_UPSTREAM | LB_CTX_SERVER,
    lb_upstream_create_conf, lb_upstream_merge_conf, lb_upstream_init_conf,
    lb_upstream_init_master, lb_upstream_init_worker, NULL, NULL, 0
};

static void *
lb_upstream_create_conf(lb_conf_t *cf, unsigned ctx)
{
    lb_upstream_main_conf_t  *umcf;
    lb_upstream_t            *u;

    switch (ctx) {
    case LB_CTX_GLOBAL:
        umcf = lb_pcalloc(cf->pool, sizeof(*umcf));
        if (umcf && lb_array_init(&umcf->upstreams, cf->pool, 8, sizeof(lb_upstream_t *)) != LB_OK) {
            return NULL;
        }
        return umcf;
    case LB_CTX_UPSTREAM:
        u = lb_pcalloc(cf->pool, sizeof(*u));
        if (u && lb_array_init(&u->server_list, cf->pool, 8, sizeof(lb_upstream_server_t)) != LB_OK) {
            return NULL;
        }
        return u;
    default:
        return lb_pcalloc(cf->pool, sizeof(lb_upstream_server_t));
    }
}

static int
lb_upstream_set_upstreams(lb_conf_t *cf, const lb_setting_t *s, config_setting_t *v, void *conf)
{
    lb_upstream_main_conf_t  *umcf = conf;
    lb_upstream_t            *u, **up;
    config_setting_t         *g;
    void                    **confs;
    const char               *saved = cf->block;
    int                       i, n, rc = LB_OK;

    if (config_setting_type(v) != CONFIG_TYPE_GROUP) {
        return lb_conf_error(cf, v, "\"upstreams\" must be a group { name = { ... }; }, not %s",
                             lb_conf_type_name(v));
    }
    n = config_setting_length(v);
    for (i = 0; i < n; i++) {
        g = config_setting_get_elem(v, (unsigned) i);
        cf->block = lb_psprintf(cf->pool, "upstream \"%s\"", config_setting_name(g));
        if (lb_conf_parse_block(cf, g, LB_CTX_UPSTREAM, &confs) != LB_OK) {
            rc = LB_ERROR;
            continue;
        }
        u = confs[lb_core_upstream_module.index];
        u->name = lb_pstrdup(cf->pool, config_setting_name(g));
        u->confs = confs;
        up = lb_array_push(&umcf->upstreams);
        if (up == NULL || u->name == NULL) {
            rc = lb_conf_error(cf, g, "out of memory");
            continue;
        }
        *up = u;
    }
    cf->block = saved;
    return rc;
}

static int
lb_upstream_set_servers(lb_conf_t *cf, const lb_setting_t *s, config_setting_t *v, void *conf)
{
    lb_upstream_t         *u = conf;
    lb_upstream_server_t  *srv, *slot, *other;
    config_setting_t      *g;
    void                 **confs;
    const char            *saved = cf->block;
    int                    i, n, rc = LB_OK;
    size_t                 k;

    if (config_setting_type(v) != CONFIG_TYPE_LIST && config_setting_type(v) != CONFIG_TYPE_ARRAY) {
        return lb_conf_error(cf, v, "\"servers\" must be a list ( { address = \"...\"; }, ... ), "
                             "not %s", lb_conf_type_name(v));
    }
    n = config_setting_length(v);
    if (n == 0) {
        return lb_conf_error(cf, v, "%s has no servers", cf->block);
    }
    if (n > LB_UPSTREAM_MAX_SERVERS) {
        return lb_conf_error(cf, v, "%s has %d servers; at most %d are allowed",
                             cf->block, n, LB_UPSTREAM_MAX_SERVERS);
    }
    for (i = 0; i < n; i++) {
        g = config_setting_get_elem(v, (unsigned) i);
        cf->block = lb_psprintf(cf->pool, "server #%d of %s", i + 1, saved);
        if (lb_conf_parse_block(cf, g, LB_CTX_SERVER, &confs) != LB_OK) {
            rc = LB_ERROR;
            continue;
        }
        srv = confs[lb_core_upstream_module.index];
        if (lb_addr_resolve_unix(cf, &srv->addr) != LB_OK) {
            rc = LB_ERROR;
            continue;
        }
        for (k = 0; k < u->server_list.nelts; k++) {
            other = &lb_array_at(&u->server_list, lb_upstream_server_t, k);
            if (lb_addr_equal(&other->addr, &srv->addr)) {
                rc = lb_conf_error(cf, g, "server %s appears twice in %s",
                                   srv->addr.text, saved);
            }
        }
        slot = lb_array_push(&u->server_list);
        if (slot == NULL) {
            rc = lb_conf_error(cf, g, "out of memory");
            continue;
        }
        *slot = *srv;
    }
    cf->block = saved;
    return rc;
}

static int
lb_upstream_merge_conf(lb_conf_t *cf, unsigned ctx, void *parent, void *conf)
{
    lb_upstream_t         *u = conf;
    lb_upstream_server_t  *s;
    size_t                 i, n = 0;
    int                    pass;

    if (ctx != LB_CTX_UPSTREAM) {
        return LB_OK;
    }
    if (u->balance == LB_BALANCE_HASH) {
        return lb_conf_error(cf, config_setting_get_member(cf->group, "balance"),
                             "balance \"hash\" is not available in this version of lbd; "
                             "use round_robin, least_conn or random_two");
    }
    u->servers = lb_pcalloc(cf->pool, u->server_list.nelts * sizeof(lb_upstream_server_t));
    if (u->servers == NULL) {
        return lb_conf_error(cf, cf->group, "out of memory");
    }
    /* primaries first, so the backup range is a suffix */
    for (pass = 0; pass < 2; pass++) {
        for (i = 0; i < u->server_list.nelts; i++) {
            s = &lb_array_at(&u->server_list, lb_upstream_server_t, i);
            if ((pass == 0) == !s->backup) {
                u->servers[n++] = *s;
            }
        }
        if (pass == 0) {
            u->nprimary = n;
        }
    }
    u->nservers = n;
    return LB_OK;
}

static int
lb_upstream_zone_init(lb_shm_zone_t *zone)
{
    if (!zone->reused) {
        memset(zone->addr, 0, zone->size);
    }
    zone->data = zone->addr;
    return LB_OK;
}

static int
lb_upstream_init_conf(lb_conf_t *cf)
{
    lb_upstream_main_conf_t  *umcf = lb_get_conf(cf->cycle->confs, lb_core_upstream_module);

    umcf->zone = lb_shm_zone_add(cf, LB_UPSTREAM_ZONE, sizeof(lb_upstream_shm_t),
                                 lb_upstream_zone_init, umcf);
    if (umcf->zone == NULL) {
        return lb_conf_error_at(cf, cf->cycle->conf_file, 0, "cannot declare shared zone \""
                                LB_UPSTREAM_ZONE "\"");
    }
    return LB_OK;
}

int
lb_upstream_set_ref(lb_conf_t *cf, const lb_setting_t *s, config_setting_t *v, void *conf)
{
    lb_upstream_ref_t  *ref = (lb_upstream_ref_t *) ((char *) conf + s->offset);
    const char         *name;

    if (lb_conf_get_string(cf, v, &name) != LB_OK) {
        return LB_ERROR;
    }
    ref->name = lb_pstrdup(cf->pool, name);
    ref->file = lb_pstrdup(cf->pool, lb_conf_file(cf, v));
    ref->line = (int) config_setting_source_line(v);
    return ref->name && ref->file ? LB_OK : LB_ERROR;
}

lb_upstream_t *
lb_upstream_find(lb_cycle_t *cycle, const char *name)
{
    lb_upstream_main_conf_t  *umcf = lb_get_conf(cycle->confs, lb_core_upstream_module);
    lb_upstream_t            *u;
    size_t                    i;

    for (i = 0; umcf && i < umcf->upstreams.nelts; i++) {
        u = lb_array_at(&umcf->upstreams, lb_upstream_t *, i);
        if (strcmp(u->name, name) == 0) {
            return u;
        }
    }
    return NULL;
}

int
lb_upstream_resolve(lb_conf_t *cf, const char *file, int line, const char *name,
                    const char *where, lb_upstream_t **out)
{
    return lb_upstream_resolve_for(cf, file, line, name, where, 0, out);
}

int
lb_upstream_resolve_for(lb_conf_t *cf, const char *file, int line, const char *name,
                        const char *where, unsigned can, lb_upstream_t **out)
{
    lb_upstream_main_conf_t  *umcf = lb_get_conf(cf->cycle->confs, lb_core_upstream_module);
    const char              **names, *hint;
    size_t                    i, n = umcf->upstreams.nelts;

    *out = lb_upstream_find(cf->cycle, name);
    if (*out && (*out)->proxy_protocol && !(can & LB_UPSTREAM_CAN_PROXY_PROTOCOL)) {
        return lb_conf_error_at(cf, file, line, "upstream \"%s\" sets proxy_protocol = %lld, "
                                "which only tcp listeners send; %s cannot use it (give it "
                                "an upstream without proxy_protocol)",
                                name, (long long) (*out)->proxy_protocol, where);
    }
    if (*out) {
        return LB_OK;
    }
    names = lb_palloc(cf->pool, (n + 1) * sizeof(char *));
    if (names == NULL) {
        return lb_conf_error_at(cf, file, line, "out of memory");
    }
    for (i = 0; i < n; i++) {
        names[i] = lb_array_at(&umcf->upstreams, lb_upstream_t *, i)->name;
    }
    names[n] = NULL;
    hint = lb_did_you_mean(name, names);
    if (hint) {
        return lb_conf_error_at(cf, file, line, "unknown upstream \"%s\" in %s "
                                "(did you mean \"%s\"?)", name, where, hint);
    }
    return lb_conf_error_at(cf, file, line, "unknown upstream \"%s\" in %s", name, where);
}

/* Attaches every server to its shared state slot, creating slots for new
 * servers and freeing those no configuration has used for a generation. */
static int
lb_upstream_init_master(lb_cycle_t *cycle)
{
    lb_upstream_main_conf_t  *umcf = lb_get_conf(cycle->confs, lb_core_upstream_module);
    lb_upstream_shm_t        *shm = umcf->zone->data;
    lb_upstream_slot_t       *slot, *free_slot;
    lb_upstream_t            *u;
    lb_upstream_server_t     *s;
    char                      key[sizeof(slot->key)];
    size_t                    i, j, k;

    lb_shm_lock(&shm->lock);
    for (i = 0; i < umcf->upstreams.nelts; i++) {
        u = lb_array_at(&umcf->upstreams, lb_upstream_t *, i);
        for (j = 0; j < u->nservers; j++) {
            s = &u->servers[j];
            snprintf(key, sizeof(key), "%s %s", u->name, s->addr.text);
            free_slot = NULL;
            s->state = NULL;
            for (k = 0; k < LB_UPSTREAM_ZONE_SLOTS; k++) {
                slot = &shm->slots[k];
                if (slot->used && strcmp(slot->key, key) == 0) {
                    s->state = &slot->state;
                    slot->generation = cycle->generation;
                    break;
                }
                if (!slot->used && free_slot == NULL) {
                    free_slot = slot;
                }
            }
            if (s->state == NULL) {
                if (free_slot == NULL) {
                    lb_shm_unlock(&shm->lock);
                    lb_log_error(0, "shared zone \"" LB_UPSTREAM_ZONE "\" is full "
                                 "(%d servers)", LB_UPSTREAM_ZONE_SLOTS);
                    return LB_ERROR;
                }
                memset(free_slot, 0, sizeof(*free_slot));
                memcpy(free_slot->key, key, sizeof(key));
                free_slot->used = true;
                free_slot->generation = cycle->generation;
                s->state = &free_slot->state;
            }
        }
    }
    for (k = 0; k < LB_UPSTREAM_ZONE_SLOTS; k++) {
        slot = &shm->slots[k];
        if (slot->used && slot->generation + 1 < cycle->generation
            && __atomic_load_n(&slot->state.active, __ATOMIC_RELAXED) == 0)
        {
            slot->used = false;
        }
    }
    lb_shm_unlock(&shm->lock);
    return LB_OK;
}

/* Each worker runs its own round robin; starting worker N N steps into the
 * sequence keeps workers from all sending their first connections to the
 * same server. */
static int
lb_upstream_init_worker(lb_cycle_t *cycle)
{
    lb_upstream_main_conf_t  *umcf = lb_get_conf(cycle->confs, lb_core_upstream_module);
    lb_upstream_t            *u;
    bool                      usable[LB_UPSTREAM_MAX_SERVERS];
    size_t                    i;
    int                       step;

    srandom((unsigned) getpid() ^ (unsigned) lb_current_msec);
    for (i = 0; i < LB_UPSTREAM_MAX_SERVERS; i++) {
        usable[i] = true;
    }
    for (i = 0; i < umcf->upstreams.nelts; i++) {
        u = lb_array_at(&umcf->upstreams, lb_upstream_t *, i);
        for (step = 0; step < lb_worker_slot; step++) {
            lb_upstream_swrr(u->servers, u->nprimary, usable);
        }
    }
    return LB_OK;
}

/* Selection ------------------------------------------------------------- */

static inline bool
lb_upstream_tried(const lb_upstream_try_t *try, size_t i)
{
    return try->tried[i / 64] & (1ULL << (i % 64));
}

ssize_t
lb_upstream_swrr(lb_upstream_server_t *servers, size_t n, const bool *usable)
{
    int64_t  total = 0;
    ssize_t  best = -1;
    size_t   i;

    for (i = 0; i < n; i++) {
        if (!usable[i]) {
            continue;
        }
        servers[i].current += servers[i].weight;
        total += servers[i].weight;
        if (best == -1 || servers[i].current > servers[best].current) {
            best = (ssize_t) i;
        }
    }
    if (best != -1) {
        servers[best].current -= total;
    }
    return best;
}

/* Fewest active connections per unit of weight; ties go round robin. */
static ssize_t
lb_upstream_least_conn(lb_upstream_server_t *servers, size_t n, bool *usable)
{
    uint64_t  a, b;
    size_t    i, best_n = 0;
    ssize_t   best = -1;

    for (i = 0; i < n; i++) {
        if (!usable[i]) {
            continue;
        }
        if (best != -1) {
            a = (uint64_t) servers[i].state->active * (uint64_t) servers[best].weight;
            b = (uint64_t) servers[best].state->active * (uint64_t) servers[i].weight;
            if (a > b) {
                usable[i] = false;
                continue;
            }
            if (a < b) {
                for (size_t j = 0; j < i; j++) {
                    usable[j] = false;
                }
                best_n = 0;
            }
        }
        best = (ssize_t) i;
        best_n++;
    }
    return best_n > 1 ? lb_upstream_swrr(servers, n, usable) : best;
}

static ssize_t
lb_upstream_random_two(lb_upstream_server_t *servers, size_t n, const bool *usable)
{
    size_t   idx[LB_UPSTREAM_MAX_SERVERS], m = 0, i;
    ssize_t  x, y;

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
    return (uint64_t) servers[y].state->active * (uint64_t) servers[x].weight
           < (uint64_t) servers[x].state->active * (uint64_t) servers[y].weight ? y : x;
}

lb_upstream_server_t *
lb_upstream_pick(lb_upstream_t *u, lb_upstream_try_t *try, const char **why)
{
    bool                   usable[LB_UPSTREAM_MAX_SERVERS];
    lb_upstream_server_t  *s, *range;
    size_t                 i, n, base, down = 0, full = 0, tried = 0, any;
    ssize_t                k;
    uint32_t               active;
    int                    pass;

    for (pass = 0; pass < 2; pass++) {
        base = pass == 0 ? 0 : u->nprimary;
        n = pass == 0 ? u->nprimary : u->nservers - u->nprimary;
        range = u->servers + base;

        for ( ;; ) {
            any = 0;
            for (i = 0; i < n; i++) {
                s = &range[i];
                usable[i] = false;
                if (lb_upstream_tried(try, base + i)) {
                    tried++;
                } else if (__atomic_load_n(&s->state->down, __ATOMIC_RELAXED)) {
                    down++;
                } else if (s->max_conns
                           && __atomic_load_n(&s->state->active, __ATOMIC_RELAXED)
                              >= (uint64_t) s->max_conns)
                {
                    full++;
                } else {
                    usable[i] = true;
                    any++;
                }
            }
            if (any == 0) {
                break;
            }
            switch (u->balance) {
            case LB_BALANCE_LEAST_CONN: k = lb_upstream_least_conn(range, n, usable); break;
            case LB_BALANCE_RANDOM_TWO: k = lb_upstream_random_two(range, n, usable); break;
            default:                    k = lb_upstream_swrr(range, n, usable); break;
            }
            if (k < 0) {
                break;
            }
            s = &range[k];
            /* reserve, then check: other workers may have raced us */
            active = __atomic_add_fetch(&s->state->active, 1, __ATOMIC_RELAXED);
            if (s->max_conns && active > (uint64_t) s->max_conns) {
                __atomic_sub_fetch(&s->state->active, 1, __ATOMIC_RELAXED);
                /* full now; recount and choose again */
                down = full = tried = 0;
                try->tried[(base + (size_t) k) / 64] |= 1ULL << ((base + (size_t) k) % 64);
                continue;
            }
            try->tried[(base + (size_t) k) / 64] |= 1ULL << ((base + (size_t) k) % 64);
            try->attempts++;
            return s;
        }
    }

    if (full && !down) {
        *why = "every server is at max_conns";
    } else if (down && !full && !tried) {
        *why = "every server is down";
    } else if (tried && !down && !full) {
        *why = "every server failed";
    } else {
        *why = "no server is up, below max_conns and untried";
    }
    return NULL;
}

void
lb_upstream_connected(lb_upstream_server_t *s, bool ok)
{
    if (ok) {
        __atomic_store_n(&s->state->fails, 0, __ATOMIC_RELAXED);
        __atomic_add_fetch(&s->state->connects, 1, __ATOMIC_RELAXED);
    } else {
        __atomic_add_fetch(&s->state->fails, 1, __ATOMIC_RELAXED);
    }
}

void
lb_upstream_release(lb_upstream_server_t *s)
{
    __atomic_sub_fetch(&s->state->active, 1, __ATOMIC_RELAXED);
}
