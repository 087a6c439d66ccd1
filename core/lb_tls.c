/*
 * lb_tls.c: the TLS seam's implementation (OpenSSL): the I/O layer, the
 * handshakes (the accept step of TLS listeners, the client handshake of
 * upstream connections) and what modules may ask about a TLS connection.
 * Everything non-blocking: a call that would block clears the ready flag
 * of the event it waits for and returns LB_AGAIN, as the plain layer does.
 */
#include "lb_core.h"
#include "lb_tls.h"

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <limits.h>

static lb_tls_upstream_t *(*lb_tls_upstream_lookup)(void **confs);
static lb_tls_upstream_rebuild_pt  lb_tls_upstream_rebuilder;

/* Small writes gathered into one record: a response head and a short body
 * go out as one record, not two. */
#define LB_TLS_GATHER  16384
static char  lb_tls_gather[LB_TLS_GATHER];

const char *
lb_tls_error_text(void)
{
    static char    text[256];
    unsigned long  e = ERR_peek_last_error();

    text[0] = '\0';
    if (e) {
        ERR_error_string_n(e, text, sizeof(text));
    }
    ERR_clear_error();
    return text;
}

static ssize_t
lb_tls_failed(lb_conn_t *c, int rc)
{
    SSL  *ssl = c->io_ctx;
    int   err = SSL_get_error(ssl, rc);

    switch (err) {
    case SSL_ERROR_WANT_READ:
        c->read.ready = 0;
        return LB_AGAIN;
    case SSL_ERROR_WANT_WRITE:
        c->write.ready = 0;
        return LB_AGAIN;
    case SSL_ERROR_ZERO_RETURN:
        c->eof = 1;
        return 0;
    case SSL_ERROR_SYSCALL:
        if (ERR_peek_error() == 0 && errno == 0) {
            c->eof = 1;             /* the peer closed without close_notify */
            return 0;
        }
        /* fall through */
    default:
        if (errno == 0 || errno == EAGAIN) {
            errno = EPROTO;
        }
        lb_log_debug("*%llu TLS error on %s: %s", (unsigned long long) c->id,
                     c->peer_text, lb_tls_error_text());
        ERR_clear_error();
        c->error = 1;
        return LB_ERROR;
    }
}

static ssize_t
lb_tls_recv(lb_conn_t *c, char *buf, size_t size)
{
    int  n;

    ERR_clear_error();
    errno = 0;
    n = SSL_read(c->io_ctx, buf, (int) lb_min(size, (size_t) INT_MAX));
    return n > 0 ? n : lb_tls_failed(c, n);
}

static ssize_t
lb_tls_send(lb_conn_t *c, const char *buf, size_t size)
{
    int  n;

    ERR_clear_error();
    errno = 0;
    n = SSL_write(c->io_ctx, buf, (int) lb_min(size, (size_t) INT_MAX));
    if (n > 0) {
        return n;
    }
    n = (int) lb_tls_failed(c, n);
    return n == 0 ? LB_ERROR : n;           /* no EOF when writing */
}

/* The first iovec alone when it is large; else as many bytes as fit in
 * one gathered record. A retry after LB_AGAIN passes at least the same
 * bytes (nothing was consumed), which SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER
 * allows. */
static ssize_t
lb_tls_sendv(lb_conn_t *c, const struct iovec *iov, int iovcnt)
{
    size_t  n = 0, k;
    int     i;

    if (iovcnt == 1 || iov[0].iov_len >= LB_TLS_GATHER / 2) {
        return lb_tls_send(c, iov[0].iov_base, iov[0].iov_len);
    }
    for (i = 0; i < iovcnt && n < LB_TLS_GATHER; i++) {
        k = lb_min(iov[i].iov_len, LB_TLS_GATHER - n);
        memcpy(lb_tls_gather + n, iov[i].iov_base, k);
        n += k;
    }
    return lb_tls_send(c, lb_tls_gather, n);
}

static int
lb_tls_shutdown(lb_conn_t *c)
{
    ERR_clear_error();
    SSL_shutdown(c->io_ctx);            /* close_notify, best effort */
    ERR_clear_error();
    if (shutdown(c->fd, SHUT_WR) == -1 && errno != ENOTCONN) {
        return LB_ERROR;
    }
    c->shut_wr = 1;
    return LB_OK;
}

static void
lb_tls_close(lb_conn_t *c)
{
    if (c->io_ctx) {
        /* OpenSSL drops from the session cache the session of a
         * connection freed before it sent close_notify (a client that
         * closed first, a reset, a timeout): none of that makes the
         * session unsafe to resume. Fatal TLS errors still drop it. */
        SSL_set_shutdown(c->io_ctx, SSL_get_shutdown(c->io_ctx) | SSL_SENT_SHUTDOWN);
        SSL_free(c->io_ctx);
    }
}

static bool lb_tls_has_session(const lb_conn_t *c);

static const lb_io_t  lb_io_tls = {
    lb_tls_recv, lb_tls_send, lb_tls_sendv, lb_tls_shutdown, false, lb_tls_close
};

/* Handshakes ---------------------------------------------------------------- */

/* One more go at the handshake of c, either side: LB_OK when it is done
 * (the handshake timer is gone, and both events are marked ready, since
 * application bytes may be buffered already), LB_AGAIN when it waits for
 * the event it cleared, LB_ERROR when it failed. */
static int
lb_tls_handshake_step(lb_conn_t *c)
{
    int  rc, err;

    ERR_clear_error();
    errno = 0;
    rc = SSL_do_handshake(c->io_ctx);
    if (rc == 1) {
        lb_event_timer_del(&c->read);
        c->read.ready = 1;
        c->write.ready = 1;
        return LB_OK;
    }
    err = SSL_get_error(c->io_ctx, rc);
    if (err == SSL_ERROR_WANT_READ) {
        c->read.ready = 0;
        return LB_AGAIN;
    }
    if (err == SSL_ERROR_WANT_WRITE) {
        c->write.ready = 0;
        return LB_AGAIN;
    }
    return LB_ERROR;
}

static void
lb_tls_handshake(lb_conn_t *c)
{
    const char  *why;
    int          rc = lb_tls_handshake_step(c);

    if (rc == LB_OK) {
        lb_metric_add(c->listener->m_tls_ok, 1);
        c->read.handler = NULL;
        c->write.handler = NULL;
        lb_listener_next(c);
        return;
    }
    if (rc == LB_AGAIN) {
        return;
    }
    lb_metric_add(c->listener->m_tls_failed, 1);
    why = lb_tls_error_text();
    lb_log_info("*%llu client %s: TLS handshake failed: %s", (unsigned long long) c->id,
                c->peer_text, *why ? why : errno ? strerror(errno)
                                     : "the client closed the connection");
    lb_conn_close(c);
}

static void
lb_tls_handshake_handler(lb_event_t *ev)
{
    lb_conn_t  *c = ev->data;

    if (ev->timedout) {
        ev->timedout = 0;
        lb_log_info("*%llu client %s: TLS handshake timed out; closing",
                    (unsigned long long) c->id, c->peer_text);
        lb_metric_add(c->listener->m_tls_failed, 1);
        lb_conn_close(c);
        return;
    }
    lb_tls_handshake(c);
}

/* Plain HTTP on an https port --------------------------------------------------
 * A client that speaks plain HTTP to an https port (http:// typed for
 * https://) gets a 400 it can read, as from nginx, rather than a reset it
 * cannot explain. Its first bytes are an HTTP method and a space, where a
 * TLS record starts with its content type (0x16 for a handshake), which
 * is no letter: the bytes are peeked, not read, so a TLS client's go to
 * OpenSSL untouched. */

#define LB_TLS_SNIFF        16          /* longer than any method it must see */
#define LB_TLS_LINGER_TIME  2000        /* as the http listener's linger */
#define LB_TLS_LINGER_READ  (1024 * 1024)

#define LB_TLS_PLAIN_BODY   "400 The plain HTTP request was sent to HTTPS port\n"

static const char  lb_tls_plain_http_400[] =
    "HTTP/1.1 400 Bad Request\r\n"
    "Server: lbd\r\n"
    "Content-Type: text/plain\r\n"
    "Content-Length: 50\r\n"
    "Connection: close\r\n"
    "\r\n"
    LB_TLS_PLAIN_BODY;

/* LB_OK: TLS (or not HTTP: the handshake will say what it is), LB_DECLINED:
 * plain HTTP, LB_AGAIN: too few bytes yet to tell. */
static int
lb_tls_sniff(lb_conn_t *c)
{
    char     buf[LB_TLS_SNIFF];
    ssize_t  n, i;

    n = recv(c->fd, buf, sizeof(buf), MSG_PEEK);
    if (n == -1 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
        c->read.ready = 0;
        return LB_AGAIN;
    }
    if (n <= 0) {
        return LB_OK;
    }
    for (i = 0; i < n && buf[i] >= 'A' && buf[i] <= 'Z'; i++) {
        /* an HTTP method (RFC 9110 §9: the registered ones are uppercase) */
    }
    if (i > 0 && i < n && buf[i] == ' ') {
        return LB_DECLINED;
    }
    if (i == n && n < LB_TLS_SNIFF && !c->rdhup) {
        c->read.ready = 0;              /* "GE": the next bytes will tell */
        return LB_AGAIN;
    }
    return LB_OK;
}

/* After the 400: drains what the client still sends, so that unread bytes
 * do not turn the close into a reset that destroys the answer, until it
 * closes or LB_TLS_LINGER_TIME passes. */
static void
lb_tls_plain_linger(lb_event_t *ev)
{
    static char  buf[4096];
    lb_conn_t   *c = ev->data;
    size_t       total = 0;
    ssize_t      n;

    if (ev->timedout) {
        lb_conn_close(c);
        return;
    }
    while (total < LB_TLS_LINGER_READ) {
        n = recv(c->fd, buf, sizeof(buf), 0);
        if (n > 0) {
            total += (size_t) n;
            continue;
        }
        if (n == -1 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
            c->read.ready = 0;
            return;
        }
        break;
    }
    if (total < LB_TLS_LINGER_READ) {
        lb_conn_close(c);               /* the client closed, or failed */
    }
}

static void
lb_tls_answer_plain_http(lb_conn_t *c)
{
    lb_log_info("*%llu client %s: plain HTTP sent to the https listener \"%s\"; "
                "answering 400", (unsigned long long) c->id, c->peer_text, c->listener->name);
    /* far smaller than an empty socket buffer: it goes whole or not at all */
    if (send(c->fd, lb_tls_plain_http_400, sizeof(lb_tls_plain_http_400) - 1,
             MSG_NOSIGNAL) == -1 || shutdown(c->fd, SHUT_WR) == -1)
    {
        lb_conn_close(c);
        return;
    }
    c->read.handler = lb_tls_plain_linger;
    c->write.handler = NULL;
    lb_event_timer_set(&c->read, LB_TLS_LINGER_TIME);
    lb_tls_plain_linger(&c->read);
}

static void
lb_tls_sniff_handler(lb_event_t *ev)
{
    lb_conn_t  *c = ev->data;
    int         rc;

    if (ev->timedout) {
        lb_tls_handshake_handler(ev);
        return;
    }
    rc = lb_tls_sniff(c);
    if (rc == LB_AGAIN) {
        return;
    }
    if (rc == LB_DECLINED) {
        lb_tls_answer_plain_http(c);
        return;
    }
    c->read.handler = lb_tls_handshake_handler;
    c->write.handler = lb_tls_handshake_handler;
    lb_tls_handshake(c);
}

void
lb_tls_accept(lb_conn_t *c, const lb_tls_listener_t *tl)
{
    SSL  *ssl;

    ssl = SSL_new(tl->ctx);
    if (ssl == NULL || !SSL_set_fd(ssl, c->fd)) {
        lb_log_error_limited(0, "*%llu client %s: cannot start TLS: %s",
                             (unsigned long long) c->id, c->peer_text, lb_tls_error_text());
        if (ssl) {
            SSL_free(ssl);
        }
        lb_conn_close(c);
        return;
    }
    SSL_set_accept_state(ssl);
    c->io_ctx = ssl;
    c->io = &lb_io_tls;
    c->read.handler = lb_tls_handshake_handler;
    c->write.handler = lb_tls_handshake_handler;
    if (lb_loop_add_conn(c, false) != LB_OK) {
        lb_log_error_limited(errno, "*%llu client %s: cannot watch the connection",
                             (unsigned long long) c->id, c->peer_text);
        lb_conn_close(c);
        return;
    }
    lb_event_timer_set(&c->read, tl->handshake_timeout);
    if (tl->plain_http_400) {
        c->read.handler = lb_tls_sniff_handler;
        c->write.handler = lb_tls_sniff_handler;
        lb_tls_sniff_handler(&c->read);
        return;
    }
    lb_tls_handshake(c);
}

/* Client handshakes ----------------------------------------------------------- */

typedef struct {
    void  (*done)(lb_conn_t *c, bool ok);
} lb_tls_client_t;

/* The read event's timer is the handshake's deadline; the write event's,
 * set to 0 by lb_tls_connect, its first step, so that done never runs
 * inside lb_tls_connect. Both are gone when done is called. */
static void
lb_tls_client_handler(lb_event_t *ev)
{
    lb_conn_t   *c = ev->data;
    void       (*done)(lb_conn_t *c, bool ok) = SSL_get_app_data(c->io_ctx);
    int          rc;

    if (ev->timedout) {
        ev->timedout = 0;
        if (!ev->write) {
            lb_log_info("*%llu upstream %s: TLS handshake timed out",
                        (unsigned long long) c->id, c->peer_text);
            lb_event_timer_del(&c->write);
            done(c, false);
            return;
        }
    }
    rc = lb_tls_handshake_step(c);
    if (rc != LB_AGAIN) {
        lb_event_timer_del(&c->read);
        lb_event_timer_del(&c->write);
        done(c, rc == LB_OK);
    }
}

int
lb_tls_connect(lb_conn_t *c, lb_tls_ctx_t *ctx, const char *sni, lb_msec_t timeout,
               void (*done)(lb_conn_t *c, bool ok))
{
    SSL  *ssl = SSL_new(ctx);

    if (ssl == NULL || !SSL_set_fd(ssl, c->fd)
        || (sni && *sni && (!SSL_set_tlsext_host_name(ssl, sni) || !SSL_set1_host(ssl, sni))))
    {
        if (ssl) {
            SSL_free(ssl);
        }
        return LB_ERROR;
    }
    SSL_set_connect_state(ssl);
    SSL_set_app_data(ssl, (void *) done);
    c->io_ctx = ssl;
    c->io = &lb_io_tls;
    c->read.handler = lb_tls_client_handler;
    c->write.handler = lb_tls_client_handler;
    lb_event_timer_set(&c->read, timeout);
    c->write.ready = 1;
    lb_event_timer_set(&c->write, 0);
    return LB_OK;
}

const char *
lb_tls_verify_error(lb_conn_t *c)
{
    long  vr;

    if (lb_tls_has_session(c)) {
        vr = SSL_get_verify_result(c->io_ctx);
        if (vr != X509_V_OK) {
            return X509_verify_cert_error_string(vr);
        }
    }
    return lb_tls_error_text();
}

/* Upstreams ------------------------------------------------------------------- */

void
lb_tls_set_upstream_lookup(lb_tls_upstream_t *(*lookup)(void **confs))
{
    lb_tls_upstream_lookup = lookup;
}

lb_tls_upstream_t *
lb_tls_upstream(void **confs)
{
    return lb_tls_upstream_lookup && confs ? lb_tls_upstream_lookup(confs) : NULL;
}

void
lb_tls_set_upstream_rebuild(lb_tls_upstream_rebuild_pt rebuild)
{
    lb_tls_upstream_rebuilder = rebuild;
}

int
lb_tls_upstream_rebuild(void **confs, lb_pool_t *pool, const lb_tls_upstream_t *want,
                        const char *ca_pem, size_t ca_len, char *err, size_t size)
{
    if (lb_tls_upstream_rebuilder == NULL) {
        snprintf(err, size, "no tls module is built in");
        return LB_ERROR;
    }
    return lb_tls_upstream_rebuilder(confs, pool, want, ca_pem, ca_len, err, size);
}

static bool
lb_tls_same_text(const char *a, const char *b)
{
    return a == b || (a && b && strcmp(a, b) == 0);
}

bool
lb_tls_upstream_same(const lb_tls_upstream_t *a, const lb_tls_upstream_t *b)
{
    if (a == NULL || b == NULL) {
        return a == b;
    }
    return a->verify == b->verify && lb_tls_same_text(a->sni, b->sni)
           && lb_tls_same_text(a->ca, b->ca);
}

lb_tls_ctx_t *
lb_tls_client_unverified(void)
{
    static SSL_CTX  *ctx;

    if (ctx == NULL) {
        ctx = SSL_CTX_new(TLS_client_method());
        if (ctx) {
            SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
            SSL_CTX_set_options(ctx, SSL_OP_IGNORE_UNEXPECTED_EOF | SSL_OP_NO_RENEGOTIATION);
            SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
        }
    }
    return ctx;
}

/* What modules may ask ----------------------------------------------------------- */

void
lb_tls_adopt(lb_conn_t *c, void *session)
{
    c->io = &lb_io_tls;
    c->io_ctx = session;
}

bool
lb_conn_is_tls(const lb_conn_t *c)
{
    return c->io == &lb_io_tls;
}

/* On the TLS layer with a session to ask (lbctl's connections have none). */
static bool
lb_tls_has_session(const lb_conn_t *c)
{
    return c->io == &lb_io_tls && c->io_ctx != NULL;
}

const char *
lb_tls_sni(lb_conn_t *c)
{
    const char  *s;

    if (!lb_tls_has_session(c)) {
        return "";
    }
    s = SSL_get_servername(c->io_ctx, TLSEXT_NAMETYPE_host_name);
    return s ? s : "";
}

const char *
lb_tls_protocol(lb_conn_t *c)
{
    return lb_tls_has_session(c) ? SSL_get_version(c->io_ctx) : "";
}

const char *
lb_tls_cipher(lb_conn_t *c)
{
    const char  *s;

    if (!lb_tls_has_session(c)) {
        return "";
    }
    s = SSL_get_cipher_name(c->io_ctx);
    return s ? s : "";
}

const char *
lb_tls_client_verify(lb_conn_t *c)
{
    static char  buf[160];
    X509        *cert;
    long         r;

    if (!lb_tls_has_session(c)) {
        return "";
    }
    cert = SSL_get1_peer_certificate(c->io_ctx);
    if (cert == NULL) {
        return "NONE";
    }
    X509_free(cert);
    r = SSL_get_verify_result(c->io_ctx);
    if (r == X509_V_OK) {
        return "SUCCESS";
    }
    snprintf(buf, sizeof(buf), "FAILED:%s", X509_verify_cert_error_string(r));
    return buf;
}
