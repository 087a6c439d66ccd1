/*
 * lb_http_variables.c: the http core's own variables (SPEC §3.5), a table
 * the core registers like any module (lb_http_core_variables): the request
 * line and head, the connection's addresses and TLS facts, the response's
 * status and size, the clock, $hostname and the captures $1..$9. Each
 * getter reads the request when it is evaluated; nothing is copied ahead.
 */
#include "lb_core.h"
#include "lb_http.h"
#include "lb_tls.h"

#include <time.h>

#define LB_HTTP_VAR_UNSET  (~(size_t) 0)  /* PCRE2_UNSET */

/* Narrows [*p, *e) to its bytes without spaces and tabs at either end. */
static void
lb_http_var_trim(const char **p, const char **e)
{
    while (*p < *e && (**p == ' ' || **p == '\t')) {
        (*p)++;
    }
    while (*e > *p && ((*e)[-1] == ' ' || (*e)[-1] == '\t')) {
        (*e)--;
    }
}

/* The connection: addresses, scheme, TLS ------------------------------------- */

/* $remote_addr, $remote_port: the client (after trusted_proxies). */
static void
lb_http_var_remote_addr(lb_http_var_out_t *out, const lb_http_var_ctx_t *ctx, lb_str_t arg)
{
    if (ctx->r != NULL) {
        lb_http_var_write(out, ctx->r->peer->remote_ip, strlen(ctx->r->peer->remote_ip));
    }
}

static void
lb_http_var_remote_port(lb_http_var_out_t *out, const lb_http_var_ctx_t *ctx, lb_str_t arg)
{
    if (ctx->r != NULL) {
        lb_http_var_write(out, ctx->r->peer->remote_port, strlen(ctx->r->peer->remote_port));
    }
}

/* The listener's own address, "" without a connection. */
static const char *
lb_http_var_local_ip(const lb_http_var_ctx_t *ctx)
{
    if (ctx->r == NULL) {
        return "";
    }
    if (!ctx->r->peer->local_known) {
        lb_http_local_addr(ctx->r);
    }
    return ctx->r->peer->local_ip;
}

static void
lb_http_var_server_addr(lb_http_var_out_t *out, const lb_http_var_ctx_t *ctx, lb_str_t arg)
{
    const char  *ip = lb_http_var_local_ip(ctx);

    lb_http_var_write(out, ip, strlen(ip));
}

static void
lb_http_var_server_port(lb_http_var_out_t *out, const lb_http_var_ctx_t *ctx, lb_str_t arg)
{
    if (ctx->r != NULL) {
        (void) lb_http_var_local_ip(ctx);
        lb_http_var_write(out, ctx->r->peer->local_port, strlen(ctx->r->peer->local_port));
    }
}

/* Whether the request came over TLS: its connection's layer is TLS with a
 * session (lbctl route asks about an https URL without one). */
static bool
lb_http_var_tls(const lb_http_var_ctx_t *ctx)
{
    return ctx->r != NULL && lb_conn_is_tls(ctx->r->c);
}

/* $scheme: "https" on a TLS connection, "http" on another. */
static void
lb_http_var_scheme(lb_http_var_out_t *out, const lb_http_var_ctx_t *ctx, lb_str_t arg)
{
    if (ctx->r == NULL) {
        return;
    }
    if (lb_conn_is_tls(ctx->r->c)) {
        lb_http_var_write(out, "https", 5);
    } else {
        lb_http_var_write(out, "http", 4);
    }
}

/* $sni, $ssl_protocol, $ssl_cipher, $ssl_client_verify (SUCCESS, NONE,
 * FAILED:why): "" without TLS. */
static void
lb_http_var_sni(lb_http_var_out_t *out, const lb_http_var_ctx_t *ctx, lb_str_t arg)
{
    const char  *s = lb_http_var_tls(ctx) ? lb_tls_sni(ctx->r->c) : "";

    lb_http_var_write(out, s, strlen(s));
}

static void
lb_http_var_ssl_protocol(lb_http_var_out_t *out, const lb_http_var_ctx_t *ctx, lb_str_t arg)
{
    const char  *s = lb_http_var_tls(ctx) ? lb_tls_protocol(ctx->r->c) : "";

    lb_http_var_write(out, s, strlen(s));
}

static void
lb_http_var_ssl_cipher(lb_http_var_out_t *out, const lb_http_var_ctx_t *ctx, lb_str_t arg)
{
    const char  *s = lb_http_var_tls(ctx) ? lb_tls_cipher(ctx->r->c) : "";

    lb_http_var_write(out, s, strlen(s));
}

static void
lb_http_var_ssl_client_verify(lb_http_var_out_t *out, const lb_http_var_ctx_t *ctx,
                              lb_str_t arg)
{
    const char  *s = lb_http_var_tls(ctx) ? lb_tls_client_verify(ctx->r->c) : "";

    lb_http_var_write(out, s, strlen(s));
}

/* $server_name: the listener's name. */
static void
lb_http_var_server_name(lb_http_var_out_t *out, const lb_http_var_ctx_t *ctx, lb_str_t arg)
{
    if (ctx->r != NULL) {
        lb_http_var_write(out, ctx->r->conf->listener->name,
                          strlen(ctx->r->conf->listener->name));
    }
}

/* $hostname: this machine's name, read by gethostname(2) when a string is
 * compiled (LB_HTTP_VAR_AT_LOAD), as nginx reads it at load. */
static void
lb_http_var_hostname(lb_http_var_out_t *out, const lb_http_var_ctx_t *ctx, lb_str_t arg)
{
    char  host[256];

    if (gethostname(host, sizeof(host)) == -1) {
        return;
    }
    host[sizeof(host) - 1] = '\0';
    lb_http_var_write(out, host, strlen(host));
}

/* The request head ------------------------------------------------------------ */

static void
lb_http_var_method(lb_http_var_out_t *out, const lb_http_var_ctx_t *ctx, lb_str_t arg)
{
    if (ctx->request != NULL) {
        lb_http_var_write_str(out, ctx->request->method);
    }
}

/* $request_uri: the target as sent. */
static void
lb_http_var_request_uri(lb_http_var_out_t *out, const lb_http_var_ctx_t *ctx, lb_str_t arg)
{
    if (ctx->request != NULL) {
        lb_http_var_write_str(out, ctx->request->target);
    }
}

/* $uri: the normalised path (lb_http_parse_uri). */
static void
lb_http_var_uri(lb_http_var_out_t *out, const lb_http_var_ctx_t *ctx, lb_str_t arg)
{
    if (ctx->request != NULL) {
        lb_http_var_write_str(out, ctx->request->uri);
    }
}

/* $args and $query_string: the query as sent. */
static void
lb_http_var_args(lb_http_var_out_t *out, const lb_http_var_ctx_t *ctx, lb_str_t arg)
{
    if (ctx->request != NULL) {
        lb_http_var_write_str(out, ctx->request->query);
    }
}

/* $request: the request line without its CRLF, "GET /x HTTP/1.1"; "" before
 * a request line is parsed */
static void
lb_http_var_request(lb_http_var_out_t *out, const lb_http_var_ctx_t *ctx, lb_str_t arg)
{
    const lb_http_msg_t  *r = ctx->request;

    if (r == NULL || r->method.len == 0) {
        return;
    }
    lb_http_var_write_str(out, r->method);
    lb_http_var_write(out, " ", 1);
    lb_http_var_write_str(out, r->target);
    lb_http_var_write(out, r->version == 10 ? " HTTP/1.0" : " HTTP/1.1", 9);
}

/* $host: the host routes matched (the Host field, or an absolute-form
 * target's authority) without its port and one trailing dot, lowercased;
 * "[::1]:80" -> "[::1]". A request without one (HTTP/1.0 without Host)
 * gets the address it came to, as nginx falls back to its server name:
 * "https://$host/" must still name this server, never "https:///". */
static void
lb_http_var_host(lb_http_var_out_t *out, const lb_http_var_ctx_t *ctx, lb_str_t arg)
{
    lb_str_t     name;
    const char  *ip;
    size_t       n;
    bool         v6;

    if (ctx->request == NULL) {
        return;
    }
    lb_http_host_name(&ctx->request->host, &name);
    if (name.len != 0) {
        lb_http_var_write_lower(out, name.data, name.len);
        return;
    }
    ip = lb_http_var_local_ip(ctx);
    n = strlen(ip);
    v6 = memchr(ip, ':', n) != NULL;
    lb_http_var_write(out, "[", v6 ? 1 : 0);
    lb_http_var_write_lower(out, ip, n);
    lb_http_var_write(out, "]", v6 ? 1 : 0);
}

/* Whether a field name is the $http_ NAME: case-insensitive, '-' as '_'. */
static bool
lb_http_var_header_is(lb_str_t field, lb_str_t name)
{
    size_t  i;
    char    c, n;

    if (field.len != name.len) {
        return false;
    }
    for (i = 0; i < name.len; i++) {
        c = lb_http_var_lower(field.data[i]);
        n = lb_http_var_lower(name.data[i]);
        if (c != n && !(c == '-' && n == '_')) {
            return false;
        }
    }
    return true;
}

/* $http_NAME: every field line called NAME, joined in order with ", " (RFC
 * 9110 §5.3), except Cookie, joined with "; " (RFC 6265 §5.4), as nginx. */
static void
lb_http_var_http(lb_http_var_out_t *out, const lb_http_var_ctx_t *ctx, lb_str_t name)
{
    static const lb_str_t  cookie = lb_string("cookie");
    const lb_http_msg_t   *r = ctx->request;
    const char            *sep;
    size_t                 i;
    bool                   first = true;

    if (r == NULL) {
        return;
    }
    sep = lb_http_var_header_is(cookie, name) ? "; " : ", ";
    for (i = 0; i < r->nheaders; i++) {
        if (!lb_http_var_header_is(r->headers[i].name, name)) {
            continue;
        }
        if (!first) {
            lb_http_var_write(out, sep, 2);
        }
        lb_http_var_write_str(out, r->headers[i].value);
        first = false;
    }
}

/* $arg_NAME: the value of the first NAME= in the query, as sent ("a" alone
 * counts as an empty value); NAME case-sensitive. */
static void
lb_http_var_arg(lb_http_var_out_t *out, const lb_http_var_ctx_t *ctx, lb_str_t name)
{
    const char  *p, *end, *amp;

    if (ctx->request == NULL) {
        return;
    }
    p = ctx->request->query.data;
    end = p + ctx->request->query.len;
    while (p < end) {
        amp = memchr(p, '&', (size_t) (end - p));
        if (amp == NULL) {
            amp = end;
        }
        if ((size_t) (amp - p) >= name.len && memcmp(p, name.data, name.len) == 0
            && (p + name.len == amp || p[name.len] == '='))
        {
            if (p + name.len < amp) {
                lb_http_var_write(out, p + name.len + 1, (size_t) (amp - p - name.len - 1));
            }
            return;
        }
        p = amp < end ? amp + 1 : end;
    }
}

/* $cookie_NAME: the value of the first cookie NAME (case-sensitive, RFC
 * 6265) in the Cookie fields, split on ';', whitespace trimmed around the
 * pair, the name and the value (RFC 6265 §5.2); the value is as sent,
 * quotes kept. */
static void
lb_http_var_cookie(lb_http_var_out_t *out, const lb_http_var_ctx_t *ctx, lb_str_t name)
{
    static const lb_str_t  cookie = lb_string("cookie");
    const lb_http_msg_t   *r = ctx->request;
    const char            *p, *end, *semi, *eq, *e;
    size_t                 i;

    for (i = 0; r != NULL && i < r->nheaders; i++) {
        if (!lb_http_var_header_is(r->headers[i].name, cookie)) {
            continue;
        }
        end = r->headers[i].value.data + r->headers[i].value.len;
        for (p = r->headers[i].value.data; p < end; p = semi < end ? semi + 1 : end) {
            semi = memchr(p, ';', (size_t) (end - p));
            if (semi == NULL) {
                semi = end;
            }
            eq = memchr(p, '=', (size_t) (semi - p));
            if (eq == NULL) {
                continue;
            }
            e = eq;
            lb_http_var_trim(&p, &e);
            if ((size_t) (e - p) != name.len || memcmp(p, name.data, name.len) != 0) {
                continue;
            }
            p = eq + 1;
            e = semi;
            lb_http_var_trim(&p, &e);
            lb_http_var_write(out, p, (size_t) (e - p));
            return;
        }
    }
}

/* $1..$9: the route's path_regex groups ("" when not matched); arg is the
 * digit. */
static void
lb_http_var_capture(lb_http_var_out_t *out, const lb_http_var_ctx_t *ctx, lb_str_t arg)
{
    unsigned  n = (unsigned) (arg.data[0] - '0');
    size_t    from, to;

    if (ctx->captures == NULL || ctx->capture_subject == NULL || (int) n >= ctx->ncaptures) {
        return;
    }
    from = ctx->captures[2 * n];
    to = ctx->captures[2 * n + 1];
    if (from == LB_HTTP_VAR_UNSET || to == LB_HTTP_VAR_UNSET || to < from) {
        return;
    }
    lb_http_var_write(out, ctx->capture_subject + from, to - from);
}

/* The response and the clock --------------------------------------------------- */

/* $request_id: the client's valid X-Request-ID, or the one lbd made. */
static void
lb_http_var_request_id(lb_http_var_out_t *out, const lb_http_var_ctx_t *ctx, lb_str_t arg)
{
    if (ctx->r != NULL) {
        lb_http_var_write_str(out, ctx->r->request_id);
    }
}

/* $status: the response's status, "" before there is one. */
static void
lb_http_var_status(lb_http_var_out_t *out, const lb_http_var_ctx_t *ctx, lb_str_t arg)
{
    if (ctx->status > 0) {
        lb_http_var_write_uint(out, (uint64_t) ctx->status);
    }
}

/* $bytes_sent: to the client, "0" before any. */
static void
lb_http_var_bytes_sent(lb_http_var_out_t *out, const lb_http_var_ctx_t *ctx, lb_str_t arg)
{
    lb_http_var_write_uint(out, ctx->r != NULL ? ctx->r->bytes_sent : 0);
}

/* $request_time: seconds since the request's first byte, "0.123". */
static void
lb_http_var_request_time(lb_http_var_out_t *out, const lb_http_var_ctx_t *ctx, lb_str_t arg)
{
    if (ctx->r != NULL) {
        lb_http_var_write_msec(out, lb_current_msec - ctx->r->start_msec);
    }
}

/* $msec: the wall clock, seconds with milliseconds, read at each use. */
static void
lb_http_var_msec(lb_http_var_out_t *out, const lb_http_var_ctx_t *ctx, lb_str_t arg)
{
    struct timespec  ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    lb_http_var_write_msec(out, (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000);
}

/* $time_iso8601: local time, "2026-11-25T10:59:46+00:00". */
static void
lb_http_var_time_iso8601(lb_http_var_out_t *out, const lb_http_var_ctx_t *ctx, lb_str_t arg)
{
    char       tmp[40];
    size_t     n;
    struct tm  tm;
    time_t     now = time(NULL);

    /* "2026-11-25T10:59:46+0000": the colon of "+00:00" goes in by hand */
    if (localtime_r(&now, &tm) == NULL
        || (n = strftime(tmp, sizeof(tmp) - 1, "%Y-%m-%dT%H:%M:%S%z", &tm)) < 5)
    {
        return;
    }
    tmp[n] = tmp[n - 1];
    tmp[n - 1] = tmp[n - 2];
    tmp[n - 2] = ':';
    lb_http_var_write(out, tmp, n + 1);
}

/* $time_local: local time as in nginx's access log, "25/Nov/2026:10:59:46
 * +0000" (month names in English whatever the locale) */
static void
lb_http_var_time_local(lb_http_var_out_t *out, const lb_http_var_ctx_t *ctx, lb_str_t arg)
{
    static const char *const  months[] = { "Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                           "Jul", "Aug", "Sep", "Oct", "Nov", "Dec" };
    char       tmp[48], zone[8];
    int        n;
    struct tm  tm;
    time_t     now = time(NULL);

    if (localtime_r(&now, &tm) == NULL || strftime(zone, sizeof(zone), "%z", &tm) == 0) {
        return;
    }
    n = snprintf(tmp, sizeof(tmp), "%02d/%s/%04d:%02d:%02d:%02d %s", tm.tm_mday,
                 months[tm.tm_mon % 12], tm.tm_year + 1900, tm.tm_hour, tm.tm_min,
                 tm.tm_sec, zone);
    if (n > 0 && (size_t) n < sizeof(tmp)) {
        lb_http_var_write(out, tmp, (size_t) n);
    }
}

/* The table, in the order the suggestions prefer among equally close
 * names. */
const lb_http_var_def_t  lb_http_core_variables[] = {
    { "remote_addr", lb_http_var_remote_addr, 0 },
    { "remote_port", lb_http_var_remote_port, 0 },
    { "server_addr", lb_http_var_server_addr, 0 },
    { "server_port", lb_http_var_server_port, 0 },
    { "scheme", lb_http_var_scheme, 0 },
    { "host", lb_http_var_host, 0 },
    { "method", lb_http_var_method, 0 },
    { "request_uri", lb_http_var_request_uri, 0 },
    { "uri", lb_http_var_uri, 0 },
    { "args", lb_http_var_args, 0 },
    { "request_id", lb_http_var_request_id, 0 },
    { "status", lb_http_var_status, 0 },
    { "sni", lb_http_var_sni, 0 },
    { "ssl_protocol", lb_http_var_ssl_protocol, 0 },
    { "ssl_cipher", lb_http_var_ssl_cipher, 0 },
    { "time_iso8601", lb_http_var_time_iso8601, 0 },
    { "msec", lb_http_var_msec, 0 },
    { "request_time", lb_http_var_request_time, 0 },
    { "bytes_sent", lb_http_var_bytes_sent, 0 },
    { "time_local", lb_http_var_time_local, 0 },
    { "request", lb_http_var_request, 0 },
    { "ssl_client_verify", lb_http_var_ssl_client_verify, 0 },
    { "server_name", lb_http_var_server_name, 0 },
    { "hostname", lb_http_var_hostname, LB_HTTP_VAR_AT_LOAD },
    { "query_string", lb_http_var_args, 0 },
    { "arg_", lb_http_var_arg, LB_HTTP_VAR_PREFIX },
    { "http_", lb_http_var_http, LB_HTTP_VAR_PREFIX },
    { "cookie_", lb_http_var_cookie, LB_HTTP_VAR_PREFIX },
    { "1", lb_http_var_capture, 0 },
    { "2", lb_http_var_capture, 0 },
    { "3", lb_http_var_capture, 0 },
    { "4", lb_http_var_capture, 0 },
    { "5", lb_http_var_capture, 0 },
    { "6", lb_http_var_capture, 0 },
    { "7", lb_http_var_capture, 0 },
    { "8", lb_http_var_capture, 0 },
    { "9", lb_http_var_capture, 0 },
    { NULL, NULL, 0 }
};
