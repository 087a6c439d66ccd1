/*
 * lb_http_forward.c: the real client behind trusted proxies, the
 * X-Forwarded-For value and X-Request-ID (SPEC §3.3, §3.5).
 */
#include "lb_core.h"
#include "lb_http_forward.h"

#include <pthread.h>
#include <strings.h>
#include <sys/random.h>
#include <time.h>

static bool
lb_http_is_xff(const lb_http_header_t *h)
{
    return h->name.len == sizeof("X-Forwarded-For") - 1
           && strncasecmp(h->name.data, "X-Forwarded-For", h->name.len) == 0;
}

static bool
lb_http_is_ows(char c)
{
    return c == ' ' || c == '\t';
}

bool
lb_http_real_client(const lb_http_msg_t *req, const struct sockaddr *peer,
                    const lb_cidr_list_t *trusted, lb_str_t *client_ip,
                    char buf[LB_IP_TEXT_LEN])
{
    const lb_http_header_t  *h;
    const char              *v, *p, *s, *e;
    lb_ip_t                  ip;
    bool                     from_xff = false;
    size_t                   i;

    client_ip->data = buf;
    if (lb_ip_from_sockaddr(peer, &ip) != LB_OK) {
        client_ip->len = (size_t) snprintf(buf, LB_IP_TEXT_LEN, "unix:");
        return false;
    }
    client_ip->len = lb_ip_format(&ip, buf, LB_IP_TEXT_LEN);

    if (req == NULL || trusted == NULL || !lb_cidr_list_match_ip(trusted, &ip)) {
        return false;
    }

    /* The last field holds the nearest hops; within a field, so does the
     * end of its list. Each element is cut off the end in turn. */
    for (i = req->nheaders; i-- > 0; ) {
        h = &req->headers[i];
        if (!lb_http_is_xff(h)) {
            continue;
        }
        v = h->value.data;
        p = v + h->value.len;
        for ( ;; ) {
            e = p;
            while (p > v && p[-1] != ',') {
                p--;
            }
            s = p;
            while (s < e && lb_http_is_ows(*s)) {
                s++;
            }
            while (e > s && lb_http_is_ows(e[-1])) {
                e--;
            }
            if (s < e) {
                if (lb_ip_parse(s, (size_t) (e - s), &ip) != LB_OK) {
                    return from_xff;
                }
                client_ip->data = (char *) s;
                client_ip->len = (size_t) (e - s);
                from_xff = true;
                if (!lb_cidr_list_match_ip(trusted, &ip)) {
                    return true;
                }
            }
            if (p == v) {
                break;
            }
            p--;                        /* the comma */
        }
    }
    return from_xff;
}

/* Copies what fits of s at buf + *pos and advances *pos by all of it. */
static void
lb_http_put(char *buf, size_t size, size_t *pos, const char *s, size_t n)
{
    if (*pos < size) {
        memcpy(buf + *pos, s, lb_min(n, size - *pos));
    }
    *pos += n;
}

size_t
lb_http_xff_value(lb_http_xff_mode_t mode, const lb_http_msg_t *req,
                  lb_str_t client_ip, char *buf, size_t size)
{
    const lb_http_header_t  *h;
    size_t                   i, pos = 0;

    if (mode == LB_HTTP_XFF_OFF) {
        return 0;
    }
    if (mode == LB_HTTP_XFF_APPEND && req != NULL) {
        for (i = 0; i < req->nheaders; i++) {
            h = &req->headers[i];
            if (!lb_http_is_xff(h) || h->value.len == 0) {
                continue;
            }
            if (pos > 0) {
                lb_http_put(buf, size, &pos, ", ", 2);
            }
            lb_http_put(buf, size, &pos, h->value.data, h->value.len);
        }
        if (pos > 0) {
            lb_http_put(buf, size, &pos, ", ", 2);
        }
    }
    lb_http_put(buf, size, &pos, client_ip.data, client_ip.len);
    return pos;
}

bool
lb_http_request_id_valid(lb_str_t v)
{
    size_t  i;
    char    c;

    if (v.len == 0 || v.len > LB_HTTP_REQUEST_ID_MAX) {
        return false;
    }
    for (i = 0; i < v.len; i++) {
        c = v.data[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')
              || c == '.' || c == '_' || c == '-'))
        {
            return false;
        }
    }
    return true;
}

/* The generator of lb_http_request_id_new, one per thread. A child after
 * fork() must not repeat its parent's sequence: the atfork handler makes
 * it draw a key of its own on its first id. */
typedef struct {
    uint64_t  key[2];
    uint64_t  n;
    bool      seeded;
} lb_http_request_id_state_t;

static __thread lb_http_request_id_state_t  lb_http_rid;
static pthread_once_t                        lb_http_rid_once = PTHREAD_ONCE_INIT;

#define LB_SPLITMIX_GAMMA  0x9e3779b97f4a7c15ULL

/* The splitmix64 finalizer: a bijection of 64-bit values that spreads
 * every input bit over the output. */
static uint64_t
lb_http_mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static void
lb_http_rid_forget(void)
{
    lb_http_rid.seeded = false;
}

static void
lb_http_rid_register(void)
{
    pthread_atfork(NULL, NULL, lb_http_rid_forget);
}

static void
lb_http_rid_seed(void)
{
    uint8_t          *p = (uint8_t *) lb_http_rid.key;
    size_t            got = 0;
    ssize_t           n;
    struct timespec   rt, mono;

    pthread_once(&lb_http_rid_once, lb_http_rid_register);

    while (got < sizeof(lb_http_rid.key)) {
        n = getrandom(p + got, sizeof(lb_http_rid.key) - got, 0);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            break;
        }
        got += (size_t) n;
    }
    if (got < sizeof(lb_http_rid.key)) {
        /* No getrandom (a very old kernel, a seccomp filter): what differs
         * between processes and runs, mixed. Still unique within a thread. */
        clock_gettime(CLOCK_REALTIME, &rt);
        clock_gettime(CLOCK_MONOTONIC, &mono);
        lb_http_rid.key[0] = lb_http_mix64((uint64_t) rt.tv_sec * 1000000000ULL
                                           + (uint64_t) rt.tv_nsec);
        lb_http_rid.key[1] = lb_http_mix64(((uint64_t) getpid() << 32
                                            ^ (uint64_t) mono.tv_nsec
                                            ^ (uint64_t) (uintptr_t) &rt)
                                           + lb_http_rid.key[0]);
    }
    lb_http_rid.n = 0;
    lb_http_rid.seeded = true;
}

void
lb_http_request_id_new(char out[LB_HTTP_REQUEST_ID_LEN + 1])
{
    static const char  hex[] = "0123456789abcdef";
    uint64_t           w[2];
    int                i, j;

    if (!lb_http_rid.seeded) {
        lb_http_rid_seed();
    }
    /* splitmix64: state key[0] + n * gamma (gamma odd, so distinct for
     * every n), then the finalizer; the second word is keyed by key[1]. */
    w[0] = lb_http_mix64(lb_http_rid.key[0] + lb_http_rid.n++ * LB_SPLITMIX_GAMMA);
    w[1] = lb_http_mix64(w[0] + lb_http_rid.key[1]);

    for (i = 0; i < 2; i++) {
        for (j = 0; j < 16; j++) {
            out[i * 16 + j] = hex[(w[i] >> (60 - 4 * j)) & 0xf];
        }
    }
    out[LB_HTTP_REQUEST_ID_LEN] = '\0';
}
