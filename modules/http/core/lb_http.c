/*
 * lb_http.c: the http core module: the http listener's settings (SPEC
 * §3.3) and its wiring to the core. The parser (lb_http_parse.c),
 * variables (lb_http_var.c) and the connections (lb_http_conn.c) live
 * beside it.
 */
#include "lb_core.h"
#include "lb_http.h"
#include "lb_http_route.h"

static void *lb_http_core_create_conf(lb_conf_t *cf, unsigned ctx);
static int   lb_http_core_merge_conf(lb_conf_t *cf, unsigned ctx, void *parent, void *conf);
static int   lb_http_core_init_conf(lb_conf_t *cf);
static void  lb_http_core_exit_worker(lb_cycle_t *cycle);

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
    lb_setting_end
};

lb_module_t  lb_http_core_module = {
    "http_core", LB_MODULE_HTTP, lb_http_core_protocols, lb_http_core_settings,
    LB_CTX_LISTENER,
    lb_http_core_create_conf, lb_http_core_merge_conf, lb_http_core_init_conf,
    NULL, NULL, lb_http_core_exit_worker, NULL, 0
};

static void *
lb_http_core_create_conf(lb_conf_t *cf, unsigned ctx)
{
    return lb_pcalloc(cf->pool, sizeof(lb_http_core_conf_t));
}

static int
lb_http_core_merge_conf(lb_conf_t *cf, unsigned ctx, void *parent, void *conf)
{
    lb_http_core_conf_t  *hcf = conf;

    hcf->limits.max_header_size = (size_t) hcf->max_header_size;
    hcf->limits.max_headers = (size_t) hcf->max_headers;
    hcf->limits.max_uri = (size_t) hcf->max_uri;
    hcf->uri_flags = hcf->merge_slashes ? LB_HTTP_URI_MERGE_SLASHES : 0;
    hcf->listener = cf->listener;
    cf->listener->handler = lb_http_init_connection;
    return LB_OK;
}

/* The phase handlers and filters of every compiled-in http module, in
 * module order. Modules are fixed at build time, so the arrays are static
 * and filled once. */
#define LB_HTTP_MAX_HANDLERS  64

lb_http_phases_t  lb_http_phases;

static lb_http_phase_pt   lb_http_access_h[LB_HTTP_MAX_HANDLERS];
static lb_http_phase_pt   lb_http_rewrite_h[LB_HTTP_MAX_HANDLERS];
static lb_http_phase_pt   lb_http_content_h[LB_HTTP_MAX_HANDLERS];
static lb_http_filter_pt  lb_http_forward_f[LB_HTTP_MAX_HANDLERS];
static lb_http_filter_pt  lb_http_header_f[LB_HTTP_MAX_HANDLERS];

static int
lb_http_phases_init(lb_conf_t *cf)
{
    lb_http_phases_t        *p = &lb_http_phases;
    const lb_http_module_t  *m;
    size_t                   i;

    if (p->access) {
        return LB_OK;
    }
    p->access = lb_http_access_h;
    p->rewrite = lb_http_rewrite_h;
    p->content = lb_http_content_h;
    p->forward_filters = lb_http_forward_f;
    p->header_filters = lb_http_header_f;
    for (i = 0; i < lb_nmodules && i < LB_HTTP_MAX_HANDLERS; i++) {
        if (lb_all_modules[i]->type != LB_MODULE_HTTP || lb_all_modules[i]->ctx == NULL) {
            continue;
        }
        m = lb_all_modules[i]->ctx;
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
lb_http_core_exit_worker(lb_cycle_t *cycle)
{
    lb_http_conn_exit_worker(cycle);
}
