/*
 * lb_http_return.c: the `return` and `redirect` actions of routes (SPEC
 * §3.4). The module owns both settings: it parses them, installs its
 * handler on the routes that have one, and answers through the output
 * path like any other response (so response_headers, gzip and the log
 * see them as they see a proxied one).
 *
 * A body is the route's `body` (variables evaluated per request, into the
 * request's arena when it fits, else a malloc freed by the log phase) or
 * its `body_file` (read at load, sent from where it is).
 */
#include "lb_core.h"
#include "lb_http.h"
#include "lb_http_route.h"
#include "lb_http_return.h"

static void *lb_http_return_create_conf(lb_conf_t *cf, unsigned ctx);
static int   lb_http_return_merge_conf(lb_conf_t *cf, unsigned ctx, void *parent, void *conf);
static int   lb_http_return_set(lb_conf_t *cf, const lb_setting_t *s, config_setting_t *v,
                                void *conf);
static int   lb_http_return_handler(lb_http_request_t *r);
static void  lb_http_return_log(lb_http_request_t *r);

static const char *const  lb_http_return_protocols[] = { "http", "https", NULL };

static const lb_setting_t  lb_http_return_settings[] = {
    { "return", LB_SET_CUSTOM, LB_CTX_ROUTE, NULL, 0, 0, 0, NULL, lb_http_return_set,
      LB_SETTING_ACTION },
    { "redirect", LB_SET_CUSTOM, LB_CTX_ROUTE, NULL, 0, 0, 0, NULL, lb_http_return_set,
      LB_SETTING_ACTION },
    lb_setting_end
};

static const lb_http_module_t  lb_http_return_ctx = {
    .log = lb_http_return_log,
};

lb_module_t  lb_http_return_module = {
    "http_return", LB_MODULE_HTTP, lb_http_return_protocols, lb_http_return_settings,
    LB_CTX_ROUTE,
    lb_http_return_create_conf, lb_http_return_merge_conf, NULL,
    NULL, NULL, NULL, &lb_http_return_ctx, 0, NULL, 0, NULL
};

/* Configuration ------------------------------------------------------------- */

static void *
lb_http_return_create_conf(lb_conf_t *cf, unsigned ctx)
{
    lb_http_return_conf_t  *rcf = lb_pcalloc(cf->pool, sizeof(*rcf));

    if (rcf) {
        rcf->content_type = "text/plain";
    }
    return rcf;
}

/* Checks that group v (the value of `return` or `redirect`) is a group
 * whose members are all among names; reports each stranger. */
static int
lb_http_return_check_group(lb_conf_t *cf, config_setting_t *v, const char *const *names)
{
    config_setting_t  *m;
    const char        *const *p;
    char              *where;
    int                i, n, rc = LB_OK;

    if (config_setting_type(v) != CONFIG_TYPE_GROUP) {
        return lb_conf_error(cf, v, "\"%s\" must be a group { %s = ...; ... }, not %s",
                             config_setting_name(v), names[0], lb_conf_type_name(v));
    }
    n = config_setting_length(v);
    for (i = 0; i < n; i++) {
        m = config_setting_get_elem(v, (unsigned) i);
        for (p = names; *p && strcmp(*p, config_setting_name(m)) != 0; p++) { /* search */ }
        if (*p) {
            continue;
        }
        where = lb_psprintf(cf->pool, "\"%s\" of %s", config_setting_name(v), cf->block);
        rc = lb_conf_unknown_name(cf, m, where ? where : cf->block, names);
    }
    return rc;
}

/* The status member of a return or redirect group; *status keeps its
 * default when there is none. */
static int
lb_http_return_status(lb_conf_t *cf, config_setting_t *v, bool redirect, int *status)
{
    config_setting_t  *st = config_setting_get_member(v, "status");
    long long          n;

    if (st == NULL) {
        if (redirect) {
            return LB_OK;
        }
        return lb_conf_error(cf, v, "missing required setting \"status\" in \"return\" of %s",
                             cf->block);
    }
    if (config_setting_type(st) != CONFIG_TYPE_INT && config_setting_type(st) != CONFIG_TYPE_INT64) {
        return lb_conf_error(cf, st, "\"status\" must be an integer, not %s",
                             lb_conf_type_name(st));
    }
    n = config_setting_get_int64(st);
    if (redirect && n != 301 && n != 302 && n != 303 && n != 307 && n != 308) {
        return lb_conf_error(cf, st, "\"status\" of \"redirect\" must be 301, 302, 303, 307 "
                             "or 308, got %lld", n);
    }
    if (!redirect && (n < 100 || n > 599)) {
        return lb_conf_error(cf, st, "\"status\" must be between 100 and 599, got %lld", n);
    }
    *status = (int) n;
    return LB_OK;
}

static int
lb_http_return_set_return(lb_conf_t *cf, config_setting_t *v, lb_http_return_conf_t *rcf)
{
    static const char *const  names[] = { "status", "body", "body_file", "content_type", NULL };
    config_setting_t         *m, *file;
    const char               *type;
    int                       rc;

    if (lb_http_return_check_group(cf, v, names) != LB_OK) {
        return LB_ERROR;
    }
    rc = lb_http_return_status(cf, v, false, &rcf->status);
    m = config_setting_get_member(v, "body");
    file = config_setting_get_member(v, "body_file");
    if (m && file) {
        rc = lb_conf_error(cf, file, "\"return\" of %s has both \"body\" and \"body_file\": "
                           "give one", cf->block);
    } else if (m && (rcf->body = lb_http_route_complex(cf, m, "body")) == NULL) {
        rc = LB_ERROR;
    } else if (file && lb_http_conf_read_file(cf, file, &rcf->body_file) != LB_OK) {
        rc = LB_ERROR;
    }
    m = config_setting_get_member(v, "content_type");
    if (m) {
        if (lb_conf_get_string(cf, m, &type) != LB_OK) {
            return LB_ERROR;
        }
        rcf->content_type = lb_pstrdup(cf->pool, type);
        if (rcf->content_type == NULL) {
            return lb_conf_error(cf, m, "out of memory");
        }
    }
    return rc;
}

static int
lb_http_return_set_redirect(lb_conf_t *cf, config_setting_t *v, lb_http_return_conf_t *rcf)
{
    static const char *const  names[] = { "location", "status", NULL };
    config_setting_t         *m;
    int                       rc;

    rcf->redirect = true;
    rcf->status = 302;
    if (lb_http_return_check_group(cf, v, names) != LB_OK) {
        return LB_ERROR;
    }
    rc = lb_http_return_status(cf, v, true, &rcf->status);
    m = config_setting_get_member(v, "location");
    if (m == NULL) {
        return lb_conf_error(cf, v, "missing required setting \"location\" in \"redirect\" "
                             "of %s", cf->block);
    }
    rcf->location = lb_http_route_complex(cf, m, "location");
    if (rcf->location == NULL) {
        return LB_ERROR;
    }
    rcf->location_text = lb_pstrdup(cf->pool, config_setting_get_string(m));
    return rc;
}

static int
lb_http_return_set(lb_conf_t *cf, const lb_setting_t *s, config_setting_t *v, void *conf)
{
    return strcmp(s->name, "redirect") == 0 ? lb_http_return_set_redirect(cf, v, conf)
                                            : lb_http_return_set_return(cf, v, conf);
}

/* lbctl route: what the route answers to the request in ctx. */
static void
lb_http_return_explain(const lb_http_route_t *route, const lb_http_var_ctx_t *ctx)
{
    const lb_http_return_conf_t  *rcf = lb_get_conf(route->confs, lb_http_return_module);
    char                          out[2048];
    size_t                        n;

    if (rcf->redirect) {
        n = lb_http_complex_eval(rcf->location, ctx, out, sizeof(out) - 1);
        printf("action: redirect %d to %.*s\n", rcf->status, (int) lb_min(n, sizeof(out) - 1),
               out);
        return;
    }
    n = rcf->body ? lb_http_complex_eval(rcf->body, ctx, NULL, 0) : rcf->body_file.len;
    printf("action: return %d (%s, %zu bytes of body)\n", rcf->status, rcf->content_type, n);
}

/* A route with `return` or `redirect` is served here. */
static int
lb_http_return_merge_conf(lb_conf_t *cf, unsigned ctx, void *parent, void *conf)
{
    lb_http_return_conf_t  *rcf = conf;
    const char             *text;

    if (rcf->status == 0) {
        return LB_OK;
    }
    text = rcf->redirect
           ? lb_psprintf(cf->pool, "redirect %d \"%s\"", rcf->status,
                         rcf->location_text ? rcf->location_text : "")
           : lb_psprintf(cf->pool, "return %d", rcf->status);
    if (text == NULL) {
        return lb_conf_error(cf, cf->group, "out of memory");
    }
    lb_http_route_set_action(cf, rcf->redirect ? "redirect" : "return",
                             lb_http_return_handler, text, NULL, lb_http_return_explain);
    return LB_OK;
}

/* Requests ------------------------------------------------------------------- */

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
    const lb_http_return_conf_t  *rcf = lb_get_conf(r->route->confs, lb_http_return_module);
    lb_http_var_ctx_t             ctx;
    const char                   *body, *loc;
    size_t                        len = 0, loc_len;

    lb_http_var_ctx(r, &ctx, rcf->status);
    lb_http_out_start(r, rcf->status);
    if (rcf->redirect) {
        loc = lb_http_return_eval(r, rcf->location, &ctx, &loc_len);
        body = lb_http_error_text(rcf->status, &len);
        /* after the length, as lbd's responses have always had it */
        if (loc == NULL || lb_http_response_fields(r, rcf->status, "text/plain", len) != LB_OK
            || lb_http_out_add(r, "Location", 8, loc, loc_len) != LB_OK)
        {
            return 500;
        }
    } else {
        if (rcf->body_file.data) {
            body = rcf->body_file.data;
            len = rcf->body_file.len;
        } else if (rcf->body) {
            body = lb_http_return_eval(r, rcf->body, &ctx, &len);
            if (body == NULL) {
                return 500;
            }
        } else {
            body = "";
        }
        if (lb_http_response_fields(r, rcf->status, rcf->content_type, len) != LB_OK) {
            return 500;
        }
    }
    return lb_http_send_prepared(r, body, len) == LB_OK ? LB_OK : 500;
}
