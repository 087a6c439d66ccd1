/*
 * lb_http_limits.c: request rate limits of http and https listeners and
 * routes (SPEC §3.8), an access-phase check.
 *
 *   limits = { requests_per_second = 100; burst = 50; nodelay = false;
 *              key = "$remote_addr"; status = 429; };
 *   limits_memory = "16m";                           (global; ipv6_prefix is the core's)
 *
 * Each block with a `limits` group (a listener, or a route, whose group
 * replaces its listener's) is a limit with buckets of its own, one per
 * value of `key`, in the shared table (lb_limits_table.h) that every worker
 * uses: the counts are the instance's, not a worker's. A request within
 * the rate passes; one over the rate but within `burst` waits until its
 * turn (or passes at once with nodelay, still using its place); one
 * beyond is answered `status` with Retry-After and the connection closes.
 * With the key "$remote_addr" an IPv6 client counts by its /ipv6_prefix
 * network, so one host cannot dodge the limit by rotating addresses.
 *
 * The table lives in the zone "lb_limits" (limits_memory bytes): a reload
 * that keeps the size keeps every bucket.
 */
#include "lb_core.h"
#include "lb_crypto.h"
#include "lb_hash.h"
#include "lb_http.h"
#include "lb_http_route.h"
#include "lb_limits_table.h"
#include "lb_state.h"

#include <arpa/inet.h>
#include <time.h>

#define LB_LIMITS_ZONE     "lb_limits"
#define LB_LIMITS_KEY_MAX  512          /* longer keys count by their first bytes */

typedef struct {
    int64_t              memory;            /* limits_memory */
    int64_t              ipv6_prefix;
    bool                 used;              /* some block has limits */
    lb_shm_zone_t       *zone;
} lb_http_limits_main_t;

typedef struct lb_http_limits_conf_s {
    int                  enabled;
    int64_t              rate;              /* requests_per_second */
    int64_t              burst;
    int                  nodelay;
    const char          *key_text;
    int64_t              status;
    lb_http_complex_t   *key;
    bool                 key_is_addr;       /* key is "$remote_addr": by network */
    bool                 written;
    uint64_t             id;                /* the limit's own bucket space */
    lb_http_limits_main_t *lmcf;            /* the table, ipv6_prefix */
    struct lb_http_limits_conf_s *use;      /* a route without a group: its listener's */
    uint32_t             m_limited[2];      /* refused, delayed */
    char                 where[48];         /* "listener \"web\" route #2" */
} lb_http_limits_conf_t;


static int   lb_http_limits_set(lb_conf_t *cf, const lb_setting_t *s, config_setting_t *v,
                                void *conf);
static void *lb_http_limits_create_conf(lb_conf_t *cf, unsigned ctx);
static int   lb_http_limits_merge_conf(lb_conf_t *cf, unsigned ctx, void *parent, void *conf);
static int   lb_http_limits_init_conf(lb_conf_t *cf);
static int   lb_http_limits_access(lb_http_request_t *r);
static int   lb_http_limits_header_filter(lb_http_request_t *r);
static int   lb_http_limits_state_save(lb_cycle_t *cycle, lb_state_writer_t *w);
static int   lb_http_limits_state_load(lb_cycle_t *cycle, const lb_state_record_t *r);

static const char *const  lb_http_limits_protocols[] = { "http", "https", NULL };

static const lb_setting_t  lb_http_limits_group[] = {
    { "enabled", LB_SET_BOOL, 0, "true", 0, 0,
      offsetof(lb_http_limits_conf_t, enabled), NULL, NULL, 0 },
    { "requests_per_second", LB_SET_INT, 0, "1", 1, 1000000,
      offsetof(lb_http_limits_conf_t, rate), NULL, NULL, 0 },
    { "burst", LB_SET_INT, 0, "0", 0, 1000000,
      offsetof(lb_http_limits_conf_t, burst), NULL, NULL, 0 },
    { "nodelay", LB_SET_BOOL, 0, "false", 0, 0,
      offsetof(lb_http_limits_conf_t, nodelay), NULL, NULL, 0 },
    { "key", LB_SET_STR, 0, "$remote_addr", 0, 0,
      offsetof(lb_http_limits_conf_t, key_text), NULL, NULL, 0 },
    { "status", LB_SET_INT, 0, "429", 400, 599,
      offsetof(lb_http_limits_conf_t, status), NULL, NULL, 0 },
    lb_setting_end
};

static const lb_setting_t  lb_http_limits_settings[] = {
    { "limits", LB_SET_CUSTOM, LB_CTX_LISTENER | LB_CTX_ROUTE, NULL, 0, 0, 0, NULL,
      lb_http_limits_set, 0 },
    { "limits_memory", LB_SET_SIZE, LB_CTX_GLOBAL, "16m", 64 * 1024, (int64_t) 1 << 34,
      offsetof(lb_http_limits_main_t, memory), NULL, NULL, 0 },
    lb_setting_end
};

static const lb_http_module_t  lb_http_limits_ctx = {
    .access = lb_http_limits_access,
    .header_filter = lb_http_limits_header_filter,
};

lb_module_t  lb_http_limits_module = {
    .name = "http_limits",
    .type = LB_MODULE_HTTP,
    .protocols = lb_http_limits_protocols,
    .settings = lb_http_limits_settings,
    .conf_contexts = LB_CTX_GLOBAL | LB_CTX_LISTENER | LB_CTX_ROUTE,
    .create_conf = lb_http_limits_create_conf,
    .merge_conf = lb_http_limits_merge_conf,
    .init_conf = lb_http_limits_init_conf,
    .ctx = &lb_http_limits_ctx,
    .state_save = lb_http_limits_state_save,
    .state_load = lb_http_limits_state_load,
};

static const lb_metric_family_t  lb_http_limited = {
    "lbd_http_rate_limited_total",
    "Requests over a rate limit, by listener, route, and what was done (refused, or "
    "delayed to the rate).",
    LB_METRIC_COUNTER, NULL, 0, 0
};

/* Configuration ---------------------------------------------------------- */

static void *
lb_http_limits_create_conf(lb_conf_t *cf, unsigned ctx)
{
    lb_http_limits_conf_t  *lcf;

    if (ctx == LB_CTX_GLOBAL) {
        return lb_pcalloc(cf->pool, sizeof(lb_http_limits_main_t));
    }
    lcf = lb_pcalloc(cf->pool, sizeof(*lcf));
    return lcf;
}

static int
lb_http_limits_set(lb_conf_t *cf, const lb_setting_t *s, config_setting_t *v, void *conf)
{
    lb_http_limits_conf_t  *lcf = conf;

    lb_unused(s);
    if (config_setting_type(v) != CONFIG_TYPE_GROUP) {
        return lb_conf_error(cf, v, "\"limits\" must be a group ({ requests_per_second = 100; "
                             "... }), not %s", lb_conf_type_name(v));
    }
    if (config_setting_get_member(v, "requests_per_second") == NULL) {
        return lb_conf_error(cf, v, "\"limits\" needs \"requests_per_second\"");
    }
    if (lb_conf_set_defaults(cf, lb_http_limits_group, lcf) != LB_OK
        || lb_conf_parse_group(cf, v, lb_http_limits_group, lcf) != LB_OK)
    {
        return LB_ERROR;
    }
    lcf->written = true;
    lcf->key = lb_http_complex_conf(cf, v, lcf->key_text, "key");
    if (lcf->key == NULL) {
        return LB_ERROR;
    }
    lcf->key_is_addr = strcmp(lcf->key_text, "$remote_addr") == 0
                       || strcmp(lcf->key_text, "${remote_addr}") == 0;
    return LB_OK;
}

/* A route without a group follows its listener's limit (its buckets too:
 * the same limit); a route with one has a limit of its own. */
static int
lb_http_limits_merge_conf(lb_conf_t *cf, unsigned ctx, void *parent, void *conf)
{
    lb_unused(cf);
    lb_unused(ctx);
    lb_unused(parent);
    lb_unused(conf);
    return LB_OK;
}

static int
lb_http_limits_zone_init(lb_shm_zone_t *zone)
{
    uint64_t  seed;

    if (zone->reused) {
        zone->data = zone->addr;        /* the buckets go on */
        return LB_OK;
    }
    if (lb_random_bytes(&seed, sizeof(seed)) != LB_OK) {
        lb_log_error(0, "cannot draw the seed of the rate limits' table");
        return LB_ERROR;
    }
    zone->data = lb_limits_table_init(zone->addr, zone->size, seed);
    return zone->data ? LB_OK : LB_ERROR;
}

static int
lb_http_limits_declare(lb_conf_t *cf, lb_http_limits_conf_t *lcf, const char *listener,
                       const char *route)
{
    static const char *const  actions[2] = { "refused", "delayed" };
    char                      base[512];

    snprintf(base, sizeof(base), "listener=\"%s\",route=\"%s\"", listener, route);
    return lb_metric_declare_each(cf, lcf->m_limited, &lb_http_limited, base, "action",
                                  actions, 2);
}

/* A limit's identity: its listener's name and its route's number, so that
 * a reload that keeps them keeps the buckets. */
static void
lb_http_limits_name(lb_http_limits_conf_t *lcf, const char *listener, unsigned route)
{
    lcf->id = lb_hash_mix64(lb_hash_fnv64(lb_hash_fnv64(LB_HASH_FNV_BASIS, listener,
                                                        strlen(listener)),
                                          &route, sizeof(route)));
    if (route) {
        snprintf(lcf->where, sizeof(lcf->where), "listener \"%.16s\" route #%u", listener,
                 route);
    } else {
        snprintf(lcf->where, sizeof(lcf->where), "listener \"%.24s\"", listener);
    }
}

static int
lb_http_limits_init_conf(lb_conf_t *cf)
{
    lb_http_limits_main_t   *lmcf = lb_get_conf(cf->cycle->confs, lb_http_limits_module);
    const lb_http_routes_t  *rs;
    lb_http_limits_conf_t   *lcf, *rcf;
    lb_listener_t           *ls;
    char                     name[256], route[16];
    size_t                   i, k;

    lmcf->ipv6_prefix = cf->cycle->core->ipv6_prefix;      /* a core setting */
    for (i = 0; i < cf->cycle->listeners.nelts; i++) {
        ls = lb_array_at(&cf->cycle->listeners, lb_listener_t *, i);
        rs = lb_http_route_list(ls);
        if (rs == NULL || ls->confs == NULL) {
            continue;
        }
        lb_metric_label(name, sizeof(name), ls->name);
        lcf = lb_get_conf(ls->confs, lb_http_limits_module);
        lcf->lmcf = lmcf;
        if (lcf->written && lcf->enabled) {
            lmcf->used = true;
            lb_http_limits_name(lcf, ls->name, 0);
            if (lb_http_limits_declare(cf, lcf, name, "") != LB_OK) {
                return LB_ERROR;
            }
        }
        for (k = 0; k < rs->nroutes; k++) {
            rcf = lb_get_conf(rs->routes[k]->confs, lb_http_limits_module);
            rcf->lmcf = lmcf;
            if (!rcf->written) {
                rcf->use = lcf;         /* the listener's limit, buckets and all */
                continue;
            }
            if (!rcf->enabled) {
                continue;
            }
            lmcf->used = true;
            lb_http_limits_name(rcf, ls->name, rs->routes[k]->index);
            snprintf(route, sizeof(route), "%u", rs->routes[k]->index);
            if (lb_http_limits_declare(cf, rcf, name, route) != LB_OK) {
                return LB_ERROR;
            }
        }
    }
    if (!lmcf->used) {
        return LB_OK;
    }
    lmcf->zone = lb_shm_zone_add(cf, LB_LIMITS_ZONE, (size_t) lmcf->memory,
                                 lb_http_limits_zone_init, lmcf);
    if (lmcf->zone == NULL) {
        return lb_conf_error_at(cf, cf->cycle->conf_file, 0, "cannot declare the shared zone "
                                "\"" LB_LIMITS_ZONE "\"");
    }
    return LB_OK;
}

/* Binary upgrade --------------------------------------------------------- */

/* The buckets go over as one record: the seed their keys were hashed
 * with, and per bucket its hash and how far its clock is from now
 * (microseconds; a clock in the past is an empty bucket and is left
 * out), 16 bytes each, big-endian. */
typedef struct {
    u_char   *buf;
    size_t    len, cap;
    int64_t   now;
} lb_http_limits_dump_t;

static int64_t
lb_http_limits_now(void)
{
    struct timespec  ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t) ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void
lb_http_limits_dump(void *arg, uint64_t hash, int64_t tat)
{
    lb_http_limits_dump_t  *d = arg;
    uint64_t                ahead = (uint64_t) (tat - d->now);
    u_char                 *p;
    int                     i;

    if (tat <= d->now || d->buf == NULL) {
        return;
    }
    if (d->len + 16 > d->cap) {
        p = realloc(d->buf, d->cap ? 2 * d->cap : 4096);
        if (p == NULL) {
            free(d->buf);
            d->buf = NULL;
            return;
        }
        d->buf = p;
        d->cap = d->cap ? 2 * d->cap : 4096;
    }
    for (i = 0; i < 8; i++) {
        d->buf[d->len + (size_t) i] = (u_char) (hash >> (56 - 8 * i));
        d->buf[d->len + 8 + (size_t) i] = (u_char) (ahead >> (56 - 8 * i));
    }
    d->len += 16;
}

static int
lb_http_limits_state_save(lb_cycle_t *cycle, lb_state_writer_t *w)
{
    lb_http_limits_main_t  *lmcf = lb_get_conf(cycle->confs, lb_http_limits_module);
    lb_http_limits_dump_t   d = { malloc(4096), 0, 4096, lb_http_limits_now() };

    if (lmcf == NULL || lmcf->zone == NULL || lmcf->zone->data == NULL) {
        free(d.buf);
        return LB_OK;
    }
    lb_limits_table_each(lmcf->zone->data, lb_http_limits_dump, &d);
    if (d.buf == NULL) {
        lb_log_error(ENOMEM, "cannot save the rate limits' buckets");
        return LB_ERROR;
    }
    lb_state_record_begin(w, "http_limits", "buckets");
    lb_state_put_int(w, "seed", (int64_t) lb_limits_table_seed(lmcf->zone->data));
    lb_state_put_bytes(w, "buckets", d.buf, d.len);
    lb_state_record_end(w);
    free(d.buf);
    return LB_OK;
}

static int
lb_http_limits_state_load(lb_cycle_t *cycle, const lb_state_record_t *r)
{
    lb_http_limits_main_t  *lmcf = lb_get_conf(cycle->confs, lb_http_limits_module);
    const u_char           *p;
    uint64_t                hash, ahead;
    int64_t                 seed, now = lb_http_limits_now();
    size_t                  n, i;
    int                     k;

    if (strcmp(r->type, "buckets") != 0 || lmcf == NULL || lmcf->zone == NULL
        || lmcf->zone->data == NULL || !lb_state_get_int(r, "seed", &seed)
        || (p = lb_state_get_bytes(r, "buckets", &n)) == NULL || n % 16)
    {
        return LB_DECLINED;
    }
    lb_limits_table_set_seed(lmcf->zone->data, (uint64_t) seed);
    for (i = 0; i < n; i += 16) {
        hash = ahead = 0;
        for (k = 0; k < 8; k++) {
            hash = hash << 8 | p[i + (size_t) k];
            ahead = ahead << 8 | p[i + 8 + (size_t) k];
        }
        lb_limits_table_put(lmcf->zone->data, hash, now + (int64_t) ahead);
    }
    return LB_OK;
}

/* Requests ---------------------------------------------------------------- */

/* The bucket of this request under limit lcf. */
static uint64_t
lb_http_limits_hash(lb_http_request_t *r, const lb_http_limits_conf_t *lcf, uint64_t seed)
{
    lb_http_var_ctx_t             ctx;
    struct in6_addr               a6;
    char                          key[LB_LIMITS_KEY_MAX];
    uint64_t                      h = lb_hash_fnv64(seed, &lcf->id, sizeof(lcf->id));
    size_t                        n;
    int                           bits, i;

    if (lcf->key_is_addr && strchr(r->peer->remote_ip, ':')
        && inet_pton(AF_INET6, r->peer->remote_ip, &a6) == 1)
    {
        /* an IPv6 client counts by its network */
        bits = (int) lcf->lmcf->ipv6_prefix;
        for (i = 0; i < 16; i++, bits -= 8) {
            a6.s6_addr[i] &= bits >= 8 ? 0xff : bits <= 0 ? 0 : (uint8_t) (0xff << (8 - bits));
        }
        return lb_hash_mix64(lb_hash_fnv64(h, &a6, sizeof(a6)));
    }
    lb_http_var_ctx(r, &ctx, 0);
    n = lb_http_complex_eval(lcf->key, &ctx, key, sizeof(key));
    h = lb_hash_fnv64(h, key, n < sizeof(key) ? n : sizeof(key));
    return lb_hash_mix64(lb_hash_fnv64(h, &n, sizeof(n)));
}

/* What the header filter needs to say Retry-After. */
typedef struct {
    char  retry_after[24];
} lb_http_limits_ctx_t;

/* At most one line a second per worker for refusals, with how many were
 * not logged since. */
static void
lb_http_limits_log(lb_http_request_t *r, const lb_http_limits_conf_t *lcf)
{
    static time_t    last;
    static uint64_t  quiet;
    time_t           now = time(NULL);

    if (now == last) {
        quiet++;
        return;
    }
    last = now;
    lb_log_warn(0, "limits: client %s over %lld requests per second (burst %lld) on %s; "
                "answered %d%s", r->peer->remote_ip, (long long) lcf->rate,
                (long long) lcf->burst, lcf->where, (int) lcf->status,
                quiet ? " (and more, not logged)" : "");
    quiet = 0;
}

static int
lb_http_limits_access(lb_http_request_t *r)
{
    const lb_http_limits_conf_t  *lcf;
    lb_http_limits_ctx_t         *ctx;
    lb_limits_table_t            *t;
    lb_listener_t                *ls = r->c->listener;
    struct timespec               ts;
    int64_t                       wait_us, now_us;
    lb_limits_verdict_t           v;
    void                         *zone;

    lcf = lb_get_conf(r->route ? r->route->confs : ls->confs, lb_http_limits_module);
    if (lcf && lcf->use) {
        lcf = lcf->use;
    }
    if (lcf == NULL || !lcf->written || !lcf->enabled || lcf->key == NULL) {
        return LB_DECLINED;
    }
    zone = lcf->lmcf->zone ? lcf->lmcf->zone->data : NULL;
    if (zone == NULL) {
        return LB_DECLINED;
    }
    t = zone;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    now_us = (int64_t) ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
    v = lb_limits_take(t, lb_http_limits_hash(r, lcf, lb_limits_table_seed(t)), now_us,
                       1000000 / lcf->rate, lcf->burst, lcf->nodelay, &wait_us);
    switch (v) {
    case LB_LIMITS_PASS:
        return LB_DECLINED;
    case LB_LIMITS_DELAY:
        lb_metric_add(lcf->m_limited[1], 1);
        lb_http_request_delay(r, (lb_msec_t) ((wait_us + 999) / 1000));
        return LB_AGAIN;
    default:
        lb_metric_add(lcf->m_limited[0], 1);
        lb_http_limits_log(r, lcf);
        ctx = (lb_http_limits_ctx_t *) lb_http_request_alloc(r, sizeof(*ctx));
        if (ctx) {
            snprintf(ctx->retry_after, sizeof(ctx->retry_after), "%lld",
                     (long long) ((wait_us + 999999) / 1000000));
            lb_http_request_set_ctx(r, lb_http_limits_module, ctx);
        }
        return (int) lcf->status | LB_HTTP_LOGGED;
    }
}

static int
lb_http_limits_header_filter(lb_http_request_t *r)
{
    lb_http_limits_ctx_t  *ctx = lb_http_request_ctx(r, lb_http_limits_module);

    if (ctx == NULL) {
        return LB_OK;
    }
    return lb_http_out_add(r, "Retry-After", 11, ctx->retry_after, strlen(ctx->retry_after));
}
