/*
 * lb_cidr.c: IP address and CIDR block parsing and matching. Addresses
 * become two 64-bit integers, so a match is two XOR-and-mask tests.
 */
#include "lb_core.h"

#include <arpa/inet.h>

static const uint8_t  lb_v4_mapped_prefix[12] = {
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff
};

static uint64_t
lb_load_be64(const uint8_t *p)
{
    uint64_t  v = 0;
    int       i;

    for (i = 0; i < 8; i++) {
        v = v << 8 | p[i];
    }
    return v;
}

static void
lb_store_be64(uint8_t *p, uint64_t v)
{
    int  i;

    for (i = 7; i >= 0; i--) {
        p[i] = (uint8_t) v;
        v >>= 8;
    }
}

static void
lb_ip_from_in(const struct in_addr *in, lb_ip_t *out)
{
    out->family = AF_INET;
    out->addr[0] = 0;
    out->addr[1] = ntohl(in->s_addr);
}

/* An IPv4-mapped address becomes the IPv4 address it carries. */
static void
lb_ip_from_in6(const struct in6_addr *in6, lb_ip_t *out)
{
    const uint8_t  *b = in6->s6_addr;

    if (memcmp(b, lb_v4_mapped_prefix, sizeof(lb_v4_mapped_prefix)) == 0) {
        out->family = AF_INET;
        out->addr[0] = 0;
        out->addr[1] = (uint32_t) b[12] << 24 | (uint32_t) b[13] << 16
                       | (uint32_t) b[14] << 8 | b[15];
        return;
    }
    out->family = AF_INET6;
    out->addr[0] = lb_load_be64(b);
    out->addr[1] = lb_load_be64(b + 8);
}

int
lb_ip_from_sockaddr(const struct sockaddr *sa, lb_ip_t *out)
{
    switch (sa->sa_family) {
    case AF_INET:
        lb_ip_from_in(&((const struct sockaddr_in *) sa)->sin_addr, out);
        return LB_OK;
    case AF_INET6:
        lb_ip_from_in6(&((const struct sockaddr_in6 *) sa)->sin6_addr, out);
        return LB_OK;
    default:
        return LB_DECLINED;
    }
}

int
lb_ip_parse(const char *s, size_t len, lb_ip_t *out)
{
    char             text[LB_IP_TEXT_LEN];
    struct in_addr   in;
    struct in6_addr  in6;

    if (len == 0 || len >= sizeof(text) || memchr(s, '\0', len) != NULL) {
        return LB_ERROR;
    }
    memcpy(text, s, len);
    text[len] = '\0';

    if (memchr(text, ':', len) != NULL) {
        if (inet_pton(AF_INET6, text, &in6) != 1) {
            return LB_ERROR;
        }
        lb_ip_from_in6(&in6, out);
        return LB_OK;
    }
    if (inet_pton(AF_INET, text, &in) != 1) {
        return LB_ERROR;
    }
    lb_ip_from_in(&in, out);
    return LB_OK;
}

size_t
lb_ip_format(const lb_ip_t *ip, char *buf, size_t size)
{
    char             text[LB_IP_TEXT_LEN], *p = text;
    struct in6_addr  in6;
    uint32_t         a;
    unsigned         octet;
    size_t           len;
    int              i;

    if (ip->family == AF_INET) {
        /* by hand: glibc's inet_ntop formats IPv4 with sprintf, a cost on
         * every request that names its client */
        a = (uint32_t) ip->addr[1];
        for (i = 3; i >= 0; i--) {
            octet = (a >> (8 * i)) & 0xff;
            if (octet >= 100) {
                *p++ = (char) ('0' + octet / 100);
            }
            if (octet >= 10) {
                *p++ = (char) ('0' + octet / 10 % 10);
            }
            *p++ = (char) ('0' + octet % 10);
            if (i) {
                *p++ = '.';
            }
        }
        *p = '\0';
        len = (size_t) (p - text);
    } else {
        lb_store_be64(in6.s6_addr, ip->addr[0]);
        lb_store_be64(in6.s6_addr + 8, ip->addr[1]);
        inet_ntop(AF_INET6, &in6, text, sizeof(text));
        len = strlen(text);
    }
    /* snprintf-like: as much as fits, NUL-terminated, the full length back */
    if (size) {
        memcpy(buf, text, lb_min(len, size - 1));
        buf[lb_min(len, size - 1)] = '\0';
    }
    return len;
}

/* The mask of the first `prefix` bits of a 128-bit address, or of the low
 * 32 bits of addr[1] for IPv4. */
static void
lb_cidr_make_mask(int family, unsigned prefix, uint64_t mask[2])
{
    if (family == AF_INET) {
        mask[0] = 0;
        mask[1] = prefix == 0 ? 0 : (uint64_t) (UINT32_MAX << (32 - prefix) & UINT32_MAX);
        return;
    }
    mask[0] = prefix == 0 ? 0 : prefix >= 64 ? UINT64_MAX : UINT64_MAX << (64 - prefix);
    mask[1] = prefix <= 64 ? 0 : prefix == 128 ? UINT64_MAX : UINT64_MAX << (128 - prefix);
}

/* Writes s without its brackets: the suggestion for "[::1]". */
static void
lb_cidr_unbracket(const char *s, char *buf, size_t size)
{
    size_t  n = 0;

    for (; *s != '\0' && n + 1 < size; s++) {
        if (*s != '[' && *s != ']') {
            buf[n++] = *s;
        }
    }
    buf[n] = '\0';
}

int
lb_cidr_parse(const char *s, lb_cidr_t *out, char *err, size_t errlen)
{
    char             fix[LB_CIDR_TEXT_LEN + 16];
    const char      *slash, *p;
    size_t           n;
    unsigned         max, prefix;
    bool             v6;
    lb_ip_t          ip;
    lb_cidr_t        c;

    if (*s == '\0') {
        snprintf(err, errlen, "empty CIDR (expected \"ADDRESS\" or \"ADDRESS/PREFIX\", "
                 "e.g. \"10.0.0.0/8\")");
        return LB_ERROR;
    }
    if (strpbrk(s, "[]") != NULL) {
        lb_cidr_unbracket(s, fix, sizeof(fix));
        snprintf(err, errlen, "brackets are not used in a CIDR: \"%s\" (write \"%s\")",
                 s, fix);
        return LB_ERROR;
    }
    if (strchr(s, '%') != NULL) {
        snprintf(err, errlen, "zone index not allowed in \"%s\" (use a plain address)", s);
        return LB_ERROR;
    }

    slash = strchr(s, '/');
    n = slash ? (size_t) (slash - s) : strlen(s);
    v6 = memchr(s, ':', n) != NULL;
    if (lb_ip_parse(s, n, &ip) != LB_OK) {
        snprintf(err, errlen, "invalid %s address in \"%s\"%s", v6 ? "IPv6" : "IPv4", s,
                 v6 ? "" : " (host names are not resolved; use an address)");
        return LB_ERROR;
    }
    /* The width comes from how the address is written: "::ffff:1.2.3.4"
     * takes an IPv6 prefix even though it is stored as IPv4. */
    max = v6 ? 128 : 32;
    prefix = max;
    if (slash != NULL) {
        p = slash + 1;
        prefix = 0;
        if (*p == '\0' || strlen(p) > 3) {
            goto bad_prefix;
        }
        for (; *p != '\0'; p++) {
            if (*p < '0' || *p > '9') {
                goto bad_prefix;
            }
            prefix = prefix * 10 + (unsigned) (*p - '0');
        }
        if (prefix > max) {
            goto bad_prefix;
        }
    }

    c.family = v6 ? AF_INET6 : AF_INET;
    c.prefix = prefix;
    c.addr[0] = ip.addr[0];
    c.addr[1] = ip.addr[1];
    if (v6 && ip.family == AF_INET) {
        /* Back to 128 bits to check the host bits as written. */
        c.addr[1] |= (uint64_t) 0xffff << 32;
    }
    lb_cidr_make_mask(c.family, prefix, c.mask);

    if ((c.addr[0] & ~c.mask[0]) != 0 || (c.addr[1] & ~c.mask[1]) != 0) {
        c.addr[0] &= c.mask[0];
        c.addr[1] &= c.mask[1];
        lb_cidr_format(&c, fix, sizeof(fix));
        snprintf(err, errlen, "host bits set in \"%s\" (did you mean \"%s\"?)", s, fix);
        return LB_ERROR;
    }

    /* A block inside ::ffff:0:0/96 is the IPv4 block it covers, since
     * mapped clients are matched as IPv4. */
    if (c.family == AF_INET6 && prefix >= 96
        && c.addr[0] == 0 && (c.addr[1] >> 32) == 0xffff)
    {
        c.family = AF_INET;
        c.prefix = prefix - 96;
        c.addr[1] &= UINT32_MAX;
        lb_cidr_make_mask(AF_INET, c.prefix, c.mask);
    }

    *out = c;
    return LB_OK;

bad_prefix:
    snprintf(err, errlen, "invalid prefix length \"%s\" in \"%s\" (must be 0..%u)",
             slash + 1, s, max);
    return LB_ERROR;
}

size_t
lb_cidr_format(const lb_cidr_t *c, char *buf, size_t size)
{
    char     ip[LB_IP_TEXT_LEN];
    lb_ip_t  a = { c->family, { c->addr[0], c->addr[1] } };
    int      n;

    lb_ip_format(&a, ip, sizeof(ip));
    n = snprintf(buf, size, "%s/%u", ip, c->prefix);
    return n < 0 ? 0 : (size_t) n;
}

bool
lb_cidr_match_ip(const lb_cidr_t *c, const lb_ip_t *ip)
{
    return ip->family == c->family
           && ((ip->addr[0] ^ c->addr[0]) & c->mask[0]) == 0
           && ((ip->addr[1] ^ c->addr[1]) & c->mask[1]) == 0;
}

bool
lb_cidr_match(const lb_cidr_t *c, const struct sockaddr *sa)
{
    lb_ip_t  ip;

    return lb_ip_from_sockaddr(sa, &ip) == LB_OK && lb_cidr_match_ip(c, &ip);
}

int
lb_cidr_list_add(lb_cidr_list_t *l, lb_pool_t *pool, const char *s,
                 char *err, size_t errlen)
{
    lb_cidr_t   c, *slot;

    if (lb_cidr_parse(s, &c, err, errlen) != LB_OK) {
        return LB_ERROR;
    }
    if (l->cidrs.elts == NULL
        && lb_array_init(&l->cidrs, pool, 4, sizeof(lb_cidr_t)) != LB_OK)
    {
        snprintf(err, errlen, "out of memory");
        return LB_ERROR;
    }
    slot = lb_array_push(&l->cidrs);
    if (slot == NULL) {
        snprintf(err, errlen, "out of memory");
        return LB_ERROR;
    }
    *slot = c;
    return LB_OK;
}

bool
lb_cidr_list_match_ip(const lb_cidr_list_t *l, const lb_ip_t *ip)
{
    const lb_cidr_t  *c = l->cidrs.elts;
    size_t            i;

    for (i = 0; i < l->cidrs.nelts; i++) {
        if (lb_cidr_match_ip(&c[i], ip)) {
            return true;
        }
    }
    return false;
}

bool
lb_cidr_list_match(const lb_cidr_list_t *l, const struct sockaddr *sa)
{
    lb_ip_t  ip;

    return lb_ip_from_sockaddr(sa, &ip) == LB_OK && lb_cidr_list_match_ip(l, &ip);
}

bool
lb_cidr_list_match_text(const lb_cidr_list_t *l, const char *ip, size_t len)
{
    lb_ip_t  a;

    return lb_ip_parse(ip, len, &a) == LB_OK && lb_cidr_list_match_ip(l, &a);
}
