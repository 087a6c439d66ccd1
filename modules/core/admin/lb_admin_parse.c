/*
 * lb_admin_parse.c: reading an admin API request head (a small, strict
 * HTTP/1.1: lb_admin.c says what is accepted). Pure functions over a
 * buffer, so that tests/fuzz/fuzz_admin_request.c can run them alone.
 */
#include "lb_admin.h"

#include <ctype.h>

bool
lb_admin_unescape(char *s, bool plus_is_space)
{
    char  *w = s;
    int    hi, lo;

    for ( ; *s; s++) {
        if (*s == '%') {
            hi = lb_hex_digit(s[1]);
            lo = hi < 0 ? -1 : lb_hex_digit(s[2]);
            if (lo < 0 || (hi << 4 | lo) < 0x20 || (hi << 4 | lo) == 0x7f) {
                return false;
            }
            *w++ = (char) (hi << 4 | lo);
            s += 2;
        } else if (*s == '+' && plus_is_space) {
            *w++ = ' ';
        } else {
            *w++ = *s;
        }
    }
    *w = '\0';
    return true;
}

/* A character of a field name (RFC 9110 token). */
static bool
lb_admin_tchar(unsigned char c)
{
    return c && (isalnum(c) || strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

/* Splits the query into rq->params (percent-decoded, + as space). */
static bool
lb_admin_query(lb_admin_req_t *rq, char *q)
{
    char  *pair, *eq, *save = NULL;

    for (pair = strtok_r(q, "&", &save); pair; pair = strtok_r(NULL, "&", &save)) {
        if (rq->nparams == LB_ADMIN_QUERY_MAX) {
            return false;
        }
        eq = strchr(pair, '=');
        if (eq) {
            *eq++ = '\0';
        }
        if (!lb_admin_unescape(pair, true) || (eq && !lb_admin_unescape(eq, true))) {
            return false;
        }
        rq->params[rq->nparams].name = pair;
        rq->params[rq->nparams++].value = eq ? eq : "";
    }
    return true;
}

int
lb_admin_content_length(const char *in, size_t head_len, size_t *body, const char **why)
{
    const char     *end = in + head_len, *cl, *v;
    char           *stop;
    unsigned long   n;

    *body = 0;
    cl = strcasestr(in, "\r\nTransfer-Encoding:");
    if (cl && cl < end) {
        *why = "Transfer-Encoding is not accepted; send Content-Length";
        return 400;
    }
    cl = strcasestr(in, "\r\nContent-Length:");
    if (cl == NULL || cl >= end) {
        return 0;
    }
    v = cl + 17;
    v += strspn(v, " \t");
    if (!isdigit((unsigned char) *v)) {
        *why = "malformed Content-Length";
        return 400;
    }
    errno = 0;
    n = strtoul(v, &stop, 10);
    stop += strspn(stop, " \t");
    if (errno || *stop != '\r') {
        *why = "malformed Content-Length";
        return 400;
    }
    *body = (size_t) n;
    return 0;
}

int
lb_admin_parse_head(char *in, size_t head_len, lb_admin_req_t *rq, lb_admin_head_t *h,
                    const char **why)
{
    char    *line, *next, *p, *target, *version, *q, *colon, *v;
    size_t   vlen;

    memset(h, 0, sizeof(*h));
    in[head_len - 2] = '\0';        /* the head's lines, NUL-terminated */

    /* request line: METHOD SP TARGET SP HTTP/1.x */
    line = in;
    next = strstr(line, "\r\n");
    if (next) {
        *next = '\0';
        next += 2;
    }
    p = line;
    while (*p >= 'A' && *p <= 'Z') {
        p++;
    }
    if (p == line || *p != ' ') {
        *why = "malformed request line";
        return 400;
    }
    *p++ = '\0';
    rq->method = line;
    target = p;
    while (*p > ' ' && *p < 0x7f) {
        p++;
    }
    if (*p != ' ' || *target != '/') {
        *why = "malformed request target";
        return 400;
    }
    *p++ = '\0';
    version = p;
    if (strcmp(version, "HTTP/1.1") != 0 && strcmp(version, "HTTP/1.0") != 0) {
        *why = "unsupported protocol version";
        return strncmp(version, "HTTP/", 5) == 0 ? 505 : 400;
    }
    h->http10 = version[7] == '0';
    h->close = h->http10;

    /* fields: NAME ":" OWS VALUE OWS; no folding, no control characters */
    for (line = next; line && *line; line = next) {
        next = strstr(line, "\r\n");
        if (next) {
            *next = '\0';
            next += 2;
        }
        colon = strchr(line, ':');
        for (p = line; colon && p < colon && lb_admin_tchar((unsigned char) *p); p++) {
            /* the name */
        }
        if (colon == NULL || p != colon || p == line) {
            *why = "malformed header field";
            return 400;
        }
        *colon = '\0';
        v = colon + 1;
        while (*v == ' ' || *v == '\t') {
            v++;
        }
        vlen = strlen(v);
        while (vlen && (v[vlen - 1] == ' ' || v[vlen - 1] == '\t')) {
            v[--vlen] = '\0';
        }
        for (p = v; *p; p++) {
            if (((unsigned char) *p < 0x20 && *p != '\t') || *p == 0x7f) {
                *why = "control character in header field";
                return 400;
            }
        }
        if (strcasecmp(line, "Host") == 0) {
            h->host = v;
        } else if (strcasecmp(line, "Origin") == 0) {
            h->origin = v;
        } else if (strcasecmp(line, "Accept") == 0) {
            rq->text = strstr(v, "text/plain") != NULL && strstr(v, "json") == NULL;
        } else if (strcasecmp(line, "Authorization") == 0) {
            h->auth = v;
            h->auth_len = vlen;
        } else if (strcasecmp(line, "Connection") == 0) {
            if (strcasecmp(v, "close") == 0) {
                h->close = true;
            } else if (strcasecmp(v, "keep-alive") == 0 && h->http10) {
                h->close = false;
            }
        }
    }
    if (!h->http10 && h->host == NULL) {
        *why = "missing Host";
        return 400;
    }

    q = strchr(target, '?');
    if (q) {
        *q++ = '\0';
        if (!lb_admin_query(rq, q)) {
            *why = "malformed or too many query parameters";
            return 400;
        }
    }
    rq->path = target;
    return 0;
}
