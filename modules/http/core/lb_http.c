/*
 * lb_http.c: the http core module: the http listener's settings (SPEC
 * §3.3) and its wiring to the core. The parser (lb_http_parse.c),
 * variables (lb_http_var.c) and the connections (lb_http_conn.c) live
 * beside it.
 */
#include "lb_core.h"
#include "lb_http.h"

static void *lb_http_core_create_conf(lb_conf_t *cf, unsigned ctx);
static int   lb_http_core_merge_conf(lb_conf_t *cf, unsigned ctx, void *parent, void *conf);
static int   lb_http_core_init_conf(lb_conf_t *cf);
static void  lb_http_core_exit_worker(lb_cycle_t *cycle);
static void  lb_http_core_stop_worker(lb_cycle_t *cycle);
static void  lb_http_access_log_handler(lb_http_request_t *r);
static int   lb_http_set_error_pages(lb_conf_t *cf, const lb_setting_t *s,
                                     config_setting_t *v, void *conf);
static int   lb_http_set_cidrs(lb_conf_t *cf, const lb_setting_t *s, config_setting_t *v,
                               void *conf);

static const char *const  lb_http_core_protocols[] = { "http", "https", NULL };

#define LB_HTTP_WEEK  (7 * 86400000LL)

static const lb_setting_t  lb_http_core_settings[] = {
    { "client_header_timeout", LB_SET_DURATION, LB_CTX_LISTENER, "10s", 1, LB_HTTP_WEEK,
      offsetof(lb_http_core_conf_t, client_header_timeout), NULL, NULL, 0 },
    { "client_body_timeout", LB_SET_DURATION, LB_CTX_LISTENER, "30s", 1, LB_HTTP_WEEK,
      offsetof(lb_http_core_conf_t, client_body_timeout), NULL, NULL, 0 },
    { "keepalive_timeout", LB_SET_DURATION, LB_CTX_LISTENER, "60s", 1, LB_HTTP_WEEK,
      offsetof(lb_http_core_conf_t, keepalive_timeout), NULL, NULL, 0 },
    { "keepalive_requests", LB_SET_INT, LB_CTX_LISTENER, "1000", 1, 1LL << 40,
      offsetof(lb_http_core_conf_t, keepalive_requests), NULL, NULL, 0 },
    { "max_header_size", LB_SET_SIZE, LB_CTX_LISTENER, "16k", 1024, 1LL << 20,
      offsetof(lb_http_core_conf_t, max_header_size), NULL, NULL, 0 },
    { "max_headers", LB_SET_INT, LB_CTX_LISTENER, "100", 1, LB_HTTP_MAX_HEADERS,
      offsetof(lb_http_core_conf_t, max_headers), NULL, NULL, 0 },
    { "max_uri", LB_SET_SIZE, LB_CTX_LISTENER, "8k", 16, 1LL << 20,
      offsetof(lb_http_core_conf_t, max_uri), NULL, NULL, 0 },
    { "max_body_size", LB_SET_SIZE, LB_CTX_LISTENER, "64m", 0, 1LL << 50,
      offsetof(lb_http_core_conf_t, max_body_size), NULL, NULL, 0 },
    { "merge_slashes", LB_SET_BOOL, LB_CTX_LISTENER, "true", 0, 0,
      offsetof(lb_http_core_conf_t, merge_slashes), NULL, NULL, 0 },
    { "access_log", LB_SET_CUSTOM, LB_CTX_LISTENER, NULL, 0, 0,
      offsetof(lb_http_core_conf_t, access_log), NULL, lb_http_log_set, 0 },
    { "error_pages", LB_SET_CUSTOM, LB_CTX_LISTENER, NULL, 0, 0,
      offsetof(lb_http_core_conf_t, error_pages), NULL, lb_http_set_error_pages, 0 },

    { "error_pages", LB_SET_CUSTOM, LB_CTX_ROUTE, NULL, 0, 0,
      offsetof(lb_http_core_route_conf_t, error_pages), NULL, lb_http_set_error_pages, 0 },
    /* the listener's allow and deny are the core's (lb_listener_denies) */
    { "allow", LB_SET_CUSTOM, LB_CTX_ROUTE, NULL, 0, 0,
      offsetof(lb_http_core_route_conf_t, allow), NULL, lb_http_set_cidrs, 0 },
    { "deny", LB_SET_CUSTOM, LB_CTX_ROUTE, NULL, 0, 0,
      offsetof(lb_http_core_route_conf_t, deny), NULL, lb_http_set_cidrs, 0 },
    lb_setting_end
};

/* The access log is the core's handler of the log phase; the core adds
 * its variables. */
static const lb_http_module_t  lb_http_core_ctx = {
    NULL, NULL, NULL, NULL, NULL, lb_http_access_log_handler, lb_http_core_variables
};

lb_module_t  lb_http_core_module = {
    "http_core", LB_MODULE_HTTP, lb_http_core_protocols, lb_http_core_settings,
    LB_CTX_LISTENER | LB_CTX_ROUTE,
    lb_http_core_create_conf, lb_http_core_merge_conf, lb_http_core_init_conf,
    NULL, NULL, lb_http_core_exit_worker, &lb_http_core_ctx, 0, NULL, 0,
    lb_http_core_stop_worker
};

static void *
lb_http_core_create_conf(lb_conf_t *cf, unsigned ctx)
{
    if (ctx == LB_CTX_ROUTE) {
        return lb_pcalloc(cf->pool, sizeof(lb_http_core_route_conf_t));
    }
    return lb_pcalloc(cf->pool, sizeof(lb_http_core_conf_t));
}

static int
lb_http_core_merge_conf(lb_conf_t *cf, unsigned ctx, void *parent, void *conf)
{
    lb_http_core_conf_t        *hcf = conf, *lcf = parent;
    lb_http_core_route_conf_t  *rcf = conf;

    if (ctx == LB_CTX_ROUTE) {
        if (!rcf->error_pages.set && lcf) {
            rcf->error_pages = lcf->error_pages;
        }
        return LB_OK;
    }

    hcf->limits.max_header_size = (size_t) hcf->max_header_size;
    hcf->limits.max_headers = (size_t) hcf->max_headers;
    hcf->limits.max_uri = (size_t) hcf->max_uri;
    hcf->uri_flags = hcf->merge_slashes ? LB_HTTP_URI_MERGE_SLASHES : 0;
    hcf->listener = cf->listener;
    cf->listener->handler = lb_http_init_connection;
    cf->listener->answers_ip_cap = true;        /* 429, not a bare close */
    return LB_OK;
}

/* The phase handlers and filters of every compiled-in http module, in
 * module order. Modules are fixed at build time, so the arrays are static
 * and filled once. */
#define LB_HTTP_MAX_HANDLERS  64

lb_http_phases_t  lb_http_phases;

static lb_http_phase_pt   lb_http_find_h[LB_HTTP_MAX_HANDLERS];
static lb_http_phase_pt   lb_http_access_h[LB_HTTP_MAX_HANDLERS];
static lb_http_phase_pt   lb_http_rewrite_h[LB_HTTP_MAX_HANDLERS];
static lb_http_phase_pt   lb_http_content_h[LB_HTTP_MAX_HANDLERS];
static lb_http_filter_pt  lb_http_forward_f[LB_HTTP_MAX_HANDLERS];
static lb_http_header_filter_pt  lb_http_header_f[LB_HTTP_MAX_HANDLERS];
static lb_http_body_filter_pt    lb_http_body_f[LB_HTTP_MAX_HANDLERS];
static lb_http_log_pt     lb_http_log_h[LB_HTTP_MAX_HANDLERS];

static int
lb_http_phases_init(lb_conf_t *cf)
{
    lb_http_phases_t        *p = &lb_http_phases;
    const lb_http_module_t  *m;
    size_t                   i;

    if (p->access) {
        return LB_OK;
    }
    p->find_route = lb_http_find_h;
    p->access = lb_http_access_h;
    p->rewrite = lb_http_rewrite_h;
    p->content = lb_http_content_h;
    p->forward_filters = lb_http_forward_f;
    p->header_filters = lb_http_header_f;
    p->body_filters = lb_http_body_f;
    p->log = lb_http_log_h;
    for (i = 0; i < lb_nmodules && i < LB_HTTP_MAX_HANDLERS; i++) {
        if (lb_all_modules[i]->type != LB_MODULE_HTTP || lb_all_modules[i]->ctx == NULL) {
            continue;
        }
        m = lb_all_modules[i]->ctx;
        if (m->find_route) {
            p->find_route[p->nfind++] = m->find_route;
        }
        if (m->access) {
            p->access[p->naccess++] = m->access;
        }
        if (m->rewrite) {
            p->rewrite[p->nrewrite++] = m->rewrite;
        }
        if (m->content) {
            p->content[p->ncontent++] = m->content;
        }
        if (m->forward_filter) {
            p->forward_filters[p->nforward++] = m->forward_filter;
        }
        if (m->header_filter) {
            p->header_filters[p->nheader++] = m->header_filter;
        }
        if (m->body_filter) {
            p->body_filters[p->nbody++] = m->body_filter;
        }
        if (m->log) {
            p->log[p->nlog++] = m->log;
        }
    }
    return LB_OK;
}

/* Collects the modules' phase handlers. */
static int
lb_http_core_init_conf(lb_conf_t *cf)
{
    return lb_http_phases_init(cf);
}

static void
lb_http_core_stop_worker(lb_cycle_t *cycle)
{
    lb_http_conn_stop_worker(cycle);
}

static void
lb_http_core_exit_worker(lb_cycle_t *cycle)
{
    lb_http_conn_exit_worker(cycle);
}

/* The log phase: the listener's access_log line. */
static void
lb_http_access_log_handler(lb_http_request_t *r)
{
    lb_http_var_ctx_t  ctx;

    if (r->conf->access_log.file == NULL) {
        return;
    }
    lb_http_var_ctx(r, &ctx, r->status);
    lb_http_log_request(&r->conf->access_log, &ctx);
}

/* Files read at load ------------------------------------------------------ */

int
lb_http_conf_read_file(lb_conf_t *cf, config_setting_t *v, lb_str_t *out)
{
    const char  *file, *what = config_setting_name(v), *why;
    char        *path;

    if (lb_conf_get_string(cf, v, &file) != LB_OK) {
        return LB_ERROR;
    }
    path = lb_cycle_path(cf->pool, cf->cycle->prefix, file);
    if (path == NULL) {
        return lb_conf_error(cf, v, "out of memory");
    }
    if (lb_cycle_read_file(cf->pool, path, LB_HTTP_FILE_MAX, out, &why) != LB_OK) {
        if (why == lb_cycle_file_too_large) {
            return lb_conf_error(cf, v, "\"%s\" (%s) is larger than %d bytes: it is held "
                                 "in memory", path, what, LB_HTTP_FILE_MAX);
        }
        return lb_conf_error(cf, v, "cannot read \"%s\" (%s): %s", path, what, why);
    }
    return LB_OK;
}

/* error_pages = ( { status = [502, 504]; file = "conf/50x.html"; }, ... );
 * at listener and route level. Every file is read now, so a missing one
 * stops the load and serving one costs no system call. */
static int
lb_http_error_page_status(lb_conf_t *cf, config_setting_t *st, lb_http_error_pages_t *ep,
                          const lb_str_t *body)
{
    long long  n;
    size_t     i;

    if (config_setting_type(st) != CONFIG_TYPE_INT && config_setting_type(st) != CONFIG_TYPE_INT64) {
        return lb_conf_error(cf, st, "\"status\" of \"error_pages\" must be an integer or "
                             "an array of them, not %s", lb_conf_type_name(st));
    }
    n = config_setting_get_int64(st);
    if (n < 400 || n > 599) {
        return lb_conf_error(cf, st, "\"status\" of \"error_pages\" must be between 400 "
                             "and 599 (the errors lbd answers itself), got %lld", n);
    }
    for (i = 0; i < ep->npages; i++) {
        if (ep->pages[i].status == (int) n) {
            return lb_conf_error(cf, st, "status %lld has two error pages in %s", n,
                                 cf->block);
        }
    }
    ep->pages[ep->npages].status = (int) n;
    ep->pages[ep->npages].body = *body;
    ep->npages++;
    return LB_OK;
}

static int
lb_http_set_error_pages(lb_conf_t *cf, const lb_setting_t *s, config_setting_t *v, void *conf)
{
    static const char *const  names[] = { "status", "file", NULL };
    lb_http_error_pages_t    *ep = (lb_http_error_pages_t *) ((char *) conf + s->offset);
    config_setting_t         *g, *m, *st, *file;
    const char               *hint;
    lb_str_t                  body;
    size_t                    max = 0;
    int                       i, k, n, rc = LB_OK;

    if (config_setting_type(v) != CONFIG_TYPE_LIST) {
        return lb_conf_error(cf, v, "\"error_pages\" must be a list ( { status = 502; "
                             "file = \"...\"; }, ... ), not %s", lb_conf_type_name(v));
    }
    n = config_setting_length(v);
    for (i = 0; i < n; i++) {
        st = config_setting_get_member(config_setting_get_elem(v, (unsigned) i), "status");
        max += st == NULL ? 0 : config_setting_is_aggregate(st) ? (size_t) config_setting_length(st)
                                                                : 1;
    }
    ep->set = true;
    ep->npages = 0;
    ep->pages = lb_pcalloc(cf->pool, (max ? max : 1) * sizeof(lb_http_error_page_t));
    if (ep->pages == NULL) {
        return lb_conf_error(cf, v, "out of memory");
    }

    for (i = 0; i < n; i++) {
        g = config_setting_get_elem(v, (unsigned) i);
        if (config_setting_type(g) != CONFIG_TYPE_GROUP) {
            rc = lb_conf_error(cf, g, "each entry of \"error_pages\" must be a group "
                               "{ status = 502; file = \"...\"; }, not %s",
                               lb_conf_type_name(g));
            continue;
        }
        for (k = 0; k < config_setting_length(g); k++) {
            m = config_setting_get_elem(g, (unsigned) k);
            if (strcmp(config_setting_name(m), "status") == 0
                || strcmp(config_setting_name(m), "file") == 0)
            {
                continue;
            }
            hint = lb_did_you_mean(config_setting_name(m), names);
            rc = lb_conf_error(cf, m, "unknown setting \"%s\" in \"error_pages\" of %s%s%s%s",
                               config_setting_name(m), cf->block,
                               hint ? " (did you mean \"" : "", hint ? hint : "",
                               hint ? "\"?)" : "");
        }
        st = config_setting_get_member(g, "status");
        file = config_setting_get_member(g, "file");
        if (st == NULL || file == NULL) {
            rc = lb_conf_error(cf, g, "missing required setting \"%s\" in \"error_pages\" "
                               "of %s", st ? "file" : "status", cf->block);
            continue;
        }
        if (lb_http_conf_read_file(cf, file, &body) != LB_OK) {
            rc = LB_ERROR;
            continue;
        }
        if (!config_setting_is_aggregate(st)) {
            rc = lb_http_error_page_status(cf, st, ep, &body) == LB_OK ? rc : LB_ERROR;
            continue;
        }
        if (config_setting_length(st) == 0) {
            rc = lb_conf_error(cf, st, "\"status\" of \"error_pages\" must not be empty");
        }
        for (k = 0; k < config_setting_length(st); k++) {
            if (lb_http_error_page_status(cf, config_setting_get_elem(st, (unsigned) k), ep,
                                          &body) != LB_OK)
            {
                rc = LB_ERROR;
            }
        }
    }
    return rc;
}

/* A route's allow and deny: a CIDR or an array of them, as the listener's. */
static int
lb_http_push_cidr(lb_conf_t *cf, config_setting_t *elt, const char *str, void *arg)
{
    char  err[128];

    if (lb_cidr_list_add(arg, cf->pool, str, err, sizeof(err)) != LB_OK) {
        return lb_conf_error(cf, elt, "invalid address block \"%s\": %s", str, err);
    }
    return LB_OK;
}

static int
lb_http_set_cidrs(lb_conf_t *cf, const lb_setting_t *s, config_setting_t *v, void *conf)
{
    return lb_conf_each_string(cf, v, lb_http_push_cidr, (char *) conf + s->offset);
}
