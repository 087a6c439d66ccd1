/*
 * lb_parse.c: value parsers for the configuration.
 */
#include "lb_core.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <limits.h>

/* Parses the leading decimal digits of s into *out; returns the first byte
 * after them, or NULL when there are none or the number overflows. */
static const char *
lb_parse_digits(const char *s, int64_t *out)
{
    int64_t  v = 0;
    int      d;

    if (!isdigit((unsigned char) *s)) {
        return NULL;
    }
    while (isdigit((unsigned char) *s)) {
        d = *s++ - '0';
        if (v > (INT64_MAX - d) / 10) {
            return NULL;
        }
        v = v * 10 + d;
    }
    *out = v;
    return s;
}

int
lb_parse_duration(const char *s, lb_msec_t *out)
{
    int64_t      v, mult;
    const char  *p = lb_parse_digits(s, &v);

    if (p == NULL) {
        return LB_ERROR;
    }
    if (strcmp(p, "ms") == 0) {
        mult = 1;
    } else if (*p == '\0' || strcmp(p, "s") == 0) {
        mult = 1000;
    } else if (strcmp(p, "m") == 0) {
        mult = 60 * 1000;
    } else if (strcmp(p, "h") == 0) {
        mult = 3600 * 1000;
    } else if (strcmp(p, "d") == 0) {
        mult = 86400 * 1000;
    } else {
        return LB_ERROR;
    }
    if (v > INT64_MAX / mult) {
        return LB_ERROR;
    }
    *out = v * mult;
    return LB_OK;
}

int
lb_parse_size(const char *s, int64_t *out)
{
    int64_t      v, mult;
    const char  *p = lb_parse_digits(s, &v);

    if (p == NULL) {
        return LB_ERROR;
    }
    switch (*p) {
    case '\0':           mult = 1; break;
    case 'k': case 'K':  mult = 1LL << 10; break;
    case 'm': case 'M':  mult = 1LL << 20; break;
    case 'g': case 'G':  mult = 1LL << 30; break;
    default:             return LB_ERROR;
    }
    if (*p != '\0' && p[1] != '\0') {
        return LB_ERROR;
    }
    if (v > INT64_MAX / mult) {
        return LB_ERROR;
    }
    *out = v * mult;
    return LB_OK;
}

static int
lb_parse_port(const char *s, in_port_t *port)
{
    int64_t      v;
    const char  *p = lb_parse_digits(s, &v);

    if (p == NULL || *p != '\0' || v < 1 || v > 65535) {
        return LB_ERROR;
    }
    *port = htons((uint16_t) v);
    return LB_OK;
}

int
lb_parse_addr(const char *s, lb_addr_t *out, char *err, size_t errlen)
{
    char         host[INET6_ADDRSTRLEN + 1];
    const char  *colon, *end;
    size_t       n;
    in_port_t    port;

    memset(out, 0, sizeof(*out));

    if (strncmp(s, "unix:", 5) == 0) {
        n = strlen(s + 5);
        if (n == 0 || n >= sizeof(out->u.sun.sun_path)) {
            snprintf(err, errlen, "unix socket path is empty or longer than %zu bytes",
                     sizeof(out->u.sun.sun_path) - 1);
            return LB_ERROR;
        }
        out->u.sun.sun_family = AF_UNIX;
        memcpy(out->u.sun.sun_path, s + 5, n + 1);
        out->len = (socklen_t) (offsetof(struct sockaddr_un, sun_path) + n + 1);
        lb_addr_format(&out->u.sa, out->len, out->text, sizeof(out->text));
        return LB_OK;
    }

    if (s[0] == '[') {
        end = strchr(s, ']');
        if (end == NULL || end[1] != ':') {
            snprintf(err, errlen, "expected \"[IPV6]:PORT\"");
            return LB_ERROR;
        }
        n = (size_t) (end - s - 1);
        colon = end + 1;
        if (n == 0 || n >= sizeof(host)) {
            snprintf(err, errlen, "invalid IPv6 address");
            return LB_ERROR;
        }
        memcpy(host, s + 1, n);
        host[n] = '\0';
        if (lb_parse_port(colon + 1, &port) != LB_OK) {
            snprintf(err, errlen, "invalid port \"%s\" (must be 1..65535)", colon + 1);
            return LB_ERROR;
        }
        out->u.sin6.sin6_family = AF_INET6;
        out->u.sin6.sin6_port = port;
        if (inet_pton(AF_INET6, host, &out->u.sin6.sin6_addr) != 1) {
            snprintf(err, errlen, "invalid IPv6 address \"%s\"", host);
            return LB_ERROR;
        }
        out->len = sizeof(struct sockaddr_in6);
        lb_addr_format(&out->u.sa, out->len, out->text, sizeof(out->text));
        return LB_OK;
    }

    colon = strrchr(s, ':');
    if (colon == NULL) {
        snprintf(err, errlen, "expected \"HOST:PORT\", \"[IPV6]:PORT\", \"*:PORT\" or \"unix:PATH\"");
        return LB_ERROR;
    }
    n = (size_t) (colon - s);
    if (n == 0 || n >= sizeof(host)) {
        snprintf(err, errlen, "missing or overlong host before the port");
        return LB_ERROR;
    }
    memcpy(host, s, n);
    host[n] = '\0';
    if (lb_parse_port(colon + 1, &port) != LB_OK) {
        snprintf(err, errlen, "invalid port \"%s\" (must be 1..65535)", colon + 1);
        return LB_ERROR;
    }

    out->u.sin.sin_family = AF_INET;
    out->u.sin.sin_port = port;
    out->len = sizeof(struct sockaddr_in);
    if (strcmp(host, "*") == 0) {
        out->u.sin.sin_addr.s_addr = htonl(INADDR_ANY);
        out->wildcard = true;
    } else if (inet_pton(AF_INET, host, &out->u.sin.sin_addr) != 1) {
        snprintf(err, errlen, "invalid IPv4 address \"%s\" (host names are not resolved; "
                 "use an address)", host);
        return LB_ERROR;
    }
    lb_addr_format(&out->u.sa, out->len, out->text, sizeof(out->text));
    return LB_OK;
}

size_t
lb_addr_format(const struct sockaddr *sa, socklen_t len, char *buf, size_t size)
{
    char                       ip[INET6_ADDRSTRLEN];
    const struct sockaddr_in  *sin;
    const struct sockaddr_in6 *sin6;
    int                        n;

    switch (sa->sa_family) {
    case AF_INET:
        sin = (const struct sockaddr_in *) sa;
        inet_ntop(AF_INET, &sin->sin_addr, ip, sizeof(ip));
        n = snprintf(buf, size, "%s:%u", ip, ntohs(sin->sin_port));
        break;
    case AF_INET6:
        sin6 = (const struct sockaddr_in6 *) sa;
        inet_ntop(AF_INET6, &sin6->sin6_addr, ip, sizeof(ip));
        n = snprintf(buf, size, "[%s]:%u", ip, ntohs(sin6->sin6_port));
        break;
    case AF_UNIX:
        if (len <= offsetof(struct sockaddr_un, sun_path)) {
            n = snprintf(buf, size, "unix:");
        } else {
            n = snprintf(buf, size, "unix:%s", ((const struct sockaddr_un *) sa)->sun_path);
        }
        break;
    default:
        n = snprintf(buf, size, "(unknown address family %d)", sa->sa_family);
    }
    return n < 0 ? 0 : lb_min((size_t) n, size ? size - 1 : 0);
}

bool
lb_addr_equal(const lb_addr_t *a, const lb_addr_t *b)
{
    return a->len == b->len && memcmp(&a->u, &b->u, a->len) == 0;
}

/* Optimal string alignment distance: insertions, deletions, substitutions
 * and swaps of two neighbours ("wbe" -> "web") each cost one. */
static bool
lb_addr_is_any(const lb_addr_t *a)
{
    return (a->u.sa.sa_family == AF_INET && a->u.sin.sin_addr.s_addr == htonl(INADDR_ANY))
           || (a->u.sa.sa_family == AF_INET6 && IN6_IS_ADDR_UNSPECIFIED(&a->u.sin6.sin6_addr));
}

bool
lb_addr_overlaps(const lb_addr_t *a, const lb_addr_t *b)
{
    if (a->u.sa.sa_family != b->u.sa.sa_family) {
        return false;
    }
    switch (a->u.sa.sa_family) {
    case AF_INET:
        if (a->u.sin.sin_port != b->u.sin.sin_port) {
            return false;
        }
        break;
    case AF_INET6:
        if (a->u.sin6.sin6_port != b->u.sin6.sin6_port) {
            return false;
        }
        break;
    default:
        return lb_addr_equal(a, b);
    }
    return lb_addr_is_any(a) || lb_addr_is_any(b) || lb_addr_equal(a, b);
}

unsigned
lb_edit_distance(const char *a, const char *b)
{
    unsigned  rows[3][65], *prev2, *prev, *cur, *tmp, cost;
    size_t    la = strlen(a), lb = strlen(b), i, j;

    if (la > 64 || lb > 64) {
        return 255;
    }
    prev2 = rows[0];
    prev = rows[1];
    cur = rows[2];
    for (j = 0; j <= lb; j++) {
        prev[j] = (unsigned) j;
    }
    for (i = 1; i <= la; i++) {
        cur[0] = (unsigned) i;
        for (j = 1; j <= lb; j++) {
            cost = a[i - 1] == b[j - 1] ? 0 : 1;
            cur[j] = lb_min(lb_min(prev[j] + 1, cur[j - 1] + 1), prev[j - 1] + cost);
            if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1]) {
                cur[j] = lb_min(cur[j], prev2[j - 2] + 1);
            }
        }
        tmp = prev2;
        prev2 = prev;
        prev = cur;
        cur = tmp;
    }
    return lb_min(prev[lb], 255u);
}

const char *
lb_did_you_mean(const char *word, const char *const *candidates)
{
    const char  *best = NULL;
    unsigned     d, best_d = 256, limit;

    limit = (unsigned) lb_max((size_t) 1, strlen(word) / 3);
    for (; *candidates; candidates++) {
        d = lb_edit_distance(word, *candidates);
        if (d < best_d) {
            best_d = d;
            best = *candidates;
        }
    }
    return best_d <= limit ? best : NULL;
}
