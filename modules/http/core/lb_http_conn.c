/*
 * lb_http_conn.c: the HTTP/1 frontend of http listeners (SPEC §3.3, §4):
 * read a request head, make the request object and run it
 * (lb_http_request.c), write its response through the HTTP/1 writer
 * (lb_http_h1.c; a request body nobody read is discarded first), keep the
 * connection alive and serve pipelined requests in order; run the log
 * phase once per request. Owns the per-worker cache of request memory and
 * the list of idle connections that a graceful stop closes.
 */
#include "lb_core.h"
#include "lb_http.h"
#include "lb_http_forward.h"
#include "lb_http_var.h"
#include "lb_tls.h"

#include <netinet/in.h>

#define LB_HTTP_MEM_CACHE     64
/* After a response that closes the connection, input is drained for up to
 * this long (after shutting down our side), so that unread request bytes
 * do not make the kernel reset the connection before the client has read
 * the response (RFC 9112 §9.6). */
#define LB_HTTP_LINGER_TIME   2000
#define LB_HTTP_DRAIN_IDLE_TIME  250    /* an idle connection of a stopping worker */
#define LB_HTTP_LINGER_READ   (1024 * 1024)     /* per event, then wait */


/* Request memory, cached per worker ----------------------------------- */

static lb_http_req_mem_t  *lb_http_mem_cache[LB_HTTP_MEM_CACHE];
static size_t              lb_http_mem_cached;

static int
lb_http_mem_get(lb_http_conn_t *hc)
{
    size_t              size = (size_t) hc->conf->max_header_size + LB_HTTP_BODY_ROOM, i;
    size_t              uri_size = (size_t) hc->conf->max_uri;
    lb_http_req_mem_t  *m = NULL;

    for (i = lb_http_mem_cached; i-- > 0; ) {
        if (lb_http_mem_cache[i]->size == size && lb_http_mem_cache[i]->uri_size == uri_size) {
            m = lb_http_mem_cache[i];
            lb_http_mem_cache[i] = lb_http_mem_cache[--lb_http_mem_cached];
            break;
        }
    }
    if (m == NULL) {
        m = malloc(sizeof(lb_http_req_mem_t) + size + uri_size + LB_HTTP_HEAD_OUT_SIZE
                   + lb_nmodules * sizeof(void *) + 8);
        if (m == NULL) {
            return LB_ERROR;
        }
        m->size = size;
        m->uri_size = uri_size;
        m->uri = m->data + size;
        m->head = m->uri + uri_size;
        m->head_size = LB_HTTP_HEAD_OUT_SIZE;
        m->ctx = (void **) (((uintptr_t) (m->head + LB_HTTP_HEAD_OUT_SIZE) + 7)
                            & ~(uintptr_t) 7);
    }
    hc->mem = m;
    lb_buf_init(&hc->buf, m->data, size);
    return LB_OK;
}

static void
lb_http_mem_put(lb_http_conn_t *hc)
{
    lb_http_req_mem_t  *m = hc->mem;

    if (m == NULL) {
        return;
    }
    hc->mem = NULL;
    hc->r = NULL;
    hc->buf.start = hc->buf.end = hc->buf.pos = hc->buf.last = NULL;
    if (lb_http_mem_cached == LB_HTTP_MEM_CACHE) {
        /* a full cache keeps its newest entries: drop the oldest */
        free(lb_http_mem_cache[0]);
        lb_http_mem_cache[0] = lb_http_mem_cache[--lb_http_mem_cached];
    }
    lb_http_mem_cache[lb_http_mem_cached++] = m;
}

/* Connection state, cached per worker ---------------------------------- */

/* lb_http_conn_t objects are recycled through a free list (linked through
 * their next_free member) rather than taken from the connection's pool: an
 * idle keep-alive connection then costs its lb_conn_t and this object,
 * with no pool block beside them. */
#define LB_HTTP_CONN_CACHE  4096

static lb_http_conn_t  *lb_http_conn_free;
static size_t           lb_http_conn_nfree;

static lb_http_conn_t *
lb_http_conn_alloc(void)
{
    lb_http_conn_t  *hc = lb_http_conn_free;

    if (hc) {
        lb_http_conn_free = hc->next_free;
        lb_http_conn_nfree--;
    } else {
        hc = malloc(sizeof(*hc));
        if (hc == NULL) {
            return NULL;
        }
    }
    memset(hc, 0, sizeof(*hc));
    return hc;
}

static void
lb_http_conn_release(lb_http_conn_t *hc)
{
    if (lb_http_conn_nfree >= LB_HTTP_CONN_CACHE) {
        free(hc);
        return;
    }
    hc->next_free = lb_http_conn_free;
    lb_http_conn_free = hc;
    lb_http_conn_nfree++;
}

/* Idle connections and graceful stop ---------------------------------- */

static lb_queue_t  lb_http_idle = { &lb_http_idle, &lb_http_idle };

static void lb_http_close(lb_http_conn_t *hc);

/* Connections waiting for a request (new ones and keep-alive ones) are on
 * lb_http_idle; a stopping worker makes no more of them. */
static void
lb_http_idle_add(lb_http_conn_t *hc)
{
    lb_queue_insert_tail(&lb_http_idle, &hc->idle_link);
}

static void lb_http_run(lb_http_conn_t *hc);

/* The graceful stop closes the idle connections: they have no request in
 * flight, and the worker exits once its connections are gone. One whose
 * request has begun to arrive (bytes in the socket the loop has not read
 * yet) is no longer idle: closed, its unread bytes would make the kernel
 * reset it; it is read and answered instead, with Connection: close as the
 * worker is stopping. */
void
lb_http_conn_stop_worker(lb_cycle_t *cycle)
{
    lb_queue_t       stopping, *q;
    lb_http_conn_t  *hc;
    lb_conn_t       *c;
    char             byte;

    /* moved first: running or closing one takes it off whichever list */
    lb_queue_init(&stopping);
    while (!lb_queue_empty(&lb_http_idle)) {
        q = lb_queue_head(&lb_http_idle);
        lb_queue_remove(q);
        lb_queue_insert_tail(&stopping, q);
    }
    while (!lb_queue_empty(&stopping)) {
        hc = lb_queue_data(lb_queue_head(&stopping), lb_http_conn_t, idle_link);
        c = hc->c;
        lb_queue_remove(&hc->idle_link);
        if (recv(c->fd, &byte, 1, MSG_PEEK | MSG_DONTWAIT) == 1) {
            c->read.ready = 1;
            lb_http_run(hc);
            continue;
        }
        /* a busy client sends its next request as soon as it has read the
         * last response: one may be on its way. It is still answered, with
         * Connection: close, for a moment; then the connection closes. A
         * bare close now would cross it, and the client would see a reset
         * or an empty reply (most HTTP clients retry neither for a POST). */
        lb_event_timer_set(&c->read, LB_HTTP_DRAIN_IDLE_TIME);
    }
}

void
lb_http_conn_exit_worker(lb_cycle_t *cycle)
{
    while (lb_http_mem_cached) {
        free(lb_http_mem_cache[--lb_http_mem_cached]);
    }
    while (lb_http_conn_free) {
        lb_http_conn_t  *hc = lb_http_conn_free;

        lb_http_conn_free = hc->next_free;
        free(hc);
    }
    lb_http_conn_nfree = 0;
}

/* Connections ----------------------------------------------------------- */

/* The log phase, for the request begun on hc if it has not run for it and
 * a request line was read (see lb_http_module_t). */
static void
lb_http_log_phase(lb_http_conn_t *hc)
{
    lb_http_request_t  *r = hc->r;
    size_t              i;

    if (r == NULL || !r->log_pending || r->msg->method.len == 0) {
        return;
    }
    r->log_pending = 0;
    for (i = 0; i < lb_http_phases.nlog; i++) {
        lb_http_phases.log[i](r);
    }
}

static void
lb_http_close(lb_http_conn_t *hc)
{
    lb_http_request_t  *r = hc->r;
    void              (*cleanup)(lb_http_request_t *r) = r ? r->content_cleanup : NULL;

    if (cleanup) {
        r->content_cleanup = NULL;
        cleanup(r);
    }
    if (r && hc->state == LB_HTTP_READ_BODY && hc->w.sent == 0) {
        r->status = 0;                      /* its response never began */
    }
    if (r && r->header_sent) {
        r->bytes_sent = hc->w.sent;         /* perhaps cut off mid-response */
    }
    lb_http_log_phase(hc);
    lb_queue_remove(&hc->idle_link);
    lb_http_mem_put(hc);
    lb_conn_close(hc->c);
    lb_http_conn_release(hc);
}

/* The port of sa as text ("" for a unix socket), for $remote_port and
 * $server_port. */
static void
lb_http_port_text(const struct sockaddr_storage *ss, char *buf, size_t size)
{
    unsigned  port = 0;

    if (ss->ss_family == AF_INET) {
        port = ntohs(((const struct sockaddr_in *) ss)->sin_port);
    } else if (ss->ss_family == AF_INET6) {
        port = ntohs(((const struct sockaddr_in6 *) ss)->sin6_port);
    }
    if (port) {
        snprintf(buf, size, "%u", port);
    }
}

void
lb_http_local_addr(lb_http_request_t *r)
{
    struct sockaddr_storage  ss;
    socklen_t                len = sizeof(ss);
    lb_str_t                 ip;
    char                     buf[LB_IP_TEXT_LEN];
    lb_http_peer_t          *peer = r->peer;

    peer->local_known = 1;
    if (getsockname(r->c->fd, (struct sockaddr *) &ss, &len) == -1) {
        return;
    }
    lb_http_real_client(NULL, (struct sockaddr *) &ss, NULL, &ip, buf);
    snprintf(peer->local_ip, sizeof(peer->local_ip), "%.*s", (int) ip.len, ip.data);
    lb_http_port_text(&ss, peer->local_port, sizeof(peer->local_port));
}

static const lb_http_writer_t  lb_http_h1_writer;

lb_http_conn_t *
lb_http_conn_of(lb_http_request_t *r)
{
    return r->writer == &lb_http_h1_writer ? r->frontend : NULL;
}

/* The writer of HTTP/1 connections ---------------------------------------- */

static int
lb_http_conn_serialise(lb_http_conn_t *hc, lb_http_request_t *r)
{
    if (lb_http_h1_header(&hc->w, r) != LB_OK) {
        lb_log_error(0, "*%llu client %s: a response head does not fit in %zu bytes",
                     (unsigned long long) hc->c->id, hc->c->peer_text, hc->w.head_size);
        return LB_ERROR;
    }
    return LB_OK;
}

static int
lb_http_conn_header(lb_http_request_t *r)
{
    lb_http_conn_t  *hc = r->frontend;

    if (r->body_taken) {
        hc->body = LB_HTTP_BODY_NONE;
    }
    if (hc->body != LB_HTTP_BODY_NONE) {
        /* a body nobody took: read and dropped before the response goes
         * out, so the connection stays in step; unless it closes anyway,
         * or the client waits for 100 Continue (answered without it, RFC
         * 9110 §10.1.1, the client may then send the body or not) */
        if (r->msg->expect_continue) {
            r->keep_alive = 0;
        }
        if (!r->keep_alive) {
            hc->body = LB_HTTP_BODY_NONE;
        }
    }
    hc->w.c = hc->c;
    hc->w.head = hc->mem->head;
    hc->w.head_size = hc->mem->head_size;
    if (hc->body != LB_HTTP_BODY_NONE) {
        /* written once the body is gone: Connection is decided then (a
         * graceful stop may begin meanwhile) */
        hc->w.head_len = 0;
        hc->w.hold = 1;
        hc->state = LB_HTTP_READ_BODY;
        lb_event_timer_set(&hc->c->read, hc->conf->client_body_timeout);
        return LB_OK;
    }
    return lb_http_conn_serialise(hc, r);
}

static int
lb_http_conn_body(lb_http_request_t *r, lb_chain_t *in, bool last)
{
    lb_http_conn_t  *hc = r->frontend;
    int              rc;

    if (!hc->c->write.ready && !hc->w.hold) {
        return LB_AGAIN;
    }
    rc = lb_http_h1_body(&hc->w, in, last);
    r->bytes_sent = hc->w.sent;
    if (rc == LB_ERROR) {
        lb_log_info("*%llu client %s: %s%s%s", (unsigned long long) hc->c->id,
                    hc->c->peer_text, hc->w.error, errno ? ": " : "",
                    errno ? strerror(errno) : "");
    }
    return rc;
}

static bool
lb_http_conn_started(lb_http_request_t *r)
{
    lb_http_conn_t  *hc = r->frontend;

    return hc->w.sent > 0;
}

/* "HTTP/1.1 100 Continue", in pieces as the client takes them. */
static int
lb_http_conn_interim(lb_http_request_t *r, int status)
{
    static const char  line[] = "HTTP/1.1 100 Continue\r\n\r\n";
    lb_http_conn_t    *hc = r->frontend;
    ssize_t            n;

    if (status != 100) {
        return LB_ERROR;
    }
    while (hc->interim_sent < sizeof(line) - 1) {
        if (!hc->c->write.ready) {
            return LB_AGAIN;
        }
        n = lb_conn_send(hc->c, line + hc->interim_sent, sizeof(line) - 1 - hc->interim_sent);
        if (n == LB_AGAIN) {
            return LB_AGAIN;
        }
        if (n <= 0) {
            return LB_ERROR;
        }
        hc->interim_sent += (size_t) n;
    }
    return LB_OK;
}

static ssize_t lb_http_read_more(lb_http_conn_t *hc);

static ssize_t
lb_http_conn_read_body(lb_http_request_t *r, bool pinned)
{
    lb_http_conn_t  *hc = r->frontend;

    if (!hc->c->read.ready) {
        return LB_AGAIN;
    }
    if (lb_buf_room(&hc->buf) == 0 && (pinned || hc->buf.pos == hc->buf.start)) {
        return LB_AGAIN;            /* full of bytes the action still holds */
    }
    return lb_http_read_more(hc);
}

static int   lb_http_conn_finalize(lb_http_request_t *r);
static void  lb_http_conn_abort(lb_http_request_t *r);
static void  lb_http_conn_run(lb_http_request_t *r);

static const lb_http_writer_t  lb_http_h1_writer = {
    lb_http_conn_header, lb_http_conn_body, lb_http_conn_started,
    lb_http_conn_finalize, lb_http_conn_abort, lb_http_conn_interim,
    lb_http_conn_read_body, lb_http_conn_run
};

/* Requests ---------------------------------------------------------------- */

/* A request's first byte arrived: the head must be complete within
 * client_header_timeout. */
static void
lb_http_head_begins(lb_http_conn_t *hc)
{
    lb_http_request_t  *r = &hc->mem->r;

    hc->head_started = 1;
    hc->r = r;
    r->c = hc->c;
    r->conf = hc->conf;
    r->writer = &lb_http_h1_writer;
    r->frontend = hc;
    r->peer = &hc->peer;
    r->msg = &hc->mem->msg;
    r->body_in = &hc->buf;
    r->captures = hc->mem->captures;
    r->ctx = hc->mem->ctx;
    r->keep_alive = 0;
    lb_http_request_init(r);
    /* until it is parsed, variables (response_headers of a 400 or 408)
     * see no request, not the last one of this connection or of this
     * memory: no fields, no captures, no request id */
    lb_http_msg_reset(r->msg);
    memset(&hc->w, 0, sizeof(hc->w));
    hc->interim_sent = 0;
    hc->body = LB_HTTP_BODY_NONE;
    r->start_msec = lb_current_msec;
    lb_queue_remove(&hc->idle_link);
    lb_event_timer_set(&hc->c->read, hc->conf->client_header_timeout);
}

/* Runs the request whose head is parsed. */
static int
lb_http_process(lb_http_conn_t *hc)
{
    lb_http_request_t  *r = hc->r;
    lb_http_msg_t      *msg = r->msg;
    int                 rc;

    hc->requests++;
    r->keep_alive = msg->keep_alive && (int64_t) hc->requests < hc->conf->keepalive_requests
                    && !lb_worker_quitting;
    hc->body = msg->body;
    hc->body_left = msg->content_length;
    hc->body_seen = 0;
    memset(&hc->chunked, 0, sizeof(hc->chunked));
    /* the head's bytes stay where they are for variables and the log; a
     * body being read comes after them (the buffer has LB_HTTP_BODY_ROOM
     * beyond the largest head); lb_http_finalize gives the room back */
    hc->buf.start = hc->buf.pos + msg->head_len;
    lb_buf_consume(&hc->buf, msg->head_len);
    hc->state = LB_HTTP_CONTENT;
    rc = lb_http_request_run(r);
    if (rc == LB_DONE) {
        return LB_DONE;
    }
    return LB_OK;
}

/* Reads until a head is complete (then answers it) or the socket is
 * drained. LB_OK: the state moved on; LB_AGAIN; LB_DONE: closed. */
static int
lb_http_read_head(lb_http_conn_t *hc)
{
    lb_conn_t      *c = hc->c;
    lb_http_msg_t  *msg;
    ssize_t         n;
    size_t          len;
    int             rc;
    bool            parse = hc->mem && lb_buf_len(&hc->buf);

    for ( ;; ) {
        if (parse) {
            parse = false;
            msg = &hc->mem->msg;
            rc = lb_http_parse_request_head(msg, hc->buf.pos, lb_buf_len(&hc->buf),
                                            &hc->conf->limits);
            if (rc == LB_OK) {
                /* routes, $uri and the upstream all see the normal path */
                rc = lb_http_parse_uri(msg, hc->mem->uri, hc->mem->uri_size,
                                       hc->conf->uri_flags);
            }
            if (rc == LB_OK) {
                return lb_http_process(hc);
            }
            if (rc == LB_ERROR) {
                hc->state = LB_HTTP_CONTENT;
                return lb_http_generate(hc->r, msg->error_status, msg->error, true);
            }
            if (lb_buf_room(&hc->buf) == 0) {
                if (hc->buf.pos == hc->buf.start) {
                    hc->state = LB_HTTP_CONTENT;
                    return lb_http_generate(hc->r, 431, "request head larger than "
                                            "max_header_size", true);
                }
                lb_buf_compact(&hc->buf);
            }
        }
        if (!c->read.ready) {
            return LB_AGAIN;
        }
        if (hc->mem == NULL && lb_http_mem_get(hc) != LB_OK) {
            lb_log_error_limited(ENOMEM, "*%llu client %s: cannot allocate a request buffer; "
                                 "closing", (unsigned long long) c->id, c->peer_text);
            lb_http_close(hc);
            return LB_DONE;
        }
        n = lb_conn_recv(c, hc->buf.last, lb_buf_room(&hc->buf));
        if (n > 0) {
            lb_metric_add(c->listener->m_received, (uint64_t) n);
            /* the head is re-parsed from its start, so only when it may
             * have ended or hit a limit: a line ended, the buffer is full,
             * or the bytes just passed max_uri or max_header_size (a
             * client sending a byte at a time costs a parse per line) */
            len = lb_buf_len(&hc->buf);
            parse = memchr(hc->buf.last, '\n', (size_t) n) != NULL
                    || (size_t) n == lb_buf_room(&hc->buf)
                    || (len <= hc->conf->limits.max_uri
                        && len + (size_t) n > hc->conf->limits.max_uri)
                    || (len <= hc->conf->limits.max_header_size
                        && len + (size_t) n > hc->conf->limits.max_header_size);
            hc->buf.last += n;
            if (!hc->head_started) {
                lb_http_head_begins(hc);
            }
            continue;
        }
        if (n == LB_AGAIN) {
            if (!hc->head_started) {
                lb_http_mem_put(hc);        /* nothing came: stay cheap */
            }
            return LB_AGAIN;
        }
        if (hc->head_started) {
            lb_log_info("*%llu client %s: closed the connection in a request head%s",
                        (unsigned long long) c->id, c->peer_text,
                        n == 0 ? "" : " (error)");
        }
        lb_http_close(hc);
        return LB_DONE;
    }
}

/* Reads more of the request into hc->buf, compacting it first when it is
 * full (only bytes not yet consumed move: nothing may point into it). The
 * bytes read, 0 at the end of the stream, LB_AGAIN or LB_ERROR (errno). */
static ssize_t
lb_http_read_more(lb_http_conn_t *hc)
{
    ssize_t  n;

    if (!hc->c->read.ready) {
        return LB_AGAIN;
    }
    if (lb_buf_room(&hc->buf) == 0) {
        lb_buf_compact(&hc->buf);
    }
    n = lb_conn_recv(hc->c, hc->buf.last, lb_buf_room(&hc->buf));
    if (n > 0) {
        hc->buf.last += n;
        lb_metric_add(hc->c->listener->m_received, (uint64_t) n);
    }
    return n;
}

/* The request body was read and dropped (or refused): the held response
 * may go. */
static int
lb_http_body_discarded(lb_http_conn_t *hc)
{
    bool  held = hc->w.hold;

    hc->w.hold = 0;
    hc->state = LB_HTTP_CONTENT;
    lb_event_timer_del(&hc->c->read);
    if (held && lb_http_conn_serialise(hc, hc->r) != LB_OK) {
        lb_http_close(hc);
        return LB_DONE;
    }
    return LB_OK;
}

/* The body being discarded is refused (an error answers instead of the
 * held response, which never went out). */
static void
lb_http_body_refused(lb_http_conn_t *hc)
{
    hc->body = LB_HTTP_BODY_NONE;
    hc->w.hold = 0;
    hc->state = LB_HTTP_CONTENT;
    lb_event_timer_del(&hc->c->read);
}

/* Reads and discards the request body. */
static int
lb_http_read_body(lb_http_conn_t *hc)
{
    lb_conn_t   *c = hc->c;
    const char  *data;
    size_t       len, used, data_len;
    ssize_t      n;
    int          rc;

    for ( ;; ) {
        while ((len = lb_buf_len(&hc->buf)) > 0 && hc->body != LB_HTTP_BODY_NONE) {
            if (hc->body == LB_HTTP_BODY_LENGTH) {
                used = (size_t) lb_min((int64_t) len, hc->body_left);
                lb_buf_consume(&hc->buf, used);
                hc->body_left -= (int64_t) used;
                if (hc->body_left == 0) {
                    hc->body = LB_HTTP_BODY_NONE;
                }
                continue;
            }
            rc = lb_http_parse_chunked(&hc->chunked, hc->buf.pos, len, &used, &data, &data_len);
            lb_buf_consume(&hc->buf, used);
            if (rc == LB_OK) {
                hc->body_seen += (int64_t) data_len;
                if (hc->body_seen > hc->conf->max_body_size) {
                    lb_http_body_refused(hc);
                    return lb_http_generate(hc->r, 413, "chunked body larger than "
                                            "max_body_size", true);
                }
            } else if (rc == LB_DONE) {
                hc->body = LB_HTTP_BODY_NONE;
            } else if (rc == LB_ERROR) {
                lb_http_body_refused(hc);
                return lb_http_generate(hc->r, 400, "invalid chunked body", true);
            } else if (rc == LB_AGAIN) {
                break;                      /* what is left is a partial line */
            }
        }
        if (hc->body == LB_HTTP_BODY_LENGTH && hc->body_left == 0) {
            hc->body = LB_HTTP_BODY_NONE;
        }
        if (hc->body == LB_HTTP_BODY_NONE) {
            return lb_http_body_discarded(hc);
        }
        n = lb_http_read_more(hc);
        if (n > 0) {
            continue;
        }
        if (n == LB_AGAIN) {
            return LB_AGAIN;
        }
        lb_log_info("*%llu client %s: closed the connection in a request body",
                    (unsigned long long) c->id, c->peer_text);
        lb_http_close(hc);
        return LB_DONE;
    }
}

/* Drains input after the response of a connection that closes, until the
 * client closes too or LB_HTTP_LINGER_TIME passes. */
static int
lb_http_linger(lb_http_conn_t *hc)
{
    lb_conn_t  *c = hc->c;
    size_t      total = 0;
    ssize_t     n;

    while (c->read.ready && total < LB_HTTP_LINGER_READ) {
        n = lb_conn_recv(c, hc->buf.start, lb_buf_size(&hc->buf));
        if (n > 0) {
            total += (size_t) n;
            continue;
        }
        if (n == LB_AGAIN) {
            return LB_AGAIN;
        }
        lb_http_close(hc);
        return LB_DONE;
    }
    return LB_AGAIN;
}

static int
lb_http_conn_finalize(lb_http_request_t *r)
{
    lb_http_conn_t  *hc = r->frontend;
    lb_conn_t       *c = hc->c;

    r->bytes_sent = hc->w.sent;
    lb_http_log_phase(hc);
    r->content = NULL;
    r->content_run = NULL;
    r->content_timeout = NULL;
    r->content_cleanup = NULL;
    hc->buf.start = hc->mem->data;          /* the head's room, kept for the log */
    hc->head_started = 0;

    if (!r->keep_alive || lb_worker_quitting) {
        if (c->io->shutdown(c) != LB_OK) {
            lb_http_close(hc);
            return LB_DONE;
        }
        lb_buf_reset(&hc->buf);
        hc->state = LB_HTTP_LINGER;
        lb_event_timer_del(&c->write);
        lb_event_timer_set(&c->read, LB_HTTP_LINGER_TIME);
        return LB_OK;
    }

    hc->state = LB_HTTP_READ_HEAD;
    lb_event_timer_del(&c->write);
    if (lb_buf_len(&hc->buf)) {
        /* pipelined: already here. Moved to the start, so the next head
         * has the whole body room after it. */
        lb_buf_compact(&hc->buf);
        lb_http_head_begins(hc);
    } else {
        lb_http_mem_put(hc);
        lb_http_idle_add(hc);
        lb_event_timer_set(&c->read, hc->conf->keepalive_timeout);
    }
    return LB_OK;
}

static void
lb_http_conn_abort(lb_http_request_t *r)
{
    lb_http_close(r->frontend);
}

static void
lb_http_timed_out(lb_http_conn_t *hc, lb_event_t *ev)
{
    lb_conn_t  *c = hc->c;

    switch (hc->state) {
    case LB_HTTP_READ_HEAD:
        if (hc->head_started) {
            hc->state = LB_HTTP_CONTENT;
            if (lb_http_generate(hc->r, 408, "client_header_timeout expired", true) == LB_OK) {
                lb_http_run_request(hc->r);
            }
            return;
        }
        lb_log_debug("*%llu client %s: %s expired; closing", (unsigned long long) c->id,
                     c->peer_text, hc->requests ? "keepalive_timeout" : "client_header_timeout");
        break;
    case LB_HTTP_READ_BODY:
        lb_http_body_refused(hc);
        if (lb_http_generate(hc->r, 408, "client_body_timeout expired", true) == LB_OK) {
            lb_http_run_request(hc->r);
        }
        return;
    case LB_HTTP_LINGER:
        break;
    case LB_HTTP_CONTENT:
        if (hc->r->content_timeout) {
            hc->r->content_timeout(hc->r, ev);
            return;
        }
        break;
    }
    lb_http_close(hc);
}

static void
lb_http_run(lb_http_conn_t *hc)
{
    int  rc;

    do {
        switch (hc->state) {
        case LB_HTTP_READ_HEAD:
            rc = lb_http_read_head(hc);
            break;
        case LB_HTTP_READ_BODY:
            rc = lb_http_read_body(hc);
            break;
        case LB_HTTP_CONTENT:
            rc = hc->r->content_run ? hc->r->content_run(hc->r) : LB_AGAIN;
            if (rc == LB_AGAIN && hc->state == LB_HTTP_CONTENT && hc->r->content == NULL
                && !lb_timer_is_set(&hc->c->write.timer))
            {
                /* lbd's own response waits for the client to read */
                lb_event_timer_set(&hc->c->write, hc->conf->client_body_timeout);
            }
            break;
        default:
            rc = lb_http_linger(hc);
            break;
        }
    } while (rc == LB_OK);
}

static void
lb_http_conn_run(lb_http_request_t *r)
{
    lb_http_run(r->frontend);
}

static void
lb_http_handler(lb_event_t *ev)
{
    lb_conn_t       *c = ev->data;
    lb_http_conn_t  *hc = c->data;

    if (ev->timedout) {
        ev->timedout = 0;
        lb_http_timed_out(hc, ev);
        return;
    }
    lb_http_run(hc);
}

/* A client over max_conns_per_ip: 429 at once, without reading its
 * request, then the client's bytes are drained until it closes or
 * LB_HTTP_LINGER_TIME passes, so the close does not reset the answer. */
static void
lb_http_over_cap_drain(lb_event_t *ev)
{
    lb_conn_t  *c = ev->data;
    char        buf[4096];
    ssize_t     n;

    if (ev->timedout) {
        lb_conn_close(c);
        return;
    }
    if (ev->write) {
        return;
    }
    while ((n = lb_conn_recv(c, buf, sizeof(buf))) > 0) {
        /* discarded */
    }
    if (n != LB_AGAIN) {
        lb_conn_close(c);
    }
}

static void
lb_http_over_cap(lb_conn_t *c)
{
    static const char  answer[] =
        "HTTP/1.1 429 Too Many Requests\r\n"
        "Content-Type: text/plain\r\n"
        "Content-Length: 53\r\n"
        "Retry-After: 1\r\n"
        "Connection: close\r\n"
        "\r\n"
        "429 Too Many Requests: too many connections from you\n";

    c->read.handler = lb_http_over_cap_drain;
    c->write.handler = lb_http_over_cap_drain;
    /* the head fits in any socket buffer: one send, or the client is gone */
    if (lb_loop_add_conn(c, false) != LB_OK
        || lb_conn_send(c, answer, sizeof(answer) - 1) != (ssize_t) (sizeof(answer) - 1)
        || c->io->shutdown(c) == LB_ERROR)
    {
        lb_conn_close(c);
        return;
    }
    lb_event_timer_set(&c->read, LB_HTTP_LINGER_TIME);
}

void
lb_http_init_connection(lb_conn_t *c)
{
    lb_http_conn_t  *hc;
    lb_str_t         ip;

    if (c->over_ip_cap) {
        lb_http_over_cap(c);
        return;
    }

    hc = lb_http_conn_alloc();
    if (hc == NULL) {
        lb_log_error_limited(ENOMEM, "*%llu client %s: cannot allocate an http connection",
                             (unsigned long long) c->id, c->peer_text);
        lb_conn_close(c);
        return;
    }
    hc->c = c;
    hc->conf = lb_get_conf(c->listener->confs, lb_http_core_module);
    lb_queue_init(&hc->idle_link);

    lb_http_real_client(NULL, (struct sockaddr *) &c->peer, NULL, &ip, hc->peer.remote_ip);
    lb_http_port_text(&c->peer, hc->peer.remote_port, sizeof(hc->peer.remote_port));

    c->data = hc;
    c->read.handler = lb_http_handler;
    c->write.handler = lb_http_handler;
    if (lb_loop_add_conn(c, false) != LB_OK) {
        lb_log_error_limited(errno, "*%llu client %s: cannot watch the connection",
                             (unsigned long long) c->id, c->peer_text);
        lb_conn_close(c);
        lb_http_conn_release(hc);
        return;
    }
    hc->state = LB_HTTP_READ_HEAD;
    lb_http_idle_add(hc);
    lb_event_timer_set(&c->read, hc->conf->client_header_timeout);
    lb_http_run(hc);
}
