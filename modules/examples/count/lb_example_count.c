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
static int   lb_count_header_filter(lb_http_request_t *r);
static void  lb_count_log(lb_http_request_t *r);

static const char *const  lb_count_protocols[] = { "http", "https", NULL };

static const lb_setting_t  lb_count_settings[] = {
    { "count_header", LB_SET_STR, LB_CTX_LISTENER, "", 0, 0,
      offsetof(lb_count_conf_t, count_header), NULL, NULL, 0 },
    lb_setting_end
};

/* The phases and filters it joins: a header filter and the log phase. */
static const lb_http_module_t  lb_count_ctx = {
    .header_filter = lb_count_header_filter,
    .log = lb_count_log,
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

/* The value is made in the request's arena: a field's strings must live
 * until the head is written. */
static int
lb_count_header_filter(lb_http_request_t *r)
{
    lb_count_conf_t  *conf = lb_get_conf(r->conf->listener->confs, lb_example_count_module);
    char             *n;

    if (conf->count_header[0] == '\0') {
        return LB_OK;
    }
    n = lb_http_request_alloc(r, 24);
    if (n == NULL) {
        return LB_ERROR;
    }
    return lb_http_out_add(r, conf->count_header, strlen(conf->count_header), n,
                           (size_t) snprintf(n, 24, "%llu",
                                             (unsigned long long) lb_count_logged));
}

/* Once per finished request, answered or not: the response is over. */
static void
lb_count_log(lb_http_request_t *r)
{
    lb_count_logged++;
}
