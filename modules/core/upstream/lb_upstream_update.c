/*
 * lb_upstream_update.c: an upstream's servers or tls group changed by a
 * reload applied in place (lb_reload.h, SPEC §6). The master sends each
 * changed upstream's new server list, with where each server's state is in
 * the shared zone and its metrics numbers, and its tls group when that
 * changed; a worker builds a new version of the upstream
 * from it (its own pool, its balancer's tables), lets the modules that keep
 * something per server follow (lb_upstream_on_update), and puts it in
 * force. Connections that picked a server of an older version keep it:
 * that version is freed once no server of it is taken any more.
 */
#include "lb_upstream.h"
#include "lb_reload.h"
#include "lb_tls.h"

/* A replaced version unused this long is freed: the grace covers what
 * outlives a release by a few events (a log line naming the server). */
#define LB_UPSTREAM_VERSION_GRACE  5000

/* The message: u32 count, then per upstream a head, its name, and its
 * servers, each a record and its name as written (host-name servers);
 * then, when its tls group changed, what the group says and the CA
 * file's contents. */
typedef struct {
    uint32_t   name_len;
    uint32_t   nservers;
    uint32_t   nprimary;
    uint32_t   tls;             /* 1: a tls record follows the servers */
} lb_upstream_update_head_t;

typedef struct {
    lb_addr_t  addr;
    int64_t    weight;
    int64_t    max_conns;
    int64_t    share;
    uint64_t   sticky_id;
    uint64_t   state_off;       /* from the start of the shared state zone */
    uint32_t   m_requests;
    uint32_t   m_failures;
    int32_t    backup;
    uint32_t   name_len;        /* 0: an IP address or unix path */
} lb_upstream_update_server_t;

typedef struct {
    uint32_t   on;              /* 0: no tls group any more */
    uint32_t   verify;
    uint32_t   sni_len;         /* then the name sent, */
    uint32_t   ca_len;          /* the CA file's name */
    uint64_t   pem_len;         /* and its contents */
} lb_upstream_update_tls_t;

/* A CA bundle larger than this is refused (the system's is ~200 KiB). */
#define LB_UPSTREAM_MAX_CA_FILE  (16 * 1024 * 1024)

static lb_upstream_update_pt  lb_upstream_watchers[8];
static size_t                 lb_upstream_nwatchers;
static lb_upstream_t         *lb_upstream_retired;
static lb_timer_t             lb_upstream_retire_timer;
static bool                   lb_upstream_retire_timer_ready;

int
lb_upstream_on_update(lb_upstream_update_pt fn)
{
    size_t  i;

    for (i = 0; i < lb_upstream_nwatchers; i++) {
        if (lb_upstream_watchers[i] == fn) {
            return LB_OK;
        }
    }
    if (lb_upstream_nwatchers == lb_nelems(lb_upstream_watchers)) {
        return LB_ERROR;
    }
    lb_upstream_watchers[lb_upstream_nwatchers++] = fn;
    return LB_OK;
}

static bool
lb_upstream_same_server(const lb_upstream_server_t *a, const lb_upstream_server_t *b)
{
    if ((a->name == NULL) != (b->name == NULL)
        || (a->name && strcmp(a->name, b->name) != 0))
    {
        return false;
    }
    return strcmp(a->addr.text, b->addr.text) == 0;
}

ssize_t
lb_upstream_server_index(const lb_upstream_t *u, const lb_upstream_server_t *s)
{
    size_t  i;

    for (i = 0; i < u->nservers; i++) {
        if (lb_upstream_same_server(&u->servers[i], s)) {
            return (ssize_t) i;
        }
    }
    return -1;
}

/* Master ------------------------------------------------------------------ */

/* The settings applied in place: each upstream's servers (addresses,
 * weights, max_conns, backup flags) and its tls group. */
static void
lb_upstream_update_strip(config_t *config)
{
    config_setting_t  *ups = config_lookup(config, "upstreams"), *g;
    int                i, n;

    if (ups == NULL || config_setting_type(ups) != CONFIG_TYPE_GROUP) {
        return;
    }
    n = config_setting_length(ups);
    for (i = 0; i < n; i++) {
        g = config_setting_get_elem(ups, (unsigned) i);
        if (g && config_setting_type(g) == CONFIG_TYPE_GROUP) {
            if (config_setting_get_member(g, "servers")) {
                config_setting_remove(g, "servers");
            }
            if (config_setting_get_member(g, "tls")) {
                config_setting_remove(g, "tls");
            }
        }
    }
}

/* What changed from o to u: servers added, removed, and kept with other
 * settings; *moved when only the order differs. */
static void
lb_upstream_diff(const lb_upstream_t *o, const lb_upstream_t *u, size_t *added,
                 size_t *removed, size_t *changed, bool *moved)
{
    const lb_upstream_server_t  *s, *t;
    ssize_t                      k;
    size_t                       i;

    *added = *removed = *changed = 0;
    *moved = false;
    for (i = 0; i < u->nservers; i++) {
        s = &u->servers[i];
        k = lb_upstream_server_index(o, s);
        if (k < 0) {
            (*added)++;
            continue;
        }
        t = &o->servers[k];
        if (t->weight != s->weight || t->max_conns != s->max_conns || t->backup != s->backup
            || t->share != s->share)
        {
            (*changed)++;
        }
        *moved |= (size_t) k != i;
    }
    for (i = 0; i < o->nservers; i++) {
        *removed += lb_upstream_server_index(u, &o->servers[i]) < 0;
    }
}

static size_t
lb_upstream_update_say(char *out, size_t size, const lb_upstream_t *u, size_t added,
                       size_t removed, size_t changed, bool tls)
{
    const char  *sep = "";
    size_t       n;
    int          k;

    k = snprintf(out, size, "upstream \"%s\" (", u->name);
    n = k > 0 ? lb_min((size_t) k, size) : 0;
#define LB_SAY(count, what)                                                        \
    if (count) {                                                                   \
        k = snprintf(out + n, size - n, "%s%zu%s " what, sep, count,               \
                     *sep ? "" : count == 1 ? " server" : " servers");             \
        n = k > 0 ? lb_min(n + (size_t) k, size) : n;                              \
        sep = ", ";                                                                \
    }
    LB_SAY(added, "added")
    LB_SAY(removed, "removed")
    LB_SAY(changed, "changed")
#undef LB_SAY
    if (tls) {
        k = snprintf(out + n, size - n, "%stls changed", sep);
        n = k > 0 ? lb_min(n + (size_t) k, size) : n;
        sep = ", ";
    }
    k = snprintf(out + n, size - n, "%s)", *sep ? "" : "servers reordered");
    return k > 0 ? lb_min(n + (size_t) k, size) : n;
}

#define LB_UPSTREAM_DIFFERS      1
#define LB_UPSTREAM_DIFFERS_TLS  2

/* u's tls group as the message carries it: the settings, and the CA file
 * read here (a worker may not have the rights to), into the new cycle's
 * pool. */
static int
lb_upstream_update_write_tls(FILE *msg, lb_cycle_t *cycle, lb_upstream_t *u, char *summary,
                             size_t size)
{
    lb_upstream_update_tls_t   rec;
    lb_tls_upstream_t         *ut = lb_tls_upstream(u->confs);
    lb_str_t                   pem = { 0, NULL };
    const char                *why;

    memset(&rec, 0, sizeof(rec));
    if (ut) {
        rec.on = 1;
        rec.verify = ut->verify;
        rec.sni_len = ut->sni ? (uint32_t) strlen(ut->sni) : 0;
        rec.ca_len = ut->verify && ut->ca ? (uint32_t) strlen(ut->ca) : 0;
    }
    if (rec.ca_len) {
        if (lb_cycle_read_file(cycle->pool, ut->ca, LB_UPSTREAM_MAX_CA_FILE, &pem, &why)
            != LB_OK)
        {
            snprintf(summary, size, "cannot read ca \"%s\" of upstream \"%s\": %s", ut->ca,
                     u->name, why);
            return LB_ERROR;
        }
        rec.pem_len = (uint64_t) pem.len;
    }
    fwrite(&rec, sizeof(rec), 1, msg);
    if (rec.sni_len) {
        fwrite(ut->sni, 1, rec.sni_len, msg);
    }
    if (rec.ca_len) {
        fwrite(ut->ca, 1, rec.ca_len, msg);
        fwrite(pem.data, 1, pem.len, msg);
    }
    return LB_OK;
}

static int
lb_upstream_update_prepare(lb_cycle_t *old, lb_cycle_t *cycle, FILE *msg, char *summary,
                           size_t size)
{
    lb_upstream_update_server_t  rec;
    lb_upstream_update_head_t    head;
    lb_upstream_server_t        *s;
    lb_upstream_t              **all, *u, *o;
    lb_shm_zone_t               *zone = lb_upstream_zone(cycle);
    size_t                       n, i, j, added, removed, changed, used = 0;
    uint32_t                     count = 0;
    bool                         moved, tls;
    u_char                      *differs;       /* LB_UPSTREAM_DIFFERS_* */

    all = lb_upstream_all(cycle, &n);
    lb_upstream_all(old, &j);
    if (n != j || zone == NULL) {
        snprintf(summary, size, "the upstreams differ");
        return LB_ERROR;
    }
    differs = calloc(n + 1, 1);
    if (differs == NULL) {
        snprintf(summary, size, "out of memory");
        return LB_ERROR;
    }
    for (i = 0; i < n; i++) {
        u = all[i];
        o = lb_upstream_find(old, u->name);
        if (o == NULL) {
            free(differs);
            snprintf(summary, size, "upstream \"%s\" is new", u->name);
            return LB_ERROR;
        }
        lb_upstream_diff(o, u, &added, &removed, &changed, &moved);
        tls = !lb_tls_upstream_same(lb_tls_upstream(o->confs), lb_tls_upstream(u->confs));
        if (added || removed || changed || moved || tls) {
            differs[i] = LB_UPSTREAM_DIFFERS | (tls ? LB_UPSTREAM_DIFFERS_TLS : 0);
            count++;
            used += lb_upstream_update_say(summary + used, size - used, u, added, removed,
                                           changed, tls);
            if (used + 2 < size) {
                summary[used++] = ',';
                summary[used++] = ' ';
                summary[used] = '\0';
            }
        }
    }
    if (count == 0) {
        free(differs);
        return LB_DECLINED;
    }
    if (used >= 2 && used + 2 < size) {
        summary[used - 2] = '\0';   /* the last ", " */
    }
    fwrite(&count, sizeof(count), 1, msg);
    for (i = 0; i < n; i++) {
        if (!differs[i]) {
            continue;
        }
        u = all[i];
        memset(&head, 0, sizeof(head));
        head.name_len = (uint32_t) strlen(u->name);
        head.nservers = (uint32_t) u->nservers;
        head.nprimary = (uint32_t) u->nprimary;
        head.tls = (differs[i] & LB_UPSTREAM_DIFFERS_TLS) != 0;
        fwrite(&head, sizeof(head), 1, msg);
        fwrite(u->name, 1, head.name_len, msg);
        for (j = 0; j < u->nservers; j++) {
            s = &u->servers[j];
            memset(&rec, 0, sizeof(rec));
            rec.addr = s->addr;
            rec.weight = s->weight;
            rec.max_conns = s->max_conns;
            rec.share = s->share;
            rec.sticky_id = s->sticky_id;
            rec.state_off = (uint64_t) ((char *) s->state - (char *) zone->data);
            rec.m_requests = s->m_requests;
            rec.m_failures = s->m_failures;
            rec.backup = s->backup;
            rec.name_len = s->name ? (uint32_t) strlen(s->name) : 0;
            fwrite(&rec, sizeof(rec), 1, msg);
            if (s->name) {
                fwrite(s->name, 1, rec.name_len, msg);
            }
        }
        if (head.tls && lb_upstream_update_write_tls(msg, cycle, u, summary, size) != LB_OK) {
            free(differs);
            return LB_ERROR;
        }
    }
    free(differs);
    return ferror(msg) ? LB_ERROR : LB_OK;
}

/* Worker ------------------------------------------------------------------ */

typedef struct {
    const u_char  *p;
    size_t         left;
} lb_upstream_reader_t;

/* The next n bytes (unaligned: copy records out with lb_upstream_take_rec),
 * or NULL past the end. */
static const void *
lb_upstream_read(lb_upstream_reader_t *r, size_t n)
{
    const u_char  *p = r->p;

    if (n > r->left) {
        return NULL;
    }
    r->p += n;
    r->left -= n;
    return p;
}

static bool
lb_upstream_take_rec(lb_upstream_reader_t *r, void *out, size_t n)
{
    const void  *p = lb_upstream_read(r, n);

    if (p) {
        memcpy(out, p, n);
    }
    return p != NULL;
}

static void
lb_upstream_update_report(const char *line)
{
    lb_log_error(0, "reload in place: %s", line);
}

/* A replaced version is freed once no server of it has been taken for
 * the grace; checked every second while any waits. */
static void
lb_upstream_retire_check(lb_timer_t *t)
{
    lb_upstream_t  **pp = &lb_upstream_retired, *v;

    while ((v = *pp) != NULL) {
        if (v->refs) {
            v->idle_since = 0;
        } else if (v->idle_since == 0) {
            v->idle_since = lb_current_msec;
        } else if (lb_current_msec - v->idle_since >= LB_UPSTREAM_VERSION_GRACE) {
            *pp = v->next_retired;
            lb_log_debug("upstream \"%s\": a version replaced by a reload in place is "
                         "freed", v->name);
            lb_pool_destroy(v->pool);
            continue;
        }
        pp = &v->next_retired;
    }
    if (lb_upstream_retired) {
        lb_timer_set(t, 1000);
    }
}

/* v's own tls group, from the message's tls record. */
static int
lb_upstream_version_tls(lb_upstream_t *v, lb_upstream_reader_t *r)
{
    lb_upstream_update_tls_t   rec;
    lb_tls_upstream_t          want;
    const char                *sni, *ca, *pem;
    char                       err[512];

    if (!lb_upstream_take_rec(r, &rec, sizeof(rec)) || rec.sni_len > 1024
        || rec.ca_len > 4096 || rec.pem_len > LB_UPSTREAM_MAX_CA_FILE)
    {
        return LB_ERROR;
    }
    sni = rec.sni_len ? lb_upstream_read(r, rec.sni_len) : NULL;
    ca = rec.ca_len ? lb_upstream_read(r, rec.ca_len) : NULL;
    pem = rec.pem_len ? lb_upstream_read(r, (size_t) rec.pem_len) : NULL;
    if ((rec.sni_len && sni == NULL) || (rec.ca_len && ca == NULL)
        || (rec.pem_len && pem == NULL))
    {
        return LB_ERROR;
    }
    memset(&want, 0, sizeof(want));
    want.verify = rec.verify != 0;
    want.sni = sni ? lb_pstrndup(v->pool, sni, rec.sni_len) : NULL;
    want.ca = ca ? lb_pstrndup(v->pool, ca, rec.ca_len) : NULL;
    if ((sni && want.sni == NULL) || (ca && want.ca == NULL)) {
        return LB_ERROR;
    }
    if (lb_tls_upstream_rebuild(v->confs, v->pool, rec.on ? &want : NULL, pem,
                                (size_t) rec.pem_len, err, sizeof(err)) != LB_OK)
    {
        lb_log_error(0, "reload in place: upstream \"%s\": tls: %s", v->name, err);
        return LB_ERROR;
    }
    return LB_OK;
}

/* Builds the new version of handle h from the message's servers. */
static lb_upstream_t *
lb_upstream_version_new(lb_cycle_t *cycle, lb_upstream_t *h,
                        const lb_upstream_update_head_t *head, lb_upstream_reader_t *r)
{
    lb_upstream_update_server_t         rec;
    lb_upstream_server_t               *s;
    lb_upstream_t                      *v, *prev = lb_upstream_current(h);
    lb_shm_zone_t                      *zone = lb_upstream_zone(cycle);
    const char                         *name;
    lb_pool_t                          *pool;
    config_t                            dummy;
    lb_conf_t                           cf;
    ssize_t                             k;
    size_t                              i;
    int                                 rc;

    if (zone == NULL || head->nservers > LB_UPSTREAM_MAX_SERVERS
        || head->nprimary > head->nservers)
    {
        return NULL;
    }
    pool = lb_pool_create(4096);
    v = pool ? lb_palloc(pool, sizeof(*v)) : NULL;
    if (v == NULL) {
        goto failed;
    }
    *v = *h;
    memset(&v->server_list, 0, sizeof(v->server_list));
    v->latest = NULL;
    v->handle = h;
    v->pool = pool;
    v->refs = 0;
    v->idle_since = 0;
    v->next_retired = NULL;
    v->balancer_data = NULL;
    v->confs = lb_palloc(pool, lb_nmodules * sizeof(void *));
    v->servers = lb_pcalloc(pool, (head->nservers + 1) * sizeof(lb_upstream_server_t));
    if (v->confs == NULL || v->servers == NULL) {
        goto failed;
    }
    memcpy(v->confs, h->confs, lb_nmodules * sizeof(void *));
    v->nservers = head->nservers;
    v->nprimary = head->nprimary;

    for (i = 0; i < v->nservers; i++) {
        if (!lb_upstream_take_rec(r, &rec, sizeof(rec)) || rec.name_len > 1024
            || rec.state_off % sizeof(uint64_t)
            || rec.state_off + sizeof(lb_upstream_peer_state_t) > zone->size)
        {
            goto failed;
        }
        name = rec.name_len ? lb_upstream_read(r, rec.name_len) : NULL;
        if (rec.name_len && name == NULL) {
            goto failed;
        }
        s = &v->servers[i];
        s->addr = rec.addr;
        s->addr.text[sizeof(s->addr.text) - 1] = '\0';
        s->weight = rec.weight;
        s->max_conns = rec.max_conns;
        s->share = rec.share;
        s->backup = rec.backup;
        s->sticky_id = rec.sticky_id;
        s->state = (lb_upstream_peer_state_t *) ((char *) zone->data + rec.state_off);
        s->m_requests = rec.m_requests;
        s->m_failures = rec.m_failures;
        s->upstream = v;
        if (name) {
            s->name = lb_pstrndup(pool, name, rec.name_len);
            if (s->name == NULL) {
                goto failed;
            }
        }
        /* a server that stays goes on with its place in the round */
        k = lb_upstream_server_index(prev, s);
        s->current = k >= 0 ? prev->servers[k].current : 0;
    }
    if (head->tls && lb_upstream_version_tls(v, r) != LB_OK) {
        goto failed;
    }

    if (v->balancer->init_upstream) {
        config_init(&dummy);
        memset(&cf, 0, sizeof(cf));
        cf.cycle = cycle;
        cf.pool = pool;
        cf.config = &dummy;
        cf.group = config_root_setting(&dummy);
        cf.block = "an upstream changed in place";
        cf.report = lb_upstream_update_report;
        rc = v->balancer->init_upstream(&cf, v);
        config_destroy(&dummy);
        if (rc != LB_OK) {
            goto failed;
        }
    }
    return v;

failed:
    if (pool) {
        lb_pool_destroy(pool);
    }
    return NULL;
}

static void
lb_upstream_version_install(lb_upstream_t *h, lb_upstream_t *v)
{
    lb_upstream_t  *prev = lb_upstream_current(h);
    size_t          i;

    for (i = 0; i < lb_upstream_nwatchers; i++) {
        lb_upstream_watchers[i](prev, v);
    }
    h->latest = v;
    lb_upstream_sticky_forget();
    if (prev == h) {
        return;                 /* the handle lives as long as the cycle */
    }
    prev->idle_since = 0;
    prev->next_retired = lb_upstream_retired;
    lb_upstream_retired = prev;
    if (!lb_upstream_retire_timer_ready) {
        lb_timer_init(&lb_upstream_retire_timer, lb_upstream_retire_check, NULL);
        lb_upstream_retire_timer_ready = true;
    }
    if (!lb_timer_is_set(&lb_upstream_retire_timer)) {
        lb_timer_set(&lb_upstream_retire_timer, 1000);
    }
}

static int
lb_upstream_update_apply(lb_cycle_t *cycle, const u_char *msg, size_t len)
{
    lb_upstream_update_head_t         head;
    lb_upstream_reader_t              r = { msg, len };
    uint32_t                          count;
    lb_upstream_t                    *h, *v;
    const char                       *name;
    char                              buf[256];
    uint32_t                          k;

    if (!lb_upstream_take_rec(&r, &count, sizeof(count))) {
        return LB_ERROR;
    }
    for (k = 0; k < count; k++) {
        name = lb_upstream_take_rec(&r, &head, sizeof(head)) && head.name_len < sizeof(buf)
               ? lb_upstream_read(&r, head.name_len) : NULL;
        if (name == NULL) {
            return LB_ERROR;
        }
        memcpy(buf, name, head.name_len);
        buf[head.name_len] = '\0';
        h = lb_upstream_find(cycle, buf);
        v = h ? lb_upstream_version_new(cycle, h, &head, &r) : NULL;
        if (v == NULL) {
            /* the rest of the message cannot be read past it */
            lb_log_error(0, "reload in place: upstream \"%s\" could not be changed in this "
                         "worker; it keeps its servers", buf);
            return LB_ERROR;
        }
        lb_upstream_version_install(h, v);
        lb_log_info("upstream \"%s\": %zu servers now (reload in place)", buf, v->nservers);
    }
    return LB_OK;
}

static const lb_reload_handler_t  lb_upstream_reload_handler = {
    "upstream servers", lb_upstream_update_strip, lb_upstream_update_prepare,
    lb_upstream_update_apply
};

void
lb_upstream_update_register(void)
{
    lb_reload_handler_add(&lb_upstream_reload_handler);
}
