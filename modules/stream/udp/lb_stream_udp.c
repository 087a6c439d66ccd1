/*
 * lb_stream_udp.c: the udp listener (SPEC §3.3). Each client address gets a
 * session bound to one server of the listener's upstream: a connected UDP
 * socket to that server, so the kernel sorts the replies by session, and
 * each reply goes back to the client from the listening socket. Datagrams
 * are relayed one for one, never merged or split.
 */
#include "lb_core.h"
#include "lb_ipcount.h"
#include "lb_upstream.h"
#include "lb_stream_log.h"
#include "lb_hash.h"

#include <netinet/in.h>
#include <sys/mman.h>
#include <sys/random.h>

#define LB_UDP_BATCH        32          /* datagrams per recvmmsg/sendmmsg */
#define LB_UDP_DGRAM_MAX    65536       /* holds the largest UDP payload */
#define LB_UDP_CHUNK        256         /* sessions allocated at once */
#define LB_UDP_BUCKETS_MIN  256

typedef struct lb_udp_worker_s   lb_udp_worker_t;
typedef struct lb_udp_session_s  lb_udp_session_t;

typedef struct {
    lb_upstream_ref_t  upstream_ref;  /* the `upstream` setting */
    lb_upstream_t     *upstream;
    lb_msec_t          session_timeout;
    int64_t            responses;       /* replies per client datagram; 0: any */
    int64_t            max_sessions;    /* per worker */
    lb_listener_t     *listener;
    lb_udp_worker_t   *worker;          /* in a worker: its sessions */
    uint32_t           m_in, m_out;     /* metrics: datagrams from and to clients */
} lb_stream_udp_conf_t;

static const lb_metric_family_t  lb_udp_datagrams = {
    "lbd_udp_datagrams_total", "Datagrams received from and sent to clients, by udp "
    "listener.", LB_METRIC_COUNTER, NULL, 0, 0
};

typedef union {
    struct sockaddr      sa;
    struct sockaddr_in   sin;
    struct sockaddr_in6  sin6;
} lb_udp_addr_t;

struct lb_udp_session_s {
    lb_udp_session_t      *next;        /* hash chain, or the free list */
    uint64_t               hash;
    lb_udp_worker_t       *worker;
    lb_conn_t             *lc;          /* the listening socket the client wrote to */
    uint64_t               lc_id;       /* lc->id then: lc may close and be reused */
    lb_conn_t             *peer;        /* connected to the server */
    lb_upstream_server_t  *server;
    lb_udp_addr_t          client;
    socklen_t              client_len;
    lb_timer_t             timer;
    lb_msec_t              last_active;
    uint64_t               received;    /* datagrams from the client */
    uint64_t               replies;     /* datagrams from the server */
    uint64_t               bytes_received;  /* payload bytes from the client */
    uint64_t               bytes_sent;      /* ... sent back to it */
    lb_msec_t              start;
    bool                   answered;    /* the server has replied once */
    bool                   trial;       /* its server was failed: passive health's trial */
};

typedef struct lb_udp_chunk_s {
    struct lb_udp_chunk_s  *next;
    lb_udp_session_t        sessions[LB_UDP_CHUNK];
} lb_udp_chunk_t;

/* One listener's sessions in this worker: a hash table keyed by client
 * address and listening socket, and a free list fed by chunks. */
struct lb_udp_worker_s {
    lb_stream_udp_conf_t  *conf;
    lb_udp_session_t     **buckets;
    size_t                 mask;        /* buckets - 1 */
    size_t                 nsessions;
    lb_udp_session_t      *free;
    lb_udp_chunk_t        *chunks;
    size_t                 allocated;   /* sessions in chunks */
    /* lines that come once per datagram while their cause lasts, limited
     * per listener (lb_log_write_limited) */
    lb_log_ratelimit_t     full_log;
    lb_log_ratelimit_t     fail_log;
    lb_log_ratelimit_t     local_log;
    lb_udp_worker_t       *next;
};

/* Buffers for one batch of datagrams, shared by every udp listener of the
 * worker (handlers never nest). Mapped lazily: a small datagram touches one
 * page of its slot. */
typedef struct {
    char            *mem;
    struct mmsghdr   msgs[LB_UDP_BATCH];
    struct iovec     iov[LB_UDP_BATCH];
    lb_udp_addr_t    names[LB_UDP_BATCH];
} lb_udp_batch_t;

static void *lb_stream_udp_create_conf(lb_conf_t *cf, unsigned ctx);
static int   lb_stream_udp_merge_conf(lb_conf_t *cf, unsigned ctx, void *parent, void *conf);
static int   lb_stream_udp_init_conf(lb_conf_t *cf);
static int   lb_stream_udp_init_worker(lb_cycle_t *cycle);
static void  lb_stream_udp_exit_worker(lb_cycle_t *cycle);
static void  lb_stream_udp_stop_worker(lb_cycle_t *cycle);
static void  lb_stream_udp_start(lb_conn_t *lc);

static const char *const  lb_stream_udp_protocols[] = { "udp", NULL };

static const lb_setting_t  lb_stream_udp_settings[] = {
    { "upstream", LB_SET_CUSTOM, LB_CTX_LISTENER, NULL, 0, 0,
      offsetof(lb_stream_udp_conf_t, upstream_ref), NULL, lb_upstream_set_ref,
      LB_SETTING_REQUIRED },
    { "session_timeout", LB_SET_DURATION, LB_CTX_LISTENER, "30s", 1, 86400000LL,
      offsetof(lb_stream_udp_conf_t, session_timeout), NULL, NULL, 0 },
    { "responses", LB_SET_INT, LB_CTX_LISTENER, "0", 0, 1000000,
      offsetof(lb_stream_udp_conf_t, responses), NULL, NULL, 0 },
    { "max_sessions", LB_SET_INT, LB_CTX_LISTENER, "65536", 1, 16777216,
      offsetof(lb_stream_udp_conf_t, max_sessions), NULL, NULL, 0 },
    lb_setting_end
};

lb_module_t  lb_stream_udp_module = {
    "stream_udp", LB_MODULE_STREAM, lb_stream_udp_protocols, lb_stream_udp_settings,
    LB_CTX_LISTENER,
    lb_stream_udp_create_conf, lb_stream_udp_merge_conf, lb_stream_udp_init_conf,
    NULL, lb_stream_udp_init_worker, lb_stream_udp_exit_worker, NULL, 0, NULL,
    LB_MODULE_DGRAM, lb_stream_udp_stop_worker
};

static lb_udp_batch_t   lb_udp_batch;
static lb_udp_worker_t *lb_udp_workers;
static uint64_t         lb_udp_seed;

/* Configuration ---------------------------------------------------------- */

static void *
lb_stream_udp_create_conf(lb_conf_t *cf, unsigned ctx)
{
    return lb_pcalloc(cf->pool, sizeof(lb_stream_udp_conf_t));
}

static int
lb_stream_udp_metrics(lb_conf_t *cf, lb_stream_udp_conf_t *ucf, lb_listener_t *ls)
{
    char  name[256], labels[320];

    lb_metric_label(name, sizeof(name), ls->name);
    snprintf(labels, sizeof(labels), "listener=\"%s\",direction=\"received\"", name);
    if (lb_metric_declare(cf, &ucf->m_in, &lb_udp_datagrams, labels) != LB_OK) {
        return LB_ERROR;
    }
    snprintf(labels, sizeof(labels), "listener=\"%s\",direction=\"sent\"", name);
    return lb_metric_declare(cf, &ucf->m_out, &lb_udp_datagrams, labels);
}

static int
lb_stream_udp_merge_conf(lb_conf_t *cf, unsigned ctx, void *parent, void *conf)
{
    lb_stream_udp_conf_t  *ucf = conf;
    lb_listener_t         *ls = cf->listener;
    lb_addr_t             *a;
    size_t                 i;

    for (i = 0; i < ls->addrs.nelts; i++) {
        a = &lb_array_at(&ls->addrs, lb_addr_t, i);
        if (a->u.sa.sa_family == AF_UNIX) {
            return lb_conf_error(cf, config_setting_get_member(cf->group, "listen"),
                                 "listener \"%s\": a udp listener needs an IP address, "
                                 "not %s", ls->name, a->text);
        }
    }
    ucf->listener = ls;
    ls->handler = lb_stream_udp_start;
    return lb_stream_udp_metrics(cf, ucf, ls);
}

/* Upstreams may be declared after the listeners that use them. */
static int
lb_stream_udp_init_conf(lb_conf_t *cf)
{
    lb_listener_t         *ls;
    lb_stream_udp_conf_t  *ucf;
    size_t                 i;
    int                    rc = LB_OK;
    char                  *where;

    for (i = 0; i < cf->cycle->listeners.nelts; i++) {
        ls = lb_array_at(&cf->cycle->listeners, lb_listener_t *, i);
        ucf = ls->confs ? lb_get_conf(ls->confs, lb_stream_udp_module) : NULL;
        if (ucf == NULL || ucf->upstream_ref.name == NULL) {
            continue;
        }
        where = lb_psprintf(cf->pool, "listener \"%s\"", ls->name);
        if (lb_upstream_resolve(cf, ucf->upstream_ref.file, ucf->upstream_ref.line,
                                ucf->upstream_ref.name, where ? where : "listener",
                                &ucf->upstream) != LB_OK)
        {
            rc = LB_ERROR;
        }
    }
    return rc;
}

/* Worker state ------------------------------------------------------------ */

static lb_udp_worker_t *
lb_udp_worker_create(lb_stream_udp_conf_t *ucf)
{
    lb_udp_worker_t  *w = calloc(1, sizeof(*w));

    if (w == NULL) {
        return NULL;
    }
    w->buckets = calloc(LB_UDP_BUCKETS_MIN, sizeof(lb_udp_session_t *));
    if (w->buckets == NULL) {
        free(w);
        return NULL;
    }
    w->mask = LB_UDP_BUCKETS_MIN - 1;
    w->conf = ucf;
    w->next = lb_udp_workers;
    lb_udp_workers = w;
    return w;
}

static int
lb_udp_batch_init(void)
{
    size_t  i, size = (size_t) LB_UDP_BATCH * LB_UDP_DGRAM_MAX;
    void   *mem;

    if (lb_udp_batch.mem) {
        return LB_OK;
    }
    mem = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (mem == MAP_FAILED) {
        return LB_ERROR;
    }
    lb_udp_batch.mem = mem;
    for (i = 0; i < LB_UDP_BATCH; i++) {
        lb_udp_batch.iov[i].iov_base = lb_udp_batch.mem + i * LB_UDP_DGRAM_MAX;
        lb_udp_batch.msgs[i].msg_hdr.msg_iov = &lb_udp_batch.iov[i];
        lb_udp_batch.msgs[i].msg_hdr.msg_iovlen = 1;
    }
    return LB_OK;
}

static int
lb_stream_udp_init_worker(lb_cycle_t *cycle)
{
    lb_listener_t         *ls;
    lb_stream_udp_conf_t  *ucf;
    size_t                 i;

    for (i = 0; i < cycle->listeners.nelts; i++) {
        ls = lb_array_at(&cycle->listeners, lb_listener_t *, i);
        if (ls->handler != lb_stream_udp_start) {
            continue;
        }
        ucf = lb_get_conf(ls->confs, lb_stream_udp_module);
        ucf->worker = lb_udp_worker_create(ucf);
        if (ucf->worker == NULL || lb_udp_batch_init() != LB_OK) {
            lb_log_error(errno, "listener \"%s\": cannot allocate the udp session table",
                         ls->name);
            return LB_ERROR;
        }
    }
    if (lb_udp_workers && getrandom(&lb_udp_seed, sizeof(lb_udp_seed), 0)
                          != (ssize_t) sizeof(lb_udp_seed))
    {
        /* no getrandom: distinct per process still, if guessable */
        lb_udp_seed = (uint64_t) getpid() * 0x9e3779b97f4a7c15ULL ^ (uint64_t) lb_current_msec;
    }
    return LB_OK;
}

static void lb_udp_close_all(lb_udp_worker_t *w, lb_stream_end_t end);

/* Sessions still open (a fast stop) are closed, so that the servers'
 * connection counts in shared memory are given back. */
static void
lb_stream_udp_exit_worker(lb_cycle_t *cycle)
{
    lb_udp_worker_t  *w;
    lb_udp_chunk_t   *ch;

    while (lb_udp_workers) {
        w = lb_udp_workers;
        lb_udp_workers = w->next;
        lb_udp_close_all(w, LB_STREAM_END_SHUTDOWN);
        while (w->chunks) {
            ch = w->chunks;
            w->chunks = ch->next;
            free(ch);
        }
        free(w->buckets);
        w->conf->worker = NULL;
        free(w);
    }
    if (lb_udp_batch.mem) {
        munmap(lb_udp_batch.mem, (size_t) LB_UDP_BATCH * LB_UDP_DGRAM_MAX);
        lb_udp_batch.mem = NULL;
    }
}

/* The session table --------------------------------------------------------- */

/* Keyed by a secret per-process seed, so that a sender cannot choose
 * addresses that pile up in one bucket. */
static uint64_t
lb_udp_hash(const lb_conn_t *lc, const lb_udp_addr_t *a)
{
    uint64_t  h = lb_udp_seed ^ (uint64_t) (uintptr_t) lc, w[2];

    if (a->sa.sa_family == AF_INET) {
        return lb_hash_mix64(h ^ ((uint64_t) a->sin.sin_addr.s_addr << 16 | a->sin.sin_port));
    }
    memcpy(w, &a->sin6.sin6_addr, sizeof(w));
    h = lb_hash_mix64(h ^ w[0]);
    return lb_hash_mix64(h ^ w[1] ^ ((uint64_t) a->sin6.sin6_port << 32)
                      ^ a->sin6.sin6_scope_id);
}

static bool
lb_udp_addr_equal(const lb_udp_addr_t *a, const lb_udp_addr_t *b)
{
    if (a->sa.sa_family != b->sa.sa_family) {
        return false;
    }
    if (a->sa.sa_family == AF_INET) {
        return a->sin.sin_port == b->sin.sin_port
               && a->sin.sin_addr.s_addr == b->sin.sin_addr.s_addr;
    }
    return a->sin6.sin6_port == b->sin6.sin6_port
           && a->sin6.sin6_scope_id == b->sin6.sin6_scope_id
           && memcmp(&a->sin6.sin6_addr, &b->sin6.sin6_addr, sizeof(struct in6_addr)) == 0;
}

static lb_udp_session_t *
lb_udp_find(lb_udp_worker_t *w, const lb_conn_t *lc, const lb_udp_addr_t *a, uint64_t hash)
{
    lb_udp_session_t  *s;

    for (s = w->buckets[hash & w->mask]; s; s = s->next) {
        if (s->hash == hash && s->lc == lc && lb_udp_addr_equal(&s->client, a)) {
            return s;
        }
    }
    return NULL;
}

/* Doubles the table up to max_sessions buckets; a table that cannot grow
 * keeps working with longer chains. */
static void
lb_udp_grow(lb_udp_worker_t *w)
{
    lb_udp_session_t  **nb, *s, *next;
    size_t              i, n = (w->mask + 1) * 2;

    if (n > (size_t) w->conf->max_sessions * 2) {
        return;
    }
    nb = calloc(n, sizeof(*nb));
    if (nb == NULL) {
        return;
    }
    for (i = 0; i <= w->mask; i++) {
        for (s = w->buckets[i]; s; s = next) {
            next = s->next;
            s->next = nb[s->hash & (n - 1)];
            nb[s->hash & (n - 1)] = s;
        }
    }
    free(w->buckets);
    w->buckets = nb;
    w->mask = n - 1;
}

static lb_udp_session_t *
lb_udp_session_alloc(lb_udp_worker_t *w)
{
    lb_udp_chunk_t    *ch;
    lb_udp_session_t  *s;
    size_t             i;

    if (w->free == NULL) {
        ch = malloc(sizeof(*ch));
        if (ch == NULL) {
            return NULL;
        }
        ch->next = w->chunks;
        w->chunks = ch;
        w->allocated += LB_UDP_CHUNK;
        for (i = LB_UDP_CHUNK; i-- > 0; ) {
            ch->sessions[i].next = w->free;
            w->free = &ch->sessions[i];
        }
    }
    s = w->free;
    w->free = s->next;
    return s;
}

/* Sessions ------------------------------------------------------------------ */

static const char *
lb_udp_client_text(const lb_udp_session_t *s, char *buf, size_t size)
{
    lb_addr_format(&s->client.sa, s->client_len, buf, size);
    return buf;
}

/* Ends a session: its line in the access log, then its socket closes, its
 * server is released, its slot goes back to the free list. */
static void
lb_udp_session_close(lb_udp_session_t *s, lb_stream_end_t end)
{
    lb_udp_worker_t      *w = s->worker;
    lb_udp_session_t    **pp;
    lb_stream_log_ctx_t   log;
    char                  text[LB_ADDR_TEXT_LEN];

    if (lb_stream_log_enabled(w->conf->listener)) {
        log.client = &s->client.sa;
        log.client_len = s->client_len;
        log.upstream_addr = s->server->addr.text;
        log.bytes_received = s->bytes_received;
        log.bytes_sent = s->bytes_sent;
        log.start_msec = s->start;
        log.end = end;
        lb_stream_log_session(w->conf->listener, &log);
    }

    for (pp = &w->buckets[s->hash & w->mask]; *pp; pp = &(*pp)->next) {
        if (*pp == s) {
            *pp = s->next;
            break;
        }
    }
    w->nsessions--;
    lb_timer_del(&s->timer);
    lb_log_debug("*%llu client %s: session with server %s ended (%s): %llu datagrams "
                 "from client, %llu from server", (unsigned long long) s->peer->id,
                 lb_udp_client_text(s, text, sizeof(text)), s->server->addr.text,
                 lb_stream_end_names[end], (unsigned long long) s->received,
                 (unsigned long long) s->replies);
    lb_upstream_release(s->server, s->answered ? LB_PEER_SERVED : LB_PEER_UNUSED);
    lb_conn_close(s->peer);
    s->peer = NULL;
    s->server = NULL;
    s->next = w->free;
    w->free = s;
}

/* The listening socket a session answers on is gone (the worker stopped
 * accepting): its replies have nowhere to go. */
static inline bool
lb_udp_orphaned(const lb_udp_session_t *s)
{
    return s->lc->id != s->lc_id || s->lc->fd == -1;
}

/* A session reached its session_timeout: what its silence says of the
 * server. With responses > 0, a reply still owed means a datagram went
 * unanswered for a whole session_timeout: a failure. With responses = 0
 * silence proves nothing either way, except that a failed server's trial
 * session that was not refused (ICMP) is taken as a success: nothing else
 * could ever bring such a server back. */
static void
lb_udp_session_judge(lb_udp_session_t *s)
{
    int64_t  responses = s->worker->conf->responses;

    if (responses && s->replies < s->received * (uint64_t) responses) {
        lb_log_debug("*%llu session_timeout with replies owed: counted as a failure of "
                     "server %s", (unsigned long long) s->peer->id, s->server->addr.text);
        lb_upstream_connected(s->server, false);
    } else if (!responses && s->trial && !s->answered) {
        lb_upstream_connected(s->server, true);
    }
}

static void
lb_udp_session_expired(lb_timer_t *t)
{
    lb_udp_session_t  *s = t->data;
    lb_msec_t          idle = lb_current_msec - s->last_active;
    lb_msec_t          timeout = s->worker->conf->session_timeout;

    if (lb_udp_orphaned(s)) {
        lb_udp_session_close(s, LB_STREAM_END_SHUTDOWN);
        return;
    }
    if (idle < timeout) {
        lb_timer_set(&s->timer, timeout - idle);
        return;
    }
    lb_udp_session_judge(s);
    lb_udp_session_close(s, LB_STREAM_END_SESSION_TIMEOUT);
}

static void
lb_udp_close_all(lb_udp_worker_t *w, lb_stream_end_t end)
{
    lb_udp_session_t  *s, *next;
    size_t             i;

    for (i = 0; i <= w->mask; i++) {
        for (s = w->buckets[i]; s; s = next) {
            next = s->next;
            lb_udp_session_close(s, end);
        }
    }
}

/* A stopping worker no longer reads its listening sockets (the core took
 * them out of the loop; the next generation reads the same sockets). Its
 * sessions end soon instead of holding it up until their session_timeout:
 * after LB_UDP_DRAIN_TIME, so that a reply already on its way from a
 * server still reaches its client through the listening socket, which is
 * closed then. */
#define LB_UDP_DRAIN_TIME  250

static lb_timer_t  lb_udp_drain_timer;

static void
lb_udp_drained(lb_timer_t *t)
{
    lb_udp_worker_t  *w;
    lb_listener_t    *ls;
    size_t            a;

    for (w = lb_udp_workers; w; w = w->next) {
        lb_udp_close_all(w, LB_STREAM_END_SHUTDOWN);
        ls = w->conf->listener;
        for (a = 0; ls->conns && a < ls->addrs.nelts; a++) {
            if (ls->conns[a]) {
                lb_conn_close(ls->conns[a]);
                ls->conns[a] = NULL;
            }
        }
    }
}

static void
lb_stream_udp_stop_worker(lb_cycle_t *cycle)
{
    lb_timer_init(&lb_udp_drain_timer, lb_udp_drained, NULL);
    lb_timer_set(&lb_udp_drain_timer, LB_UDP_DRAIN_TIME);
}

/* The server refused a datagram (ICMP port unreachable): a failed connect
 * for the upstream's accounting, and the end of the session. */
static void
lb_udp_server_failed(lb_udp_session_t *s, int err)
{
    lb_udp_worker_t  *w = s->worker;
    char              text[LB_ADDR_TEXT_LEN];

    lb_upstream_connected(s->server, false);
    lb_log_write_limited(&w->fail_log, LB_LOG_WARN, err,
                         "*%llu client %s: server %s of upstream \"%s\" failed; session ended",
                         (unsigned long long) s->peer->id,
                         lb_udp_client_text(s, text, sizeof(text)), s->server->addr.text,
                         w->conf->upstream->name);
    /* a server that never answered was never reached */
    lb_udp_session_close(s, s->answered ? LB_STREAM_END_SERVER_CLOSED
                                        : LB_STREAM_END_CONNECT_FAILED);
}

/* Sends back the `n` datagrams of the batch to the session's client, from
 * the listening socket. A full socket buffer drops what did not fit, as a
 * network would. */
static void
lb_udp_reply(lb_udp_session_t *s, unsigned n)
{
    struct mmsghdr  *m = lb_udp_batch.msgs;
    unsigned         i, sent = 0;
    int              rc;

    for (i = 0; i < n; i++) {
        m[i].msg_hdr.msg_name = &s->client;
        m[i].msg_hdr.msg_namelen = s->client_len;
        m[i].msg_hdr.msg_control = NULL;
        m[i].msg_hdr.msg_controllen = 0;
        lb_udp_batch.iov[i].iov_len = m[i].msg_len;
    }
    while (sent < n) {
        rc = sendmmsg(s->lc->fd, m + sent, n - sent, 0);
        if (rc > 0) {
            for (i = sent; i < sent + (unsigned) rc; i++) {
                s->bytes_sent += m[i].msg_len;
                lb_metric_add(s->worker->conf->listener->m_sent, m[i].msg_len);
            }
            lb_metric_add(s->worker->conf->m_out, (uint64_t) rc);
            sent += (unsigned) rc;
        } else if (rc == -1 && errno == EINTR) {
            continue;
        } else {
            if (rc == -1 && errno != EAGAIN && errno != ENOBUFS) {
                lb_log_info("*%llu sendmmsg() to the client failed: %s",
                            (unsigned long long) s->peer->id, strerror(errno));
            }
            return;
        }
    }
}

/* Drops datagrams nobody asked for (none of the client's datagrams reached
 * the server, the socket buffer being full): the socket is level-triggered,
 * so they must not stay queued. */
static void
lb_udp_discard(lb_udp_session_t *s)
{
    char  byte;
    int   i;

    for (i = 0; i < LB_UDP_BATCH; i++) {
        if (recv(s->peer->fd, &byte, 1, MSG_DONTWAIT) == -1 && errno != EINTR) {
            return;
        }
    }
}

static void
lb_udp_server_read(lb_event_t *ev)
{
    lb_conn_t         *peer = ev->data;
    lb_udp_session_t  *s = peer->data;
    int64_t            responses = s->worker->conf->responses;
    uint64_t           expected;
    unsigned           i, want;
    int                n;

    if (lb_udp_orphaned(s)) {
        lb_udp_session_close(s, LB_STREAM_END_SHUTDOWN);
        return;
    }
    for ( ;; ) {
        want = LB_UDP_BATCH;
        if (responses) {
            /* read no more than the client's datagrams call for: a reply
             * beyond them would find the session gone */
            expected = s->received * (uint64_t) responses;
            if (s->replies >= expected) {
                lb_udp_discard(s);
                return;
            }
            want = (unsigned) lb_min(expected - s->replies, (uint64_t) LB_UDP_BATCH);
        }
        for (i = 0; i < want; i++) {
            lb_udp_batch.iov[i].iov_len = LB_UDP_DGRAM_MAX;
            lb_udp_batch.msgs[i].msg_hdr.msg_name = NULL;
            lb_udp_batch.msgs[i].msg_hdr.msg_namelen = 0;
            lb_udp_batch.msgs[i].msg_hdr.msg_control = NULL;
            lb_udp_batch.msgs[i].msg_hdr.msg_controllen = 0;
        }
        n = recvmmsg(peer->fd, lb_udp_batch.msgs, want, MSG_DONTWAIT, NULL);
        if (n == -1) {
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                ev->ready = 0;
                return;
            }
            if (errno == EINTR) {
                continue;
            }
            lb_udp_server_failed(s, errno);
            return;
        }
        if (!s->answered) {
            s->answered = true;
            lb_upstream_connected(s->server, true);
        }
        s->replies += (uint64_t) n;
        s->last_active = lb_current_msec;
        lb_udp_reply(s, (unsigned) n);

        if (responses && s->replies >= s->received * (uint64_t) responses) {
            lb_udp_session_close(s, LB_STREAM_END_RESPONSES);
            return;
        }
        if ((unsigned) n < want) {
            ev->ready = 0;      /* drained: the next datagram raises an edge */
            return;
        }
    }
}

/* Opens a socket connected to a server of the upstream for a new client.
 * Returns the session, or NULL (logged) when none can be had. */
static lb_udp_session_t *
lb_udp_session_open(lb_udp_worker_t *w, lb_conn_t *lc, const lb_udp_addr_t *a,
                    socklen_t alen, uint64_t hash)
{
    lb_stream_udp_conf_t  *ucf = w->conf;
    lb_upstream_t         *u = ucf->upstream;
    lb_upstream_peer_t     pr;
    lb_upstream_server_t  *server;
    lb_udp_session_t      *s;
    lb_conn_t             *peer;
    char                   text[LB_ADDR_TEXT_LEN];
    uint64_t               dropped, ip_key = 0;
    lb_listener_t         *ls = ucf->listener;
    bool                   counted = false;

    if (w->nsessions >= (size_t) ucf->max_sessions) {
        if (lb_log_ratelimit(&w->full_log, 0, &dropped)) {
            lb_addr_format(&a->sa, alen, text, sizeof(text));
            lb_log_warn(0, "listener \"%s\": max_sessions (%lld) reached; dropping "
                        "datagrams from new client addresses such as %s "
                        "(%llu dropped since the last such line)",
                        ucf->listener->name, (long long) ucf->max_sessions, text,
                        (unsigned long long) dropped);
        }
        return NULL;
    }

    if (ls->ipcount) {
        /* max_conns_per_ip: sessions of the address, all workers together */
        ip_key = lb_ipcount_key(ls->ipcount, ls->ip_key, &a->sa, ls->ipv6_prefix);
        switch (lb_ipcount_take(ls->ipcount, ip_key, ls->max_conns_per_ip)) {
        case LB_IPCOUNT_OK:
            counted = true;
            break;
        case LB_IPCOUNT_FULL:
            break;
        default:
            lb_metric_add(ls->m_ip_refused, 1);
            if (lb_log_ratelimit(&w->full_log, 0, &dropped)) {
                lb_addr_format(&a->sa, alen, text, sizeof(text));
                lb_log_warn(0, "client %s has max_conns_per_ip (%u) sessions on listener "
                            "\"%s\"; dropping its datagrams for a new one (%llu dropped "
                            "since the last such line)", text, ls->max_conns_per_ip,
                            ls->name, (unsigned long long) dropped);
            }
            return NULL;
        }
    }

    /* a session per query for DNS: nothing is formatted unless logged */
    lb_upstream_peer_init(&pr, u);
    pr.socktype = SOCK_DGRAM;
    pr.log_limit = &w->fail_log;
    pr.local_action = "datagram dropped";
    lb_upstream_peer_client_addr(&pr, &a->sa);
    if (lb_upstream_peer_connect(&pr) != LB_OK) {
        if (counted) {
            lb_ipcount_release(ls->ipcount, ip_key);
        }
        if (pr.gave_up != LB_PEER_LOCAL) {
            lb_addr_format(&a->sa, alen, text, sizeof(text));
            lb_log_write_limited(&w->fail_log, LB_LOG_ERROR, 0,
                                 "client %s: no usable server in upstream \"%s\" (%s); "
                                 "datagram dropped", text, u->name, pr.why);
        }
        return NULL;
    }
    server = pr.server;
    peer = pr.c;
    peer->listener = ucf->listener;
    peer->ip_key = ip_key;          /* released when the session's socket closes */
    peer->ip_counted = counted;

    s = lb_udp_session_alloc(w);
    if (s == NULL) {
        lb_log_write_limited(&w->local_log, LB_LOG_ERROR, ENOMEM,
                             "listener \"%s\": cannot allocate a udp session; datagram "
                             "dropped", ucf->listener->name);
        goto failed;
    }
    peer->listener = ucf->listener;
    peer->data = s;
    peer->read.handler = lb_udp_server_read;
    /* level-triggered, read only: a UDP socket is always writable, and
     * every datagram it sends would otherwise come back as a write event */
    if (lb_loop_add_conn(peer, true) != LB_OK) {
        lb_log_write_limited(&w->local_log, LB_LOG_ERROR, errno,
                             "listener \"%s\": cannot watch a udp session socket; "
                             "datagram dropped", ucf->listener->name);
        goto failed;
    }

    memset(s, 0, sizeof(*s));
    s->worker = w;
    s->hash = hash;
    s->lc = lc;
    s->lc_id = lc->id;
    s->peer = peer;
    s->server = server;
    s->trial = pr.try.trial;
    memcpy(&s->client, a, alen);
    s->client_len = alen;
    s->last_active = lb_current_msec;
    s->start = lb_current_msec;
    lb_metric_add(ucf->listener->m_connections, 1);
    lb_timer_init(&s->timer, lb_udp_session_expired, s);
    lb_timer_set(&s->timer, ucf->session_timeout);

    s->next = w->buckets[hash & w->mask];
    w->buckets[hash & w->mask] = s;
    if (++w->nsessions > w->mask + 1) {
        lb_udp_grow(w);
    }
    lb_log_debug("*%llu client %s: new session to %s in upstream \"%s\"",
                 (unsigned long long) peer->id,
                 lb_addr_format(&a->sa, alen, text, sizeof(text)) ? text : "?",
                 server->addr.text, u->name);
    return s;

failed:
    if (s) {
        s->next = w->free;
        w->free = s;
    }
    lb_upstream_peer_free(&pr, LB_PEER_UNUSED);
    return NULL;
}

/* The access log line of a datagram that opened no session: refused by
 * allow/deny, or no server to send it to (server: the last one tried). */
static void
lb_udp_log_dropped(const lb_listener_t *ls, const lb_udp_addr_t *a, socklen_t alen,
                   size_t len, const char *server, lb_stream_end_t end)
{
    lb_stream_log_ctx_t  log;

    if (!lb_stream_log_enabled(ls)) {
        return;
    }
    log.client = &a->sa;
    log.client_len = alen;
    log.upstream_addr = server;
    log.bytes_received = len;
    log.bytes_sent = 0;
    log.start_msec = lb_current_msec;
    log.end = end;
    lb_stream_log_session(ls, &log);
}

/* One datagram from a client: to its session's server, opening the session
 * first when the address is new. */
static void
lb_udp_from_client(lb_udp_worker_t *w, lb_conn_t *lc, const lb_udp_addr_t *a,
                   socklen_t alen, const char *data, size_t len)
{
    lb_listener_t     *ls = w->conf->listener;
    lb_udp_session_t  *s;
    uint64_t           hash;
    ssize_t            n;
    int                attempt;
    char               text[LB_ADDR_TEXT_LEN];

    if ((ls->allow || ls->deny) && lb_listener_denies(ls, &a->sa)) {
        lb_log_debug("client %s: denied by allow/deny of listener \"%s\"; datagram dropped",
                     lb_addr_format(&a->sa, alen, text, sizeof(text)) ? text : "?",
                     ls->name);
        lb_udp_log_dropped(ls, a, alen, len, NULL, LB_STREAM_END_DENIED);
        return;
    }
    hash = lb_udp_hash(lc, a);

    /* a second attempt after a session whose server turned out unreachable */
    for (attempt = 0; attempt < 2; attempt++) {
        s = lb_udp_find(w, lc, a, hash);
        if (s == NULL) {
            s = lb_udp_session_open(w, lc, a, alen, hash);
            if (s == NULL) {
                lb_udp_log_dropped(ls, a, alen, len, NULL, LB_STREAM_END_CONNECT_FAILED);
                return;
            }
        }
        do {
            n = send(s->peer->fd, data, len, 0);
        } while (n == -1 && errno == EINTR);

        if (n >= 0) {
            s->received++;
            s->bytes_received += (uint64_t) n;
            s->last_active = lb_current_msec;
            return;
        }
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == ENOBUFS) {
            return;         /* the socket buffer is full: dropped */
        }
        lb_udp_server_failed(s, errno);
    }
}

static void
lb_udp_client_read(lb_event_t *ev)
{
    lb_conn_t        *lc = ev->data;
    lb_udp_worker_t  *w = lc->data;
    struct mmsghdr   *m = lb_udp_batch.msgs;
    int               n, i;

    for ( ;; ) {
        for (i = 0; i < LB_UDP_BATCH; i++) {
            lb_udp_batch.iov[i].iov_len = LB_UDP_DGRAM_MAX;
            m[i].msg_hdr.msg_name = &lb_udp_batch.names[i];
            m[i].msg_hdr.msg_namelen = sizeof(lb_udp_batch.names[i]);
            m[i].msg_hdr.msg_control = NULL;
            m[i].msg_hdr.msg_controllen = 0;
        }
        n = recvmmsg(lc->fd, m, LB_UDP_BATCH, MSG_DONTWAIT, NULL);
        if (n == -1) {
            if (errno == EINTR) {
                continue;
            }
            if (errno != EAGAIN && errno != EWOULDBLOCK) {
                lb_log_write_limited(&w->local_log, LB_LOG_ERROR, errno,
                                     "recvmmsg() failed on listener \"%s\"",
                                     w->conf->listener->name);
            }
            ev->ready = 0;
            return;
        }
        lb_metric_add(w->conf->m_in, (uint64_t) n);
        for (i = 0; i < n; i++) {
            lb_metric_add(w->conf->listener->m_received, m[i].msg_len);
            if (m[i].msg_hdr.msg_flags & MSG_TRUNC) {
                continue;       /* cannot happen with 64k slots; never relay a part */
            }
            lb_udp_from_client(w, lc, &lb_udp_batch.names[i], m[i].msg_hdr.msg_namelen,
                               lb_udp_batch.iov[i].iov_base, m[i].msg_len);
        }
        if (n < LB_UDP_BATCH) {
            ev->ready = 0;      /* drained: the next datagram raises an edge */
            return;
        }
    }
}

/* Called by the core once per listening socket of the worker: datagram
 * listeners read themselves. */
static void
lb_stream_udp_start(lb_conn_t *lc)
{
    lb_stream_udp_conf_t  *ucf = lb_get_conf(lc->listener->confs, lb_stream_udp_module);

    if (ucf->worker == NULL) {
        lb_log_error(0, "listener \"%s\": no session table in this worker; not serving",
                     lc->listener->name);
        return;
    }
    lc->data = ucf->worker;
    lc->read.handler = lb_udp_client_read;
}
