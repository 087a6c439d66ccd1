/*
 * lb_upstream.c: the upstreams = { } section, server selection (smooth
 * weighted round robin, least connections, power of two random choices)
 * and the shared per-server state.
 */
#include "lb_upstream.h"

#define LB_UPSTREAM_ZONE            "lb_upstream_state"
#define LB_UPSTREAM_ZONE_MIN_SLOTS  64

typedef struct {
    lb_array_t   upstreams;             /* lb_upstream_t * */
    lb_shm_zone_t *zone;
    size_t       nservers;              /* of every upstream */
} lb_upstream_main_conf_t;

/* Shared memory: a table of server states keyed by "UPSTREAM ADDRESS", so
 * a reload finds the state of a server it keeps. Sized from the
 * configuration; a reload may grow it (the zone is growable), never move a
 * slot. Only the master takes and frees slots; workers use their servers'
 * state through pointers. */
typedef struct {
    char                      key[192];
    unsigned                  generation;   /* newest configuration that uses it */
    bool                      used;
    lb_upstream_peer_state_t  state;
} lb_upstream_slot_t;

typedef struct {
    lb_shm_lock_t        lock;
    lb_upstream_slot_t   slots[];           /* as many as the zone holds */
} lb_upstream_shm_t;

#define lb_upstream_zone_bytes(nslots)                                        \
    (offsetof(lb_upstream_shm_t, slots) + (nslots) * sizeof(lb_upstream_slot_t))
#define lb_upstream_zone_nslots(zone)                                         \
    (((zone)->size - offsetof(lb_upstream_shm_t, slots)) / sizeof(lb_upstream_slot_t))

static const char *const  lb_balance_names[] = {
    "round_robin", "least_conn", "random_two", "hash", NULL
};

static int lb_upstream_set_upstreams(lb_conf_t *cf, const lb_setting_t *s,
                                     config_setting_t *v, void *conf);
static int lb_upstream_set_servers(lb_conf_t *cf, const lb_setting_t *s,
                                   config_setting_t *v, void *conf);
static int lb_upstream_set_passive(lb_conf_t *cf, const lb_setting_t *s,
                                   config_setting_t *v, void *conf);
static void *lb_upstream_create_conf(lb_conf_t *cf, unsigned ctx);
static int   lb_upstream_set_keepalive(lb_conf_t *cf, const lb_setting_t *s,
                                       config_setting_t *v, void *conf);
static int lb_upstream_merge_conf(lb_conf_t *cf, unsigned ctx, void *parent, void *conf);
static int lb_upstream_init_conf(lb_conf_t *cf);
static int lb_upstream_init_master(lb_cycle_t *cycle);
static int lb_upstream_init_worker(lb_cycle_t *cycle);

/* The settings of passive = { }, offsets into lb_upstream_passive_t. */
static const lb_setting_t  lb_upstream_passive_settings[] = {
    { "max_fails", LB_SET_INT, 0, "1", 0, 1000,
      offsetof(lb_upstream_passive_t, max_fails), NULL, NULL, 0 },
    { "fail_timeout", LB_SET_DURATION, 0, "10s", 1, 86400000,
      offsetof(lb_upstream_passive_t, fail_timeout), NULL, NULL, 0 },
    lb_setting_end
};

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
    { "keepalive", LB_SET_CUSTOM, LB_CTX_UPSTREAM, NULL, 0, 0,
      offsetof(lb_upstream_t, keepalive), NULL, lb_upstream_set_keepalive, 0 },
    { "keepalive_timeout", LB_SET_DURATION, LB_CTX_UPSTREAM, "60s", 1, 86400000,
      offsetof(lb_upstream_t, keepalive_timeout), NULL, NULL, 0 },
    { "proxy_protocol", LB_SET_INT, LB_CTX_UPSTREAM, "0", 0, 2,
      offsetof(lb_upstream_t, proxy_protocol), NULL, NULL, 0 },
    { "passive", LB_SET_CUSTOM, LB_CTX_UPSTREAM, NULL, 0, 0,
      offsetof(lb_upstream_t, passive), NULL, lb_upstream_set_passive, 0 },

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

/* keepalive = "auto" (the default) or a number 0..100000, a hard bound. */
static int
lb_upstream_set_keepalive(lb_conf_t *cf, const lb_setting_t *s, config_setting_t *v,
                          void *conf)
{
    int64_t  *out = (int64_t *) ((char *) conf + s->offset);
    long long n;

    if (config_setting_type(v) == CONFIG_TYPE_STRING) {
        if (strcmp(config_setting_get_string(v), "auto") == 0) {
            *out = LB_UPSTREAM_KEEPALIVE_AUTO;
            return LB_OK;
        }
    } else if (config_setting_type(v) == CONFIG_TYPE_INT
               || config_setting_type(v) == CONFIG_TYPE_INT64)
    {
        n = config_setting_get_int64(v);
        if (n >= 0 && n <= 100000) {
            *out = n;
            return LB_OK;
        }
    }
    return lb_conf_error(cf, v, "\"keepalive\" must be \"auto\" or an integer from 0 to "
                         "100000");
}

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
        if (u) {
            u->keepalive = LB_UPSTREAM_KEEPALIVE_AUTO;
        }
        /* passive health is on without a passive group */
        if (u && lb_conf_set_defaults(cf, lb_upstream_passive_settings, &u->passive) != LB_OK) {
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
lb_upstream_set_passive(lb_conf_t *cf, const lb_setting_t *s, config_setting_t *v, void *conf)
{
    return lb_conf_parse_group(cf, v, lb_upstream_passive_settings, (char *) conf + s->offset);
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
                u->servers[n] = *s;
                u->servers[n++].upstream = u;
            }
        }
        if (pass == 0) {
            u->nprimary = n;
        }
    }
    u->nservers = n;
    return LB_OK;
}

size_t
lb_upstream_zone_slots(size_t nservers)
{
    return nservers < LB_UPSTREAM_ZONE_MIN_SLOTS / 2 ? LB_UPSTREAM_ZONE_MIN_SLOTS : 2 * nservers;
}

size_t
lb_upstream_zone_capacity(size_t capacity, size_t used, size_t missing, size_t nservers)
{
    return used + missing <= capacity ? capacity : used + missing + nservers;
}

static int
lb_upstream_zone_init(lb_shm_zone_t *zone)
{
    /* a new zone's memory reads as zero: every slot free, the lock open */
    zone->data = zone->addr;
    return LB_OK;
}

/* Every worker of the generations older than `oldest` has exited: the
 * slots only they used are free again. */
static void
lb_upstream_zone_retire(lb_shm_zone_t *zone, unsigned oldest)
{
    lb_upstream_shm_t  *shm = zone->data;
    size_t              k, n = lb_upstream_zone_nslots(zone), freed = 0;

    lb_shm_lock(&shm->lock);
    for (k = 0; k < n; k++) {
        if (shm->slots[k].used && shm->slots[k].generation < oldest) {
            shm->slots[k].used = false;
            freed++;
        }
    }
    lb_shm_unlock(&shm->lock);
    if (freed) {
        lb_log_info("shared zone \"" LB_UPSTREAM_ZONE "\": freed %zu slots of generations "
                    "before %u", freed, oldest);
    }
}

static int
lb_upstream_init_conf(lb_conf_t *cf)
{
    lb_upstream_main_conf_t  *umcf = lb_get_conf(cf->cycle->confs, lb_core_upstream_module);
    size_t                    i;

    umcf->nservers = 0;
    for (i = 0; i < umcf->upstreams.nelts; i++) {
        umcf->nservers += lb_array_at(&umcf->upstreams, lb_upstream_t *, i)->nservers;
    }
    if (umcf->nservers > LB_UPSTREAM_MAX_TOTAL_SERVERS) {
        return lb_conf_error(cf, config_lookup(cf->config, "upstreams"),
                             "the upstreams have %zu servers in all; at most %d are allowed "
                             "(their state lives in the shared zone \"" LB_UPSTREAM_ZONE "\")",
                             umcf->nservers, LB_UPSTREAM_MAX_TOTAL_SERVERS);
    }
    umcf->zone = lb_shm_zone_add(cf, LB_UPSTREAM_ZONE,
                                 lb_upstream_zone_bytes(lb_upstream_zone_slots(umcf->nservers)),
                                 lb_upstream_zone_init, umcf);
    if (umcf->zone == NULL) {
        return lb_conf_error_at(cf, cf->cycle->conf_file, 0, "cannot declare shared zone \""
                                LB_UPSTREAM_ZONE "\"");
    }
    umcf->zone->growable = true;
    umcf->zone->retire = lb_upstream_zone_retire;
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

/* The master's index of the zone's slots by key, built for one
 * init_master: open addressing over slot numbers (+1, 0 is empty). */
typedef struct {
    uint32_t           *buckets;
    size_t              mask;
    lb_upstream_shm_t  *shm;
} lb_upstream_index_t;

static size_t
lb_upstream_key_hash(const char *key)
{
    size_t  h = 14695981039346656037ULL;      /* FNV-1a */

    for ( ; *key; key++) {
        h = (h ^ (unsigned char) *key) * 1099511628211ULL;
    }
    return h;
}

/* The slot of key, or where it would go: *bucket is then 0. */
static uint32_t *
lb_upstream_index_find(lb_upstream_index_t *ix, const char *key)
{
    size_t  i = lb_upstream_key_hash(key) & ix->mask;

    while (ix->buckets[i] && strcmp(ix->shm->slots[ix->buckets[i] - 1].key, key) != 0) {
        i = (i + 1) & ix->mask;
    }
    return &ix->buckets[i];
}

static void
lb_upstream_key(char *key, size_t size, const lb_upstream_t *u, const lb_upstream_server_t *s)
{
    snprintf(key, size, "%s %s", u->name, s->addr.text);
}

/* Indexes the used slots, with room for nservers more keys. */
static int
lb_upstream_index_build(lb_upstream_index_t *ix, lb_upstream_shm_t *shm, size_t nslots,
                        size_t nservers)
{
    size_t  n = 64, k;

    while (n < 2 * (nslots + nservers)) {
        n *= 2;
    }
    ix->buckets = calloc(n, sizeof(uint32_t));
    if (ix->buckets == NULL) {
        lb_log_error(ENOMEM, "cannot index shared zone \"" LB_UPSTREAM_ZONE "\"");
        return LB_ERROR;
    }
    ix->mask = n - 1;
    ix->shm = shm;
    for (k = 0; k < nslots; k++) {
        if (shm->slots[k].used) {
            *lb_upstream_index_find(ix, shm->slots[k].key) = (uint32_t) k + 1;
        }
    }
    return LB_OK;
}

/* Attaches every server to its shared state slot, taking free slots for
 * new servers; the zone grows first when they would not fit. Slots of
 * servers this configuration dropped stay taken while older workers may
 * use them: lb_upstream_zone_retire frees them when those have exited. */
static int
lb_upstream_init_master(lb_cycle_t *cycle)
{
    lb_upstream_main_conf_t  *umcf = lb_get_conf(cycle->confs, lb_core_upstream_module);
    lb_upstream_index_t       ix;
    lb_upstream_shm_t        *shm;
    lb_upstream_slot_t       *slot;
    lb_upstream_t            *u;
    lb_upstream_server_t     *s;
    uint32_t                 *b;
    char                      key[sizeof(slot->key)];
    size_t                    i, j, k, nslots, used = 0, missing = 0, want;

    shm = umcf->zone->data;
    nslots = lb_upstream_zone_nslots(umcf->zone);
    for (k = 0; k < nslots; k++) {
        used += shm->slots[k].used;
    }
    if (lb_upstream_index_build(&ix, shm, nslots, umcf->nservers) != LB_OK) {
        return LB_ERROR;
    }
    for (i = 0; i < umcf->upstreams.nelts; i++) {
        u = lb_array_at(&umcf->upstreams, lb_upstream_t *, i);
        for (j = 0; j < u->nservers; j++) {
            lb_upstream_key(key, sizeof(key), u, &u->servers[j]);
            missing += *lb_upstream_index_find(&ix, key) == 0;
        }
    }
    want = lb_upstream_zone_capacity(nslots, used, missing, umcf->nservers);
    if (want > nslots) {
        lb_log_notice("shared zone \"" LB_UPSTREAM_ZONE "\" is too small for this "
                      "configuration: %zu slots, %zu taken, %zu more needed; growing it "
                      "to %zu slots", nslots, used, missing, want);
        if (lb_shm_zone_grow(umcf->zone, lb_upstream_zone_bytes(want)) != LB_OK) {
            free(ix.buckets);
            return LB_ERROR;
        }
        /* the same slots at a new address: the index still holds */
        umcf->zone->data = umcf->zone->addr;
        shm = ix.shm = umcf->zone->data;
        nslots = lb_upstream_zone_nslots(umcf->zone);
    }

    k = 0;
    lb_shm_lock(&shm->lock);
    for (i = 0; i < umcf->upstreams.nelts; i++) {
        u = lb_array_at(&umcf->upstreams, lb_upstream_t *, i);
        for (j = 0; j < u->nservers; j++) {
            s = &u->servers[j];
            lb_upstream_key(key, sizeof(key), u, s);
            b = lb_upstream_index_find(&ix, key);
            if (*b == 0) {
                while (k < nslots && shm->slots[k].used) {
                    k++;
                }
                if (k == nslots) {      /* cannot happen: the zone was sized */
                    lb_shm_unlock(&shm->lock);
                    free(ix.buckets);
                    lb_log_error(0, "shared zone \"" LB_UPSTREAM_ZONE "\" is full "
                                 "(%zu servers)", nslots);
                    return LB_ERROR;
                }
                slot = &shm->slots[k];
                memset(slot, 0, sizeof(*slot));
                memcpy(slot->key, key, sizeof(key));
                slot->used = true;
                *b = (uint32_t) k + 1;
            }
            slot = &shm->slots[*b - 1];
            slot->generation = cycle->generation;
            s->state = &slot->state;
        }
    }
    lb_shm_unlock(&shm->lock);
    free(ix.buckets);
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
    size_t                 i, n, base, down, full, tried, failed, any;
    ssize_t                k, trial;
    uint32_t               active;
    int                    pass, round, rc;

    /* round 0 leaves out the servers passive health marked failed; round 1,
     * only when round 0 found nothing else, uses them like the others */
    for (round = 0; round < 2; round++) {
        down = full = tried = failed = 0;
        for (pass = 0; pass < 2; pass++) {
            base = pass == 0 ? 0 : u->nprimary;
            n = pass == 0 ? u->nprimary : u->nservers - u->nprimary;
            range = u->servers + base;

            for ( ;; ) {
                any = 0;
                trial = -1;
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
                    } else if (round == 0 && u->passive.max_fails
                               && (rc = lb_upstream_fail_check(s->state, &u->passive,
                                                               lb_current_msec)) != LB_OK)
                    {
                        if (rc == LB_AGAIN) {
                            trial = (ssize_t) i;    /* taken: it goes first */
                            break;
                        }
                        failed++;
                    } else {
                        usable[i] = true;
                        any++;
                    }
                }
                if (trial >= 0) {
                    k = trial;
                } else if (any == 0) {
                    break;
                } else {
                    switch (u->balance) {
                    case LB_BALANCE_LEAST_CONN: k = lb_upstream_least_conn(range, n, usable); break;
                    case LB_BALANCE_RANDOM_TWO: k = lb_upstream_random_two(range, n, usable); break;
                    default:                    k = lb_upstream_swrr(range, n, usable); break;
                    }
                    if (k < 0) {
                        break;
                    }
                }
                s = &range[k];
                try->tried[(base + (size_t) k) / 64] |= 1ULL << ((base + (size_t) k) % 64);
                /* reserve, then check: other workers may have raced us */
                active = __atomic_add_fetch(&s->state->active, 1, __ATOMIC_RELAXED);
                if (s->max_conns && active > (uint64_t) s->max_conns) {
                    __atomic_sub_fetch(&s->state->active, 1, __ATOMIC_RELAXED);
                    /* full now; recount and choose again */
                    down = full = tried = failed = 0;
                    continue;
                }
                try->attempts++;
                try->trial = trial >= 0
                             || (u->passive.max_fails
                                 && __atomic_load_n(&s->state->failed, __ATOMIC_RELAXED));
                return s;
            }
        }
        if (failed == 0) {
            break;
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

/* Passive health ---------------------------------------------------------- */

bool
lb_upstream_fail_note(lb_upstream_peer_state_t *st, const lb_upstream_passive_t *p,
                      lb_msec_t now)
{
    bool  marked = false;

    lb_shm_lock(&st->lock);
    /* a failure of a failed server changes nothing: its trials come one
     * per fail_timeout whatever the sessions picked before it failed do */
    if (!st->failed) {
        if (st->fails == 0 || now - st->fail_start >= p->fail_timeout) {
            st->fail_start = now;
            st->fails = 0;
        }
        __atomic_store_n(&st->fails, st->fails + 1, __ATOMIC_RELAXED);
        if ((int64_t) st->fails >= p->max_fails) {
            __atomic_store_n(&st->retry_at, now + p->fail_timeout, __ATOMIC_RELAXED);
            __atomic_store_n(&st->failed, 1, __ATOMIC_RELEASE);
            marked = true;
        }
    }
    lb_shm_unlock(&st->lock);
    return marked;
}

int
lb_upstream_fail_check(lb_upstream_peer_state_t *st, const lb_upstream_passive_t *p,
                       lb_msec_t now)
{
    lb_msec_t  at;

    if (!__atomic_load_n(&st->failed, __ATOMIC_ACQUIRE)) {
        return LB_OK;
    }
    at = __atomic_load_n(&st->retry_at, __ATOMIC_RELAXED);
    if (now < at) {
        return LB_DECLINED;
    }
    /* the trial is due: moving retry_at on gives it to one pick of one
     * worker, and the next one to whoever comes fail_timeout later */
    return __atomic_compare_exchange_n(&st->retry_at, &at, now + p->fail_timeout, false,
                                       __ATOMIC_RELAXED, __ATOMIC_RELAXED)
           ? LB_AGAIN : LB_DECLINED;
}

bool
lb_upstream_fail_clear(lb_upstream_peer_state_t *st)
{
    bool  was;

    /* the common case, a healthy server, takes no lock */
    if (!__atomic_load_n(&st->failed, __ATOMIC_RELAXED)
        && !__atomic_load_n(&st->fails, __ATOMIC_RELAXED))
    {
        return false;
    }
    lb_shm_lock(&st->lock);
    was = st->failed;
    __atomic_store_n(&st->failed, 0, __ATOMIC_RELAXED);
    __atomic_store_n(&st->fails, 0, __ATOMIC_RELAXED);
    lb_shm_unlock(&st->lock);
    return was;
}

static const char *
lb_upstream_msec_text(lb_msec_t ms, char *buf, size_t size)
{
    if (ms % 1000 == 0) {
        snprintf(buf, size, "%llds", (long long) (ms / 1000));
    } else {
        snprintf(buf, size, "%lldms", (long long) ms);
    }
    return buf;
}

/* Only the process that makes a transition logs it: one line each time a
 * server is marked failed and one when it is back, for all workers. */
void
lb_upstream_connected(lb_upstream_server_t *s, bool ok)
{
    lb_upstream_t  *u = s->upstream;
    char            t[32];

    if (ok) {
        __atomic_add_fetch(&s->state->connects, 1, __ATOMIC_RELAXED);
        if (lb_upstream_fail_clear(s->state) && u) {
            lb_log_notice("server %s in upstream \"%s\" answered again; back in use",
                          s->addr.text, u->name);
        }
        return;
    }
    if (u == NULL || u->passive.max_fails == 0) {
        __atomic_add_fetch(&s->state->fails, 1, __ATOMIC_RELAXED);
        return;
    }
    if (lb_upstream_fail_note(s->state, &u->passive, lb_current_msec)) {
        lb_upstream_msec_text(u->passive.fail_timeout, t, sizeof(t));
        lb_log_warn(0, "server %s in upstream \"%s\" failed %lld time(s) in %s; not used "
                    "for %s (max_fails/fail_timeout)", s->addr.text, u->name,
                    (long long) u->passive.max_fails, t, t);
    }
}

void
lb_upstream_release(lb_upstream_server_t *s)
{
    __atomic_sub_fetch(&s->state->active, 1, __ATOMIC_RELAXED);
}
