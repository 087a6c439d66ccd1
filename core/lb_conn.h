/*
 * lb_conn.h: connections. An lb_conn_t wraps one socket, its two events and
 * an I/O layer (lb_io_t): plain sockets today, TLS later, without the
 * modules above noticing. Connection objects and their pools are recycled
 * through a free list, so a steady stream of connections does not malloc.
 */
#ifndef LB_CONN_H
#define LB_CONN_H

#include <sys/uio.h>

/* An I/O layer. recv/send return bytes (> 0), 0 for end of stream (recv),
 * LB_AGAIN when the socket would block (clearing the event's ready flag)
 * or LB_ERROR with errno set. */
typedef struct {
    ssize_t (*recv)(lb_conn_t *c, char *buf, size_t size);
    ssize_t (*send)(lb_conn_t *c, const char *buf, size_t size);
    ssize_t (*sendv)(lb_conn_t *c, const struct iovec *iov, int iovcnt);
    /* Half-close our sending side: LB_OK, LB_AGAIN, LB_ERROR. */
    int     (*shutdown)(lb_conn_t *c);
    /* true when bytes may move with splice(2) on c->fd directly */
    bool      raw;
    /* Frees the layer's state (c->io_ctx) when the connection closes;
     * NULL when there is none. */
    void    (*close)(lb_conn_t *c);
} lb_io_t;

extern const lb_io_t  lb_io_plain;

struct lb_conn_s {
    int               fd;
    lb_event_t        read;
    lb_event_t        write;
    void             *data;         /* owner: session, request, listener */
    const lb_io_t    *io;
    void             *io_ctx;       /* state of the I/O layer (TLS) */
    lb_pool_t        *pool;         /* reset when the connection is freed */
    lb_listener_t    *listener;     /* for accepted connections */
    uint64_t          id;           /* "*ID" in log lines */
    struct sockaddr_storage  peer;
    socklen_t         peer_len;
    char              peer_text[LB_ADDR_TEXT_LEN];
    lb_queue_t        link;         /* free list, closed list */
    unsigned          registered:1;
    unsigned          eof:1;        /* the peer finished sending */
    unsigned          shut_wr:1;    /* we finished sending */
    unsigned          error:1;      /* the socket reported an error */
    unsigned          rdhup:1;      /* the peer's FIN (or a hang-up) was seen */
    unsigned          accept_step:3;    /* accept steps done (lb_listener_next) */
    unsigned          ip_checked:1;     /* max_conns_per_ip looked at it */
    unsigned          ip_counted:1;     /* in its listener's max_conns_per_ip table */
    unsigned          over_ip_cap:1;    /* over max_conns_per_ip: to be refused */
    uint64_t          ip_key;           /* its key there */
};

extern uint64_t  lb_conn_next_id;
extern size_t    lb_conn_active;        /* connections in use in this process */

/* Takes a connection object for fd (from the free list when possible), with
 * a fresh id, plain I/O and cleared events. NULL on allocation failure. */
lb_conn_t *lb_conn_get(int fd);
/* Closes the socket and retires the object: its timers are removed at once,
 * and it returns to the free list (pool reset) after the current batch of
 * events, so later events of the batch for it are skipped safely. */
void       lb_conn_close(lb_conn_t *c);
void       lb_conn_release_closed(void);
/* Frees every cached connection object (worker exit). */
void       lb_conn_free_cache(void);
/* Lazily creates the connection's pool. NULL on failure. */
lb_pool_t *lb_conn_pool(lb_conn_t *c);

static inline ssize_t lb_conn_recv(lb_conn_t *c, char *buf, size_t n) { return c->io->recv(c, buf, n); }
static inline ssize_t lb_conn_send(lb_conn_t *c, const char *buf, size_t n) { return c->io->send(c, buf, n); }

/* Starts a non-blocking connect to addr and registers the new connection
 * with the loop. Returns LB_OK (connected), LB_AGAIN (in progress: wait for
 * the write event, then call lb_conn_connect_result) or LB_ERROR (errno;
 * ask lb_conn_error_is_local(errno) whose fault it is). */
int lb_conn_connect(const lb_addr_t *addr, lb_conn_t **out);

/* A datagram socket connected to addr (so that it receives from addr
 * alone, and a refusal comes back as ECONNREFUSED on a read), not yet
 * registered with the loop: the caller registers it as it needs. LB_OK,
 * or LB_ERROR (errno). */
int lb_conn_connect_dgram(const lb_addr_t *addr, lb_conn_t **out);

/* Whether errno `err` of a failed lb_conn_connect (or of a socket(2) or
 * connect(2) made directly, as the udp module does) is a shortage on this
 * host rather than a fault of the server:
 *   EMFILE, ENFILE    no descriptor for the socket (process or system limit)
 *   ENOBUFS, ENOMEM   no kernel memory for the socket, or no connection object
 *   EADDRNOTAVAIL     no free ephemeral port (connect(2) on Linux says so
 *                     when ip_local_port_range is used up)
 *   ENOSPC            epoll's max_user_watches reached when registering
 * The contract for a caller that got LB_ERROR with such an errno:
 *   - it is not the server's failure: no lb_upstream_connected(server,
 *     false), so no fails count and no fail_timeout; release the server
 *     with lb_upstream_release;
 *   - no other server is tried: the shortage is this host's, the next
 *     connect would meet it too and only multiply the errors (ephemeral
 *     ports are counted per destination, but running out of them for one
 *     server means the host is out of ports for practical purposes);
 *   - log it as a local error with lb_log_error_limited (it repeats once
 *     per client while it lasts), naming the server and saying it is not
 *     marked failed;
 *   - answer the client: http 503 (the service is unavailable here, for
 *     now), tcp close, udp drop the datagram.
 * Any other errno is the server's (or the network's): lb_upstream_connected
 * (server, false), then the next server as `retries` allows. Errors that
 * lb_conn_connect_result reports later, from SO_ERROR, are always the
 * server's. */
bool lb_conn_error_is_local(int err);
/* After the write event of a pending connect: LB_OK or LB_ERROR (errno). */
int lb_conn_connect_result(lb_conn_t *c);

int lb_socket_nonblocking(int fd);

#endif
