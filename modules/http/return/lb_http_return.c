/*
 * lb_http_return.c: the return and redirect actions of routes (SPEC
 * §3.4). The route module parses them; this module serves them, through
 * the output path like any other response (so response_headers, gzip and
 * the log see them as they see a proxied one).
 *
 * A body is the route's `body` (variables evaluated per request, into the
 * request's memory when it fits, else a malloc held for the request) or
 * its `body_file` (read at load, sent from where it is).
 */
#include "lb_core.h"
#include "lb_http.h"
#include "lb_http_route.h"

static int  lb_http_return_init_conf(lb_conf_t *cf);
static int  lb_http_return_handler(lb_http_request_t *r);
static void lb_http_return_log(lb_http_request_t *r);

static const char *const  lb_http_return_protocols[] = { "http", "https", NULL };

static const lb_http_module_t  lb_http_return_ctx = {
    .log = lb_http_return_log,
};

lb_module_t  lb_http_return_module = {
    "http_return", LB_MODULE_HTTP, lb_http_return_protocols, NULL, 0,
    NULL, NULL, lb_http_return_init_conf,
    NULL, NULL, NULL, &lb_http_return_ctx, 0, NULL, 0, NULL
};

/* Installs the handler on every return and redirect route. */
static int
lb_http_return_init_conf(lb_conf_t *cf)
{
    const lb_http_routes_t  *rs;
    lb_listener_t           *ls;
    lb_http_route_t         *route;
    size_t                   i, k;

    for (i = 0; i < cf->cycle->listeners.nelts; i++) {
        ls = lb_array_at(&cf->cycle->listeners, lb_listener_t *, i);
        rs = lb_http_route_list(ls);
        for (k = 0; rs && k < rs->nroutes; k++) {
            route = rs->routes[k];
            if (route->action == LB_HTTP_ROUTE_RETURN
                || route->action == LB_HTTP_ROUTE_REDIRECT)
            {
                route->handler = lb_http_return_handler;
            }
        }
    }
    return LB_OK;
}

/* A body too large for the request's arena: malloc'ed, freed by the log
 * phase, which runs once at the end of every request. */
static void
lb_http_return_log(lb_http_request_t *r)
{
    char  *big = lb_http_request_ctx(r, lb_http_return_module);

    if (big) {
        lb_http_request_set_ctx(r, lb_http_return_module, NULL);
        free(big);
    }
}

/* The value of cv for r in memory that lives as long as the request. */
static char *
lb_http_return_eval(lb_http_request_t *r, const lb_http_complex_t *cv,
                    const lb_http_var_ctx_t *ctx, size_t *len)
{
    char  *p;

    *len = lb_http_complex_eval(cv, ctx, NULL, 0);
    p = lb_http_request_alloc(r, *len + 1);
    if (p == NULL) {
        p = malloc(*len + 1);
        if (p == NULL || lb_http_request_ctx(r, lb_http_return_module) != NULL) {
            free(p);
            return NULL;
        }
        lb_http_request_set_ctx(r, lb_http_return_module, p);
    }
    lb_http_complex_eval(cv, ctx, p, *len);
    return p;
}

static int
lb_http_return_handler(lb_http_request_t *r)
{
    const lb_http_route_t  *route = r->route;
    lb_http_var_ctx_t       ctx;
    const char             *body, *type, *loc;
    size_t                  len = 0, loc_len;
    int                     status = route->status;

    lb_http_var_ctx(r, &ctx, status);
    lb_http_out_start(r, status);
    if (route->action == LB_HTTP_ROUTE_REDIRECT) {
        loc = lb_http_return_eval(r, route->location, &ctx, &loc_len);
        if (loc == NULL) {
            return 500;
        }
        body = lb_http_error_text(status, &len);
        type = "text/plain";
        /* after the length, as lbd's responses have always had it */
        if (lb_http_response_fields(r, status, type, len) != LB_OK
            || lb_http_out_add(r, "Location", 8, loc, loc_len) != LB_OK)
        {
            return 500;
        }
    } else {
        type = route->content_type ? route->content_type : "text/plain";
        if (route->body_file.data) {
            body = route->body_file.data;
            len = route->body_file.len;
        } else if (route->body) {
            body = lb_http_return_eval(r, route->body, &ctx, &len);
            if (body == NULL) {
                return 500;
            }
        } else {
            body = "";
        }
        if (lb_http_response_fields(r, status, type, len) != LB_OK) {
            return 500;
        }
    }
    if (lb_http_send_prepared(r, body, len) != LB_OK) {
        return 500;
    }
    return LB_OK;
}
