/*
 * lb_http_metrics.c: the http listeners' metrics (SPEC §7): requests by
 * listener, route and status class, and a latency histogram, counted on
 * the log phase — so every request lbd read a request line of counts once,
 * answered or not — into the shared metrics zone (core/lb_metrics.h),
 * which the admin API renders at GET /metrics. A request that ended before
 * a route was chosen (a 400, a 404) counts under route="". The route label
 * is the route's number in its listener, as `lbctl route` prints it.
 *
 * Per request: three to five relaxed atomic adds into this worker's own
 * column; nothing else.
 */
#include "lb_core.h"
#include "lb_http.h"
#include "lb_http_route.h"

#define LB_METRICS_CLASSES  6       /* 1xx .. 5xx, and "" for no status */

/* A (listener, route)'s series. */
typedef struct {
    uint32_t   requests[LB_METRICS_CLASSES];
    uint32_t   duration;
} lb_http_metrics_conf_t;

static const uint64_t  lb_http_metrics_bounds[] = {
    5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000       /* ms */
};

static const lb_metric_family_t  lb_http_requests = {
    "lbd_http_requests_total", "HTTP requests by listener, route and status class "
    "(code=\"\" when the request ended with no response).", LB_METRIC_COUNTER, NULL, 0, 0
};

static const lb_metric_family_t  lb_http_duration = {
    "lbd_http_request_duration_seconds", "Time from a request's first byte to its last "
    "byte sent, by listener and route (millisecond resolution).", LB_METRIC_HISTOGRAM,
    lb_http_metrics_bounds, sizeof(lb_http_metrics_bounds) / sizeof(uint64_t), 1e-3
};

static const char *const  lb_http_metrics_protocols[] = { "http", "https", NULL };

static void *lb_http_metrics_create_conf(lb_conf_t *cf, unsigned ctx);
static int   lb_http_metrics_init_conf(lb_conf_t *cf);
static void  lb_http_metrics_log(lb_http_request_t *r);

static const lb_http_module_t  lb_http_metrics_ctx = {
    .log = lb_http_metrics_log,
};

lb_module_t  lb_http_metrics_module = {
    .name = "http_metrics",
    .type = LB_MODULE_HTTP,
    .protocols = lb_http_metrics_protocols,
    .conf_contexts = LB_CTX_LISTENER | LB_CTX_ROUTE,
    .create_conf = lb_http_metrics_create_conf,
    .init_conf = lb_http_metrics_init_conf,
    .ctx = &lb_http_metrics_ctx,
};

static void *
lb_http_metrics_create_conf(lb_conf_t *cf, unsigned ctx)
{
    return lb_pcalloc(cf->pool, sizeof(lb_http_metrics_conf_t));
}

static int
lb_http_metrics_declare(lb_conf_t *cf, lb_http_metrics_conf_t *mcf, const char *listener,
                        const char *route)
{
    static const char *const  codes[LB_METRICS_CLASSES] = {
        "", "1xx", "2xx", "3xx", "4xx", "5xx"
    };
    char                      labels[512];

    snprintf(labels, sizeof(labels), "listener=\"%s\",route=\"%s\"", listener, route);
    if (lb_metric_declare_each(cf, mcf->requests, &lb_http_requests, labels, "code", codes,
                               LB_METRICS_CLASSES) != LB_OK)
    {
        return LB_ERROR;
    }
    return lb_metric_declare(cf, &mcf->duration, &lb_http_duration, labels);
}

/* Once every listener and route exists: their series. */
static int
lb_http_metrics_init_conf(lb_conf_t *cf)
{
    const lb_http_routes_t  *rs;
    lb_listener_t           *ls;
    char                     name[256], route[16];
    size_t                   i, k;

    for (i = 0; i < cf->cycle->listeners.nelts; i++) {
        ls = lb_array_at(&cf->cycle->listeners, lb_listener_t *, i);
        rs = lb_http_route_list(ls);
        if (rs == NULL || ls->confs == NULL) {
            continue;
        }
        lb_metric_label(name, sizeof(name), ls->name);
        if (lb_http_metrics_declare(cf, lb_get_conf(ls->confs, lb_http_metrics_module), name,
                                    "") != LB_OK)
        {
            return LB_ERROR;
        }
        for (k = 0; k < rs->nroutes; k++) {
            snprintf(route, sizeof(route), "%u", rs->routes[k]->index);
            if (lb_http_metrics_declare(cf, lb_get_conf(rs->routes[k]->confs,
                                                        lb_http_metrics_module),
                                        name, route) != LB_OK)
            {
                return LB_ERROR;
            }
        }
    }
    return LB_OK;
}

static void
lb_http_metrics_log(lb_http_request_t *r)
{
    const lb_http_metrics_conf_t  *mcf;
    lb_listener_t                 *ls = r->c->listener;
    unsigned                       class = (unsigned) r->status / 100;

    mcf = lb_get_conf(r->route ? r->route->confs : ls->confs, lb_http_metrics_module);
    lb_metric_add(mcf->requests[class < LB_METRICS_CLASSES ? class : 0], 1);
    lb_metric_observe(mcf->duration, &lb_http_duration,
                      (uint64_t) (lb_current_msec - r->start_msec));
    lb_metric_add(ls->m_sent, r->bytes_sent);
}
