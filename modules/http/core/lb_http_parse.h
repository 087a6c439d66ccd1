/*
 * lb_http_parse.h: the HTTP/1.x message parser (RFC 9112), strict and
 * zero-copy: every field it returns points into the caller's buffer, which
 * must hold the whole message head. Nothing here allocates or keeps global
 * state, so the parser is trivially fuzzable (tests/fuzz/).
 */
#ifndef LB_HTTP_PARSE_H
#define LB_HTTP_PARSE_H

#include "lb_core.h"

#define LB_HTTP_MAX_HEADERS  256          /* hard cap; max_headers is lower */
#define LB_HTTP_MAX_METHOD   32           /* longest method lbd accepts */

/* lb_http_parse_uri flags */
#define LB_HTTP_URI_MERGE_SLASHES  0x01   /* "//" is "/" (merge_slashes) */

typedef struct {
    lb_str_t   name;
    lb_str_t   value;             /* leading and trailing whitespace removed */
} lb_http_header_t;

typedef enum {
    LB_HTTP_BODY_NONE = 0,        /* no body (or a response without one) */
    LB_HTTP_BODY_LENGTH,          /* Content-Length bytes */
    LB_HTTP_BODY_CHUNKED,         /* Transfer-Encoding: chunked */
    LB_HTTP_BODY_CLOSE,           /* response: until the connection closes */
} lb_http_body_t;

/* Limits the parser enforces; a violation gives the status to answer. */
typedef struct {
    size_t   max_header_size;     /* whole head, request line included: 431 */
    size_t   max_headers;         /* number of fields: 431 */
    size_t   max_uri;             /* request target: 414 */
} lb_http_limits_t;

typedef struct {
    /* request line (requests) */
    lb_str_t            method;
    lb_str_t            target;       /* as sent: origin-form, absolute-form, ... */
    lb_str_t            path;         /* target up to '?'; for absolute-form the
                                         part after the authority; empty for
                                         CONNECT host:port and OPTIONS * */
    lb_str_t            query;        /* after '?', without it; empty if none */
    lb_str_t            authority;    /* absolute-form: the target's authority
                                         (validated like Host); else empty */
    lb_str_t            uri;          /* path in normal form: set by
                                         lb_http_parse_uri, empty before */
    /* status line (responses) */
    int                 status;
    lb_str_t            reason;
    /* both */
    int                 version;      /* 10 for HTTP/1.0, 11 for HTTP/1.1 */
    lb_http_header_t    headers[LB_HTTP_MAX_HEADERS];
    size_t              nheaders;
    size_t              head_len;     /* bytes of the head, final CRLF included
                                         (and the empty lines before a request
                                         line: the caller skips head_len) */

    /* derived from the headers by lb_http_parse_*_head */
    lb_http_body_t      body;
    int64_t             content_length;   /* for LB_HTTP_BODY_LENGTH, else -1 */
    bool                keep_alive;       /* per version and Connection; false
                                             for a response delimited by close */
    bool                expect_continue;  /* Expect: 100-continue */
    bool                upgrade;          /* Connection: upgrade + Upgrade */
    lb_str_t            host;             /* requests: the target's authority
                                             for absolute-form (RFC 9112
                                             §3.2.2), else the Host field value;
                                             never empty in HTTP/1.1 */

    /* on LB_ERROR: the status to answer and why, for the log */
    int                 error_status;
    const char         *error;
} lb_http_msg_t;

/* Parses a request head from buf[0..len). Returns LB_OK when the head is
 * complete (msg filled, msg->head_len bytes used), LB_AGAIN when more bytes
 * are needed (nothing in buf is invalid so far, and the limits still hold),
 * or LB_ERROR with msg->error_status (400, 414, 431, 501) and msg->error.
 * Refused with 400: a request line that is not METHOD SP target SP
 * HTTP/1.0 or HTTP/1.1 (any other version too: 505 is not among the
 * answers lbd gives, SPEC §4); a method that is not 1 to
 * LB_HTTP_MAX_METHOD of 'A'-'Z', '-', '_' (lb_http_valid_method); a
 * target that is not one of the four forms of RFC 9112 §3.2, or holds a
 * fragment or a non-ASCII byte; an absolute-form target whose scheme is
 * not http or https or whose authority is not a valid Host; more than a
 * few empty lines before the request line; whitespace before a colon;
 * obsolete line folding; a bare CR or LF; NUL or other control characters
 * in a field; both Content-Length and Transfer-Encoding; a malformed or
 * repeated Content-Length (even "5, 5": no real client sends it, and the
 * next hop might read it differently); Transfer-Encoding in HTTP/1.0, or
 * whose final coding is not chunked, or with an empty element, parameters
 * or chunked twice; a missing Host in
 * HTTP/1.1, more than one Host, an empty or invalid Host (see
 * lb_http_valid_host in the source: no '%', at most one trailing dot, a
 * port of digits up to 65535). 501: a coding other than chunked before
 * the final chunked. 414 as soon as the target is longer than max_uri; 431
 * as soon as len passes max_header_size without a complete head. Calling
 * it again with more bytes re-parses from the start of buf: heads are
 * short and this keeps the state trivial. msg->uri stays empty: the
 * caller normalises the path with lb_http_parse_uri before routing. */
int lb_http_parse_request_head(lb_http_msg_t *msg, const char *buf, size_t len,
                               const lb_http_limits_t *limits);

/* Empties msg (no method, no fields), as each parse begins: what a
 * request that has not been parsed yet looks like to variables. */
void lb_http_msg_reset(lb_http_msg_t *msg);

/* Parses a response head (status line + fields) with the same rules, and
 * fails every error with 502: a bad answer is never the client's fault.
 * Differences: no empty lines before the status line; a status outside
 * 100..599 is refused; "HTTP/1.1 200\r\n" without the SP before an empty
 * reason is accepted; identical Content-Length values ("5, 5") count as
 * one (RFC 9110 §8.6); no Host is needed. For a response to HEAD, or with
 * status 1xx, 204 or 304, body is NONE; without Content-Length or
 * Transfer-Encoding it is CLOSE. */
int lb_http_parse_response_head(lb_http_msg_t *msg, const char *buf, size_t len,
                                const lb_http_limits_t *limits, bool head_request);

/* Normalises the path of a parsed request (RFC 3986 §6.2.2) into
 * msg->uri, for routing, $uri and the request sent upstream: percent-
 * encoded unreserved characters (ALPHA DIGIT - . _ ~, so %2e too) are
 * decoded, the hex digits of the other escapes uppercased ("%2f" ->
 * "%2F": an encoded '/' never becomes a separator), dot segments removed
 * (§5.2.4) and, with LB_HTTP_URI_MERGE_SLASHES, runs of '/' merged. An
 * absolute-form target without a path gets "/"; asterisk-form and
 * CONNECT get an empty uri. msg->path and msg->target stay as sent.
 * When the path is already normal (no '%', no "/.", no "//") msg->uri is
 * msg->path itself; otherwise it is written into buf, which must hold
 * msg->path.len bytes (it can only shrink). Returns LB_OK, or LB_ERROR
 * with error_status 400 for a malformed escape ("%zz", a truncated
 * "%4"), "%00", or a ".." that climbs above the root. Never allocates. */
int lb_http_parse_uri(lb_http_msg_t *msg, char *buf, size_t size, unsigned flags);

/* Whether m[0..len) is a method lbd accepts: 1 to LB_HTTP_MAX_METHOD of
 * 'A'-'Z', '-', '_' (GET, PROPFIND, M-SEARCH). */
bool lb_http_valid_method(const char *m, size_t len);

/* The host name of a valid Host value or authority, for matching: without
 * the port and without one trailing dot (the DNS root: "a.example." is
 * "a.example"); "[::1]:80" -> "[::1]". A view into host; not lowercased. */
void lb_http_host_name(const lb_str_t *host, lb_str_t *name);

/* The value of field name (case-insensitive), or NULL. */
const lb_http_header_t *lb_http_find_header(const lb_http_msg_t *msg, const char *name);

/* Incremental chunked-body decoder (RFC 9112 §7.1). Zero it before the
 * first call; any split of the input gives the same result. */
typedef struct {
    int        state;
    uint64_t   size;              /* of the current chunk, left to deliver */
    size_t     ext_len;           /* bytes of the chunk line seen: size and
                                     extension, without the CRLF */
    size_t     trailer_len;       /* bytes of trailer section seen */
    bool       done;              /* last chunk and trailers consumed */
} lb_http_chunked_t;

#define LB_HTTP_CHUNK_EXT_MAX   4096
#define LB_HTTP_TRAILER_MAX     16384

/* Decodes from buf[0..len). Sets *used to the bytes consumed; when chunk
 * data is found, *data / *data_len point at it (a view into buf) and the
 * call returns right after it, so data is never copied or moved. Returns
 * LB_OK (data found; call again with the rest), LB_HTTP_CHUNK_TRAILER (a
 * whole trailer field line, without its CRLF, is at *data; call again),
 * LB_AGAIN (more needed: the bytes from buf + *used on, a trailer line
 * not yet ended, must be passed again with what follows), LB_DONE (body
 * complete: *used ends after the trailers; later calls return LB_DONE
 * with *used 0) or LB_ERROR (a chunk size that is not 1*HEXDIG or reaches
 * 2^60, whitespace other than before ';', a chunk line longer than
 * LB_HTTP_CHUNK_EXT_MAX, trailers longer than LB_HTTP_TRAILER_MAX or not
 * field lines, anything but CRLF where one is due, control characters). */
/* Whether the field name (or token) p[0..n) is `lower` (lowercase, len
 * bytes), ignoring ASCII case: the one comparison filters, the writer and
 * the proxy make of names. */
static inline bool
lb_http_name_eq(const char *p, size_t n, const char *lower, size_t len)
{
    return n == len && strncasecmp(p, lower, len) == 0;
}

static inline bool
lb_http_str_is(lb_str_t s, const char *lower, size_t len)
{
    return lb_http_name_eq(s.data, s.len, lower, len);
}

#define LB_HTTP_CHUNK_TRAILER  1
int lb_http_parse_chunked(lb_http_chunked_t *c, const char *buf, size_t len,
                          size_t *used, const char **data, size_t *data_len);

#endif
