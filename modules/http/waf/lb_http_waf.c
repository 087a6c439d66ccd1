/*
 * lb_http_waf.c: the `waf` group of http and https listeners and routes
 * (SPEC §3.8), an access-phase check of every request head.
 *
 *   waf = { rules = "basic"; mode = "block"; status = 403;
 *           deny_path_regex = ["\\.\\./"]; disable = ["sqli-5"]; };
 *
 * A route's group merges with its listener's: what the route sets
 * replaces, its `disable` list adds to the listener's, and a route without
 * a group follows the listener. The checks, in order: the path
 * (deny_path_regex against the normalised path, then the rules), each
 * query argument, each cookie, then the User-Agent, Referer and
 * X-Forwarded-Host fields; the first hit decides. `block` answers
 * `status` and closes; `detect` lets the request go on. Either way the hit
 * is one log line (warn, with the rule, the field and the client) and a
 * count in lbd_http_waf_hits_total{listener,route,rule,action}.
 *
 * The engine (normalisation, rules, the combined scan) is in
 * lb_waf_engine.c; docs/waf.md lists the rules.
 */
#include "lb_core.h"
#include "lb_http.h"
#include "lb_http_route.h"
#include "lb_regex.h"
#include "lb_waf_engine.h"
#include "lb_http_parse.h"

enum { LB_WAF_BLOCK = 0, LB_WAF_DETECT };

typedef struct {
    /* as written in this block; -1 (or NULL) when not */
    int                  enabled;
    int                  mode;
    int64_t              status;
    const char          *rules;
    lb_array_t           deny;          /* of lb_regex_t *, when deny_set */
    bool                 deny_set;
    lb_array_t           disable;       /* of const char * */
    bool                 written;       /* the block has a waf group */

    /* what applies here, after the merge */
    bool                 on;
    bool                 detect;
    int                  answer;
    lb_waf_set_t        *set;           /* NULL: no rule set */
    lb_regex_t         **deny_re;
    size_t               ndeny;
    uint32_t             m_hits[2];     /* by action: blocked, detected */
    const char          *where;         /* "listener \"web\" route 2" for logs */
} lb_http_waf_conf_t;

static int   lb_http_waf_set(lb_conf_t *cf, const lb_setting_t *s, config_setting_t *v,
                             void *conf);
static int   lb_http_waf_set_list(lb_conf_t *cf, const lb_setting_t *s, config_setting_t *v,
                                  void *conf);
static void *lb_http_waf_create_conf(lb_conf_t *cf, unsigned ctx);
static int   lb_http_waf_init_conf(lb_conf_t *cf);
static int   lb_http_waf_access(lb_http_request_t *r);

static const char *const  lb_http_waf_protocols[] = { "http", "https", NULL };
static const char *const  lb_http_waf_modes[] = { "block", "detect", NULL };

static const lb_setting_t  lb_http_waf_group[] = {
    { "enabled", LB_SET_BOOL, 0, NULL, 0, 0,
      offsetof(lb_http_waf_conf_t, enabled), NULL, NULL, 0 },
    { "rules", LB_SET_STR, 0, NULL, 0, 0,
      offsetof(lb_http_waf_conf_t, rules), NULL, NULL, 0 },
    { "mode", LB_SET_ENUM, 0, NULL, 0, 0,
      offsetof(lb_http_waf_conf_t, mode), lb_http_waf_modes, NULL, 0 },
    { "status", LB_SET_INT, 0, NULL, 400, 599,
      offsetof(lb_http_waf_conf_t, status), NULL, NULL, 0 },
    { "deny_path_regex", LB_SET_CUSTOM, 0, NULL, 0, 0,
      offsetof(lb_http_waf_conf_t, deny), NULL, lb_http_waf_set_list, 0 },
    { "disable", LB_SET_CUSTOM, 0, NULL, 0, 0,
      offsetof(lb_http_waf_conf_t, disable), NULL, lb_http_waf_set_list, 0 },
    lb_setting_end
};

static const lb_setting_t  lb_http_waf_settings[] = {
    { "waf", LB_SET_CUSTOM, LB_CTX_LISTENER | LB_CTX_ROUTE, NULL, 0, 0, 0, NULL,
      lb_http_waf_set, 0 },
    lb_setting_end
};

static const lb_http_module_t  lb_http_waf_ctx = {
    .access = lb_http_waf_access,
};

lb_module_t  lb_http_waf_module = {
    .name = "http_waf",
    .type = LB_MODULE_HTTP,
    .protocols = lb_http_waf_protocols,
    .settings = lb_http_waf_settings,
    .conf_contexts = LB_CTX_LISTENER | LB_CTX_ROUTE,
    .create_conf = lb_http_waf_create_conf,
    .init_conf = lb_http_waf_init_conf,
    .ctx = &lb_http_waf_ctx,
};

static const lb_metric_family_t  lb_http_waf_hits = {
    "lbd_http_waf_hits_total",
    "Requests a WAF rule matched, by listener, route, and what was done (blocked or "
    "detected).",
    LB_METRIC_COUNTER, NULL, 0, 0
};

/* Configuration ---------------------------------------------------------- */

static void *
lb_http_waf_create_conf(lb_conf_t *cf, unsigned ctx)
{
    lb_http_waf_conf_t  *wcf = lb_pcalloc(cf->pool, sizeof(*wcf));

    lb_unused(ctx);
    if (wcf == NULL
        || lb_array_init(&wcf->deny, cf->pool, 2, sizeof(lb_regex_t *)) != LB_OK
        || lb_array_init(&wcf->disable, cf->pool, 2, sizeof(const char *)) != LB_OK)
    {
        return NULL;
    }
    wcf->enabled = -1;
    wcf->mode = -1;
    wcf->status = -1;
    return wcf;
}

typedef struct {
    lb_http_waf_conf_t  *wcf;
    bool                 deny;
} lb_http_waf_list_t;

static int
lb_http_waf_push(lb_conf_t *cf, config_setting_t *elt, const char *str, void *arg)
{
    lb_http_waf_list_t  *l = arg;
    lb_regex_t         **re;
    const char         **id;

    if (l->deny) {
        re = lb_array_push(&l->wcf->deny);
        if (re == NULL) {
            return lb_conf_error(cf, elt, "out of memory");
        }
        *re = lb_regex_compile(cf, elt, "deny_path_regex", str, 0);
        return *re ? LB_OK : LB_ERROR;
    }
    if (!lb_waf_rule_known(lb_waf_basic_rules, lb_waf_nbasic, str)) {
        return lb_conf_error(cf, elt, "unknown WAF rule \"%s\" in \"disable\" (the rules "
                             "are listed in docs/waf.md: sqli-1, xss-1, trav-1, ...)", str);
    }
    id = lb_array_push(&l->wcf->disable);
    if (id == NULL) {
        return lb_conf_error(cf, elt, "out of memory");
    }
    *id = lb_pstrdup(cf->pool, str);   /* libconfig's copy goes with the load */
    return *id ? LB_OK : lb_conf_error(cf, elt, "out of memory");
}

static int
lb_http_waf_set_list(lb_conf_t *cf, const lb_setting_t *s, config_setting_t *v, void *conf)
{
    lb_http_waf_list_t  l = { conf, strcmp(s->name, "deny_path_regex") == 0 };

    if (l.deny) {
        l.wcf->deny_set = true;
    }
    return lb_conf_each_string(cf, v, lb_http_waf_push, &l);
}

/* waf = { ... }: a written group turns the WAF on (SPEC §3) */
static int
lb_http_waf_set(lb_conf_t *cf, const lb_setting_t *s, config_setting_t *v, void *conf)
{
    lb_http_waf_conf_t  *wcf = conf;

    lb_unused(s);
    if (config_setting_type(v) != CONFIG_TYPE_GROUP) {
        return lb_conf_error(cf, v, "\"waf\" must be a group ({ rules = \"basic\"; ... }), "
                             "not %s", lb_conf_type_name(v));
    }
    wcf->written = true;
    if (lb_conf_parse_group(cf, v, lb_http_waf_group, wcf) != LB_OK) {
        return LB_ERROR;
    }
    if (wcf->rules && strcmp(wcf->rules, "basic") != 0 && strcmp(wcf->rules, "none") != 0) {
        return lb_conf_error(cf, v, "\"rules\" of \"waf\" must be \"basic\" or \"none\", "
                             "not \"%s\"", wcf->rules);
    }
    return LB_OK;
}

static void
lb_http_waf_set_free(void *data)
{
    lb_waf_set_free(data);
}

/* What applies in a block: the listener's settings (lcf; NULL for the
 * listener itself), replaced by what the block writes, with both disable
 * lists. Run from init_conf, once every block is read: a listener's routes
 * are parsed before the rest of the listener is done. */
static int
lb_http_waf_resolve(lb_conf_t *cf, lb_http_waf_conf_t *wcf, lb_http_waf_conf_t *lcf)
{
    const char  **disable;
    const char   *rules;
    char          err[256];
    size_t        n = 0, i;

    if (lcf && !lcf->written) {
        lcf = NULL;
    }

#define lb_waf_pick(field, unset, dflt) \
    (wcf->field != (unset) ? wcf->field : lcf && lcf->field != (unset) ? lcf->field : (dflt))

    wcf->on = lb_waf_pick(enabled, -1, 1) != 0;
    wcf->detect = lb_waf_pick(mode, -1, LB_WAF_BLOCK) == LB_WAF_DETECT;
    wcf->answer = (int) lb_waf_pick(status, -1, 403);
    rules = lb_waf_pick(rules, NULL, "basic");
#undef lb_waf_pick

    if (wcf->deny_set || lcf == NULL) {
        wcf->deny_re = wcf->deny.elts;
        wcf->ndeny = wcf->deny.nelts;
    } else {
        wcf->deny_re = lcf->deny.elts;
        wcf->ndeny = lcf->deny.nelts;
    }
    if (!wcf->on) {
        return LB_OK;
    }
    if (lb_waf_engine_init() != LB_OK) {
        return lb_conf_error_at(cf, cf->cycle->conf_file, 0, "out of memory");
    }
    if (strcmp(rules, "none") == 0) {
        return LB_OK;
    }

    disable = lb_palloc(cf->pool, (wcf->disable.nelts + (lcf ? lcf->disable.nelts : 0) + 1)
                                  * sizeof(const char *));
    if (disable == NULL) {
        return LB_ERROR;
    }
    for (i = 0; lcf && i < lcf->disable.nelts; i++) {
        disable[n++] = lb_array_at(&lcf->disable, const char *, i);
    }
    for (i = 0; i < wcf->disable.nelts; i++) {
        disable[n++] = lb_array_at(&wcf->disable, const char *, i);
    }
    wcf->set = lb_waf_set_new(lb_waf_basic_rules, lb_waf_nbasic, disable, n, err, sizeof(err));
    if (wcf->set == NULL || lb_pool_cleanup_add(cf->pool, lb_http_waf_set_free, wcf->set)
                            != LB_OK)
    {
        lb_waf_set_free(wcf->set);
        wcf->set = NULL;
        return lb_conf_error_at(cf, cf->cycle->conf_file, 0, "cannot build the WAF rules: %s",
                                err);
    }
    return LB_OK;
}

static int
lb_http_waf_declare(lb_conf_t *cf, lb_http_waf_conf_t *wcf, const char *listener,
                    const char *route)
{
    static const char *const  actions[2] = { "blocked", "detected" };
    char                      base[512];

    if (!wcf->on) {
        return LB_OK;
    }
    snprintf(base, sizeof(base), "listener=\"%s\",route=\"%s\"", listener, route);
    return lb_metric_declare_each(cf, wcf->m_hits, &lb_http_waf_hits, base, "action",
                                  actions, 2);
}

/* Once every listener and route exists: the series, and each block's
 * name for the log lines. */
static int
lb_http_waf_init_conf(lb_conf_t *cf)
{
    const lb_http_routes_t  *rs;
    lb_http_waf_conf_t      *wcf, *lcf;
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
        lcf = lb_get_conf(ls->confs, lb_http_waf_module);
        if ((lcf->written && lb_http_waf_resolve(cf, lcf, NULL) != LB_OK)
            || lb_http_waf_declare(cf, lcf, name, "") != LB_OK)
        {
            return LB_ERROR;
        }
        for (k = 0; k < rs->nroutes; k++) {
            snprintf(route, sizeof(route), "%u", rs->routes[k]->index);
            wcf = lb_get_conf(rs->routes[k]->confs, lb_http_waf_module);
            if (!wcf->written) {
                /* the listener's, rule set and all */
                wcf->on = lcf->on;
                wcf->detect = lcf->detect;
                wcf->answer = lcf->answer;
                wcf->set = lcf->set;
                wcf->deny_re = lcf->deny_re;
                wcf->ndeny = lcf->ndeny;
            } else if (lb_http_waf_resolve(cf, wcf, lcf) != LB_OK) {
                return LB_ERROR;
            }
            if (lb_http_waf_declare(cf, wcf, name, route) != LB_OK) {
                return LB_ERROR;
            }
        }
    }
    return LB_OK;
}

/* Requests ---------------------------------------------------------------- */

/* The fields besides the path, query and cookies that the rules read:
 * those a client writes freely and applications log or echo. */
static const char *const  lb_http_waf_headers[] = {
    "user-agent", "referer", "x-forwarded-host", NULL
};

static int
lb_http_waf_hit(lb_http_request_t *r, const lb_http_waf_conf_t *wcf, const char *rule,
                const char *what)
{
    lb_metric_add(wcf->m_hits[wcf->detect], 1);
    char  route[24] = "";

    if (r->route) {
        snprintf(route, sizeof(route), " route #%u", r->route->index);
    }
    lb_log_warn(0, "waf: rule %s matched the %s of a request from %s on listener \"%s\"%s; "
                "%s", rule, what, r->peer->remote_ip, r->c->listener->name, route,
                wcf->detect ? "let through (detect mode)" : "refused");
    return wcf->detect ? LB_DECLINED : wcf->answer;
}

static int
lb_http_waf_access(lb_http_request_t *r)
{
    const lb_http_waf_conf_t  *wcf;
    const lb_waf_rule_t       *bad = NULL;
    const lb_http_msg_t       *m = r->msg;
    const lb_str_t            *name, *value;
    char                       what[LB_WAF_WHAT_LEN];
    size_t                     i, k, n;

    wcf = lb_get_conf(r->route ? r->route->confs : r->conf->listener->confs,
                      lb_http_waf_module);
    if (wcf == NULL || !wcf->on) {
        return LB_DECLINED;
    }
    if (wcf->ndeny) {
        /* against the normalised path: an encoding cannot dodge it */
        const u_char  *path = lb_waf_normalized((const u_char *) m->path.data, m->path.len,
                                                LB_WAF_IN_PATH, &n, &bad);
        if (bad) {
            return lb_http_waf_hit(r, wcf, bad->id, "path");
        }
        for (i = 0; i < wcf->ndeny; i++) {
            if (lb_regex_search(wcf->deny_re[i], (const char *) path, n)) {
                return lb_http_waf_hit(r, wcf, "deny_path_regex", "path");
            }
        }
    }
    if (wcf->set == NULL) {
        return LB_DECLINED;
    }
    bad = lb_waf_check_path(wcf->set, (const u_char *) m->path.data, m->path.len, what);
    if (bad == NULL && m->query.len) {
        bad = lb_waf_check_query(wcf->set, (const u_char *) m->query.data, m->query.len, what);
    }
    for (i = 0; bad == NULL && i < m->nheaders; i++) {
        name = &m->headers[i].name;
        value = &m->headers[i].value;
        if (lb_http_name_eq(name->data, name->len, "cookie", 6)) {
            bad = lb_waf_check_cookies(wcf->set, (const u_char *) value->data, value->len,
                                       what);
            continue;
        }
        for (k = 0; lb_http_waf_headers[k]; k++) {
            if (lb_http_name_eq(name->data, name->len, lb_http_waf_headers[k],
                                strlen(lb_http_waf_headers[k])))
            {
                bad = lb_waf_check_header(wcf->set, lb_http_waf_headers[k],
                                          (const u_char *) value->data, value->len, what);
                break;
            }
        }
    }
    return bad ? lb_http_waf_hit(r, wcf, bad->id, what) : LB_DECLINED;
}
