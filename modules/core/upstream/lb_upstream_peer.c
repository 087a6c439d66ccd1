/*
 * lb_upstream_peer.c: the one connect sequence of lbd (lb_upstream.h, "The
 * peer layer"): pick -> idle pool -> connect -> connect_timeout -> PROXY
 * header -> upstream TLS -> the next server on failure -> give up with the
 * reason. Every step that waits returns LB_AGAIN and ends in pr->ready,
 * which never runs inside the call that started it.
 */
#include "lb_upstream.h"
#include "lb_upstream_sticky.h"
#include "lb_proxy_protocol.h"
#include "lb_tls.h"

#include <stdarg.h>

static int   lb_upstream_peer_open(lb_upstream_peer_t *pr);
static int   lb_upstream_peer_after_connect(lb_upstream_peer_t *pr);
static void  lb_upstream_peer_connected(lb_event_t *ev);
static void  lb_upstream_peer_tls_done(lb_conn_t *c, bool ok);

void
lb_upstream_peer_init(lb_upstream_peer_t *pr, lb_upstream_t *u)
{
    memset(pr, 0, sizeof(*pr));
    pr->u = lb_upstream_current(u);    /* a reload in place may have replaced it */
    pr->socktype = SOCK_STREAM;
}

void
lb_upstream_peer_client_addr(lb_upstream_peer_t *pr, const struct sockaddr *sa)
{
    pr->client_addr = sa;
    if (pr->u->balancer->flags & LB_BALANCER_KEY) {
        pr->key = lb_upstream_addr_key(sa);
        pr->has_key = true;
    }
}

/* One line about this peer: "*ID client TEXT: ...", rate limited when the
 * caller asked (a datagram listener sees a new peer per client address). */
static void __attribute__((format(printf, 4, 5)))
lb_upstream_peer_log(lb_upstream_peer_t *pr, lb_log_level_t level, int err, const char *fmt, ...)
{
    char         msg[512], addr[LB_ADDR_TEXT_LEN];
    const char  *client = pr->client_text;
    va_list      ap;

    if (level < lb_log_level) {
        return;
    }
    if (client == NULL && pr->client_addr) {
        /* formatted only for a line that is written */
        lb_addr_format(pr->client_addr, pr->client_addr->sa_family == AF_INET6
                                        ? sizeof(struct sockaddr_in6)
                                        : sizeof(struct sockaddr_in), addr, sizeof(addr));
        client = addr;
    }
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (pr->log_limit && pr->log_id) {
        lb_log_write_limited(pr->log_limit, level, err, "*%llu client %s%s",
                             (unsigned long long) pr->log_id, client, msg);
    } else if (pr->log_limit) {
        lb_log_write_limited(pr->log_limit, level, err, "client %s%s", client ? client : "?",
                             msg);
    } else if (client) {
        lb_log_write(level, err, "*%llu client %s%s", (unsigned long long) pr->log_id, client,
                     msg);
    } else {
        lb_log_write(level, err, "upstream \"%s\"%s", pr->u->name, msg);
    }
}

static void
lb_upstream_peer_close(lb_upstream_peer_t *pr)
{
    if (pr->c) {
        lb_conn_close(pr->c);
        pr->c = NULL;
    }
}

void
lb_upstream_peer_free(lb_upstream_peer_t *pr, lb_upstream_outcome_t outcome)
{
    lb_upstream_peer_close(pr);
    if (pr->server) {
        lb_upstream_release(pr->server, outcome);
        pr->server = NULL;
    }
}

/* The server failed us: counted for passive health, let go, and the next
 * one tried. */
static int
lb_upstream_peer_failed(lb_upstream_peer_t *pr, int err, const char *what)
{
    bool  next = pr->u->next_upstream & (err == ETIMEDOUT ? LB_NEXT_TIMEOUT : LB_NEXT_ERROR);

    lb_upstream_peer_log(pr, LB_LOG_WARN, err, ": %s %s in upstream \"%s\"%s", what,
                         pr->server->addr.text, pr->u->name,
                         !next ? "; not trying another server (next_upstream)"
                         : (int64_t) pr->try.attempts <= pr->u->retries
                             ? "; trying another server" : "");
    pr->timed_out = err == ETIMEDOUT;
    lb_upstream_connected(pr->server, false);
    lb_upstream_peer_free(pr, LB_PEER_FAILED);
    if (!next) {
        pr->gave_up = LB_PEER_RETRIES_OUT;
        pr->why = "next_upstream leaves it there";
        return LB_ERROR;
    }
    return lb_upstream_peer_connect(pr);
}

int
lb_upstream_peer_next(lb_upstream_peer_t *pr, int err, const char *what)
{
    if (what) {
        return lb_upstream_peer_failed(pr, err, what);
    }
    /* the caller said it already */
    pr->timed_out = err == ETIMEDOUT;
    lb_upstream_connected(pr->server, false);
    lb_upstream_peer_free(pr, LB_PEER_FAILED);
    return lb_upstream_peer_connect(pr);
}

/* sticky source_ip: the table's key for the client, its length or 0. */
static size_t
lb_upstream_peer_sticky_key(lb_upstream_peer_t *pr, uint8_t key[20])
{
    const struct sockaddr  *sa = pr->client_addr;

    if (sa == NULL) {
        return 0;
    }
    key[0] = (uint8_t) sa->sa_family;
    if (sa->sa_family == AF_INET) {
        memcpy(key + 1, &((const struct sockaddr_in *) sa)->sin_addr, 4);
        return 5;
    }
    if (sa->sa_family == AF_INET6) {
        memcpy(key + 1, &((const struct sockaddr_in6 *) sa)->sin6_addr, 16);
        return 17;
    }
    return 0;
}

/* The client's server in the table, as the sticky target. */
static void
lb_upstream_peer_sticky_find(lb_upstream_peer_t *pr)
{
    lb_upstream_sticky_t  *st = &pr->u->sticky;
    uint8_t                key[20];
    uint64_t               id;
    size_t                 n = lb_upstream_peer_sticky_key(pr, key);

    if (n && lb_sticky_table_get(st->zone->data, key, n, lb_current_msec, st->ttl, &id)
             == LB_OK)
    {
        pr->sticky = lb_upstream_server_by_id(pr->u, id);
    }
}

/* The client is served by pr->server from now on (the table's entry of a
 * hit was refreshed by the lookup). */
static void
lb_upstream_peer_sticky_note(lb_upstream_peer_t *pr)
{
    uint8_t  key[20];
    size_t   n;

    if (pr->u->sticky.mode != LB_STICKY_SOURCE_IP || pr->server == pr->sticky_hit) {
        return;
    }
    n = lb_upstream_peer_sticky_key(pr, key);
    if (n) {
        lb_sticky_table_put(pr->u->sticky.zone->data, key, n, pr->server->sticky_id,
                            lb_current_msec);
    }
}

int
lb_upstream_peer_connect(lb_upstream_peer_t *pr)
{
    lb_upstream_t  *u = pr->u;
    const char     *why = "";

    pr->reused = false;
    if ((int64_t) pr->try.attempts > u->retries) {
        pr->gave_up = LB_PEER_RETRIES_OUT;
        pr->why = "every server tried failed";
        return LB_ERROR;
    }
    if (pr->try.attempts == 0) {
        if (u->sticky.mode == LB_STICKY_SOURCE_IP) {
            lb_upstream_peer_sticky_find(pr);
        }
        pr->sticky_hit = pr->sticky;
        if (u->balancer->init_peer) {
            u->balancer->init_peer(pr);
        }
    }
    pr->server = lb_upstream_pick(pr, &why);
    if (pr->server == NULL) {
        pr->gave_up = LB_PEER_NO_SERVER;
        pr->why = why;
        return LB_ERROR;
    }
    if (pr->pool_get && pr->pool_get(pr) == LB_OK) {
        pr->reused = true;
        pr->connect_msec = 0;
        lb_upstream_peer_sticky_note(pr);
        return LB_OK;
    }
    return lb_upstream_peer_open(pr);
}

int
lb_upstream_peer_reopen(lb_upstream_peer_t *pr)
{
    lb_upstream_peer_close(pr);
    pr->reused = false;
    return lb_upstream_peer_open(pr);
}

static void
lb_upstream_peer_idle(lb_event_t *ev)
{
}

static int
lb_upstream_peer_open(lb_upstream_peer_t *pr)
{
    int  rc;

    pr->connect_start = lb_current_msec;
    /* a datagram socket is ready at once (a refusal comes later, as ICMP,
     * to the user's reads) */
    rc = pr->socktype == SOCK_DGRAM ? lb_conn_connect_dgram(&pr->server->addr, &pr->c)
                                    : lb_conn_connect(&pr->server->addr, &pr->c);
    if (rc == LB_ERROR) {
        pr->c = NULL;
        if (lb_conn_error_is_local(errno)) {
            /* this host's shortage, not the server's: no failure counted,
             * and another server would meet the same (lb_conn.h); it lasts
             * while it lasts, so its lines are limited */
            static lb_log_ratelimit_t  local_log;
            lb_log_ratelimit_t        *saved = pr->log_limit;

            pr->log_limit = &local_log;
            lb_upstream_peer_log(pr, LB_LOG_ERROR, errno, ": cannot connect to %s in upstream "
                                 "\"%s\": a local error, the server is not marked failed%s%s",
                                 pr->server->addr.text, pr->u->name,
                                 pr->local_action ? "; " : "",
                                 pr->local_action ? pr->local_action : "");
            pr->log_limit = saved;
            lb_upstream_peer_free(pr, LB_PEER_UNUSED);
            pr->gave_up = LB_PEER_LOCAL;
            pr->why = "no local resources for an upstream connection";
            return LB_ERROR;
        }
        return lb_upstream_peer_failed(pr, errno, "connect() failed to");
    }
    if (rc == LB_OK) {
        return lb_upstream_peer_after_connect(pr);
    }
    pr->c->data = pr;
    pr->c->read.handler = lb_upstream_peer_idle;
    pr->c->write.handler = lb_upstream_peer_connected;
    lb_event_timer_set(&pr->c->write, pr->u->connect_timeout);
    return LB_AGAIN;
}

/* Connected: the PROXY header, then TLS when the upstream has a tls group.
 * LB_OK: ready; LB_AGAIN: a handshake runs; else as lb_upstream_peer_connect. */
static int
lb_upstream_peer_after_connect(lb_upstream_peer_t *pr)
{
    lb_upstream_t      *u = pr->u;
    lb_tls_upstream_t  *ut;

    if (pr->socktype == SOCK_DGRAM) {
        pr->connect_msec = 0;
        lb_upstream_peer_sticky_note(pr);
        return LB_OK;
    }
    lb_upstream_connected(pr->server, true);
    /* it speaks for this client: in the clear, before any TLS */
    if (u->proxy_protocol && pr->client
        && lb_proxy_send_header((int) u->proxy_protocol, pr->client, pr->c) != LB_OK)
    {
        return lb_upstream_peer_failed(pr, errno, "cannot send the PROXY header to");
    }
    ut = lb_tls_upstream(u->confs);
    if (ut == NULL) {
        pr->connect_msec = lb_current_msec - pr->connect_start;
        lb_upstream_peer_sticky_note(pr);
        return LB_OK;
    }
    pr->c->data = pr;
    if (lb_tls_connect(pr->c, ut->ctx, ut->sni, u->connect_timeout, lb_upstream_peer_tls_done)
        != LB_OK)
    {
        return lb_upstream_peer_failed(pr, EPROTO, "cannot start TLS with");
    }
    return LB_AGAIN;
}

/* An asynchronous step ended with rc: the caller hears of it unless the
 * next server is being connected to. */
static void
lb_upstream_peer_done(lb_upstream_peer_t *pr, int rc)
{
    if (rc != LB_AGAIN) {
        pr->ready(pr, rc == LB_OK ? LB_OK : LB_ERROR);
    }
}

static void
lb_upstream_peer_connected(lb_event_t *ev)
{
    lb_conn_t           *c = ev->data;
    lb_upstream_peer_t  *pr = c->data;

    if (ev->timedout) {
        lb_upstream_peer_done(pr, lb_upstream_peer_failed(pr, ETIMEDOUT,
                                                          "connect_timeout expired for"));
        return;
    }
    if (lb_conn_connect_result(c) != LB_OK) {
        lb_upstream_peer_done(pr, lb_upstream_peer_failed(pr, errno, "connect() failed to"));
        return;
    }
    lb_event_timer_del(&c->write);
    lb_upstream_peer_done(pr, lb_upstream_peer_after_connect(pr));
}

static void
lb_upstream_peer_tls_done(lb_conn_t *c, bool ok)
{
    lb_upstream_peer_t  *pr = c->data;
    const char          *why;
    char                 buf[256];

    if (ok) {
        pr->connect_msec = lb_current_msec - pr->connect_start;
        lb_upstream_peer_sticky_note(pr);
        pr->ready(pr, LB_OK);
        return;
    }
    why = lb_tls_verify_error(c);
    snprintf(buf, sizeof(buf), "TLS handshake failed (%s) with", *why ? why : "closed");
    lb_upstream_peer_done(pr, lb_upstream_peer_failed(pr, 0, buf));
}
