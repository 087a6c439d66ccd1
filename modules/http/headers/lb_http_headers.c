/*
 * lb_http_headers.c: request_headers and response_headers (SPEC §3.5) at
 * listener and route level. Each is a group of set, add and remove lists
 * ("Name: value" with variables, or "Name" for remove), compiled at load.
 * A route's edits are merged with its listener's at load: the listener's
 * come first, and a name the route edits drops the listener's edits of
 * that name (the route wins). request_headers apply to the request sent
 * upstream (a forward filter); response_headers to every response (a
 * header filter): proxied ones, return and redirect routes, and lbd's own
 * errors (the listener's alone when no route was chosen yet).
 */
#include "lb_core.h"
#include "lb_http.h"
#include "lb_http_route.h"

typedef enum {
    LB_HTTP_EDIT_SET = 0,       /* remove every field of the name, then add */
    LB_HTTP_EDIT_ADD,           /* add one more field */
    LB_HTTP_EDIT_REMOVE,
} lb_http_edit_op_t;

typedef struct {
    lb_http_edit_op_t    op;
    lb_str_t             name;
    lb_http_complex_t   *value;     /* NULL for remove */
} lb_http_edit_t;

typedef struct {
    lb_http_edit_t      *edits;
    size_t               nedits;
} lb_http_edits_t;

typedef struct {
    lb_array_t           own[2];    /* of lb_http_edit_t: as written here */
    lb_http_edits_t      merged[2]; /* what applies: [0] request, [1] response */
} lb_http_headers_conf_t;

static int   lb_http_headers_set(lb_conf_t *cf, const lb_setting_t *s,
                                 config_setting_t *v, void *conf);
static void *lb_http_headers_create_conf(lb_conf_t *cf, unsigned ctx);
static int   lb_http_headers_merge_conf(lb_conf_t *cf, unsigned ctx, void *parent,
                                        void *conf);
static int   lb_http_headers_forward(lb_http_request_t *r, lb_http_head_t *h,
                                     const lb_http_var_ctx_t *ctx);
static int   lb_http_headers_response(lb_http_request_t *r);

static const char *const  lb_http_headers_protocols[] = { "http", "https", NULL };

static const lb_setting_t  lb_http_headers_settings[] = {
    { "request_headers", LB_SET_CUSTOM, LB_CTX_LISTENER | LB_CTX_ROUTE, NULL, 0, 0,
      offsetof(lb_http_headers_conf_t, own[0]), NULL, lb_http_headers_set, 0 },
    { "response_headers", LB_SET_CUSTOM, LB_CTX_LISTENER | LB_CTX_ROUTE, NULL, 0, 0,
      offsetof(lb_http_headers_conf_t, own[1]), NULL, lb_http_headers_set, 0 },
    lb_setting_end
};

static const lb_http_module_t  lb_http_headers_ctx = {
    NULL, NULL, NULL, lb_http_headers_forward, lb_http_headers_response
};

lb_module_t  lb_http_headers_module = {
    "http_headers", LB_MODULE_HTTP, lb_http_headers_protocols, lb_http_headers_settings,
    LB_CTX_LISTENER | LB_CTX_ROUTE,
    lb_http_headers_create_conf, lb_http_headers_merge_conf, NULL,
    NULL, NULL, NULL, &lb_http_headers_ctx, 0, NULL
};

/* Configuration ---------------------------------------------------------- */

static void *
lb_http_headers_create_conf(lb_conf_t *cf, unsigned ctx)
{
    lb_http_headers_conf_t  *hcf = lb_pcalloc(cf->pool, sizeof(*hcf));

    if (hcf == NULL || lb_array_init(&hcf->own[0], cf->pool, 4, sizeof(lb_http_edit_t)) != LB_OK
        || lb_array_init(&hcf->own[1], cf->pool, 4, sizeof(lb_http_edit_t)) != LB_OK)
    {
        return NULL;
    }
    return hcf;
}

static bool
lb_http_token_char(unsigned char ch)
{
    return ch > 0x20 && ch < 0x7f && strchr("\"(),/:;<=>?@[\\]{}", ch) == NULL;
}

typedef struct {
    lb_array_t         *edits;
    lb_http_edit_op_t   op;
    const char         *what;       /* "request_headers.set" */
} lb_http_edit_parse_t;

/* Fields that frame a message or concern one hop only: the proxy writes
 * them for each message (lb_http_relay.h), and an edit could undo that. */
static bool
lb_http_headers_framing(size_t len, const char *name)
{
    static const char *const  names[] = {
        "content-length", "transfer-encoding", "connection", "keep-alive", "te",
        "trailer", "upgrade", "proxy-connection", NULL
    };
    size_t  i;

    for (i = 0; names[i]; i++) {
        if (strlen(names[i]) == len && strncasecmp(name, names[i], len) == 0) {
            return true;
        }
    }
    return false;
}

/* One "Name: value" (set, add) or "Name" (remove). */
static int
lb_http_headers_push(lb_conf_t *cf, config_setting_t *elt, const char *str, void *arg)
{
    lb_http_edit_parse_t  *ep = arg;
    lb_http_edit_t        *e;
    const char            *p = str, *v;
    size_t                 i;

    while (lb_http_token_char((unsigned char) *p)) {
        p++;
    }
    if (p == str) {
        return lb_conf_error(cf, elt, "%s: \"%s\" does not start with a field name",
                             ep->what, str);
    }
    if (ep->op == LB_HTTP_EDIT_REMOVE) {
        if (*p != '\0') {
            return lb_conf_error(cf, elt, "%s: \"%s\" is not a field name (remove takes "
                                 "names only)", ep->what, str);
        }
        v = NULL;
    } else {
        if (*p != ':') {
            return lb_conf_error(cf, elt, "%s: \"%s\" is not \"Name: value\"", ep->what, str);
        }
        v = p + 1;
        while (*v == ' ' || *v == '\t') {
            v++;
        }
        for (i = 0; v[i]; i++) {
            if ((unsigned char) v[i] < 0x20 && v[i] != '\t') {
                return lb_conf_error(cf, elt, "%s: the value of \"%.*s\" holds a control "
                                     "character", ep->what, (int) (p - str), str);
            }
        }
    }
    if (lb_http_headers_framing((size_t) (p - str), str)) {
        return lb_conf_error(cf, elt, "%s: \"%.*s\" is framing or hop-by-hop: lbd writes it "
                             "itself for every message it forwards, so it cannot be edited",
                             ep->what, (int) (p - str), str);
    }
    if (ep->op != LB_HTTP_EDIT_SET && p - str == 4 && strncasecmp(str, "host", 4) == 0
        && strncmp(ep->what, "request_", 8) == 0)
    {
        return lb_conf_error(cf, elt, "%s: a forwarded request carries exactly one Host; "
                             "use set to replace it", ep->what);
    }
    e = lb_array_push(ep->edits);
    if (e == NULL) {
        return lb_conf_error(cf, elt, "out of memory");
    }
    e->op = ep->op;
    e->name.len = (size_t) (p - str);
    e->name.data = lb_palloc(cf->pool, e->name.len + 1);
    if (e->name.data == NULL) {
        return lb_conf_error(cf, elt, "out of memory");
    }
    memcpy(e->name.data, str, e->name.len);
    e->name.data[e->name.len] = '\0';
    e->value = NULL;
    if (v) {
        e->value = lb_http_complex_conf(cf, elt, v, ep->what);
        if (e->value == NULL) {
            return LB_ERROR;
        }
    }
    return LB_OK;
}

/* request_headers = { set = [...]; add = [...]; remove = [...]; } */
static int
lb_http_headers_set(lb_conf_t *cf, const lb_setting_t *s, config_setting_t *v, void *conf)
{
    static const char *const  ops[] = { "set", "add", "remove" };
    static const char *const  names[] = { "set", "add", "remove", NULL };
    lb_http_edit_parse_t      ep;
    config_setting_t         *elt;
    char                      what[64];
    int                       i, n, rc = LB_OK;
    size_t                    k;

    if (config_setting_type(v) != CONFIG_TYPE_GROUP) {
        return lb_conf_error(cf, v, "\"%s\" must be a group such as { set = [\"Name: value\"]; "
                             "add = [...]; remove = [\"Name\"]; }, not %s", s->name,
                             lb_conf_type_name(v));
    }
    ep.edits = (lb_array_t *) ((char *) conf + s->offset);
    n = config_setting_length(v);
    for (i = 0; i < n; i++) {
        elt = config_setting_get_elem(v, (unsigned) i);
        for (k = 0; k < 3; k++) {
            if (strcmp(config_setting_name(elt), ops[k]) == 0) {
                break;
            }
        }
        if (k == 3) {
            snprintf(what, sizeof(what), "\"%s\"", s->name);
            rc = lb_conf_unknown_name(cf, elt, what, names);
            continue;
        }
        snprintf(what, sizeof(what), "%s.%s", s->name, ops[k]);
        ep.op = (lb_http_edit_op_t) k;
        ep.what = what;
        if (lb_conf_each_string(cf, elt, lb_http_headers_push, &ep) != LB_OK) {
            rc = LB_ERROR;
        }
    }
    return rc;
}

static bool
lb_http_edits_name(const lb_array_t *a, const lb_str_t *name)
{
    const lb_http_edit_t  *e = a->elts;
    size_t                 i;

    for (i = 0; i < a->nelts; i++) {
        if (e[i].name.len == name->len && strncasecmp(e[i].name.data, name->data, name->len) == 0) {
            return true;
        }
    }
    return false;
}

/* A listener's edits are its own; a route's are its listener's, less the
 * names the route edits itself, then the route's. */
static int
lb_http_headers_merge_conf(lb_conf_t *cf, unsigned ctx, void *parent, void *conf)
{
    lb_http_headers_conf_t  *hcf = conf, *lcf = parent;
    const lb_http_edit_t    *le;
    lb_http_edits_t         *m;
    size_t                   k, i, n;

    for (k = 0; k < 2; k++) {
        m = &hcf->merged[k];
        n = hcf->own[k].nelts + (ctx == LB_CTX_ROUTE && lcf ? lcf->own[k].nelts : 0);
        if (n == 0) {
            continue;
        }
        m->edits = lb_palloc(cf->pool, n * sizeof(lb_http_edit_t));
        if (m->edits == NULL) {
            return LB_ERROR;
        }
        if (ctx == LB_CTX_ROUTE && lcf) {
            le = lcf->own[k].elts;
            for (i = 0; i < lcf->own[k].nelts; i++) {
                if (!lb_http_edits_name(&hcf->own[k], &le[i].name)) {
                    m->edits[m->nedits++] = le[i];
                }
            }
        }
        memcpy(m->edits + m->nedits, hcf->own[k].elts, hcf->own[k].nelts * sizeof(lb_http_edit_t));
        m->nedits += hcf->own[k].nelts;
    }
    return LB_OK;
}

/* Requests ---------------------------------------------------------------- */

static const lb_http_edits_t *
lb_http_headers_edits(lb_http_request_t *r, int k)
{
    lb_http_headers_conf_t  *hcf;

    if (r->route) {
        hcf = lb_get_conf(r->route->confs, lb_http_headers_module);
    } else {
        hcf = lb_get_conf(r->conf->listener->confs, lb_http_headers_module);
    }
    return hcf ? &hcf->merged[k] : NULL;
}

static void
lb_http_headers_clean(char *p, size_t n)
{
    size_t  i;

    for (i = 0; i < n; i++) {
        if ((unsigned char) p[i] < 0x20 && p[i] != '\t') {
            p[i] = ' ';
        }
    }
}

static int
lb_http_headers_apply(const lb_http_edits_t *es, lb_http_head_t *h,
                      const lb_http_var_ctx_t *ctx)
{
    const lb_http_edit_t  *e;
    size_t                 i, vlen, need;

    for (i = 0; es && i < es->nedits && !h->overflow; i++) {
        e = &es->edits[i];
        if (e->op != LB_HTTP_EDIT_ADD) {
            lb_http_head_remove(h, e->name.data, e->name.len);
        }
        if (e->op == LB_HTTP_EDIT_REMOVE) {
            continue;
        }
        /* evaluated in place: "Name: " then the value, then CRLF */
        vlen = lb_http_complex_eval(e->value, ctx, NULL, 0);
        need = e->name.len + 2 + vlen + 2;
        if (h->size - h->len < need) {
            h->overflow = true;
            break;
        }
        memcpy(h->data + h->len, e->name.data, e->name.len);
        memcpy(h->data + h->len + e->name.len, ": ", 2);
        lb_http_complex_eval(e->value, ctx, h->data + h->len + e->name.len + 2, vlen);
        /* the parser lets no control byte into what variables read, so a
         * value cannot split the field; checked anyway, cheaply */
        lb_http_headers_clean(h->data + h->len + e->name.len + 2, vlen);
        memcpy(h->data + h->len + need - 2, "\r\n", 2);
        h->len += need;
    }
    return h->overflow ? LB_ERROR : LB_OK;
}

static int
lb_http_headers_forward(lb_http_request_t *r, lb_http_head_t *h, const lb_http_var_ctx_t *ctx)
{
    return lb_http_headers_apply(lb_http_headers_edits(r, 0), h, ctx);
}

/* response_headers: edits of r->out, the values evaluated into the
 * request's arena. */
static int
lb_http_headers_response(lb_http_request_t *r)
{
    const lb_http_edits_t  *es = lb_http_headers_edits(r, 1);
    const lb_http_edit_t   *e;
    lb_http_var_ctx_t       ctx;
    size_t                  i, vlen;
    char                   *v;

    if (es == NULL || es->nedits == 0) {
        return LB_OK;
    }
    lb_http_var_ctx(r, &ctx, r->out.status);
    for (i = 0; i < es->nedits; i++) {
        e = &es->edits[i];
        if (e->op != LB_HTTP_EDIT_ADD) {
            lb_http_out_remove(r, e->name.data, e->name.len);
        }
        if (e->op == LB_HTTP_EDIT_REMOVE) {
            continue;
        }
        vlen = lb_http_complex_eval(e->value, &ctx, NULL, 0);
        v = lb_http_request_alloc(r, vlen + 1);
        if (v == NULL) {
            lb_log_error(0, "*%llu client %s: response_headers do not fit in %d bytes",
                         (unsigned long long) r->c->id, r->c->peer_text,
                         LB_HTTP_ARENA_SIZE);
            return LB_ERROR;
        }
        lb_http_complex_eval(e->value, &ctx, v, vlen);
        /* the parser lets no control byte into what variables read, so a
         * value cannot split the field; checked anyway, cheaply */
        lb_http_headers_clean(v, vlen);
        if (lb_http_out_add(r, e->name.data, e->name.len, v, vlen) != LB_OK) {
            return LB_ERROR;
        }
    }
    return LB_OK;
}
