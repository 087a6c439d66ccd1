/*
 * lb_http_var.h: variables (SPEC §3.5). A string with variables, such as
 * "https://$host$request_uri", is compiled once at configuration load into
 * a short list of parts (literal bytes or a variable reference); a request
 * evaluates it by walking that list, with no parsing and no lookup by name.
 * An unknown variable is a configuration error.
 */
#ifndef LB_HTTP_VAR_H
#define LB_HTTP_VAR_H

#include "lb_core.h"
#include "lb_http_parse.h"

/* Everything a variable may read, filled by whoever evaluates (the http
 * listener for a request, the access log after the response). Strings
 * that are not known yet are empty (len 0) and evaluate to "" (or "-" in
 * the access log, which decides that itself). */
typedef struct {
    const lb_http_msg_t  *request;          /* parsed request head, or NULL */
    lb_str_t              remote_addr;      /* "127.0.0.1" (no port) */
    lb_str_t              remote_port;      /* "51234" */
    lb_str_t              server_addr;
    lb_str_t              server_port;
    lb_str_t              scheme;           /* "http" or "https" */
    lb_str_t              request_id;
    lb_str_t              upstream_addr;    /* "10.0.0.1:80" */
    lb_str_t              sni;
    lb_str_t              ssl_protocol;
    lb_str_t              ssl_cipher;
    lb_str_t              ssl_client_verify;    /* SUCCESS, NONE, FAILED:why */
    int                   status;           /* 0: none yet */
    uint64_t              bytes_sent;
    lb_msec_t             start_msec;       /* when the request began (lb_current_msec);
                                               $request_time is lb_current_msec
                                               minus this */
    lb_msec_t             upstream_response_msec;  /* a duration; -1: no upstream */
    lb_msec_t             upstream_connect_msec;   /* to connect (TLS included), 0
                                                      for a kept-alive connection;
                                                      -1: no connection made */
    int                   upstream_status;  /* what the server sent; 0: none, lbd
                                               answered itself */
    lb_str_t              server_name;      /* the listener's name */
    /* regex captures for $1..$9: subject and PCRE2-style offset pairs;
     * ncaptures counts pairs including $0 */
    const char           *capture_subject;
    const size_t         *captures;
    int                   ncaptures;
} lb_http_var_ctx_t;

typedef struct lb_http_complex_s  lb_http_complex_t;

/* How the values of variables are written (literal text never changes):
 * as they are, or as the content of a JSON string (RFC 8259 §7: '"' and
 * '\\' behind a backslash, bytes below 0x20 and 0x7f as \n, \r, \t or
 * \u00XX, bytes from 0x80 as they are). */
typedef enum {
    LB_HTTP_ESCAPE_NONE = 0,
    LB_HTTP_ESCAPE_JSON,
} lb_http_escape_t;

/* Compiles text. Variable names run to the first byte that is not
 * [A-Za-z0-9_], or are written ${name} (same bytes inside); "$$" is a
 * literal "$". A digit after "$" is a capture on its own, as in nginx:
 * "$1.html" and "$10" are $1 followed by text; $0 is unknown.
 * $arg_NAME, $http_NAME and $cookie_NAME take their NAME from the suffix,
 * which must not be empty:
 *   $arg_NAME     the value of the first NAME= (or bare NAME: "") in the
 *                 query; NAME case-sensitive, value as sent, not decoded;
 *   $http_NAME    every field line whose name matches NAME ignoring case,
 *                 '_' in NAME matching '-' or '_'; several are joined in
 *                 order with ", " (Cookie with "; ", as nginx does);
 *   $cookie_NAME  the value of the first cookie NAME (case-sensitive) in
 *                 the Cookie fields, pairs split on ';', whitespace around
 *                 the name and the value trimmed; quotes kept.
 * $host is the request's host (the Host field, or the authority of an
 * absolute-form target) lowercased, without ":port" and one trailing dot
 * ("[::1]:80" -> "[::1]"), or, without one, server_addr ("[::1]" for
 * IPv6); $uri is the normalised path
 * (lb_http_parse_uri), $request_uri the target as sent; $status is "" while 0; $msec, $request_time and
 * $upstream_response_time are seconds with three decimals ("0.123");
 * $time_iso8601 is local time, "2026-11-25T10:59:46+00:00"; $time_local
 * is local time as nginx logs it, "25/Nov/2026:10:59:46 +0000"; $request
 * is the request line, "GET /x HTTP/1.1"; $query_string is $args;
 * $upstream_status is the status line's code the server sent ("" when lbd
 * answered itself: its own 502 reads "", a server's "502");
 * $upstream_connect_time is seconds like $request_time ("0.000" on a
 * kept-alive connection, "" without one); $server_name is the listener's
 * name; $hostname is this machine's name, read by gethostname(2) when the
 * string is compiled.
 * Returns NULL and writes the reasons ("unknown variable \"$hots\" (did
 * you mean \"$host\"?)") into err (may be NULL) on error: every unknown
 * variable of the text, one reason per line ('\n' between them, none at
 * the end). The result lives in pool and does not point into text. */
lb_http_complex_t *lb_http_complex_compile(lb_pool_t *pool, const char *text,
                                           char *err, size_t errlen);

/* For a setting's handler: compiles text, the value of setting v, and
 * reports each reason as its own error "FILE:LINE: what: reason". NULL on
 * error. */
lb_http_complex_t *lb_http_complex_conf(lb_conf_t *cf, const config_setting_t *v,
                                        const char *text, const char *what);

/* true when text has no variable: eval gives the text itself ("$$" as
 * "$"), whatever the context. */
bool lb_http_complex_is_literal(const lb_http_complex_t *cv);

/* The bytes cv evaluates to, at most a size that the caller learns from
 * the return value: writes min(result, size) bytes into buf and returns
 * the full length, so a caller can size a buffer and call again
 * (eval(cv, ctx, NULL, 0) is the length). Never allocates; adds no NUL.
 * ctx NULL means nothing is known: every variable but $msec,
 * $time_iso8601 and $time_local is "".
 * $msec, $time_iso8601 and $time_local read the clock on each call, so two calls may
 * differ. */
size_t lb_http_complex_eval(const lb_http_complex_t *cv, const lb_http_var_ctx_t *ctx,
                            char *buf, size_t size);
/* The same, with the values of variables escaped per escape. */
size_t lb_http_complex_eval_escaped(const lb_http_complex_t *cv,
                                    const lb_http_var_ctx_t *ctx, char *buf, size_t size,
                                    lb_http_escape_t escape);

/* Convenience: evaluates into memory from pool, NUL-terminated (not
 * counted in len); NULL on allocation failure. */
lb_str_t *lb_http_complex_eval_pool(const lb_http_complex_t *cv,
                                    const lb_http_var_ctx_t *ctx, lb_pool_t *pool);

/* The names of the fixed variables without their "$" ("host"),
 * NULL-terminated, for messages and docs; the families arg_, http_,
 * cookie_ and the captures are not in it. */
extern const char *const  lb_http_var_names[];

#endif
