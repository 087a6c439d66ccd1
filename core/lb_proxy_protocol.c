/*
 * lb_proxy_protocol.c: parsing and building PROXY protocol headers
 * (HAProxy's proxy-protocol.txt, versions 1 and 2). Pure functions over
 * byte ranges: no I/O, no allocation, every read bounded by the length it
 * is given, so the fuzzer and the unit tests link this file alone.
 */
#include "lb_core.h"
#include "lb_proxy_protocol.h"

#include <arpa/inet.h>
#include <netinet/in.h>

#define LB_PROXY_V2_FIXED    16
#define LB_PROXY_V2_LOCAL    0x0
#define LB_PROXY_V2_PROXY    0x1

/* address block sizes by family (spec §2.2): unspec, inet, inet6, unix */
static const size_t   lb_proxy_v2_addr_len[] = { 0, 12, 36, 216 };

static const uint8_t  lb_proxy_v2_sig[12] = {
    0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a
};

/* Version 1 --------------------------------------------------------------- */

/* A decimal port: "0" or 1-5 digits without a leading zero, at most 65535. */
static bool
lb_proxy_v1_port(const uint8_t *p, size_t n, uint16_t *port)
{
    uint32_t  v = 0;
    size_t    i;

    if (n == 0 || n > 5 || (p[0] == '0' && n > 1)) {
        return false;
    }
    for (i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9') {
            return false;
        }
        v = v * 10 + (uint32_t) (p[i] - '0');
    }
    if (v > 65535) {
        return false;
    }
    *port = (uint16_t) v;
    return true;
}

/* Address text of family af into sa (its port left 0). */
static bool
lb_proxy_v1_addr(int af, const uint8_t *p, size_t n, struct sockaddr_storage *sa)
{
    char                  text[INET6_ADDRSTRLEN];
    struct sockaddr_in   *sin = (struct sockaddr_in *) sa;
    struct sockaddr_in6  *sin6 = (struct sockaddr_in6 *) sa;

    if (n == 0 || n >= sizeof(text)) {
        return false;
    }
    memcpy(text, p, n);
    text[n] = '\0';
    memset(sa, 0, sizeof(*sa));
    if (af == AF_INET) {
        sin->sin_family = AF_INET;
        return inet_pton(AF_INET, text, &sin->sin_addr) == 1;
    }
    sin6->sin6_family = AF_INET6;
    return inet_pton(AF_INET6, text, &sin6->sin6_addr) == 1;
}

static void
lb_proxy_set_port(struct sockaddr_storage *sa, uint16_t port)
{
    if (sa->ss_family == AF_INET) {
        ((struct sockaddr_in *) sa)->sin_port = htons(port);
    } else {
        ((struct sockaddr_in6 *) sa)->sin6_port = htons(port);
    }
}

/* Splits the next field of line[*pos..end) at a single space (or the end
 * when last). Fields are never empty. */
static bool
lb_proxy_v1_field(const uint8_t *line, size_t end, size_t *pos, bool last,
                  const uint8_t **f, size_t *n)
{
    size_t  i = *pos;

    while (i < end && line[i] != ' ') {
        i++;
    }
    if (i == *pos || (last ? i != end : i == end)) {
        return false;
    }
    *f = line + *pos;
    *n = i - *pos;
    *pos = last ? i : i + 1;
    return true;
}

/* "PROXY TCP4 src dst sport dport\r\n", "PROXY UNKNOWN ...\r\n" (§2.1). */
static int
lb_proxy_parse_v1(lb_proxy_header_t *h, const uint8_t *buf, size_t len, const char **why)
{
    const uint8_t  *f[4];
    size_t          n[4], i, end, pos;
    uint16_t        sport, dport;
    int             af;

    if (memcmp(buf, "PROXY ", lb_min(len, 6)) != 0) {
        *why = "not a PROXY protocol header";
        return LB_ERROR;
    }
    /* the line before CRLF has at most 105 bytes */
    for (end = 0; end < len && end < LB_PROXY_V1_MAX_LEN - 1; end++) {
        if (buf[end] == '\r') {
            break;
        }
        if (buf[end] == '\n') {
            *why = "v1 header has a bare LF";
            return LB_ERROR;
        }
        if (buf[end] < 0x20 || buf[end] > 0x7e) {
            *why = "v1 header has a control or non-ASCII byte";
            return LB_ERROR;
        }
    }
    if (end == LB_PROXY_V1_MAX_LEN - 1) {
        *why = "v1 header has no CRLF within 107 bytes";
        return LB_ERROR;
    }
    if (end + 1 >= len) {
        return LB_AGAIN;
    }
    if (buf[end + 1] != '\n') {
        *why = "v1 header has a CR without LF";
        return LB_ERROR;
    }

    h->version = 1;
    h->len = end + 2;
    pos = 6;
    if (end - pos >= 7 && memcmp(buf + pos, "UNKNOWN", 7) == 0
        && (end - pos == 7 || buf[pos + 7] == ' '))
    {
        h->local = true;       /* the rest of the line is to be ignored */
        return LB_OK;
    }
    if (end - pos > 5 && memcmp(buf + pos, "TCP4 ", 5) == 0) {
        af = AF_INET;
    } else if (end - pos > 5 && memcmp(buf + pos, "TCP6 ", 5) == 0) {
        af = AF_INET6;
    } else {
        *why = "v1 protocol is not TCP4, TCP6 or UNKNOWN";
        return LB_ERROR;
    }
    pos += 5;
    for (i = 0; i < 4; i++) {
        if (!lb_proxy_v1_field(buf, end, &pos, i == 3, &f[i], &n[i])) {
            *why = "v1 header does not have four fields separated by single spaces";
            return LB_ERROR;
        }
    }
    if (!lb_proxy_v1_addr(af, f[0], n[0], &h->src)
        || !lb_proxy_v1_addr(af, f[1], n[1], &h->dst))
    {
        *why = af == AF_INET ? "v1 TCP4 address is not an IPv4 address"
                             : "v1 TCP6 address is not an IPv6 address";
        return LB_ERROR;
    }
    if (!lb_proxy_v1_port(f[2], n[2], &sport) || !lb_proxy_v1_port(f[3], n[3], &dport)) {
        *why = "v1 port is not a number from 0 to 65535";
        return LB_ERROR;
    }
    lb_proxy_set_port(&h->src, sport);
    lb_proxy_set_port(&h->dst, dport);
    h->addr_len = af == AF_INET ? sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6);
    return LB_OK;
}

/* Version 2 --------------------------------------------------------------- */

/* CRC-32C (Castagnoli, reflected 0x82f63b78), bit by bit: headers are
 * short and the check is rare. */
static uint32_t
lb_proxy_crc32c(const uint8_t *p, size_t n, size_t zero_from, size_t zero_len)
{
    uint32_t  crc = 0xffffffff;
    size_t    i;
    int       k;

    for (i = 0; i < n; i++) {
        crc ^= (i >= zero_from && i < zero_from + zero_len) ? 0 : p[i];
        for (k = 0; k < 8; k++) {
            crc = (crc >> 1) ^ (0x82f63b78 & (0u - (crc & 1)));
        }
    }
    return ~crc;
}

/* Checks the TLVs in buf[from..to) (§2.2.x): each fits, a CRC32C TLV
 * matches the header buf[0..to). */
static int
lb_proxy_v2_tlvs(const uint8_t *buf, size_t from, size_t to, const char **why)
{
    size_t    off, vlen;
    uint32_t  want;

    for (off = from; off < to; off += 3 + vlen) {
        if (to - off < 3) {
            *why = "v2 TLV is truncated";
            return LB_ERROR;
        }
        vlen = (size_t) buf[off + 1] << 8 | buf[off + 2];
        if (vlen > to - off - 3) {
            *why = "v2 TLV is longer than the header";
            return LB_ERROR;
        }
        if (buf[off] == LB_PROXY_TLV_CRC32C) {
            if (vlen != 4) {
                *why = "v2 CRC32C TLV is not 4 bytes";
                return LB_ERROR;
            }
            want = (uint32_t) buf[off + 3] << 24 | (uint32_t) buf[off + 4] << 16
                   | (uint32_t) buf[off + 5] << 8 | buf[off + 6];
            if (lb_proxy_crc32c(buf, to, off + 3, 4) != want) {
                *why = "v2 CRC32C does not match the header";
                return LB_ERROR;
            }
        }
    }
    return LB_OK;
}

static int
lb_proxy_parse_v2(lb_proxy_header_t *h, const uint8_t *buf, size_t len, const char **why)
{
    struct sockaddr_in   *s4, *d4;
    struct sockaddr_in6  *s6, *d6;
    size_t                dlen, alen;
    unsigned              cmd, fam, transport;

    if (memcmp(buf, lb_proxy_v2_sig, lb_min(len, sizeof(lb_proxy_v2_sig))) != 0) {
        *why = "not a PROXY protocol header";
        return LB_ERROR;
    }
    if (len > 12 && (buf[12] >> 4) != 2) {
        *why = "v2 header has a version other than 2";
        return LB_ERROR;
    }
    if (len > 12 && (buf[12] & 0x0f) > LB_PROXY_V2_PROXY) {
        *why = "v2 command is neither LOCAL nor PROXY";
        return LB_ERROR;
    }
    if (len > 13) {
        /* only 0x00 and {inet, inet6, unix} x {stream, dgram} exist */
        fam = buf[13] >> 4;
        transport = buf[13] & 0x0f;
        if (buf[13] != 0x00 && (fam < 1 || fam > 3 || transport < 1 || transport > 2)) {
            *why = "v2 address family or transport is invalid";
            return LB_ERROR;
        }
    }
    if (len < LB_PROXY_V2_FIXED) {
        return LB_AGAIN;
    }
    cmd = buf[12] & 0x0f;
    fam = buf[13] >> 4;
    transport = buf[13] & 0x0f;
    dlen = (size_t) buf[14] << 8 | buf[15];
    if (dlen > LB_PROXY_V2_MAX_DATA) {
        *why = "v2 header is longer than 1040 bytes";
        return LB_ERROR;
    }
    alen = lb_proxy_v2_addr_len[fam];
    if (cmd == LB_PROXY_V2_PROXY && dlen < alen) {
        *why = "v2 length is too short for its address family";
        return LB_ERROR;
    }
    if (len < LB_PROXY_V2_FIXED + dlen) {
        return LB_AGAIN;
    }

    h->version = 2;
    h->len = LB_PROXY_V2_FIXED + dlen;
    if (cmd == LB_PROXY_V2_LOCAL || fam == 0) {
        /* the addresses, if any, are to be ignored, and so are TLVs that
         * cannot be told from them */
        h->local = true;
        return LB_OK;
    }
    if (lb_proxy_v2_tlvs(buf, LB_PROXY_V2_FIXED + alen, h->len, why) != LB_OK) {
        return LB_ERROR;
    }
    h->tlv = buf + LB_PROXY_V2_FIXED + alen;
    h->tlv_len = dlen - alen;
    if (transport != 1 || fam == 3) {
        h->local = true;        /* unix or datagram: not a client of ours */
        return LB_OK;
    }

    buf += LB_PROXY_V2_FIXED;
    memset(&h->src, 0, sizeof(h->src));
    memset(&h->dst, 0, sizeof(h->dst));
    if (fam == 1) {
        s4 = (struct sockaddr_in *) &h->src;
        d4 = (struct sockaddr_in *) &h->dst;
        s4->sin_family = d4->sin_family = AF_INET;
        memcpy(&s4->sin_addr, buf, 4);
        memcpy(&d4->sin_addr, buf + 4, 4);
        memcpy(&s4->sin_port, buf + 8, 2);
        memcpy(&d4->sin_port, buf + 10, 2);
        h->addr_len = sizeof(struct sockaddr_in);
    } else {
        s6 = (struct sockaddr_in6 *) &h->src;
        d6 = (struct sockaddr_in6 *) &h->dst;
        s6->sin6_family = d6->sin6_family = AF_INET6;
        memcpy(&s6->sin6_addr, buf, 16);
        memcpy(&d6->sin6_addr, buf + 16, 16);
        memcpy(&s6->sin6_port, buf + 32, 2);
        memcpy(&d6->sin6_port, buf + 34, 2);
        h->addr_len = sizeof(struct sockaddr_in6);
    }
    return LB_OK;
}

int
lb_proxy_parse(lb_proxy_header_t *h, const uint8_t *buf, size_t len, const char **why)
{
    memset(h, 0, offsetof(lb_proxy_header_t, src));
    h->addr_len = 0;
    h->tlv = NULL;
    h->tlv_len = 0;
    *why = NULL;

    if (len == 0) {
        return LB_AGAIN;
    }
    if (buf[0] == 'P') {
        return lb_proxy_parse_v1(h, buf, len, why);
    }
    if (buf[0] == lb_proxy_v2_sig[0]) {
        return lb_proxy_parse_v2(h, buf, len, why);
    }
    *why = "not a PROXY protocol header";
    return LB_ERROR;
}

bool
lb_proxy_tlv_next(const lb_proxy_header_t *h, size_t *off, uint8_t *type,
                  const uint8_t **value, size_t *value_len)
{
    size_t  vlen;

    /* the parser checked that every TLV fits */
    if (h->tlv == NULL || *off + 3 > h->tlv_len) {
        return false;
    }
    vlen = (size_t) h->tlv[*off + 1] << 8 | h->tlv[*off + 2];
    *type = h->tlv[*off];
    *value = h->tlv + *off + 3;
    *value_len = vlen;
    *off += 3 + vlen;
    return true;
}

/* Building ---------------------------------------------------------------- */

static void
lb_proxy_v4_mapped(const struct sockaddr_in *sin, struct sockaddr_in6 *out)
{
    memset(out, 0, sizeof(*out));
    out->sin6_family = AF_INET6;
    out->sin6_port = sin->sin_port;
    out->sin6_addr.s6_addr[10] = 0xff;
    out->sin6_addr.s6_addr[11] = 0xff;
    memcpy(&out->sin6_addr.s6_addr[12], &sin->sin_addr, 4);
}

size_t
lb_proxy_build(int version, uint8_t *buf, size_t size,
               const struct sockaddr *client, const struct sockaddr *local)
{
    const struct sockaddr_in   *c4 = (const struct sockaddr_in *) client;
    const struct sockaddr_in   *l4 = (const struct sockaddr_in *) local;
    const struct sockaddr_in6  *c6 = (const struct sockaddr_in6 *) client;
    const struct sockaddr_in6  *l6 = (const struct sockaddr_in6 *) local;
    struct sockaddr_in6         m[2];
    char                        src[INET6_ADDRSTRLEN], dst[INET6_ADDRSTRLEN];
    int                         af = 0, n;

    if (version != 1 && version != 2) {
        return 0;
    }
    if (client->sa_family == AF_INET && local->sa_family == AF_INET) {
        af = AF_INET;
    } else if ((client->sa_family == AF_INET || client->sa_family == AF_INET6)
               && (local->sa_family == AF_INET || local->sa_family == AF_INET6))
    {
        af = AF_INET6;
        if (client->sa_family == AF_INET) {
            lb_proxy_v4_mapped(c4, &m[0]);
            c6 = &m[0];
        }
        if (local->sa_family == AF_INET) {
            lb_proxy_v4_mapped(l4, &m[1]);
            l6 = &m[1];
        }
    }

    if (version == 1) {
        if (af == 0) {
            n = snprintf((char *) buf, size, "PROXY UNKNOWN\r\n");
        } else {
            inet_ntop(af, af == AF_INET ? (const void *) &c4->sin_addr
                                        : (const void *) &c6->sin6_addr, src, sizeof(src));
            inet_ntop(af, af == AF_INET ? (const void *) &l4->sin_addr
                                        : (const void *) &l6->sin6_addr, dst, sizeof(dst));
            n = snprintf((char *) buf, size, "PROXY %s %s %s %u %u\r\n",
                         af == AF_INET ? "TCP4" : "TCP6", src, dst,
                         ntohs(af == AF_INET ? c4->sin_port : c6->sin6_port),
                         ntohs(af == AF_INET ? l4->sin_port : l6->sin6_port));
        }
        return n > 0 && (size_t) n < size ? (size_t) n : 0;
    }

    n = af == AF_INET ? 12 : af == AF_INET6 ? 36 : 0;
    if (size < LB_PROXY_V2_FIXED + (size_t) n) {
        return 0;
    }
    memcpy(buf, lb_proxy_v2_sig, sizeof(lb_proxy_v2_sig));
    buf[12] = af ? 0x21 : 0x20;                 /* version 2, PROXY or LOCAL */
    buf[13] = af == AF_INET ? 0x11 : af == AF_INET6 ? 0x21 : 0x00;
    buf[14] = 0;
    buf[15] = (uint8_t) n;
    if (af == AF_INET) {
        memcpy(buf + 16, &c4->sin_addr, 4);
        memcpy(buf + 20, &l4->sin_addr, 4);
        memcpy(buf + 24, &c4->sin_port, 2);
        memcpy(buf + 26, &l4->sin_port, 2);
    } else if (af == AF_INET6) {
        memcpy(buf + 16, &c6->sin6_addr, 16);
        memcpy(buf + 32, &l6->sin6_addr, 16);
        memcpy(buf + 48, &c6->sin6_port, 2);
        memcpy(buf + 50, &l6->sin6_port, 2);
    }
    return LB_PROXY_V2_FIXED + (size_t) n;
}
