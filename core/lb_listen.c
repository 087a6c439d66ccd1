/*
 * lb_listen.c: listening sockets. The master owns one SO_REUSEPORT socket
 * per worker slot and address and keeps it across reloads and worker
 * restarts, so the kernel's queue of pending connections for that slot
 * outlives any one worker. Workers accept on their slot's socket only.
 */
#include "lb_core.h"
#include "lb_ipcount.h"

#include <fcntl.h>
#include <netinet/tcp.h>
#include <sys/stat.h>
#include <sys/un.h>

typedef struct {
    lb_addr_t  addr;
    int        socktype;
    int        slot;        /* -1: one socket shared by every slot (unix) */
    int        fd;
    bool       used;
} lb_socket_t;

static lb_socket_t  *lb_sockets;
static size_t        lb_nsockets, lb_sockets_cap;

static lb_socket_t *
lb_socket_find(const lb_addr_t *addr, int socktype, int slot)
{
    size_t  i;

    for (i = 0; i < lb_nsockets; i++) {
        if (lb_sockets[i].fd != -1 && lb_sockets[i].socktype == socktype
            && lb_sockets[i].slot == slot && lb_addr_equal(&lb_sockets[i].addr, addr))
        {
            return &lb_sockets[i];
        }
    }
    return NULL;
}

/* Before the first SO_REUSEPORT socket of an address, bind one without it:
 * that fails when anyone else (another lbd too) already listens there,
 * which SO_REUSEPORT would otherwise silently share. */
static int
lb_socket_probe(const lb_addr_t *addr, int socktype)
{
    int  fd, one = 1, rc, err;

    if (addr->u.sa.sa_family == AF_UNIX) {
        /* a socket file someone still accepts on is in use; one left by a
         * process that is gone (connect refused) may be replaced */
        fd = socket(AF_UNIX, socktype | SOCK_CLOEXEC, 0);
        if (fd == -1) {
            return LB_ERROR;
        }
        rc = connect(fd, &addr->u.sa, addr->len);
        close(fd);
        if (rc == 0) {
            errno = EADDRINUSE;
            return LB_ERROR;
        }
        return LB_OK;
    }
    fd = socket(addr->u.sa.sa_family, socktype | SOCK_CLOEXEC, 0);
    if (fd == -1) {
        return LB_ERROR;
    }
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (addr->u.sa.sa_family == AF_INET6) {
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
    }
    rc = bind(fd, &addr->u.sa, addr->len);
    err = errno;
    close(fd);
    errno = err;
    return rc == 0 ? LB_OK : LB_ERROR;
}

static int
lb_socket_create(const lb_addr_t *addr, int socktype, int unix_mode)
{
    int          fd, one = 1, err, rc;
    struct stat  st;
    mode_t       mask = 0;

    fd = socket(addr->u.sa.sa_family, socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd == -1) {
        return -1;
    }
    if (addr->u.sa.sa_family == AF_UNIX) {
        /* a socket file left by a previous run that nobody listens on */
        if (stat(addr->u.sun.sun_path, &st) == 0 && S_ISSOCK(st.st_mode)) {
            unlink(addr->u.sun.sun_path);
        }
    } else {
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        if (setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) == -1) {
            goto failed;
        }
        if (addr->u.sa.sa_family == AF_INET6) {
            setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
        }
        if (socktype == SOCK_STREAM) {
            /* accepted sockets inherit it: no setsockopt per connection */
            setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        }
    }
    if (addr->u.sa.sa_family == AF_UNIX && unix_mode) {
        /* the file is born with its mode: no moment with the umask's */
        mask = umask((mode_t) ~unix_mode & 0777);
    }
    rc = bind(fd, &addr->u.sa, addr->len);
    if (addr->u.sa.sa_family == AF_UNIX && unix_mode) {
        umask(mask);
    }
    if (rc == -1) {
        goto failed;
    }
    if (socktype == SOCK_STREAM && listen(fd, 4096) == -1) {
        goto failed;
    }
    return fd;

failed:
    err = errno;
    close(fd);
    errno = err;
    return -1;
}

static lb_socket_t *
lb_socket_add(const lb_addr_t *addr, int socktype, int slot, int fd)
{
    lb_socket_t  *s;

    if (lb_nsockets == lb_sockets_cap) {
        s = realloc(lb_sockets, (lb_sockets_cap ? 2 * lb_sockets_cap : 16) * sizeof(*s));
        if (s == NULL) {
            return NULL;
        }
        lb_sockets = s;
        lb_sockets_cap = lb_sockets_cap ? 2 * lb_sockets_cap : 16;
    }
    s = &lb_sockets[lb_nsockets++];
    s->addr = *addr;
    s->socktype = socktype;
    s->slot = slot;
    s->fd = fd;
    s->used = false;
    return s;
}

/* A listener cannot have addr: logged. True when lbd goes on without it
 * (an optional listener: its sockets of that address are -1). */
static bool
lb_socket_give_up(lb_listener_t *ls, const lb_addr_t *addr, int workers)
{
    size_t  a = (size_t) (addr - (lb_addr_t *) ls->addrs.elts);
    int     slot;

    if (!ls->optional) {
        lb_log_error(errno, "cannot listen on %s for listener \"%s\"", addr->text, ls->name);
        return false;
    }
    lb_log_error(errno, "cannot listen on %s for \"%s\"; going on without it", addr->text,
                 ls->name);
    for (slot = 0; slot < workers; slot++) {
        ls->fds[a * (size_t) workers + (size_t) slot] = -1;
    }
    return true;
}

int
lb_sockets_open(lb_cycle_t *cycle)
{
    lb_listener_t  *ls;
    lb_addr_t      *addr;
    lb_socket_t    *s;
    size_t          i, a, first_new = lb_nsockets;
    int             slot, workers = (int) cycle->core->workers, fd, shared;

    for (i = 0; i < cycle->listeners.nelts; i++) {
        ls = lb_array_at(&cycle->listeners, lb_listener_t *, i);
        ls->fds = lb_palloc(cycle->pool, ls->addrs.nelts * (size_t) workers * sizeof(int));
        if (ls->fds == NULL) {
            goto failed;
        }
        for (a = 0; a < ls->addrs.nelts; a++) {
            addr = &lb_array_at(&ls->addrs, lb_addr_t, a);
            /* a unix socket cannot be bound twice; a helper's listener
             * needs one socket, not one per worker slot */
            shared = addr->u.sa.sa_family == AF_UNIX || ls->helper != NULL;

            if (lb_socket_find(addr, ls->socktype, shared ? -1 : 0) == NULL
                && lb_socket_probe(addr, ls->socktype) != LB_OK)
            {
                if (lb_socket_give_up(ls, addr, workers)) {
                    continue;
                }
                goto failed;
            }
            for (slot = 0; slot < workers; slot++) {
                s = lb_socket_find(addr, ls->socktype, shared ? -1 : slot);
                if (s == NULL) {
                    fd = lb_socket_create(addr, ls->socktype, ls->unix_mode);
                    if (fd == -1) {
                        if (lb_socket_give_up(ls, addr, workers)) {
                            break;
                        }
                        goto failed;
                    }
                    s = lb_socket_add(addr, ls->socktype, shared ? -1 : slot, fd);
                    if (s == NULL) {
                        close(fd);
                        lb_log_error(ENOMEM, "cannot track listening sockets");
                        goto failed;
                    }
                }
                ls->fds[a * (size_t) workers + (size_t) slot] = s->fd;
            }
        }
    }
    return LB_OK;

failed:
    /* undo only what this call created */
    for (i = first_new; i < lb_nsockets; i++) {
        close(lb_sockets[i].fd);
    }
    lb_nsockets = first_new;
    return LB_ERROR;
}

void
lb_sockets_close_unused(lb_cycle_t *cycle)
{
    lb_listener_t  *ls;
    size_t          i, j, a, n;
    int             workers = (int) cycle->core->workers;

    for (j = 0; j < lb_nsockets; j++) {
        lb_sockets[j].used = false;
    }
    for (i = 0; i < cycle->listeners.nelts; i++) {
        ls = lb_array_at(&cycle->listeners, lb_listener_t *, i);
        n = ls->addrs.nelts * (size_t) workers;
        for (a = 0; a < n; a++) {
            for (j = 0; j < lb_nsockets; j++) {
                if (lb_sockets[j].fd == ls->fds[a]) {
                    lb_sockets[j].used = true;
                }
            }
        }
    }
    for (i = 0, j = 0; j < lb_nsockets; j++) {
        if (lb_sockets[j].used) {
            lb_sockets[i++] = lb_sockets[j];
        } else {
            if (lb_sockets[j].addr.u.sa.sa_family == AF_UNIX) {
                unlink(lb_sockets[j].addr.u.sun.sun_path);
            }
            close(lb_sockets[j].fd);
        }
    }
    lb_nsockets = i;
}

/* Binary upgrade ---------------------------------------------------------- */

size_t
lb_sockets_count(void)
{
    return lb_nsockets;
}

bool
lb_sockets_get(size_t i, const lb_addr_t **addr, int *socktype, int *slot, int *fd)
{
    if (i >= lb_nsockets || lb_sockets[i].fd == -1) {
        return false;
    }
    *addr = &lb_sockets[i].addr;
    *socktype = lb_sockets[i].socktype;
    *slot = lb_sockets[i].slot;
    *fd = lb_sockets[i].fd;
    return true;
}

/* Whether fd is a socket bound to addr, of socktype, listening when it is a
 * stream socket: what an inherited descriptor must be to stand in for one
 * lbd would open. */
static bool
lb_socket_is(int fd, const lb_addr_t *addr, int socktype)
{
    struct sockaddr_storage  ss;
    socklen_t                len = sizeof(int), slen = sizeof(ss);
    int                      type = -1, listening = 0, domain = -1;

    if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) == -1 || type != socktype
        || (len = sizeof(int), getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &len)) == -1
        || domain != addr->u.sa.sa_family
        || getsockname(fd, (struct sockaddr *) &ss, &slen) == -1)
    {
        return false;
    }
    if (socktype == SOCK_STREAM
        && ((len = sizeof(int)), getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &len)
            == -1 || !listening))
    {
        return false;
    }
    switch (domain) {
    case AF_INET:
        return memcmp(&((struct sockaddr_in *) &ss)->sin_addr, &addr->u.sin.sin_addr, 4) == 0
               && ((struct sockaddr_in *) &ss)->sin_port == addr->u.sin.sin_port;
    case AF_INET6:
        return memcmp(&((struct sockaddr_in6 *) &ss)->sin6_addr, &addr->u.sin6.sin6_addr, 16)
               == 0 && ((struct sockaddr_in6 *) &ss)->sin6_port == addr->u.sin6.sin6_port;
    case AF_UNIX:
        return strncmp(((struct sockaddr_un *) &ss)->sun_path, addr->u.sun.sun_path,
                       sizeof(addr->u.sun.sun_path)) == 0;
    default:
        return false;
    }
}

int
lb_sockets_adopt(const lb_addr_t *addr, int socktype, int slot, int fd)
{
    int  flags;

    if (!lb_socket_is(fd, addr, socktype)) {
        return LB_DECLINED;
    }
    flags = fcntl(fd, F_GETFL);
    if (flags == -1 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) == -1
        || fcntl(fd, F_SETFD, FD_CLOEXEC) == -1
        || lb_socket_add(addr, socktype, slot, fd) == NULL)
    {
        return LB_ERROR;
    }
    return LB_OK;
}

void
lb_sockets_forget_all(void)
{
    size_t  i;

    /* the new master listens on them: close our copies, remove no file */
    for (i = 0; i < lb_nsockets; i++) {
        close(lb_sockets[i].fd);
    }
    lb_nsockets = 0;
}

void
lb_sockets_close_all(void)
{
    size_t  i;

    for (i = 0; i < lb_nsockets; i++) {
        if (lb_sockets[i].addr.u.sa.sa_family == AF_UNIX) {
            unlink(lb_sockets[i].addr.u.sun.sun_path);
        }
        close(lb_sockets[i].fd);
    }
    lb_nsockets = 0;
}

/* Accepting ------------------------------------------------------------- */

static void
lb_listener_resume(lb_timer_t *t)
{
    lb_conn_t  *lc = t->data;

    if (!lb_worker_quitting && lb_loop_add_conn(lc, true) != LB_OK) {
        lb_log_error(errno, "cannot resume accepting on listener \"%s\"", lc->listener->name);
    }
}

/* Out of descriptors or memory: the listening socket is level-triggered,
 * so it would wake the loop again at once and spin while the shortage
 * lasts. Take it out of epoll for LB_LISTEN_PAUSE_MSEC instead; the kernel
 * keeps queueing connections meanwhile. */
#define LB_LISTEN_PAUSE_MSEC  100

static void
lb_listener_pause(lb_conn_t *lc)
{
    lb_loop_del_conn(lc);
    lb_timer_init(&lc->read.timer, lb_listener_resume, lc);
    lb_timer_set(&lc->read.timer, LB_LISTEN_PAUSE_MSEC);
}

/* max_conns_per_ip: counts c under its client's address. false when c
 * was over the cap and is closed; an http listener answers such a client
 * itself (c->over_ip_cap). */
static bool
lb_listener_count_ip(lb_listener_t *ls, lb_conn_t *c)
{
    uint64_t  key = lb_ipcount_key(ls->ipcount, ls->ip_key, (struct sockaddr *) &c->peer,
                                   ls->ipv6_prefix);

    switch (lb_ipcount_take(ls->ipcount, key, ls->max_conns_per_ip)) {
    case LB_IPCOUNT_OK:
        c->ip_key = key;
        c->ip_counted = 1;
        return true;
    case LB_IPCOUNT_FULL:
        lb_log_error_limited(0, "the connections-per-address table is full; a connection "
                             "from %s on listener \"%s\" is let in uncounted",
                             c->peer_text, ls->name);
        return true;
    default:
        break;
    }
    lb_metric_add(ls->m_ip_refused, 1);
    lb_log_limited(LB_LOG_WARN, 0, "client %s has max_conns_per_ip (%u) connections open to "
                         "listener \"%s\"; %s", c->peer_text, ls->max_conns_per_ip, ls->name,
                         ls->answers_ip_cap ? "answering 429" : "closing the new one");
    if (ls->answers_ip_cap) {
        c->over_ip_cap = 1;
        return true;
    }
    lb_conn_close(c);
    return false;
}

static void
lb_listener_accept(lb_event_t *ev)
{
    lb_conn_t               *lc = ev->data, *c;
    lb_listener_t           *ls = lc->listener;
    struct sockaddr_storage  peer;
    socklen_t                len;
    int                      fd, i;

    for (i = 0; i < 64; i++) {
        len = sizeof(peer);
        fd = accept4(lc->fd, (struct sockaddr *) &peer, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd == -1) {
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                return;
            }
            if (errno == EINTR || errno == ECONNABORTED || errno == EPROTO) {
                continue;
            }
            /* EMFILE, ENFILE, ENOBUFS, ENOMEM: this repeats for every
             * pending client of every listener while it lasts */
            lb_log_error_limited(errno, "accept4() failed on listener \"%s\"; pausing it "
                                 "for %dms", ls->name, LB_LISTEN_PAUSE_MSEC);
            lb_listener_pause(lc);
            return;
        }

        c = lb_conn_get(fd);
        if (c == NULL) {
            lb_log_error_limited(ENOMEM, "cannot allocate a connection on listener \"%s\"; "
                                 "pausing it for %dms", ls->name, LB_LISTEN_PAUSE_MSEC);
            close(fd);
            lb_listener_pause(lc);
            return;
        }
        memcpy(&c->peer, &peer, len);
        c->peer_len = len;
        lb_addr_format((struct sockaddr *) &peer, len, c->peer_text, sizeof(c->peer_text));
        c->listener = ls;
        lb_metric_add(ls->m_connections, 1);
        lb_listener_next(c);
    }
}

int
lb_listener_add_step(lb_listener_t *ls, lb_accept_step_pt step)
{
    if (ls->nsteps == LB_LISTENER_MAX_STEPS) {
        return LB_ERROR;
    }
    ls->steps[ls->nsteps++] = step;
    return LB_OK;
}

void
lb_listener_next(lb_conn_t *c)
{
    lb_listener_t  *ls = c->listener;

    /* max_conns_per_ip counts the client's address once it is known: at
     * accept, or after the PROXY header that names it (the first step),
     * before any TLS handshake */
    if (ls->ipcount && !c->ip_checked && c->accept_step == ls->ip_check_step) {
        c->ip_checked = 1;
        if (!lb_listener_count_ip(ls, c)) {
            return;
        }
    }

    if (c->accept_step < ls->nsteps) {
        ls->steps[c->accept_step++](c);
        return;
    }
    ls->handler(c);
}

/* Starts accepting on slot's sockets of ls. */
static int
lb_listener_start(lb_cycle_t *cycle, lb_listener_t *ls, int slot)
{
    lb_conn_t  *lc;
    size_t      a;
    int         workers = (int) cycle->core->workers;

    ls->conns = lb_pcalloc(cycle->pool, ls->addrs.nelts * sizeof(lb_conn_t *));
    if (ls->conns == NULL) {
        return LB_ERROR;
    }
    for (a = 0; a < ls->addrs.nelts; a++) {
        if (ls->fds[a * (size_t) workers + (size_t) slot] == -1) {
            continue;           /* an optional listener lbd could not have */
        }
        lc = lb_conn_get(ls->fds[a * (size_t) workers + (size_t) slot]);
        if (lc == NULL) {
            return LB_ERROR;
        }
        lc->listener = ls;
        lc->data = ls;
        if (ls->socktype == SOCK_STREAM) {
            lc->read.handler = lb_listener_accept;
        } else {
            ls->handler(lc);        /* datagram listeners read themselves */
        }
        if (lb_loop_add_conn(lc, ls->socktype == SOCK_STREAM) != LB_OK) {
            lb_log_error(errno, "cannot watch listener \"%s\"", ls->name);
            return LB_ERROR;
        }
        ls->conns[a] = lc;
    }
    return LB_OK;
}

int
lb_listeners_start(lb_cycle_t *cycle, int slot)
{
    lb_listener_t  *ls;
    size_t          i;

    for (i = 0; i < cycle->listeners.nelts; i++) {
        ls = lb_array_at(&cycle->listeners, lb_listener_t *, i);
        if (ls->helper == NULL && lb_listener_start(cycle, ls, slot) != LB_OK) {
            return LB_ERROR;
        }
    }
    return LB_OK;
}

int
lb_listeners_start_helper(lb_cycle_t *cycle, lb_module_t *m)
{
    lb_listener_t  *ls;
    size_t          i;

    for (i = 0; i < cycle->listeners.nelts; i++) {
        ls = lb_array_at(&cycle->listeners, lb_listener_t *, i);
        if (ls->helper == m && lb_listener_start(cycle, ls, 0) != LB_OK) {
            return LB_ERROR;
        }
    }
    return LB_OK;
}

/* A worker inherits every listening socket the master holds; it keeps only
 * its own slot's, so that when the master and the slot's worker close a
 * socket (graceful stop), no stray copy keeps it open and accepting into a
 * queue nobody serves. */
void
lb_sockets_keep_slot(lb_cycle_t *cycle, int slot, lb_module_t *helper)
{
    lb_listener_t  *ls;
    size_t          i, j, a, n;
    int             workers = (int) cycle->core->workers;
    bool            mine;

    for (j = 0; j < lb_nsockets; j++) {
        mine = false;
        for (i = 0; i < cycle->listeners.nelts && !mine; i++) {
            ls = lb_array_at(&cycle->listeners, lb_listener_t *, i);
            if (ls->helper != helper) {
                continue;
            }
            n = ls->addrs.nelts;
            for (a = 0; a < n && !mine; a++) {
                mine = ls->fds[a * (size_t) workers + (size_t) slot] == lb_sockets[j].fd;
            }
        }
        if (!mine) {
            close(lb_sockets[j].fd);
        }
    }
    lb_nsockets = 0;        /* this process owns no table: the master does */
}

/* Stops accepting. The worker's descriptor is closed, but the socket lives
 * on in the master and in the next worker of the slot, so connections still
 * queued on it are served by that worker, not reset. A datagram socket is
 * only no longer read: its sessions still send replies through it, and
 * the protocol module closes it (stop_worker). */
void
lb_listeners_stop(lb_cycle_t *cycle)
{
    lb_listener_t  *ls;
    size_t          i, a;

    for (i = 0; i < cycle->listeners.nelts; i++) {
        ls = lb_array_at(&cycle->listeners, lb_listener_t *, i);
        for (a = 0; ls->conns && a < ls->addrs.nelts; a++) {
            if (ls->conns[a]) {
                lb_timer_del(&ls->conns[a]->read.timer);
                lb_loop_del_conn(ls->conns[a]);
                if (ls->socktype == SOCK_DGRAM) {
                    continue;
                }
                lb_conn_close(ls->conns[a]);
                ls->conns[a] = NULL;
            }
        }
    }
}
