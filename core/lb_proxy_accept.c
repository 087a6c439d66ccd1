/*
 * lb_proxy_accept.c: the accept step of listeners with
 * accept_proxy_protocol = true. It peeks at the connection until a whole
 * PROXY header is there, takes exactly the header's bytes off the socket
 * (the payload behind it stays for the listener's handler) and makes the
 * header's source address the client's address. The parser it uses is in
 * lb_proxy_protocol.c.
 */
#include "lb_core.h"
#include "lb_proxy_protocol.h"

static void
lb_proxy_accept_refuse(lb_conn_t *c, const char *why)
{
    lb_log_info("*%llu client %s: %s on listener \"%s\" (accept_proxy_protocol is on); "
                "closing", (unsigned long long) c->id, c->peer_text, why, c->listener->name);
    lb_conn_close(c);
}

static void
lb_proxy_accept_read(lb_event_t *ev)
{
    lb_conn_t          *c = ev->data;
    lb_proxy_header_t   h;
    uint8_t             buf[LB_PROXY_MAX_LEN];
    const char         *why;
    char                real[LB_ADDR_TEXT_LEN];
    ssize_t             n;
    int                 rc;

    if (ev->timedout) {
        lb_proxy_accept_refuse(c, "no complete PROXY protocol header within 5s");
        return;
    }
    do {
        n = recv(c->fd, buf, sizeof(buf), MSG_PEEK);
    } while (n == -1 && errno == EINTR);
    if (n == -1) {
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            c->read.ready = 0;
            return;
        }
        lb_log_info("*%llu client %s: reading the PROXY protocol header failed: %s; closing",
                    (unsigned long long) c->id, c->peer_text, strerror(errno));
        lb_conn_close(c);
        return;
    }
    if (n == 0) {
        lb_proxy_accept_refuse(c, "connection closed before a PROXY protocol header");
        return;
    }

    rc = lb_proxy_parse(&h, buf, (size_t) n, &why);
    if (rc == LB_AGAIN) {
        if (c->rdhup) {
            /* the peer's FIN is behind these bytes: no more will come */
            lb_proxy_accept_refuse(c, "connection closed in the middle of a PROXY "
                                      "protocol header");
            return;
        }
        c->read.ready = 0;      /* peeked all there is: wait for more */
        return;
    }
    if (rc == LB_ERROR) {
        lb_proxy_accept_refuse(c, why);
        return;
    }

    /* take the header, exactly: it is all in the socket already */
    do {
        n = recv(c->fd, buf, h.len, 0);
    } while (n == -1 && errno == EINTR);
    if (n != (ssize_t) h.len) {
        lb_log_info("*%llu client %s: cannot take the PROXY protocol header off the socket: "
                    "%s; closing", (unsigned long long) c->id, c->peer_text,
                    n == -1 ? strerror(errno) : "short read");
        lb_conn_close(c);
        return;
    }

    lb_event_timer_del(&c->read);
    c->read.handler = NULL;
    c->read.ready = 1;      /* the payload may follow in the same segment */

    if (!h.local) {
        memcpy(real, c->peer_text, sizeof(real));
        memcpy(&c->peer, &h.src, h.addr_len);
        c->peer_len = h.addr_len;
        lb_addr_format((struct sockaddr *) &c->peer, c->peer_len, c->peer_text,
                       sizeof(c->peer_text));
        lb_log_debug("*%llu PROXY v%d header from %s: client is %s",
                     (unsigned long long) c->id, h.version, real, c->peer_text);
    } else {
        lb_log_debug("*%llu PROXY v%d header from %s without a client address; "
                     "keeping the connection's", (unsigned long long) c->id, h.version,
                     c->peer_text);
    }
    lb_listener_next(c);
}

void
lb_proxy_protocol_accept_step(lb_conn_t *c)
{
    if (lb_loop_add_conn(c, false) != LB_OK) {
        lb_log_error_limited(errno, "*%llu client %s: cannot watch the connection",
                             (unsigned long long) c->id, c->peer_text);
        lb_conn_close(c);
        return;
    }
    c->read.handler = lb_proxy_accept_read;
    c->write.handler = NULL;
    lb_event_timer_set(&c->read, LB_PROXY_ACCEPT_TIMEOUT);
    /* the header often arrives with the handshake's last ACK */
    lb_proxy_accept_read(&c->read);
}

size_t
lb_proxy_header_for(int version, lb_conn_t *c, uint8_t buf[LB_PROXY_BUILD_MAX_LEN])
{
    struct sockaddr_storage  local;
    socklen_t                len = sizeof(local);
    size_t                   n;

    if (getsockname(c->fd, (struct sockaddr *) &local, &len) == -1) {
        return 0;
    }
    n = lb_proxy_build(version, buf, LB_PROXY_BUILD_MAX_LEN, (struct sockaddr *) &c->peer,
                       (struct sockaddr *) &local);
    if (n == 0) {
        errno = EINVAL;
    }
    return n;
}

int
lb_proxy_send_header(int version, lb_conn_t *c, lb_conn_t *server)
{
    uint8_t  hdr[LB_PROXY_BUILD_MAX_LEN];
    size_t   n = lb_proxy_header_for(version, c, hdr);
    ssize_t  sent;

    if (n == 0) {
        return LB_ERROR;
    }
    sent = send(server->fd, hdr, n, MSG_NOSIGNAL);
    if (sent != (ssize_t) n) {
        errno = sent == -1 ? errno : EAGAIN;
        return LB_ERROR;
    }
    return LB_OK;
}
