/*
 * lb_example_count.c: an example http module for docs/modules.md. It joins
 * the log phase to count the requests this worker has finished, and a
 * header filter that shows the count so far in a response field named by
 * the listener's count_header. It uses only the public module interface
 * (lb_core.h) and the http core's (lb_http.h).
 */
#include "lb_core.h"
#include "lb_http.h"

typedef struct {
    char  *count_header;        /* "" (the default): no field */
} lb_count_conf_t;

static void *lb_count_create_conf(lb_conf_t *cf, unsigned ctx);
static int   lb_count_header_filter(lb_http_conn_t *hc, lb_http_head_t *h,
                                    const lb_http_var_ctx_t *ctx);
static void  lb_count_log(lb_http_conn_t *hc);

static const char *const  lb_count_protocols[] = { "http", "https", NULL };

static const lb_setting_t  lb_count_settings[] = {
    { "count_header", LB_SET_STR, LB_CTX_LISTENER, "", 0, 0,
      offsetof(lb_count_conf_t, count_header), NULL, NULL, 0 },
    lb_setting_end
};

/* The phases and filters it joins: a header filter and the log phase. */
static const lb_http_module_t  lb_count_ctx = {
    NULL, NULL, NULL, NULL, lb_count_header_filter, lb_count_log
};

lb_module_t  lb_example_count_module = {
    "example_count", LB_MODULE_HTTP, lb_count_protocols, lb_count_settings,
    LB_CTX_LISTENER,
    lb_count_create_conf, NULL, NULL,
    NULL, NULL, NULL, &lb_count_ctx, 0
};

/* Per worker: the requests the log phase has seen. */
static uint64_t  lb_count_logged;

static void *
lb_count_create_conf(lb_conf_t *cf, unsigned ctx)
{
    return lb_pcalloc(cf->pool, sizeof(lb_count_conf_t));
}

static int
lb_count_header_filter(lb_http_conn_t *hc, lb_http_head_t *h, const lb_http_var_ctx_t *ctx)
{
    lb_count_conf_t  *conf = lb_get_conf(hc->conf->listener->confs, lb_example_count_module);
    char              n[24];

    if (conf->count_header[0]) {
        lb_http_head_add(h, conf->count_header, strlen(conf->count_header), n,
                         (size_t) snprintf(n, sizeof(n), "%llu",
                                           (unsigned long long) lb_count_logged));
    }
    return LB_OK;
}

/* Once per finished request, answered or not: the response is over. */
static void
lb_count_log(lb_http_conn_t *hc)
{
    lb_count_logged++;
}
