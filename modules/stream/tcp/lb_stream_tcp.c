/*
 * lb_stream_tcp.c: the tcp listener (SPEC §3.3): accept a client, connect
 * to a server of the listener's upstream (retrying other servers when a
 * connect fails), then relay bytes unchanged both ways with splice(2)
 * through a pipe per direction (or through buffers when an I/O layer must
 * see the bytes, or splice = false), propagating half-closes.
 */
#include "lb_core.h"
#include "lb_upstream.h"

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

typedef struct {
    char            *upstream_name;
    const char      *upstream_file;
    int              upstream_line;
    lb_upstream_t   *upstream;
    lb_msec_t        idle_timeout;
    int              splice;        /* relay with splice(2) when both sides allow */
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
} lb_tcp_dir_t;

typedef struct {
    lb_conn_t              *client;
    lb_conn_t              *peer;
    lb_stream_tcp_conf_t   *conf;
    lb_upstream_server_t   *server;
    lb_upstream_try_t       try;
    lb_tcp_dir_t            up;         /* client -> server */
    lb_tcp_dir_t            down;       /* server -> client */
    lb_timer_t              idle;
    lb_msec_t               last_active;
} lb_tcp_session_t;

static int   lb_stream_tcp_set_upstream(lb_conf_t *cf, const lb_setting_t *s,
                                        config_setting_t *v, void *conf);
static void *lb_stream_tcp_create_conf(lb_conf_t *cf, unsigned ctx);
static int   lb_stream_tcp_merge_conf(lb_conf_t *cf, unsigned ctx, void *parent, void *conf);
static int   lb_stream_tcp_init_conf(lb_conf_t *cf);
static void  lb_stream_tcp_exit_worker(lb_cycle_t *cycle);
static void  lb_stream_tcp_init_session(lb_conn_t *c);
static void  lb_tcp_connect(lb_tcp_session_t *s);

static const char *const  lb_stream_tcp_protocols[] = { "tcp", NULL };

static const lb_setting_t  lb_stream_tcp_settings[] = {
    { "upstream", LB_SET_CUSTOM, LB_CTX_LISTENER, NULL, 0, 0, 0, NULL,
      lb_stream_tcp_set_upstream, LB_SETTING_REQUIRED },
    { "idle_timeout", LB_SET_DURATION, LB_CTX_LISTENER, "10m", 1, 7 * 86400000LL,
      offsetof(lb_stream_tcp_conf_t, idle_timeout), NULL, NULL, 0 },
    { "splice", LB_SET_BOOL, LB_CTX_LISTENER, "true", 0, 0,
      offsetof(lb_stream_tcp_conf_t, splice), NULL, NULL, 0 },
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

static int
lb_stream_tcp_set_upstream(lb_conf_t *cf, const lb_setting_t *s, config_setting_t *v, void *conf)
{
    lb_stream_tcp_conf_t  *tcf = conf;
    const char            *name;

    if (lb_conf_get_string(cf, v, &name) != LB_OK) {
        return LB_ERROR;
    }
    tcf->upstream_name = lb_pstrdup(cf->pool, name);
    tcf->upstream_file = lb_pstrdup(cf->pool, lb_conf_file(cf, v));
    tcf->upstream_line = (int) config_setting_source_line(v);
    return tcf->upstream_name && tcf->upstream_file ? LB_OK : LB_ERROR;
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
    size_t                 i;
    int                    rc = LB_OK;
    char                  *where;

    for (i = 0; i < cf->cycle->listeners.nelts; i++) {
        ls = lb_array_at(&cf->cycle->listeners, lb_listener_t *, i);
        tcf = ls->confs ? lb_get_conf(ls->confs, lb_stream_tcp_module) : NULL;
        if (tcf == NULL || tcf->upstream_name == NULL) {
            continue;
        }
        where = lb_psprintf(cf->pool, "listener \"%s\"", ls->name);
        if (lb_upstream_resolve(cf, tcf->upstream_file, tcf->upstream_line,
                                tcf->upstream_name, where ? where : "listener",
                                &tcf->upstream) != LB_OK)
        {
            rc = LB_ERROR;
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

static void
lb_stream_tcp_exit_worker(lb_cycle_t *cycle)
{
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

static void
lb_tcp_close(lb_tcp_session_t *s)
{
    if (s->server) {
        lb_upstream_release(s->server);
        s->server = NULL;
    }
    lb_timer_del(&s->idle);
    lb_tcp_pipe_put(&s->up.pipe);
    lb_tcp_pipe_put(&s->down.pipe);
    lb_tcp_buf_put(&s->up.buf);
    lb_tcp_buf_put(&s->down.buf);
    if (s->peer) {
        lb_conn_close(s->peer);
        s->peer = NULL;
    }
    lb_log_debug("*%llu closed: %llu bytes from client, %llu bytes from server",
                 (unsigned long long) s->client->id, (unsigned long long) s->up.bytes,
                 (unsigned long long) s->down.bytes);
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
                moved = true;
            } else if (n == LB_ERROR) {
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
        lb_tcp_close(s);
        return;
    }
    if (s->up.done && s->down.done) {
        lb_tcp_close(s);
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
    lb_tcp_close(s);
}

static void
lb_tcp_start_relay(lb_tcp_session_t *s)
{
    bool  splice = s->conf->splice && s->client->io->raw && s->peer->io->raw;

    s->up.can_splice = s->down.can_splice = splice;
    if (lb_tcp_buf_get(&s->up.buf) != LB_OK || lb_tcp_buf_get(&s->down.buf) != LB_OK) {
        lb_log_error(errno, "*%llu client %s: cannot allocate relay buffers; closing",
                     (unsigned long long) s->client->id, s->client->peer_text);
        lb_tcp_close(s);
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

static void
lb_tcp_connect_failed(lb_tcp_session_t *s, int err, const char *what)
{
    lb_log_warn(err, "*%llu client %s: %s %s in upstream \"%s\"%s",
                (unsigned long long) s->client->id, s->client->peer_text, what,
                s->server->addr.text, s->conf->upstream->name,
                (int64_t) s->try.attempts <= s->conf->upstream->retries
                    ? "; trying another server" : "");
    lb_upstream_connected(s->server, false);
    lb_upstream_release(s->server);
    s->server = NULL;
    if (s->peer) {
        lb_conn_close(s->peer);
        s->peer = NULL;
    }
    lb_tcp_connect(s);
}

static void
lb_tcp_connected(lb_event_t *ev)
{
    lb_conn_t         *peer = ev->data;
    lb_tcp_session_t  *s = peer->data;

    if (ev->timedout) {
        lb_tcp_connect_failed(s, ETIMEDOUT, "connect_timeout expired for");
        return;
    }
    if (lb_conn_connect_result(peer) != LB_OK) {
        lb_tcp_connect_failed(s, errno, "connect() failed to");
        return;
    }
    lb_event_timer_del(&peer->write);
    lb_upstream_connected(s->server, true);
    lb_tcp_start_relay(s);
}

static void
lb_tcp_connect(lb_tcp_session_t *s)
{
    lb_upstream_t  *u = s->conf->upstream;
    const char     *why = "";
    int             rc;

    for ( ;; ) {
        if ((int64_t) s->try.attempts > u->retries) {
            lb_log_error(0, "*%llu client %s: giving up after %u failed connects to "
                         "upstream \"%s\"; closing the client connection",
                         (unsigned long long) s->client->id, s->client->peer_text,
                         s->try.attempts, u->name);
            lb_tcp_close(s);
            return;
        }
        s->server = lb_upstream_pick(u, &s->try, &why);
        if (s->server == NULL) {
            lb_log_error(0, "*%llu client %s: no usable server in upstream \"%s\" (%s); "
                         "closing the client connection",
                         (unsigned long long) s->client->id, s->client->peer_text,
                         u->name, why);
            lb_tcp_close(s);
            return;
        }

        rc = lb_conn_connect(&s->server->addr, &s->peer);
        if (rc == LB_ERROR) {
            s->peer = NULL;
            lb_tcp_connect_failed(s, errno, "connect() failed to");
            return;
        }
        s->peer->data = s;
        if (rc == LB_OK) {
            lb_upstream_connected(s->server, true);
            lb_tcp_start_relay(s);
            return;
        }
        s->peer->write.handler = lb_tcp_connected;
        lb_event_timer_set(&s->peer->write, u->connect_timeout);
        return;
    }
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
        lb_conn_close(c);
        return;
    }

    pool = lb_conn_pool(c);
    s = pool ? lb_pcalloc(pool, sizeof(*s)) : NULL;
    if (s == NULL) {
        lb_log_error(ENOMEM, "*%llu client %s: cannot allocate a session",
                     (unsigned long long) c->id, c->peer_text);
        lb_conn_close(c);
        return;
    }
    s->client = c;
    s->conf = lb_get_conf(ls->confs, lb_stream_tcp_module);
    s->up.pipe.fd[0] = s->up.pipe.fd[1] = -1;
    s->down.pipe.fd[0] = s->down.pipe.fd[1] = -1;
    lb_timer_init(&s->idle, lb_tcp_idle_expired, s);
    c->data = s;

    if (lb_loop_add_conn(c, false) != LB_OK) {
        lb_log_error(errno, "*%llu client %s: cannot watch the connection",
                     (unsigned long long) c->id, c->peer_text);
        lb_conn_close(c);
        return;
    }
    lb_tcp_connect(s);
}
