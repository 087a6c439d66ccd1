/*
 * lb_http_route.c: the `routes` of http and https listeners (SPEC §3.4):
 * their settings, their compilation at load (regexes with PCRE2 JIT, match
 * data made once), first-match lookup for a parsed request, and a text
 * account of a route for `lbctl route`. The rules are in lb_http_route.h.
 */
#include "lb_core.h"
#include "lb_http_route.h"
#include "lb_http.h"
#include "lb_tls.h"

#include <arpa/inet.h>

#include "lb_regex.h"

#define LB_ROUTE_HOST_MAX  255      /* longest Host a host regex is tried on */

typedef enum {
    LB_ROUTE_PRESENT = 0,
    LB_ROUTE_EXACT,
    LB_ROUTE_REGEX,
} lb_route_how_t;

/* One header, cookie or query condition. */
typedef struct {
    lb_str_t            name;
    lb_route_how_t      how;
    lb_str_t            value;      /* EXACT */
    lb_regex_t   *re;         /* REGEX */
    const char         *text;       /* as written, for lb_http_route_describe */
} lb_route_field_t;

typedef enum {
    LB_ROUTE_HOST_ANY = 0,
    LB_ROUTE_HOST_EXACT,
    LB_ROUTE_HOST_SUFFIX,           /* "*.example.com": host holds ".example.com" */
    LB_ROUTE_HOST_REGEX,
} lb_route_host_t;

/* A string with variables as written, and where, for checks made once the
 * whole route is read ($N against path_regex). */
typedef struct {
    const char         *text;
    const char         *file;
    int                 line;
    const char         *what;           /* the setting: "rewrite" */
} lb_route_source_t;

/* The module's configuration of one route: the public part first, so that
 * a route handed out is also its conf. */
typedef struct {
    lb_http_route_t     route;

    lb_route_host_t     host_kind;
    lb_str_t            host;           /* lowercased */
    const char         *host_text;
    lb_regex_t   *host_re;
    lb_str_t            path;           /* data NULL: no condition */
    lb_str_t            path_prefix;
    const char         *path_regex_text;
    lb_regex_t   *path_re;
    bool                has_methods;
    uint32_t            methods;        /* bit per lb_route_methods entry */
    lb_array_t          ext_methods;    /* lb_str_t: other tokens */
    lb_array_t          method_texts;   /* char *: as written, for describe */
    lb_array_t          headers;        /* lb_route_field_t */
    lb_array_t          cookies;
    lb_array_t          queries;
    bool                field_regex;    /* some field condition is a regex */

    bool                failed;         /* its block had an error */
    lb_route_source_t   sources[4];     /* values with variables of its action */
    unsigned            nsources;
} lb_route_conf_t;

typedef struct {
    config_setting_t   *routes_v;       /* while loading */
    lb_http_routes_t    routes;
} lb_route_listener_conf_t;

static void *lb_http_route_create_conf(lb_conf_t *cf, unsigned ctx);
static int   lb_http_route_merge_conf(lb_conf_t *cf, unsigned ctx, void *parent, void *conf);
static int   lb_http_route_init_conf(lb_conf_t *cf);
static int   lb_route_set_routes(lb_conf_t *cf, const lb_setting_t *s, config_setting_t *v,
                                 void *conf);
static int   lb_route_set_host(lb_conf_t *cf, const lb_setting_t *s, config_setting_t *v,
                               void *conf);
static int   lb_route_set_path(lb_conf_t *cf, const lb_setting_t *s, config_setting_t *v,
                               void *conf);
static int   lb_route_set_path_regex(lb_conf_t *cf, const lb_setting_t *s,
                                     config_setting_t *v, void *conf);
static int   lb_route_set_method(lb_conf_t *cf, const lb_setting_t *s, config_setting_t *v,
                                 void *conf);
static int   lb_route_set_field(lb_conf_t *cf, const lb_setting_t *s, config_setting_t *v,
                                void *conf);

static const char *const  lb_http_route_protocols[] = { "http", "https", NULL };

static const lb_setting_t  lb_http_route_settings[] = {
    { "routes", LB_SET_CUSTOM, LB_CTX_LISTENER, NULL, 0, 0, 0, NULL,
      lb_route_set_routes, 0 },
    { "path_case_insensitive", LB_SET_BOOL, LB_CTX_LISTENER, "false", 0, 0,
      offsetof(lb_route_listener_conf_t, routes.path_case_insensitive), NULL, NULL, 0 },

    { "host", LB_SET_CUSTOM, LB_CTX_ROUTE, NULL, 0, 0, 0, NULL, lb_route_set_host, 0 },
    { "path", LB_SET_CUSTOM, LB_CTX_ROUTE, NULL, 0, 0,
      offsetof(lb_route_conf_t, path), NULL, lb_route_set_path, 0 },
    { "path_prefix", LB_SET_CUSTOM, LB_CTX_ROUTE, NULL, 0, 0,
      offsetof(lb_route_conf_t, path_prefix), NULL, lb_route_set_path, 0 },
    { "path_regex", LB_SET_CUSTOM, LB_CTX_ROUTE, NULL, 0, 0, 0, NULL,
      lb_route_set_path_regex, 0 },
    { "method", LB_SET_CUSTOM, LB_CTX_ROUTE, NULL, 0, 0, 0, NULL, lb_route_set_method, 0 },
    { "header", LB_SET_CUSTOM, LB_CTX_ROUTE, NULL, 0, 0,
      offsetof(lb_route_conf_t, headers), NULL, lb_route_set_field, 0 },
    { "cookie", LB_SET_CUSTOM, LB_CTX_ROUTE, NULL, 0, 0,
      offsetof(lb_route_conf_t, cookies), NULL, lb_route_set_field, 0 },
    { "query", LB_SET_CUSTOM, LB_CTX_ROUTE, NULL, 0, 0,
      offsetof(lb_route_conf_t, queries), NULL, lb_route_set_field, 0 },
    lb_setting_end
};

static int lb_http_route_ctl(lb_cycle_t *cycle, int argc, char **argv);

static const lb_ctl_command_t  lb_http_route_commands[] = {
    { "route", "route METHOD URL [-H 'Name: value' ...] [--listener NAME]"
               "  which route would serve a request (dry run)", lb_http_route_ctl },
    { NULL, NULL, NULL }
};

/* The route module chooses every request's route (the find_route phase);
 * the modules that own the actions install the handlers
 * (lb_http_route_t.handler). */
static int
lb_http_route_find(lb_http_request_t *r)
{
    r->route = lb_http_route_match(r->conf->listener, r->msg, r->captures, &r->ncaptures);
    return LB_OK;
}

static const lb_http_module_t  lb_http_route_ctx = {
    .find_route = lb_http_route_find,
};

lb_module_t  lb_http_route_module = {
    "http_route", LB_MODULE_HTTP, lb_http_route_protocols, lb_http_route_settings,
    LB_CTX_LISTENER | LB_CTX_ROUTE,
    lb_http_route_create_conf, lb_http_route_merge_conf, lb_http_route_init_conf,
    NULL, NULL, NULL, &lb_http_route_ctx, 0, lb_http_route_commands,
    LB_MODULE_MERGE_ON_ERROR
};

/* The methods of RFC 9110 §9 and RFC 5789, one bit each: a route's method
 * list becomes a mask, and a request's method is looked up once. */
static const lb_str_t  lb_route_methods[] = {
    lb_string("GET"), lb_string("HEAD"), lb_string("POST"), lb_string("PUT"),
    lb_string("DELETE"), lb_string("CONNECT"), lb_string("OPTIONS"),
    lb_string("TRACE"), lb_string("PATCH"),
};

static uint32_t
lb_route_method_bit(const char *p, size_t len)
{
    size_t  i;

    for (i = 0; i < lb_nelems(lb_route_methods); i++) {
        if (lb_route_methods[i].len == len && memcmp(lb_route_methods[i].data, p, len) == 0) {
            return (uint32_t) 1 << i;
        }
    }
    return 0;
}

/* tchar of RFC 9110 §5.6.2 */
static bool
lb_route_is_token(const char *s, size_t len)
{
    size_t  i;

    if (len == 0) {
        return false;
    }
    for (i = 0; i < len; i++) {
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z')
              || (s[i] >= '0' && s[i] <= '9')
              || (s[i] != '\0' && strchr("!#$%&'*+-.^_`|~", s[i]) != NULL)))
        {
            return false;
        }
    }
    return true;
}

/* Configuration ---------------------------------------------------------- */

/* The route whose block is being parsed: its conf is made first, before
 * any module parses a setting of the block or merges it. */
static lb_route_conf_t  *lb_route_compiling;

static void *
lb_http_route_create_conf(lb_conf_t *cf, unsigned ctx)
{
    lb_route_conf_t  *rcf;

    if (ctx == LB_CTX_LISTENER) {
        return lb_pcalloc(cf->pool, sizeof(lb_route_listener_conf_t));
    }
    rcf = lb_pcalloc(cf->pool, sizeof(lb_route_conf_t));
    if (rcf == NULL
        || lb_array_init(&rcf->ext_methods, cf->pool, 2, sizeof(lb_str_t)) != LB_OK
        || lb_array_init(&rcf->method_texts, cf->pool, 4, sizeof(char *)) != LB_OK
        || lb_array_init(&rcf->headers, cf->pool, 2, sizeof(lb_route_field_t)) != LB_OK
        || lb_array_init(&rcf->cookies, cf->pool, 2, sizeof(lb_route_field_t)) != LB_OK
        || lb_array_init(&rcf->queries, cf->pool, 2, sizeof(lb_route_field_t)) != LB_OK)
    {
        return NULL;
    }
    lb_route_compiling = rcf;
    return rcf;
}

static int
lb_route_set_routes(lb_conf_t *cf, const lb_setting_t *s, config_setting_t *v, void *conf)
{
    lb_route_listener_conf_t  *lcf = conf;

    if (config_setting_type(v) != CONFIG_TYPE_LIST) {
        return lb_conf_error(cf, v, "\"routes\" must be a list ( { ... }, ... ), not %s",
                             lb_conf_type_name(v));
    }
    /* compiled in merge_conf, once the listener's other settings are read */
    lcf->routes_v = v;
    return LB_OK;
}

static int
lb_route_set_host(lb_conf_t *cf, const lb_setting_t *s, config_setting_t *v, void *conf)
{
    lb_route_conf_t  *rcf = conf;
    const char       *host, *name, *port;
    char             *lower;
    size_t            i, len;

    if (lb_conf_get_string(cf, v, &host) != LB_OK) {
        return LB_ERROR;
    }
    rcf->host_text = lb_pstrdup(cf->pool, host);
    if (rcf->host_text == NULL) {
        return lb_conf_error(cf, v, "out of memory");
    }
    if (host[0] == '~') {
        rcf->host_kind = LB_ROUTE_HOST_REGEX;
        rcf->host_re = lb_regex_compile(cf, v, "host", host + 1, 0);
        return rcf->host_re ? LB_OK : LB_ERROR;
    }

    name = host;
    rcf->host_kind = LB_ROUTE_HOST_EXACT;
    if (host[0] == '*' && host[1] == '.') {
        name = host + 1;                /* keep the dot: ".example.com" */
        rcf->host_kind = LB_ROUTE_HOST_SUFFIX;
    }
    len = strlen(name);
    if (len == 0 || (rcf->host_kind == LB_ROUTE_HOST_SUFFIX && len == 1)
        || strpbrk(name, "* \t/") != NULL)
    {
        return lb_conf_error(cf, v, "invalid host \"%s\": expected a name "
                             "(\"api.example.com\"), a wildcard (\"*.example.com\") "
                             "or a regex (\"~^api[0-9]+\\\\.\")", host);
    }
    port = name[0] == '[' ? strchr(name, ']') : name;      /* "[::1]" has colons */
    if (port && strchr(port, ':')) {
        return lb_conf_error(cf, v, "invalid host \"%s\": a host is matched without "
                             "its port, so it may not name one", host);
    }
    lower = lb_pstrdup(cf->pool, name);
    if (lower == NULL) {
        return lb_conf_error(cf, v, "out of memory");
    }
    for (i = 0; i < len; i++) {
        if (lower[i] >= 'A' && lower[i] <= 'Z') {
            lower[i] = (char) (lower[i] - 'A' + 'a');
        }
    }
    if (len > 1 && lower[len - 1] == '.') {
        len--;                          /* "example.com." is "example.com" */
    }
    rcf->host.data = lower;
    rcf->host.len = len;
    return LB_OK;
}

static int
lb_route_set_path(lb_conf_t *cf, const lb_setting_t *s, config_setting_t *v, void *conf)
{
    lb_str_t    *field = (lb_str_t *) ((char *) conf + s->offset);
    const char  *path;

    if (lb_conf_get_string(cf, v, &path) != LB_OK) {
        return LB_ERROR;
    }
    if (path[0] != '/') {
        return lb_conf_error(cf, v, "\"%s\" must start with \"/\", got \"%s\"", s->name, path);
    }
    field->data = lb_pstrdup(cf->pool, path);
    field->len = strlen(path);
    return field->data ? LB_OK : lb_conf_error(cf, v, "out of memory");
}

static int
lb_route_set_path_regex(lb_conf_t *cf, const lb_setting_t *s, config_setting_t *v, void *conf)
{
    lb_route_conf_t         *rcf = conf;
    const lb_http_routes_t  *routes;
    const char              *pattern;

    if (lb_conf_get_string(cf, v, &pattern) != LB_OK) {
        return LB_ERROR;
    }
    /* lb_http_routes_compile hands its routes list over in ctx_data */
    routes = cf->ctx_data;
    rcf->path_regex_text = lb_pstrdup(cf->pool, pattern);
    rcf->path_re = lb_regex_compile(cf, v, "path_regex", pattern,
                                  routes && routes->path_case_insensitive ? PCRE2_CASELESS : 0);
    return rcf->path_re && rcf->path_regex_text ? LB_OK : LB_ERROR;
}

static int
lb_route_add_method(lb_conf_t *cf, config_setting_t *elt, const char *m, void *arg)
{
    lb_route_conf_t  *rcf = arg;
    lb_str_t         *ext;
    char            **text;
    size_t            i, len = strlen(m);
    uint32_t          bit;

    if (!lb_route_is_token(m, len)) {
        return lb_conf_error(cf, elt, "invalid method \"%s\": a method is a token "
                             "(RFC 9110 §9.1), such as \"GET\"", m);
    }
    text = lb_array_push(&rcf->method_texts);
    if (text == NULL || (*text = lb_pstrdup(cf->pool, m)) == NULL) {
        return lb_conf_error(cf, elt, "out of memory");
    }
    rcf->has_methods = true;
    bit = lb_route_method_bit(m, len);
    if (bit) {
        rcf->methods |= bit;
        return LB_OK;
    }
    for (i = 0; i < lb_nelems(lb_route_methods); i++) {
        if (lb_route_methods[i].len == len && strncasecmp(lb_route_methods[i].data, m, len) == 0) {
            return lb_conf_error(cf, elt, "method \"%s\" would only match requests that "
                                 "send \"%s\": methods are case-sensitive (did you mean "
                                 "\"%s\"?)", m, m, lb_route_methods[i].data);
        }
    }
    if (!lb_http_valid_method(m, len)) {
        return lb_conf_error(cf, elt, "method \"%s\" would never match: requests whose "
                             "method is not uppercase letters, '-' and '_' (at most %d) "
                             "are refused with 400", m, LB_HTTP_MAX_METHOD);
    }
    ext = lb_array_push(&rcf->ext_methods);
    if (ext == NULL) {
        return lb_conf_error(cf, elt, "out of memory");
    }
    ext->data = *text;
    ext->len = len;
    return LB_OK;
}

static int
lb_route_set_method(lb_conf_t *cf, const lb_setting_t *s, config_setting_t *v, void *conf)
{
    return lb_conf_each_string(cf, v, lb_route_add_method, conf);
}

/* "Name", "Name: value" or "Name: ~regex" for header, cookie and query;
 * cookie and query also take "Name=value" (and "Name=~regex"), the way
 * they are written on the wire: neither a cookie name (a token) nor a
 * parameter name as matched (cut at the first '=') can hold '='. */
static int
lb_route_add_field(lb_conf_t *cf, config_setting_t *elt, const char *text, void *arg)
{
    lb_array_t        *fields = arg;
    lb_route_field_t  *f;
    const char        *what = config_setting_name(elt) ? config_setting_name(elt)
                              : config_setting_name(config_setting_parent(elt));
    const char        *colon, *value, *end;
    char              *pattern;
    size_t             nlen;
    bool               ok;

    colon = strcmp(what, "header") == 0 ? strchr(text, ':') : strpbrk(text, ":=");
    nlen = colon ? (size_t) (colon - text) : strlen(text);
    if (strcmp(what, "query") == 0) {
        ok = nlen > 0 && strcspn(text, "&=# \t") >= nlen;
    } else {
        ok = lb_route_is_token(text, nlen);     /* field and cookie names are tokens */
    }
    if (!ok) {
        return lb_conf_error(cf, elt, "invalid %s \"%s\": expected \"Name\", \"Name: value\"%s "
                             "or \"Name: ~regex\", where Name is a %s", what, text,
                             strcmp(what, "header") == 0 ? "" : ", \"Name=value\"",
                             strcmp(what, "query") == 0 ? "parameter name"
                                                        : "token (RFC 9110 §5.6.2)");
    }

    f = lb_array_push(fields);
    if (f == NULL || (f->text = lb_pstrdup(cf->pool, text)) == NULL
        || (f->name.data = lb_pstrndup(cf->pool, text, nlen)) == NULL)
    {
        return lb_conf_error(cf, elt, "out of memory");
    }
    f->name.len = nlen;
    if (colon == NULL) {
        f->how = LB_ROUTE_PRESENT;
        return LB_OK;
    }

    for (value = colon + 1; *value == ' ' || *value == '\t'; value++) { /* OWS */ }
    for (end = value + strlen(value); end > value && (end[-1] == ' ' || end[-1] == '\t'); end--) {
        /* OWS */
    }
    if (*value == '~') {
        f->how = LB_ROUTE_REGEX;
        pattern = lb_pstrndup(cf->pool, value + 1, (size_t) (end - value - 1));
        if (pattern == NULL) {
            return lb_conf_error(cf, elt, "out of memory");
        }
        f->re = lb_regex_compile(cf, elt, what, pattern, 0);
        return f->re ? LB_OK : LB_ERROR;
    }
    f->how = LB_ROUTE_EXACT;
    f->value.len = (size_t) (end - value);
    f->value.data = lb_pstrndup(cf->pool, value, f->value.len);
    return f->value.data ? LB_OK : lb_conf_error(cf, elt, "out of memory");
}

static int
lb_route_set_field(lb_conf_t *cf, const lb_setting_t *s, config_setting_t *v, void *conf)
{
    lb_route_conf_t  *rcf = conf;
    lb_array_t       *fields = (lb_array_t *) ((char *) conf + s->offset);
    lb_route_field_t *f;
    size_t            i;
    int               rc;

    rc = lb_conf_each_string(cf, v, lb_route_add_field, fields);
    for (i = 0; i < fields->nelts; i++) {
        f = &lb_array_at(fields, lb_route_field_t, i);
        if (f->how == LB_ROUTE_REGEX) {
            rcf->field_regex = true;
        }
    }
    return rc;
}

/* The highest $N (N all digits, as the variables compiler reads names:
 * "$2", "${2}") that text uses; 0 when none. "$$" is a literal dollar. */
static unsigned long
lb_route_max_capture(const char *text)
{
    const char     *p, *name, *end;
    unsigned long   n, max = 0;

    for (p = text; (p = strchr(p, '$')) != NULL; ) {
        p++;
        if (*p == '$') {
            p++;
            continue;
        }
        if (*p == '{') {
            name = p + 1;
            end = strchr(name, '}');
            if (end == NULL) {
                break;
            }
            p = end + 1;
        } else {
            name = p;
            for (end = p; (*end >= 'a' && *end <= 'z') || (*end >= 'A' && *end <= 'Z')
                          || (*end >= '0' && *end <= '9') || *end == '_'; end++) { /* name */ }
            p = end;
        }
        if (end == name || strspn(name, "0123456789") < (size_t) (end - name)) {
            continue;
        }
        n = strtoul(name, NULL, 10);
        max = lb_max(max, n);
    }
    return max;
}

/* A $N in src beyond the capture groups of the route's path_regex. */
static int
lb_route_check_captures(lb_conf_t *cf, lb_route_conf_t *rcf, const lb_route_source_t *src)
{
    unsigned long  n;

    if ((n = lb_route_max_capture(src->text)) == 0) {
        return LB_OK;
    }
    if (rcf->path_re == NULL) {
        return lb_conf_error_at(cf, src->file, src->line, "\"%s\" uses $%lu, but %s has no "
                                "path_regex to capture it", src->what, n, cf->block);
    }
    if (n > rcf->path_re->ngroups) {
        return lb_conf_error_at(cf, src->file, src->line, "\"%s\" uses $%lu, but path_regex "
                                "\"%s\" has %u capture group%s", src->what, n,
                                rcf->path_regex_text, (unsigned) rcf->path_re->ngroups,
                                rcf->path_re->ngroups == 1 ? "" : "s");
    }
    return LB_OK;
}

lb_http_complex_t *
lb_http_route_complex(lb_conf_t *cf, config_setting_t *v, const char *what)
{
    lb_route_conf_t    *rcf = lb_route_compiling;
    lb_route_source_t  *src;
    lb_http_complex_t  *cv;
    const char         *text;
    char                prefix[256];

    if (lb_conf_get_string(cf, v, &text) != LB_OK) {
        return NULL;
    }
    snprintf(prefix, sizeof(prefix), "invalid \"%s\" in %s", what, cf->block);
    cv = lb_http_complex_conf(cf, v, text, prefix);
    if (cv == NULL || rcf == NULL || rcf->nsources == lb_nelems(rcf->sources)) {
        return cv;
    }
    src = &rcf->sources[rcf->nsources];
    src->text = lb_pstrdup(cf->pool, text);
    src->file = lb_pstrdup(cf->pool, lb_conf_file(cf, v));
    src->line = (int) config_setting_source_line(v);
    src->what = what;
    if (src->text == NULL || src->file == NULL) {
        lb_conf_error(cf, v, "out of memory");
        return NULL;
    }
    rcf->nsources++;
    return cv;
}

void
lb_http_route_set_action(lb_conf_t *cf, const char *action, lb_http_handler_pt handler,
                         const char *text, int (*resolve)(lb_conf_t *cf, lb_http_route_t *route),
                         void (*explain)(const lb_http_route_t *route,
                                         const lb_http_var_ctx_t *ctx))
{
    lb_http_route_t  *route;

    if (lb_route_compiling == NULL) {
        return;
    }
    route = &lb_route_compiling->route;
    route->handler = handler;
    route->action = action;
    route->action_text = text;
    route->resolve = resolve;
    route->explain = explain;
}

/* The names of the action settings of every module (LB_SETTING_ACTION),
 * for "needs exactly one action: upstream, return or redirect". */
static size_t
lb_route_action_names(const char **names, size_t max)
{
    const lb_setting_t  *st;
    size_t               i, n = 0;

    for (i = 0; i < lb_nmodules; i++) {
        for (st = lb_all_modules[i]->settings; st && st->name; st++) {
            if ((st->flags & LB_SETTING_ACTION) && (st->contexts & LB_CTX_ROUTE) && n < max) {
                names[n++] = st->name;
            }
        }
    }
    return n;
}

/* Merged even when the block has errors (LB_MODULE_MERGE_ON_ERROR): the
 * listener's routes are compiled all the same, and a route's own checks
 * look at what is written rather than at what parsed, or skip what
 * depends on a value that failed, so no error is reported twice. */
static int
lb_http_route_merge_conf(lb_conf_t *cf, unsigned ctx, void *parent, void *conf)
{
    lb_route_listener_conf_t  *lcf;
    lb_route_conf_t           *rcf;
    const char                *names[16];
    char                       list[256];
    size_t                     n, i, len = 0, nactions = 0;
    int                        rc = LB_OK;

    if (ctx == LB_CTX_LISTENER) {
        lcf = conf;
        return lcf->routes_v ? lb_http_routes_compile(cf, cf->listener, lcf->routes_v,
                                                      &lcf->routes)
                             : LB_OK;
    }

    rcf = conf;
    rcf->failed = cf->block_failed;
    n = lb_route_action_names(names, lb_nelems(names));
    for (i = 0; i < n; i++) {
        nactions += config_setting_get_member(cf->group, names[i]) != NULL;
        len += (size_t) snprintf(list + len, sizeof(list) - lb_min(len, sizeof(list)),
                                 "%s%s", i == 0 ? "" : i + 1 == n ? " or " : ", ", names[i]);
        len = lb_min(len, sizeof(list) - 1);
    }
    if (nactions != 1) {
        return lb_conf_error(cf, cf->group, "%s needs exactly one action: %s", cf->block,
                             n ? list : "none is built in");
    }
    if (rcf->path_re == NULL && config_setting_get_member(cf->group, "path_regex") != NULL) {
        return LB_OK;                   /* its error is told: no capture to count */
    }
    for (i = 0; i < rcf->nsources; i++) {
        if (lb_route_check_captures(cf, rcf, &rcf->sources[i]) != LB_OK) {
            rc = LB_ERROR;
        }
    }
    return rc;
}

/* Routes that can never match ---------------------------------------------
 * Whether every request that route b's conditions let through also meets
 * route a's, judged from the conditions as written: a condition of a is
 * covered only by one of b that is at least as strict (the same host, a
 * path under a's prefix, the same regex text, fewer methods, the same
 * field test). Anything else counts as "not covered", so a warning is
 * never wrong, only sometimes missing. */

/* Whether s starts with prefix (ignoring ASCII case when caseless). */
static bool
lb_route_starts_with(const lb_str_t *s, const lb_str_t *prefix, bool caseless)
{
    if (s->len < prefix->len) {
        return false;
    }
    return caseless ? strncasecmp(s->data, prefix->data, prefix->len) == 0
                    : memcmp(s->data, prefix->data, prefix->len) == 0;
}

static bool
lb_route_host_covers(const lb_route_conf_t *a, const lb_route_conf_t *b)
{
    switch (a->host_kind) {
    case LB_ROUTE_HOST_ANY:
        return true;
    case LB_ROUTE_HOST_EXACT:
        return b->host_kind == LB_ROUTE_HOST_EXACT && b->host.len == a->host.len
               && memcmp(b->host.data, a->host.data, a->host.len) == 0;
    case LB_ROUTE_HOST_SUFFIX:
        /* ".example.com" holds for "a.example.com" and "*.a.example.com" */
        if (b->host_kind != LB_ROUTE_HOST_EXACT && b->host_kind != LB_ROUTE_HOST_SUFFIX) {
            return false;
        }
        return b->host.len >= a->host.len + (b->host_kind == LB_ROUTE_HOST_EXACT)
               && memcmp(b->host.data + b->host.len - a->host.len, a->host.data,
                         a->host.len) == 0;
    case LB_ROUTE_HOST_REGEX:
        return b->host_kind == LB_ROUTE_HOST_REGEX
               && strcmp(a->host_text, b->host_text) == 0;
    }
    return false;
}

static bool
lb_route_path_covers(const lb_route_conf_t *a, const lb_route_conf_t *b, bool caseless)
{
    if (a->path.data
        && !(b->path.data && b->path.len == a->path.len
             && lb_route_starts_with(&b->path, &a->path, caseless)))
    {
        return false;
    }
    if (a->path_prefix.data
        && !(b->path.data && lb_route_starts_with(&b->path, &a->path_prefix, caseless))
        && !(b->path_prefix.data
             && lb_route_starts_with(&b->path_prefix, &a->path_prefix, caseless)))
    {
        return false;
    }
    return a->path_regex_text == NULL
           || (b->path_regex_text && strcmp(a->path_regex_text, b->path_regex_text) == 0);
}

static bool
lb_route_methods_cover(const lb_route_conf_t *a, const lb_route_conf_t *b)
{
    const lb_str_t  *m, *n;
    size_t           i, j;

    if (!a->has_methods) {
        return true;
    }
    if (!b->has_methods || (b->methods & ~a->methods) != 0) {
        return false;
    }
    for (i = 0; i < b->ext_methods.nelts; i++) {
        m = &lb_array_at(&b->ext_methods, lb_str_t, i);
        for (j = 0; j < a->ext_methods.nelts; j++) {
            n = &lb_array_at(&a->ext_methods, lb_str_t, j);
            if (n->len == m->len && memcmp(n->data, m->data, m->len) == 0) {
                break;
            }
        }
        if (j == a->ext_methods.nelts) {
            return false;
        }
    }
    return true;
}

/* Every field condition of a has one in b on the same name that implies
 * it: any for "Name", the same value or the same regex otherwise. */
static bool
lb_route_fields_cover(const lb_array_t *a, const lb_array_t *b, bool caseless_names)
{
    const lb_route_field_t  *f, *g;
    size_t                   i, j;
    bool                     same;

    for (i = 0; i < a->nelts; i++) {
        f = &lb_array_at(a, lb_route_field_t, i);
        for (j = 0; j < b->nelts; j++) {
            g = &lb_array_at(b, lb_route_field_t, j);
            same = g->name.len == f->name.len
                   && (caseless_names ? strncasecmp(g->name.data, f->name.data, f->name.len)
                                      : memcmp(g->name.data, f->name.data, f->name.len)) == 0;
            if (!same) {
                continue;
            }
            if (f->how == LB_ROUTE_PRESENT
                || (f->how == LB_ROUTE_EXACT && g->how == LB_ROUTE_EXACT
                    && g->value.len == f->value.len
                    && memcmp(g->value.data, f->value.data, f->value.len) == 0)
                || (f->how == LB_ROUTE_REGEX && g->how == LB_ROUTE_REGEX
                    && strcmp(g->text, f->text) == 0))
            {
                break;
            }
        }
        if (j == b->nelts) {
            return false;
        }
    }
    return true;
}

/* Whether route a, tried before b, serves every request b would. */
static bool
lb_route_covers(const lb_route_conf_t *a, const lb_route_conf_t *b, bool caseless)
{
    return lb_route_host_covers(a, b) && lb_route_path_covers(a, b, caseless)
           && lb_route_methods_cover(a, b)
           && lb_route_fields_cover(&a->headers, &b->headers, true)
           && lb_route_fields_cover(&a->cookies, &b->cookies, false)
           && lb_route_fields_cover(&a->queries, &b->queries, false);
}

/* Warns about each route that an earlier one leaves no request to. Routes
 * whose block had an error are left out: what they test is not known. */
static void
lb_route_warn_unreachable(lb_conf_t *cf, const lb_listener_t *ls, const lb_http_routes_t *rs)
{
    const lb_route_conf_t  *a, *b;
    size_t                  i, j;

    for (i = 1; i < rs->nroutes; i++) {
        b = (const lb_route_conf_t *) rs->routes[i];
        if (b->failed) {
            continue;
        }
        for (j = 0; j < i; j++) {
            a = (const lb_route_conf_t *) rs->routes[j];
            if (!a->failed && lb_route_covers(a, b, rs->path_case_insensitive != 0)) {
                lb_conf_warn_at(cf, b->route.file, b->route.line, "route #%u of listener "
                                "\"%s\" can never match: route #%u (%s:%d) takes all its "
                                "requests", b->route.index, ls->name, a->route.index,
                                a->route.file, a->route.line);
                break;
            }
        }
    }
}

int
lb_http_routes_compile(lb_conf_t *cf, lb_listener_t *ls, config_setting_t *list,
                       lb_http_routes_t *out)
{
    lb_listener_t      *saved_listener = cf->listener;
    const char         *saved_protocol = cf->protocol, *saved_block = cf->block;
    void              **saved_parent = cf->parent_confs, **confs;
    void               *saved_data = cf->ctx_data;
    config_setting_t   *g;
    lb_route_conf_t    *rcf;
    unsigned            i, n;
    int                 rc = LB_OK;
    bool                failed;

    n = (unsigned) config_setting_length(list);
    out->nroutes = 0;
    out->routes = lb_pcalloc(cf->pool, (n ? n : 1) * sizeof(lb_http_route_t *));
    if (out->routes == NULL) {
        return lb_conf_error(cf, list, "out of memory");
    }

    cf->listener = ls;
    cf->protocol = ls->protocol;
    cf->ctx_data = out;
    /* the listener's confs are the routes' parents; the core sets ls->confs
     * once the listener block is parsed, so today they may still be NULL */
    cf->parent_confs = ls->confs;

    for (i = 0; i < n; i++) {
        g = config_setting_get_elem(list, i);
        cf->block = lb_psprintf(cf->pool, "route #%u of listener \"%s\"", i + 1, ls->name);
        if (cf->block == NULL) {
            rc = lb_conf_error(cf, g, "out of memory");
            break;
        }
        confs = NULL;
        failed = lb_conf_parse_block(cf, g, LB_CTX_ROUTE, &confs) != LB_OK;
        lb_route_compiling = NULL;
        rc = failed ? LB_ERROR : rc;
        rcf = confs ? lb_get_conf(confs, lb_http_route_module) : NULL;
        if (rcf == NULL) {
            continue;
        }
        rcf->failed |= failed;
        rcf->route.index = i + 1;
        rcf->route.file = lb_pstrdup(cf->pool, lb_conf_file(cf, g));
        rcf->route.line = (int) config_setting_source_line(g);
        rcf->route.listener = ls;
        rcf->route.confs = confs;
        out->routes[out->nroutes++] = &rcf->route;
    }

    lb_route_warn_unreachable(cf, ls, out);

    cf->listener = saved_listener;
    cf->protocol = saved_protocol;
    cf->block = saved_block;
    cf->parent_confs = saved_parent;
    cf->ctx_data = saved_data;
    return rc;
}

int
lb_http_routes_resolve(lb_conf_t *cf, lb_http_routes_t *rs)
{
    size_t  i;
    int     rc = LB_OK;

    for (i = 0; i < rs->nroutes; i++) {
        if (rs->routes[i]->resolve && rs->routes[i]->resolve(cf, rs->routes[i]) != LB_OK) {
            rc = LB_ERROR;
        }
    }
    return rc;
}

/* Names a route's action refers to (upstreams) may be declared after the
 * listeners that use them. */
static int
lb_http_route_init_conf(lb_conf_t *cf)
{
    const lb_http_routes_t  *rs;
    lb_listener_t           *ls;
    size_t                   i;
    int                      rc = LB_OK;

    for (i = 0; i < cf->cycle->listeners.nelts; i++) {
        ls = lb_array_at(&cf->cycle->listeners, lb_listener_t *, i);
        rs = lb_http_route_list(ls);
        if (rs && lb_http_routes_resolve(cf, (lb_http_routes_t *) rs) != LB_OK) {
            rc = LB_ERROR;
        }
    }
    return rc;
}

const lb_http_routes_t *
lb_http_route_list(lb_listener_t *ls)
{
    lb_route_listener_conf_t  *lcf;

    lcf = ls->confs ? lb_get_conf(ls->confs, lb_http_route_module) : NULL;
    return lcf ? &lcf->routes : NULL;
}

/* Matching --------------------------------------------------------------- */

static bool
lb_route_value_holds(const lb_route_field_t *f, const char *v, size_t len)
{
    switch (f->how) {
    case LB_ROUTE_PRESENT:
        return true;
    case LB_ROUTE_EXACT:
        return len == f->value.len && memcmp(v, f->value.data, len) == 0;
    case LB_ROUTE_REGEX:
        return lb_regex_search(f->re, v, len);
    }
    return false;
}

static bool
lb_route_header_holds(const lb_route_field_t *f, const lb_http_msg_t *req)
{
    const lb_http_header_t  *h;
    size_t                   i;

    for (i = 0; i < req->nheaders; i++) {
        h = &req->headers[i];
        if (h->name.len == f->name.len
            && strncasecmp(h->name.data, f->name.data, f->name.len) == 0
            && lb_route_value_holds(f, h->value.data, h->value.len))
        {
            return true;
        }
    }
    return false;
}

/* The first cookie named f->name in the Cookie fields (RFC 6265 §5.4:
 * "name=value" pairs separated by ";" and optional spaces). */
static bool
lb_route_cookie_holds(const lb_route_field_t *f, const lb_http_msg_t *req)
{
    const lb_http_header_t  *h;
    const char              *p, *end, *pair, *eq, *last;
    size_t                   i;

    for (i = 0; i < req->nheaders; i++) {
        h = &req->headers[i];
        if (h->name.len != 6 || strncasecmp(h->name.data, "Cookie", 6) != 0) {
            continue;
        }
        p = h->value.data;
        end = p + h->value.len;
        while (p < end) {
            while (p < end && (*p == ' ' || *p == '\t' || *p == ';')) {
                p++;
            }
            pair = p;
            while (p < end && *p != ';') {
                p++;
            }
            for (last = p; last > pair && (last[-1] == ' ' || last[-1] == '\t'); last--) {
                /* "a=1 ; b=2": the space is not part of the value */
            }
            eq = memchr(pair, '=', (size_t) (last - pair));
            if (eq == NULL || (size_t) (eq - pair) != f->name.len
                || memcmp(pair, f->name.data, f->name.len) != 0)
            {
                continue;
            }
            return lb_route_value_holds(f, eq + 1, (size_t) (last - eq - 1));
        }
    }
    return false;
}

/* The first parameter named f->name in the query string. */
static bool
lb_route_query_holds(const lb_route_field_t *f, const lb_http_msg_t *req)
{
    const char  *p = req->query.data, *end = p + req->query.len, *param, *eq, *stop;

    while (p && p < end) {
        param = p;
        stop = memchr(p, '&', (size_t) (end - p));
        stop = stop ? stop : end;
        p = stop + 1;
        eq = memchr(param, '=', (size_t) (stop - param));
        if ((size_t) ((eq ? eq : stop) - param) != f->name.len
            || memcmp(param, f->name.data, f->name.len) != 0)
        {
            continue;
        }
        return eq ? lb_route_value_holds(f, eq + 1, (size_t) (stop - eq - 1))
                  : lb_route_value_holds(f, "", 0);
    }
    return false;
}

/* Every field condition of one kind, the regex ones (regex true) or the
 * others. */
static bool
lb_route_fields_hold(const lb_route_conf_t *rcf, const lb_http_msg_t *req, bool regex)
{
    const lb_array_t        *arrays[3] = { &rcf->headers, &rcf->cookies, &rcf->queries };
    const lb_route_field_t  *f;
    size_t                   a, i;
    bool                     ok;

    for (a = 0; a < 3; a++) {
        for (i = 0; i < arrays[a]->nelts; i++) {
            f = &lb_array_at(arrays[a], lb_route_field_t, i);
            if ((f->how == LB_ROUTE_REGEX) != regex) {
                continue;
            }
            ok = a == 0 ? lb_route_header_holds(f, req)
               : a == 1 ? lb_route_cookie_holds(f, req)
               : lb_route_query_holds(f, req);
            if (!ok) {
                return false;
            }
        }
    }
    return true;
}

/* What one request looks like to the matcher, worked out once. */
typedef struct {
    const lb_http_msg_t  *req;
    bool                  caseless;     /* path_case_insensitive */
    uint32_t              method;       /* bit, 0 for an extension method */
    lb_str_t              host;         /* without port and trailing dot */
    char                  lower[LB_ROUTE_HOST_MAX];
    bool                  lowered;
} lb_route_request_t;

static bool
lb_route_method_holds(const lb_route_conf_t *rcf, const lb_route_request_t *rq)
{
    const lb_str_t  *m;
    size_t           i;

    if (rq->method) {
        return (rcf->methods & rq->method) != 0;
    }
    for (i = 0; i < rcf->ext_methods.nelts; i++) {
        m = &lb_array_at(&rcf->ext_methods, lb_str_t, i);
        if (m->len == rq->req->method.len && memcmp(m->data, rq->req->method.data, m->len) == 0) {
            return true;
        }
    }
    return false;
}

/* Whether the request's path starting at p holds the route's path
 * bytes, exactly or, with path_case_insensitive, ignoring ASCII case. */
static bool
lb_route_path_eq(const lb_route_request_t *rq, const char *p, const lb_str_t *path)
{
    size_t  i;
    char    a, b;

    if (!rq->caseless) {
        return memcmp(p, path->data, path->len) == 0;
    }
    for (i = 0; i < path->len; i++) {
        a = p[i] >= 'A' && p[i] <= 'Z' ? (char) (p[i] | 0x20) : p[i];
        b = path->data[i] >= 'A' && path->data[i] <= 'Z' ? (char) (path->data[i] | 0x20)
                                                          : path->data[i];
        if (a != b) {
            return false;
        }
    }
    return true;
}

/* The conditions that cost a compare or two: tried before any regex. */
static bool
lb_route_cheap_hold(const lb_route_conf_t *rcf, const lb_route_request_t *rq)
{
    const lb_http_msg_t  *req = rq->req;

    if (rcf->has_methods && !lb_route_method_holds(rcf, rq)) {
        return false;
    }
    if (rcf->path.data && (req->uri.len != rcf->path.len
                           || !lb_route_path_eq(rq, req->uri.data, &rcf->path)))
    {
        return false;
    }
    if (rcf->path_prefix.data
        && (req->uri.len < rcf->path_prefix.len
            || !lb_route_path_eq(rq, req->uri.data, &rcf->path_prefix)))
    {
        return false;
    }
    switch (rcf->host_kind) {
    case LB_ROUTE_HOST_ANY:
        break;
    case LB_ROUTE_HOST_EXACT:
        if (rq->host.len != rcf->host.len
            || strncasecmp(rq->host.data, rcf->host.data, rcf->host.len) != 0)
        {
            return false;
        }
        break;
    case LB_ROUTE_HOST_SUFFIX:
        if (rq->host.len <= rcf->host.len
            || strncasecmp(rq->host.data + rq->host.len - rcf->host.len, rcf->host.data,
                           rcf->host.len) != 0)
        {
            return false;
        }
        break;
    case LB_ROUTE_HOST_REGEX:
        if (rq->host.len == 0 || rq->host.len > LB_ROUTE_HOST_MAX) {
            return false;
        }
        break;
    }
    return lb_route_fields_hold(rcf, req, false);
}

static bool
lb_route_regexes_hold(const lb_route_conf_t *rcf, lb_route_request_t *rq,
                      size_t *captures, int *ncaptures)
{
    const lb_http_msg_t  *req = rq->req;
    PCRE2_SIZE           *ov;
    size_t                i, pairs;
    int                   rc;

    if (rcf->host_kind == LB_ROUTE_HOST_REGEX) {
        if (!rq->lowered) {
            for (i = 0; i < rq->host.len; i++) {
                rq->lower[i] = (rq->host.data[i] >= 'A' && rq->host.data[i] <= 'Z')
                               ? (char) (rq->host.data[i] - 'A' + 'a') : rq->host.data[i];
            }
            rq->lowered = true;
        }
        if (!lb_regex_search(rcf->host_re, rq->lower, rq->host.len)) {
            return false;
        }
    }
    if (rcf->field_regex && !lb_route_fields_hold(rcf, req, true)) {
        return false;
    }
    if (rcf->path_re == NULL) {
        return true;
    }

    rc = pcre2_match(rcf->path_re->code, (PCRE2_SPTR) (req->uri.data ? req->uri.data : ""),
                     req->uri.len, 0, 0, rcf->path_re->md, NULL);
    if (rc < 0) {
        return false;
    }
    if (captures) {
        ov = pcre2_get_ovector_pointer(rcf->path_re->md);
        pairs = lb_min((size_t) rcf->path_re->ngroups + 1, LB_HTTP_ROUTE_MAX_CAPTURES);
        for (i = 0; i < pairs; i++) {
            /* groups past rc did not take part; neither did an unset one */
            if ((rc == 0 || i < (size_t) rc) && ov[2 * i] != PCRE2_UNSET) {
                captures[2 * i] = ov[2 * i];
                captures[2 * i + 1] = ov[2 * i + 1];
            } else {
                captures[2 * i] = captures[2 * i + 1] = 0;
            }
        }
        if (ncaptures) {
            *ncaptures = (int) pairs;
        }
    }
    return true;
}

const lb_http_route_t *
lb_http_routes_match(const lb_http_routes_t *rs, const lb_http_msg_t *req,
                     size_t *captures, int *ncaptures)
{
    lb_route_request_t  rq;
    size_t              i;

    if (ncaptures) {
        *ncaptures = 0;
    }
    if (rs == NULL) {
        return NULL;
    }
    rq.req = req;
    rq.method = lb_route_method_bit(req->method.data, req->method.len);
    rq.lowered = false;
    rq.caseless = rs->path_case_insensitive != 0;
    lb_http_host_name(&req->host, &rq.host);

    for (i = 0; i < rs->nroutes; i++) {
        const lb_route_conf_t  *rcf = (const lb_route_conf_t *) rs->routes[i];

        if (lb_route_cheap_hold(rcf, &rq) && lb_route_regexes_hold(rcf, &rq, captures, ncaptures)) {
            return &rcf->route;
        }
    }
    return NULL;
}

const lb_http_route_t *
lb_http_route_match(lb_listener_t *ls, const lb_http_msg_t *req, size_t *captures,
                    int *ncaptures)
{
    return lb_http_routes_match(lb_http_route_list(ls), req, captures, ncaptures);
}

/* Describing a route ----------------------------------------------------- */

typedef struct {
    char    *buf;
    size_t   size;
    size_t   len;       /* as if buf were big enough */
} lb_route_text_t;

static void
lb_route_text_add(lb_route_text_t *t, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void
lb_route_text_add(lb_route_text_t *t, const char *fmt, ...)
{
    va_list  ap;
    int      n;

    va_start(ap, fmt);
    n = vsnprintf(t->len < t->size ? t->buf + t->len : NULL,
                  t->len < t->size ? t->size - t->len : 0, fmt, ap);
    va_end(ap);
    if (n > 0) {
        t->len += (size_t) n;
    }
}

static void
lb_route_text_fields(lb_route_text_t *t, const char *name, const lb_array_t *fields,
                     const char **sep)
{
    size_t  i;

    for (i = 0; i < fields->nelts; i++) {
        lb_route_text_add(t, "%s%s = \"%s\"", *sep, name,
                          lb_array_at(fields, lb_route_field_t, i).text);
        *sep = ", ";
    }
}

size_t
lb_http_route_describe(const lb_http_route_t *r, char *buf, size_t size)
{
    const lb_route_conf_t  *rcf = (const lb_route_conf_t *) r;
    lb_route_text_t         t = { buf, size, 0 };
    const char             *sep = "";
    size_t                  i;

    if (size) {
        buf[0] = '\0';
    }
    lb_route_text_add(&t, "route #%u at %s:%d: ", r->index, r->file ? r->file : "?", r->line);
    if (rcf->host_text) {
        lb_route_text_add(&t, "%shost = \"%s\"", sep, rcf->host_text);
        sep = ", ";
    }
    if (rcf->method_texts.nelts) {
        lb_route_text_add(&t, "%smethod = [", sep);
        for (i = 0; i < rcf->method_texts.nelts; i++) {
            lb_route_text_add(&t, "%s%s", i ? ", " : "",
                              lb_array_at(&rcf->method_texts, char *, i));
        }
        lb_route_text_add(&t, "]");
        sep = ", ";
    }
    if (rcf->path.data) {
        lb_route_text_add(&t, "%spath = \"%s\"", sep, rcf->path.data);
        sep = ", ";
    }
    if (rcf->path_prefix.data) {
        lb_route_text_add(&t, "%spath_prefix = \"%s\"", sep, rcf->path_prefix.data);
        sep = ", ";
    }
    if (rcf->path_regex_text) {
        lb_route_text_add(&t, "%spath_regex = \"%s\"", sep, rcf->path_regex_text);
        sep = ", ";
    }
    lb_route_text_fields(&t, "header", &rcf->headers, &sep);
    lb_route_text_fields(&t, "cookie", &rcf->cookies, &sep);
    lb_route_text_fields(&t, "query", &rcf->queries, &sep);
    if (*sep == '\0') {
        lb_route_text_add(&t, "every request");
    }

    if (r->action_text) {
        lb_route_text_add(&t, " -> %s", r->action_text);
    }
    return t.len;
}

/* lbctl route --------------------------------------------------------------
 * A dry run from the configuration file alone: the request is written as
 * the client would send it, parsed by the listener's own parser and
 * matched by the listener's own routes, so the answer cannot drift from
 * what lbd does. */

static int
lb_http_route_ctl_fail(const char *fmt, const char *arg)
{
    fprintf(stderr, "lbctl: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\n");
    return 1;
}

/* The port of a listen address (0 for a unix socket). */
static unsigned
lb_http_route_addr_port(const lb_addr_t *a)
{
    if (a->u.sa.sa_family == AF_INET) {
        return ntohs(a->u.sin.sin_port);
    }
    if (a->u.sa.sa_family == AF_INET6) {
        return ntohs(a->u.sin6.sin6_port);
    }
    return 0;
}

/* The http listener a request for the URL would reach: the one called
 * name when given; else, for a URL with a scheme, the first whose protocol
 * is the scheme and that listens on the URL's port (80 and 443 by
 * default), then the first on that port, then the first of that protocol;
 * else the first http listener. NULL when there is none (or no such name). */
static lb_listener_t *
lb_http_route_ctl_listener(lb_cycle_t *cycle, const char *name, const char *scheme,
                           unsigned port)
{
    lb_listener_t  *ls, *best = NULL;
    size_t          i, k;
    int             score, best_score = -1;

    for (i = 0; i < cycle->listeners.nelts; i++) {
        ls = lb_array_at(&cycle->listeners, lb_listener_t *, i);
        if (lb_http_route_list(ls) == NULL) {
            continue;
        }
        if (name) {
            if (strcmp(ls->name, name) == 0) {
                return ls;
            }
            continue;
        }
        score = 0;
        for (k = 0; port && k < ls->addrs.nelts; k++) {
            if (lb_http_route_addr_port(&lb_array_at(&ls->addrs, lb_addr_t, k)) == port) {
                score = 2;
            }
        }
        if (scheme && strcmp(ls->protocol, scheme) == 0) {
            score++;
        }
        if (score > best_score) {
            best = ls;
            best_score = score;
        }
    }
    return best;
}

/* "no http listener is called "x" (there are: a, b)" on stderr. */
static int
lb_http_route_ctl_no_listener(lb_cycle_t *cycle, const char *name)
{
    lb_listener_t  *ls;
    const char     *sep = "";
    size_t          i;

    fprintf(stderr, "lbctl: no http listener is called \"%s\" (", name);
    for (i = 0; i < cycle->listeners.nelts; i++) {
        ls = lb_array_at(&cycle->listeners, lb_listener_t *, i);
        if (lb_http_route_list(ls)) {
            fprintf(stderr, "%s%s\"%s\"", sep, *sep ? "" : "the http listeners are ",
                    ls->name);
            sep = ", ";
        }
    }
    fprintf(stderr, "%s)\n", *sep ? "" : "the configuration has none");
    return 1;
}

static int
lb_http_route_ctl(lb_cycle_t *cycle, int argc, char **argv)
{
    static lb_http_msg_t     msg;
    static char              req[16384], out[4096], uri[8192];
    const lb_addr_t         *a;
    lb_http_core_conf_t     *hcf, core;
    static lb_http_request_t  rq;
    lb_http_peer_t           peer;
    lb_conn_t                c;
    const lb_http_limits_t   limits = { sizeof(req), LB_HTTP_MAX_HEADERS, 8192 };
    const char              *method, *url, *path, *host = NULL, *listener = NULL, *colon;
    const lb_http_route_t   *r;
    lb_http_var_ctx_t        ctx;
    lb_listener_t           *ls;
    bool                     https = false;
    size_t                   caps[2 * LB_HTTP_ROUTE_MAX_CAPTURES], n, hostlen = 0;
    bool                     has_host = false;
    int                      ncaps = 0, k, len;
    unsigned                 port = 0;

    if (argc < 3) {
        return lb_http_route_ctl_fail("usage: %s", lb_http_route_commands[0].usage);
    }
    method = argv[1];
    url = argv[2];

    /* URL: absolute (scheme://host/path) or a path */
    if (strncmp(url, "http://", 7) == 0 || strncmp(url, "https://", 8) == 0) {
        https = url[4] == 's';
        host = strstr(url, "://") + 3;
        path = strchr(host, '/');
        hostlen = path ? (size_t) (path - host) : strlen(host);
        path = path ? path : "/";
        /* the port picks the listener: after "]" for "[::1]:8443" */
        colon = memchr(host, ']', hostlen);
        colon = memchr(colon ? colon : host, ':', hostlen - (size_t) ((colon ? colon : host) - host));
        port = colon ? (unsigned) strtoul(colon + 1, NULL, 10) : https ? 443 : 80;
    } else if (url[0] == '/') {
        path = url;
    } else {
        return lb_http_route_ctl_fail("the URL \"%s\" must start with http://, https:// or /",
                                      url);
    }

    /* a URL without a host and no -H Host is what an HTTP/1.0 client
     * without Host sends: it fails every host condition (HTTP/1.1 with an
     * empty Host would be refused with 400) */
    for (k = 3; k < argc; k++) {
        has_host |= strcmp(argv[k - 1], "-H") == 0 && strncasecmp(argv[k], "host:", 5) == 0;
    }
    len = snprintf(req, sizeof(req), "%s %s HTTP/1.%c\r\n", method, path,
                   host || has_host ? '1' : '0');
    n = len > 0 ? (size_t) len : 0;
    for (k = 3; k < argc && n < sizeof(req); k++) {
        if (strcmp(argv[k], "--listener") == 0 && k + 1 < argc) {
            listener = argv[++k];
        } else if (strcmp(argv[k], "-H") == 0 && k + 1 < argc) {
            k++;
            len = snprintf(req + n, sizeof(req) - n, "%s\r\n", argv[k]);
            n += len > 0 ? (size_t) len : 0;
        } else {
            return lb_http_route_ctl_fail("unexpected argument \"%s\"", argv[k]);
        }
    }
    if (!has_host && host && n < sizeof(req)) {
        len = snprintf(req + n, sizeof(req) - n, "Host: %.*s\r\n", (int) hostlen,
                       host ? host : "");
        n += len > 0 ? (size_t) len : 0;
    }
    if (n + 2 >= sizeof(req)) {
        return lb_http_route_ctl_fail("%s", "the request is too long");
    }
    memcpy(req + n, "\r\n", 2);
    n += 2;

    ls = lb_http_route_ctl_listener(cycle, listener, host ? (https ? "https" : "http") : NULL,
                                    port);
    if (ls == NULL) {
        return listener ? lb_http_route_ctl_no_listener(cycle, listener)
                        : lb_http_route_ctl_fail("%sthe configuration has no http listener", "");
    }
    hcf = ls->confs ? lb_get_conf(ls->confs, lb_http_core_module) : NULL;

    /* the variables read a connection: one that came to this listener,
     * over TLS (without a session) for an https URL, with no upstream */
    memset(&c, 0, sizeof(c));
    c.io = &lb_io_plain;
    if (https) {
        lb_tls_adopt(&c, NULL);
    }
    memset(&core, 0, sizeof(core));
    core.listener = ls;
    memset(&peer, 0, sizeof(peer));
    peer.local_known = 1;
    memset(&rq, 0, sizeof(rq));
    rq.c = &c;
    rq.conf = &core;
    rq.peer = &peer;
    rq.msg = &msg;
    rq.upstream_msec = -1;
    rq.upstream_connect_msec = -1;

    /* $host of a request without Host is the address it came to: the
     * listener's first, unless it is a wildcard */
    a = ls->addrs.nelts ? &lb_array_at(&ls->addrs, lb_addr_t, 0) : NULL;
    if (a && !a->wildcard && (a->u.sa.sa_family == AF_INET || a->u.sa.sa_family == AF_INET6)
        && inet_ntop(a->u.sa.sa_family, a->u.sa.sa_family == AF_INET
                                         ? (const void *) &a->u.sin.sin_addr
                                         : (const void *) &a->u.sin6.sin6_addr,
                     peer.local_ip, sizeof(peer.local_ip)) == NULL)
    {
        peer.local_ip[0] = '\0';
    }

    /* the listener's own parse and path normalisation, as a request gets */
    if (lb_http_parse_request_head(&msg, req, n, &limits) != LB_OK
        || lb_http_parse_uri(&msg, uri, sizeof(uri), hcf ? hcf->uri_flags
                                                         : LB_HTTP_URI_MERGE_SLASHES) != LB_OK)
    {
        fprintf(stderr, "lbctl: the listener would refuse this request with %d: %s\n",
                msg.error_status, msg.error ? msg.error : "malformed");
        return 1;
    }
    printf("listener: %s\n", ls->name);

    r = lb_http_route_match(ls, &msg, caps, &ncaps);
    if (r == NULL) {
        printf("route: none\nresponse: 404 Not Found\n");
        fprintf(stderr, "lbctl: no route of listener \"%s\" matches: it would answer 404\n",
                ls->name);
        return 1;
    }
    lb_http_route_describe(r, out, sizeof(out));
    printf("route: %s\n", out);

    memset(&ctx, 0, sizeof(ctx));
    ctx.r = &rq;
    ctx.request = &msg;
    ctx.capture_subject = msg.uri.data;
    ctx.captures = caps;
    ctx.ncaptures = ncaps;

    if (r->explain) {
        r->explain(r, &ctx);
    } else {
        printf("action: none built in serves it (502)\n");
    }
    return 0;
}
