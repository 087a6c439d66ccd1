/*
 * httpbackend: the HTTP/1.1 origin server of lbd's http benchmark
 * (tests/bench/run http).  One single-threaded epoll loop with a hard
 * deadline; every request gets 200 with a 100-byte body, and pipelined
 * requests are answered in one write.  It counts the connections it accepts,
 * so the bench can tell whether a proxy reuses its upstream connections.
 *
 *   httpbackend PORT [--deadline S]          listens on 127.0.0.1:PORT
 *
 * SIGUSR1 prints one line to stdout, SIGTERM prints it and exits:
 *   stats seq=N accepted=A open=O requests=R errors=E
 * errors counts requests it does not take (chunked bodies, heads over 16 KB),
 * each of which closes its connection; resets by the peer are not errors.
 */

#define _GNU_SOURCE

#include <arpa/inet.h>
#include <errno.h>
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

#define IN_BUF_SIZE   (16 * 1024)
#define OUT_BUF_SIZE  (64 * 1024)
#define MAX_EVENTS    256
#define BODY_SIZE     100

/* One client (a proxy's upstream connection).  Requests are parsed from
 * in[0..in_len); answers queue in out[out_off..out_len). */
typedef struct {
    int       fd;
    int       closing;      /* close once out is flushed */
    size_t    in_len;
    size_t    body_left;    /* request body bytes still to skip */
    size_t    out_off;
    size_t    out_len;
    char      in[IN_BUF_SIZE];
    char      out[OUT_BUF_SIZE];
} conn_t;

static char                   listener_tag;   /* epoll data of the listener */
static volatile sig_atomic_t  stop_requested;
static volatile sig_atomic_t  stats_requested;

static unsigned long long  n_accepted, n_open, n_requests, n_errors, n_stats;

static char    resp_keep[256], resp_close[256];
static size_t  resp_keep_len, resp_close_len;

static void usage(void)
{
    fprintf(stderr, "usage: httpbackend PORT [--deadline S]\n");
    exit(2);
}

static void die(const char *what)
{
    fprintf(stderr, "httpbackend: %s: %s\n", what, strerror(errno));
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
    if (sig == SIGUSR1) {
        stats_requested = 1;
    } else {
        stop_requested = 1;
    }
}

static void print_stats(void)
{
    printf("stats seq=%llu accepted=%llu open=%llu requests=%llu errors=%llu\n",
           ++n_stats, n_accepted, n_open, n_requests, n_errors);
    fflush(stdout);
}

static void build_responses(void)
{
    char body[BODY_SIZE + 1];
    static const char fmt[] = "HTTP/1.1 200 OK\r\n"
                              "Content-Type: text/plain\r\n"
                              "Content-Length: %d\r\n"
                              "%s"
                              "\r\n"
                              "%s";

    memset(body, 'b', BODY_SIZE - 1);
    body[BODY_SIZE - 1] = '\n';
    body[BODY_SIZE] = '\0';
    resp_keep_len = (size_t) snprintf(resp_keep, sizeof(resp_keep), fmt,
                                      BODY_SIZE, "", body);
    resp_close_len = (size_t) snprintf(resp_close, sizeof(resp_close), fmt,
                                       BODY_SIZE, "Connection: close\r\n",
                                       body);
}

/* Case-insensitive: does the header line [p, end) start with name? */
static int header_is(const char *p, const char *end, const char *name,
                     size_t len)
{
    return (size_t) (end - p) > len && strncasecmp(p, name, len) == 0
           && p[len] == ':';
}

static const char *skip_ows(const char *p, const char *end)
{
    while (p < end && (*p == ' ' || *p == '\t')) {
        p++;
    }
    return p;
}

/*
 * Reads what matters of one request head [head, end), end being just past
 * its blank line: whether the connection stays open and the body length.
 * Returns -1 for what this server does not take (chunked bodies, a bad
 * Content-Length).
 */
static int parse_head(const char *head, const char *end, int *keep,
                      size_t *body)
{
    const char *line = memchr(head, '\n', (size_t) (end - head));
    const char *eol;

    if (line == NULL) {
        return -1;
    }
    /* "GET / HTTP/1.1\r": HTTP/1.0 closes unless it asks for keep-alive. */
    *keep = line - head >= 9 && memcmp(line - 4, "1.1", 3) == 0;
    *body = 0;
    for (line++; line < end; line = eol + 1) {
        const char *v;

        eol = memchr(line, '\n', (size_t) (end - line));
        if (eol == NULL || eol - line <= 1) {
            break;
        }
        if ((*line | 0x20) != 'c' && (*line | 0x20) != 't') {
            continue;
        }
        if (header_is(line, eol, "content-length", 14)) {
            unsigned long long n = 0;

            v = skip_ows(line + 15, eol);
            if (v >= eol || *v < '0' || *v > '9') {
                return -1;
            }
            for (; v < eol && *v >= '0' && *v <= '9'; v++) {
                if (n > (1ULL << 40)) {
                    return -1;
                }
                n = n * 10 + (unsigned) (*v - '0');
            }
            *body = (size_t) n;
        } else if (header_is(line, eol, "transfer-encoding", 17)) {
            return -1;
        } else if (header_is(line, eol, "connection", 10)) {
            v = skip_ows(line + 11, eol);
            if ((size_t) (eol - v) >= 5 && strncasecmp(v, "close", 5) == 0) {
                *keep = 0;
            } else if ((size_t) (eol - v) >= 10
                       && strncasecmp(v, "keep-alive", 10) == 0)
            {
                *keep = 1;
            }
        }
    }
    return 0;
}

static void conn_close(int ep, conn_t *c)
{
    epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    free(c);
    n_open--;
}

static void conn_watch(int ep, conn_t *c, uint32_t events)
{
    struct epoll_event ev;

    memset(&ev, 0, sizeof(ev));
    ev.events = events;
    ev.data.ptr = c;
    if (epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev) < 0) {
        die("epoll_ctl");
    }
}

/* Writes queued answers.  Returns 0 when flushed, 1 when blocked, -1 on
 * error. */
static int conn_flush(conn_t *c)
{
    while (c->out_off < c->out_len) {
        ssize_t n = write(c->fd, c->out + c->out_off, c->out_len - c->out_off);

        if (n < 0) {
            return (errno == EAGAIN || errno == EINTR) ? 1 : -1;
        }
        c->out_off += (size_t) n;
    }
    c->out_off = c->out_len = 0;
    return 0;
}

/* Logs the first few requests refused, with their first bytes escaped. */
static void log_refused(const char *p, size_t len, const char *why)
{
    static int logged;

    if (logged++ >= 5) {
        return;
    }
    fprintf(stderr, "httpbackend: refused (%s): \"", why);
    for (size_t i = 0; i < len && i < 300; i++) {
        unsigned char ch = (unsigned char) p[i];

        if (ch >= 0x20 && ch < 0x7f && ch != '\\') {
            fputc(ch, stderr);
        } else {
            fprintf(stderr, "\\x%02x", ch);
        }
    }
    fprintf(stderr, "\"\n");
}

/*
 * Answers every complete request in the input buffer, as long as the answers
 * fit the output buffer (the rest waits for the next flush).  Returns -1 on a
 * request this server does not take.
 */
static int conn_process(conn_t *c)
{
    size_t pos = 0;

    while (!c->closing) {
        const char *head = c->in + pos;
        const char *blank;
        size_t avail = c->in_len - pos;
        int keep;
        size_t body;

        if (c->body_left > 0) {
            size_t skip = c->body_left < avail ? c->body_left : avail;

            c->body_left -= skip;
            pos += skip;
            if (c->body_left > 0) {
                break;
            }
            continue;
        }
        if (avail < 4 || OUT_BUF_SIZE - c->out_len < resp_close_len) {
            break;
        }
        blank = memmem(head, avail, "\r\n\r\n", 4);
        if (blank == NULL) {
            if (pos == 0 && c->in_len == IN_BUF_SIZE) {
                log_refused(head, avail, "head over 16 KB");
                return -1;
            }
            break;
        }
        blank += 4;
        if (parse_head(head, blank, &keep, &body) < 0) {
            log_refused(head, (size_t) (blank - head),
                        "chunked or bad Content-Length");
            return -1;
        }
        pos += (size_t) (blank - head);
        c->body_left = body;
        if (keep) {
            memcpy(c->out + c->out_len, resp_keep, resp_keep_len);
            c->out_len += resp_keep_len;
        } else {
            memcpy(c->out + c->out_len, resp_close, resp_close_len);
            c->out_len += resp_close_len;
            c->closing = 1;
        }
        n_requests++;
    }
    if (pos > 0) {
        memmove(c->in, c->in + pos, c->in_len - pos);
        c->in_len -= pos;
    }
    return 0;
}

/*
 * Answers what the input buffer holds and writes it out, round after round
 * while answers were held back for room.  Closes c on an error or after a
 * "Connection: close" answer.
 */
static void conn_serve(int ep, conn_t *c)
{
    for (int round = 0; round < 64; round++) {
        int rc;

        if (conn_process(c) < 0) {
            n_errors++;
            conn_close(ep, c);
            return;
        }
        if (c->out_len == 0) {
            return;
        }
        rc = conn_flush(c);
        if (rc < 0) {
            conn_close(ep, c);
            return;
        }
        if (rc == 1) {
            conn_watch(ep, c, EPOLLOUT);
            return;
        }
        if (c->closing) {
            conn_close(ep, c);
            return;
        }
    }
}

static void conn_event(int ep, conn_t *c)
{
    if (c->out_len > 0) {
        /* Blocked on write: reading waits until the answers are out. */
        int rc = conn_flush(c);

        if (rc < 0) {
            conn_close(ep, c);
            return;
        }
        if (rc == 1) {
            return;
        }
        if (c->closing) {
            conn_close(ep, c);
            return;
        }
        conn_watch(ep, c, EPOLLIN);
    } else if (c->in_len < IN_BUF_SIZE) {
        ssize_t n = read(c->fd, c->in + c->in_len, IN_BUF_SIZE - c->in_len);

        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
            conn_close(ep, c);
            return;
        }
        if (n < 0) {
            return;
        }
        c->in_len += (size_t) n;
    }
    conn_serve(ep, c);
}

static void accept_all(int ep, int lfd)
{
    int one = 1;

    for (int k = 0; k < 256; k++) {
        struct epoll_event ev;
        conn_t *c;
        int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

        if (fd < 0) {
            if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED) {
                fprintf(stderr, "httpbackend: accept: %s\n", strerror(errno));
            }
            return;
        }
        c = malloc(sizeof(*c));
        if (c == NULL) {
            die("malloc");
        }
        c->fd = fd;
        c->closing = 0;
        c->in_len = c->body_left = c->out_off = c->out_len = 0;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        memset(&ev, 0, sizeof(ev));
        ev.events = EPOLLIN;
        ev.data.ptr = c;
        if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0) {
            die("epoll_ctl");
        }
        n_accepted++;
        n_open++;
    }
}

int main(int argc, char **argv)
{
    struct sockaddr_in sin;
    struct epoll_event events[MAX_EVENTS];
    struct epoll_event lev;
    struct sigaction sa;
    struct rlimit rl;
    sigset_t block, during_wait;
    double deadline_s = 3600.0, deadline;
    long port;
    char *end;
    int one = 1;
    int lfd, ep;

    if (argc < 2) {
        usage();
    }
    port = strtol(argv[1], &end, 10);
    if (*end != '\0' || port < 1 || port > 65535) {
        usage();
    }
    for (int i = 2; i < argc; i++) {
        if (strcmp(argv[i], "--deadline") == 0 && i + 1 < argc) {
            deadline_s = strtod(argv[++i], &end);
            if (*end != '\0' || !(deadline_s > 0 && deadline_s < 1e7)) {
                usage();
            }
        } else {
            usage();
        }
    }
    memset(&sin, 0, sizeof(sin));
    sin.sin_family = AF_INET;
    sin.sin_port = htons((uint16_t) port);
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    deadline = now_sec() + deadline_s;
    build_responses();

    /* The signals are taken only inside epoll_pwait, so none is lost
     * between a check of the flags and the wait. */
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGUSR1, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    sigemptyset(&block);
    sigaddset(&block, SIGTERM);
    sigaddset(&block, SIGINT);
    sigaddset(&block, SIGUSR1);
    sigprocmask(SIG_BLOCK, &block, &during_wait);
    sigdelset(&during_wait, SIGTERM);
    sigdelset(&during_wait, SIGINT);
    sigdelset(&during_wait, SIGUSR1);

    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }

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
    memset(&lev, 0, sizeof(lev));
    lev.events = EPOLLIN;
    lev.data.ptr = &listener_tag;
    if (epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &lev) < 0) {
        die("epoll_ctl");
    }

    while (!stop_requested && now_sec() < deadline) {
        int n = epoll_pwait(ep, events, MAX_EVENTS, 1000, &during_wait);

        if (stats_requested) {
            stats_requested = 0;
            print_stats();
        }
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            die("epoll_pwait");
        }
        for (int i = 0; i < n; i++) {
            if (events[i].data.ptr == &listener_tag) {
                accept_all(ep, lfd);
            } else {
                conn_event(ep, events[i].data.ptr);
            }
        }
    }
    print_stats();
    return 0;
}
