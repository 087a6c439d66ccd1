/*
 * lb_stream_tcp.c: the tcp listener (SPEC §3.3): accept a client, connect
 * to a server of the listener's upstream (retrying other servers when a
 * connect fails), then relay bytes unchanged both ways with splice(2)
 * through a pipe per direction (or through buffers when an I/O layer must
 * see the bytes, or splice = false), propagating half-closes. With
 * sni_routes the upstream is chosen by the server name in the client's
 * TLS ClientHello, read without terminating TLS; the bytes read are then
 * relayed as they came. The connection to the server, retries, PROXY
 * header and upstream TLS included, is the peer layer's (lb_upstream.h).
 */
#include "lb_core.h"
#include "lb_upstream.h"
#include "lb_tls.h"
#include "lb_tls_hello.h"
#include "lb_stream_log.h"

#include <fcntl.h>

#define LB_TCP_PIPE_SIZE   (256 * 1024)
#define LB_TCP_PIPE_CACHE  64
#define LB_TCP_BUF_SIZE    (16 * 1024)
#define LB_TCP_BUF_CACHE   64

/* A direction starts by copying through a buffer and moves to splice once
 * it has carried this much: for a request of a few kilobytes, recv and
 * send are cheaper than two splices and a pipe, and a short read says the
 * socket is drained where a splice cannot (see lb_tcp_fill). */
#define LB_TCP_SPLICE_AFTER  (64 * 1024)

/* How long a client has to send its whole ClientHello with sni_routes
 * (idle_timeout when that is shorter). */
#define LB_TCP_HELLO_TIMEOUT  10000
#define LB_TCP_HELLO_CACHE    16

/* One entry of sni_routes: name is lower case without a trailing dot; a
 * wildcard "*.example.org" is kept as its suffix ".example.org". */
typedef struct {
    char            *name;
    bool             wildcard;
    size_t           len;
    char            *upstream_name;
    const char      *file;
    int              line;
    lb_upstream_t   *upstream;
} lb_tcp_sni_route_t;

typedef struct {
    lb_upstream_ref_t  upstream_ref;  /* the `upstream` setting */
    lb_upstream_t   *upstream;
    lb_msec_t        idle_timeout;
    int              splice;        /* relay with splice(2) when both sides allow */
    lb_array_t       sni_routes;    /* lb_tcp_sni_route_t; nelts 0: none */
    lb_listener_t   *listener;
} lb_stream_tcp_conf_t;

typedef struct {
    int      fd[2];
    size_t   len;           /* bytes waiting in the pipe */
    size_t   size;          /* its capacity */
} lb_tcp_pipe_t;

/* One direction of a session: bytes from src go into dst through a pipe
 * (splice: no copy through user space) or, when an I/O layer such as TLS
 * must see the bytes, through a buffer. */
typedef struct {
    lb_conn_t       *src;
    lb_conn_t       *dst;
    bool             splice;        /* moving through the pipe now */
    bool             can_splice;    /* both sockets allow it, and the listener */
    lb_tcp_pipe_t    pipe;
    lb_buf_t         buf;
    uint64_t         bytes;
    bool             eof;       /* src has finished sending */
    bool             done;      /* ... and dst has been half-closed */
    bool             first;     /* src finished before the other side did */
    bool             src_failed;    /* reading src failed (a reset) */
    bool             dst_failed;    /* writing to dst failed */
} lb_tcp_dir_t;

typedef struct {
    lb_conn_t              *client;
    lb_conn_t              *peer;
    lb_stream_tcp_conf_t   *conf;
    lb_upstream_t          *upstream;   /* the listener's, or the SNI route's */
    lb_tls_hello_t         *hello;      /* while reading the ClientHello */
    lb_upstream_peer_t      pr;         /* the connection to a server */
    lb_tcp_dir_t            up;         /* client -> server */
    lb_tcp_dir_t            down;       /* server -> client */
    lb_timer_t              idle;
    lb_msec_t               last_active;
    lb_msec_t               start;
    /* the last server tried, for the access log (the server itself may
     * be released by then) */
    char                    server_addr[sizeof(((lb_addr_t *) 0)->text)];
} lb_tcp_session_t;

static int   lb_stream_tcp_set_sni_routes(lb_conf_t *cf, const lb_setting_t *s,
                                          config_setting_t *v, void *conf);
static void *lb_stream_tcp_create_conf(lb_conf_t *cf, unsigned ctx);
static int   lb_stream_tcp_merge_conf(lb_conf_t *cf, unsigned ctx, void *parent, void *conf);
static int   lb_stream_tcp_init_conf(lb_conf_t *cf);
static void  lb_stream_tcp_exit_worker(lb_cycle_t *cycle);
static void  lb_stream_tcp_init_session(lb_conn_t *c);
static void  lb_tcp_connect(lb_tcp_session_t *s);

static const char *const  lb_stream_tcp_protocols[] = { "tcp", "tls", NULL };

static const lb_setting_t  lb_stream_tcp_settings[] = {
    { "upstream", LB_SET_CUSTOM, LB_CTX_LISTENER, NULL, 0, 0,
      offsetof(lb_stream_tcp_conf_t, upstream_ref), NULL, lb_upstream_set_ref,
      LB_SETTING_REQUIRED },
    { "idle_timeout", LB_SET_DURATION, LB_CTX_LISTENER, "10m", 1, 7 * 86400000LL,
      offsetof(lb_stream_tcp_conf_t, idle_timeout), NULL, NULL, 0 },
    { "splice", LB_SET_BOOL, LB_CTX_LISTENER, "true", 0, 0,
      offsetof(lb_stream_tcp_conf_t, splice), NULL, NULL, 0 },
    { "sni_routes", LB_SET_CUSTOM, LB_CTX_LISTENER, NULL, 0, 0, 0, NULL,
      lb_stream_tcp_set_sni_routes, 0 },
    lb_setting_end
};

lb_module_t  lb_stream_tcp_module = {
    "stream_tcp", LB_MODULE_STREAM, lb_stream_tcp_protocols, lb_stream_tcp_settings,
    LB_CTX_LISTENER,
    lb_stream_tcp_create_conf, lb_stream_tcp_merge_conf, lb_stream_tcp_init_conf,
    NULL, NULL, lb_stream_tcp_exit_worker, NULL, 0
};

/* Configuration ---------------------------------------------------------- */

static void *
lb_stream_tcp_create_conf(lb_conf_t *cf, unsigned ctx)
{
    return lb_pcalloc(cf->pool, sizeof(lb_stream_tcp_conf_t));
}

/* A server_name of sni_routes: a host name, or "*." and one. Lower-cases
 * it and drops a trailing dot; NULL when it is not one. */
static char *
lb_tcp_sni_name(lb_conf_t *cf, const char *in, bool *wildcard)
{
    char    *name;
    size_t   i, start, len = strlen(in), label = 0;

    *wildcard = in[0] == '*' && in[1] == '.';
    start = *wildcard ? 2 : 0;
    if (len > start && in[len - 1] == '.') {
        len--;
    }
    if (len <= start || len > 253) {
        return NULL;
    }
    name = lb_palloc(cf->pool, len + 1);
    if (name == NULL) {
        return NULL;
    }
    for (i = 0; i < len; i++) {
        name[i] = (char) (in[i] >= 'A' && in[i] <= 'Z' ? in[i] - 'A' + 'a' : in[i]);
        if (i < start) {
            continue;
        }
        if (name[i] == '.') {
            if (label == 0) {
                return NULL;        /* an empty label */
            }
            label = 0;
        } else if (((name[i] >= 'a' && name[i] <= 'z') || (name[i] >= '0' && name[i] <= '9')
                    || name[i] == '-' || name[i] == '_') && label < 63)
        {
            label++;
        } else {
            return NULL;
        }
    }
    name[len] = '\0';
    return label ? name : NULL;
}

static int
lb_tcp_sni_route_parse(lb_conf_t *cf, lb_array_t *routes, config_setting_t *g, unsigned i)
{
    static const char *const  fields[] = { "server_name", "upstream", NULL };
    lb_tcp_sni_route_t       *r, *other;
    config_setting_t         *f, *name, *up;
    const char               *where;
    unsigned                  k;
    int                       rc = LB_OK;

    if (config_setting_type(g) != CONFIG_TYPE_GROUP) {
        return lb_conf_error(cf, g, "entry #%u of \"sni_routes\" in %s must be a group "
                             "{ server_name = \"...\"; upstream = \"...\"; }, not %s",
                             i + 1, cf->block, lb_conf_type_name(g));
    }
    for (k = 0; k < (unsigned) config_setting_length(g); k++) {
        f = config_setting_get_elem(g, k);
        if (strcmp(config_setting_name(f), fields[0]) == 0
            || strcmp(config_setting_name(f), fields[1]) == 0)
        {
            continue;
        }
        where = lb_psprintf(cf->pool, "entry #%u of \"sni_routes\" in %s", i + 1, cf->block);
        rc = lb_conf_unknown_name(cf, f, where ? where : cf->block, fields);
    }
    name = config_setting_get_member(g, "server_name");
    up = config_setting_get_member(g, "upstream");
    if (name == NULL || up == NULL) {
        return lb_conf_error(cf, g, "entry #%u of \"sni_routes\" in %s needs \"%s\"",
                             i + 1, cf->block, name == NULL ? "server_name" : "upstream");
    }
    if (config_setting_type(name) != CONFIG_TYPE_STRING) {
        return lb_conf_error(cf, name, "\"server_name\" in entry #%u of \"sni_routes\" "
                             "must be a string, not %s", i + 1, lb_conf_type_name(name));
    }
    if (config_setting_type(up) != CONFIG_TYPE_STRING) {
        return lb_conf_error(cf, up, "\"upstream\" in entry #%u of \"sni_routes\" "
                             "must be a string, not %s", i + 1, lb_conf_type_name(up));
    }
    if (rc != LB_OK) {
        return rc;
    }
    r = lb_array_push(routes);
    if (r == NULL) {
        return lb_conf_error(cf, g, "out of memory");
    }
    memset(r, 0, sizeof(*r));
    r->name = lb_tcp_sni_name(cf, config_setting_get_string(name), &r->wildcard);
    if (r->name == NULL) {
        routes->nelts--;
        return lb_conf_error(cf, name, "server_name \"%s\" in %s is neither a host name "
                             "nor \"*.\" and one (like \"a.example.com\" or "
                             "\"*.example.org\")", config_setting_get_string(name), cf->block);
    }
    if (r->wildcard) {
        r->name++;                  /* keep ".example.org" */
    }
    r->len = strlen(r->name);
    r->upstream_name = lb_pstrdup(cf->pool, config_setting_get_string(up));
    r->file = lb_pstrdup(cf->pool, lb_conf_file(cf, up));
    r->line = (int) config_setting_source_line(up);
    if (r->upstream_name == NULL || r->file == NULL) {
        return lb_conf_error(cf, g, "out of memory");
    }
    for (k = 0; k + 1 < routes->nelts; k++) {
        other = &lb_array_at(routes, lb_tcp_sni_route_t, k);
        if (other->wildcard == r->wildcard && strcmp(other->name, r->name) == 0) {
            routes->nelts--;
            return lb_conf_error(cf, name, "server_name \"%s\" appears twice in the "
                                 "sni_routes of %s (entries #%u and #%u)",
                                 config_setting_get_string(name), cf->block, k + 1, i + 1);
        }
    }
    return LB_OK;
}

/* sni_routes = ( { server_name = "a.example.com"; upstream = "a"; }, ... );
 * only on tcp listeners: a tls listener terminates TLS itself. */
static int
lb_stream_tcp_set_sni_routes(lb_conf_t *cf, const lb_setting_t *s, config_setting_t *v,
                             void *conf)
{
    lb_stream_tcp_conf_t  *tcf = conf;
    unsigned               i, n;
    int                    rc = LB_OK;

    if (strcmp(cf->protocol, "tcp") != 0) {
        return lb_conf_error(cf, v, "\"sni_routes\" is for tcp listeners (TLS passthrough); "
                             "%s is a %s listener", cf->block, cf->protocol);
    }
    if (config_setting_type(v) != CONFIG_TYPE_LIST) {
        return lb_conf_error(cf, v, "\"sni_routes\" must be a list ( { server_name = "
                             "\"...\"; upstream = \"...\"; }, ... ), not %s",
                             lb_conf_type_name(v));
    }
    n = (unsigned) config_setting_length(v);
    if (n == 0) {
        return lb_conf_error(cf, v, "\"sni_routes\" of %s is empty", cf->block);
    }
    if (lb_array_init(&tcf->sni_routes, cf->pool, n, sizeof(lb_tcp_sni_route_t)) != LB_OK) {
        return lb_conf_error(cf, v, "out of memory");
    }
    for (i = 0; i < n; i++) {
        if (lb_tcp_sni_route_parse(cf, &tcf->sni_routes, config_setting_get_elem(v, i), i)
            != LB_OK)
        {
            rc = LB_ERROR;
        }
    }
    return rc;
}

static int
lb_stream_tcp_merge_conf(lb_conf_t *cf, unsigned ctx, void *parent, void *conf)
{
    lb_stream_tcp_conf_t  *tcf = conf;

    tcf->listener = cf->listener;
    cf->listener->handler = lb_stream_tcp_init_session;
    return LB_OK;
}

/* Upstreams may be declared after the listeners that use them, so names are
 * resolved once the whole file is read. */
static int
lb_stream_tcp_init_conf(lb_conf_t *cf)
{
    lb_listener_t         *ls;
    lb_stream_tcp_conf_t  *tcf;
    lb_tcp_sni_route_t    *r;
    size_t                 i, k;
    int                    rc = LB_OK;
    char                  *where;

    for (i = 0; i < cf->cycle->listeners.nelts; i++) {
        ls = lb_array_at(&cf->cycle->listeners, lb_listener_t *, i);
        tcf = ls->confs ? lb_get_conf(ls->confs, lb_stream_tcp_module) : NULL;
        if (tcf == NULL || tcf->upstream_ref.name == NULL) {
            continue;
        }
        where = lb_psprintf(cf->pool, "listener \"%s\"", ls->name);
        if (lb_upstream_resolve_for(cf, tcf->upstream_ref.file, tcf->upstream_ref.line,
                                    tcf->upstream_ref.name, where ? where : "listener",
                                    LB_UPSTREAM_CAN_PROXY_PROTOCOL, &tcf->upstream) != LB_OK)
        {
            rc = LB_ERROR;
        }
        for (k = 0; k < tcf->sni_routes.nelts; k++) {
            r = &lb_array_at(&tcf->sni_routes, lb_tcp_sni_route_t, k);
            where = lb_psprintf(cf->pool, "sni_routes entry #%zu of listener \"%s\"",
                                k + 1, ls->name);
            if (lb_upstream_resolve_for(cf, r->file, r->line, r->upstream_name,
                                        where ? where : "sni_routes",
                                        LB_UPSTREAM_CAN_PROXY_PROTOCOL, &r->upstream) != LB_OK)
            {
                rc = LB_ERROR;
            }
        }
    }
    return rc;
}

/* Pipes, cached per worker: creating a pipe costs two descriptors and a
 * system call, and a drained pipe is as good as new. ----------------- */

static lb_tcp_pipe_t  lb_tcp_pipe_cache[LB_TCP_PIPE_CACHE];
static size_t         lb_tcp_pipe_cached;

static int
lb_tcp_pipe_get(lb_tcp_pipe_t *p)
{
    int  size;

    if (lb_tcp_pipe_cached) {
        *p = lb_tcp_pipe_cache[--lb_tcp_pipe_cached];
        return LB_OK;
    }
    if (pipe2(p->fd, O_NONBLOCK | O_CLOEXEC) == -1) {
        return LB_ERROR;
    }
    size = fcntl(p->fd[1], F_SETPIPE_SZ, LB_TCP_PIPE_SIZE);
    if (size == -1) {
        size = fcntl(p->fd[1], F_GETPIPE_SZ);
    }
    p->size = size > 0 ? (size_t) size : 65536;
    p->len = 0;
    return LB_OK;
}

static void
lb_tcp_pipe_put(lb_tcp_pipe_t *p)
{
    if (p->fd[0] == -1) {
        return;
    }
    if (p->len == 0 && lb_tcp_pipe_cached < LB_TCP_PIPE_CACHE) {
        lb_tcp_pipe_cache[lb_tcp_pipe_cached++] = *p;
    } else {
        close(p->fd[0]);
        close(p->fd[1]);
    }
    p->fd[0] = p->fd[1] = -1;
}

/* Copy buffers, cached per worker like the pipes. */
static char   *lb_tcp_buf_cache[LB_TCP_BUF_CACHE];
static size_t  lb_tcp_buf_cached;

static int
lb_tcp_buf_get(lb_buf_t *b)
{
    char  *mem = lb_tcp_buf_cached ? lb_tcp_buf_cache[--lb_tcp_buf_cached]
                                   : malloc(LB_TCP_BUF_SIZE);

    if (mem == NULL) {
        return LB_ERROR;
    }
    lb_buf_init(b, mem, LB_TCP_BUF_SIZE);
    return LB_OK;
}

static void
lb_tcp_buf_put(lb_buf_t *b)
{
    if (b->start == NULL) {
        return;
    }
    if (lb_tcp_buf_cached < LB_TCP_BUF_CACHE) {
        lb_tcp_buf_cache[lb_tcp_buf_cached++] = b->start;
    } else {
        free(b->start);
    }
    b->start = b->end = b->pos = b->last = NULL;
}

/* ClientHello parsers, cached per worker: one is needed only until the
 * server name is known. */
static lb_tls_hello_t  *lb_tcp_hello_cache[LB_TCP_HELLO_CACHE];
static size_t           lb_tcp_hello_cached;

static lb_tls_hello_t *
lb_tcp_hello_get(void)
{
    lb_tls_hello_t  *h = lb_tcp_hello_cached ? lb_tcp_hello_cache[--lb_tcp_hello_cached]
                                             : malloc(sizeof(lb_tls_hello_t));

    if (h) {
        lb_tls_hello_init(h);
    }
    return h;
}

static void
lb_tcp_hello_put(lb_tls_hello_t **h)
{
    if (*h == NULL) {
        return;
    }
    if (lb_tcp_hello_cached < LB_TCP_HELLO_CACHE) {
        lb_tcp_hello_cache[lb_tcp_hello_cached++] = *h;
    } else {
        free(*h);
    }
    *h = NULL;
}

static void
lb_stream_tcp_exit_worker(lb_cycle_t *cycle)
{
    while (lb_tcp_hello_cached) {
        free(lb_tcp_hello_cache[--lb_tcp_hello_cached]);
    }
    while (lb_tcp_buf_cached) {
        free(lb_tcp_buf_cache[--lb_tcp_buf_cached]);
    }
    while (lb_tcp_pipe_cached) {
        lb_tcp_pipe_cached--;
        close(lb_tcp_pipe_cache[lb_tcp_pipe_cached].fd[0]);
        close(lb_tcp_pipe_cache[lb_tcp_pipe_cached].fd[1]);
    }
}

/* Sessions ------------------------------------------------------------- */

/* Ends the session: its line in the access log, then every resource. */
static void
lb_tcp_close(lb_tcp_session_t *s, lb_stream_end_t end)
{
    lb_stream_log_ctx_t  log;

    /* counted at the end: a long stream shows when it closes */
    lb_metric_add(s->client->listener->m_received, s->up.bytes);
    lb_metric_add(s->client->listener->m_sent, s->down.bytes);
    if (lb_stream_log_enabled(s->client->listener)) {
        log.client = (struct sockaddr *) &s->client->peer;
        log.client_len = s->client->peer_len;
        log.upstream_addr = s->server_addr[0] ? s->server_addr : NULL;
        log.bytes_received = s->up.bytes;
        log.bytes_sent = s->down.bytes;
        log.start_msec = s->start;
        log.end = end;
        lb_stream_log_session(s->client->listener, &log);
    }
    lb_timer_del(&s->idle);
    lb_tcp_hello_put(&s->hello);
    lb_tcp_pipe_put(&s->up.pipe);
    lb_tcp_pipe_put(&s->down.pipe);
    lb_tcp_buf_put(&s->up.buf);
    lb_tcp_buf_put(&s->down.buf);
    if (s->pr.u) {
        lb_upstream_peer_free(&s->pr, s->peer ? LB_PEER_SERVED : LB_PEER_UNUSED);
        s->peer = NULL;
    }
    lb_log_debug("*%llu client %s: closed (%s) with server %s: %llu bytes from client, "
                 "%llu bytes from server", (unsigned long long) s->client->id,
                 s->client->peer_text, lb_stream_end_names[end],
                 s->server_addr[0] ? s->server_addr : "(none)",
                 (unsigned long long) s->up.bytes, (unsigned long long) s->down.bytes);
    lb_conn_close(s->client);   /* last: the session lives in its pool */
}

static inline size_t
lb_tcp_held(const lb_tcp_dir_t *d)
{
    return d->splice ? d->pipe.len : lb_buf_len(&d->buf);
}

static inline size_t
lb_tcp_room(const lb_tcp_dir_t *d)
{
    return d->splice ? d->pipe.size - d->pipe.len : lb_buf_room(&d->buf);
}

/* Moves held bytes into dst: returns bytes (> 0), LB_AGAIN or LB_ERROR. */
static ssize_t
lb_tcp_drain(lb_tcp_dir_t *d)
{
    ssize_t  n;

    if (!d->splice) {
        n = lb_conn_send(d->dst, d->buf.pos, lb_buf_len(&d->buf));
        if (n > 0) {
            lb_buf_consume(&d->buf, (size_t) n);
        }
        return n == 0 ? LB_AGAIN : n;
    }
    n = splice(d->pipe.fd[0], NULL, d->dst->fd, NULL, d->pipe.len,
               SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
    if (n > 0) {
        d->pipe.len -= (size_t) n;
        return n;
    }
    if (n == -1 && errno == EAGAIN) {
        d->dst->write.ready = 0;        /* the pipe has data: the socket is full */
        return LB_AGAIN;
    }
    return n == -1 && errno == EINTR ? LB_AGAIN : LB_ERROR;
}

/* Takes bytes from src: returns bytes (> 0), 0 at end of stream, LB_AGAIN
 * or LB_ERROR. */
static ssize_t
lb_tcp_fill(lb_tcp_dir_t *d)
{
    ssize_t  n;

    if (!d->splice) {
        n = lb_conn_recv(d->src, d->buf.last, lb_buf_room(&d->buf));
        if (n > 0) {
            d->buf.last += n;
        }
        return n;
    }
    n = splice(d->src->fd, NULL, d->pipe.fd[1], NULL, d->pipe.size - d->pipe.len,
               SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
    if (n >= 0) {
        d->pipe.len += (size_t) n;
        return n;
    }
    if (errno == EAGAIN) {
        /* ambiguous: an empty socket or a full pipe. Only an empty pipe
         * proves the socket is drained. */
        if (d->pipe.len == 0) {
            d->src->read.ready = 0;
        }
        return LB_AGAIN;
    }
    return errno == EINTR ? LB_AGAIN : LB_ERROR;
}

/* Switches an emptied copy direction to splice; stays with copying when no
 * pipe can be had. */
static void
lb_tcp_to_splice(lb_tcp_dir_t *d)
{
    if (lb_tcp_pipe_get(&d->pipe) != LB_OK) {
        d->can_splice = false;
        return;
    }
    lb_tcp_buf_put(&d->buf);
    d->splice = true;
}

/* Moves what can move in one direction without blocking. Returns true when
 * bytes moved or the direction changed state; sets *failed when a socket
 * failed. */
static bool
lb_tcp_pump(lb_tcp_dir_t *d, const lb_tcp_dir_t *other, bool *failed)
{
    ssize_t  n;
    bool     moved = false, src_dry = false;

    for ( ;; ) {
        if (lb_tcp_held(d) && d->dst->write.ready) {
            n = lb_tcp_drain(d);
            if (n > 0) {
                d->bytes += (uint64_t) n;
                moved = true;
                src_dry = false;
                if (d->can_splice && !d->splice && d->bytes >= LB_TCP_SPLICE_AFTER
                    && lb_buf_len(&d->buf) == 0)
                {
                    lb_tcp_to_splice(d);
                }
            } else if (n == LB_ERROR) {
                d->dst_failed = true;
                *failed = true;
                return moved;
            }
        }

        if (!d->eof && !src_dry && d->src->read.ready && lb_tcp_room(d)) {
            n = lb_tcp_fill(d);
            if (n > 0) {
                moved = true;
                continue;
            }
            if (n == 0) {
                d->eof = true;
                d->first = !other->eof;
                moved = true;
            } else if (n == LB_ERROR) {
                d->src_failed = true;
                *failed = true;
                return moved;
            } else {
                /* LB_AGAIN may leave read.ready set (see lb_tcp_fill):
                 * do not try again before the pipe has drained some */
                src_dry = true;
            }
        }

        if (d->eof && lb_tcp_held(d) == 0 && !d->done) {
            /* when the other direction is over too, the close that follows
             * says the same as this shutdown would */
            if (!other->done && d->dst->io->shutdown(d->dst) != LB_OK) {
                d->dst_failed = true;
                *failed = true;
                return moved;
            }
            d->done = true;
            moved = true;
        }

        if (!(lb_tcp_held(d) && d->dst->write.ready)
            && !(!d->eof && !src_dry && d->src->read.ready && lb_tcp_room(d)))
        {
            return moved;
        }
    }
}

static void
lb_tcp_relay(lb_tcp_session_t *s)
{
    bool  failed = false, moved;

    do {
        moved = lb_tcp_pump(&s->up, &s->down, &failed);
        if (!failed) {
            moved |= lb_tcp_pump(&s->down, &s->up, &failed);
        }
        if (moved) {
            s->last_active = lb_current_msec;
        }
    } while (moved && !failed);

    if (failed) {
        lb_log_info("*%llu client %s: relay with %s ended: %s",
                    (unsigned long long) s->client->id, s->client->peer_text,
                    s->peer->peer_text, strerror(errno));
        /* the side whose socket failed ended it (a reset, most often) */
        lb_tcp_close(s, s->up.src_failed || s->down.dst_failed
                        ? LB_STREAM_END_CLIENT_CLOSED : LB_STREAM_END_SERVER_CLOSED);
        return;
    }
    if (s->up.done && s->down.done) {
        lb_tcp_close(s, s->down.first ? LB_STREAM_END_SERVER_CLOSED
                                      : LB_STREAM_END_CLIENT_CLOSED);
    }
}

static void
lb_tcp_relay_handler(lb_event_t *ev)
{
    lb_conn_t  *c = ev->data;

    lb_tcp_relay(c->data);
}

static void
lb_tcp_idle_expired(lb_timer_t *t)
{
    lb_tcp_session_t  *s = t->data;
    lb_msec_t          idle = lb_current_msec - s->last_active;

    if (idle < s->conf->idle_timeout) {
        lb_timer_set(&s->idle, s->conf->idle_timeout - idle);
        return;
    }
    lb_log_info("*%llu client %s: idle_timeout (%lldms) expired; closing",
                (unsigned long long) s->client->id, s->client->peer_text,
                (long long) s->conf->idle_timeout);
    lb_tcp_close(s, LB_STREAM_END_IDLE_TIMEOUT);
}

static void
lb_tcp_start_relay(lb_tcp_session_t *s)
{
    bool  splice = s->conf->splice && s->client->io->raw && s->peer->io->raw;

    s->up.can_splice = s->down.can_splice = splice;
    if ((s->up.buf.start == NULL && lb_tcp_buf_get(&s->up.buf) != LB_OK)
        || lb_tcp_buf_get(&s->down.buf) != LB_OK)
    {
        lb_log_error_limited(errno, "*%llu client %s: cannot allocate relay buffers; closing",
                     (unsigned long long) s->client->id, s->client->peer_text);
        lb_tcp_close(s, LB_STREAM_END_ERROR);
        return;
    }
    s->up.src = s->client;
    s->up.dst = s->peer;
    s->down.src = s->peer;
    s->down.dst = s->client;
    s->client->read.handler = lb_tcp_relay_handler;
    s->client->write.handler = lb_tcp_relay_handler;
    s->peer->read.handler = lb_tcp_relay_handler;
    s->peer->write.handler = lb_tcp_relay_handler;
    s->peer->data = s;
    s->last_active = lb_current_msec;
    lb_timer_set(&s->idle, s->conf->idle_timeout);
    lb_tcp_relay(s);
}

/* The peer layer's answer: a connection ready for the relay, or none. */
static void
lb_tcp_peer_ready(lb_upstream_peer_t *pr, int rc)
{
    lb_tcp_session_t  *s = pr->data;

    if (pr->last) {
        memcpy(s->server_addr, pr->last->addr.text, sizeof(s->server_addr));
    }
    if (rc != LB_OK) {
        if (pr->gave_up == LB_PEER_LOCAL) {
            lb_tcp_close(s, LB_STREAM_END_ERROR);
        } else if (pr->gave_up == LB_PEER_RETRIES_OUT) {
            lb_log_error_limited(0, "*%llu client %s: giving up after %u failed connects "
                                 "to upstream \"%s\"; closing the client connection",
                                 (unsigned long long) s->client->id, s->client->peer_text,
                                 pr->try.attempts, pr->u->name);
            lb_tcp_close(s, LB_STREAM_END_CONNECT_FAILED);
        } else {
            lb_log_error_limited(0, "*%llu client %s: no usable server in upstream \"%s\" "
                                 "(%s); closing the client connection",
                                 (unsigned long long) s->client->id, s->client->peer_text,
                                 pr->u->name, pr->why);
            lb_tcp_close(s, LB_STREAM_END_CONNECT_FAILED);
        }
        return;
    }
    s->peer = pr->c;
    lb_tcp_start_relay(s);
}

static void
lb_tcp_connect(lb_tcp_session_t *s)
{
    lb_upstream_peer_t  *pr = &s->pr;
    int                  rc;

    lb_upstream_peer_init(pr, s->upstream);
    pr->client = s->client;
    pr->log_id = s->client->id;
    pr->client_text = s->client->peer_text;
    pr->local_action = "closing the client connection";
    pr->ready = lb_tcp_peer_ready;
    pr->data = s;
    lb_upstream_peer_client_addr(pr, (struct sockaddr *) &s->client->peer);
    rc = lb_upstream_peer_connect(pr);
    if (rc != LB_AGAIN) {
        lb_tcp_peer_ready(pr, rc);
    }
}

/* SNI routing ------------------------------------------------------------ */

/* The upstream for server name sni: the route naming it exactly, else the
 * wildcard route with the longest suffix of it ("*.example.org" takes
 * names of one or more labels before ".example.org"), else the
 * listener's upstream. Case and a trailing dot do not matter. */
static lb_upstream_t *
lb_tcp_sni_route(const lb_stream_tcp_conf_t *tcf, lb_str_t sni, char *name, size_t size)
{
    const lb_tcp_sni_route_t  *r, *best = NULL;
    size_t                     i, len = sni.len;

    if (len && sni.data[len - 1] == '.') {
        len--;
    }
    if (len == 0 || len >= size) {
        name[0] = '\0';
        return tcf->upstream;
    }
    for (i = 0; i < len; i++) {
        name[i] = (char) (sni.data[i] >= 'A' && sni.data[i] <= 'Z'
                          ? sni.data[i] - 'A' + 'a' : sni.data[i]);
    }
    name[len] = '\0';
    for (i = 0; i < tcf->sni_routes.nelts; i++) {
        r = &lb_array_at(&tcf->sni_routes, lb_tcp_sni_route_t, i);
        if (!r->wildcard) {
            if (r->len == len && memcmp(r->name, name, len) == 0) {
                return r->upstream;
            }
        } else if (len > r->len && memcmp(r->name, name + len - r->len, r->len) == 0
                   && (best == NULL || r->len > best->len))
        {
            best = r;
        }
    }
    return best ? best->upstream : tcf->upstream;
}

/* For log lines: a client's server name may hold any byte. */
static void
lb_tcp_printable(char *s)
{
    for ( ; *s; s++) {
        if (*s < 0x20 || *s > 0x7e || *s == '"' || *s == '\\') {
            *s = '?';
        }
    }
}

static void
lb_tcp_hello_fail(lb_tcp_session_t *s, const char *why, lb_stream_end_t end)
{
    lb_log_info("*%llu client %s: %s on listener \"%s\" with sni_routes; closing",
                (unsigned long long) s->client->id, s->client->peer_text, why,
                s->conf->listener->name);
    lb_tcp_close(s, end);
}

/* Reads into the client's buffer until its ClientHello names a server
 * (or says it names none). The bytes stay there for the chosen server. */
static void
lb_tcp_hello_read(lb_event_t *ev)
{
    lb_conn_t         *c = ev->data;
    lb_tcp_session_t  *s = c->data;
    lb_buf_t          *b = &s->up.buf;
    lb_str_t           sni;
    const char        *why;
    char               name[256], buf[160];
    ssize_t            n;
    int                rc;

    if (ev->timedout) {
        snprintf(buf, sizeof(buf), "no complete TLS ClientHello within %lldms",
                 (long long) lb_min(LB_TCP_HELLO_TIMEOUT, s->conf->idle_timeout));
        lb_tcp_hello_fail(s, buf, LB_STREAM_END_IDLE_TIMEOUT);
        return;
    }
    for ( ;; ) {
        if (!c->read.ready) {
            return;
        }
        if (lb_buf_room(b) == 0) {
            snprintf(buf, sizeof(buf), "the TLS ClientHello does not fit in %zu bytes",
                     lb_buf_len(b));
            lb_tcp_hello_fail(s, buf, LB_STREAM_END_ERROR);
            return;
        }
        n = lb_conn_recv(c, b->last, lb_buf_room(b));
        if (n == LB_AGAIN) {
            return;
        }
        if (n == LB_ERROR) {
            snprintf(buf, sizeof(buf), "reading the TLS ClientHello failed: %s",
                     strerror(errno));
            lb_tcp_hello_fail(s, buf, LB_STREAM_END_CLIENT_CLOSED);
            return;
        }
        if (n == 0) {
            lb_tcp_hello_fail(s, lb_buf_len(b) ? "connection closed in the middle of the "
                                                 "TLS ClientHello"
                                               : "connection closed before a TLS ClientHello",
                              LB_STREAM_END_CLIENT_CLOSED);
            return;
        }
        b->last += n;
        rc = lb_tls_hello_parse(s->hello, (const uint8_t *) b->pos, lb_buf_len(b), &sni, &why);
        if (rc == LB_AGAIN) {
            continue;
        }
        if (rc == LB_ERROR) {
            snprintf(buf, sizeof(buf), "not a TLS ClientHello (%s)", why);
            lb_tcp_hello_fail(s, buf, LB_STREAM_END_ERROR);
            return;
        }
        break;
    }

    if (rc == LB_OK) {
        s->upstream = lb_tcp_sni_route(s->conf, sni, name, sizeof(name));
        lb_tcp_printable(name);
        lb_log_debug("*%llu client %s: server name \"%s\" goes to upstream \"%s\"",
                     (unsigned long long) c->id, c->peer_text, name, s->upstream->name);
    } else {
        lb_log_debug("*%llu client %s: no server name in the ClientHello; upstream \"%s\"",
                     (unsigned long long) c->id, c->peer_text, s->upstream->name);
    }
    lb_tcp_hello_put(&s->hello);
    lb_event_timer_del(&c->read);
    c->read.handler = NULL;
    lb_tcp_connect(s);
}

static void
lb_tcp_hello_start(lb_tcp_session_t *s)
{
    lb_conn_t  *c = s->client;

    s->hello = lb_tcp_hello_get();
    if (s->hello == NULL || lb_tcp_buf_get(&s->up.buf) != LB_OK) {
        lb_log_error_limited(ENOMEM, "*%llu client %s: cannot allocate a ClientHello buffer; "
                             "closing",
                     (unsigned long long) c->id, c->peer_text);
        lb_tcp_close(s, LB_STREAM_END_ERROR);
        return;
    }
    c->read.handler = lb_tcp_hello_read;
    lb_event_timer_set(&c->read, lb_min(LB_TCP_HELLO_TIMEOUT, s->conf->idle_timeout));
    lb_tcp_hello_read(&c->read);
}

static void
lb_stream_tcp_init_session(lb_conn_t *c)
{
    lb_listener_t     *ls = c->listener;
    lb_tcp_session_t  *s;
    lb_pool_t         *pool;

    if ((ls->allow || ls->deny) && lb_listener_denies(ls, (struct sockaddr *) &c->peer)) {
        lb_log_info("*%llu client %s: denied by allow/deny of listener \"%s\"; closing",
                    (unsigned long long) c->id, c->peer_text, ls->name);
        if (lb_stream_log_enabled(ls)) {
            lb_stream_log_ctx_t  log = {
                .client = (struct sockaddr *) &c->peer, .client_len = c->peer_len,
                .start_msec = lb_current_msec, .end = LB_STREAM_END_DENIED
            };

            lb_stream_log_session(ls, &log);
        }
        lb_conn_close(c);
        return;
    }

    pool = lb_conn_pool(c);
    s = pool ? lb_pcalloc(pool, sizeof(*s)) : NULL;
    if (s == NULL) {
        lb_log_error_limited(ENOMEM, "*%llu client %s: cannot allocate a session",
                             (unsigned long long) c->id, c->peer_text);
        lb_conn_close(c);
        return;
    }
    s->client = c;
    s->start = lb_current_msec;
    s->conf = lb_get_conf(ls->confs, lb_stream_tcp_module);
    s->upstream = s->conf->upstream;
    s->up.pipe.fd[0] = s->up.pipe.fd[1] = -1;
    s->down.pipe.fd[0] = s->down.pipe.fd[1] = -1;
    lb_timer_init(&s->idle, lb_tcp_idle_expired, s);
    c->data = s;

    if (lb_loop_add_conn(c, false) != LB_OK) {
        lb_log_error_limited(errno, "*%llu client %s: cannot watch the connection",
                             (unsigned long long) c->id, c->peer_text);
        lb_conn_close(c);
        return;
    }
    if (s->conf->sni_routes.nelts) {
        lb_tcp_hello_start(s);
        return;
    }
    lb_tcp_connect(s);
}
