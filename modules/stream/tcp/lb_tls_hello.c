/*
 * lb_tls_hello.c: the ClientHello reader behind sni_routes. Records are
 * unwrapped (RFC 8446 §5.1), the first handshake message is gathered into
 * the parser's own buffer across records, then read as a ClientHello
 * (RFC 8446 §4.1.2, RFC 5246 §7.4.1.2) down to its server_name extension
 * (RFC 6066 §3). Every length is checked against what encloses it.
 */
#include "lb_tls_hello.h"

#define LB_TLS_RECORD_HANDSHAKE       22
#define LB_TLS_RECORD_MAX             16384     /* RFC 8446 §5.1: 2^14 */
#define LB_TLS_HANDSHAKE_CLIENT_HELLO 1
#define LB_TLS_EXT_SERVER_NAME        0
#define LB_TLS_NAME_HOST              0
/* version, random, and the shortest session id, cipher suites and
 * compression methods */
#define LB_TLS_HELLO_MIN              (2 + 32 + 1 + 2 + 2 + 1 + 1)

static inline size_t
lb_tls_u16(const uint8_t *p)
{
    return (size_t) p[0] << 8 | p[1];
}

/* The server_name extension's body ext[0..n): a ServerNameList. */
static int
lb_tls_hello_server_name(const uint8_t *ext, size_t n, lb_str_t *sni, const char **why)
{
    size_t  q, nlen;

    if (n < 2 || lb_tls_u16(ext) != n - 2 || n == 2) {
        *why = "server_name extension has a bad list length";
        return LB_ERROR;
    }
    for (q = 2; q < n; q += 3 + nlen) {
        if (n - q < 3) {
            *why = "server_name entry is truncated";
            return LB_ERROR;
        }
        nlen = lb_tls_u16(ext + q + 1);
        if (nlen > n - q - 3) {
            *why = "server_name entry is longer than its list";
            return LB_ERROR;
        }
        if (ext[q] == LB_TLS_NAME_HOST && sni->data == NULL) {
            if (nlen == 0) {
                *why = "server_name host_name is empty";
                return LB_ERROR;
            }
            sni->data = (char *) ext + q + 3;
            sni->len = nlen;
        }
    }
    return sni->data ? LB_OK : LB_DECLINED;
}

/* The body of a complete ClientHello, b[0..n). */
static int
lb_tls_hello_body(const uint8_t *b, size_t n, lb_str_t *sni, const char **why)
{
    size_t  p, len, end, type;
    bool    seen = false;
    int     rc = LB_DECLINED;

    if (b[0] != 3) {
        *why = "ClientHello version is not 3.x";
        return LB_ERROR;
    }
    p = 2 + 32;
    len = b[p];
    if (len > 32 || len > n - p - 1) {
        *why = "ClientHello session id is too long";
        return LB_ERROR;
    }
    p += 1 + len;
    if (n - p < 2 || (len = lb_tls_u16(b + p)) < 2 || len % 2 || len > n - p - 2) {
        *why = "ClientHello cipher suites are malformed";
        return LB_ERROR;
    }
    p += 2 + len;
    if (n - p < 1 || (len = b[p]) < 1 || len > n - p - 1) {
        *why = "ClientHello compression methods are malformed";
        return LB_ERROR;
    }
    p += 1 + len;
    if (p == n) {
        return LB_DECLINED;         /* no extensions at all */
    }
    if (n - p < 2 || lb_tls_u16(b + p) != n - p - 2) {
        *why = "ClientHello extensions do not fill the message exactly";
        return LB_ERROR;
    }
    p += 2;
    end = n;
    while (p < end) {
        if (end - p < 4) {
            *why = "ClientHello extension is truncated";
            return LB_ERROR;
        }
        type = lb_tls_u16(b + p);
        len = lb_tls_u16(b + p + 2);
        p += 4;
        if (len > end - p) {
            *why = "ClientHello extension is longer than the message";
            return LB_ERROR;
        }
        if (type == LB_TLS_EXT_SERVER_NAME) {
            if (seen) {
                *why = "ClientHello has two server_name extensions";
                return LB_ERROR;
            }
            seen = true;
            rc = lb_tls_hello_server_name(b + p, len, sni, why);
            if (rc == LB_ERROR) {
                return LB_ERROR;
            }
        }
        p += len;
    }
    return rc;
}

/* Checks the start of a record header at p[0..avail), avail > 0. */
static int
lb_tls_hello_record(const lb_tls_hello_t *h, const uint8_t *p, size_t avail, const char **why)
{
    if (p[0] != LB_TLS_RECORD_HANDSHAKE) {
        if (h->off > 0) {
            *why = "a record other than handshake before the ClientHello ended";
        } else if (p[0] & 0x80) {
            *why = "an SSLv2-style ClientHello (it cannot name a server)";
        } else {
            *why = "not TLS: the first byte is not a handshake record";
        }
        return LB_ERROR;
    }
    if (avail > 1 && p[1] != 3) {
        *why = "not TLS: the record version is not 3.x";
        return LB_ERROR;
    }
    if (avail < 5) {
        return LB_AGAIN;
    }
    if (lb_tls_u16(p + 3) == 0) {
        *why = "an empty handshake record";
        return LB_ERROR;
    }
    if (lb_tls_u16(p + 3) > LB_TLS_RECORD_MAX) {
        *why = "a record longer than 16384 bytes";
        return LB_ERROR;
    }
    return LB_OK;
}

/* Checks the handshake header once its 4 bytes are in. */
static int
lb_tls_hello_header(lb_tls_hello_t *h, const char **why)
{
    size_t  body;

    if (h->msg[0] != LB_TLS_HANDSHAKE_CLIENT_HELLO) {
        *why = "the first handshake message is not a ClientHello";
        return LB_ERROR;
    }
    body = (size_t) h->msg[1] << 16 | (size_t) h->msg[2] << 8 | h->msg[3];
    if (body > LB_TLS_HELLO_MAX) {
        *why = "ClientHello is longer than 16384 bytes";
        return LB_ERROR;
    }
    if (body < LB_TLS_HELLO_MIN) {
        *why = "ClientHello is too short";
        return LB_ERROR;
    }
    h->msg_need = 4 + body;
    return LB_OK;
}

int
lb_tls_hello_parse(lb_tls_hello_t *h, const uint8_t *data, size_t len,
                   lb_str_t *sni, const char **why)
{
    size_t  take;
    int     rc;

    sni->len = 0;
    sni->data = NULL;
    *why = NULL;

    while (h->off < len) {
        if (h->rec_left == 0) {
            rc = lb_tls_hello_record(h, data + h->off, len - h->off, why);
            if (rc != LB_OK) {
                return rc;
            }
            h->rec_left = lb_tls_u16(data + h->off + 3);
            h->off += 5;
            continue;
        }
        take = lb_min(h->rec_left, len - h->off);
        if (h->msg_len < 4) {
            take = lb_min(take, 4 - h->msg_len);
        } else {
            take = lb_min(take, h->msg_need - h->msg_len);
        }
        memcpy(h->msg + h->msg_len, data + h->off, take);
        h->msg_len += take;
        h->off += take;
        h->rec_left -= take;

        if (h->msg_len == 4 && h->msg_need == 0
            && lb_tls_hello_header(h, why) != LB_OK)
        {
            return LB_ERROR;
        }
        if (h->msg_need && h->msg_len == h->msg_need) {
            rc = lb_tls_hello_body(h->msg + 4, h->msg_need - 4, sni, why);
            if (rc != LB_OK) {
                sni->len = 0;       /* a name seen before an error is no answer */
                sni->data = NULL;
            }
            return rc;
        }
    }
    return LB_AGAIN;
}
