/*
 * lb_http_proxy.c: the http listener's `upstream` action (SPEC §3.2,
 * §3.5, §4): forward a request to a server of the route's upstream and
 * its response back, both bodies streaming through bounded buffers.
 *
 * One request at a time per client connection. With request_buffering
 * (the default) the body is read first, up to request_buffer_size, so a
 * slow client holds no server connection; a larger body starts streaming
 * once that much has arrived. The request head is rewritten into the
 * request's out buffer (hop-by-hop fields dropped, Host, forwarding
 * fields and request_headers added) and sent, then the body.
 *
 * The framing of both messages is lbd's own: Content-Length and
 * Transfer-Encoding are never copied from a peer, whatever its
 * Connection field names; lbd writes the ones it chose (lb_http_relay.h)
 * and writes every chunk line itself, so a peer cannot make the next hop
 * see other message boundaries than lbd did (request smuggling, response
 * desync). Upstream connections are kept per worker and per upstream
 * (`keepalive` idle ones at most) and reused for any request to the same
 * server. A failed connect tries another server (`retries`); an
 * idempotent request is sent again when the server closes before the
 * first byte of a response. A 101 answer to an Upgrade request turns the
 * pair of connections into a tunnel.
 *
 * Nothing here allocates per request once the worker is warm: request
 * memory comes from a per-worker cache, upstream connections from the
 * core's connection cache and the keepalive pool.
 */
#include "lb_core.h"
#include "lb_http.h"
#include "lb_http_route.h"
#include "lb_upstream.h"
#include "lb_tls.h"
#include "lb_http_proxy.h"

#define LB_PROXY_IN_SIZE       16384    /* response head, then body relay */
#define LB_PROXY_OUT_EXTRA     4096     /* forwarding fields and edits */
#define LB_PROXY_MEM_CACHE     64
#define LB_PROXY_KA_WINDOW     10000    /* keepalive = "auto": the peak is the
                                           highest of this window and the last */
#define LB_PROXY_KA_AUTO_MAX   4096     /* ... and never more than this idle */
#define LB_PROXY_MAX_TOKENS    16       /* Connection field tokens honoured */
#define LB_PROXY_IOV           (LB_HTTP_RELAY_IOV + 4)

/* Configuration ---------------------------------------------------------- */

/* Per server of an upstream, per worker: its idle connections, most
 * recently used first, and for keepalive = "auto" this worker's requests in
 * flight to it (connecting or exchanging) and their peak over this window
 * and the one before. Kept per server, not per upstream: a request needs
 * a connection to the server it was given, and with hashing or sticky
 * sessions each server's share of the load moves on its own. */
typedef struct {
    lb_queue_t          idle;
    size_t              nidle;
    size_t              active;
    size_t              peak;
    size_t              peak_prev;
    lb_msec_t           window_start;
} lb_http_ka_server_t;

/* Per upstream, per worker (configurations are copied by fork). */
typedef struct {
    lb_queue_t          idle;           /* every server's idle connections, most
                                           recently used first: an integer
                                           keepalive bounds their number */
    size_t              nidle;
    lb_http_ka_server_t  *servers;      /* by index in the upstream's servers;
                                           NULL until a route uses the upstream */
    lb_http_complex_t  *hash_key;       /* balance = "hash": the key's expression */
    const lb_http_var_def_t  *sticky_var;   /* sticky cookie: $cookie_NAME's getter */
    lb_str_t            sticky_arg;     /* ... and its NAME */
} lb_http_proxy_ka_t;

static const char *const  lb_http_proxy_xff_modes[] = { "append", "replace", "off", NULL };
static const char *const  lb_http_proxy_protocols[] = { "http", "https", NULL };

static int   lb_http_proxy_set_trusted(lb_conf_t *cf, const lb_setting_t *s,
                                       config_setting_t *v, void *conf);
static void *lb_http_proxy_create_conf(lb_conf_t *cf, unsigned ctx);
static int   lb_http_proxy_init_worker(lb_cycle_t *cycle);
static int   lb_http_proxy_merge_conf(lb_conf_t *cf, unsigned ctx, void *parent, void *conf);
static void  lb_http_proxy_exit_worker(lb_cycle_t *cycle);
static void  lb_http_proxy_stop_worker(lb_cycle_t *cycle);
static int   lb_http_proxy_handler(lb_http_request_t *r);
static int   lb_http_proxy_set_upstream(lb_conf_t *cf, const lb_setting_t *s,
                                        config_setting_t *v, void *conf);
static int   lb_http_proxy_forward_fields(lb_http_request_t *r, lb_http_head_t *h,
                                          const lb_http_var_ctx_t *ctx);

static const lb_setting_t  lb_http_proxy_settings[] = {
    { "xff", LB_SET_ENUM, LB_CTX_LISTENER, "append", 0, 0,
      offsetof(lb_http_proxy_conf_t, xff), lb_http_proxy_xff_modes, NULL, 0 },
    { "trusted_proxies", LB_SET_CUSTOM, LB_CTX_LISTENER, NULL, 0, 0,
      offsetof(lb_http_proxy_conf_t, trusted), NULL, lb_http_proxy_set_trusted, 0 },
    { "request_buffering", LB_SET_BOOL, LB_CTX_LISTENER | LB_CTX_ROUTE, NULL, 0, 0,
      offsetof(lb_http_proxy_conf_t, request_buffering), NULL, NULL, 0 },
    { "upstream", LB_SET_CUSTOM, LB_CTX_ROUTE, NULL, 0, 0, 0, NULL,
      lb_http_proxy_set_upstream, LB_SETTING_ACTION },
    { "rewrite", LB_SET_CUSTOM, LB_CTX_ROUTE, NULL, 0, 0, 0, NULL,
      lb_http_proxy_set_upstream, 0 },
    { "request_buffer_size", LB_SET_SIZE, LB_CTX_LISTENER, "64k", 0, 64LL << 20,
      offsetof(lb_http_proxy_conf_t, request_buffer_size), NULL, NULL, 0 },
    { "client_body_max_time", LB_SET_DURATION, LB_CTX_LISTENER, "0", 0, 7 * 86400000LL,
      offsetof(lb_http_proxy_conf_t, client_body_max_time), NULL, NULL, 0 },
    lb_setting_end
};

/* Variables: what the proxy recorded of the request's upstream exchange,
 * on the request (its upstream_* fields). */

/* $upstream_addr: the server's address, "10.0.0.1:80"; "" without one. */
static void
lb_http_proxy_var_addr(lb_http_var_out_t *out, const lb_http_var_ctx_t *ctx, lb_str_t arg)
{
    if (ctx->r != NULL) {
        lb_http_var_write_str(out, ctx->r->upstream_addr);
    }
}

/* $upstream_status: the status code the server sent; "" when lbd answered
 * itself (its own 502 reads "", a server's "502"). */
static void
lb_http_proxy_var_status(lb_http_var_out_t *out, const lb_http_var_ctx_t *ctx, lb_str_t arg)
{
    if (ctx->r != NULL && ctx->r->upstream_status > 0) {
        lb_http_var_write_uint(out, (uint64_t) ctx->r->upstream_status);
    }
}

/* $upstream_response_time: seconds with three decimals; "" without an
 * upstream. */
static void
lb_http_proxy_var_response_time(lb_http_var_out_t *out, const lb_http_var_ctx_t *ctx,
                                 lb_str_t arg)
{
    if (ctx->r != NULL && ctx->r->upstream_msec >= 0) {
        lb_http_var_write_msec(out, ctx->r->upstream_msec);
    }
}

/* $upstream_connect_time: the same for connecting (TLS included), "0.000"
 * on a kept-alive connection, "" when no connection was made. */
static void
lb_http_proxy_var_connect_time(lb_http_var_out_t *out, const lb_http_var_ctx_t *ctx,
                               lb_str_t arg)
{
    if (ctx->r != NULL && ctx->r->upstream_connect_msec >= 0) {
        lb_http_var_write_msec(out, ctx->r->upstream_connect_msec);
    }
}

static const lb_http_var_def_t  lb_http_proxy_variables[] = {
    { "upstream_addr", lb_http_proxy_var_addr, 0 },
    { "upstream_response_time", lb_http_proxy_var_response_time, 0 },
    { "upstream_status", lb_http_proxy_var_status, 0 },
    { "upstream_connect_time", lb_http_proxy_var_connect_time, 0 },
    { NULL, NULL, 0 }
};

static const lb_http_module_t  lb_http_proxy_ctx = {
    .variables = lb_http_proxy_variables,
};

lb_module_t  lb_http_proxy_module = {
    "http_proxy", LB_MODULE_HTTP, lb_http_proxy_protocols, lb_http_proxy_settings,
    LB_CTX_LISTENER | LB_CTX_UPSTREAM | LB_CTX_ROUTE,
    lb_http_proxy_create_conf, lb_http_proxy_merge_conf, NULL,
    NULL, lb_http_proxy_init_worker, lb_http_proxy_exit_worker, &lb_http_proxy_ctx, 0, NULL, 0,
    lb_http_proxy_stop_worker
};

static void *
lb_http_proxy_create_conf(lb_conf_t *cf, unsigned ctx)
{
    lb_http_proxy_ka_t    *ka;
    lb_http_proxy_conf_t  *pcf;

    if (ctx == LB_CTX_UPSTREAM) {
        ka = lb_pcalloc(cf->pool, sizeof(*ka));
        if (ka) {
            lb_queue_init(&ka->idle);
        }
        return ka;
    }
    pcf = lb_pcalloc(cf->pool, sizeof(lb_http_proxy_conf_t));
    if (pcf) {
        pcf->request_buffering = -1;
    }
    return pcf;
}

/* `upstream` (the route's action) and `rewrite`. */
static int
lb_http_proxy_set_upstream(lb_conf_t *cf, const lb_setting_t *s, config_setting_t *v,
                           void *conf)
{
    lb_http_proxy_conf_t  *pcf = conf;
    const char            *text;

    if (lb_conf_get_string(cf, v, &text) != LB_OK) {
        return LB_ERROR;
    }
    if (strcmp(s->name, "rewrite") == 0) {
        pcf->rewrite = lb_http_route_complex(cf, v, "rewrite");
        pcf->rewrite_text = lb_pstrdup(cf->pool, text);
        pcf->rewrite_file = lb_pstrdup(cf->pool, lb_conf_file(cf, v));
        pcf->rewrite_line = (int) config_setting_source_line(v);
        return pcf->rewrite ? LB_OK : LB_ERROR;
    }
    pcf->upstream_name = lb_pstrdup(cf->pool, text);
    pcf->upstream_file = lb_pstrdup(cf->pool, lb_conf_file(cf, v));
    pcf->upstream_line = (int) config_setting_source_line(v);
    return pcf->upstream_name && pcf->upstream_file ? LB_OK
                                                   : lb_conf_error(cf, v, "out of memory");
}

/* Once the whole file is read: the route's upstream by name. */
static int
lb_http_proxy_resolve(lb_conf_t *cf, lb_http_route_t *route)
{
    lb_http_proxy_conf_t  *pcf = lb_get_conf(route->confs, lb_http_proxy_module);
    char                  *where;

    lb_http_proxy_ka_t    *ka;
    char                   err[512];

    where = lb_psprintf(cf->pool, "route #%u of listener \"%s\"", route->index,
                        route->listener->name);
    if (lb_upstream_resolve_for(cf, pcf->upstream_file, pcf->upstream_line,
                                pcf->upstream_name, where ? where : "a route",
                                LB_UPSTREAM_CAN_PROXY_PROTOCOL, &pcf->upstream) != LB_OK)
    {
        return LB_ERROR;
    }
    ka = lb_get_conf(pcf->upstream->confs, lb_http_proxy_module);
    if (ka->servers == NULL) {
        ka->servers = lb_pcalloc(cf->pool, pcf->upstream->nservers * sizeof(lb_http_ka_server_t));
        if (ka->servers == NULL) {
            return lb_conf_error_at(cf, pcf->upstream_file, pcf->upstream_line, "out of memory");
        }
        for (size_t i = 0; i < pcf->upstream->nservers; i++) {
            lb_queue_init(&ka->servers[i].idle);
        }
    }
    if ((pcf->upstream->balancer->flags & LB_BALANCER_KEY) && ka->hash_key == NULL) {
        /* an http request's key: any variable expression */
        ka->hash_key = lb_http_complex_compile(cf->pool, pcf->upstream->hash_key, err,
                                               sizeof(err));
        if (ka->hash_key == NULL) {
            return lb_conf_error_at(cf, pcf->upstream_file, pcf->upstream_line,
                                    "hash_key of upstream \"%s\": %s", pcf->upstream->name,
                                    err);
        }
    }
    if (pcf->upstream->sticky.mode == LB_STICKY_COOKIE && ka->sticky_var == NULL) {
        /* the cookie is read as $cookie_NAME reads it; NAME may hold bytes
         * a variable name may not, so the getter is called directly */
        where = lb_psprintf(cf->pool, "cookie_%s", pcf->upstream->sticky.cookie);
        ka->sticky_var = where ? lb_http_var_find(where, strlen(where), &ka->sticky_arg) : NULL;
        if (ka->sticky_var == NULL) {
            return lb_conf_error_at(cf, pcf->upstream_file, pcf->upstream_line,
                                    "upstream \"%s\": sticky cookies need $cookie_NAME",
                                    pcf->upstream->name);
        }
    }
    return LB_OK;
}

/* lbctl route: the servers, and the path the request line would carry:
 * the rewritten path or the normal path lbd routed on, with the query as
 * sent, as the proxy writes it. */
static void
lb_http_proxy_explain(const lb_http_route_t *route, const lb_http_var_ctx_t *ctx)
{
    const lb_http_proxy_conf_t  *pcf = lb_get_conf(route->confs, lb_http_proxy_module);
    const lb_http_msg_t         *msg = ctx->request;
    char                         out[2048];
    size_t                       i, n;

    printf("action: upstream \"%s\"\nservers:", pcf->upstream_name);
    for (i = 0; pcf->upstream && i < pcf->upstream->nservers; i++) {
        printf(" %s%s", pcf->upstream->servers[i].addr.text,
               pcf->upstream->servers[i].backup ? " (backup)" : "");
    }
    if (pcf->rewrite) {
        n = lb_http_complex_eval(pcf->rewrite, ctx, out, sizeof(out) - 1);
    } else {
        n = (size_t) snprintf(out, sizeof(out), "%.*s", (int) msg->uri.len, msg->uri.data);
    }
    n = lb_min(n, sizeof(out) - 1);
    if (msg->query.len || msg->target.data[msg->target.len - 1] == '?') {
        n += (size_t) snprintf(out + n, sizeof(out) - n, "?%.*s", (int) msg->query.len,
                               msg->query.data);
    }
    printf("\npath sent upstream: %.*s\n", (int) lb_min(n, sizeof(out) - 1), out);
}

/* request_buffering: on unless the listener says otherwise; a route that
 * does not set it follows its listener. A route with `upstream` is served
 * here; `rewrite` is the path sent upstream, so it needs that action. */
static int
lb_http_proxy_merge_conf(lb_conf_t *cf, unsigned ctx, void *parent, void *conf)
{
    lb_http_proxy_conf_t  *pcf = conf, *lcf = parent;
    const char            *text;

    if (ctx == LB_CTX_UPSTREAM) {
        return LB_OK;
    }
    if (pcf->request_buffering == -1) {
        pcf->request_buffering = (ctx == LB_CTX_ROUTE && lcf) ? lcf->request_buffering : 1;
    }
    if (ctx != LB_CTX_ROUTE) {
        return LB_OK;
    }
    if (pcf->rewrite_text && config_setting_get_member(cf->group, "upstream") == NULL) {
        return lb_conf_error_at(cf, pcf->rewrite_file, pcf->rewrite_line,
                                "\"rewrite\" needs the upstream action in %s: it is the "
                                "path sent upstream", cf->block);
    }
    if (pcf->upstream_name == NULL) {
        return LB_OK;
    }
    text = pcf->rewrite_text
           ? lb_psprintf(cf->pool, "upstream \"%s\", rewrite = \"%s\"", pcf->upstream_name,
                         pcf->rewrite_text)
           : lb_psprintf(cf->pool, "upstream \"%s\"", pcf->upstream_name);
    if (text == NULL) {
        return lb_conf_error(cf, cf->group, "out of memory");
    }
    lb_http_route_set_action(cf, "upstream", lb_http_proxy_handler, text,
                             lb_http_proxy_resolve, lb_http_proxy_explain);
    return LB_OK;
}

static int
lb_http_proxy_push_cidr(lb_conf_t *cf, config_setting_t *elt, const char *str, void *arg)
{
    char  err[160];

    if (lb_cidr_list_add(arg, cf->pool, str, err, sizeof(err)) != LB_OK) {
        return lb_conf_error(cf, elt, "trusted_proxies: invalid address block \"%s\": %s",
                             str, err);
    }
    return LB_OK;
}

static int
lb_http_proxy_set_trusted(lb_conf_t *cf, const lb_setting_t *s, config_setting_t *v, void *conf)
{
    return lb_conf_each_string(cf, v, lb_http_proxy_push_cidr, (char *) conf + s->offset);
}

/* Request memory, cached per worker ----------------------------------- */

typedef struct lb_http_proxy_s  lb_http_proxy_t;

/* An upstream connection, in use or idle in its upstream's pool. Lives in
 * the connection's pool, so it goes when the connection does. */
typedef struct {
    lb_conn_t              *c;
    lb_upstream_server_t   *server;
    lb_http_proxy_ka_t     *ka;
    lb_http_ka_server_t    *kas;        /* server's entry in ka */
    lb_http_proxy_t        *p;          /* NULL while idle */
    lb_queue_t              link;       /* in ka->idle (idle ones) */
    lb_queue_t              slink;      /* in kas->idle (idle ones) */
    lb_queue_t              all;        /* in lb_http_upconn_idle (idle ones) */
    uint64_t                requests;
} lb_http_upconn_t;

typedef enum {
    LB_PROXY_BUFFER = 0,        /* reading the body before a server is chosen */
    LB_PROXY_CONNECT,           /* waiting for a connect to finish */
    LB_PROXY_EXCHANGE,          /* request out, response in */
    LB_PROXY_TUNNEL,            /* after 101: bytes both ways */
} lb_http_proxy_phase_t;

struct lb_http_proxy_s {
    lb_http_request_t      *r;
    lb_http_conn_t         *hc;         /* the client's HTTP/1 connection: the
                                           request body and a tunnel use it */
    lb_http_proxy_conf_t   *conf;       /* the listener's */
    lb_upstream_t          *u;
    lb_upstream_peer_t      pr;         /* the server (counted) and its connection */
    lb_http_upconn_t       *up;         /* that connection, once ready */
    lb_http_ka_server_t    *kas;        /* the server's pool entry, while this
                                           request counts among its requests in
                                           flight */
    lb_http_proxy_phase_t   phase;
    lb_msec_t               start;      /* for $upstream_response_time */
    lb_timer_t              body_timer;     /* client_body_max_time */
    lb_timer_t              head_timer;     /* response_head_timeout */

    /* request: pre[] is the head (out[0..head_len)), then the part of the
     * body read before a server was chosen (held), framed as chosen; the
     * rest of the body, when there is more, streams through upr from
     * the client's read buffer */
    size_t                  head_len;
    char                   *held;
    size_t                  held_len;
    size_t                  held_size;  /* 0: request_buffering off */
    bool                    whole;      /* the body is all in held */
    bool                    streaming;  /* the rest comes through upr */
    char                    held_line[20];
    struct iovec            pre[4];
    int                     npre;
    size_t                  pre_total;
    size_t                  pre_sent;
    lb_http_relay_t         upr;
    bool                    up_done;    /* the whole request went upstream */
    bool                    cont_early; /* 100 Continue before a server is chosen */
    bool                    cont_want;  /* "100 Continue" is owed */
    bool                    cont_done;  /* ... and went out */

    /* response */
    lb_buf_t                in;
    bool                    got_byte;
    bool                    resp_head;  /* parsed and given to the output path */
    bool                    out_again;  /* the output path holds bytes */
    int                     status;
    bool                    resp_keep;  /* the server keeps the connection */
    lb_http_relay_t         downr;
    uint64_t                down_sent;  /* to the client, head included */
    bool                    sticky_renew;   /* the client's sticky cookie is old */

    /* tunnel */
    bool                    head_out;   /* the 101 head went out */
    bool                    t_up_eof, t_down_eof, t_up_shut, t_down_shut;
};

/* A request's memory: out (out_size bytes) then the held body. */
typedef struct {
    lb_http_proxy_t         p;
    lb_http_msg_t           resp;
    size_t                  size;       /* of data[] */
    size_t                  out_size;
    char                    in[LB_PROXY_IN_SIZE];
    char                    data[];
} lb_http_proxy_mem_t;

static lb_http_proxy_mem_t  *lb_http_proxy_cache[LB_PROXY_MEM_CACHE];
static size_t                lb_http_proxy_cached;

static lb_http_proxy_mem_t *
lb_http_proxy_mem_get(size_t size)
{
    lb_http_proxy_mem_t  *m;
    size_t                i;

    for (i = lb_http_proxy_cached; i-- > 0; ) {
        if (lb_http_proxy_cache[i]->size == size) {
            m = lb_http_proxy_cache[i];
            lb_http_proxy_cache[i] = lb_http_proxy_cache[--lb_http_proxy_cached];
            return m;
        }
    }
    m = malloc(sizeof(*m) + size);
    if (m) {
        m->size = size;
    }
    return m;
}

static void
lb_http_proxy_mem_put(lb_http_proxy_mem_t *m)
{
    if (lb_http_proxy_cached == LB_PROXY_MEM_CACHE) {
        free(lb_http_proxy_cache[0]);
        lb_http_proxy_cache[0] = lb_http_proxy_cache[--lb_http_proxy_cached];
    }
    lb_http_proxy_cache[lb_http_proxy_cached++] = m;
}

#define lb_proxy_mem(p)  ((lb_http_proxy_mem_t *) (p))
#define lb_proxy_out(p)  (lb_proxy_mem(p)->data)

/* The keepalive pool ------------------------------------------------------ */

/* Every idle upstream connection of the worker, whatever its upstream: a
 * graceful stop closes them (the worker leaves once its connections are
 * gone). */
static lb_queue_t  lb_http_upconn_idle = { &lb_http_upconn_idle, &lb_http_upconn_idle };

/* A connection in use, or out of the pool (lb_http_upconn_unidle). */
static void
lb_http_upconn_close(lb_http_upconn_t *up)
{
    lb_conn_close(up->c);           /* up lives in its pool */
}

/* An idle connection leaves the pool: in use again, or closed. */
static void
lb_http_upconn_unidle(lb_http_upconn_t *up)
{
    lb_queue_remove(&up->link);
    lb_queue_remove(&up->slink);
    lb_queue_remove(&up->all);
    up->ka->nidle--;
    up->kas->nidle--;
}

static void
lb_http_proxy_stop_worker(lb_cycle_t *cycle)
{
    lb_http_upconn_t  *up;

    while (!lb_queue_empty(&lb_http_upconn_idle)) {
        up = lb_queue_data(lb_queue_head(&lb_http_upconn_idle), lb_http_upconn_t, all);
        lb_http_upconn_unidle(up);
        lb_http_upconn_close(up);
    }
}

/* An idle connection: any event (the server closed it, or sent bytes no
 * request asked for) or its timer ends it. */
static void
lb_http_upconn_idle_handler(lb_event_t *ev)
{
    lb_conn_t         *c = ev->data;
    lb_http_upconn_t  *up = c->data;
    char               b;

    if (!ev->timedout && !ev->write) {
        if (c->io->recv(c, &b, 1) == LB_AGAIN) {
            return;                 /* a spurious wake-up */
        }
    } else if (!ev->timedout) {
        return;                     /* writable: says nothing */
    }
    lb_log_debug("*%llu upstream %s: idle keepalive connection closed%s",
                 (unsigned long long) c->id, up->server->addr.text,
                 ev->timedout ? " (timeout)" : "");
    lb_http_upconn_unidle(up);
    lb_http_upconn_close(up);
}

/* keepalive = "auto": the window moves on; the peak of requests in flight
 * to the server is the highest of this window and the last one. */
static void
lb_http_ka_tick(lb_http_ka_server_t *kas)
{
    lb_msec_t  age = lb_current_msec - kas->window_start;

    if (age >= LB_PROXY_KA_WINDOW) {
        kas->peak_prev = age >= 2 * LB_PROXY_KA_WINDOW ? kas->active : kas->peak;
        kas->peak = kas->active;
        kas->window_start = lb_current_msec;
    }
    kas->peak = lb_max(kas->peak, kas->active);
}

/* A request counts among those in flight to the server it was given (a
 * connect in progress is one), until it lets go of its connection. */
static void
lb_http_ka_count(lb_http_proxy_t *p, lb_http_ka_server_t *kas)
{
    if (p->kas) {
        p->kas->active--;
    }
    p->kas = kas;
    if (kas) {
        kas->active++;
        lb_http_ka_tick(kas);
    }
}

/* keepalive = "auto": how many idle connections to the server the pool
 * may hold now: what the server's recent peak needs beside those in use,
 * so a steady load reuses every connection and a burst is followed by a
 * gradual shrink (one connection per release, and keepalive_timeout). */
static size_t
lb_http_ka_auto_limit(lb_http_ka_server_t *kas)
{
    size_t  peak;

    lb_http_ka_tick(kas);
    peak = lb_max(kas->peak, kas->peak_prev);
    return lb_min(peak > kas->active ? peak - kas->active : 0, LB_PROXY_KA_AUTO_MAX);
}

static void
lb_http_upconn_keep(lb_http_upconn_t *up, lb_upstream_t *u)
{
    lb_http_proxy_ka_t   *ka = up->ka;
    lb_http_ka_server_t  *kas = up->kas;
    lb_http_upconn_t     *old;
    size_t                limit;

    if (ka == NULL || kas == NULL
        || ka != lb_get_conf(lb_upstream_current(u)->confs, lb_http_proxy_module))
    {
        /* its server's upstream changed in place since: the pool of the
         * version in force takes no connection of another */
        lb_http_upconn_close(up);
        return;
    }
    if (u->keepalive == LB_UPSTREAM_KEEPALIVE_AUTO) {
        limit = lb_http_ka_auto_limit(kas);
        if (kas->nidle >= limit) {
            /* more than the recent peak needs: this one goes, and so does
             * the server's least recently used idle one while it is over */
            if (kas->nidle > limit) {
                old = lb_queue_data(kas->idle.prev, lb_http_upconn_t, slink);
                lb_http_upconn_unidle(old);
                lb_http_upconn_close(old);
            }
            lb_http_upconn_close(up);
            return;
        }
    } else if (ka->nidle >= (size_t) u->keepalive) {
        /* full: the upstream's least recently used one makes room */
        old = lb_queue_data(ka->idle.prev, lb_http_upconn_t, link);
        lb_http_upconn_unidle(old);
        lb_http_upconn_close(old);
    }
    up->p = NULL;
    up->c->read.handler = lb_http_upconn_idle_handler;
    up->c->write.handler = lb_http_upconn_idle_handler;
    lb_event_timer_del(&up->c->write);
    lb_event_timer_set(&up->c->read, u->keepalive_timeout);
    lb_queue_insert_head(&ka->idle, &up->link);
    lb_queue_insert_head(&kas->idle, &up->slink);
    lb_queue_insert_head(&lb_http_upconn_idle, &up->all);
    ka->nidle++;
    kas->nidle++;
}

/* A reload applied in place replaced upstream old by u: u gets a pool of
 * its own, and the idle connections to servers u keeps move into it (most
 * recently used first, as they were); those to servers gone are closed,
 * and all of them when the upstream's tls group changed.
 * Connections in use go back to no pool: lb_http_upconn_keep closes them. */
static void
lb_http_proxy_upstream_update(lb_upstream_t *old, lb_upstream_t *u)
{
    lb_http_proxy_ka_t   *oka = lb_get_conf(old->confs, lb_http_proxy_module), *ka;
    lb_http_ka_server_t  *okas, *kas;
    lb_http_upconn_t     *up;
    ssize_t               k;
    size_t                i;
    bool                  same_tls;

    if (oka == NULL) {
        return;
    }
    same_tls = lb_tls_upstream(old->confs) == lb_tls_upstream(u->confs);
    ka = lb_palloc(u->pool, sizeof(*ka));
    if (ka == NULL) {
        lb_log_error(ENOMEM, "upstream \"%s\": no keepalive pool after the reload in place",
                     u->name);
        lb_get_conf(u->confs, lb_http_proxy_module) = NULL;
        return;
    }
    *ka = *oka;                 /* hash_key, sticky cookie getter */
    lb_queue_init(&ka->idle);
    ka->nidle = 0;
    ka->servers = NULL;
    lb_get_conf(u->confs, lb_http_proxy_module) = ka;
    if (oka->servers) {
        ka->servers = lb_pcalloc(u->pool, (u->nservers + 1) * sizeof(lb_http_ka_server_t));
        for (i = 0; ka->servers && i < u->nservers; i++) {
            lb_queue_init(&ka->servers[i].idle);
            k = lb_upstream_server_index(old, &u->servers[i]);
            if (k >= 0) {
                /* keepalive = "auto" goes on from the server's recent peak */
                okas = &oka->servers[k];
                ka->servers[i].peak = okas->peak;
                ka->servers[i].peak_prev = okas->peak_prev;
                ka->servers[i].window_start = okas->window_start;
            }
        }
    }
    while (!lb_queue_empty(&oka->idle)) {
        up = lb_queue_data(lb_queue_head(&oka->idle), lb_http_upconn_t, link);
        lb_http_upconn_unidle(up);
        k = ka->servers && same_tls ? lb_upstream_server_index(u, up->server) : -1;
        if (k < 0) {
            lb_http_upconn_close(up);
            continue;
        }
        kas = &ka->servers[k];
        up->ka = ka;
        up->kas = kas;
        up->server = &u->servers[k];
        lb_queue_insert_tail(&ka->idle, &up->link);
        lb_queue_insert_tail(&kas->idle, &up->slink);
        lb_queue_insert_head(&lb_http_upconn_idle, &up->all);
        ka->nidle++;
        kas->nidle++;
    }
}

static int
lb_http_proxy_init_worker(lb_cycle_t *cycle)
{
    return lb_upstream_on_update(lb_http_proxy_upstream_update);
}

/* The server's most recently used idle connection. */
static lb_http_upconn_t *
lb_http_upconn_take(lb_http_ka_server_t *kas)
{
    lb_http_upconn_t  *up;

    if (lb_queue_empty(&kas->idle)) {
        return NULL;
    }
    up = lb_queue_data(lb_queue_head(&kas->idle), lb_http_upconn_t, slink);
    lb_http_upconn_unidle(up);
    lb_event_timer_del(&up->c->read);
    return up;
}

static void
lb_http_proxy_exit_worker(lb_cycle_t *cycle)
{
    while (lb_http_proxy_cached) {
        free(lb_http_proxy_cache[--lb_http_proxy_cached]);
    }
}

/* The request head sent upstream --------------------------------------- */

/* The tokens of the Connection fields of msg: the fields they name are
 * hop-by-hop too (RFC 9110 §7.6.1). */
static size_t
lb_http_connection_tokens(const lb_http_msg_t *msg, lb_str_t *tok, size_t max)
{
    const char  *p, *end, *s;
    size_t       i, n = 0;

    for (i = 0; i < msg->nheaders; i++) {
        if (!lb_http_str_is(msg->headers[i].name, "connection", 10)) {
            continue;
        }
        p = msg->headers[i].value.data;
        end = p + msg->headers[i].value.len;
        while (p < end && n < max) {
            while (p < end && (*p == ',' || *p == ' ' || *p == '\t')) {
                p++;
            }
            s = p;
            while (p < end && *p != ',' && *p != ' ' && *p != '\t') {
                p++;
            }
            if (p > s) {
                tok[n].data = (char *) s;
                tok[n].len = (size_t) (p - s);
                n++;
            }
        }
    }
    return n;
}

static bool
lb_http_named_by(lb_str_t name, const lb_str_t *tok, size_t n)
{
    size_t  i;

    for (i = 0; i < n; i++) {
        if (tok[i].len == name.len && strncasecmp(tok[i].data, name.data, name.len) == 0) {
            return true;
        }
    }
    return false;
}

/* Request fields never forwarded as the client sent them: hop-by-hop
 * ones, the framing and Host, which lbd writes itself, and the ones lbd
 * sets itself. A Connection field naming any of these changes nothing. */
static bool
lb_http_proxy_drop_request_field(lb_str_t n, int xff)
{
    switch (n.len) {
    case 2:
        return lb_http_str_is(n, "te", 2);
    case 4:
        return lb_http_str_is(n, "host", 4);
    case 6:
        return lb_http_str_is(n, "expect", 6);
    case 7:
        return lb_http_str_is(n, "upgrade", 7) || lb_http_str_is(n, "trailer", 7);
    case 9:
        return lb_http_str_is(n, "x-real-ip", 9);
    case 10:
        return lb_http_str_is(n, "connection", 10) || lb_http_str_is(n, "keep-alive", 10);
    case 12:
        return lb_http_str_is(n, "x-request-id", 12);
    case 14:
        return lb_http_str_is(n, "content-length", 14);
    case 15:
        return (xff != LB_HTTP_XFF_OFF && lb_http_str_is(n, "x-forwarded-for", 15));
    case 16:
        return lb_http_str_is(n, "x-forwarded-host", 16)
               || lb_http_str_is(n, "x-forwarded-port", 16)
               || lb_http_str_is(n, "proxy-connection", 16);
    case 17:
        return lb_http_str_is(n, "x-forwarded-proto", 17)
               || lb_http_str_is(n, "transfer-encoding", 17);
    default:
        return false;
    }
}

/* Appends "Content-Length: n". */
static void
lb_http_head_add_length(lb_http_head_t *h, int64_t n)
{
    char    num[24];
    size_t  len;

    len = (size_t) snprintf(num, sizeof(num), "%lld", (long long) n);
    lb_http_head_add(h, "Content-Length", 14, num, len);
}

/* The fields lbd adds to every forwarded request (SPEC §3.5), before the
 * forward filters, so that request_headers can still change them. */
static int
lb_http_proxy_forward_fields(lb_http_request_t *r, lb_http_head_t *h, const lb_http_var_ctx_t *ctx)
{
    lb_http_proxy_t        *p = r->content;
    const lb_http_msg_t    *msg = ctx->request;
    lb_str_t                client, remote;
    char                    ipbuf[LB_IP_TEXT_LEN], *xff;
    size_t                  n;

    if (p == NULL || r->route == NULL || r->route->handler != lb_http_proxy_handler) {
        return LB_OK;
    }
    remote.data = r->peer->remote_ip;
    remote.len = strlen(r->peer->remote_ip);
    if (!r->peer->local_known) {
        lb_http_local_addr(r);
    }
    lb_http_real_client(msg, (struct sockaddr *) &r->c->peer, &p->conf->trusted,
                        &client, ipbuf);
    if (p->conf->xff != LB_HTTP_XFF_OFF) {
        n = lb_http_xff_value(p->conf->xff, msg,
                              p->conf->xff == LB_HTTP_XFF_APPEND ? remote : client,
                              NULL, 0);
        if (h->size - h->len < n + 20) {
            h->overflow = true;
            return LB_ERROR;
        }
        xff = h->data + h->len + sizeof("X-Forwarded-For: ") - 1;
        lb_http_xff_value(p->conf->xff, msg,
                          p->conf->xff == LB_HTTP_XFF_APPEND ? remote : client,
                          xff, n);
        memcpy(h->data + h->len, "X-Forwarded-For: ", sizeof("X-Forwarded-For: ") - 1);
        h->len += sizeof("X-Forwarded-For: ") - 1 + n;
        memcpy(h->data + h->len, "\r\n", 2);
        h->len += 2;
    }
    if (lb_conn_is_tls(r->c)) {
        lb_http_head_add(h, "X-Forwarded-Proto", 17, "https", 5);
    } else {
        lb_http_head_add(h, "X-Forwarded-Proto", 17, "http", 4);
    }
    if (r->peer->local_port[0] != '\0') {
        lb_http_head_add(h, "X-Forwarded-Port", 16, r->peer->local_port,
                         strlen(r->peer->local_port));
    }
    if (msg->host.len) {
        lb_http_head_add(h, "X-Forwarded-Host", 16, msg->host.data, msg->host.len);
    }
    lb_http_head_add(h, "X-Real-IP", 9, client.data, client.len);
    lb_http_head_add(h, "X-Request-ID", 12, r->request_id.data, r->request_id.len);
    return h->overflow ? LB_ERROR : LB_OK;
}

/* Writes the request head for the upstream into out. LB_OK; LB_ERROR when
 * it does not fit; LB_DECLINED when a forward filter failed. */
static int
lb_http_proxy_build_request(lb_http_proxy_t *p)
{
    lb_http_request_t  *r = p->r;
    const lb_http_msg_t    *msg = r->msg;
    const lb_http_proxy_conf_t  *route = lb_get_conf(r->route->confs, lb_http_proxy_module);
    lb_http_head_t          h;
    lb_http_var_ctx_t       ctx;
    lb_str_t                tok[LB_PROXY_MAX_TOKENS];
    const lb_http_header_t *f;
    size_t                  ntok, i, n = 0, need;

    h.data = lb_proxy_out(p);
    h.size = lb_proxy_mem(p)->out_size;
    h.len = 0;
    h.overflow = false;
    lb_http_var_ctx(r, &ctx, 0);

    /* request line: the rewritten path, or the normal path lbd routed on
     * (so the backend never sees another path than the one matched; an
     * absolute-form target's authority went to msg->host), with the query
     * as sent; "*" and a CONNECT target as sent. uri and query fit in
     * target.len + 1 ("http://a?q" -> "/?q"). */
    need = msg->method.len + 1 + msg->target.len + 1 + 2 + 8 + 2;
    if (route->rewrite) {
        n = lb_http_complex_eval(route->rewrite, &ctx, NULL, 0);
        need += n;
    }
    if (need > h.size) {
        return LB_ERROR;
    }
    memcpy(h.data, msg->method.data, msg->method.len);
    h.len = msg->method.len;
    h.data[h.len++] = ' ';
    if (route->rewrite) {
        h.len += lb_http_complex_eval(route->rewrite, &ctx, h.data + h.len, n);
    } else if (msg->uri.len) {
        memcpy(h.data + h.len, msg->uri.data, msg->uri.len);
        h.len += msg->uri.len;
    } else {
        memcpy(h.data + h.len, msg->target.data, msg->target.len);
        h.len += msg->target.len;
    }
    if ((route->rewrite || msg->uri.len)
        && (msg->query.len || msg->target.data[msg->target.len - 1] == '?'))
    {
        h.data[h.len++] = '?';
        memcpy(h.data + h.len, msg->query.data, msg->query.len);
        h.len += msg->query.len;
    }
    memcpy(h.data + h.len, " HTTP/1.1\r\n", 11);
    h.len += 11;
    h.start_line = h.len;

    /* exactly one Host, first: the client's (or the target's authority),
     * else the upstream's name for an HTTP/1.0 request without one */
    if (msg->host.len) {
        lb_http_head_add(&h, "Host", 4, msg->host.data, msg->host.len);
    } else {
        lb_http_head_add(&h, "Host", 4, p->u->name, strlen(p->u->name));
    }
    ntok = lb_http_connection_tokens(msg, tok, LB_PROXY_MAX_TOKENS);
    for (i = 0; i < msg->nheaders; i++) {
        f = &msg->headers[i];
        if (lb_http_proxy_drop_request_field(f->name, p->conf->xff)
            || (ntok && lb_http_named_by(f->name, tok, ntok)))
        {
            continue;
        }
        lb_http_head_add(&h, f->name.data, f->name.len, f->value.data, f->value.len);
    }
    if (msg->upgrade) {
        f = lb_http_find_header(msg, "Upgrade");
        if (f) {
            lb_http_head_add(&h, "Upgrade", 7, f->value.data, f->value.len);
            lb_http_head_add(&h, "Connection", 10, "upgrade", 7);
        }
    }
    lb_http_proxy_forward_fields(r, &h, &ctx);
    for (i = 0; i < lb_http_phases.nforward && !h.overflow; i++) {
        if (lb_http_phases.forward_filters[i](r, &h, &ctx) != LB_OK && !h.overflow) {
            return LB_DECLINED;         /* the filter failed, not the room */
        }
    }
    /* the framing lbd chose, after every edit: a body held whole goes
     * with its length, a streamed one with the client's length or chunked
     * as lbd writes it */
    if (p->whole) {
        if (msg->body != LB_HTTP_BODY_NONE) {
            lb_http_head_add_length(&h, (int64_t) p->held_len);
        }
    } else if (msg->body == LB_HTTP_BODY_LENGTH) {
        lb_http_head_add_length(&h, msg->content_length);
    } else {
        lb_http_head_add(&h, "Transfer-Encoding", 17, "chunked", 7);
        f = lb_http_find_header(msg, "Trailer");
        if (f) {
            lb_http_head_add(&h, "Trailer", 7, f->value.data, f->value.len);
        }
    }
    if (h.overflow || h.size - h.len < 2) {
        return LB_ERROR;
    }
    memcpy(h.data + h.len, "\r\n", 2);
    p->head_len = h.len + 2;
    return LB_OK;
}

/* Requests ------------------------------------------------------------- */

static int   lb_http_proxy_run(lb_http_request_t *r);
static void  lb_http_proxy_timeout(lb_http_request_t *r, lb_event_t *ev);
static void  lb_http_proxy_cleanup(lb_http_request_t *r);
static void  lb_http_proxy_up_handler(lb_event_t *ev);
static int   lb_http_proxy_connect(lb_http_proxy_t *p);


/* Lets go of the upstream side: the connection back to the pool (keep) or
 * closed, and the server's count of active connections. */
static void
lb_http_proxy_release(lb_http_proxy_t *p, bool keep)
{
    lb_http_ka_count(p, NULL);
    if (p->up) {
        /* a connection that began with a PROXY header speaks for one
         * client: it is never given to another */
        if (keep && p->u->keepalive != 0 && !p->u->proxy_protocol && !lb_worker_quitting) {
            p->up->requests++;
            lb_http_upconn_keep(p->up, p->u);
        } else {
            lb_http_upconn_close(p->up);
        }
        p->up = NULL;
        p->pr.c = NULL;             /* it was up's */
    }
    if (p->pr.u) {
        lb_upstream_peer_free(&p->pr, keep ? LB_PEER_SERVED : LB_PEER_UNUSED);
    }
}

/* The proxy lets go of the request: upstream side, memory, hooks. */
static void
lb_http_proxy_end(lb_http_proxy_t *p, bool keep)
{
    lb_http_request_t  *r = p->r;

    if (p->pr.server) {
        /* a copy: the access log may be written after a reload in place
         * freed the server */
        r->upstream_addr.len = strlen(p->pr.server->addr.text);
        r->upstream_addr.data = lb_http_request_alloc(r, r->upstream_addr.len + 1);
        if (r->upstream_addr.data) {
            memcpy(r->upstream_addr.data, p->pr.server->addr.text, r->upstream_addr.len + 1);
        } else {
            r->upstream_addr.len = 0;
        }
        r->upstream_msec = lb_current_msec - p->start;
    }
    r->status = p->status;
    r->bytes_sent = p->down_sent;
    lb_http_proxy_release(p, keep);
    r->content = NULL;
    r->content_run = NULL;
    r->content_timeout = NULL;
    r->content_cleanup = NULL;
    lb_event_timer_del(&r->c->write);
    if (lb_timer_is_set(&p->body_timer)) {
        lb_timer_del(&p->body_timer);
    }
    if (lb_timer_is_set(&p->head_timer)) {
        lb_timer_del(&p->head_timer);
    }
    lb_http_proxy_mem_put(lb_proxy_mem(p));
}

static void
lb_http_proxy_cleanup(lb_http_request_t *r)
{
    lb_http_proxy_end(r->content, false);
}

/* Gives up on the request: answers status when no byte of a response has
 * gone to the client yet; otherwise the client connection closes after
 * what it got (the access log has the upstream's status). */
static int
lb_http_proxy_fail(lb_http_proxy_t *p, int status, const char *why)
{
    lb_http_request_t  *r = p->r;

    if (p->down_sent > 0) {
        lb_log_info("*%llu client %s: %s; closing the client connection mid-response",
                    (unsigned long long) r->c->id, r->c->peer_text, why);
        r->keep_alive = 0;
        lb_http_proxy_end(p, false);
        return lb_http_finalize(r);
    }
    lb_http_proxy_end(p, false);
    r->upstream_msec = r->upstream_addr.len ? r->upstream_msec : -1;
    return lb_http_generate(r, status, why, true);
}

/* The client went away or failed: nothing more to do for it. */
static int
lb_http_proxy_abort(lb_http_proxy_t *p, int err, const char *what)
{
    lb_http_request_t  *r = p->r;

    lb_log_info("*%llu client %s: %s%s%s", (unsigned long long) r->c->id,
                r->c->peer_text, what, err ? ": " : "", err ? strerror(err) : "");
    lb_http_proxy_end(p, false);
    lb_http_abort(r);
    return LB_DONE;
}

/* An idle connection to the server just picked, from the pool. */
static int
lb_http_proxy_pool_get(lb_upstream_peer_t *pr)
{
    lb_http_proxy_t      *p = pr->data;
    lb_http_proxy_ka_t   *ka = lb_get_conf(pr->u->confs, lb_http_proxy_module);
    lb_http_ka_server_t  *kas;
    lb_http_upconn_t     *up;

    if (ka == NULL || ka->servers == NULL) {
        return LB_DECLINED;
    }
    /* called once for each server picked: the request counts for it now */
    kas = &ka->servers[pr->server - pr->u->servers];
    lb_http_ka_count(p, kas);
    up = lb_http_upconn_take(kas);
    if (up == NULL) {
        return LB_DECLINED;
    }
    p->up = up;
    pr->c = up->c;
    return LB_OK;
}

/* The peer layer's answer: a connection ready for the request, or the
 * reason there is none. LB_OK: the exchange may start; else as
 * lb_http_proxy_fail. */
static int
lb_http_proxy_peer_result(lb_http_proxy_t *p, int rc)
{
    lb_upstream_peer_t  *pr = &p->pr;
    lb_http_upconn_t    *up = p->up;
    lb_pool_t           *pool;
    char                 buf[256];

    if (rc != LB_OK) {
        switch (pr->gave_up) {
        case LB_PEER_LOCAL:
            return lb_http_proxy_fail(p, 503, pr->why);
        case LB_PEER_RETRIES_OUT:
            snprintf(buf, sizeof(buf), "upstream \"%s\": giving up after %u failed attempts",
                     p->u->name, pr->try.attempts);
            return lb_http_proxy_fail(p, pr->timed_out ? 504 : 502, buf);
        default:
            snprintf(buf, sizeof(buf), "upstream \"%s\": no usable server (%s)", p->u->name,
                     pr->why);
            return lb_http_proxy_fail(p, pr->try.attempts == 0 ? 503
                                         : pr->timed_out ? 504 : 502, buf);
        }
    }
    if (up == NULL) {
        /* a new connection: its pool carries it while it lives */
        pool = lb_conn_pool(pr->c);
        up = pool ? lb_pcalloc(pool, sizeof(*up)) : NULL;
        if (up == NULL) {
            return lb_http_proxy_fail(p, 502, "out of memory for an upstream connection");
        }
        up->c = pr->c;
        up->server = pr->server;
        up->ka = lb_get_conf(pr->u->confs, lb_http_proxy_module);
        up->kas = p->kas;
        lb_queue_init(&up->link);
        lb_queue_init(&up->slink);
        lb_queue_init(&up->all);
    }
    p->up = up;
    p->pre_sent = 0;                /* the request goes out from its head */
    p->up_done = false;
    up->p = p;
    up->c->data = up;
    up->c->read.handler = lb_http_proxy_up_handler;
    up->c->write.handler = lb_http_proxy_up_handler;
    p->phase = LB_PROXY_EXCHANGE;
    p->r->upstream_connect_msec = pr->connect_msec;
    return LB_OK;
}

/* What a call of the peer layer returned: LB_AGAIN, connecting; else as
 * lb_http_proxy_peer_result. */
static int
lb_http_proxy_peer_step(lb_http_proxy_t *p, int rc)
{
    if (rc == LB_AGAIN) {
        p->phase = LB_PROXY_CONNECT;
        return LB_AGAIN;
    }
    return lb_http_proxy_peer_result(p, rc);
}

/* The connect ended after a wait. */
static void
lb_http_proxy_peer_ready(lb_upstream_peer_t *pr, int rc)
{
    lb_http_proxy_t    *p = pr->data;
    lb_http_request_t  *r = p->r;

    if (lb_http_proxy_peer_result(p, rc) != LB_DONE) {
        lb_http_run_request(r);
    }
}

/* sticky cookie: the server the client's cookie names becomes the sticky
 * target. A cookie that is malformed, forged, expired or names a server
 * gone from the upstream is ignored (a server is chosen afresh and the
 * response carries a new cookie). */
static void
lb_http_proxy_sticky_read(lb_http_proxy_t *p, lb_http_proxy_ka_t *ka, lb_http_var_ctx_t *ctx)
{
    lb_http_request_t  *r = p->r;
    char                buf[128];
    lb_http_var_out_t   out = { buf, sizeof(buf), 0, LB_HTTP_ESCAPE_NONE };
    const char         *why = "too long";

    ka->sticky_var->get(&out, ctx, ka->sticky_arg);
    if (out.len == 0) {
        return;
    }
    if (out.len <= sizeof(buf)) {
        p->pr.sticky = lb_upstream_sticky_check(p->pr.u, buf, out.len, &why,
                                                &p->sticky_renew);
    }
    if (p->pr.sticky == NULL) {
        lb_log_debug("*%llu client %s: sticky cookie %s of upstream \"%s\" ignored: %s",
                     (unsigned long long) r->c->id, r->c->peer_text, p->u->sticky.cookie,
                     p->u->name, why);
    }
}

/* The Set-Cookie field naming the server that answered, when the client's
 * cookie does not name it (none, invalid, or its server could not be
 * used) or is past half its life. */
static int
lb_http_proxy_sticky_set(lb_http_proxy_t *p)
{
    lb_http_request_t     *r = p->r;
    lb_upstream_sticky_t  *st = &p->u->sticky;
    char                   value[128], *f;
    size_t                 vlen, size;
    int                    n;

    if (p->pr.server == p->pr.sticky_hit && !p->sticky_renew) {
        return LB_OK;
    }
    vlen = lb_upstream_sticky_cookie(p->u, p->pr.server, value, sizeof(value));
    size = strlen(st->cookie) + vlen + strlen(st->path)
           + (st->domain ? strlen(st->domain) : 0) + 96;
    f = vlen ? lb_http_request_alloc(r, size) : NULL;
    if (f == NULL) {
        return LB_ERROR;
    }
    n = snprintf(f, size, "%s=%.*s; Path=%s; Max-Age=%lld%s%s; HttpOnly; SameSite=Lax%s",
                 st->cookie, (int) vlen, value, st->path, (long long) (st->ttl / 1000),
                 st->domain ? "; Domain=" : "", st->domain ? st->domain : "",
                 lb_conn_is_tls(r->c) ? "; Secure" : "");
    return lb_http_out_add(r, "Set-Cookie", 10, f, (size_t) n);
}

/* Picks a server and connects to it, or takes an idle connection to it
 * from the pool. LB_OK: ready; LB_AGAIN: connecting; else as
 * lb_http_proxy_fail. */
static int
lb_http_proxy_connect(lb_http_proxy_t *p)
{
    lb_upstream_peer_t  *pr = &p->pr;
    lb_http_request_t   *r = p->r;
    lb_http_proxy_ka_t  *ka = lb_get_conf(p->u->confs, lb_http_proxy_module);
    lb_http_var_ctx_t    ctx;
    char                 key[512];
    size_t               n;

    lb_upstream_peer_init(pr, p->u);
    pr->client = r->c;
    pr->log_id = r->c->id;
    pr->client_text = r->c->peer_text;
    pr->local_action = "answering 503";
    pr->client_addr = (struct sockaddr *) &r->c->peer;
    pr->pool_get = lb_http_proxy_pool_get;
    pr->ready = lb_http_proxy_peer_ready;
    pr->data = p;
    if (ka == NULL || (ka->sticky_var == NULL && ka->hash_key == NULL)) {
        return lb_http_proxy_peer_step(p, lb_upstream_peer_connect(pr));
    }
    memset(&ctx, 0, sizeof(ctx));
    ctx.r = r;
    ctx.request = r->msg;
    if (ka->sticky_var) {
        lb_http_proxy_sticky_read(p, ka, &ctx);
    }
    if (ka->hash_key) {
        n = lb_http_complex_eval(ka->hash_key, &ctx, key, sizeof(key));
        /* an empty key (no such cookie) has nothing to stick to */
        if (n) {
            pr->key = lb_upstream_key_hash(key, lb_min(n, sizeof(key)));
            pr->has_key = true;
        }
    }
    return lb_http_proxy_peer_step(p, lb_upstream_peer_connect(pr));
}

static bool
lb_http_method_idempotent(lb_str_t m)
{
    switch (m.len) {
    case 3:
        return memcmp(m.data, "GET", 3) == 0 || memcmp(m.data, "PUT", 3) == 0;
    case 4:
        return memcmp(m.data, "HEAD", 4) == 0;
    case 5:
        return memcmp(m.data, "TRACE", 5) == 0;
    case 6:
        return memcmp(m.data, "DELETE", 6) == 0;
    case 7:
        return memcmp(m.data, "OPTIONS", 7) == 0;
    default:
        return false;
    }
}

/* Whether the request can go to a server again: idempotent, and all of it
 * at hand (its body held whole, or none of the streamed part gone yet). */
static bool
lb_http_proxy_can_resend(lb_http_proxy_t *p)
{
    return !p->resp_head && p->upr.sent == 0 && lb_http_method_idempotent(p->r->msg->method);
}

/* Sends the request again: on a new connection to the same server
 * (reopen: the pooled one went stale), or to the next server (the failure
 * counted). LB_OK: run again, connecting; else as lb_http_proxy_fail. */
static int
lb_http_proxy_resend(lb_http_proxy_t *p, int err, const char *what, bool reopen)
{
    lb_http_request_t  *r = p->r;
    int                 rc;

    lb_log_info("*%llu client %s: server %s of upstream \"%s\" %s%s%s; sending the "
                "request again%s", (unsigned long long) r->c->id, r->c->peer_text,
                p->pr.server->addr.text, p->u->name, what, err ? ": " : "",
                err ? strerror(err) : "", reopen ? "" : " to another server");
    if (lb_timer_is_set(&p->head_timer)) {
        lb_timer_del(&p->head_timer);
    }
    lb_buf_reset(&p->in);
    p->got_byte = false;
    /* up lives in the connection's pool: the peer layer closes both */
    p->up = NULL;
    rc = reopen ? lb_upstream_peer_reopen(&p->pr) : lb_upstream_peer_next(&p->pr, err, NULL);
    rc = lb_http_proxy_peer_step(p, rc);
    return rc == LB_AGAIN ? LB_OK : rc;
}

/* The server closed the connection (or it failed) while a request was on
 * it, before any byte of a response: a connection from the pool went
 * stale (the request goes again on a new one to the same server), or the
 * server failed (next_upstream "error": to another server while `retries`
 * allows), when the request can be sent again. */
static int
lb_http_proxy_upstream_gone(lb_http_proxy_t *p, int err, const char *what)
{
    char  buf[256];

    if (!p->got_byte && lb_http_proxy_can_resend(p)) {
        if (p->pr.reused) {
            return lb_http_proxy_resend(p, err, what, true);
        }
        if (p->u->next_upstream & LB_NEXT_ERROR) {
            return lb_http_proxy_resend(p, err, what, false);
        }
    }
    snprintf(buf, sizeof(buf), "server %s of upstream \"%s\" %s%s%s", p->pr.server->addr.text,
             p->u->name, what, err ? ": " : "", err ? strerror(err) : "");
    if (!p->pr.reused) {
        lb_upstream_connected(p->pr.server, false);     /* passive health */
    }
    return lb_http_proxy_fail(p, 502, buf);
}

/* An answer next_upstream sends elsewhere (an invalid head, or a status it
 * names), while another server may still be tried. */
static bool
lb_http_proxy_next(lb_http_proxy_t *p, unsigned bit)
{
    return bit && (p->u->next_upstream & bit) && lb_http_proxy_can_resend(p)
           && (int64_t) p->pr.try.attempts <= p->u->retries;
}

/* The request body before a server is chosen ---------------------------- */

/* Sends what is left of "100 Continue". LB_AGAIN, or the result of
 * aborting. */
static int
lb_http_proxy_send_continue(lb_http_proxy_t *p, bool *progress)
{
    int  rc;

    if (p->cont_want && !p->cont_done) {
        rc = p->r->writer->interim(p->r, 100);
        if (rc == LB_OK) {
            p->cont_done = true;
            *progress = true;
        } else if (rc == LB_ERROR) {
            return lb_http_proxy_abort(p, errno, "cannot send 100 Continue");
        }
    }
    return LB_AGAIN;
}

/* Moves body bytes from the client's read buffer into held, decoding a
 * chunked body (its trailers are dropped: a body held whole goes with a
 * Content-Length). LB_OK when the body is all held or held is full,
 * LB_AGAIN for more, or the result of refusing the request. */
static int
lb_http_proxy_hold(lb_http_proxy_t *p)
{
    lb_http_request_t  *r = p->r;
    lb_http_relay_t    *rl = &p->upr;
    lb_buf_t           *b = r->body_in;
    const char       *data;
    size_t            avail, used, dlen, n;
    int               rc;

    while (!rl->complete && p->held_len < p->held_size && (avail = lb_buf_len(b)) > 0) {
        if (rl->in == LB_HTTP_BODY_LENGTH) {
            n = (size_t) lb_min((int64_t) lb_min(avail, p->held_size - p->held_len), rl->left);
            memcpy(p->held + p->held_len, b->pos, n);
            p->held_len += n;
            lb_buf_consume(b, n);
            rl->left -= (int64_t) n;
            rl->data += (int64_t) n;
            rl->complete = rl->left == 0;
            continue;
        }
        rc = lb_http_parse_chunked(&rl->chunked, b->pos, avail, &used, &data, &dlen);
        if (rc == LB_OK) {
            rl->data += (int64_t) dlen;
            if (rl->data > r->conf->max_body_size) {
                return lb_http_proxy_fail(p, 413, "chunked body larger than max_body_size");
            }
            n = lb_min(dlen, p->held_size - p->held_len);
            memcpy(p->held + p->held_len, data, n);
            p->held_len += n;
            rl->data_left = dlen - n;        /* left in b for upr */
            used -= dlen - n;
        } else if (rc == LB_DONE) {
            rl->complete = true;
        } else if (rc == LB_ERROR) {
            return lb_http_proxy_fail(p, 400, "invalid chunked body");
        }
        lb_buf_consume(b, used);
        if (rc == LB_AGAIN) {
            if (lb_buf_len(b) && lb_buf_room(b) == 0 && b->pos == b->start) {
                return lb_http_proxy_fail(p, 400, "a trailer field line does not fit");
            }
            break;
        }
    }
    if (rl->complete) {
        p->whole = true;
        return LB_OK;
    }
    if (p->held_len == p->held_size) {
        p->streaming = true;
        return LB_OK;
    }
    return LB_AGAIN;
}

/* Reads the body into held until it is all there or held is full.
 * LB_OK: the framing can be chosen; LB_AGAIN; or a result of refusing. */
static int
lb_http_proxy_buffer(lb_http_proxy_t *p)
{
    bool     progress;
    ssize_t  n;
    int      rc;

    for ( ;; ) {
        if (p->cont_early) {
            rc = lb_http_proxy_send_continue(p, &progress);
            if (rc != LB_AGAIN) {
                return rc;
            }
        }
        rc = lb_http_proxy_hold(p);
        if (rc != LB_AGAIN) {
            return rc;
        }
        n = p->r->writer->read_body(p->r, false);
        if (n > 0) {
            continue;
        }
        if (n == LB_AGAIN) {
            return LB_AGAIN;
        }
        return lb_http_proxy_abort(p, n == 0 ? 0 : errno,
                                   "closed the connection in a request body");
    }
}

static void
lb_http_proxy_pre_add(lb_http_proxy_t *p, const void *data, size_t len)
{
    p->pre[p->npre].iov_base = (void *) data;
    p->pre[p->npre++].iov_len = len;
    p->pre_total += len;
}

/* The body is held (whole, or as much as request_buffer_size allows):
 * the framing is chosen, the head written, and a server chosen. */
static int
lb_http_proxy_begin(lb_http_proxy_t *p)
{
    lb_http_request_t  *r = p->r;
    size_t           n;

    if (p->streaming) {
        p->upr.out = p->upr.in == LB_HTTP_BODY_CHUNKED ? LB_HTTP_OUT_CHUNKED : LB_HTTP_OUT_AS_IS;
    }
    switch (lb_http_proxy_build_request(p)) {
    case LB_OK:
        break;
    case LB_DECLINED:
        return lb_http_proxy_fail(p, 502, "a forward filter failed");
    default:
        /* the client's fields with lbd's and request_headers' additions */
        return lb_http_proxy_fail(p, 431, "the request head with forwarding fields "
                                  "does not fit");
    }
    lb_http_proxy_pre_add(p, lb_proxy_out(p), p->head_len);
    if (p->held_len && p->upr.out == LB_HTTP_OUT_CHUNKED) {
        n = (size_t) snprintf(p->held_line, sizeof(p->held_line), "%zx\r\n", p->held_len);
        lb_http_proxy_pre_add(p, p->held_line, n);
        lb_http_proxy_pre_add(p, p->held, p->held_len);
        lb_http_proxy_pre_add(p, "\r\n", 2);
    } else if (p->held_len) {
        lb_http_proxy_pre_add(p, p->held, p->held_len);
    }
    if (p->whole && lb_timer_is_set(&p->body_timer)) {
        lb_timer_del(&p->body_timer);
    }
    lb_event_timer_del(&r->c->read);
    return lb_http_proxy_connect(p);
}

/* client_body_max_time passed before the whole body arrived. */
static void
lb_http_proxy_body_expired(lb_timer_t *t)
{
    lb_http_proxy_t  *p = t->data;
    lb_http_request_t  *r = p->r;

    if (p->upr.complete || p->resp_head) {
        return;
    }
    if (lb_http_proxy_fail(p, 408, "client_body_max_time expired") != LB_DONE) {
        lb_http_run_request(r);
    }
}

/* response_head_timeout passed without the final response head. */
static void
lb_http_proxy_head_expired(lb_timer_t *t)
{
    lb_http_proxy_t  *p = t->data;
    lb_http_request_t  *r = p->r;
    char              buf[256];

    snprintf(buf, sizeof(buf), "server %s of upstream \"%s\": response_head_timeout expired",
             p->pr.server->addr.text, p->u->name);
    lb_upstream_connected(p->pr.server, false);     /* passive health */
    if (lb_http_proxy_fail(p, 504, buf) != LB_DONE) {
        lb_http_run_request(r);
    }
}

/* Up to max iovecs for what is left of v[0..n) after skip bytes. */
static int
lb_http_proxy_iov_skip(const struct iovec *v, int n, size_t skip, struct iovec *out)
{
    int  i, k = 0;

    for (i = 0; i < n; i++) {
        if (skip >= v[i].iov_len) {
            skip -= v[i].iov_len;
            continue;
        }
        out[k].iov_base = (char *) v[i].iov_base + skip;
        out[k++].iov_len = v[i].iov_len - skip;
        skip = 0;
    }
    return k;
}

/* Moves the request upstream: the head and what was held, then the rest
 * of the body as it comes. */
static int
lb_http_proxy_upload(lb_http_proxy_t *p, bool *progress)
{
    lb_http_request_t  *r = p->r;
    lb_conn_t          *uc = p->up->c;
    struct iovec        iov[LB_PROXY_IOV];
    size_t           pre_left;
    ssize_t          n;
    int              k, rc;

    rc = lb_http_proxy_send_continue(p, progress);
    if (rc != LB_AGAIN) {
        return rc;
    }

    while (!p->up_done && !p->resp_head) {
        if (p->streaming && lb_http_relay_fill(&p->upr, r->body_in) != LB_OK) {
            return lb_http_proxy_fail(p, p->upr.error_status, p->upr.error);
        }
        pre_left = p->pre_total - p->pre_sent;
        k = lb_http_proxy_iov_skip(p->pre, p->npre, p->pre_sent, iov);
        if (p->streaming) {
            k += lb_http_relay_iov(&p->upr, iov + k, LB_PROXY_IOV - k);
        }
        if (k == 0 && (!p->streaming || lb_http_relay_done(&p->upr))) {
            p->up_done = true;
            lb_timer_set(&p->head_timer, p->u->response_head_timeout);
            break;
        }
        if (k && uc->write.ready) {
            n = uc->io->sendv(uc, iov, k);
            if (n > 0) {
                *progress = true;
                if ((size_t) n <= pre_left) {
                    p->pre_sent += (size_t) n;
                    continue;
                }
                p->pre_sent = p->pre_total;
                lb_http_relay_sent(&p->upr, r->body_in, (size_t) n - pre_left);
                continue;
            }
            if (n == LB_ERROR) {
                return lb_http_proxy_upstream_gone(p, errno, "failed while the request was sent");
            }
        }
        /* more of the body from the client, unless what it holds still
         * waits for the server */
        if (!p->streaming || p->upr.complete) {
            break;
        }
        n = r->writer->read_body(r, lb_http_relay_busy(&p->upr));
        if (n > 0) {
            *progress = true;
            continue;
        }
        if (n == 0 || n == LB_ERROR) {
            return lb_http_proxy_abort(p, n == 0 ? 0 : errno,
                                       "closed the connection in a request body");
        }
        break;
    }
    if (p->upr.complete && lb_timer_is_set(&p->body_timer)) {
        lb_timer_del(&p->body_timer);
    }
    return LB_AGAIN;
}

/* Response fields never passed to the client as the server sent them:
 * hop-by-hop ones and the framing, which lbd writes itself. */
static bool
lb_http_proxy_drop_response_field(lb_str_t n, bool keep_trailer, bool upgrade)
{
    switch (n.len) {
    case 2:
        return lb_http_str_is(n, "te", 2);
    case 7:
        return (!upgrade && lb_http_str_is(n, "upgrade", 7))
               || (!keep_trailer && lb_http_str_is(n, "trailer", 7));
    case 10:
        return lb_http_str_is(n, "connection", 10) || lb_http_str_is(n, "keep-alive", 10);
    case 12:
        return lb_http_str_is(n, "x-request-id", 12);
    case 14:
        return lb_http_str_is(n, "content-length", 14);
    case 16:
        return lb_http_str_is(n, "proxy-connection", 16);
    case 17:
        return lb_http_str_is(n, "transfer-encoding", 17);
    default:
        return false;
    }
}

/* The first element of a Content-Length value the parser accepted (a
 * response may repeat one value: "3, 3"). */
static lb_str_t
lb_http_proxy_first_length(const lb_str_t *v)
{
    lb_str_t  r = *v;
    size_t    i;

    for (i = 0; i < r.len && r.data[i] >= '0' && r.data[i] <= '9'; i++) {
        /* digits */
    }
    r.len = i;
    return r;
}

/* The response head is parsed: decide how its body travels and give the
 * client's head to the output path. */
static int
lb_http_proxy_response_head(lb_http_proxy_t *p)
{
    lb_http_request_t       *r = p->r;
    const lb_http_msg_t     *resp = &lb_proxy_mem(p)->resp;
    const lb_http_header_t  *f;
    lb_str_t                 tok[LB_PROXY_MAX_TOKENS], len;
    size_t                   ntok, i;
    bool                     upgrade = resp->status == 101;
    char                     buf[256];

    r->upstream_status = resp->status;
    if (upgrade && p->hc == NULL) {
        return lb_http_proxy_fail(p, 502, "a tunnel (101) needs an HTTP/1 client connection");
    }
    if (upgrade && !r->msg->upgrade) {
        snprintf(buf, sizeof(buf), "server %s of upstream \"%s\" answered 101 to a request "
                 "without Upgrade", p->pr.server->addr.text, p->u->name);
        return lb_http_proxy_fail(p, 502, buf);
    }
    if (lb_timer_is_set(&p->head_timer)) {
        lb_timer_del(&p->head_timer);
    }
    p->status = resp->status;
    p->resp_keep = resp->keep_alive;
    /* the body is decoded as it comes; the writer frames it for the client */
    lb_http_relay_init(&p->downr, resp->body, resp->content_length, LB_HTTP_OUT_DATA, -1);
    if (!p->up_done || upgrade || resp->body == LB_HTTP_BODY_CLOSE) {
        /* an early answer leaves the rest of the request body unread; a
         * body the server delimited by its close ends ours too (the
         * client is told where it ends, chunked, either way) */
        r->keep_alive = 0;
    }

    r->out.status = resp->status;
    r->out.reason = resp->reason;
    r->out.nfields = 0;
    r->out.upgrade = upgrade;
    r->out.content_length = -1;
    ntok = lb_http_connection_tokens(resp, tok, LB_PROXY_MAX_TOKENS);
    for (i = 0; i < resp->nheaders; i++) {
        f = &resp->headers[i];
        /* a 101 keeps Upgrade although its Connection names it: the
         * client must see the protocol the tunnel now speaks (RFC 9110
         * §7.8; a WebSocket client fails without it, RFC 6455 §4.1) */
        if (lb_http_proxy_drop_response_field(f->name, resp->body == LB_HTTP_BODY_CHUNKED,
                                              upgrade)
            || (ntok && lb_http_named_by(f->name, tok, ntok)
                && !(upgrade && lb_http_str_is(f->name, "upgrade", 7))))
        {
            continue;
        }
        if (lb_http_out_add(r, f->name.data, f->name.len, f->value.data, f->value.len)
            != LB_OK)
        {
            return lb_http_proxy_fail(p, 502, "the response has too many fields");
        }
    }
    /* for HEAD and 304 the length the server declared for the
     * representation, which frames nothing here */
    if (resp->body == LB_HTTP_BODY_LENGTH) {
        r->out.content_length = resp->content_length;
    } else if (resp->body == LB_HTTP_BODY_NONE && resp->status >= 200 && resp->status != 204
               && (f = lb_http_find_header(resp, "Content-Length")) != NULL)
    {
        len = lb_http_proxy_first_length(&f->value);
        r->out.content_length = 0;
        for (i = 0; i < len.len && r->out.content_length < (1LL << 56); i++) {
            r->out.content_length = r->out.content_length * 10 + (len.data[i] - '0');
        }
    }
    if (p->u->sticky.mode == LB_STICKY_COOKIE && lb_http_proxy_sticky_set(p) != LB_OK) {
        return lb_http_proxy_fail(p, 502, "no room for the sticky cookie");
    }
    if (lb_http_send_header(r) != LB_OK) {
        snprintf(buf, sizeof(buf), "the response head of server %s with response_headers "
                 "does not fit", p->pr.server->addr.text);
        return lb_http_proxy_fail(p, 502, buf);
    }
    p->resp_head = true;
    lb_buf_consume(&p->in, resp->head_len);
    if (upgrade) {
        p->phase = LB_PROXY_TUNNEL;
    }
    return LB_AGAIN;
}

static int lb_http_proxy_finish(lb_http_proxy_t *p);
static int lb_http_proxy_tunnel(lb_http_proxy_t *p);

/* Gives what the relay decoded to the output path; what the path took is
 * consumed from the relay. LB_OK: all of it went (and, at the end, the
 * response is complete); LB_AGAIN: the client is slow; LB_ERROR. */
static int
lb_http_proxy_send(lb_http_proxy_t *p, bool *progress)
{
    lb_chain_t     links[LB_HTTP_RELAY_IOV], *in;
    struct iovec   iov[LB_HTTP_RELAY_IOV];
    size_t         taken = 0, i;
    int            k, rc;
    bool           last;

    k = lb_http_relay_iov(&p->downr, iov, LB_HTTP_RELAY_IOV);
    for (i = 0; i < (size_t) k; i++) {
        lb_chain_link_set(&links[i], iov[i].iov_base, iov[i].iov_len);
        links[i].trailer = lb_http_relay_is_trailer(&p->downr, i);
    }
    in = lb_chain_link_array(links, (size_t) k);
    last = p->downr.complete;
    rc = lb_http_send_body(p->r, in, last);
    p->out_again = rc == LB_AGAIN;
    for (i = 0; i < (size_t) k; i++) {
        taken += (size_t) (links[i].pos - (const char *) iov[i].iov_base);
    }
    if (taken) {
        *progress = true;
        lb_http_relay_sent(&p->downr, &p->in, taken);
    }
    p->down_sent = p->r->bytes_sent;
    return rc;
}

/* Moves the response to the client: its head, then the body as it comes. */
static int
lb_http_proxy_download(lb_http_proxy_t *p, bool *progress)
{
    lb_http_request_t  *r = p->r;
    lb_conn_t          *uc = p->up->c;
    lb_http_msg_t      *resp = &lb_proxy_mem(p)->resp;
    ssize_t             n;
    int                 rc;
    char                buf[256];
    static const lb_http_limits_t  limits = { LB_PROXY_IN_SIZE, LB_HTTP_MAX_HEADERS,
                                              LB_PROXY_IN_SIZE };

    if (p->pre_sent < p->head_len) {
        return LB_AGAIN;                /* no answer before the question */
    }
    for ( ;; ) {
        if (!p->resp_head && lb_buf_len(&p->in)) {
            rc = lb_http_parse_response_head(resp, p->in.pos, lb_buf_len(&p->in), &limits,
                                             r->head_method);
            if (rc == LB_OK) {
                if (resp->status < 200 && resp->status != 101) {
                    lb_buf_consume(&p->in, resp->head_len);     /* 100, 103: dropped */
                    continue;
                }
                if ((p->u->next_upstream & LB_NEXT_STATUSES)
                    && lb_http_proxy_next(p, lb_upstream_next_status(resp->status)))
                {
                    snprintf(buf, sizeof(buf), "answered %d", resp->status);
                    return lb_http_proxy_resend(p, 0, buf, false);
                }
                rc = lb_http_proxy_response_head(p);
                if (rc != LB_AGAIN) {
                    return rc;
                }
                *progress = true;
                if (p->phase == LB_PROXY_TUNNEL) {
                    return lb_http_proxy_tunnel(p);
                }
                continue;
            }
            if (rc == LB_ERROR) {
                if (lb_http_proxy_next(p, LB_NEXT_INVALID_HEADER)) {
                    snprintf(buf, sizeof(buf), "sent an invalid response head (%s)",
                             resp->error);
                    return lb_http_proxy_resend(p, 0, buf, false);
                }
                snprintf(buf, sizeof(buf), "server %s of upstream \"%s\" sent an invalid "
                         "response head: %s", p->pr.server->addr.text, p->u->name, resp->error);
                lb_upstream_connected(p->pr.server, false);     /* passive health */
                return lb_http_proxy_fail(p, 502, buf);
            }
            if (lb_buf_room(&p->in) == 0) {
                if (p->in.pos == p->in.start) {
                    snprintf(buf, sizeof(buf), "server %s of upstream \"%s\" sent a response "
                             "head larger than %d bytes", p->pr.server->addr.text, p->u->name,
                             LB_PROXY_IN_SIZE);
                    lb_upstream_connected(p->pr.server, false);
                    return lb_http_proxy_fail(p, 502, buf);
                }
                lb_buf_compact(&p->in);
            }
        }

        if (p->resp_head) {
            if (!p->downr.complete && lb_http_relay_fill(&p->downr, &p->in) != LB_OK) {
                snprintf(buf, sizeof(buf), "server %s of upstream \"%s\" sent an invalid "
                         "body: %s", p->pr.server->addr.text, p->u->name, p->downr.error);
                return lb_http_proxy_fail(p, 502, buf);
            }
            if (p->cont_want && !p->cont_done) {
                return LB_AGAIN;
            }
            rc = lb_http_proxy_send(p, progress);
            if (rc == LB_ERROR) {
                /* the writer or a filter said why; this says from where */
                snprintf(buf, sizeof(buf), "the response of server %s of upstream \"%s\" "
                         "was cut off", p->pr.server->addr.text, p->u->name);
                return lb_http_proxy_abort(p, 0, buf);
            }
            if (rc == LB_OK && p->downr.complete && !lb_http_relay_busy(&p->downr)) {
                return lb_http_proxy_finish(p);
            }
            if (rc == LB_AGAIN && lb_http_relay_busy(&p->downr)) {
                return LB_AGAIN;        /* the client is full: read no more */
            }
        }

        /* more from the server, when everything read so far is on its way */
        if (!uc->read.ready
            || (p->resp_head && (p->downr.complete || lb_http_relay_busy(&p->downr))))
        {
            return LB_AGAIN;
        }
        if (lb_buf_room(&p->in) == 0) {
            lb_buf_compact(&p->in);
        }
        n = lb_conn_recv(uc, p->in.last, lb_buf_room(&p->in));
        if (n > 0) {
            p->in.last += n;
            p->got_byte = true;
            *progress = true;
            continue;
        }
        if (n == LB_AGAIN) {
            return LB_AGAIN;
        }
        if (n == 0 && p->resp_head && p->downr.in == LB_HTTP_BODY_CLOSE) {
            lb_http_relay_eof(&p->downr);
            p->resp_keep = false;
            continue;
        }
        if (p->resp_head) {
            snprintf(buf, sizeof(buf), "server %s of upstream \"%s\" closed the connection "
                     "mid-response%s%s", p->pr.server->addr.text, p->u->name,
                     n == 0 ? "" : ": ", n == 0 ? "" : strerror(errno));
            return lb_http_proxy_fail(p, 502, buf);
        }
        return lb_http_proxy_upstream_gone(p, n == 0 ? 0 : errno,
                                           "closed the connection before a response");
    }
}

/* The response went out whole. */
static int
lb_http_proxy_finish(lb_http_proxy_t *p)
{
    lb_http_request_t  *r = p->r;
    bool                keep;

    keep = p->resp_keep && p->up_done && p->downr.in != LB_HTTP_BODY_CLOSE
           && lb_buf_len(&p->in) == 0 && p->phase == LB_PROXY_EXCHANGE;
    lb_http_proxy_end(p, keep);
    return lb_http_finalize(r);
}

/* After 101: bytes both ways, the client's through its read buffer, the
 * server's through `in`; a side that finishes sending has the other side
 * half-closed once its bytes are delivered, and when both have, the
 * tunnel ends. read_timeout of the upstream bounds a tunnel with no
 * traffic either way. */
static int
lb_http_proxy_tunnel(lb_http_proxy_t *p)
{
    lb_http_conn_t  *hc = p->hc;
    lb_http_request_t  *r = p->r;
    lb_conn_t       *c = hc->c, *uc = p->up->c;
    lb_buf_t        *ub = &hc->buf, *db = &p->in;
    bool             moved, any = false;
    ssize_t          n;
    int              rc;

    do {
        moved = false;
        /* the rest of the 101 head, then the server's bytes */
        if (!p->head_out) {
            rc = lb_http_send_body(p->r, NULL, true);
            if (rc == LB_ERROR) {
                goto failed;
            }
            p->down_sent = p->r->bytes_sent;
            if (rc == LB_AGAIN) {
                break;
            }
            p->head_out = moved = true;
            continue;
        }
        if (lb_buf_len(db) && c->write.ready) {
            n = lb_conn_send(c, db->pos, lb_buf_len(db));
            if (n > 0) {
                lb_buf_consume(db, (size_t) n);
                p->down_sent += (uint64_t) n;
                moved = true;
            } else if (n == LB_ERROR) {
                goto failed;
            }
        }
        if (!p->t_down_eof && lb_buf_room(db) && uc->read.ready) {
            n = lb_conn_recv(uc, db->last, lb_buf_room(db));
            if (n > 0) {
                db->last += n;
                moved = true;
            } else if (n == 0) {
                p->t_down_eof = moved = true;
            } else if (n == LB_ERROR) {
                goto failed;
            }
        }
        if (p->t_down_eof && lb_buf_len(db) == 0 && !p->t_down_shut) {
            p->t_down_shut = moved = true;
            if (c->io->shutdown(c) == LB_ERROR) {
                goto failed;
            }
        }

        if (lb_buf_len(ub) && uc->write.ready) {
            n = lb_conn_send(uc, ub->pos, lb_buf_len(ub));
            if (n > 0) {
                lb_buf_consume(ub, (size_t) n);
                moved = true;
            } else if (n == LB_ERROR) {
                goto failed;
            }
        }
        if (lb_buf_room(ub) == 0 && ub->pos > ub->start) {
            lb_buf_compact(ub);
        }
        if (!p->t_up_eof && lb_buf_room(ub) && c->read.ready) {
            n = lb_conn_recv(c, ub->last, lb_buf_room(ub));
            if (n > 0) {
                ub->last += n;
                moved = true;
            } else if (n == 0) {
                p->t_up_eof = moved = true;
            } else if (n == LB_ERROR) {
                goto failed;
            }
        }
        if (p->t_up_eof && lb_buf_len(ub) == 0 && !p->t_up_shut) {
            p->t_up_shut = moved = true;
            if (uc->io->shutdown(uc) == LB_ERROR) {
                goto failed;
            }
        }
        any |= moved;
    } while (moved);

    if (p->t_up_shut && p->t_down_shut) {
        r->keep_alive = 0;
        lb_buf_reset(ub);
        return lb_http_proxy_finish(p);
    }
    if (any || !lb_timer_is_set(&uc->read.timer)) {
        lb_event_timer_set(&uc->read, p->u->read_timeout);
    }
    lb_event_timer_del(&c->read);
    lb_event_timer_del(&c->write);
    lb_event_timer_del(&uc->write);
    return LB_AGAIN;

failed:
    lb_log_info("*%llu client %s: tunnel with server %s ended: %s",
                (unsigned long long) c->id, c->peer_text, p->pr.server->addr.text,
                strerror(errno));
    r->keep_alive = 0;
    lb_buf_reset(ub);
    return lb_http_proxy_finish(p);
}

/* Arms the timers of what the exchange waits for. */
static void
lb_http_proxy_timers(lb_http_proxy_t *p)
{
    lb_http_request_t  *r = p->r;
    lb_conn_t       *c = r->c, *uc = p->up ? p->up->c : NULL;
    bool             to_client, to_server;

    /* the server does not take the request */
    to_server = !p->resp_head
                && (p->pre_sent < p->pre_total || lb_http_relay_busy(&p->upr));
    if (uc && to_server && !uc->write.ready) {
        if (!lb_timer_is_set(&uc->write.timer)) {
            lb_event_timer_set(&uc->write, p->u->send_timeout);
        }
    } else if (uc) {
        lb_event_timer_del(&uc->write);
    }
    /* the client does not send its body */
    if (!p->resp_head && !p->upr.complete && !c->read.ready) {
        lb_event_timer_set(&c->read, r->conf->client_body_timeout);
    } else {
        lb_event_timer_del(&c->read);
    }
    /* the client does not read its response */
    to_client = (p->cont_want && !p->cont_done)
                || (p->resp_head && (p->out_again || lb_http_relay_busy(&p->downr)));
    if (to_client && !c->write.ready) {
        if (!lb_timer_is_set(&c->write.timer)) {
            lb_event_timer_set(&c->write, r->conf->client_body_timeout);
        }
    } else {
        lb_event_timer_del(&c->write);
    }
    /* the server does not answer: from the end of the request on */
    if (uc && p->up_done && !(p->resp_head && p->downr.complete) && !to_client) {
        lb_event_timer_set(&uc->read, p->u->read_timeout);
    } else if (uc) {
        lb_event_timer_del(&uc->read);
    }
}

static int
lb_http_proxy_run(lb_http_request_t *r)
{
    lb_http_proxy_t  *p = r->content;
    bool              progress;
    int               rc;

    if (p->phase == LB_PROXY_BUFFER) {
        rc = lb_http_proxy_buffer(p);
        if (rc == LB_AGAIN) {
            lb_http_proxy_timers(p);
            return LB_AGAIN;
        }
        if (r->content != p) {
            return rc;                  /* refused or aborted */
        }
        rc = lb_http_proxy_begin(p);
        if (r->content != p) {
            return rc == LB_DONE ? LB_DONE : LB_OK;
        }
    }
    if (p->phase == LB_PROXY_CONNECT) {
        return LB_AGAIN;
    }
    if (p->phase == LB_PROXY_TUNNEL) {
        return lb_http_proxy_tunnel(p);
    }
    do {
        progress = false;
        rc = lb_http_proxy_upload(p, &progress);
        if (rc != LB_AGAIN) {
            return rc;
        }
        rc = lb_http_proxy_download(p, &progress);
        if (rc != LB_AGAIN) {
            return rc;
        }
        if (p->phase != LB_PROXY_EXCHANGE) {
            return LB_OK;
        }
    } while (progress);
    lb_http_proxy_timers(p);
    return LB_AGAIN;
}

static void
lb_http_proxy_up_handler(lb_event_t *ev)
{
    lb_conn_t         *c = ev->data;
    lb_http_upconn_t  *up = c->data;
    lb_http_proxy_t   *p = up->p;
    lb_http_request_t  *r = p->r;

    if (ev->timedout) {
        ev->timedout = 0;
        lb_http_proxy_timeout(p->r, ev);
        return;
    }
    lb_http_run_request(r);
}

static void
lb_http_proxy_timeout(lb_http_request_t *r, lb_event_t *ev)
{
    lb_http_proxy_t  *p = r->content;
    lb_conn_t        *c = ev->data;
    char              buf[256];
    int               rc;

    if (c == r->c) {
        if (p->phase == LB_PROXY_TUNNEL) {
            lb_http_run_request(r);
            return;
        }
        if (ev->write) {
            lb_http_proxy_abort(p, 0, "did not read the response within client_body_timeout");
            return;
        }
        rc = lb_http_proxy_fail(p, 408, "client_body_timeout expired");
    } else if (p->phase == LB_PROXY_TUNNEL) {
        lb_log_info("*%llu client %s: tunnel with server %s idle for read_timeout; closing",
                    (unsigned long long) r->c->id, r->c->peer_text, p->pr.server->addr.text);
        r->keep_alive = 0;
        lb_buf_reset(r->body_in);
        rc = lb_http_proxy_finish(p);
    } else {
        snprintf(buf, sizeof(buf), "server %s of upstream \"%s\": %s expired",
                 p->pr.server->addr.text, p->u->name, ev->write ? "send_timeout" : "read_timeout");
        if (!p->resp_head) {
            lb_upstream_connected(p->pr.server, false);     /* no answer: passive health */
        }
        rc = lb_http_proxy_fail(p, 504, buf);
    }
    if (rc != LB_DONE) {
        lb_http_run_request(r);
    }
}

/* The action of `upstream` routes (installed by lb_http_proxy_init_conf). */
static int
lb_http_proxy_handler(lb_http_request_t *r)
{
    lb_http_conn_t              *hc = lb_http_conn_of(r);   /* for a tunnel */
    const lb_http_route_t       *route = r->route;
    lb_http_msg_t               *msg = r->msg;
    const lb_http_proxy_conf_t  *rcf;
    lb_http_proxy_conf_t        *lcf;
    lb_http_proxy_mem_t         *m;
    lb_http_proxy_t             *p;
    size_t                       out_size, held_size = 0;

    lcf = lb_get_conf(r->conf->listener->confs, lb_http_proxy_module);
    rcf = lb_get_conf(route->confs, lb_http_proxy_module);
    if (msg->body != LB_HTTP_BODY_NONE && rcf->request_buffering) {
        held_size = (size_t) lcf->request_buffer_size;
    }
    out_size = (size_t) lb_max(r->conf->max_header_size, LB_PROXY_IN_SIZE) + LB_PROXY_OUT_EXTRA;
    m = lb_http_proxy_mem_get(out_size + held_size);
    if (m == NULL) {
        lb_log_error(ENOMEM, "*%llu client %s: cannot allocate proxy buffers",
                     (unsigned long long) r->c->id, r->c->peer_text);
        return 500;
    }
    m->out_size = out_size;
    p = &m->p;
    memset(p, 0, sizeof(*p));
    p->hc = hc;
    p->r = r;
    p->conf = lcf;
    p->u = rcf->upstream;
    p->start = lb_current_msec;
    p->held = m->data + out_size;
    p->held_size = held_size;
    lb_timer_init(&p->body_timer, lb_http_proxy_body_expired, p);
    lb_timer_init(&p->head_timer, lb_http_proxy_head_expired, p);
    lb_buf_init(&p->in, m->in, sizeof(m->in));
    r->content = p;
    r->content_run = lb_http_proxy_run;
    r->content_timeout = lb_http_proxy_timeout;
    r->content_cleanup = lb_http_proxy_cleanup;
    r->body_taken = 1;                      /* the frontend drops no body: we read it */
    lb_http_relay_init(&p->upr, msg->body, msg->content_length, LB_HTTP_OUT_AS_IS,
                       r->conf->max_body_size);
    p->whole = p->upr.complete;
    p->streaming = !p->whole && held_size == 0;
    if (msg->expect_continue && msg->body != LB_HTTP_BODY_NONE && msg->version == 11
        && lb_buf_len(r->body_in) == 0)
    {
        /* a buffering proxy asks for the body at once; a streaming one
         * once it is connected, so the client does not send into a void */
        p->cont_want = true;
        p->cont_early = held_size > 0;
    }
    if (!p->whole && p->conf->client_body_max_time) {
        lb_timer_set(&p->body_timer, p->conf->client_body_max_time);
    }
    lb_event_timer_del(&r->c->read);
    p->phase = LB_PROXY_BUFFER;
    return LB_OK;
}
