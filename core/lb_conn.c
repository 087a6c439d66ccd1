/*
 * lb_conn.c: connection objects, their free list and the plain I/O layer.
 */
#include "lb_core.h"
#include "lb_ipcount.h"

#include <fcntl.h>
#include <netinet/tcp.h>

#define LB_CONN_POOL_SIZE  2048
#define LB_CONN_CHUNK      64

uint64_t  lb_conn_next_id = 1;
size_t    lb_conn_active;

static lb_queue_t  lb_conn_free_list = { &lb_conn_free_list, &lb_conn_free_list };
static lb_queue_t  lb_conn_chunks = { &lb_conn_chunks, &lb_conn_chunks };

typedef struct {
    lb_queue_t  link;
    lb_conn_t   conns[LB_CONN_CHUNK];
} lb_conn_chunk_t;

/* The common tail of the plain I/O calls: EAGAIN clears the event's ready
 * flag (the loop will say when to try again), anything else is an error. */
static ssize_t
lb_io_plain_failed(lb_conn_t *c, lb_event_t *ev)
{
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
        ev->ready = 0;
        return LB_AGAIN;
    }
    c->error = 1;
    return LB_ERROR;
}

static ssize_t
lb_io_plain_recv(lb_conn_t *c, char *buf, size_t size)
{
    ssize_t  n;

    do {
        n = recv(c->fd, buf, size, 0);
    } while (n == -1 && errno == EINTR);

    if (n == 0) {
        c->eof = 1;
    } else if (n > 0 && (size_t) n < size && !c->rdhup) {
        /* a short read drained the socket: new bytes will raise a new
         * edge, so no read is needed just to see EAGAIN. Not after a FIN
         * was seen: its edge is spent, and the 0 must still be read. */
        c->read.ready = 0;
    }
    return n >= 0 ? n : lb_io_plain_failed(c, &c->read);
}

static ssize_t
lb_io_plain_send(lb_conn_t *c, const char *buf, size_t size)
{
    ssize_t  n;

    do {
        n = send(c->fd, buf, size, MSG_NOSIGNAL);
    } while (n == -1 && errno == EINTR);

    return n >= 0 ? n : lb_io_plain_failed(c, &c->write);
}

static ssize_t
lb_io_plain_sendv(lb_conn_t *c, const struct iovec *iov, int iovcnt)
{
    struct msghdr  msg = { .msg_iov = (struct iovec *) iov, .msg_iovlen = (size_t) iovcnt };
    ssize_t        n;

    do {
        n = sendmsg(c->fd, &msg, MSG_NOSIGNAL);
    } while (n == -1 && errno == EINTR);

    return n >= 0 ? n : lb_io_plain_failed(c, &c->write);
}

static int
lb_io_plain_shutdown(lb_conn_t *c)
{
    if (shutdown(c->fd, SHUT_WR) == -1 && errno != ENOTCONN) {
        return LB_ERROR;
    }
    c->shut_wr = 1;
    return LB_OK;
}

const lb_io_t  lb_io_plain = {
    lb_io_plain_recv, lb_io_plain_send, lb_io_plain_sendv, lb_io_plain_shutdown, true, NULL
};

static int
lb_conn_grow(void)
{
    lb_conn_chunk_t  *chunk;
    int               i;

    chunk = calloc(1, sizeof(*chunk));
    if (chunk == NULL) {
        return LB_ERROR;
    }
    lb_queue_insert_tail(&lb_conn_chunks, &chunk->link);
    for (i = 0; i < LB_CONN_CHUNK; i++) {
        chunk->conns[i].fd = -1;
        lb_queue_insert_tail(&lb_conn_free_list, &chunk->conns[i].link);
    }
    return LB_OK;
}

lb_conn_t *
lb_conn_get(int fd)
{
    lb_queue_t  *q;
    lb_conn_t   *c;
    lb_pool_t   *pool;

    if (lb_queue_empty(&lb_conn_free_list) && lb_conn_grow() != LB_OK) {
        return NULL;
    }
    q = lb_queue_head(&lb_conn_free_list);
    lb_queue_remove(q);
    c = lb_queue_data(q, lb_conn_t, link);

    pool = c->pool;
    memset(c, 0, sizeof(*c));
    c->pool = pool;
    c->fd = fd;
    c->io = &lb_io_plain;
    c->id = lb_conn_next_id++;
    c->read.data = c;
    c->write.data = c;
    c->write.write = 1;
    c->read.timer.index = LB_TIMER_UNSET;
    c->write.timer.index = LB_TIMER_UNSET;
    lb_queue_init(&c->link);
    lb_conn_active++;
    return c;
}

lb_pool_t *
lb_conn_pool(lb_conn_t *c)
{
    if (c->pool == NULL) {
        c->pool = lb_pool_create(LB_CONN_POOL_SIZE);
    }
    return c->pool;
}

void
lb_conn_close(lb_conn_t *c)
{
    if (c->ip_counted) {
        lb_ipcount_release(c->listener->ipcount, c->ip_key);
        c->ip_counted = 0;
    }
    if (c->fd == -1) {
        return;
    }
    lb_event_timer_del(&c->read);
    lb_event_timer_del(&c->write);
    if (c->io->close) {
        c->io->close(c);
    }
    c->io = &lb_io_plain;
    c->io_ctx = NULL;
    /* close(2) removes the descriptor from epoll; no EPOLL_CTL_DEL needed */
    c->registered = 0;
    close(c->fd);
    c->fd = -1;
    c->read.handler = NULL;
    c->write.handler = NULL;
    lb_queue_insert_tail(&lb_loop->closed, &c->link);
}

void
lb_conn_release_closed(void)
{
    lb_queue_t  *q;
    lb_conn_t   *c;

    while (!lb_queue_empty(&lb_loop->closed)) {
        q = lb_queue_head(&lb_loop->closed);
        lb_queue_remove(q);
        c = lb_queue_data(q, lb_conn_t, link);
        if (c->pool) {
            lb_pool_reset(c->pool);
        }
        lb_conn_active--;
        lb_queue_insert_head(&lb_conn_free_list, &c->link);
    }
}

void
lb_conn_free_cache(void)
{
    lb_queue_t       *q;
    lb_conn_chunk_t  *chunk;
    int               i;

    while (!lb_queue_empty(&lb_conn_chunks)) {
        q = lb_queue_head(&lb_conn_chunks);
        lb_queue_remove(q);
        chunk = lb_queue_data(q, lb_conn_chunk_t, link);
        for (i = 0; i < LB_CONN_CHUNK; i++) {
            lb_pool_destroy(chunk->conns[i].pool);
        }
        free(chunk);
    }
    lb_queue_init(&lb_conn_free_list);
}

int
lb_socket_nonblocking(int fd)
{
    int  flags = fcntl(fd, F_GETFL);

    if (flags == -1 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) == -1) {
        return LB_ERROR;
    }
    return LB_OK;
}

/* An outgoing connection's peer is the address it was opened to. */
static void
lb_conn_set_peer(lb_conn_t *c, const lb_addr_t *addr)
{
    memcpy(&c->peer, &addr->u, addr->len);
    c->peer_len = addr->len;
    memcpy(c->peer_text, addr->text, lb_min(sizeof(c->peer_text), sizeof(addr->text)));
    c->peer_text[sizeof(c->peer_text) - 1] = '\0';
}

int
lb_conn_connect(const lb_addr_t *addr, lb_conn_t **out)
{
    lb_conn_t  *c;
    int         fd, one = 1, rc;

    fd = socket(addr->u.sa.sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd == -1) {
        return LB_ERROR;
    }
    if (addr->u.sa.sa_family != AF_UNIX) {
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    }

    c = lb_conn_get(fd);
    if (c == NULL) {
        close(fd);
        errno = ENOMEM;
        return LB_ERROR;
    }
    lb_conn_set_peer(c, addr);

    rc = connect(fd, &addr->u.sa, addr->len);
    if (rc == -1 && errno != EINPROGRESS) {
        rc = errno;
        lb_conn_close(c);
        errno = rc;
        return LB_ERROR;
    }
    if (lb_loop_add_conn(c, false) != LB_OK) {
        rc = errno;
        lb_conn_close(c);
        errno = rc;
        return LB_ERROR;
    }
    *out = c;
    return rc == 0 ? LB_OK : LB_AGAIN;
}

int
lb_conn_connect_dgram(const lb_addr_t *addr, lb_conn_t **out)
{
    lb_conn_t  *c;
    int         fd, err;

    fd = socket(addr->u.sa.sa_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd == -1) {
        return LB_ERROR;
    }
    if (connect(fd, &addr->u.sa, addr->len) == -1) {
        err = errno;
        close(fd);
        errno = err;
        return LB_ERROR;
    }
    c = lb_conn_get(fd);
    if (c == NULL) {
        close(fd);
        errno = ENOMEM;
        return LB_ERROR;
    }
    lb_conn_set_peer(c, addr);
    *out = c;
    return LB_OK;
}

bool
lb_conn_error_is_local(int err)
{
    switch (err) {
    case EMFILE:
    case ENFILE:
    case ENOBUFS:
    case ENOMEM:
    case EADDRNOTAVAIL:
    case ENOSPC:
        return true;
    default:
        return false;
    }
}

int
lb_conn_connect_result(lb_conn_t *c)
{
    int        err = 0;
    socklen_t  len = sizeof(err);

    /* a failed connect always raises EPOLLERR: without it, no need to ask */
    if (!c->error) {
        return LB_OK;
    }
    if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) == -1) {
        err = errno;
    }
    if (err) {
        errno = err;
        return LB_ERROR;
    }
    return LB_OK;
}
