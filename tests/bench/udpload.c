/*
 * udpload: load generator and echo backend for the udp section of lbd's
 * benchmark (tests/bench/run).  Single-threaded epoll loops with a hard
 * deadline; the load prints one "key=value ..." line for the script.
 *
 *   udpload echo HOST:PORT [--deadline S]
 *       echoes every datagram to its sender (recvmmsg/sendmmsg batches)
 *   udpload load HOST:PORT --clients N --seconds S [--inflight K] [--size B]
 *       N sockets, each its own source port, keep K datagrams of B bytes in
 *       flight in total: each reply is answered by a datagram from the next
 *       socket in turn, so every client address is used.  A lull of 100ms
 *       counts what is in flight as lost and starts K new ones.
 */

#define _GNU_SOURCE

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define BATCH       64
#define DGRAM_MAX   65536
#define MAX_CLIENTS 60000
#define LULL_MS     100

static volatile sig_atomic_t stop_requested;

static void usage(void)
{
    fprintf(stderr,
        "usage: udpload echo HOST:PORT [--deadline S]\n"
        "       udpload load HOST:PORT --clients N --seconds S [--inflight K]"
        " [--size B]\n");
    exit(2);
}

static void die(const char *what)
{
    fprintf(stderr, "udpload: %s: %s\n", what, strerror(errno));
    exit(1);
}

static void on_signal(int sig)
{
    (void) sig;
    stop_requested = 1;
}

static double now_sec(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double) ts.tv_sec + (double) ts.tv_nsec / 1e9;
}

static void parse_addr(const char *s, struct sockaddr_in *sin)
{
    char        host[64];
    const char *colon = strrchr(s, ':');
    size_t      n;

    memset(sin, 0, sizeof(*sin));
    sin->sin_family = AF_INET;
    if (colon == NULL || (n = (size_t) (colon - s)) >= sizeof(host)) {
        usage();
    }
    memcpy(host, s, n);
    host[n] = '\0';
    if (inet_pton(AF_INET, n ? host : "127.0.0.1", &sin->sin_addr) != 1) {
        usage();
    }
    sin->sin_port = htons((uint16_t) atoi(colon + 1));
}

static double parse_num(const char *name, const char *s, double min, double max)
{
    char   *end;
    double  v = strtod(s, &end);

    if (*end != '\0' || v < min || v > max) {
        fprintf(stderr, "udpload: %s must be in %g..%g, not %s\n", name, min, max, s);
        exit(2);
    }
    return v;
}

static void big_buffers(int fd)
{
    int size = 4 << 20;

    if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &size, sizeof(size)) == -1) {
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof(size));
    }
    if (setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &size, sizeof(size)) == -1) {
        setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &size, sizeof(size));
    }
}

/* ------------------------------------------------------------ echo */

static int run_echo(const struct sockaddr_in *addr, double deadline)
{
    static char              bufs[BATCH][DGRAM_MAX];
    static struct mmsghdr    msgs[BATCH];
    static struct iovec      iov[BATCH];
    static struct sockaddr_in names[BATCH];
    struct epoll_event       ev = { .events = EPOLLIN };
    int                      fd, ep, n, i, sent, rc;

    fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
    if (fd == -1) {
        die("socket");
    }
    big_buffers(fd);
    if (bind(fd, (const struct sockaddr *) addr, sizeof(*addr)) == -1) {
        die("bind");
    }
    ep = epoll_create1(0);
    if (ep == -1 || epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) == -1) {
        die("epoll");
    }
    while (!stop_requested && now_sec() < deadline) {
        if (epoll_wait(ep, &ev, 1, 200) <= 0) {
            continue;
        }
        for ( ;; ) {
            for (i = 0; i < BATCH; i++) {
                iov[i].iov_base = bufs[i];
                iov[i].iov_len = DGRAM_MAX;
                msgs[i].msg_hdr.msg_iov = &iov[i];
                msgs[i].msg_hdr.msg_iovlen = 1;
                msgs[i].msg_hdr.msg_name = &names[i];
                msgs[i].msg_hdr.msg_namelen = sizeof(names[i]);
            }
            n = recvmmsg(fd, msgs, BATCH, 0, NULL);
            if (n <= 0) {
                break;
            }
            for (i = 0; i < n; i++) {
                iov[i].iov_len = msgs[i].msg_len;
            }
            for (sent = 0; sent < n; sent += rc) {
                rc = sendmmsg(fd, msgs + sent, (unsigned) (n - sent), 0);
                if (rc <= 0) {
                    break;      /* full: the rest is dropped */
                }
            }
            if (n < BATCH) {
                break;
            }
        }
    }
    return 0;
}

/* ------------------------------------------------------------ load */

static int run_load(const struct sockaddr_in *addr, int nclients, double seconds,
                    int inflight, size_t size)
{
    static char          buf[DGRAM_MAX], payload[DGRAM_MAX];
    static struct mmsghdr msgs[BATCH];
    static struct iovec   iov[BATCH];
    struct epoll_event    evs[256], ev;
    struct sockaddr_in    local;
    int                  *fds, ep, i, j, n, k, next = 0;
    long long             sent = 0, received = 0, lost = 0, errors = 0, outstanding = 0;
    double                start, end, last_reply;

    fds = calloc((size_t) nclients, sizeof(int));
    ep = epoll_create1(0);
    if (fds == NULL || ep == -1) {
        die("setup");
    }
    memset(payload, 'u', size);
    memset(&local, 0, sizeof(local));
    local.sin_family = AF_INET;
    local.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    for (i = 0; i < nclients; i++) {
        fds[i] = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
        if (fds[i] == -1) {
            die("socket (raise ulimit -n)");
        }
        if (bind(fds[i], (struct sockaddr *) &local, sizeof(local)) == -1
            || connect(fds[i], (const struct sockaddr *) addr, sizeof(*addr)) == -1)
        {
            die("bind/connect");
        }
        ev.events = EPOLLIN;
        ev.data.u32 = (uint32_t) i;
        if (epoll_ctl(ep, EPOLL_CTL_ADD, fds[i], &ev) == -1) {
            die("epoll_ctl");
        }
    }
    for (i = 0; i < BATCH; i++) {
        iov[i].iov_base = buf;
        iov[i].iov_len = sizeof(buf);
        msgs[i].msg_hdr.msg_iov = &iov[i];
        msgs[i].msg_hdr.msg_iovlen = 1;
    }

#define SEND_NEXT()                                                   \
    do {                                                              \
        if (send(fds[next], payload, size, 0) == (ssize_t) size) {    \
            sent++;                                                   \
            outstanding++;                                            \
        } else {                                                      \
            errors++;                                                 \
        }                                                             \
        next = next + 1 == nclients ? 0 : next + 1;                   \
    } while (0)

    start = now_sec();
    end = start + seconds;
    last_reply = start;
    for (i = 0; i < inflight; i++) {
        SEND_NEXT();
    }
    while (!stop_requested) {
        double t = now_sec();

        if (t >= end) {
            break;
        }
        n = epoll_wait(ep, evs, 256, 20);
        if (n <= 0) {
            if (now_sec() - last_reply > LULL_MS / 1000.0) {
                lost += outstanding;
                outstanding = 0;
                last_reply = now_sec();
                for (i = 0; i < inflight; i++) {
                    SEND_NEXT();
                }
            }
            continue;
        }
        for (j = 0; j < n; j++) {
            k = recvmmsg(fds[evs[j].data.u32], msgs, BATCH, MSG_DONTWAIT, NULL);
            if (k <= 0) {
                continue;
            }
            received += k;
            outstanding = outstanding > k ? outstanding - k : 0;
            for (i = 0; i < k; i++) {
                SEND_NEXT();
            }
        }
        last_reply = now_sec();
    }
    end = now_sec();
    printf("udpload clients=%d sent=%lld received=%lld lost=%lld errors=%lld "
           "elapsed=%.3f dgrams_per_sec=%.0f\n", nclients, sent, received, lost, errors,
           end - start, (double) received / (end - start));
    return received > 0 ? 0 : 1;
}

int main(int argc, char **argv)
{
    struct sockaddr_in  addr;
    struct rlimit       rl;
    double              deadline = 3600, seconds = 3;
    int                 i, clients = 1000, inflight = 256;
    size_t              size = 64;

    if (argc < 3) {
        usage();
    }
    signal(SIGTERM, on_signal);
    signal(SIGINT, on_signal);
    parse_addr(argv[2], &addr);
    for (i = 3; i < argc; i++) {
        if (i + 1 >= argc) {
            usage();
        }
        if (strcmp(argv[i], "--deadline") == 0) {
            deadline = parse_num("--deadline", argv[++i], 1, 86400);
        } else if (strcmp(argv[i], "--clients") == 0) {
            clients = (int) parse_num("--clients", argv[++i], 1, MAX_CLIENTS);
        } else if (strcmp(argv[i], "--seconds") == 0) {
            seconds = parse_num("--seconds", argv[++i], 0.1, 3600);
        } else if (strcmp(argv[i], "--inflight") == 0) {
            inflight = (int) parse_num("--inflight", argv[++i], 1, 100000);
        } else if (strcmp(argv[i], "--size") == 0) {
            size = (size_t) parse_num("--size", argv[++i], 0, 65507);
        } else {
            usage();
        }
    }
    if (strcmp(argv[1], "echo") == 0) {
        return run_echo(&addr, now_sec() + deadline);
    }
    if (strcmp(argv[1], "load") == 0) {
        if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < (rlim_t) clients + 64) {
            rl.rlim_cur = rl.rlim_max < (rlim_t) clients + 64 ? rl.rlim_max
                                                              : (rlim_t) clients + 64;
            setrlimit(RLIMIT_NOFILE, &rl);
        }
        return run_load(&addr, clients, seconds, inflight, size);
    }
    usage();
    return 2;
}
