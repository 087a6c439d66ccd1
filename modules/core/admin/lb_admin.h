/*
 * lb_admin.h: the admin API's insides (SPEC §9), shared by its files:
 * lb_admin.c (the helper process that serves it: connections, HTTP/1.1,
 * who may ask), lb_admin_api.c (the endpoints), lb_admin_page.c (the
 * status page), lb_admin_ctl.c (the lbctl commands that call it). Bodies
 * are JSON with stable field names; docs/admin-api.md is the reference.
 */
#ifndef LB_ADMIN_H
#define LB_ADMIN_H

#include "lb_core.h"

#define LB_ADMIN_HEAD_MAX   16384       /* a request's head and body together */
#define LB_ADMIN_QUERY_MAX  16          /* parameters of one request */

/* A response under construction: grows as needed (the admin server is no
 * hot path; one upstream list may be large). */
typedef struct {
    char    *data;
    size_t   len;
    size_t   cap;
    bool     failed;        /* out of memory: the response is dropped */
} lb_admin_out_t;

void lb_admin_out_add(lb_admin_out_t *o, const char *s, size_t n);
void lb_admin_out_printf(lb_admin_out_t *o, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* A JSON string: the quotes and the escaped bytes of s. */
void lb_admin_out_json(lb_admin_out_t *o, const char *s);

typedef struct {
    const char  *name;
    const char  *value;     /* percent-decoded, NUL-terminated */
} lb_admin_param_t;

/* One request, as the endpoints see it. */
typedef struct {
    const char        *method;
    char              *path;            /* percent-decoded later, per segment */
    lb_admin_param_t   params[LB_ADMIN_QUERY_MAX];
    size_t             nparams;
    const char        *who;             /* "admin socket" or the client address */
    bool               text;            /* Accept: text/plain: a table for people
                                           (lbctl), not JSON */
    lb_cycle_t        *cycle;
    /* the answer */
    int                status;
    const char        *allow;           /* 405: the methods the path takes */
    const char        *content_type;    /* NULL: application/json */
    const char        *extra_headers;   /* more fields, each ending in CRLF;
                                           static or NULL */
    lb_admin_out_t     body;
} lb_admin_req_t;

/* The first value of parameter name, or NULL. */
const char *lb_admin_param(const lb_admin_req_t *rq, const char *name);

/* Answers rq: status and a JSON body {"error": "..."} (in text, the
 * message and a newline). */
void lb_admin_error(lb_admin_req_t *rq, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Decodes %XX (and + as a space, in a query) in place; false when an
 * escape is malformed or decodes to a NUL or a control character. */
bool lb_admin_unescape(char *s, bool plus_is_space);

/* What the server needs of a request head beyond rq. */
typedef struct {
    const char  *host;
    const char  *origin;
    const char  *auth;          /* Authorization's value */
    size_t       auth_len;
    bool         http10;
    bool         close;         /* no keep-alive after the answer */
} lb_admin_head_t;

/* Parses the head at in (head_len bytes, its blank line included; no NUL
 * in it), in place: rq's method, path (raw), params and text; h. 0, or
 * the status to refuse it with and *why. */
int lb_admin_parse_head(char *in, size_t head_len, lb_admin_req_t *rq, lb_admin_head_t *h,
                        const char **why);
/* The body's length by Content-Length (0 without), from the head at in;
 * 0, or 400 and *why (malformed, or Transfer-Encoding). */
int lb_admin_content_length(const char *in, size_t head_len, size_t *body, const char **why);

/* Serves rq (lb_admin_api.c): fills status and body. */
void lb_admin_dispatch(lb_admin_req_t *rq);

/* GET / (lb_admin_page.c): the status page, HTML. */
void lb_admin_page(lb_admin_req_t *rq);

extern lb_module_t  lb_core_admin_module;
extern const lb_ctl_command_t  lb_admin_commands[];

#endif
