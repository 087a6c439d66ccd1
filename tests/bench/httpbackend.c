/*
 * httpbackend: the HTTP/1.1 origin server of lbd's http benchmark
 * (tests/bench/run http).  One single-threaded epoll loop with a hard
 * deadline; every request gets 200 with a 100-byte body, and pipelined
 * requests are answered in one write.  It counts the connections it accepts,
 * so the bench can tell whether a proxy reuses its upstream connections.
 *
 *   httpbackend PORT [--deadline S] [--bodies]   listens on 127.0.0.1:PORT
 *
 * --bodies (the gzip section): a request whose path starts with "/json" gets
 * a fixed 100 KB JSON document (application/json), "/html" a fixed 100 KB
 * HTML page (text/html), each with Content-Length; every other path still
 * gets the 100-byte answer.  Both bodies are generated at start-up from a
 * seeded PRNG, so they are the same on every run and realistic to compress
 * (repetitive structure, varied values), not a run of one byte.
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
#include <stdarg.h>
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
#define BIG_SIZE      (100 * 1024)      /* the --bodies documents */

/* One client (a proxy's upstream connection).  Requests are parsed from
 * in[0..in_len); answers queue in out[out_off..out_len). */
typedef struct {
    int       fd;
    int       closing;      /* close once out is flushed */
    size_t    in_len;
    size_t    body_left;    /* request body bytes still to skip */
    size_t    out_off;
    size_t    out_len;
    const char *big;        /* a --bodies answer being written after out */
    size_t    big_len;
    size_t    big_off;
    char      in[IN_BUF_SIZE];
    char      out[OUT_BUF_SIZE];
} conn_t;

static char                   listener_tag;   /* epoll data of the listener */
static volatile sig_atomic_t  stop_requested;
static volatile sig_atomic_t  stats_requested;

static unsigned long long  n_accepted, n_open, n_requests, n_errors, n_stats;

static char    resp_keep[256], resp_close[256];
static size_t  resp_keep_len, resp_close_len;

/* --bodies: [kind][keep-alive, close] full responses, head and body. */
enum { BIG_JSON, BIG_HTML, BIG_KINDS };
static int     bodies_mode;
static char   *big_resp[BIG_KINDS][2];
static size_t  big_resp_len[BIG_KINDS][2];

static void usage(void)
{
    fprintf(stderr, "usage: httpbackend PORT [--deadline S] [--bodies]\n");
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

/* ------------------------------------------------------------ --bodies */

static uint64_t rng_state = 0x9e3779b97f4a7c15ULL;   /* fixed seed */

static uint32_t rng(void)                   /* xorshift64* */
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return (uint32_t) ((rng_state * 0x2545f4914f6cdd1dULL) >> 32);
}

static unsigned rnd(unsigned n)
{
    return rng() % n;
}

#define PICK(a)  ((a)[rnd(sizeof(a) / sizeof((a)[0]))])

static const char *const words[] = {
    "steel", "oak", "wireless", "compact", "premium", "classic", "ergonomic",
    "portable", "smart", "organic", "vintage", "modular", "outdoor", "silent",
    "chair", "lamp", "speaker", "backpack", "kettle", "monitor", "desk",
    "jacket", "bottle", "router", "camera", "blender", "keyboard", "sofa",
    "with", "and", "for", "the", "of", "in", "a", "to", "every", "new",
    "design", "quality", "delivery", "warranty", "battery", "cotton",
    "adjustable", "recycled", "waterproof", "lightweight", "durable", "set",
};
static const char *const categories[] = {
    "furniture", "electronics", "kitchen", "outdoor", "clothing", "office",
    "garden", "toys", "sports", "lighting",
};
static const char *const countries[] = {
    "DE", "FR", "NL", "US", "GB", "IT", "ES", "PL", "SE", "JP", "CN", "CA",
};
static const char *const tags[] = {
    "new", "sale", "bestseller", "eco", "limited", "clearance", "gift",
    "refurbished", "exclusive", "bundle",
};
static const char *const statuses[] = { "active", "draft", "archived" };

/* Appends to buf[*len..cap): like snprintf, dies rather than truncate. */
static void put(char *buf, size_t *len, size_t cap, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void put(char *buf, size_t *len, size_t cap, const char *fmt, ...)
{
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(buf + *len, cap - *len, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t) n >= cap - *len) {
        fprintf(stderr, "httpbackend: body generator overflow\n");
        exit(1);
    }
    *len += (size_t) n;
}

static void put_words(char *buf, size_t *len, size_t cap, unsigned n,
                      int capital)
{
    for (unsigned i = 0; i < n; i++) {
        const char *w = PICK(words);

        put(buf, len, cap, "%s%c%s", i ? " " : "",
            capital && i == 0 ? w[0] - 'a' + 'A' : w[0], w + 1);
    }
}

/* A filler of exactly n random base64url characters. */
static void put_filler(char *buf, size_t *len, size_t cap, size_t n)
{
    static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrs"
                              "tuvwxyz0123456789-_";

    if (cap - *len <= n) {
        fprintf(stderr, "httpbackend: body generator overflow\n");
        exit(1);
    }
    for (size_t i = 0; i < n; i++) {
        buf[(*len)++] = b64[rnd(64)];
    }
    buf[*len] = '\0';
}

/* One item of an API listing, as JSON. */
static void json_item(char *b, size_t *l, size_t cap, unsigned id)
{
    unsigned ntags = rnd(4);

    put(b, l, cap, "{\"id\":%u,\"sku\":\"SKU-%06X\",\"name\":\"", id,
        rng() & 0xffffff);
    put_words(b, l, cap, 2 + rnd(3), 1);
    put(b, l, cap, "\",\"category\":\"%s\",\"status\":\"%s\","
        "\"price\":{\"amount\":%u.%02u,\"currency\":\"EUR\"},"
        "\"stock\":%u,\"rating\":%u.%u,\"reviews\":%u,\"tags\":[",
        PICK(categories), PICK(statuses), 1 + rnd(900), rnd(100), rnd(500),
        1 + rnd(4), rnd(10), rnd(3000));
    for (unsigned t = 0; t < ntags; t++) {
        put(b, l, cap, "%s\"%s\"", t ? "," : "", PICK(tags));
    }
    put(b, l, cap, "],\"supplier\":{\"id\":%u,\"country\":\"%s\"},"
        "\"created_at\":\"20%02u-%02u-%02uT%02u:%02u:%02uZ\","
        "\"url\":\"https://shop.example.com/p/%u\"}",
        1000 + rnd(9000), PICK(countries), 18 + rnd(7), 1 + rnd(12),
        1 + rnd(28), rnd(24), rnd(60), rnd(60), id);
}

/* One product card of a shop page, as HTML. */
static void html_item(char *b, size_t *l, size_t cap, unsigned id)
{
    put(b, l, cap, "<article class=\"card product\" data-id=\"%u\">\n"
        "  <a href=\"/p/%u\"><img src=\"/img/%u-%03x.webp\" width=\"320\""
        " height=\"240\" loading=\"lazy\" alt=\"", id, id, id, rnd(4096));
    put_words(b, l, cap, 3, 1);
    put(b, l, cap, "\"></a>\n  <h2 class=\"title\"><a href=\"/p/%u\">", id);
    put_words(b, l, cap, 2 + rnd(3), 1);
    put(b, l, cap, "</a></h2>\n  <p class=\"desc\">");
    put_words(b, l, cap, 12 + rnd(20), 1);
    put(b, l, cap, ".</p>\n  <div class=\"meta\"><span class=\"price\">"
        "&euro;%u.%02u</span> <span class=\"rating\" title=\"%u reviews\">"
        "%u.%u</span> <span class=\"cat\">%s</span></div>\n"
        "  <button class=\"btn btn-primary add-to-cart\" data-sku=\"%06X\">"
        "Add to cart</button>\n</article>\n", 1 + rnd(900), rnd(100),
        rnd(3000), 1 + rnd(4), rnd(10), PICK(categories), rng() & 0xffffff);
}

/*
 * Generates a body of exactly BIG_SIZE bytes into buf (BIG_SIZE + 1024):
 * items while they fit, then a tail padded to size with random characters
 * inside a string (JSON) or a comment (HTML).
 */
static size_t make_body(int kind, char *buf, size_t cap)
{
    size_t len = 0, tail_len;
    unsigned id = 100000;

    if (kind == BIG_JSON) {
        put(buf, &len, cap, "{\"page\":1,\"items\":[");
        tail_len = 80;
    } else {
        put(buf, &len, cap, "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n"
            "<meta charset=\"utf-8\">\n<title>Products - Example Shop</title>\n"
            "<link rel=\"stylesheet\" href=\"/static/site.css\">\n"
            "</head>\n<body>\n<header class=\"site-header\"><nav>"
            "<a href=\"/\">Home</a> <a href=\"/c/furniture\">Furniture</a> "
            "<a href=\"/c/electronics\">Electronics</a> "
            "<a href=\"/cart\">Cart</a></nav></header>\n"
            "<main class=\"grid\">\n");
        tail_len = 60;
    }
    for (;;) {
        size_t before = len;

        if (kind == BIG_JSON) {
            if (id > 100000) {
                put(buf, &len, cap, ",");
            }
            json_item(buf, &len, cap, id);
        } else {
            html_item(buf, &len, cap, id);
        }
        if (len + tail_len > BIG_SIZE) {
            len = before;           /* it does not fit: the tail instead */
            break;
        }
        id++;
    }
    if (kind == BIG_JSON) {
        put(buf, &len, cap, "],\"count\":%u,\"cursor\":\"", id - 100000);
        put_filler(buf, &len, cap, BIG_SIZE - len - 2);
        put(buf, &len, cap, "\"}");
    } else {
        static const char end[] = " -->\n</body></html>\n";

        put(buf, &len, cap, "</main>\n<!-- ");
        put_filler(buf, &len, cap, BIG_SIZE - len - (sizeof(end) - 1));
        put(buf, &len, cap, "%s", end);
    }
    if (len != BIG_SIZE) {
        fprintf(stderr, "httpbackend: body %d is %zu bytes\n", kind, len);
        exit(1);
    }
    return len;
}

static void build_big_responses(void)
{
    static const char *const types[BIG_KINDS] = {
        "application/json", "text/html",
    };
    size_t cap = BIG_SIZE + 1024;
    char *body = malloc(cap);

    if (body == NULL) {
        die("malloc");
    }
    for (int k = 0; k < BIG_KINDS; k++) {
        size_t blen = make_body(k, body, cap);

        for (int close = 0; close < 2; close++) {
            size_t rcap = blen + 256, rlen;
            char *r = malloc(rcap);

            if (r == NULL) {
                die("malloc");
            }
            rlen = (size_t) snprintf(r, rcap, "HTTP/1.1 200 OK\r\n"
                                     "Content-Type: %s\r\n"
                                     "Content-Length: %zu\r\n%s\r\n",
                                     types[k], blen,
                                     close ? "Connection: close\r\n" : "");
            memcpy(r + rlen, body, blen);
            big_resp[k][close] = r;
            big_resp_len[k][close] = rlen + blen;
        }
    }
    free(body);
}

/* --bodies: which big answer the request head asks for, or -1. */
static int big_kind(const char *head, const char *end)
{
    const char *sp = memchr(head, ' ', (size_t) (end - head));

    if (sp == NULL || end - sp < 6) {
        return -1;
    }
    if (memcmp(sp + 1, "/json", 5) == 0) {
        return BIG_JSON;
    }
    if (memcmp(sp + 1, "/html", 5) == 0) {
        return BIG_HTML;
    }
    return -1;
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

static int conn_pending(const conn_t *c)
{
    return c->out_len > 0 || c->big != NULL;
}

/* Writes queued answers (out, then a big one).  Returns 0 when flushed, 1
 * when blocked, -1 on error. */
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
    while (c->big != NULL && c->big_off < c->big_len) {
        ssize_t n = write(c->fd, c->big + c->big_off, c->big_len - c->big_off);

        if (n < 0) {
            return (errno == EAGAIN || errno == EINTR) ? 1 : -1;
        }
        c->big_off += (size_t) n;
    }
    c->big = NULL;
    c->big_len = c->big_off = 0;
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
        int keep, kind;
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
        /* A big answer is written alone: later requests wait for it. */
        if (avail < 4 || OUT_BUF_SIZE - c->out_len < resp_close_len
            || c->big != NULL)
        {
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
        kind = bodies_mode ? big_kind(head, blank) : -1;
        if (kind >= 0) {
            c->big = big_resp[kind][!keep];
            c->big_len = big_resp_len[kind][!keep];
            c->big_off = 0;
            c->closing = !keep;
        } else if (keep) {
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
        if (!conn_pending(c)) {
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
    if (conn_pending(c)) {
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
        c->big = NULL;
        c->big_len = c->big_off = 0;
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
        } else if (strcmp(argv[i], "--bodies") == 0) {
            bodies_mode = 1;
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
    if (bodies_mode) {
        build_big_responses();
    }

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
