/*
 * lb_upstream.c: the upstreams = { } section, the choice of a usable
 * server (the balancers themselves are in lb_upstream_<name>.c; the
 * connect sequence in lb_upstream_peer.c), passive health, slow start and
 * the shared per-server state.
 */
#include "lb_upstream.h"
#include "lb_upstream_maglev.h"
#include "lb_upstream_sticky.h"
#include "lb_upstream_resolve.h"
#include "lb_crypto.h"

#include <fcntl.h>

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
    uint64_t                  commit;       /* the last configuration in force
                                               that had it (lb_upstream_shm_t) */
    lb_upstream_peer_state_t  state;
} lb_upstream_slot_t;

typedef struct {
    lb_shm_lock_t        lock;
    uint64_t             commits;           /* configurations put in force (at start
                                               and by reloads), the last one's number */
    lb_upstream_slot_t   slots[];           /* as many as the zone holds */
} lb_upstream_shm_t;

#define lb_upstream_zone_bytes(nslots)                                        \
    (offsetof(lb_upstream_shm_t, slots) + (nslots) * sizeof(lb_upstream_slot_t))
#define lb_upstream_zone_nslots(zone)                                         \
    (((zone)->size - offsetof(lb_upstream_shm_t, slots)) / sizeof(lb_upstream_slot_t))

static const lb_upstream_balancer_t  *const lb_upstream_builtin_balancers[] = {
    &lb_upstream_round_robin, &lb_upstream_least_conn, &lb_upstream_random_two,
    &lb_upstream_hash, NULL
};

static int lb_upstream_set_balance(lb_conf_t *cf, const lb_setting_t *s,
                                   config_setting_t *v, void *conf);
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

static int lb_upstream_set_sticky(lb_conf_t *cf, const lb_setting_t *s,
                                  config_setting_t *v, void *conf);
static int lb_upstream_set_next(lb_conf_t *cf, const lb_setting_t *s,
                                config_setting_t *v, void *conf);
static int lb_upstream_set_address(lb_conf_t *cf, const lb_setting_t *s,
                                   config_setting_t *v, void *conf);

static const char *const  lb_sticky_modes[] = { "none", "cookie", "source_ip", NULL };

/* The settings of sticky = { }, offsets into lb_upstream_sticky_t. */
static const lb_setting_t  lb_upstream_sticky_settings[] = {
    { "mode", LB_SET_ENUM, 0, NULL, 0, 0,
      offsetof(lb_upstream_sticky_t, mode), lb_sticky_modes, NULL, LB_SETTING_REQUIRED },
    { "cookie", LB_SET_STR, 0, "LBSTICKY", 0, 0,
      offsetof(lb_upstream_sticky_t, cookie), NULL, NULL, 0 },
    { "ttl", LB_SET_DURATION, 0, "1h", 1000, 366 * 86400000LL,
      offsetof(lb_upstream_sticky_t, ttl), NULL, NULL, 0 },
    { "secret_file", LB_SET_STR, 0, NULL, 0, 0,
      offsetof(lb_upstream_sticky_t, secret_file), NULL, NULL, 0 },
    { "path", LB_SET_STR, 0, "/", 0, 0,
      offsetof(lb_upstream_sticky_t, path), NULL, NULL, 0 },
    { "domain", LB_SET_STR, 0, NULL, 0, 0,
      offsetof(lb_upstream_sticky_t, domain), NULL, NULL, 0 },
    { "table_size", LB_SET_INT, 0, "65536", 16, 10000000,
      offsetof(lb_upstream_sticky_t, table_size), NULL, NULL, 0 },
    lb_setting_end
};

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

    { "balance", LB_SET_CUSTOM, LB_CTX_UPSTREAM, NULL, 0, 0,
      offsetof(lb_upstream_t, balancer), NULL, lb_upstream_set_balance, 0 },
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
    { "resolve_interval", LB_SET_DURATION, LB_CTX_UPSTREAM, "30s", 1000, 86400000,
      offsetof(lb_upstream_t, resolve_interval), NULL, NULL, 0 },
    { "keepalive_timeout", LB_SET_DURATION, LB_CTX_UPSTREAM, "60s", 1, 86400000,
      offsetof(lb_upstream_t, keepalive_timeout), NULL, NULL, 0 },
    { "proxy_protocol", LB_SET_INT, LB_CTX_UPSTREAM, "0", 0, 2,
      offsetof(lb_upstream_t, proxy_protocol), NULL, NULL, 0 },
    { "passive", LB_SET_CUSTOM, LB_CTX_UPSTREAM, NULL, 0, 0,
      offsetof(lb_upstream_t, passive), NULL, lb_upstream_set_passive, 0 },
    { "next_upstream", LB_SET_CUSTOM, LB_CTX_UPSTREAM, NULL, 0, 0,
      offsetof(lb_upstream_t, next_upstream), NULL, lb_upstream_set_next, 0 },
    { "sticky", LB_SET_CUSTOM, LB_CTX_UPSTREAM, NULL, 0, 0,
      offsetof(lb_upstream_t, sticky), NULL, lb_upstream_set_sticky, 0 },
    { "slow_start", LB_SET_DURATION, LB_CTX_UPSTREAM, "0", 0, 86400000,
      offsetof(lb_upstream_t, slow_start), NULL, NULL, 0 },

    { "address", LB_SET_CUSTOM, LB_CTX_SERVER, NULL, 0, 0,
      offsetof(lb_upstream_server_t, addr), NULL, lb_upstream_set_address,
      LB_SETTING_REQUIRED },
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
    lb_upstream_init_master, lb_upstream_init_worker, NULL, NULL, 0, NULL, 0, NULL, NULL,
    lb_upstream_state_save, lb_upstream_state_load
};

const lb_upstream_balancer_t *
lb_upstream_balancer_find(const char *name)
{
    const lb_upstream_balancer_t  *b;
    size_t                         i;

    for (i = 0; lb_upstream_builtin_balancers[i]; i++) {
        if (strcmp(lb_upstream_builtin_balancers[i]->name, name) == 0) {
            return lb_upstream_builtin_balancers[i];
        }
    }
    for (i = 0; i < lb_nmodules; i++) {
        b = lb_all_modules[i]->ctx;
        if (lb_all_modules[i]->type == LB_MODULE_BALANCER && b && strcmp(b->name, name) == 0) {
            return b;
        }
    }
    return NULL;
}

/* balance = "NAME": a built-in balancer or one a module adds. */
static int
lb_upstream_set_balance(lb_conf_t *cf, const lb_setting_t *s, config_setting_t *v, void *conf)
{
    const lb_upstream_balancer_t  **out = (const lb_upstream_balancer_t **) ((char *) conf
                                                                             + s->offset);
    const lb_upstream_balancer_t   *b;
    const char                     *name, *names[64], *hint;
    char                            list[512];
    size_t                          i, n = 0, len = 0;

    if (lb_conf_get_string(cf, v, &name) != LB_OK) {
        return LB_ERROR;
    }
    *out = lb_upstream_balancer_find(name);
    if (*out) {
        return LB_OK;
    }
    for (i = 0; lb_upstream_builtin_balancers[i]; i++) {
        names[n++] = lb_upstream_builtin_balancers[i]->name;
    }
    for (i = 0; i < lb_nmodules && n < 63; i++) {
        b = lb_all_modules[i]->ctx;
        if (lb_all_modules[i]->type == LB_MODULE_BALANCER && b) {
            names[n++] = b->name;
        }
    }
    names[n] = NULL;
    list[0] = '\0';
    for (i = 0; i < n && len < sizeof(list); i++) {
        len += (size_t) snprintf(list + len, sizeof(list) - len, "%s%s", i ? ", " : "",
                                 names[i]);
    }
    hint = lb_did_you_mean(name, names);
    if (hint) {
        return lb_conf_error(cf, v, "invalid value \"%s\" for \"balance\" (did you mean "
                             "\"%s\"?); expected one of: %s", name, hint, list);
    }
    return lb_conf_error(cf, v, "invalid value \"%s\" for \"balance\"; expected one of: %s",
                         name, list);
}

static const struct {
    const char  *name;
    unsigned     bit;
} lb_upstream_next_names[] = {
    { "error", LB_NEXT_ERROR }, { "timeout", LB_NEXT_TIMEOUT },
    { "invalid_header", LB_NEXT_INVALID_HEADER }, { "500", LB_NEXT_500 },
    { "502", LB_NEXT_502 }, { "503", LB_NEXT_503 }, { "504", LB_NEXT_504 },
    { "429", LB_NEXT_429 }, { "off", 0 }, { NULL, 0 }
};

unsigned
lb_upstream_next_status(int status)
{
    switch (status) {
    case 500: return LB_NEXT_500;
    case 502: return LB_NEXT_502;
    case 503: return LB_NEXT_503;
    case 504: return LB_NEXT_504;
    case 429: return LB_NEXT_429;
    default:  return 0;
    }
}

/* next_upstream = ["error", "timeout", "502", ...] or "off". */
static int
lb_upstream_set_next(lb_conf_t *cf, const lb_setting_t *s, config_setting_t *v, void *conf)
{
    unsigned          *out = (unsigned *) ((char *) conf + s->offset);
    const char        *names[16], *word, *hint;
    config_setting_t  *e;
    int                i, n, k;
    bool               off = false;

    for (k = 0; lb_upstream_next_names[k].name; k++) {
        names[k] = lb_upstream_next_names[k].name;
    }
    names[k] = NULL;
    *out = 0;
    n = config_setting_is_array(v) || config_setting_is_list(v) ? config_setting_length(v) : 1;
    for (i = 0; i < n; i++) {
        e = config_setting_is_scalar(v) ? v : config_setting_get_elem(v, (unsigned) i);
        if (lb_conf_get_string(cf, e, &word) != LB_OK) {
            return LB_ERROR;
        }
        for (k = 0; names[k] && strcmp(names[k], word) != 0; k++) { /* void */ }
        if (names[k] == NULL) {
            hint = lb_did_you_mean(word, names);
            return lb_conf_error(cf, e, "invalid value \"%s\" in \"next_upstream\"%s%s%s; "
                                 "expected: error, timeout, invalid_header, 500, 502, 503, "
                                 "504, 429, or \"off\" alone", word,
                                 hint ? " (did you mean \"" : "", hint ? hint : "",
                                 hint ? "\"?)" : "");
        }
        off |= lb_upstream_next_names[k].bit == 0;
        *out |= lb_upstream_next_names[k].bit;
    }
    if (off && n > 1) {
        return lb_conf_error(cf, v, "\"next_upstream\": \"off\" stands alone");
    }
    return LB_OK;
}

/* A server's address: an IP address and port, a unix: path, or a host
 * name and port, resolved once the upstream is read (merge). */
static int
lb_upstream_set_address(lb_conf_t *cf, const lb_setting_t *s, config_setting_t *v,
                        void *conf)
{
    lb_upstream_server_t  *srv = conf;
    const char            *text;
    char                   host[256], port[8], err[128];

    if (lb_conf_get_string(cf, v, &text) != LB_OK) {
        return LB_ERROR;
    }
    if (lb_parse_addr(text, &srv->addr, err, sizeof(err)) == LB_OK) {
        return LB_OK;
    }
    if (strchr(text, ':') == NULL) {
        return lb_conf_error(cf, v, "invalid address \"%s\" in \"address\": %s", text, err);
    }
    if (!lb_resolve_is_host(text, host, sizeof(host), port)) {
        return lb_conf_error(cf, v, "invalid address \"%s\" in \"address\": not an IP "
                             "address and port, a host name and port, or a unix: path", text);
    }
    srv->name = lb_pstrdup(cf->pool, text);
    return srv->name ? LB_OK : lb_conf_error(cf, v, "out of memory");
}

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
        lb_resolve_load_begin();        /* a load starts */
        lb_upstream_update_register();
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
            u->balancer = &lb_upstream_round_robin;
            u->next_upstream = LB_NEXT_ERROR | LB_NEXT_TIMEOUT;
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
        if (srv->name == NULL && lb_addr_resolve_unix(cf, &srv->addr) != LB_OK) {
            rc = LB_ERROR;
            continue;
        }
        for (k = 0; k < u->server_list.nelts; k++) {
            other = &lb_array_at(&u->server_list, lb_upstream_server_t, k);
            if (srv->name ? other->name && strcmp(other->name, srv->name) == 0
                          : !other->name && lb_addr_equal(&other->addr, &srv->addr))
            {
                rc = lb_conf_error(cf, g, "server %s appears twice in %s",
                                   srv->name ? srv->name : srv->addr.text, saved);
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

/* The secret that signs sticky cookies when no secret_file is given: drawn
 * once by the master, so cookies outlive reloads (a binary upgrade hands
 * it over). */
static unsigned char  lb_upstream_secret[32];
static bool           lb_upstream_have_secret;

const u_char *
lb_upstream_sticky_secret_get(size_t *len)
{
    *len = sizeof(lb_upstream_secret);
    return lb_upstream_have_secret ? lb_upstream_secret : NULL;
}

/* The old master's secret replaces the one this master drew at load, and
 * so do the keys made from it: cookies issued before the upgrade stay
 * valid, and every reload after keeps it. */
int
lb_upstream_sticky_secret_set(lb_cycle_t *cycle, const u_char *secret, size_t len)
{
    lb_upstream_t    **all, *u;
    lb_sticky_key_t   *key;
    size_t             i, n;

    if (len != sizeof(lb_upstream_secret)) {
        return LB_DECLINED;
    }
    memcpy(lb_upstream_secret, secret, len);
    lb_upstream_have_secret = true;
    all = lb_upstream_all(cycle, &n);
    for (i = 0; i < n; i++) {
        u = all[i];
        if (u->sticky.mode != LB_STICKY_COOKIE || u->sticky.secret_file) {
            continue;
        }
        key = lb_sticky_key_new(lb_upstream_secret, sizeof(lb_upstream_secret));
        if (key == NULL || lb_pool_cleanup_add(cycle->pool,
                                               (void (*)(void *)) lb_sticky_key_free, key)
                           != LB_OK)
        {
            lb_sticky_key_free(key);
            lb_log_error(ENOMEM, "cannot take the old master's sticky secret for upstream "
                         "\"%s\"", u->name);
            return LB_ERROR;
        }
        /* the key drawn at load stays with the pool, which frees it */
        u->sticky.key = key;
    }
    return LB_OK;
}

/* Bytes a cookie attribute value may hold: visible ASCII but ';' (RFC 6265
 * §4.1.1, path-value and domain). */
static bool
lb_upstream_cookie_attr_ok(const char *v, bool token)
{
    for ( ; *v; v++) {
        if ((unsigned char) *v <= 0x20 || (unsigned char) *v >= 0x7f || *v == ';'
            || (token && strchr("()<>@,:\\\"/[]?={}", *v)))
        {
            return false;
        }
    }
    return true;
}

static int
lb_upstream_sticky_secret(lb_conf_t *cf, config_setting_t *v, lb_upstream_sticky_t *st)
{
    unsigned char  buf[4096 + 1];
    const char    *path;
    ssize_t        n;
    int            fd, err;

    if (st->secret_file == NULL) {
        if (!lb_upstream_have_secret) {
            if (lb_random_bytes(lb_upstream_secret, sizeof(lb_upstream_secret)) != LB_OK) {
                return lb_conf_error(cf, v, "cannot draw a secret for sticky cookies");
            }
            lb_upstream_have_secret = true;
        }
        st->key = lb_sticky_key_new(lb_upstream_secret, sizeof(lb_upstream_secret));
    } else {
        path = lb_cycle_path(cf->pool, cf->cycle->prefix, st->secret_file);
        fd = path ? open(path, O_RDONLY | O_CLOEXEC) : -1;
        if (fd == -1) {
            err = errno;
            return lb_conf_error(cf, v, "cannot read secret_file \"%s\": %s",
                                 path ? path : st->secret_file, strerror(err));
        }
        n = read(fd, buf, sizeof(buf));
        err = errno;
        close(fd);
        if (n < 0) {
            return lb_conf_error(cf, v, "cannot read secret_file \"%s\": %s", path,
                                 strerror(err));
        }
        /* a trailing newline is the editor's, not the secret's */
        while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r')) {
            n--;
        }
        if (n < 16 || n > 4096) {
            return lb_conf_error(cf, v, "secret_file \"%s\" holds %zd bytes; a secret is 16 to "
                                 "4096 bytes (e.g. head -c 32 /dev/urandom | base64 > FILE)",
                                 path, n);
        }
        st->key = lb_sticky_key_new(buf, (size_t) n);
        explicit_bzero(buf, sizeof(buf));
    }
    if (st->key == NULL) {
        return lb_conf_error(cf, v, "cannot make the sticky cookie key");
    }
    return lb_pool_cleanup_add(cf->pool, (void (*)(void *)) lb_sticky_key_free, st->key);
}

static int
lb_upstream_set_sticky(lb_conf_t *cf, const lb_setting_t *s, config_setting_t *v, void *conf)
{
    lb_upstream_sticky_t  *st = (lb_upstream_sticky_t *) ((char *) conf + s->offset);

    if (lb_conf_set_defaults(cf, lb_upstream_sticky_settings, st) != LB_OK
        || lb_conf_parse_group(cf, v, lb_upstream_sticky_settings, st) != LB_OK)
    {
        return LB_ERROR;
    }
    if (config_setting_get_member(v, "mode") == NULL) {
        return lb_conf_error(cf, v, "\"sticky\" needs a mode: \"cookie\" or \"source_ip\"");
    }
    if (st->mode == LB_STICKY_NONE) {
        return LB_OK;
    }
    if (!*st->cookie || !lb_upstream_cookie_attr_ok(st->cookie, true)) {
        return lb_conf_error(cf, v, "sticky cookie \"%s\" is not a valid cookie name",
                             st->cookie);
    }
    if (*st->path != '/' || !lb_upstream_cookie_attr_ok(st->path, false)) {
        return lb_conf_error(cf, v, "sticky path \"%s\" must start with \"/\" and hold no "
                             "spaces, control characters or \";\"", st->path);
    }
    if (st->domain && (!*st->domain || !lb_upstream_cookie_attr_ok(st->domain, true))) {
        return lb_conf_error(cf, v, "sticky domain \"%s\" is not a valid domain", st->domain);
    }
    return st->mode == LB_STICKY_COOKIE ? lb_upstream_sticky_secret(cf, v, st) : LB_OK;
}

static int
lb_upstream_set_passive(lb_conf_t *cf, const lb_setting_t *s, config_setting_t *v, void *conf)
{
    return lb_conf_parse_group(cf, v, lb_upstream_passive_settings, (char *) conf + s->offset);
}

/* Replaces each host-name server of the list by one server per address
 * its name has now (none while it does not resolve), sharing its weight.
 * An address also written literally, or by another name, is kept once. */
static int
lb_upstream_expand_names(lb_conf_t *cf, lb_upstream_t *u)
{
    lb_upstream_server_t  *s, *t;
    lb_array_t             out;
    lb_addr_t              addrs[LB_RESOLVE_MAX_ADDRS];
    char                   host[256], port[8];
    size_t                 i, j, k, n;
    bool                   dup;

    for (i = 0; i < u->server_list.nelts; i++) {
        if (lb_array_at(&u->server_list, lb_upstream_server_t, i).name) {
            break;
        }
    }
    if (i == u->server_list.nelts) {
        return LB_OK;           /* IP addresses only: nothing to do */
    }
    if (lb_array_init(&out, cf->pool, u->server_list.nelts + 8, sizeof(lb_upstream_server_t))
        != LB_OK)
    {
        return lb_conf_error(cf, cf->group, "out of memory");
    }
    for (i = 0; i < u->server_list.nelts; i++) {
        s = &lb_array_at(&u->server_list, lb_upstream_server_t, i);
        n = 1;
        if (s->name) {
            lb_resolve_is_host(s->name, host, sizeof(host), port);
            n = lb_resolve_addrs(host, port, u->resolve_interval, addrs, LB_RESOLVE_MAX_ADDRS);
        }
        for (j = 0; j < n; j++) {
            dup = false;
            for (k = 0; k < out.nelts && s->name; k++) {
                dup |= lb_addr_equal(&lb_array_at(&out, lb_upstream_server_t, k).addr,
                                     &addrs[j]);
            }
            if (dup || out.nelts == LB_UPSTREAM_MAX_SERVERS) {
                continue;
            }
            t = lb_array_push(&out);
            if (t == NULL) {
                return lb_conf_error(cf, cf->group, "out of memory");
            }
            *t = *s;
            t->share = (int64_t) n;
            if (s->name) {
                t->addr = addrs[j];
            }
        }
    }
    u->server_list = out;
    return LB_OK;
}

static const lb_metric_family_t  lb_upstream_requests = {
    "lbd_upstream_server_requests_total", "Connections (tcp, tls), sessions (udp) or "
    "requests (http) given to the server, whatever became of them.", LB_METRIC_COUNTER,
    NULL, 0, 0
};
static const lb_metric_family_t  lb_upstream_failures = {
    "lbd_upstream_server_failures_total", "Of those, the ones the server failed: connect "
    "refused or timed out, an invalid or missing response head, no udp answer.",
    LB_METRIC_COUNTER, NULL, 0, 0
};

static int
lb_upstream_server_metrics(lb_conf_t *cf, lb_upstream_t *u, lb_upstream_server_t *s)
{
    char  name[256], addr[256], labels[640];

    snprintf(labels, sizeof(labels), "upstream=\"%s\",server=\"%s\"",
             lb_metric_label(name, sizeof(name), u->name),
             lb_metric_label(addr, sizeof(addr), s->addr.text));
    if (lb_metric_declare(cf, &s->m_requests, &lb_upstream_requests, labels) != LB_OK
        || lb_metric_declare(cf, &s->m_failures, &lb_upstream_failures, labels) != LB_OK)
    {
        return LB_ERROR;
    }
    return LB_OK;
}

static int
lb_upstream_merge_conf(lb_conf_t *cf, unsigned ctx, void *parent, void *conf)
{
    lb_upstream_t         *u = conf;
    lb_upstream_server_t  *s;
    size_t                 i, k, n = 0;
    int                    pass;

    if (ctx != LB_CTX_UPSTREAM) {
        return LB_OK;
    }
    if (lb_upstream_expand_names(cf, u) != LB_OK) {
        return LB_ERROR;
    }
    u->servers = lb_pcalloc(cf->pool, (u->server_list.nelts + 1) * sizeof(lb_upstream_server_t));
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
    for (i = 0; i < n; i++) {
        u->servers[i].sticky_id = lb_sticky_server_id(u->servers[i].addr.text);
        for (k = 0; k < i; k++) {
            if (u->servers[k].sticky_id == u->servers[i].sticky_id) {
                /* 2^-64 a pair: say so rather than mix two servers' sessions */
                return lb_conf_error(cf, cf->group, "servers %s and %s of %s have the same "
                                     "sticky id; change either address's spelling",
                                     u->servers[k].addr.text, u->servers[i].addr.text,
                                     cf->block);
            }
        }
    }
    return u->balancer->init_upstream ? u->balancer->init_upstream(cf, u) : LB_OK;
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

/* The configuration that declared the zone is in force: its servers'
 * slots are stamped with its number, so that the next load tells a server
 * it has from one it had removed (lb_upstream_init_master), whatever
 * loads failed in between. */
static void
lb_upstream_zone_commit(lb_shm_zone_t *zone)
{
    lb_upstream_main_conf_t  *umcf = zone->owner;
    lb_upstream_shm_t        *shm = zone->data;
    lb_upstream_slot_t       *slot;
    lb_upstream_t            *u;
    size_t                    i, j;

    lb_shm_lock(&shm->lock);
    shm->commits++;
    for (i = 0; i < umcf->upstreams.nelts; i++) {
        u = lb_array_at(&umcf->upstreams, lb_upstream_t *, i);
        for (j = 0; j < u->nservers; j++) {
            slot = (lb_upstream_slot_t *) ((char *) u->servers[j].state
                                           - offsetof(lb_upstream_slot_t, state));
            slot->commit = shm->commits;
        }
    }
    lb_shm_unlock(&shm->lock);
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
lb_upstream_sticky_zone_init(lb_shm_zone_t *zone)
{
    lb_upstream_t  *u = zone->owner;

    /* keeps the entries of a table a reload found */
    lb_sticky_table_init(zone->addr, (size_t) u->sticky.table_size);
    zone->data = zone->addr;
    return LB_OK;
}

static int
lb_upstream_init_conf(lb_conf_t *cf)
{
    lb_upstream_main_conf_t  *umcf = lb_get_conf(cf->cycle->confs, lb_core_upstream_module);
    lb_upstream_t            *u;
    const char               *name;
    size_t                    i, k;

    umcf->nservers = 0;
    for (i = 0; i < umcf->upstreams.nelts; i++) {
        u = lb_array_at(&umcf->upstreams, lb_upstream_t *, i);
        umcf->nservers += u->nservers;
        for (k = 0; k < u->nservers; k++) {
            if (lb_upstream_server_metrics(cf, u, &u->servers[k]) != LB_OK) {
                return LB_ERROR;
            }
        }
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
    umcf->zone->commit = lb_upstream_zone_commit;

    for (i = 0; i < umcf->upstreams.nelts; i++) {
        u = lb_array_at(&umcf->upstreams, lb_upstream_t *, i);
        if (u->sticky.mode != LB_STICKY_SOURCE_IP) {
            continue;
        }
        /* one table per upstream, kept by a reload that keeps its size */
        name = lb_psprintf(cf->pool, "lb_sticky_%s", u->name);
        u->sticky.zone = name ? lb_shm_zone_add(cf, name,
                                                lb_sticky_table_bytes((size_t) u->sticky.table_size),
                                                lb_upstream_sticky_zone_init, u)
                              : NULL;
        if (u->sticky.zone == NULL) {
            return lb_conf_error_at(cf, cf->cycle->conf_file, 0, "cannot declare the sticky "
                                    "table of upstream \"%s\"", u->name);
        }
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

lb_shm_zone_t *
lb_upstream_zone(lb_cycle_t *cycle)
{
    lb_upstream_main_conf_t  *umcf = lb_get_conf(cycle->confs, lb_core_upstream_module);

    return umcf ? umcf->zone : NULL;
}

lb_upstream_t **
lb_upstream_all(lb_cycle_t *cycle, size_t *n)
{
    lb_upstream_main_conf_t  *umcf = lb_get_conf(cycle->confs, lb_core_upstream_module);

    *n = umcf ? umcf->upstreams.nelts : 0;
    return umcf ? umcf->upstreams.elts : NULL;
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
lb_upstream_slot_hash(const char *key)
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
    size_t  i = lb_upstream_slot_hash(key) & ix->mask;

    while (ix->buckets[i] && strcmp(ix->shm->slots[ix->buckets[i] - 1].key, key) != 0) {
        i = (i + 1) & ix->mask;
    }
    return &ix->buckets[i];
}

static void
lb_upstream_key(char *key, size_t size, const lb_upstream_t *u, const lb_upstream_server_t *s)
{
    if (s->name) {
        snprintf(key, size, "%s %s=%s", u->name, s->name, s->addr.text);
    } else {
        snprintf(key, size, "%s %s", u->name, s->addr.text);
    }
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

/* Field by field: `active` and `lock` are left alone, for connections of
 * older versions still counting on them. */
static void
lb_upstream_slot_forget(lb_upstream_slot_t *slot)
{
    lb_upstream_peer_state_t  *st = &slot->state;

    lb_shm_lock(&st->lock);
    st->fails = 0;
    st->failed = 0;
    st->fail_start = 0;
    st->retry_at = 0;
    lb_shm_unlock(&st->lock);
    st->down = 0;
    st->connects = 0;
    st->back_at = 0;
    st->drain = 0;
    st->disabled = 0;
    st->weight_set = 0;
    st->checked = 0;
    st->checks_failed = 0;
    st->down_why[0] = '\0';
    st->ok_run = 0;
    st->fail_run = 0;
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
    bool                      fresh;

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
                fresh = true;
            } else {
                slot = &shm->slots[*b - 1];
                fresh = shm->commits && slot->commit != shm->commits;
                if (fresh) {
                    /* the configuration in force does not have it (a
                     * reload in place keeps its slot while older versions
                     * may count on it): what was set about it is
                     * forgotten, as if it were new, but the connections it
                     * still has */
                    lb_upstream_slot_forget(slot);
                }
            }
            slot = &shm->slots[*b - 1];
            if (fresh && shm->commits && u->slow_start) {
                /* a server a reload adds ramps up like one coming back */
                __atomic_store_n(&slot->state.back_at, lb_current_msec, __ATOMIC_RELAXED);
            }
            slot->generation = cycle->generation;
            s->state = &slot->state;
            /* a weight set at runtime holds until the file changes this
             * server's weight */
            if (!s->state->weight_set || s->state->weight_conf != s->weight) {
                s->state->weight_set = 0;
                __atomic_store_n(&s->state->weight, s->weight, __ATOMIC_RELAXED);
            }
            s->state->weight_conf = s->weight;
        }
    }
    lb_shm_unlock(&shm->lock);
    free(ix.buckets);
    lb_resolve_master(cycle->conf_file);
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
            lb_upstream_swrr(u->servers, u->nprimary, usable, 0);
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

uint64_t
lb_upstream_key_hash(const void *data, size_t len)
{
    return lb_maglev_hash(data, len);
}

uint64_t
lb_upstream_addr_key(const struct sockaddr *sa)
{
    if (sa->sa_family == AF_INET) {
        return lb_maglev_hash(&((const struct sockaddr_in *) sa)->sin_addr, 4);
    }
    if (sa->sa_family == AF_INET6) {
        return lb_maglev_hash(&((const struct sockaddr_in6 *) sa)->sin6_addr, 16);
    }
    return 0;
}

int64_t
lb_upstream_weight_now(const lb_upstream_server_t *s, lb_msec_t now)
{
    lb_upstream_t  *u = s->upstream;
    lb_msec_t       back, since;

    int64_t         share = s->share > 1 ? s->share : 1;
    int64_t         weight = lb_upstream_server_weight(s);

    if (u == NULL || u->slow_start == 0 || s->state == NULL) {
        return lb_max(weight * 100 / share, 1);
    }
    back = __atomic_load_n(&s->state->back_at, __ATOMIC_RELAXED);
    since = now - back;
    if (back == 0 || since >= u->slow_start || since < 0) {
        return lb_max(weight * 100 / share, 1);
    }
    /* from a tenth of its weight to all of it, linearly */
    return lb_max(weight * (10 + 90 * since / u->slow_start) / share, 1);
}

ssize_t
lb_upstream_swrr(lb_upstream_server_t *servers, size_t n, const bool *usable, lb_msec_t now)
{
    int64_t  total = 0, w;
    ssize_t  best = -1;
    size_t   i;

    for (i = 0; i < n; i++) {
        if (!usable[i]) {
            continue;
        }
        w = lb_upstream_weight(&servers[i], now);
        servers[i].current += w;
        total += w;
        if (best == -1 || servers[i].current > servers[best].current) {
            best = (ssize_t) i;
        }
    }
    if (best != -1) {
        servers[best].current -= total;
    }
    return best;
}

/* Whether s may take a connection now, apart from passive health. */
enum {
    LB_SERVER_USABLE = 0,
    LB_SERVER_DOWN,             /* health checks, or disabled */
    LB_SERVER_FULL,             /* max_conns */
    LB_SERVER_DRAINING,         /* drained, or weight 0: sticky sessions only */
};

static inline int
lb_upstream_state_of(const lb_upstream_server_t *s)
{
    const lb_upstream_peer_state_t  *st = s->state;

    if (__atomic_load_n(&st->down, __ATOMIC_RELAXED)
        || __atomic_load_n(&st->disabled, __ATOMIC_RELAXED))
    {
        return LB_SERVER_DOWN;
    }
    if (s->max_conns
        && __atomic_load_n(&st->active, __ATOMIC_RELAXED) >= (uint64_t) s->max_conns)
    {
        return LB_SERVER_FULL;
    }
    if (__atomic_load_n(&st->drain, __ATOMIC_RELAXED)
        || __atomic_load_n(&st->weight, __ATOMIC_RELAXED) == 0)
    {
        return LB_SERVER_DRAINING;
    }
    return LB_SERVER_USABLE;
}

/* Counts a connection against s and marks it tried; false when another
 * worker filled it to max_conns meanwhile. */
static bool
lb_upstream_take(lb_upstream_peer_t *pr, lb_upstream_server_t *s, bool trial)
{
    lb_upstream_t  *u = pr->u;
    size_t          k = (size_t) (s - u->servers);
    uint32_t        active;

    pr->try.tried[k / 64] |= 1ULL << (k % 64);
    /* reserve, then check: other workers may have raced us */
    active = __atomic_add_fetch(&s->state->active, 1, __ATOMIC_RELAXED);
    if (s->max_conns && active > (uint64_t) s->max_conns) {
        __atomic_sub_fetch(&s->state->active, 1, __ATOMIC_RELAXED);
        return false;
    }
    u->refs++;                  /* the version stays while a server of it is taken */
    pr->try.attempts++;
    pr->try.trial = trial || (u->passive.max_fails
                              && __atomic_load_n(&s->state->failed, __ATOMIC_RELAXED));
    return true;
}

/* The sticky target, when it can take the connection: up, enabled (a
 * draining one still takes its sessions), below max_conns, not failed (a
 * failed one's trial is the balancer's), and not tried yet. */
static bool
lb_upstream_take_sticky(lb_upstream_peer_t *pr)
{
    lb_upstream_server_t  *s = pr->sticky;
    lb_upstream_t         *u = pr->u;
    int                    st = lb_upstream_state_of(s);

    pr->sticky = NULL;          /* one chance: a retry goes to the balancer */
    if (lb_upstream_tried(&pr->try, (size_t) (s - u->servers))
        || (st != LB_SERVER_USABLE && st != LB_SERVER_DRAINING)
        || (u->passive.max_fails && __atomic_load_n(&s->state->failed, __ATOMIC_RELAXED)))
    {
        return false;
    }
    return lb_upstream_take(pr, s, false);
}

lb_upstream_server_t *
lb_upstream_pick(lb_upstream_peer_t *pr, const char **why)
{
    lb_upstream_t         *u = pr->u;
    bool                   usable[LB_UPSTREAM_MAX_SERVERS];
    lb_upstream_server_t  *s, *range;
    size_t                 i, n, base, down, full, tried, failed, draining, any;
    ssize_t                k, trial;
    int                    pass, round, rc, st;

    s = pr->sticky;
    if (s && lb_upstream_take_sticky(pr)) {
        return pr->last = s;
    }

    /* round 0 leaves out the servers passive health marked failed; round 1,
     * only when round 0 found nothing else, uses them like the others */
    for (round = 0; round < 2; round++) {
        down = full = tried = failed = draining = 0;
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
                    if (lb_upstream_tried(&pr->try, base + i)) {
                        tried++;
                    } else if ((st = lb_upstream_state_of(s)) != LB_SERVER_USABLE) {
                        down += st == LB_SERVER_DOWN;
                        full += st == LB_SERVER_FULL;
                        draining += st == LB_SERVER_DRAINING;
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
                    k = u->balancer->get(pr, range, n, pass == 1, usable);
                    if (k < 0) {
                        break;
                    }
                }
                if (!lb_upstream_take(pr, &range[k], trial >= 0)) {
                    /* full now; recount and choose again */
                    down = full = tried = failed = draining = 0;
                    continue;
                }
                return pr->last = &range[k];
            }
        }
        if (failed == 0) {
            break;
        }
    }

    if (u->nservers == 0) {
        *why = "no server: its names do not resolve yet";
    } else if (full && !down && !draining) {
        *why = "every server is at max_conns";
    } else if (down && !full && !tried && !draining) {
        *why = "every server is down";
    } else if (draining && !down && !full && !tried) {
        *why = "every server is draining";
    } else if (tried && !down && !full && !draining) {
        *why = "every server failed";
    } else {
        *why = "no server is up, enabled, below max_conns and untried";
    }
    return NULL;
}

/* Sticky sessions --------------------------------------------------------- */

lb_upstream_server_t *
lb_upstream_server_by_id(lb_upstream_t *u, uint64_t id)
{
    size_t  i;

    for (i = 0; i < u->nservers; i++) {
        if (u->servers[i].sticky_id == id) {
            return &u->servers[i];
        }
    }
    return NULL;
}

size_t
lb_upstream_sticky_cookie(lb_upstream_t *u, const lb_upstream_server_t *s, char *out,
                          size_t size)
{
    return lb_sticky_cookie_make(u->sticky.key, u->name, s->sticky_id,
                                 (int64_t) lb_current_sec + u->sticky.ttl / 1000, out, size);
}

/* Cookies this worker verified lately: a client sends the same one with
 * every request, and an HMAC per request costs more than the rest of the
 * choice. Only a verified value gets in, so the cache admits no forgery;
 * it lives and dies with the worker, so with the configuration. */
#define LB_STICKY_SEEN  256

typedef struct {
    const lb_upstream_t   *u;
    lb_upstream_server_t  *server;
    int64_t                expires;
    char                   value[LB_STICKY_COOKIE_LEN];
} lb_upstream_seen_t;

static lb_upstream_seen_t  lb_upstream_seen[LB_STICKY_SEEN];

void
lb_upstream_sticky_forget(void)
{
    memset(lb_upstream_seen, 0, sizeof(lb_upstream_seen));
}

lb_upstream_server_t *
lb_upstream_sticky_check(lb_upstream_t *u, const char *value, size_t len, const char **why,
                         bool *renew)
{
    lb_upstream_seen_t    *seen = NULL;
    lb_upstream_server_t  *s;
    uint64_t               id;
    int64_t                now = (int64_t) lb_current_sec, expires;

    if (len == LB_STICKY_COOKIE_LEN) {
        /* the last characters are the MAC's: as good as a hash */
        seen = &lb_upstream_seen[((unsigned char) value[len - 1] << 2
                                  ^ (unsigned char) value[len - 2]) % LB_STICKY_SEEN];
        if (seen->u == u && seen->expires > now && memcmp(seen->value, value, len) == 0) {
            *renew = seen->expires - now < u->sticky.ttl / 2000;
            return seen->server;
        }
    }
    if (lb_sticky_cookie_check(u->sticky.key, u->name, value, len, now, &id, &expires, why)
        != LB_OK)
    {
        return NULL;
    }
    s = lb_upstream_server_by_id(u, id);
    if (s == NULL) {
        *why = "names no server of this upstream";
        return NULL;
    }
    seen->u = u;
    seen->server = s;
    seen->expires = expires;
    memcpy(seen->value, value, len);
    *renew = expires - now < u->sticky.ttl / 2000;
    return s;
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
            if (u->slow_start) {
                __atomic_store_n(&s->state->back_at, lb_current_msec, __ATOMIC_RELAXED);
            }
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
lb_upstream_release(lb_upstream_server_t *s, lb_upstream_outcome_t outcome)
{
    if (s->upstream && s->upstream->balancer->free) {
        s->upstream->balancer->free(s, outcome);
    }
    lb_metric_add(s->m_requests, 1);
    if (outcome == LB_PEER_FAILED) {
        lb_metric_add(s->m_failures, 1);
    }
    __atomic_sub_fetch(&s->state->active, 1, __ATOMIC_RELAXED);
    if (s->upstream && s->upstream->refs) {
        s->upstream->refs--;
    }
}
