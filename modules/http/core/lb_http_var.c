/*
 * lb_http_var.c: compiles strings with variables (SPEC §3.5) into a list of
 * parts at configuration load, and evaluates that list per request into a
 * caller's buffer without allocating. Owns the table of variable names.
 */
#include "lb_core.h"
#include "lb_http_var.h"

#include <time.h>

/* Fixed variables first, in the order of lb_http_var_names[]. */
typedef enum {
    LB_HTTP_VAR_REMOTE_ADDR = 0,
    LB_HTTP_VAR_REMOTE_PORT,
    LB_HTTP_VAR_SERVER_ADDR,
    LB_HTTP_VAR_SERVER_PORT,
    LB_HTTP_VAR_SCHEME,
    LB_HTTP_VAR_HOST,
    LB_HTTP_VAR_METHOD,
    LB_HTTP_VAR_REQUEST_URI,
    LB_HTTP_VAR_URI,
    LB_HTTP_VAR_ARGS,
    LB_HTTP_VAR_REQUEST_ID,
    LB_HTTP_VAR_UPSTREAM_ADDR,
    LB_HTTP_VAR_STATUS,
    LB_HTTP_VAR_SNI,
    LB_HTTP_VAR_SSL_PROTOCOL,
    LB_HTTP_VAR_SSL_CIPHER,
    LB_HTTP_VAR_TIME_ISO8601,
    LB_HTTP_VAR_MSEC,
    LB_HTTP_VAR_REQUEST_TIME,
    LB_HTTP_VAR_UPSTREAM_RESPONSE_TIME,
    LB_HTTP_VAR_BYTES_SENT,
    LB_HTTP_VAR_TIME_LOCAL,
    LB_HTTP_VAR_REQUEST,
    LB_HTTP_VAR_SSL_CLIENT_VERIFY,
    LB_HTTP_VAR_UPSTREAM_STATUS,
    LB_HTTP_VAR_UPSTREAM_CONNECT_TIME,
    LB_HTTP_VAR_SERVER_NAME,
    LB_HTTP_VAR_HOSTNAME,                   /* text: the name, read at load */
    LB_HTTP_VAR_QUERY_STRING,
    LB_HTTP_VAR_NFIXED,
    /* the families and the rest */
    LB_HTTP_VAR_ARG = LB_HTTP_VAR_NFIXED,   /* $arg_NAME: name is NAME */
    LB_HTTP_VAR_HTTP,                       /* $http_NAME: name lowercased */
    LB_HTTP_VAR_COOKIE,                     /* $cookie_NAME */
    LB_HTTP_VAR_CAPTURE,                    /* $1..$9: capture */
    LB_HTTP_VAR_LITERAL,                    /* text: the bytes */
} lb_http_var_kind_t;

const char *const  lb_http_var_names[] = {
    "remote_addr", "remote_port", "server_addr", "server_port", "scheme",
    "host", "method", "request_uri", "uri", "args", "request_id",
    "upstream_addr", "status", "sni", "ssl_protocol", "ssl_cipher",
    "time_iso8601", "msec", "request_time", "upstream_response_time",
    "bytes_sent", "time_local", "request", "ssl_client_verify", "upstream_status",
    "upstream_connect_time", "server_name", "hostname", "query_string", NULL
};

/* nginx's names for what lbd calls otherwise, for the suggestions; a name
 * nginx shares with lbd ($host, $args, $http_NAME) needs no entry. */
static const struct {
    const char  *nginx;
    const char  *ours;
} lb_http_var_nginx_names[] = {
    { "request_method", "method" },
    { "document_uri", "uri" },
    { "ssl_server_name", "sni" },
    { "content_type", "http_content_type" },
    { "content_length", "http_content_length" },
};

/* The families that take a name after their prefix. */
static const struct {
    const char          *prefix;        /* "arg_" */
    size_t               len;
    lb_http_var_kind_t   kind;
} lb_http_var_families[] = {
    { "arg_", 4, LB_HTTP_VAR_ARG },
    { "http_", 5, LB_HTTP_VAR_HTTP },
    { "cookie_", 7, LB_HTTP_VAR_COOKIE },
};

static const char *const  lb_http_var_family_words[] = { "arg", "http", "cookie", NULL };

typedef struct {
    lb_http_var_kind_t   kind;
    unsigned             capture;       /* LB_HTTP_VAR_CAPTURE: 1..9 */
    lb_str_t             text;          /* literal bytes, or the family's NAME */
} lb_http_var_part_t;

struct lb_http_complex_s {
    lb_http_var_part_t  *parts;
    size_t               nparts;
    bool                 literal;       /* nparts == 0, or one literal part */
};

/* What eval writes into: buf[0..size) receives the first bytes, len counts
 * them all; the values of variables are escaped per escape, literal text
 * never is. */
typedef struct {
    char              *buf;
    size_t             size;
    size_t             len;
    lb_http_escape_t   escape;
} lb_http_var_out_t;

#define LB_HTTP_VAR_NAME_MAX   64            /* longest name in a message */
#define LB_HTTP_VAR_UNSET      (~(size_t) 0)  /* PCRE2_UNSET */

/* What eval reads when given no context: nothing is known. */
static const lb_http_var_ctx_t  lb_http_var_ctx_empty = {
    .upstream_response_msec = -1, .upstream_connect_msec = -1
};

static inline char
lb_http_var_lower(char c)
{
    return c >= 'A' && c <= 'Z' ? (char) (c | 0x20) : c;
}

static inline bool
lb_http_var_name_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
           || (c >= '0' && c <= '9') || c == '_';
}

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

/* Compilation --------------------------------------------------------------- */

/* Writes "unknown variable "$name"" and the best suggestion into err: a
 * close fixed name, lbd's name for an nginx one ("$request_method" ->
 * "$method"), a close family prefix, or a known name that the text runs
 * into ("$hostx" -> "${host}x"; not when the rest reads as more of one
 * name, as "_method" in "$request_method" does). */
static void
lb_http_var_unknown(const char *name, size_t len, char *err, size_t errlen)
{
    char         word[LB_HTTP_VAR_NAME_MAX + 1], fixed[LB_HTTP_VAR_NAME_MAX + 1];
    const char  *best, *us, *nginx[lb_nelems(lb_http_var_nginx_names) + 1];
    size_t       i, n, best_len = 0;

    if (len > LB_HTTP_VAR_NAME_MAX) {
        snprintf(err, errlen, "unknown variable \"$%.*s\"", (int) len, name);
        return;
    }
    memcpy(word, name, len);
    word[len] = '\0';

    for (i = 0; i < lb_nelems(lb_http_var_nginx_names); i++) {
        nginx[i] = lb_http_var_nginx_names[i].nginx;
        if (strcmp(word, nginx[i]) == 0) {
            snprintf(err, errlen, "unknown variable \"$%s\" (did you mean \"$%s\"?)",
                     word, lb_http_var_nginx_names[i].ours);
            return;
        }
    }
    nginx[i] = NULL;

    best = lb_did_you_mean(word, lb_http_var_names);
    if (best == NULL) {
        best = lb_did_you_mean(word, nginx);
        for (i = 0; best != NULL && i < lb_nelems(lb_http_var_nginx_names); i++) {
            if (best == nginx[i]) {
                best = lb_http_var_nginx_names[i].ours;
                break;
            }
        }
    }
    if (best != NULL) {
        snprintf(err, errlen, "unknown variable \"$%s\" (did you mean \"$%s\"?)", word, best);
        return;
    }

    /* "$htpp_x" -> "$http_x" */
    us = memchr(word, '_', len);
    if (us != NULL && us[1] != '\0') {
        n = (size_t) (us - word);
        memcpy(fixed, word, n);
        fixed[n] = '\0';
        best = lb_did_you_mean(fixed, lb_http_var_family_words);
        if (best != NULL) {
            snprintf(err, errlen, "unknown variable \"$%s\" (did you mean \"$%s%s\"?)",
                     word, best, us);
            return;
        }
    }

    /* "$hostx" -> "${host}x", "$host_" -> "${host}_" */
    best = NULL;
    for (i = 0; lb_http_var_names[i] != NULL; i++) {
        n = strlen(lb_http_var_names[i]);
        if (n < len && n > best_len && memcmp(word, lb_http_var_names[i], n) == 0) {
            best = lb_http_var_names[i];
            best_len = n;
        }
    }
    if (best != NULL && !(word[best_len] == '_' && word[best_len + 1] != '\0')) {
        snprintf(err, errlen, "unknown variable \"$%s\" (did you mean \"${%s}%s\"?)",
                 word, best, word + best_len);
        return;
    }

    snprintf(err, errlen, "unknown variable \"$%s\"", word);
}

/* Adds one reason to err: the first as it is, the next ones each on a
 * line of their own. */
static void
lb_http_var_error(char *err, size_t errlen, const char *reason)
{
    size_t  n = strlen(err);

    if (n == 0) {
        snprintf(err, errlen, "%s", reason);
    } else if (n + 1 < errlen) {
        snprintf(err + n, errlen - n, "\n%s", reason);
    }
}

/* Resolves name[0..len) (already checked to be [A-Za-z0-9_]+) into part.
 * The family's NAME stays a view into name, which lives in the pool. */
static int
lb_http_var_resolve(lb_http_var_part_t *part, char *name, size_t len,
                    char *err, size_t errlen)
{
    size_t  i, j;

    if (len == 1 && name[0] >= '1' && name[0] <= '9') {
        part->kind = LB_HTTP_VAR_CAPTURE;
        part->capture = (unsigned) (name[0] - '0');
        return LB_OK;
    }

    for (i = 0; i < LB_HTTP_VAR_NFIXED; i++) {
        if (strncmp(lb_http_var_names[i], name, len) == 0
            && lb_http_var_names[i][len] == '\0')
        {
            part->kind = (lb_http_var_kind_t) i;
            return LB_OK;
        }
    }

    for (i = 0; i < lb_nelems(lb_http_var_families); i++) {
        if (len < lb_http_var_families[i].len
            || memcmp(name, lb_http_var_families[i].prefix, lb_http_var_families[i].len) != 0)
        {
            continue;
        }
        if (len == lb_http_var_families[i].len) {
            snprintf(err, errlen, "variable \"$%.*s\" needs a name after \"%s\" "
                     "(as in \"$%sname\")", (int) len, name,
                     lb_http_var_families[i].prefix, lb_http_var_families[i].prefix);
            return LB_ERROR;
        }
        part->kind = lb_http_var_families[i].kind;
        part->text.data = name + lb_http_var_families[i].len;
        part->text.len = len - lb_http_var_families[i].len;
        if (part->kind == LB_HTTP_VAR_HTTP) {
            /* header names compare case-insensitively: lowercase once here */
            for (j = 0; j < part->text.len; j++) {
                part->text.data[j] = lb_http_var_lower(part->text.data[j]);
            }
        }
        return LB_OK;
    }

    lb_http_var_unknown(name, len, err, errlen);
    return LB_ERROR;
}

lb_http_complex_t *
lb_http_complex_compile(lb_pool_t *pool, const char *text, char *err, size_t errlen)
{
    lb_http_complex_t   *cv;
    lb_http_var_part_t  *part;
    const char          *p, *end, *name;
    char                *copy, *w;
    size_t               len, ndollars = 0, nlen;
    char                 dummy[1], reason[256], host[256];
    bool                 failed = false;

    if (err == NULL || errlen == 0) {
        err = dummy;
        errlen = sizeof(dummy);
    }
    err[0] = '\0';

    len = strlen(text);
    for (p = text; (p = memchr(p, '$', (size_t) (text + len - p))) != NULL; p++) {
        ndollars++;
    }

    cv = lb_pcalloc(pool, sizeof(lb_http_complex_t));
    /* Each "$" ends at most one literal and adds one variable; the copy
     * holds literal bytes ("$$" unescaped) and variable names, so never
     * more than the text. */
    copy = lb_palloc(pool, len + 1);
    if (cv == NULL || copy == NULL
        || (cv->parts = lb_palloc(pool, (2 * ndollars + 1) * sizeof(lb_http_var_part_t)))
           == NULL)
    {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }

    w = copy;
    end = text + len;
    p = text;
    part = NULL;            /* the open literal part, if the last one is one */

    while (p < end) {
        if (*p != '$' || (p + 1 < end && p[1] == '$')) {
            if (part == NULL) {
                part = &cv->parts[cv->nparts++];
                part->kind = LB_HTTP_VAR_LITERAL;
                part->text.data = w;
                part->text.len = 0;
            }
            *w++ = *p;
            part->text.len++;
            p += *p == '$' ? 2 : 1;
            continue;
        }

        /* a variable: a bad one is reported and the rest read on, so that
         * every mistake of the string is told at once */
        part = NULL;
        p++;
        if (p < end && *p == '{') {
            name = ++p;
            while (p < end && lb_http_var_name_char(*p)) {
                p++;
            }
            nlen = (size_t) (p - name);
            if (p == end) {
                snprintf(reason, sizeof(reason), "the closing \"}\" of \"${%.*s\" is missing",
                         (int) nlen, name);
                lb_http_var_error(err, errlen, reason);
                return NULL;
            }
            if (*p != '}') {
                snprintf(reason, sizeof(reason), "invalid character \"%c\" in \"${%.*s\": "
                         "a variable name is letters, digits and \"_\"",
                         *p, (int) nlen + 1, name);
                lb_http_var_error(err, errlen, reason);
                return NULL;
            }
            p++;
            if (nlen == 0) {
                lb_http_var_error(err, errlen, "empty variable name \"${}\"");
                failed = true;
                continue;
            }

        } else if (p < end && *p >= '0' && *p <= '9') {
            /* one digit, as in nginx: "$1.html" and "$10" are $1 and text */
            name = p++;
            nlen = 1;

        } else {
            name = p;
            while (p < end && lb_http_var_name_char(*p)) {
                p++;
            }
            nlen = (size_t) (p - name);
            if (nlen == 0) {
                lb_http_var_error(err, errlen, "a \"$\" must start a variable name "
                                  "(write $$ for a dollar sign)");
                failed = true;
                continue;
            }
        }

        memcpy(w, name, nlen);
        part = &cv->parts[cv->nparts++];
        part->text.len = 0;
        part->text.data = NULL;
        if (lb_http_var_resolve(part, w, nlen, reason, sizeof(reason)) != LB_OK) {
            lb_http_var_error(err, errlen, reason);
            failed = true;
        } else if (part->kind == LB_HTTP_VAR_HOSTNAME) {
            /* read once here, as nginx does at load */
            if (gethostname(host, sizeof(host)) == -1) {
                host[0] = '\0';
            }
            host[sizeof(host) - 1] = '\0';
            part->text.len = strlen(host);
            part->text.data = lb_pstrdup(pool, host);
            if (part->text.data == NULL) {
                snprintf(err, errlen, "out of memory");
                return NULL;
            }
        }
        w += nlen;
        part = NULL;
    }
    if (failed) {
        return NULL;
    }

    cv->literal = cv->nparts == 0
                  || (cv->nparts == 1 && cv->parts[0].kind == LB_HTTP_VAR_LITERAL);
    return cv;
}

lb_http_complex_t *
lb_http_complex_conf(lb_conf_t *cf, const config_setting_t *v, const char *text,
                     const char *what)
{
    lb_http_complex_t  *cv;
    char                err[1024];
    const char         *p, *nl;

    cv = lb_http_complex_compile(cf->pool, text, err, sizeof(err));
    if (cv != NULL) {
        return cv;
    }
    for (p = err; p != NULL; p = nl ? nl + 1 : NULL) {
        nl = strchr(p, '\n');
        lb_conf_error(cf, v, "%s: %.*s", what, (int) (nl ? (size_t) (nl - p) : strlen(p)), p);
    }
    return NULL;
}

bool
lb_http_complex_is_literal(const lb_http_complex_t *cv)
{
    return cv->literal;
}

/* Evaluation ---------------------------------------------------------------- */

static inline void
lb_http_var_put_raw(lb_http_var_out_t *out, const char *p, size_t n)
{
    if (n > 0 && out->len < out->size) {
        memcpy(out->buf + out->len, p, lb_min(n, out->size - out->len));
    }
    out->len += n;
}

/* JSON string content (RFC 8259 §7): '"' and '\\' behind a backslash,
 * control bytes (below 0x20, and 0x7f) as \u00XX or their short forms;
 * the other bytes, those from 0x80 too, as they are. */
static void
lb_http_var_put_json(lb_http_var_out_t *out, const char *p, size_t n)
{
    static const char  hex[] = "0123456789abcdef";
    const char        *run = p, *end = p + n;
    unsigned char      c;
    char               esc[6];
    size_t             elen;

    for (; p < end; p++) {
        c = (unsigned char) *p;
        if (c >= 0x20 && c != 0x7f && c != '"' && c != '\\') {
            continue;
        }
        lb_http_var_put_raw(out, run, (size_t) (p - run));
        run = p + 1;
        esc[0] = '\\';
        elen = 2;
        switch (c) {
        case '"':  esc[1] = '"'; break;
        case '\\': esc[1] = '\\'; break;
        case '\n': esc[1] = 'n'; break;
        case '\r': esc[1] = 'r'; break;
        case '\t': esc[1] = 't'; break;
        default:
            memcpy(esc + 1, "u00", 3);
            esc[4] = hex[c >> 4];
            esc[5] = hex[c & 0xf];
            elen = 6;
        }
        lb_http_var_put_raw(out, esc, elen);
    }
    lb_http_var_put_raw(out, run, (size_t) (end - run));
}

/* A variable's bytes, escaped as the caller asked. */
static inline void
lb_http_var_put(lb_http_var_out_t *out, const char *p, size_t n)
{
    if (out->escape == LB_HTTP_ESCAPE_JSON) {
        lb_http_var_put_json(out, p, n);
        return;
    }
    lb_http_var_put_raw(out, p, n);
}

static inline void
lb_http_var_put_str(lb_http_var_out_t *out, lb_str_t s)
{
    lb_http_var_put(out, s.data, s.len);
}

static void
lb_http_var_put_lower(lb_http_var_out_t *out, const char *p, size_t n)
{
    char    tmp[64];
    size_t  i, k;

    for (i = 0; i < n; i += k) {
        for (k = 0; k < sizeof(tmp) && i + k < n; k++) {
            tmp[k] = lb_http_var_lower(p[i + k]);
        }
        lb_http_var_put(out, tmp, k);
    }
}

static void
lb_http_var_put_uint(lb_http_var_out_t *out, uint64_t v)
{
    char   tmp[20], *q = tmp + sizeof(tmp);

    do {
        *--q = (char) ('0' + v % 10);
        v /= 10;
    } while (v != 0);
    lb_http_var_put(out, q, (size_t) (tmp + sizeof(tmp) - q));
}

/* msec as seconds with three decimals: 1234 -> "1.234" */
static void
lb_http_var_put_seconds(lb_http_var_out_t *out, int64_t msec)
{
    char  tmp[3];

    if (msec < 0) {
        msec = 0;
    }
    lb_http_var_put_uint(out, (uint64_t) msec / 1000);
    tmp[0] = (char) ('0' + msec / 100 % 10);
    tmp[1] = (char) ('0' + msec / 10 % 10);
    tmp[2] = (char) ('0' + msec % 10);
    lb_http_var_put(out, ".", 1);
    lb_http_var_put(out, tmp, 3);
}

static void
lb_http_var_put_iso8601(lb_http_var_out_t *out)
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
    lb_http_var_put(out, tmp, n + 1);
}

/* $time_local: local time as in nginx's access log, "25/Nov/2026:10:59:46
 * +0000" (month names in English whatever the locale) */
static void
lb_http_var_put_time_local(lb_http_var_out_t *out)
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
        lb_http_var_put(out, tmp, (size_t) n);
    }
}

/* $request: the request line without its CRLF, "GET /x HTTP/1.1"; "" before
 * a request line is parsed */
static void
lb_http_var_put_request(lb_http_var_out_t *out, const lb_http_msg_t *r)
{
    if (r->method.len == 0) {
        return;
    }
    lb_http_var_put_str(out, r->method);
    lb_http_var_put(out, " ", 1);
    lb_http_var_put_str(out, r->target);
    lb_http_var_put(out, r->version == 10 ? " HTTP/1.0" : " HTTP/1.1", 9);
}

/* $host: the host routes matched (the Host field, or an absolute-form
 * target's authority) without its port and one trailing dot, lowercased;
 * "[::1]:80" -> "[::1]". A request without one (HTTP/1.0 without Host)
 * gets the address it came to, as nginx falls back to its server name:
 * "https://$host/" must still name this server, never "https:///". */
static void
lb_http_var_put_host(lb_http_var_out_t *out, const lb_http_msg_t *r,
                     const lb_http_var_ctx_t *ctx)
{
    lb_str_t  name;
    bool      v6;

    lb_http_host_name(&r->host, &name);
    if (name.len == 0) {
        v6 = ctx->server_addr.len && memchr(ctx->server_addr.data, ':', ctx->server_addr.len);
        lb_http_var_put(out, "[", v6 ? 1 : 0);
        lb_http_var_put_lower(out, ctx->server_addr.data, ctx->server_addr.len);
        lb_http_var_put(out, "]", v6 ? 1 : 0);
        return;
    }
    lb_http_var_put_lower(out, name.data, name.len);
}

/* Whether a field name is the $http_ NAME: case-insensitive, '-' as '_'. */
static bool
lb_http_var_header_is(lb_str_t field, lb_str_t name)
{
    size_t  i;
    char    c;

    if (field.len != name.len) {
        return false;
    }
    for (i = 0; i < name.len; i++) {
        c = lb_http_var_lower(field.data[i]);
        if (c != name.data[i] && !(c == '-' && name.data[i] == '_')) {
            return false;
        }
    }
    return true;
}

/* $http_NAME: every field line called NAME, joined in order with ", " (RFC
 * 9110 §5.3), except Cookie, joined with "; " (RFC 6265 §5.4), as nginx. */
static void
lb_http_var_put_header(lb_http_var_out_t *out, const lb_http_msg_t *r, lb_str_t name)
{
    static const lb_str_t  cookie = lb_string("cookie");
    const char            *sep;
    size_t                 i;
    bool                   first = true;

    sep = lb_http_var_header_is(cookie, name) ? "; " : ", ";
    for (i = 0; i < r->nheaders; i++) {
        if (!lb_http_var_header_is(r->headers[i].name, name)) {
            continue;
        }
        if (!first) {
            lb_http_var_put(out, sep, 2);
        }
        lb_http_var_put_str(out, r->headers[i].value);
        first = false;
    }
}

/* $arg_NAME: the value of the first NAME= in the query, as sent ("a" alone
 * counts as an empty value). */
static lb_str_t
lb_http_var_arg(const lb_http_msg_t *r, lb_str_t name)
{
    const char  *p = r->query.data, *end = p + r->query.len, *amp;
    lb_str_t     v = lb_null_string;

    while (p < end) {
        amp = memchr(p, '&', (size_t) (end - p));
        if (amp == NULL) {
            amp = end;
        }
        if ((size_t) (amp - p) >= name.len && memcmp(p, name.data, name.len) == 0
            && (p + name.len == amp || p[name.len] == '='))
        {
            if (p + name.len < amp) {
                v.data = (char *) p + name.len + 1;
                v.len = (size_t) (amp - v.data);
            }
            return v;
        }
        p = amp < end ? amp + 1 : end;
    }
    return v;
}

/* $cookie_NAME: the value of the first cookie NAME (case-sensitive, RFC
 * 6265) in the Cookie fields, split on ';', whitespace trimmed around the
 * pair, the name and the value (RFC 6265 §5.2); the value is as sent. */
static lb_str_t
lb_http_var_cookie(const lb_http_msg_t *r, lb_str_t name)
{
    static const lb_str_t  cookie = lb_string("cookie");
    const char            *p, *end, *semi, *eq, *e;
    lb_str_t               v = lb_null_string;
    size_t                 i;

    for (i = 0; i < r->nheaders; i++) {
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
            v.data = (char *) p;
            v.len = (size_t) (e - p);
            return v;
        }
    }
    return v;
}

static void
lb_http_var_put_capture(lb_http_var_out_t *out, const lb_http_var_ctx_t *ctx, unsigned n)
{
    size_t  from, to;

    if (ctx->captures == NULL || ctx->capture_subject == NULL || (int) n >= ctx->ncaptures) {
        return;
    }
    from = ctx->captures[2 * n];
    to = ctx->captures[2 * n + 1];
    if (from == LB_HTTP_VAR_UNSET || to == LB_HTTP_VAR_UNSET || to < from) {
        return;
    }
    lb_http_var_put(out, ctx->capture_subject + from, to - from);
}

static void
lb_http_var_put_part(lb_http_var_out_t *out, const lb_http_var_part_t *part,
                     const lb_http_var_ctx_t *ctx)
{
    const lb_http_msg_t  *r = ctx->request;
    struct timespec       ts;

    switch (part->kind) {
    case LB_HTTP_VAR_LITERAL:
        lb_http_var_put_raw(out, part->text.data, part->text.len);
        return;
    case LB_HTTP_VAR_HOSTNAME:
        lb_http_var_put_str(out, part->text);
        return;
    case LB_HTTP_VAR_SERVER_NAME:
        lb_http_var_put_str(out, ctx->server_name);
        return;
    case LB_HTTP_VAR_UPSTREAM_STATUS:
        if (ctx->upstream_status > 0) {
            lb_http_var_put_uint(out, (uint64_t) ctx->upstream_status);
        }
        return;
    case LB_HTTP_VAR_UPSTREAM_CONNECT_TIME:
        if (ctx->upstream_connect_msec >= 0) {
            lb_http_var_put_seconds(out, ctx->upstream_connect_msec);
        }
        return;
    case LB_HTTP_VAR_REMOTE_ADDR:
        lb_http_var_put_str(out, ctx->remote_addr);
        return;
    case LB_HTTP_VAR_REMOTE_PORT:
        lb_http_var_put_str(out, ctx->remote_port);
        return;
    case LB_HTTP_VAR_SERVER_ADDR:
        lb_http_var_put_str(out, ctx->server_addr);
        return;
    case LB_HTTP_VAR_SERVER_PORT:
        lb_http_var_put_str(out, ctx->server_port);
        return;
    case LB_HTTP_VAR_SCHEME:
        lb_http_var_put_str(out, ctx->scheme);
        return;
    case LB_HTTP_VAR_REQUEST_ID:
        lb_http_var_put_str(out, ctx->request_id);
        return;
    case LB_HTTP_VAR_UPSTREAM_ADDR:
        lb_http_var_put_str(out, ctx->upstream_addr);
        return;
    case LB_HTTP_VAR_SNI:
        lb_http_var_put_str(out, ctx->sni);
        return;
    case LB_HTTP_VAR_SSL_PROTOCOL:
        lb_http_var_put_str(out, ctx->ssl_protocol);
        return;
    case LB_HTTP_VAR_SSL_CIPHER:
        lb_http_var_put_str(out, ctx->ssl_cipher);
        return;
    case LB_HTTP_VAR_SSL_CLIENT_VERIFY:
        lb_http_var_put_str(out, ctx->ssl_client_verify);
        return;
    case LB_HTTP_VAR_STATUS:
        if (ctx->status > 0) {
            lb_http_var_put_uint(out, (uint64_t) ctx->status);
        }
        return;
    case LB_HTTP_VAR_BYTES_SENT:
        lb_http_var_put_uint(out, ctx->bytes_sent);
        return;
    case LB_HTTP_VAR_REQUEST_TIME:
        if (ctx != &lb_http_var_ctx_empty) {
            lb_http_var_put_seconds(out, lb_current_msec - ctx->start_msec);
        }
        return;
    case LB_HTTP_VAR_UPSTREAM_RESPONSE_TIME:
        if (ctx->upstream_response_msec >= 0) {
            lb_http_var_put_seconds(out, ctx->upstream_response_msec);
        }
        return;
    case LB_HTTP_VAR_MSEC:
        clock_gettime(CLOCK_REALTIME, &ts);
        lb_http_var_put_seconds(out, (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000);
        return;
    case LB_HTTP_VAR_TIME_ISO8601:
        lb_http_var_put_iso8601(out);
        return;
    case LB_HTTP_VAR_TIME_LOCAL:
        lb_http_var_put_time_local(out);
        return;
    case LB_HTTP_VAR_CAPTURE:
        lb_http_var_put_capture(out, ctx, part->capture);
        return;
    default:
        break;
    }

    /* the rest read the request */
    if (r == NULL) {
        return;
    }
    switch (part->kind) {
    case LB_HTTP_VAR_HOST:
        lb_http_var_put_host(out, r, ctx);
        return;
    case LB_HTTP_VAR_METHOD:
        lb_http_var_put_str(out, r->method);
        return;
    case LB_HTTP_VAR_REQUEST_URI:
        lb_http_var_put_str(out, r->target);
        return;
    case LB_HTTP_VAR_URI:
        lb_http_var_put_str(out, r->uri);
        return;
    case LB_HTTP_VAR_REQUEST:
        lb_http_var_put_request(out, r);
        return;
    case LB_HTTP_VAR_ARGS:
    case LB_HTTP_VAR_QUERY_STRING:
        lb_http_var_put_str(out, r->query);
        return;
    case LB_HTTP_VAR_ARG:
        lb_http_var_put_str(out, lb_http_var_arg(r, part->text));
        return;
    case LB_HTTP_VAR_HTTP:
        lb_http_var_put_header(out, r, part->text);
        return;
    case LB_HTTP_VAR_COOKIE:
        lb_http_var_put_str(out, lb_http_var_cookie(r, part->text));
        return;
    default:
        return;
    }
}

size_t
lb_http_complex_eval(const lb_http_complex_t *cv, const lb_http_var_ctx_t *ctx,
                     char *buf, size_t size)
{
    return lb_http_complex_eval_escaped(cv, ctx, buf, size, LB_HTTP_ESCAPE_NONE);
}

size_t
lb_http_complex_eval_escaped(const lb_http_complex_t *cv, const lb_http_var_ctx_t *ctx,
                             char *buf, size_t size, lb_http_escape_t escape)
{
    lb_http_var_out_t  out = { buf, buf != NULL ? size : 0, 0, escape };
    size_t             i;

    if (cv->literal) {
        if (cv->nparts != 0) {
            lb_http_var_put_raw(&out, cv->parts[0].text.data, cv->parts[0].text.len);
        }
        return out.len;
    }
    if (ctx == NULL) {
        ctx = &lb_http_var_ctx_empty;
    }
    for (i = 0; i < cv->nparts; i++) {
        lb_http_var_put_part(&out, &cv->parts[i], ctx);
    }
    return out.len;
}

lb_str_t *
lb_http_complex_eval_pool(const lb_http_complex_t *cv, const lb_http_var_ctx_t *ctx,
                          lb_pool_t *pool)
{
    lb_str_t  *s;
    size_t     size, len;
    int        tries;

    s = lb_palloc(pool, sizeof(lb_str_t));
    if (s == NULL) {
        return NULL;
    }
    /* The time variables can grow between two evaluations ("9.999" ->
     * "10.000"): evaluate again into a bigger buffer when that happens. */
    size = lb_http_complex_eval(cv, ctx, NULL, 0);
    for (tries = 0; tries < 4; tries++) {
        s->data = lb_palloc(pool, size + 1);
        if (s->data == NULL) {
            return NULL;
        }
        len = lb_http_complex_eval(cv, ctx, s->data, size);
        if (len <= size) {
            s->len = len;
            s->data[len] = '\0';
            return s;
        }
        size = len + 8;
    }
    s->len = size;
    s->data[size] = '\0';
    return s;
}
