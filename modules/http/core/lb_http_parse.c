/*
 * lb_http_parse.c: the HTTP/1.x message parser (RFC 9112): request and
 * status lines, field lines, message framing (§6) and the chunked transfer
 * coding (§7.1). Strict wherever laxity would let two parsers disagree on
 * where a message ends; what it returns are views into the caller's buffer.
 */
#include "lb_core.h"
#include "lb_http_parse.h"

/* RFC 9112 §2.2: a server SHOULD ignore at least one empty line before the
 * request-line. A few are enough for the clients that send one after a
 * POST body; more is someone filling our buffer with nothing. */
#define LB_HTTP_MAX_EMPTY_LINES  4

/* A chunk size must fit 60 bits: far beyond any real body, and the digits
 * accumulate in a uint64_t without a chance to wrap. */
#define LB_HTTP_CHUNK_SIZE_BITS  60

/* Byte classes, one table lookup per byte on the hot path. */
#define LB_HTTP_TOKEN    0x01     /* tchar (RFC 9110 §5.6.2) */
#define LB_HTTP_VCHAR    0x02     /* visible ASCII: request-target bytes */
#define LB_HTTP_FIELD    0x04     /* field-vchar, SP, HTAB: field value bytes */
#define LB_HTTP_HEX      0x08     /* HEXDIG: chunk-size */
#define LB_HTTP_HOST     0x10     /* uri-host and port (RFC 3986 §3.2.2) */
#define LB_HTTP_SCHEME   0x20     /* ALPHA DIGIT "+" "-" ".": URI scheme */

#define F_  LB_HTTP_FIELD
#define V_  (LB_HTTP_VCHAR | F_)
#define VA  (V_ | LB_HTTP_HOST)
#define T_  (LB_HTTP_TOKEN | V_)
#define TA  (T_ | LB_HTTP_HOST)
#define TS  (TA | LB_HTTP_SCHEME)
#define X_  (TS | LB_HTTP_HEX)

static const uint8_t  lb_http_class[256] = {
    0,  0,  0,  0,  0,  0,  0,  0,  0,  F_, 0,  0,  0,  0,  0,  0,   /* 00 */
    0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,   /* 10 */
    F_, TA, V_, T_, TA, TA, TA, TA, VA, VA, TA, TS, VA, TS, TS, V_,  /*  !"#$%&'()*+,-./ */
    X_, X_, X_, X_, X_, X_, X_, X_, X_, X_, VA, VA, V_, VA, V_, V_,  /* 0123456789:;<=>? */
    V_, X_, X_, X_, X_, X_, X_, TS, TS, TS, TS, TS, TS, TS, TS, TS,  /* @ABCDEFGHIJKLMNO */
    TS, TS, TS, TS, TS, TS, TS, TS, TS, TS, TS, VA, V_, VA, T_, TA,  /* PQRSTUVWXYZ[\]^_ */
    T_, X_, X_, X_, X_, X_, X_, TS, TS, TS, TS, TS, TS, TS, TS, TS,  /* `abcdefghijklmno */
    TS, TS, TS, TS, TS, TS, TS, TS, TS, TS, TS, V_, T_, V_, TA, 0,   /* pqrstuvwxyz{|}~  */
    F_, F_, F_, F_, F_, F_, F_, F_, F_, F_, F_, F_, F_, F_, F_, F_,  /* 80: obs-text */
    F_, F_, F_, F_, F_, F_, F_, F_, F_, F_, F_, F_, F_, F_, F_, F_,
    F_, F_, F_, F_, F_, F_, F_, F_, F_, F_, F_, F_, F_, F_, F_, F_,
    F_, F_, F_, F_, F_, F_, F_, F_, F_, F_, F_, F_, F_, F_, F_, F_,
    F_, F_, F_, F_, F_, F_, F_, F_, F_, F_, F_, F_, F_, F_, F_, F_,
    F_, F_, F_, F_, F_, F_, F_, F_, F_, F_, F_, F_, F_, F_, F_, F_,
    F_, F_, F_, F_, F_, F_, F_, F_, F_, F_, F_, F_, F_, F_, F_, F_,
    F_, F_, F_, F_, F_, F_, F_, F_, F_, F_, F_, F_, F_, F_, F_, F_,
};

#undef F_
#undef V_
#undef VA
#undef T_
#undef TA
#undef TS
#undef X_

#define lb_http_is(c, cls)  (lb_http_class[(unsigned char) (c)] & (cls))
#define lb_http_is_ows(c)   ((c) == ' ' || (c) == '\t')
#define lb_http_lower(c)    ((c) >= 'A' && (c) <= 'Z' ? (c) | 0x20 : (c))

static int
lb_http_fail(lb_http_msg_t *msg, int status, const char *why)
{
    msg->error_status = status;
    msg->error = why;
    return LB_ERROR;
}

/* Case-insensitive comparison of s[0..len) with a lowercase literal. */
static bool
lb_http_eq(const char *s, size_t len, const char *lc, size_t lc_len)
{
    size_t  i;

    if (len != lc_len) {
        return false;
    }
    for (i = 0; i < len; i++) {
        if (lb_http_lower(s[i]) != lc[i]) {
            return false;
        }
    }
    return true;
}

#define lb_http_eq_lit(str, lit) \
    lb_http_eq((str)->data, (str)->len, lit, sizeof(lit) - 1)

/* A method byte: lbd narrows RFC 9110 §9.1's token to what methods look
 * like (GET, PROPFIND, M-SEARCH). Methods are case-sensitive, so "get" is
 * not GET; a backend that folds case would still serve it as GET, past a
 * route that matched on the exact method. */
#define lb_http_is_method(c)  (((c) >= 'A' && (c) <= 'Z') || (c) == '-' || (c) == '_')

/* unreserved = ALPHA / DIGIT / "-" / "." / "_" / "~" (RFC 3986 §2.3) */
#define lb_http_is_unreserved(c)                                              \
    (((c) >= 'a' && (c) <= 'z') || ((c) >= 'A' && (c) <= 'Z')                 \
     || ((c) >= '0' && (c) <= '9') || (c) == '-' || (c) == '.' || (c) == '_'  \
     || (c) == '~')

static int lb_http_hex(char c);
static bool lb_http_valid_host(const lb_str_t *host);

bool
lb_http_valid_method(const char *m, size_t len)
{
    size_t  i;

    if (len == 0 || len > LB_HTTP_MAX_METHOD) {
        return false;
    }
    for (i = 0; i < len; i++) {
        if (!lb_http_is_method(m[i])) {
            return false;
        }
    }
    return true;
}

/* The next element of the comma-separated list (RFC 9110 §5.6.1) in
 * list, from offset *pos on, with the OWS around it removed; elements may
 * be empty. Start with *pos = 0; returns false when the list is exhausted. */
static bool
lb_http_list_next(const lb_str_t *list, size_t *pos, lb_str_t *elem)
{
    const char  *comma;
    size_t       i = *pos, e;

    if (i > list->len) {
        return false;
    }
    while (i < list->len && lb_http_is_ows(list->data[i])) {
        i++;
    }
    comma = memchr(list->data + i, ',', list->len - i);
    e = comma ? (size_t) (comma - list->data) : list->len;
    *pos = e + 1;
    while (e > i && lb_http_is_ows(list->data[e - 1])) {
        e--;
    }
    elem->data = list->data + i;
    elem->len = e - i;
    return true;
}

/* "HTTP/1.0" or "HTTP/1.1" at p (RFC 9112 §2.3). HTTP-name is case
 * sensitive. Any other version, even a well-formed one, is refused with
 * 400: 505 is about a major version we do not speak, it is not in the set
 * of responses lbd sends (SPEC §4), and HTTP/1.2+ does not exist. */
static int
lb_http_parse_version(lb_http_msg_t *msg, const char *p, const char *end,
                      const char **next)
{
    static const char  pattern[] = "HTTP/1.";
    size_t             i, n;

    n = lb_min((size_t) (end - p), sizeof(pattern) - 1);
    for (i = 0; i < n; i++) {
        if (p[i] != pattern[i]) {
            return lb_http_fail(msg, 400, "malformed or unsupported HTTP version");
        }
    }
    if (n < sizeof(pattern) - 1 || p + n == end) {
        return LB_AGAIN;
    }
    p += n;
    if (*p != '0' && *p != '1') {
        return lb_http_fail(msg, 400, "malformed or unsupported HTTP version");
    }
    msg->version = 10 + (*p - '0');
    *next = p + 1;
    return LB_OK;
}

/* CRLF at p: a line end. A bare CR or LF is refused (RFC 9112 §2.2 allows
 * recipients to take a lone LF as a line end; a proxy must not, as the
 * next hop may not). */
static int
lb_http_parse_crlf(lb_http_msg_t *msg, const char *p, const char *end,
                   const char **next)
{
    if (p == end) {
        return LB_AGAIN;
    }
    if (*p != '\r') {
        return lb_http_fail(msg, 400, *p == '\n' ? "bare LF in the message head"
                                                 : "junk at the end of the start line");
    }
    if (p + 1 == end) {
        return LB_AGAIN;
    }
    if (p[1] != '\n') {
        return lb_http_fail(msg, 400, "bare CR in the message head");
    }
    *next = p + 2;
    return LB_OK;
}

/* Checks the form of a complete request-target (RFC 9112 §3.2) and sets
 * path and query. origin-form is split at '?'; absolute-form has its path
 * and query split out after the authority; authority-form (CONNECT only)
 * and asterisk-form (OPTIONS only) have an empty path. */
static int
lb_http_parse_target(lb_http_msg_t *msg)
{
    const char  *t = msg->target.data, *end = t + msg->target.len, *p, *q;

    msg->path.data = msg->target.data;
    msg->path.len = 0;
    msg->query.data = (char *) end;
    msg->query.len = 0;

    /* A fragment is never part of a request-target (RFC 9112 §3.2). */
    if (memchr(t, '#', msg->target.len) != NULL) {
        return lb_http_fail(msg, 400, "fragment in the request target");
    }

    if (msg->method.len == 7 && memcmp(msg->method.data, "CONNECT", 7) == 0) {
        for (p = t; p < end; p++) {
            if (!lb_http_is(*p, LB_HTTP_HOST)) {
                return lb_http_fail(msg, 400, "CONNECT target is not host:port");
            }
        }
        return LB_OK;
    }

    if (*t == '/') {
        p = t;

    } else if (msg->target.len == 1 && *t == '*') {
        if (msg->method.len != 7 || memcmp(msg->method.data, "OPTIONS", 7) != 0) {
            return lb_http_fail(msg, 400, "\"*\" target with a method other than OPTIONS");
        }
        return LB_OK;

    } else {
        /* absolute-form: scheme ":" hier-part (RFC 3986 §3) */
        if (lb_http_lower(*t) < 'a' || lb_http_lower(*t) > 'z') {
            return lb_http_fail(msg, 400, "request target is not a path or an absolute URI");
        }
        for (p = t + 1; p < end && lb_http_is(*p, LB_HTTP_SCHEME); p++) {
            /* scheme */
        }
        if (p == end || *p != ':') {
            return lb_http_fail(msg, 400, "request target is not a path or an absolute URI");
        }
        /* Only http and https URIs name what a reverse proxy serves, and
         * both need an authority (RFC 9110 §4.2.1, §4.2.2): its host is
         * what the request is for (RFC 9112 §3.2.2), so it is held to
         * the rules of Host. */
        if (!lb_http_eq(t, (size_t) (p - t), "http", 4)
            && !lb_http_eq(t, (size_t) (p - t), "https", 5))
        {
            return lb_http_fail(msg, 400, "absolute-form target with a scheme other than "
                                          "http or https");
        }
        p++;
        if (end - p < 2 || p[0] != '/' || p[1] != '/') {
            return lb_http_fail(msg, 400, "absolute-form target without an authority");
        }
        msg->authority.data = (char *) p + 2;
        for (p += 2; p < end && *p != '/' && *p != '?'; p++) {
            /* authority */
        }
        msg->authority.len = (size_t) (p - msg->authority.data);
        if (!lb_http_valid_host(&msg->authority)) {
            return lb_http_fail(msg, 400, "invalid authority in the request target");
        }
    }

    q = memchr(p, '?', (size_t) (end - p));
    msg->path.data = (char *) p;
    msg->path.len = (size_t) ((q ? q : end) - p);
    if (q != NULL) {
        msg->query.data = (char *) q + 1;
        msg->query.len = (size_t) (end - q - 1);
    }
    return LB_OK;
}

/* request-line = method SP request-target SP HTTP-version CRLF (RFC 9112
 * §3). Exactly one SP between the parts: no tabs, no runs of spaces. */
static int
lb_http_parse_request_line(lb_http_msg_t *msg, const char *p, const char *end,
                           const lb_http_limits_t *limits, const char **next)
{
    const char  *start, *stop;
    int          rc;

    start = p;
    while (p < end && lb_http_is_method(*p)) {
        if (p - start == LB_HTTP_MAX_METHOD) {
            return lb_http_fail(msg, 400, "method longer than 32 bytes");
        }
        p++;
    }
    if (p == end) {
        return LB_AGAIN;
    }
    if (*p != ' ' && lb_http_is(*p, LB_HTTP_TOKEN)) {
        return lb_http_fail(msg, 400, "method other than uppercase letters, '-' and '_'");
    }
    if (p == start) {
        return lb_http_fail(msg, 400, "empty method or junk before the request line");
    }
    if (*p != ' ') {
        return lb_http_fail(msg, 400, "invalid character in the method");
    }
    msg->method.data = (char *) start;
    msg->method.len = (size_t) (p - start);

    /* Scan at most max_uri + 1 bytes: one too many is a 414 already, and
     * is known before the rest of the line arrives. */
    start = ++p;
    stop = (size_t) (end - p) > limits->max_uri ? p + limits->max_uri + 1 : end;
    while (p < stop && lb_http_is(*p, LB_HTTP_VCHAR)) {
        p++;
    }
    if ((size_t) (p - start) > limits->max_uri) {
        return lb_http_fail(msg, 414, "request target longer than max_uri");
    }
    if (p == end) {
        return LB_AGAIN;
    }
    if (p == start) {
        return lb_http_fail(msg, 400, "empty request target");
    }
    if (*p != ' ') {
        return lb_http_fail(msg, 400, "invalid character in the request target");
    }
    msg->target.data = (char *) start;
    msg->target.len = (size_t) (p - start);

    rc = lb_http_parse_version(msg, p + 1, end, &p);
    if (rc != LB_OK) {
        return rc;
    }
    rc = lb_http_parse_crlf(msg, p, end, next);
    if (rc != LB_OK) {
        return rc;
    }
    return lb_http_parse_target(msg);
}

/* status-line = HTTP-version SP status-code SP [ reason-phrase ] CRLF
 * (RFC 9112 §4). Lenient in one place: "HTTP/1.1 200\r\n", without the SP
 * before an empty reason, is accepted as browsers do; it cannot change
 * where the message ends. A status outside 100..599 is refused (RFC 9110
 * §15: such codes are internal to some library, not HTTP). */
static int
lb_http_parse_status_line(lb_http_msg_t *msg, const char *p, const char *end,
                          const char **next)
{
    const char  *start;
    int          rc, i;

    rc = lb_http_parse_version(msg, p, end, &p);
    if (rc != LB_OK) {
        return rc;
    }
    if (p == end) {
        return LB_AGAIN;
    }
    if (*p++ != ' ') {
        return lb_http_fail(msg, 400, "malformed status line");
    }

    msg->status = 0;
    for (i = 0; i < 3; i++, p++) {
        if (p == end) {
            return LB_AGAIN;
        }
        if (*p < '0' || *p > '9') {
            return lb_http_fail(msg, 400, "malformed status code");
        }
        msg->status = msg->status * 10 + (*p - '0');
    }
    if (msg->status < 100 || msg->status > 599) {
        return lb_http_fail(msg, 400, "status code outside 100..599");
    }
    if (p == end) {
        return LB_AGAIN;
    }

    start = p;
    if (*p == ' ') {
        start = ++p;
        while (p < end && lb_http_is(*p, LB_HTTP_FIELD)) {
            p++;
        }
    }
    msg->reason.data = (char *) start;
    msg->reason.len = (size_t) (p - start);
    return lb_http_parse_crlf(msg, p, end, next);
}

/* field-line = field-name ":" OWS field-value OWS, then CRLF, until an
 * empty line (RFC 9112 §5). Returns LB_OK with *next after the empty line,
 * LB_AGAIN at end, or LB_ERROR. */
static int
lb_http_parse_fields(lb_http_msg_t *msg, const char *p, const char *end,
                     const lb_http_limits_t *limits, const char **next)
{
    lb_http_header_t  *h;
    const char        *name, *colon, *value, *vend;
    size_t             max;

    max = lb_min(limits->max_headers, (size_t) LB_HTTP_MAX_HEADERS);

    for ( ;; ) {
        if (p == end) {
            return LB_AGAIN;
        }

        if (*p == '\r') {
            if (p + 1 == end) {
                return LB_AGAIN;
            }
            if (p[1] != '\n') {
                return lb_http_fail(msg, 400, "bare CR in the message head");
            }
            *next = p + 2;
            return LB_OK;
        }

        /* §5.2: obs-fold is refused, and so is whitespace before the first
         * field (§2.2): both are how one field hides inside another. */
        if (lb_http_is_ows(*p)) {
            return lb_http_fail(msg, 400, "field line starting with whitespace "
                                          "(obsolete line folding)");
        }

        name = p;
        while (p < end && lb_http_is(*p, LB_HTTP_TOKEN)) {
            p++;
        }
        if (p == end) {
            return LB_AGAIN;
        }
        if (*p != ':') {
            if (lb_http_is_ows(*p) && p != name) {
                /* §5.1: MUST be rejected with 400 */
                return lb_http_fail(msg, 400, "whitespace between a field name and the colon");
            }
            return lb_http_fail(msg, 400, *p == '\n' ? "bare LF in the message head"
                                                     : "invalid character in a field name");
        }
        if (p == name) {
            return lb_http_fail(msg, 400, "empty field name");
        }
        if (msg->nheaders == max) {
            return lb_http_fail(msg, 431, "more fields than max_headers");
        }

        colon = p;
        for (p++; p < end && lb_http_is_ows(*p); p++) {
            /* OWS */
        }
        value = p;
        while (p < end && lb_http_is(*p, LB_HTTP_FIELD)) {
            p++;
        }
        if (p == end) {
            return LB_AGAIN;
        }
        if (*p != '\r') {
            return lb_http_fail(msg, 400, *p == '\n' ? "bare LF in the message head"
                                                     : "control character in a field value");
        }
        if (p + 1 == end) {
            return LB_AGAIN;
        }
        if (p[1] != '\n') {
            return lb_http_fail(msg, 400, "bare CR in the message head");
        }

        for (vend = p; vend > value && lb_http_is_ows(vend[-1]); vend--) {
            /* trailing OWS */
        }
        h = &msg->headers[msg->nheaders++];
        h->name.data = (char *) name;
        h->name.len = (size_t) (colon - name);
        h->value.data = (char *) value;
        h->value.len = (size_t) (vend - value);
        p += 2;
    }
}

/* Content-Length = 1*DIGIT (RFC 9112 §6.3, RFC 9110 §8.6), possibly a
 * list. Requests: a second value, even an identical one, is refused: the
 * next hop might read "5, 5" otherwise, and no real client sends it.
 * Responses: identical values are taken as one (RFC 9110 §8.6 allows it,
 * and browsers accept what some servers send); differing ones refused. */
static int
lb_http_parse_content_length(lb_http_msg_t *msg, const lb_str_t *value,
                             bool request)
{
    const char  *p;
    size_t       pos = 0;
    lb_str_t     elem;
    int64_t      n;
    int          d;

    while (lb_http_list_next(value, &pos, &elem)) {
        if (elem.len == 0) {
            return lb_http_fail(msg, 400, "malformed Content-Length");
        }
        n = 0;
        for (p = elem.data; p < elem.data + elem.len; p++) {
            if (*p < '0' || *p > '9') {
                return lb_http_fail(msg, 400, "malformed Content-Length");
            }
            d = *p - '0';
            if (n > (INT64_MAX - d) / 10) {
                return lb_http_fail(msg, 400, "Content-Length overflows");
            }
            n = n * 10 + d;
        }
        if (msg->content_length >= 0) {
            if (request) {
                return lb_http_fail(msg, 400, "repeated Content-Length");
            }
            if (n != msg->content_length) {
                return lb_http_fail(msg, 400, "differing Content-Length values");
            }
        }
        msg->content_length = n;
    }
    return LB_OK;
}

/* Transfer-Encoding (RFC 9112 §6.1), over every field carrying it, in
 * order: the final coding must be "chunked", or the length of the body
 * cannot be known and the answer is 400 (§6.3: a request whose final
 * coding is not chunked gets 400 and a close). "chunked" before the final
 * coding, twice, an empty element or a coding with parameters is a
 * malformed field and 400 too: tolerating those is how smuggling starts.
 * A coding before a final "chunked" that we cannot decode is 501 (§6.1:
 * a server that receives an unknown coding SHOULD answer 501). */
static int
lb_http_check_transfer_encoding(lb_http_msg_t *msg)
{
    const lb_http_header_t  *h, *last = msg->headers + msg->nheaders;
    const char              *p;
    lb_str_t                 elem;
    size_t                   pos, nchunked = 0, nother = 0;
    bool                     final_chunked = false;

    for (h = msg->headers; h < last; h++) {
        if (!lb_http_eq_lit(&h->name, "transfer-encoding")) {
            continue;
        }
        pos = 0;
        while (lb_http_list_next(&h->value, &pos, &elem)) {
            if (elem.len == 0) {
                return lb_http_fail(msg, 400, "empty element in Transfer-Encoding");
            }
            for (p = elem.data; p < elem.data + elem.len; p++) {
                if (!lb_http_is(*p, LB_HTTP_TOKEN)) {
                    return lb_http_fail(msg, 400, "malformed Transfer-Encoding");
                }
            }
            final_chunked = lb_http_eq_lit(&elem, "chunked");
            if (final_chunked) {
                nchunked++;
            } else {
                nother++;
            }
        }
    }
    if (!final_chunked) {
        return lb_http_fail(msg, 400, "final transfer coding is not chunked");
    }
    if (nchunked != 1) {
        return lb_http_fail(msg, 400, "chunked applied more than once");
    }
    if (nother != 0) {
        return lb_http_fail(msg, 501, "transfer coding other than chunked");
    }
    return LB_OK;
}

/* Host = uri-host [ ":" port ] (RFC 9110 §7.2, RFC 3986 §3.2.2-3), held
 * tighter than the grammar wherever a router and a backend could read one
 * value two ways: not empty (an http URI never has an empty host, RFC
 * 9110 §4.2.1); an IP-literal of hex digits, ':' and '.' only (no zone,
 * no IPvFuture); a reg-name or IPv4 address of unreserved and sub-delims
 * characters, without percent-encoding ("%61" is "a" to some and not to
 * others), not empty, with at most one trailing dot (the DNS root; "a.."
 * names nothing); a port of at most 5 digits up to 65535, or empty (RFC
 * 3986 §3.2.3). */
static bool
lb_http_valid_host(const lb_str_t *host)
{
    const char  *p = host->data, *end = p + host->len, *name;
    unsigned     port = 0, n;

    if (p == end) {
        return false;
    }
    if (*p == '[') {
        for (name = ++p; p < end && *p != ']'; p++) {
            if (!lb_http_is(*p, LB_HTTP_HEX) && *p != ':' && *p != '.') {
                return false;
            }
        }
        if (p == end || p == name) {
            return false;
        }
        p++;
    } else {
        for (name = p; p < end && *p != ':'; p++) {
            if (!lb_http_is(*p, LB_HTTP_HOST) || *p == '%' || *p == '[' || *p == ']') {
                return false;
            }
        }
        if (p == name || (p - name == 1 && *name == '.')
            || (p - name >= 2 && p[-1] == '.' && p[-2] == '.'))
        {
            return false;
        }
    }
    if (p == end) {
        return true;
    }
    if (*p++ != ':') {
        return false;
    }
    for (n = 0; p < end; p++, n++) {
        if (*p < '0' || *p > '9' || n == 5) {
            return false;
        }
        port = port * 10 + (unsigned) (*p - '0');
    }
    return port <= 65535;
}

void
lb_http_host_name(const lb_str_t *host, lb_str_t *name)
{
    const char  *h = host->data, *q;
    size_t       len = host->len;

    if (len && h[0] == '[') {
        q = memchr(h, ']', len);
        len = q ? (size_t) (q - h) + 1 : len;
    } else if (len && (q = memchr(h, ':', len)) != NULL) {
        len = (size_t) (q - h);
    }
    if (len > 1 && h[len - 1] == '.') {
        len--;
    }
    name->data = host->data;
    name->len = len;
}

/* Derives framing and connection handling from the fields of a complete
 * head (RFC 9112 §6, §9.3; RFC 9110 §7.2, §7.6.1, §7.8, §10.1.1). */
static int
lb_http_parse_semantics(lb_http_msg_t *msg, bool request)
{
    const lb_http_header_t  *h, *last = msg->headers + msg->nheaders;
    const lb_http_header_t  *te = NULL, *upgrade = NULL;
    lb_str_t                 elem;
    size_t                   pos, nhost = 0;
    bool                     cl = false, conn_close = false, keep_alive = false;
    bool                     conn_upgrade = false;
    int                      rc;

    for (h = msg->headers; h < last; h++) {
        switch (h->name.len) {
        case 4:
            if (lb_http_eq_lit(&h->name, "host")) {
                msg->host = h->value;
                nhost++;
            }
            break;

        case 6:
            if (lb_http_eq_lit(&h->name, "expect")
                && lb_http_eq_lit(&h->value, "100-continue"))
            {
                msg->expect_continue = true;
            }
            break;

        case 7:
            if (lb_http_eq_lit(&h->name, "upgrade") && h->value.len != 0) {
                upgrade = h;
            }
            break;

        case 10:
            if (!lb_http_eq_lit(&h->name, "connection")) {
                break;
            }
            pos = 0;
            while (lb_http_list_next(&h->value, &pos, &elem)) {
                if (lb_http_eq_lit(&elem, "close")) {
                    conn_close = true;
                } else if (lb_http_eq_lit(&elem, "keep-alive")) {
                    keep_alive = true;
                } else if (lb_http_eq_lit(&elem, "upgrade")) {
                    conn_upgrade = true;
                }
            }
            break;

        case 14:
            if (lb_http_eq_lit(&h->name, "content-length")) {
                rc = lb_http_parse_content_length(msg, &h->value, request);
                if (rc != LB_OK) {
                    return rc;
                }
                cl = true;
            }
            break;

        case 17:
            if (lb_http_eq_lit(&h->name, "transfer-encoding")) {
                te = h;
            }
            break;
        }
    }

    /* §6.1, §6.3: both framings at once is the classic smuggling request;
     * a proxy must not pick one. */
    if (te != NULL && cl) {
        return lb_http_fail(msg, 400, "both Content-Length and Transfer-Encoding");
    }
    if (te != NULL) {
        if (msg->version == 10) {
            return lb_http_fail(msg, 400, "Transfer-Encoding in an HTTP/1.0 message");
        }
        rc = lb_http_check_transfer_encoding(msg);
        if (rc != LB_OK) {
            return rc;
        }
        msg->body = LB_HTTP_BODY_CHUNKED;
    } else if (cl) {
        msg->body = LB_HTTP_BODY_LENGTH;
    } else {
        msg->body = request ? LB_HTTP_BODY_NONE : LB_HTTP_BODY_CLOSE;
    }

    if (request) {
        /* RFC 9112 §3.2: 400 for an HTTP/1.1 request without Host and for
         * any request with more than one, or with an invalid value. */
        if (nhost > 1) {
            return lb_http_fail(msg, 400, "more than one Host field");
        }
        if (nhost == 0 && msg->version == 11) {
            return lb_http_fail(msg, 400, "HTTP/1.1 request without Host");
        }
        if (nhost == 1 && msg->host.len == 0) {
            return lb_http_fail(msg, 400, "empty Host");
        }
        if (nhost == 1 && !lb_http_valid_host(&msg->host)) {
            return lb_http_fail(msg, 400, "invalid Host");
        }
        /* §3.2.2: the authority of an absolute-form target wins over
         * Host, for routing and $host alike (Host is still required in
         * HTTP/1.1 and still checked: §3.2 asks for 400 on a bad one). */
        if (msg->authority.len) {
            msg->host = msg->authority;
        }
    }

    /* §9.3: 1.1 persists unless "close"; 1.0 only with "keep-alive". */
    msg->keep_alive = !conn_close && (msg->version == 11 || keep_alive);

    /* RFC 9110 §10.1.1 and §7.8: HTTP/1.0 knows neither. */
    if (msg->version == 10) {
        msg->expect_continue = false;
    } else {
        msg->upgrade = conn_upgrade && upgrade != NULL;
    }
    return LB_OK;
}

void
lb_http_msg_reset(lb_http_msg_t *msg)
{
    static const lb_str_t  empty = lb_null_string;

    msg->method = empty;
    msg->target = empty;
    msg->path = empty;
    msg->query = empty;
    msg->authority = empty;
    msg->uri = empty;
    msg->status = 0;
    msg->reason = empty;
    msg->version = 0;
    msg->nheaders = 0;
    msg->head_len = 0;
    msg->body = LB_HTTP_BODY_NONE;
    msg->content_length = -1;
    msg->keep_alive = false;
    msg->expect_continue = false;
    msg->upgrade = false;
    msg->host = empty;
    msg->error_status = 0;
    msg->error = NULL;
}

/* The common part of both head parsers. The scan never looks past
 * max_header_size bytes: a head that has not ended there is a 431 once
 * more bytes than that have arrived, and until then is incomplete. */
static int
lb_http_parse_head(lb_http_msg_t *msg, const char *buf, size_t len,
                   const lb_http_limits_t *limits, bool request)
{
    const char  *p = buf, *end;
    int          rc, i;

    lb_http_msg_reset(msg);
    end = buf + lb_min(len, limits->max_header_size);

    if (request) {
        for (i = 0; p < end && *p == '\r'; i++) {
            if (i == LB_HTTP_MAX_EMPTY_LINES) {
                return lb_http_fail(msg, 400, "too many empty lines before the request line");
            }
            rc = lb_http_parse_crlf(msg, p, end, &p);
            if (rc != LB_OK) {
                goto incomplete;
            }
        }
        rc = lb_http_parse_request_line(msg, p, end, limits, &p);
    } else {
        rc = lb_http_parse_status_line(msg, p, end, &p);
    }
    if (rc == LB_OK) {
        rc = lb_http_parse_fields(msg, p, end, limits, &p);
    }
    if (rc == LB_OK) {
        msg->head_len = (size_t) (p - buf);
        return lb_http_parse_semantics(msg, request);
    }

incomplete:

    if (rc == LB_AGAIN && len > limits->max_header_size) {
        return lb_http_fail(msg, 431, "head larger than max_header_size");
    }
    return rc;
}

int
lb_http_parse_request_head(lb_http_msg_t *msg, const char *buf, size_t len,
                           const lb_http_limits_t *limits)
{
    return lb_http_parse_head(msg, buf, len, limits, true);
}

int
lb_http_parse_response_head(lb_http_msg_t *msg, const char *buf, size_t len,
                            const lb_http_limits_t *limits, bool head_request)
{
    int  rc;

    rc = lb_http_parse_head(msg, buf, len, limits, false);
    if (rc == LB_ERROR) {
        /* Whatever is wrong with an upstream's answer, the client gets a
         * 502: 4xx and 501 would blame the client. */
        msg->error_status = 502;
        return rc;
    }
    if (rc != LB_OK) {
        return rc;
    }

    /* RFC 9112 §6.3 rules 1 and 2: these never have content, whatever
     * their fields say (the fields were still checked above). */
    if (head_request || msg->status < 200 || msg->status == 204 || msg->status == 304) {
        msg->body = LB_HTTP_BODY_NONE;
        msg->content_length = -1;
    }
    if (msg->body == LB_HTTP_BODY_CLOSE) {
        msg->keep_alive = false;
    }
    return LB_OK;
}

int
lb_http_parse_uri(lb_http_msg_t *msg, char *buf, size_t size, unsigned flags)
{
    static char  root[] = "/";
    const char  *p = msg->path.data, *end = p + msg->path.len, *q, *seg, *slash;
    char        *w, *o;
    bool         merge = (flags & LB_HTTP_URI_MERGE_SLASHES) != 0, last;
    size_t       len;
    int          c;

    msg->uri = msg->path;
    if (msg->path.len == 0) {
        /* "http://a" is "http://a/" (RFC 3986 §6.2.3); "*" and CONNECT
         * have no path at all */
        if (msg->authority.len) {
            msg->uri.data = root;
            msg->uri.len = 1;
        }
        return LB_OK;
    }
    if (*p != '/') {
        return lb_http_fail(msg, 400, "request path does not start with \"/\"");
    }

    /* Most paths are already normal: nothing to decode, no dot segment
     * (each starts right after a '/'), no empty segment to merge. */
    for (q = p; q < end; q++) {
        if (*q == '%' || (*q == '/' && q + 1 < end && (q[1] == '.' || (merge && q[1] == '/')))) {
            break;
        }
    }
    if (q == end) {
        return LB_OK;
    }
    if (size < msg->path.len) {
        return lb_http_fail(msg, 414, "request path longer than max_uri");
    }

    /* §6.2.2.1, §6.2.2.2: decode what never needed encoding, uppercase
     * the hex of what stays encoded. Decoding comes first so that "%2e"
     * is a dot to the dot-segment step below, as it is to a backend. */
    for (w = buf, q = p; q < end; q++) {
        if (*q != '%') {
            *w++ = *q;
            continue;
        }
        if (end - q < 3 || !lb_http_is(q[1], LB_HTTP_HEX) || !lb_http_is(q[2], LB_HTTP_HEX)) {
            return lb_http_fail(msg, 400, "malformed percent-encoding in the request path");
        }
        c = lb_http_hex(q[1]) << 4 | lb_http_hex(q[2]);
        if (c == 0) {
            return lb_http_fail(msg, 400, "%00 in the request path");
        }
        if (lb_http_is_unreserved(c)) {
            *w++ = (char) c;
        } else {
            *w++ = '%';
            *w++ = (char) (q[1] >= 'a' ? q[1] - 'a' + 'A' : q[1]);
            *w++ = (char) (q[2] >= 'a' ? q[2] - 'a' + 'A' : q[2]);
        }
        q += 2;
    }

    /* §5.2.4 (and §6.2.2.3), in place over buf[0..w): each segment is
     * read before anything is written over it, and the output never
     * grows past what was read. A ".." with nothing left to remove is a
     * path above the root: refused rather than clamped, as nobody sends
     * one but to reach outside a prefix. */
    end = w;
    o = buf;
    for (seg = buf + 1; ; seg = slash + 1) {
        slash = memchr(seg, '/', (size_t) (end - seg));
        last = slash == NULL;
        len = (size_t) ((last ? end : slash) - seg);

        if (len == 1 && seg[0] == '.') {
            if (last) {
                *o++ = '/';
            }
        } else if (len == 2 && seg[0] == '.' && seg[1] == '.') {
            if (o == buf) {
                return lb_http_fail(msg, 400, "request path climbs above the root");
            }
            while (*--o != '/') {
                /* back to the start of the last output segment */
            }
            if (last) {
                *o++ = '/';
            }
        } else if (len == 0 && merge && !last) {
            /* "//": an empty segment, merged */
        } else {
            *o++ = '/';
            memmove(o, seg, len);
            o += len;
        }
        if (last) {
            break;
        }
    }
    msg->uri.data = buf;
    msg->uri.len = (size_t) (o - buf);
    return LB_OK;
}

const lb_http_header_t *
lb_http_find_header(const lb_http_msg_t *msg, const char *name)
{
    size_t  i, len = strlen(name), j;

    for (i = 0; i < msg->nheaders; i++) {
        if (msg->headers[i].name.len != len) {
            continue;
        }
        for (j = 0; j < len; j++) {
            if (lb_http_lower(msg->headers[i].name.data[j]) != lb_http_lower(name[j])) {
                break;
            }
        }
        if (j == len) {
            return &msg->headers[i];
        }
    }
    return NULL;
}

/* Chunked decoder states; 0 is the start, so a zeroed decoder is ready. */
enum {
    LB_HTTP_CHUNK_SIZE_START = 0,   /* first HEXDIG of chunk-size */
    LB_HTTP_CHUNK_SIZE,             /* more HEXDIG, ';', BWS or CR */
    LB_HTTP_CHUNK_BWS,              /* SP/HTAB after the size: only ';' may follow */
    LB_HTTP_CHUNK_EXT,              /* chunk-ext, up to CR */
    LB_HTTP_CHUNK_SIZE_LF,
    LB_HTTP_CHUNK_DATA,
    LB_HTTP_CHUNK_DATA_CR,
    LB_HTTP_CHUNK_DATA_LF,
    LB_HTTP_CHUNK_TRAILER_START,    /* a trailer field line, or the final CRLF */
    LB_HTTP_CHUNK_LAST_LF,
};

/* One trailer field line at p (its first byte is not CR): checked as a
 * field line of a head (name, ':', field value bytes, CRLF) and returned
 * without its CRLF once it is all in [p, end). */
static int
lb_http_chunked_trailer(lb_http_chunked_t *c, const char *buf, const char *p,
                        const char *end, size_t *used, const char **data, size_t *data_len)
{
    const char  *q = p, *colon = NULL;
    size_t       budget = LB_HTTP_TRAILER_MAX - c->trailer_len;

    for ( ;; ) {
        if ((size_t) (q - p) >= budget) {
            goto invalid;
        }
        if (q == end) {
            *used = (size_t) (p - buf);     /* the line stays for the next call */
            return LB_AGAIN;
        }
        if (colon == NULL) {
            if (*q == ':' && q > p) {
                colon = q;
            } else if (!lb_http_is(*q, LB_HTTP_TOKEN)) {
                goto invalid;
            }
        } else if (*q == '\r') {
            if (q + 1 == end) {
                *used = (size_t) (p - buf);
                return LB_AGAIN;
            }
            if (q[1] != '\n') {
                goto invalid;
            }
            break;
        } else if (!lb_http_is(*q, LB_HTTP_FIELD)) {
            goto invalid;
        }
        q++;
    }
    c->trailer_len += (size_t) (q + 2 - p);
    *data = p;
    *data_len = (size_t) (q - p);
    *used = (size_t) (q + 2 - buf);
    return LB_HTTP_CHUNK_TRAILER;

invalid:

    *used = (size_t) (p - buf);
    return LB_ERROR;
}

static int
lb_http_hex(char c)
{
    if (c <= '9') {
        return c - '0';
    }
    return lb_http_lower(c) - 'a' + 10;
}

int
lb_http_parse_chunked(lb_http_chunked_t *c, const char *buf, size_t len,
                      size_t *used, const char **data, size_t *data_len)
{
    const char  *p = buf, *end = buf + len;
    size_t       n;
    char         ch;

    *data = NULL;
    *data_len = 0;

    if (c->done) {
        *used = 0;
        return LB_DONE;
    }

    while (p < end) {

        if (c->state == LB_HTTP_CHUNK_DATA) {
            n = (size_t) lb_min((uint64_t) (end - p), c->size);
            *data = p;
            *data_len = n;
            c->size -= n;
            if (c->size == 0) {
                c->state = LB_HTTP_CHUNK_DATA_CR;
            }
            *used = (size_t) (p + n - buf);
            return LB_OK;
        }

        ch = *p;

        if (c->state == LB_HTTP_CHUNK_TRAILER_START && ch == '\r'
            && (c->trailer_len += 2) > LB_HTTP_TRAILER_MAX)
        {
            goto invalid;
        }
        if (c->state <= LB_HTTP_CHUNK_EXT && ch != '\r'
            && ++c->ext_len > LB_HTTP_CHUNK_EXT_MAX)
        {
            goto invalid;
        }

        switch (c->state) {

        /* chunk = chunk-size [ chunk-ext ] CRLF chunk-data CRLF (§7.1):
         * no whitespace before the size, none after it but BWS before
         * ';' (§7.1.1), no "0x", no sign. */
        case LB_HTTP_CHUNK_SIZE_START:
            if (!lb_http_is(ch, LB_HTTP_HEX)) {
                goto invalid;
            }
            c->size = (uint64_t) lb_http_hex(ch);
            c->state = LB_HTTP_CHUNK_SIZE;
            break;

        case LB_HTTP_CHUNK_SIZE:
            if (lb_http_is(ch, LB_HTTP_HEX)) {
                if (c->size >> (LB_HTTP_CHUNK_SIZE_BITS - 4)) {
                    goto invalid;
                }
                c->size = (c->size << 4) | (uint64_t) lb_http_hex(ch);
            } else if (ch == ';') {
                c->state = LB_HTTP_CHUNK_EXT;
            } else if (lb_http_is_ows(ch)) {
                c->state = LB_HTTP_CHUNK_BWS;
            } else if (ch == '\r') {
                c->state = LB_HTTP_CHUNK_SIZE_LF;
            } else {
                goto invalid;
            }
            break;

        case LB_HTTP_CHUNK_BWS:
            if (ch == ';') {
                c->state = LB_HTTP_CHUNK_EXT;
            } else if (!lb_http_is_ows(ch)) {
                goto invalid;
            }
            break;

        /* Extensions are ignored, but their bytes must still be the
         * visible ones a field value may hold: a CR or LF inside one is
         * a line end that another parser would see elsewhere. */
        case LB_HTTP_CHUNK_EXT:
            if (ch == '\r') {
                c->state = LB_HTTP_CHUNK_SIZE_LF;
            } else if (!lb_http_is(ch, LB_HTTP_FIELD)) {
                goto invalid;
            }
            break;

        case LB_HTTP_CHUNK_SIZE_LF:
            if (ch != '\n') {
                goto invalid;
            }
            c->ext_len = 0;
            c->state = c->size ? LB_HTTP_CHUNK_DATA : LB_HTTP_CHUNK_TRAILER_START;
            break;

        case LB_HTTP_CHUNK_DATA_CR:
            if (ch != '\r') {
                goto invalid;
            }
            c->state = LB_HTTP_CHUNK_DATA_LF;
            break;

        case LB_HTTP_CHUNK_DATA_LF:
            if (ch != '\n') {
                goto invalid;
            }
            c->state = LB_HTTP_CHUNK_SIZE_START;
            break;

        /* trailer-section = *( field-line CRLF ), then CRLF (§7.1.2),
         * with the field-line rules of the head. A field line is handed
         * out whole, so that a proxy can drop the ones that must not
         * travel in trailers (RFC 9110 §6.5.1); until its LF has arrived
         * it stays unconsumed. */
        case LB_HTTP_CHUNK_TRAILER_START:
            if (ch == '\r') {
                c->state = LB_HTTP_CHUNK_LAST_LF;
                break;
            }
            return lb_http_chunked_trailer(c, buf, p, end, used, data, data_len);

        case LB_HTTP_CHUNK_LAST_LF:
            if (ch != '\n') {
                goto invalid;
            }
            c->done = true;
            *used = (size_t) (p + 1 - buf);
            return LB_DONE;

        default:
            goto invalid;
        }

        p++;
    }

    *used = len;
    return LB_AGAIN;

invalid:

    *used = (size_t) (p - buf);
    return LB_ERROR;
}
