/*
 * lb_upstream_state.c: what the upstreams carry across a binary upgrade
 * (lb_state.h): each server's runtime state (drain, disable, a weight set
 * at runtime, passive health, the slow-start clock, connections made), the
 * drawn sticky cookie secret and the source_ip tables. Servers are keyed
 * by upstream name, the server as written and its address (a host name's
 * servers are its resolved addresses), so a record finds its server in a
 * configuration that changed, or is skipped. A host name's resolved
 * addresses travel as the `addr` of its servers' records; the new master
 * resolves the name itself while loading its file (before any state
 * arrives), and the state of an address it no longer gets is skipped.
 *
 * Times travel as ages ("ms ago" / "ms from now", measured at save), not
 * as timestamps: both masters read CLOCK_MONOTONIC on the same machine, so
 * a timestamp would do today, but an age does not depend on that, nor on
 * the two binaries agreeing on a clock; the handoff's own delay (ms) is
 * the only error.
 */
#include "lb_upstream.h"
#include "lb_upstream_sticky.h"
#include "lb_state.h"

#define LB_UPSTREAM_STATE  "core_upstream"

lb_upstream_server_t *
lb_upstream_server_find(lb_cycle_t *cycle, const char *upstream, const char *server,
                        const char *addr)
{
    lb_upstream_t  *u = lb_upstream_find(cycle, upstream);
    size_t          i;

    for (i = 0; u && i < u->nservers; i++) {
        if (strcmp(lb_upstream_server_written(&u->servers[i]), server) == 0
            && strcmp(u->servers[i].addr.text, addr) == 0)
        {
            return &u->servers[i];
        }
    }
    return NULL;
}

static void
lb_upstream_state_key(lb_state_writer_t *w, const lb_upstream_t *u,
                      const lb_upstream_server_t *s)
{
    lb_state_put_str(w, "upstream", u->name);
    lb_state_put_str(w, "server", lb_upstream_server_written(s));
    lb_state_put_str(w, "addr", s->addr.text);
}

typedef struct {
    lb_state_writer_t  *w;
    lb_upstream_t      *u;
} lb_upstream_state_ctx_t;

static void
lb_upstream_state_sticky_entry(void *data, const void *key, size_t keylen,
                               uint64_t server_id, int64_t used)
{
    lb_upstream_state_ctx_t  *ctx = data;
    lb_upstream_server_t     *s = lb_upstream_server_by_id(ctx->u, server_id);

    if (s == NULL) {
        return;                 /* a server an older configuration had */
    }
    lb_state_record_begin(ctx->w, LB_UPSTREAM_STATE, "sticky_ip");
    lb_upstream_state_key(ctx->w, ctx->u, s);
    lb_state_put_bytes(ctx->w, "client", key, keylen);
    lb_state_put_int(ctx->w, "age", lb_current_msec - used);
    lb_state_record_end(ctx->w);
}

int
lb_upstream_state_save(lb_cycle_t *cycle, lb_state_writer_t *w)
{
    lb_upstream_state_ctx_t    ctx;
    lb_upstream_peer_state_t  *st;
    lb_upstream_server_t      *s;
    lb_upstream_t            **all, *u;
    const u_char              *secret;
    size_t                     i, j, n, len;
    lb_msec_t                  now = lb_current_msec;

    secret = lb_upstream_sticky_secret_get(&len);
    if (secret) {
        lb_state_record_begin(w, LB_UPSTREAM_STATE, "sticky_secret");
        lb_state_put_bytes(w, "secret", secret, len);
        lb_state_record_end(w);
    }
    all = lb_upstream_all(cycle, &n);
    for (i = 0; i < n; i++) {
        u = all[i];
        for (j = 0; j < u->nservers; j++) {
            s = &u->servers[j];
            st = s->state;
            if (st == NULL) {
                continue;
            }
            lb_state_record_begin(w, LB_UPSTREAM_STATE, "server");
            lb_upstream_state_key(w, u, s);
            lb_state_put_int(w, "drain", __atomic_load_n(&st->drain, __ATOMIC_RELAXED));
            lb_state_put_int(w, "disabled", __atomic_load_n(&st->disabled, __ATOMIC_RELAXED));
            lb_state_put_int(w, "weight_set", st->weight_set);
            lb_state_put_int(w, "weight", __atomic_load_n(&st->weight, __ATOMIC_RELAXED));
            lb_state_put_int(w, "weight_conf", st->weight_conf);
            lb_state_put_int(w, "connects", (int64_t) st->connects);
            lb_state_put_int(w, "fails", st->fails);
            lb_state_put_int(w, "failed", st->failed);
            if (st->fails || st->failed) {
                lb_state_put_int(w, "fail_start_ago", now - st->fail_start);
                lb_state_put_int(w, "retry_in", st->retry_at - now);
            }
            if (st->back_at) {
                lb_state_put_int(w, "back_ago", now - st->back_at);
            }
            lb_state_record_end(w);
        }
        if (u->sticky.mode == LB_STICKY_SOURCE_IP && u->sticky.zone) {
            ctx.w = w;
            ctx.u = u;
            lb_sticky_table_each(u->sticky.zone->data, lb_upstream_state_sticky_entry, &ctx);
        }
    }
    return LB_OK;
}

static lb_upstream_server_t *
lb_upstream_state_server(lb_cycle_t *cycle, const lb_state_record_t *r)
{
    char  upstream[256], server[256], addr[256];

    if (!lb_state_get_str(r, "upstream", upstream, sizeof(upstream))
        || !lb_state_get_str(r, "server", server, sizeof(server))
        || !lb_state_get_str(r, "addr", addr, sizeof(addr)))
    {
        return NULL;
    }
    return lb_upstream_server_find(cycle, upstream, server, addr);
}

static int
lb_upstream_state_load_server(lb_upstream_server_t *s, const lb_state_record_t *r)
{
    lb_upstream_peer_state_t  *st = s->state;
    lb_msec_t                  now = lb_current_msec;
    int64_t                    v, conf;

    if (lb_state_get_int(r, "drain", &v)) {
        __atomic_store_n(&st->drain, v != 0, __ATOMIC_RELAXED);
    }
    if (lb_state_get_int(r, "disabled", &v)) {
        __atomic_store_n(&st->disabled, v != 0, __ATOMIC_RELAXED);
    }
    /* a runtime weight holds while the file keeps the server's weight, as
     * across a reload */
    if (lb_state_get_int(r, "weight_set", &v) && v
        && lb_state_get_int(r, "weight_conf", &conf) && conf == s->weight
        && lb_state_get_int(r, "weight", &v) && v >= 0)
    {
        st->weight_set = 1;
        __atomic_store_n(&st->weight, v, __ATOMIC_RELAXED);
    }
    if (lb_state_get_int(r, "connects", &v) && v > 0) {
        __atomic_add_fetch(&st->connects, (uint64_t) v, __ATOMIC_RELAXED);
    }
    lb_shm_lock(&st->lock);
    if (lb_state_get_int(r, "fails", &v) && v > 0 && v <= UINT32_MAX) {
        st->fails = (uint32_t) v;
    }
    if (lb_state_get_int(r, "failed", &v)) {
        st->failed = v != 0;
    }
    if (lb_state_get_int(r, "fail_start_ago", &v) && v >= 0) {
        st->fail_start = now - v;
    }
    if (lb_state_get_int(r, "retry_in", &v)) {
        st->retry_at = now + v;
    }
    lb_shm_unlock(&st->lock);
    /* slow start goes on where it was; 0 means "never left", so a server
     * back at this very millisecond is one ms older */
    if (lb_state_get_int(r, "back_ago", &v) && v >= 0) {
        __atomic_store_n(&st->back_at, lb_max(now - v, 1), __ATOMIC_RELAXED);
    }
    return LB_OK;
}

static int
lb_upstream_state_load_sticky(lb_cycle_t *cycle, lb_upstream_server_t *s,
                              const lb_state_record_t *r)
{
    lb_upstream_t  *u = s->upstream;
    const u_char   *key;
    size_t          n;
    int64_t         age;

    (void) cycle;
    key = lb_state_get_bytes(r, "client", &n);
    if (u == NULL || u->sticky.mode != LB_STICKY_SOURCE_IP || u->sticky.zone == NULL
        || key == NULL || n == 0 || n > LB_STICKY_KEY_MAX
        || !lb_state_get_int(r, "age", &age) || age < 0 || age > u->sticky.ttl)
    {
        return LB_DECLINED;
    }
    lb_sticky_table_put(u->sticky.zone->data, key, n, s->sticky_id, lb_current_msec - age);
    return LB_OK;
}

int
lb_upstream_state_load(lb_cycle_t *cycle, const lb_state_record_t *r)
{
    lb_upstream_server_t  *s;
    const u_char          *p;
    size_t                 n;

    if (strcmp(r->type, "sticky_secret") == 0) {
        p = lb_state_get_bytes(r, "secret", &n);
        return p ? lb_upstream_sticky_secret_set(cycle, p, n) : LB_DECLINED;
    }
    if (strcmp(r->type, "server") != 0 && strcmp(r->type, "sticky_ip") != 0) {
        return LB_DECLINED;
    }
    s = lb_upstream_state_server(cycle, r);
    if (s == NULL || s->state == NULL) {
        return LB_DECLINED;     /* not in the new configuration */
    }
    return strcmp(r->type, "server") == 0 ? lb_upstream_state_load_server(s, r)
                                          : lb_upstream_state_load_sticky(cycle, s, r);
}
