/*
 * lb_upgrade_codec.c: the 'S' message of a binary upgrade (lb_upgrade.h):
 * what each handed-over descriptor is. No I/O: the fuzzer links it alone.
 */
#include "lb_core.h"
#include "lb_upgrade.h"

#define LB_UPGRADE_MAGIC  "LBDUPGRD"

/* 'S', magic, version, count, state length; then per socket: socktype
 * (1 stream, 2 datagram), slot + 1 (4), the sockaddr's length (2) and
 * bytes, wildcard (1), the text's length (2) and bytes */
#define LB_UPGRADE_HEAD  (1 + 8 + 1 + 4 + 4)

size_t
lb_upgrade_encode_sockets(u_char *buf, size_t size, const lb_upgrade_socket_t *s, size_t n,
                          uint32_t state_len)
{
    size_t  i, off = LB_UPGRADE_HEAD, tlen;

    if (size < LB_UPGRADE_HEAD) {
        return 0;
    }
    buf[0] = 'S';
    memcpy(buf + 1, LB_UPGRADE_MAGIC, 8);
    buf[9] = LB_UPGRADE_VERSION;
    lb_put32(buf + 10, (uint32_t) n);
    lb_put32(buf + 14, state_len);
    for (i = 0; i < n; i++) {
        tlen = strnlen(s[i].addr.text, sizeof(s[i].addr.text));
        if (off + 1 + 4 + 2 + s[i].addr.len + 1 + 2 + tlen > size) {
            return 0;
        }
        buf[off++] = s[i].socktype == SOCK_STREAM ? 1 : 2;
        lb_put32(buf + off, (uint32_t) (s[i].slot + 1));
        off += 4;
        buf[off++] = (u_char) (s[i].addr.len >> 8);
        buf[off++] = (u_char) s[i].addr.len;
        memcpy(buf + off, &s[i].addr.u, s[i].addr.len);
        off += s[i].addr.len;
        buf[off++] = s[i].addr.wildcard;
        buf[off++] = (u_char) (tlen >> 8);
        buf[off++] = (u_char) tlen;
        memcpy(buf + off, s[i].addr.text, tlen);
        off += tlen;
    }
    return off;
}

int
lb_upgrade_parse_sockets(const u_char *p, size_t len, lb_upgrade_socket_t *out, size_t max,
                         size_t *n, uint32_t *state_len, char *err, size_t errlen)
{
    const u_char  *end = p + len;
    uint32_t       count, slot, i;
    size_t         alen, tlen;

    if (len < LB_UPGRADE_HEAD || p[0] != 'S' || memcmp(p + 1, LB_UPGRADE_MAGIC, 8) != 0) {
        snprintf(err, errlen, "the handoff message is not lbd's");
        return LB_ERROR;
    }
    if (p[9] != LB_UPGRADE_VERSION) {
        snprintf(err, errlen, "the handoff message is of version %u; this lbd reads %u",
                 p[9], LB_UPGRADE_VERSION);
        return LB_ERROR;
    }
    count = lb_get32(p + 10);
    *state_len = lb_get32(p + 14);
    if (count > max) {
        snprintf(err, errlen, "the handoff names %u sockets, more than %zu", count, max);
        return LB_ERROR;
    }
    p += LB_UPGRADE_HEAD;
    for (i = 0; i < count; i++) {
        if (end - p < 1 + 4 + 2) {
            goto truncated;
        }
        if (p[0] != 1 && p[0] != 2) {
            snprintf(err, errlen, "socket %u of the handoff has an unknown type %u", i, p[0]);
            return LB_ERROR;
        }
        memset(&out[i], 0, sizeof(out[i]));
        out[i].socktype = p[0] == 1 ? SOCK_STREAM : SOCK_DGRAM;
        slot = lb_get32(p + 1);
        if (slot > LB_MAX_WORKERS) {
            snprintf(err, errlen, "socket %u of the handoff has a bad slot", i);
            return LB_ERROR;
        }
        out[i].slot = (int) slot - 1;
        alen = (size_t) p[5] << 8 | p[6];
        p += 7;
        if (alen < sizeof(sa_family_t) || alen > sizeof(out[i].addr.u)) {
            snprintf(err, errlen, "socket %u of the handoff has a bad address length", i);
            return LB_ERROR;
        }
        if ((size_t) (end - p) < alen + 1 + 2) {
            goto truncated;
        }
        memcpy(&out[i].addr.u, p, alen);
        out[i].addr.len = (socklen_t) alen;
        if (out[i].addr.u.sa.sa_family != AF_INET && out[i].addr.u.sa.sa_family != AF_INET6
            && out[i].addr.u.sa.sa_family != AF_UNIX)
        {
            snprintf(err, errlen, "socket %u of the handoff has an unknown family", i);
            return LB_ERROR;
        }
        p += alen;
        if (*p > 1) {
            snprintf(err, errlen, "socket %u of the handoff has a bad wildcard flag", i);
            return LB_ERROR;
        }
        out[i].addr.wildcard = *p++ != 0;
        tlen = (size_t) p[0] << 8 | p[1];
        p += 2;
        if (tlen >= sizeof(out[i].addr.text) || (size_t) (end - p) < tlen) {
            goto truncated;
        }
        if (memchr(p, '\0', tlen)) {
            snprintf(err, errlen, "socket %u of the handoff has a NUL in its name", i);
            return LB_ERROR;
        }
        memcpy(out[i].addr.text, p, tlen);
        out[i].addr.text[tlen] = '\0';
        p += tlen;
    }
    if (p != end) {
        snprintf(err, errlen, "the handoff message has %zu bytes too many", (size_t) (end - p));
        return LB_ERROR;
    }
    *n = count;
    return LB_OK;

truncated:
    snprintf(err, errlen, "the handoff message is truncated (socket %u)", i);
    return LB_ERROR;
}

