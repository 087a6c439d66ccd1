/*
 * lbbench: load generator and backend servers for lbd's layer-4 benchmark
 * (tests/bench/run).  One binary, several subcommands, each a single-threaded
 * epoll loop with a hard deadline.  Servers print nothing but errors; the
 * clients print one "key=value ..." line for the bench script to parse.
 *
 *   lbbench sink   [HOST:]PORT [--deadline S]   read and discard
 *   lbbench source [HOST:]PORT [--deadline S]   write forever until peer closes
 *   lbbench echo   [HOST:]PORT [--deadline S]   write back what is read
 *   lbbench bulk   HOST:PORT --conns N --bytes B --dir up|down [--seconds S]
 *                  [--timeout S]
 *   lbbench short  HOST:PORT --conc C --duration S [--size N] [--timeout S]
 */

#define _GNU_SOURCE

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
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

#define IO_BUF_SIZE  (256 * 1024)
#define ECHO_BUF_SIZE (16 * 1024)
#define MAX_EVENTS   256
#define MAX_CONNS    100000

static volatile sig_atomic_t stop_requested;
static char io_buf[IO_BUF_SIZE];

static void usage(void)
{
    fprintf(stderr,
        "usage: lbbench sink|source|echo [HOST:]PORT [--deadline S]\n"
        "       lbbench bulk HOST:PORT --conns N --bytes B --dir up|down"
        " [--seconds S] [--timeout S]\n"
        "       lbbench short HOST:PORT --conc C --duration S [--size N]"
        " [--timeout S]\n");
    exit(2);
}

static void die(const char *what)
{
    fprintf(stderr, "lbbench: %s: %s\n", what, strerror(errno));
    exit(1);
}

static double now_sec(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double) ts.tv_sec + (double) ts.tv_nsec / 1e9;
}

static void on_signal(int sig)
{
    (void) sig;
    stop_requested = 1;
}

static void setup_process(void)
{
    struct sigaction sa;
    struct rlimit rl;

    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    /* Thousands of short connections are in flight or closing at once. */
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    memset(io_buf, 'x', sizeof(io_buf));
}

/* Parses "[HOST:]PORT" (IPv4 host; default 127.0.0.1).  Exits on error. */
static void parse_addr(const char *s, struct sockaddr_in *sin)
{
    char host[64] = "127.0.0.1";
    const char *colon = strrchr(s, ':');
    const char *port_str = s;
    char *end;
    long port;

    if (colon != NULL) {
        size_t len = (size_t) (colon - s);

        if (len == 0 || len >= sizeof(host)) {
            fprintf(stderr, "lbbench: bad address \"%s\"\n", s);
            exit(2);
        }
        memcpy(host, s, len);
        host[len] = '\0';
        port_str = colon + 1;
    }
    errno = 0;
    port = strtol(port_str, &end, 10);
    if (errno != 0 || *end != '\0' || end == port_str || port < 1
        || port > 65535)
    {
        fprintf(stderr, "lbbench: bad port in \"%s\"\n", s);
        exit(2);
    }
    memset(sin, 0, sizeof(*sin));
    sin->sin_family = AF_INET;
    sin->sin_port = htons((uint16_t) port);
    if (inet_pton(AF_INET, host, &sin->sin_addr) != 1) {
        fprintf(stderr, "lbbench: bad IPv4 host in \"%s\"\n", s);
        exit(2);
    }
}

static double parse_num(const char *name, const char *s, double min, double max)
{
    char *end;
    double v;

    errno = 0;
    v = strtod(s, &end);
    /* Accept k/m/g suffixes (powers of 1024) for sizes. */
    if (end != s && *end != '\0' && end[1] == '\0') {
        switch (*end) {
        case 'k': case 'K': v *= 1024.0; end++; break;
        case 'm': case 'M': v *= 1024.0 * 1024.0; end++; break;
        case 'g': case 'G': v *= 1024.0 * 1024.0 * 1024.0; end++; break;
        default: break;
        }
    }
    if (errno != 0 || end == s || *end != '\0' || !(v >= min && v <= max)) {
        fprintf(stderr, "lbbench: bad value for %s: \"%s\"\n", name, s);
        exit(2);
    }
    return v;
}

static void epoll_set(int ep, int op, int fd, uint32_t events, uint64_t data)
{
    struct epoll_event ev;

    memset(&ev, 0, sizeof(ev));
    ev.events = events;
    ev.data.u64 = data;
    if (epoll_ctl(ep, op, fd, &ev) < 0) {
        die("epoll_ctl");
    }
}

/* ---------------------------------------------------------------- servers */

enum server_mode { MODE_SINK, MODE_SOURCE, MODE_ECHO };

/* Per-connection echo state, indexed by fd; buffers are reused across fds. */
typedef struct {
    char   *buf;
    size_t  len;        /* bytes pending to write back */
    size_t  off;        /* bytes of them already written */
} echo_conn_t;

static echo_conn_t *echo_conns;
static size_t echo_nconns;

static echo_conn_t *echo_conn(int fd)
{
    if ((size_t) fd >= echo_nconns) {
        size_t n = echo_nconns ? echo_nconns : 1024;
        echo_conn_t *p;

        while (n <= (size_t) fd) {
            n *= 2;
        }
        p = realloc(echo_conns, n * sizeof(*p));
        if (p == NULL) {
            die("realloc");
        }
        memset(p + echo_nconns, 0, (n - echo_nconns) * sizeof(*p));
        echo_conns = p;
        echo_nconns = n;
    }
    if (echo_conns[fd].buf == NULL) {
        echo_conns[fd].buf = malloc(ECHO_BUF_SIZE);
        if (echo_conns[fd].buf == NULL) {
            die("malloc");
        }
    }
    return &echo_conns[fd];
}

/* Writes pending echo bytes.  Returns 0 when flushed, 1 when blocked,
 * -1 on error. */
static int echo_flush(int fd, echo_conn_t *c)
{
    while (c->off < c->len) {
        ssize_t n = write(fd, c->buf + c->off, c->len - c->off);

        if (n < 0) {
            return (errno == EAGAIN || errno == EINTR) ? 1 : -1;
        }
        c->off += (size_t) n;
    }
    c->len = c->off = 0;
    return 0;
}

static void server_close(int ep, int fd)
{
    epoll_ctl(ep, EPOLL_CTL_DEL, fd, NULL);
    close(fd);
}

static void server_echo_event(int ep, int fd)
{
    echo_conn_t *c = echo_conn(fd);
    int rc;

    if (c->len > 0) {
        /* Blocked on write: only EPOLLOUT (or an error) gets here. */
        rc = echo_flush(fd, c);
        if (rc < 0) {
            server_close(ep, fd);
        } else if (rc == 0) {
            epoll_set(ep, EPOLL_CTL_MOD, fd, EPOLLIN, (uint64_t) fd);
        }
        return;
    }
    for (int i = 0; i < 16; i++) {
        ssize_t n = read(fd, c->buf, ECHO_BUF_SIZE);

        if (n == 0) {
            server_close(ep, fd);
            return;
        }
        if (n < 0) {
            if (errno == EAGAIN || errno == EINTR) {
                return;
            }
            server_close(ep, fd);
            return;
        }
        c->len = (size_t) n;
        c->off = 0;
        rc = echo_flush(fd, c);
        if (rc < 0) {
            server_close(ep, fd);
            return;
        }
        if (rc == 1) {
            epoll_set(ep, EPOLL_CTL_MOD, fd, EPOLLOUT, (uint64_t) fd);
            return;
        }
    }
}

static void server_sink_event(int ep, int fd)
{
    for (int i = 0; i < 16; i++) {
        ssize_t n = read(fd, io_buf, sizeof(io_buf));

        if (n > 0) {
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
            return;
        }
        server_close(ep, fd);
        return;
    }
}

static void server_source_event(int ep, int fd, uint32_t events)
{
    if (events & (EPOLLIN | EPOLLHUP | EPOLLERR | EPOLLRDHUP)) {
        ssize_t n = read(fd, io_buf, sizeof(io_buf));

        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
            server_close(ep, fd);
            return;
        }
    }
    if (events & EPOLLOUT) {
        for (int i = 0; i < 4; i++) {
            ssize_t n = write(fd, io_buf, sizeof(io_buf));

            if (n < 0) {
                if (errno != EAGAIN && errno != EINTR) {
                    server_close(ep, fd);
                }
                return;
            }
        }
    }
}

static int run_server(enum server_mode mode, int argc, char **argv)
{
    struct sockaddr_in sin;
    struct epoll_event events[MAX_EVENTS];
    double deadline_s = 3600.0;
    double deadline;
    int one = 1;
    int lfd, ep;

    if (argc < 1) {
        usage();
    }
    parse_addr(argv[0], &sin);
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--deadline") == 0 && i + 1 < argc) {
            deadline_s = parse_num("--deadline", argv[++i], 0.001, 1e7);
        } else {
            usage();
        }
    }
    deadline = now_sec() + deadline_s;

    lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (lfd < 0) {
        die("socket");
    }
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(lfd, (struct sockaddr *) &sin, sizeof(sin)) < 0) {
        die("bind");
    }
    if (listen(lfd, 4096) < 0) {
        die("listen");
    }
    ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0) {
        die("epoll_create1");
    }
    epoll_set(ep, EPOLL_CTL_ADD, lfd, EPOLLIN, (uint64_t) lfd);

    while (!stop_requested && now_sec() < deadline) {
        int n = epoll_wait(ep, events, MAX_EVENTS, 200);

        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            die("epoll_wait");
        }
        for (int i = 0; i < n; i++) {
            int fd = (int) events[i].data.u64;
            uint32_t ev = events[i].events;

            if (fd != lfd) {
                switch (mode) {
                case MODE_SINK:   server_sink_event(ep, fd); break;
                case MODE_SOURCE: server_source_event(ep, fd, ev); break;
                case MODE_ECHO:   server_echo_event(ep, fd); break;
                }
                continue;
            }
            for (int k = 0; k < 256; k++) {
                int cfd = accept4(lfd, NULL, NULL,
                                  SOCK_NONBLOCK | SOCK_CLOEXEC);
                uint32_t want = EPOLLIN;

                if (cfd < 0) {
                    if (errno != EAGAIN && errno != EINTR
                        && errno != ECONNABORTED)
                    {
                        fprintf(stderr, "lbbench: accept: %s\n",
                                strerror(errno));
                    }
                    break;
                }
                if (mode == MODE_ECHO) {
                    setsockopt(cfd, IPPROTO_TCP, TCP_NODELAY, &one,
                               sizeof(one));
                    echo_conn(cfd)->len = 0;
                    echo_conn(cfd)->off = 0;
                } else if (mode == MODE_SOURCE) {
                    want = EPOLLIN | EPOLLOUT | EPOLLRDHUP;
                }
                epoll_set(ep, EPOLL_CTL_ADD, cfd, want, (uint64_t) cfd);
            }
        }
    }
    return 0;
}

/* ---------------------------------------------------------------- clients */

/* Starts a non-blocking connect.  Returns the fd, or -1 with errno set. */
static int client_connect(const struct sockaddr_in *sin)
{
    int one = 1;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

    if (fd < 0) {
        return -1;
    }
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (connect(fd, (const struct sockaddr *) sin, sizeof(*sin)) < 0
        && errno != EINPROGRESS)
    {
        int err = errno;

        close(fd);
        errno = err;
        return -1;
    }
    return fd;
}

static int socket_error(int fd)
{
    int err = 0;
    socklen_t len = sizeof(err);

    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0) {
        return errno;
    }
    return err;
}

enum bulk_state { BULK_CONNECTING, BULK_XFER, BULK_DRAIN, BULK_DONE };

typedef struct {
    int              fd;
    enum bulk_state  state;
    uint64_t         bytes;
} bulk_conn_t;

/*
 * Up: write --bytes, shut down the write side, wait for the proxy to close
 * (so the bytes have left the proxy).  Down: read --bytes from a source
 * backend, then close.  --seconds caps the transfer (bytes actually moved
 * are reported); --timeout is the hard deadline.
 */
static int run_bulk(int argc, char **argv)
{
    struct sockaddr_in sin;
    struct epoll_event events[MAX_EVENTS];
    bulk_conn_t *conns;
    long nconns = 4;
    uint64_t target = 1ULL << 30;
    double seconds = 1e9, timeout = 120.0;
    int up = -1;
    long active, errors = 0;
    uint64_t total = 0;
    double start, end, soft_end, hard_end;
    int timed_out = 0;
    int ep;

    if (argc < 1) {
        usage();
    }
    parse_addr(argv[0], &sin);
    for (int i = 1; i < argc; i++) {
        if (i + 1 >= argc) {
            usage();
        }
        if (strcmp(argv[i], "--conns") == 0) {
            nconns = (long) parse_num("--conns", argv[++i], 1, 10000);
        } else if (strcmp(argv[i], "--bytes") == 0) {
            target = (uint64_t) parse_num("--bytes", argv[++i], 1, 1e15);
        } else if (strcmp(argv[i], "--seconds") == 0) {
            seconds = parse_num("--seconds", argv[++i], 0.01, 1e7);
        } else if (strcmp(argv[i], "--timeout") == 0) {
            timeout = parse_num("--timeout", argv[++i], 0.01, 1e7);
        } else if (strcmp(argv[i], "--dir") == 0) {
            i++;
            if (strcmp(argv[i], "up") == 0) {
                up = 1;
            } else if (strcmp(argv[i], "down") == 0) {
                up = 0;
            } else {
                usage();
            }
        } else {
            usage();
        }
    }
    if (up < 0) {
        usage();
    }

    conns = calloc((size_t) nconns, sizeof(*conns));
    ep = epoll_create1(EPOLL_CLOEXEC);
    if (conns == NULL || ep < 0) {
        die("setup");
    }
    start = now_sec();
    soft_end = start + seconds;
    hard_end = start + timeout;
    active = nconns;
    for (long i = 0; i < nconns; i++) {
        conns[i].fd = client_connect(&sin);
        if (conns[i].fd < 0) {
            fprintf(stderr, "lbbench: connect: %s\n", strerror(errno));
            conns[i].state = BULK_DONE;
            errors++;
            active--;
            continue;
        }
        conns[i].state = BULK_CONNECTING;
        epoll_set(ep, EPOLL_CTL_ADD, conns[i].fd, EPOLLOUT, (uint64_t) i);
    }

    end = start;
    while (active > 0 && !stop_requested) {
        double t = now_sec();
        int capped = t >= soft_end;
        int n;

        if (t >= hard_end) {
            timed_out = 1;
            break;
        }
        n = epoll_wait(ep, events, MAX_EVENTS, 100);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            die("epoll_wait");
        }
        for (int e = 0; e < n; e++) {
            bulk_conn_t *c = &conns[events[e].data.u64];
            int fail = 0, finish = 0;

            if (c->state == BULK_CONNECTING) {
                if (socket_error(c->fd) != 0) {
                    fail = 1;
                } else {
                    c->state = BULK_XFER;
                    epoll_set(ep, EPOLL_CTL_MOD, c->fd,
                              up ? EPOLLOUT : EPOLLIN,
                              events[e].data.u64);
                    continue;
                }
            } else if (c->state == BULK_XFER && up) {
                for (int k = 0; k < 8 && c->bytes < target && !capped; k++) {
                    uint64_t left = target - c->bytes;
                    size_t len = left < sizeof(io_buf)
                                 ? (size_t) left : sizeof(io_buf);
                    ssize_t w = write(c->fd, io_buf, len);

                    if (w < 0) {
                        if (errno != EAGAIN && errno != EINTR) {
                            fail = 1;
                        }
                        break;
                    }
                    c->bytes += (uint64_t) w;
                }
                if (!fail && (c->bytes >= target || capped)) {
                    shutdown(c->fd, SHUT_WR);
                    c->state = BULK_DRAIN;
                    epoll_set(ep, EPOLL_CTL_MOD, c->fd, EPOLLIN,
                              events[e].data.u64);
                }
            } else if (c->state == BULK_XFER) {
                for (int k = 0; k < 8; k++) {
                    ssize_t r = read(c->fd, io_buf, sizeof(io_buf));

                    if (r < 0) {
                        if (errno != EAGAIN && errno != EINTR) {
                            fail = 1;
                        }
                        break;
                    }
                    if (r == 0) {
                        fail = c->bytes < target && !capped;
                        finish = !fail;
                        break;
                    }
                    c->bytes += (uint64_t) r;
                    if (c->bytes >= target) {
                        finish = 1;
                        break;
                    }
                }
                if (capped) {
                    finish = !fail;
                }
            } else if (c->state == BULK_DRAIN) {
                ssize_t r = read(c->fd, io_buf, sizeof(io_buf));

                if (r == 0) {
                    finish = 1;
                } else if (r < 0 && errno != EAGAIN && errno != EINTR) {
                    fail = 1;
                }
            }
            if (fail) {
                errors++;
                fprintf(stderr, "lbbench: bulk connection failed after %llu"
                        " bytes: %s\n", (unsigned long long) c->bytes,
                        strerror(socket_error(c->fd)));
            }
            if (fail || finish) {
                close(c->fd);
                c->state = BULK_DONE;
                total += c->bytes;
                active--;
                end = now_sec();
            }
        }
    }
    if (active > 0) {
        /* Deadline or signal: count what moved so far, as errors. */
        end = now_sec();
        for (long i = 0; i < nconns; i++) {
            if (conns[i].state != BULK_DONE) {
                total += conns[i].bytes;
                close(conns[i].fd);
                errors++;
            }
        }
    }
    {
        double elapsed = end - start > 1e-9 ? end - start : 1e-9;

        printf("bulk dir=%s conns=%ld bytes=%llu elapsed=%.6f gbps=%.4f"
               " errors=%ld timeout=%d\n", up ? "up" : "down", nconns,
               (unsigned long long) total, elapsed,
               (double) total / elapsed / 1e9, errors, timed_out);
    }
    free(conns);
    return errors > 0 ? 1 : 0;
}

enum short_state { SHORT_IDLE, SHORT_CONNECTING, SHORT_READING };

typedef struct {
    int               fd;
    enum short_state  state;
    size_t            got;
    double            started;     /* for the per-connection timeout */
    double            wake_at;     /* idle slot: back off after an error */
} short_conn_t;

/*
 * C slots, each a loop of: connect, write --size bytes, read them back from
 * an echo backend, close.  Stops starting connections at --duration; those
 * still in flight then are dropped and not counted.
 */
static int run_short(int argc, char **argv)
{
    struct sockaddr_in sin;
    struct epoll_event events[MAX_EVENTS];
    short_conn_t *slots;
    long conc = 16, done = 0, errors = 0;
    long last_errno = 0;
    double duration = 5.0, timeout = 5.0;
    size_t size = 1024;
    char *rbuf;
    double start, end;
    int ep;

    if (argc < 1) {
        usage();
    }
    parse_addr(argv[0], &sin);
    for (int i = 1; i < argc; i++) {
        if (i + 1 >= argc) {
            usage();
        }
        if (strcmp(argv[i], "--conc") == 0) {
            conc = (long) parse_num("--conc", argv[++i], 1, MAX_CONNS);
        } else if (strcmp(argv[i], "--duration") == 0) {
            duration = parse_num("--duration", argv[++i], 0.01, 1e6);
        } else if (strcmp(argv[i], "--size") == 0) {
            size = (size_t) parse_num("--size", argv[++i], 1, IO_BUF_SIZE);
        } else if (strcmp(argv[i], "--timeout") == 0) {
            timeout = parse_num("--timeout", argv[++i], 0.01, 1e6);
        } else {
            usage();
        }
    }

    slots = calloc((size_t) conc, sizeof(*slots));
    rbuf = malloc(IO_BUF_SIZE);
    ep = epoll_create1(EPOLL_CLOEXEC);
    if (slots == NULL || rbuf == NULL || ep < 0) {
        die("setup");
    }
    for (size_t i = 0; i < size; i++) {
        io_buf[i] = (char) ('a' + i % 26);
    }
    start = now_sec();
    end = start + duration;

    for (;;) {
        double t = now_sec();
        int n;

        if (t >= end || stop_requested) {
            break;
        }
        /* Refill idle slots and expire stuck ones between event batches,
         * so no event in a batch can refer to a recycled slot. */
        for (long i = 0; i < conc; i++) {
            short_conn_t *s = &slots[i];

            if (s->state != SHORT_IDLE && t - s->started > timeout) {
                close(s->fd);
                s->state = SHORT_IDLE;
                s->wake_at = 0;
                errors++;
                last_errno = ETIMEDOUT;
            }
            if (s->state == SHORT_IDLE && t >= s->wake_at) {
                s->fd = client_connect(&sin);
                if (s->fd < 0) {
                    errors++;
                    last_errno = errno;
                    s->wake_at = t + 0.01;
                    continue;
                }
                s->state = SHORT_CONNECTING;
                s->got = 0;
                s->started = t;
                epoll_set(ep, EPOLL_CTL_ADD, s->fd, EPOLLOUT, (uint64_t) i);
            }
        }

        n = epoll_wait(ep, events, MAX_EVENTS, 10);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            die("epoll_wait");
        }
        for (int e = 0; e < n; e++) {
            short_conn_t *s = &slots[events[e].data.u64];
            int fail = 0, finish = 0;

            if (s->state == SHORT_CONNECTING) {
                int err = socket_error(s->fd);
                ssize_t w;

                if (err != 0) {
                    fail = err;
                } else {
                    w = write(s->fd, io_buf, size);
                    if (w != (ssize_t) size) {
                        fail = w < 0 ? errno : EMSGSIZE;
                    } else {
                        s->state = SHORT_READING;
                        epoll_set(ep, EPOLL_CTL_MOD, s->fd, EPOLLIN,
                                  events[e].data.u64);
                    }
                }
            } else if (s->state == SHORT_READING) {
                ssize_t r = read(s->fd, rbuf + s->got, size - s->got);

                if (r > 0) {
                    s->got += (size_t) r;
                    if (s->got == size) {
                        if (memcmp(rbuf, io_buf, size) != 0) {
                            fail = EBADMSG;
                        } else {
                            finish = 1;
                        }
                    }
                } else if (r == 0) {
                    fail = ECONNRESET;
                } else if (errno != EAGAIN && errno != EINTR) {
                    fail = errno;
                }
            }
            if (fail) {
                errors++;
                last_errno = fail;
            }
            if (fail || finish) {
                /* The client closes first, as a browser or pool would. */
                close(s->fd);
                s->state = SHORT_IDLE;
                s->wake_at = fail ? now_sec() + 0.01 : 0;
                done += finish;
            }
        }
    }
    end = now_sec();
    for (long i = 0; i < conc; i++) {
        if (slots[i].state != SHORT_IDLE) {
            close(slots[i].fd);
        }
    }
    if (errors > 0) {
        fprintf(stderr, "lbbench: short: %ld errors, last: %s\n", errors,
                strerror((int) last_errno));
    }
    printf("short conc=%ld size=%zu conns=%ld errors=%ld elapsed=%.6f"
           " cps=%.1f\n", conc, size, done, errors, end - start,
           (double) done / (end - start));
    free(slots);
    free(rbuf);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage();
    }
    setup_process();
    if (strcmp(argv[1], "sink") == 0) {
        return run_server(MODE_SINK, argc - 2, argv + 2);
    }
    if (strcmp(argv[1], "source") == 0) {
        return run_server(MODE_SOURCE, argc - 2, argv + 2);
    }
    if (strcmp(argv[1], "echo") == 0) {
        return run_server(MODE_ECHO, argc - 2, argv + 2);
    }
    if (strcmp(argv[1], "bulk") == 0) {
        return run_bulk(argc - 2, argv + 2);
    }
    if (strcmp(argv[1], "short") == 0) {
        return run_short(argc - 2, argv + 2);
    }
    usage();
    return 2;
}
