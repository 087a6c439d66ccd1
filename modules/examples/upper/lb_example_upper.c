/*
 * lb_example_upper.c: an example http body filter for docs/modules.md. On
 * a listener or route with `upper = true;` it upper-cases (ASCII) the body
 * of every text/plain response, proxied or lbd's own. A header filter
 * decides per response; the body filter makes the bytes. Same length in,
 * same length out, so Content-Length stays true. Public interface only.
 */
#include "lb_core.h"
#include "lb_http.h"
#include "lb_http_route.h"

/* Output is made in a buffer of the request's own, not a static one of
 * the worker: when the client is slow the bytes made but not yet taken
 * are held across calls while the worker serves other requests. It comes
 * from the request's arena, which the filters of a request share
 * (LB_HTTP_ARENA_SIZE in all), hence a modest size. */
#define LB_UPPER_BUF  1024

typedef struct {
    int  upper;                 /* bool; -1: not set (a route: its listener's) */
} lb_upper_conf_t;

typedef struct {
    lb_chain_t  out;            /* made, not yet taken by the next filter */
    char        buf[LB_UPPER_BUF];
} lb_upper_ctx_t;

static void *lb_upper_create_conf(lb_conf_t *cf, unsigned ctx);
static int   lb_upper_merge_conf(lb_conf_t *cf, unsigned ctx, void *parent, void *conf);
static int   lb_upper_header_filter(lb_http_request_t *r);
static int   lb_upper_body_filter(lb_http_request_t *r, lb_chain_t *in, bool last);

static const char *const  lb_upper_protocols[] = { "http", "https", NULL };

static const lb_setting_t  lb_upper_settings[] = {
    { "upper", LB_SET_BOOL, LB_CTX_LISTENER | LB_CTX_ROUTE, NULL, 0, 0,
      offsetof(lb_upper_conf_t, upper), NULL, NULL, 0 },
    lb_setting_end
};

static const lb_http_module_t  lb_upper_ctx = {
    .header_filter = lb_upper_header_filter,
    .body_filter = lb_upper_body_filter,
};

lb_module_t  lb_example_upper_module = {
    "example_upper", LB_MODULE_HTTP, lb_upper_protocols, lb_upper_settings,
    LB_CTX_LISTENER | LB_CTX_ROUTE,
    lb_upper_create_conf, lb_upper_merge_conf, NULL,
    NULL, NULL, NULL, &lb_upper_ctx, 0
};

static void *
lb_upper_create_conf(lb_conf_t *cf, unsigned ctx)
{
    lb_upper_conf_t  *conf = lb_pcalloc(cf->pool, sizeof(lb_upper_conf_t));

    if (conf) {
        conf->upper = -1;
    }
    return conf;
}

/* A route that does not say follows its listener. */
static int
lb_upper_merge_conf(lb_conf_t *cf, unsigned ctx, void *parent, void *conf)
{
    lb_upper_conf_t  *ucf = conf, *lcf = parent;

    if (ctx == LB_CTX_ROUTE && ucf->upper == -1 && lcf) {
        ucf->upper = lcf->upper;
    }
    return LB_OK;
}

/* Whether this response's body is for the filter: the route (or, before
 * one is chosen, the listener) asks, and the body is text/plain. The
 * filter's state is set or cleared each time: an error may replace a
 * response whose head the filters already saw. */
static int
lb_upper_header_filter(lb_http_request_t *r)
{
    lb_upper_conf_t   *conf;
    lb_upper_ctx_t    *u = lb_http_request_ctx(r, lb_example_upper_module);
    lb_http_header_t  *ct;
    int                st = r->out.status;

    lb_http_request_set_ctx(r, lb_example_upper_module, NULL);
    conf = lb_get_conf(r->route ? r->route->confs : r->conf->listener->confs,
                       lb_example_upper_module);
    ct = lb_http_out_find(r, "Content-Type", 12);
    if (conf->upper != 1 || r->out.upgrade || r->head_method
        || st < 200 || st == 204 || st == 304
        || ct == NULL || ct->value.len < 10
        || strncasecmp(ct->value.data, "text/plain", 10) != 0
        || (ct->value.len > 10 && ct->value.data[10] != ';' && ct->value.data[10] != ' '
            && ct->value.data[10] != '\t'))
    {
        return LB_OK;
    }
    if (u == NULL && (u = (lb_upper_ctx_t *) lb_http_request_alloc(r, sizeof(*u))) == NULL) {
        lb_log_error(0, "*%llu client %s: example_upper: no room left in the request's "
                     "arena", (unsigned long long) r->c->id, r->c->peer_text);
        return LB_ERROR;
    }
    lb_chain_link_set(&u->out, u->buf, 0);
    lb_http_request_set_ctx(r, lb_example_upper_module, u);
    return LB_OK;
}

/* Takes input only as far as it has made output, and makes no more while
 * the next filter has not taken what it made; trailer lines go on as they
 * are, and `last` only once everything is made and passed. */
static int
lb_upper_body_filter(lb_http_request_t *r, lb_chain_t *in, bool last)
{
    lb_upper_ctx_t  *u = lb_http_request_ctx(r, lb_example_upper_module);
    lb_chain_t      *cl;
    size_t           n, i;
    char             ch;
    int              rc;

    if (u == NULL) {
        return lb_http_next_body_filter(r, in, last);
    }
    for ( ;; ) {
        if (u->out.pos < u->out.last) {
            rc = lb_http_next_body_filter(r, &u->out, false);
            if (rc != LB_OK || u->out.pos < u->out.last) {
                return rc == LB_OK ? LB_AGAIN : rc;     /* held below, or here */
            }
        }
        cl = lb_chain_first(in);
        if (cl == NULL || cl->trailer) {
            break;
        }
        n = lb_min(lb_chain_link_len(cl), sizeof(u->buf));
        for (i = 0; i < n; i++) {
            ch = cl->pos[i];
            u->buf[i] = (ch >= 'a' && ch <= 'z') ? (char) (ch - 'a' + 'A') : ch;
        }
        cl->pos += n;
        lb_chain_link_set(&u->out, u->buf, n);
    }
    /* the trailer lines (none: NULL) and the end, when it is */
    return lb_http_next_body_filter(r, cl, last);
}
