/*
 * lb_http_gzip.c: gzip compression of responses (SPEC §3.6), a header
 * filter that decides and edits the head, and a body filter that streams
 * the body through zlib's deflate into a fixed buffer. It owns the
 * `gzip` group of http and https listeners and routes, the per-worker
 * deflate streams and $gzip_ratio.
 *
 * The decision is in lb_http_gzip_decide (lb_http_gzip.h). What this file
 * adds to it:
 * - Vary: Accept-Encoding goes on every response that is compressed, and
 *   on every one that would have been for another request (the client
 *   refused gzip, HEAD, Range): a cache must not give a compressed copy
 *   to a client that cannot read it, nor a plain one where it could be
 *   smaller (nginx calls this gzip_vary).
 * - A compressed response loses its length (r->out.content_length = -1:
 *   the writer chunks it, or closes after it for HTTP/1.0), its
 *   Accept-Ranges (ranges of the compressed bytes are not served) and
 *   any strength of its ETag.
 * - Streams: deflate with a gzip wrapper (windowBits 15 + 16), memLevel
 *   8, at the group's level. A worker keeps its streams on free lists,
 *   one per level, reset and ready, up to LB_HTTP_GZIP_FREE_MAX in all,
 *   so a warm worker allocates nothing per response. A stream goes back
 *   when the last of its response went down, or in the log phase when
 *   the request ended first.
 * - Memory is bounded per response: input is taken only while the
 *   output buffer has room; output the next filter could not take is
 *   kept, and no input is taken, until it went (lb_http_request.h).
 *   Deflate holds what it has not written out yet until its blocks fill,
 *   the buffer fills, the body ends, or a flush (a call without input)
 *   asks for what is held.
 */
#include "lb_core.h"
#include "lb_http.h"
#include "lb_http_route.h"
#include "lb_http_gzip.h"

#include <zlib.h>

#define LB_HTTP_GZIP_BUF        16384   /* output buffer of one stream */
#define LB_HTTP_GZIP_FREE_MAX   32      /* streams kept idle per worker */
#define LB_HTTP_GZIP_WBITS      (15 + 16)   /* 32 KiB window, gzip wrapper */
#define LB_HTTP_GZIP_MEMLEVEL   8

typedef struct lb_http_gzip_ctx_s  lb_http_gzip_ctx_t;

/* A deflate stream and its output buffer, on a free list or in use. */
typedef struct {
    z_stream              z;
    lb_queue_t            link;     /* on a free list, or the busy list */
    lb_http_gzip_ctx_t   *owner;    /* the request using it, or NULL */
    int                   level;
    unsigned              finished:1;   /* deflate ended the gzip member */
    unsigned              unflushed:1;  /* input went in since the last flush */
    unsigned              ready:1;      /* out should go down now */
    lb_chain_t            out;          /* made, not yet taken below: in buf */
    char                  buf[LB_HTTP_GZIP_BUF];
} lb_http_gzip_stream_t;

/* Per request, from its arena: readable until the request ends, so that
 * the log phase can read $gzip_ratio after the stream went back. */
struct lb_http_gzip_ctx_s {
    lb_http_gzip_stream_t  *zs;         /* NULL once it went back */
    uint64_t                in;         /* body bytes taken */
    uint64_t                out;        /* gzip bytes made */
    unsigned                compress:1; /* this response is compressed */
    unsigned                below:1;    /* the next filter said LB_AGAIN */
    unsigned                done:1;     /* the end went down whole */
};

static int   lb_http_gzip_set(lb_conf_t *cf, const lb_setting_t *s, config_setting_t *v,
                              void *conf);
static int   lb_http_gzip_set_types(lb_conf_t *cf, const lb_setting_t *s,
                                    config_setting_t *v, void *conf);
static void *lb_http_gzip_create_conf(lb_conf_t *cf, unsigned ctx);
static int   lb_http_gzip_merge_conf(lb_conf_t *cf, unsigned ctx, void *parent, void *conf);
static void  lb_http_gzip_exit_worker(lb_cycle_t *cycle);
static int   lb_http_gzip_header_filter(lb_http_request_t *r);
static int   lb_http_gzip_body_filter(lb_http_request_t *r, lb_chain_t *in, bool last);
static void  lb_http_gzip_log(lb_http_request_t *r);
static void  lb_http_gzip_var_ratio(lb_http_var_out_t *out, const lb_http_var_ctx_t *ctx,
                                    lb_str_t arg);

static const char *const  lb_http_gzip_protocols[] = { "http", "https", NULL };

/* The members of gzip = { }. enabled has no default here: a written
 * group turns gzip on (SPEC §3), no group leaves it off. */
static const lb_setting_t  lb_http_gzip_group[] = {
    { "enabled", LB_SET_BOOL, 0, NULL, 0, 0,
      offsetof(lb_http_gzip_conf_t, enabled), NULL, NULL, 0 },
    { "level", LB_SET_INT, 0, "5", 1, 9,
      offsetof(lb_http_gzip_conf_t, level), NULL, NULL, 0 },
    { "min_length", LB_SET_SIZE, 0, "256", 0, (int64_t) 1 << 40,
      offsetof(lb_http_gzip_conf_t, min_length), NULL, NULL, 0 },
    { "types", LB_SET_CUSTOM, 0, NULL, 0, 0,
      offsetof(lb_http_gzip_conf_t, types), NULL, lb_http_gzip_set_types, 0 },
    lb_setting_end
};

static const lb_setting_t  lb_http_gzip_settings[] = {
    { "gzip", LB_SET_CUSTOM, LB_CTX_LISTENER | LB_CTX_ROUTE, NULL, 0, 0, 0, NULL,
      lb_http_gzip_set, 0 },
    lb_setting_end
};

static const lb_http_var_def_t  lb_http_gzip_variables[] = {
    { "gzip_ratio", lb_http_gzip_var_ratio, 0 },
    { NULL, NULL, 0 }
};

static const lb_http_module_t  lb_http_gzip_ctx = {
    .header_filter = lb_http_gzip_header_filter,
    .log = lb_http_gzip_log,
    .variables = lb_http_gzip_variables,
    .body_filter = lb_http_gzip_body_filter,
};

lb_module_t  lb_http_gzip_module = {
    "http_gzip", LB_MODULE_HTTP, lb_http_gzip_protocols, lb_http_gzip_settings,
    LB_CTX_LISTENER | LB_CTX_ROUTE,
    lb_http_gzip_create_conf, lb_http_gzip_merge_conf, NULL,
    NULL, NULL, lb_http_gzip_exit_worker, &lb_http_gzip_ctx, 0, NULL
};

/* The types compressed when a group does not say. */
static const char *const  lb_http_gzip_default_types[] = {
    "text/html", "text/css", "text/plain", "application/json",
    "application/javascript", "image/svg+xml", NULL
};

/* Configuration ---------------------------------------------------------- */

static bool
lb_http_gzip_tchar(unsigned char ch)
{
    return ch > 0x20 && ch < 0x7f && strchr("\"(),/:;<=>?@[\\]{}", ch) == NULL;
}

typedef struct {
    lb_http_gzip_types_t  *types;
    lb_array_t             list;        /* of lb_str_t */
} lb_http_gzip_types_parse_t;

/* Adds one entry of types: "*", "type/subtype", or a type, a slash and
 * a star (kept as "type/"), lowercased. LB_OK, LB_DECLINED (not one of
 * those forms) or LB_ERROR (no memory). */
static int
lb_http_gzip_add_type(lb_pool_t *pool, lb_http_gzip_types_parse_t *tp, const char *str)
{
    const char  *p = str, *slash;
    lb_str_t    *t;
    size_t       i, len;

    if (strcmp(str, "*") == 0) {
        tp->types->any = true;
        return LB_OK;
    }
    while (lb_http_gzip_tchar((unsigned char) *p)) {
        p++;
    }
    slash = p;
    if (slash == str || *slash != '/') {
        return LB_DECLINED;
    }
    p++;
    if (p[0] == '*' && p[1] == '\0') {
        len = (size_t) (p - str);
        p++;
    } else {
        while (lb_http_gzip_tchar((unsigned char) *p)) {
            p++;
        }
        len = (size_t) (p - str);
    }
    if (p == slash + 1 || *p != '\0') {
        return LB_DECLINED;
    }
    t = lb_array_push(&tp->list);
    if (t == NULL || (t->data = lb_palloc(pool, len + 1)) == NULL) {
        return LB_ERROR;
    }
    for (i = 0; i < len; i++) {
        t->data[i] = lb_http_var_lower(str[i]);
    }
    t->data[len] = '\0';
    t->len = len;
    return LB_OK;
}

static int
lb_http_gzip_push_type(lb_conf_t *cf, config_setting_t *elt, const char *str, void *arg)
{
    switch (lb_http_gzip_add_type(cf->pool, arg, str)) {
    case LB_OK:
        return LB_OK;
    case LB_DECLINED:
        return lb_conf_error(cf, elt, "invalid type \"%s\" in \"types\" of \"gzip\": expected "
                             "\"type/subtype\" without parameters, \"type/*\" or \"*\"", str);
    default:
        return lb_conf_error(cf, elt, "out of memory");
    }
}

/* types = ["text/html", ...]: replaces the list (the defaults included). */
static int
lb_http_gzip_set_types(lb_conf_t *cf, const lb_setting_t *s, config_setting_t *v, void *conf)
{
    lb_http_gzip_types_parse_t  tp;

    tp.types = (lb_http_gzip_types_t *) ((char *) conf + s->offset);
    tp.types->any = false;
    if (lb_array_init(&tp.list, cf->pool, 8, sizeof(lb_str_t)) != LB_OK) {
        return lb_conf_error(cf, v, "out of memory");
    }
    if (lb_conf_each_string(cf, v, lb_http_gzip_push_type, &tp) != LB_OK) {
        return LB_ERROR;
    }
    tp.types->types = tp.list.elts;
    tp.types->ntypes = tp.list.nelts;
    return LB_OK;
}

/* The defaults of a block with no gzip group, and the starting point of
 * one that has it. */
static int
lb_http_gzip_defaults(lb_conf_t *cf, lb_http_gzip_conf_t *gcf)
{
    lb_http_gzip_types_parse_t  tp;
    size_t                      i;

    memset(gcf, 0, sizeof(*gcf));
    if (lb_conf_set_defaults(cf, lb_http_gzip_group, gcf) != LB_OK
        || lb_array_init(&tp.list, cf->pool, 8, sizeof(lb_str_t)) != LB_OK)
    {
        return LB_ERROR;
    }
    tp.types = &gcf->types;
    for (i = 0; lb_http_gzip_default_types[i]; i++) {
        if (lb_http_gzip_add_type(cf->pool, &tp, lb_http_gzip_default_types[i]) != LB_OK) {
            return LB_ERROR;
        }
    }
    gcf->types.types = tp.list.elts;
    gcf->types.ntypes = tp.list.nelts;
    return LB_OK;
}

static void *
lb_http_gzip_create_conf(lb_conf_t *cf, unsigned ctx)
{
    lb_http_gzip_conf_t  *gcf = lb_palloc(cf->pool, sizeof(*gcf));

    lb_unused(ctx);
    if (gcf == NULL || lb_http_gzip_defaults(cf, gcf) != LB_OK) {
        return NULL;
    }
    return gcf;
}

/* gzip = { enabled; level; min_length; types; } */
static int
lb_http_gzip_set(lb_conf_t *cf, const lb_setting_t *s, config_setting_t *v, void *conf)
{
    lb_http_gzip_conf_t  *gcf = conf;

    lb_unused(s);
    gcf->enabled = 1;
    gcf->set = true;
    return lb_conf_parse_group(cf, v, lb_http_gzip_group, gcf);
}

/* A route without a gzip group of its own follows its listener's. */
static int
lb_http_gzip_merge_conf(lb_conf_t *cf, unsigned ctx, void *parent, void *conf)
{
    lb_http_gzip_conf_t  *gcf = conf, *lcf = parent;

    lb_unused(cf);
    if (ctx == LB_CTX_ROUTE && lcf && !gcf->set) {
        *gcf = *lcf;
        gcf->set = false;
    }
    return LB_OK;
}

static const lb_http_gzip_conf_t *
lb_http_gzip_conf(lb_http_request_t *r)
{
    if (r->route) {
        return lb_get_conf(r->route->confs, lb_http_gzip_module);
    }
    if (r->conf && r->conf->listener) {
        return lb_get_conf(r->conf->listener->confs, lb_http_gzip_module);
    }
    return NULL;
}

/* The decision ----------------------------------------------------------- */

static bool
lb_http_gzip_ows(char c)
{
    return c == ' ' || c == '\t';
}

/* A weight (RFC 9110 §12.4.2): "0", "0.5", "1", "1.000", in thousandths;
 * -1 when it is none of those. */
static int
lb_http_gzip_qvalue(const char *p, size_t n)
{
    int     q, scale = 100;
    size_t  i;

    if (n == 0 || (p[0] != '0' && p[0] != '1')) {
        return -1;
    }
    q = (p[0] - '0') * 1000;
    if (n == 1) {
        return q;
    }
    if (p[1] != '.' || n > 5) {
        return -1;
    }
    for (i = 2; i < n; i++, scale /= 10) {
        if (p[i] < '0' || p[i] > '9') {
            return -1;
        }
        q += (p[i] - '0') * scale;
    }
    return q > 1000 ? -1 : q;
}

/* Folds one Accept-Encoding value into the weights of gzip (x-gzip too)
 * and of "*"; -1 while not listed. A listed coding without a weight
 * has 1000; a malformed weight counts as 0. */
static void
lb_http_gzip_accept_value(lb_str_t v, int *gzip_q, int *star_q)
{
    const char  *p = v.data, *end = v.data + v.len, *e, *name, *q;
    size_t       nlen;
    int          w;

    while (p < end) {
        e = memchr(p, ',', (size_t) (end - p));
        if (e == NULL) {
            e = end;
        }
        /* one element: coding *( OWS ";" OWS param ) */
        while (p < e && lb_http_gzip_ows(*p)) {
            p++;
        }
        name = p;
        while (p < e && *p != ';' && !lb_http_gzip_ows(*p)) {
            p++;
        }
        nlen = (size_t) (p - name);
        w = 1000;
        while (p < e) {
            if (*p++ != ';') {
                continue;
            }
            while (p < e && lb_http_gzip_ows(*p)) {
                p++;
            }
            if (e - p >= 2 && (p[0] == 'q' || p[0] == 'Q') && p[1] == '=') {
                q = p + 2;
                p = q;
                while (p < e && *p != ';' && !lb_http_gzip_ows(*p)) {
                    p++;
                }
                w = lb_http_gzip_qvalue(q, (size_t) (p - q));
                if (w < 0) {
                    w = 0;
                }
            }
        }
        if (lb_http_name_eq(name, nlen, "gzip", 4) || lb_http_name_eq(name, nlen, "x-gzip", 6)) {
            *gzip_q = lb_max(*gzip_q, w);
        } else if (nlen == 1 && name[0] == '*') {
            *star_q = lb_max(*star_q, w);
        }
        p = e + 1;
    }
}

bool
lb_http_gzip_accepts(const lb_http_msg_t *msg)
{
    const lb_http_header_t  *h;
    int                      gzip_q = -1, star_q = -1;
    size_t                   i;

    for (i = 0; i < msg->nheaders; i++) {
        h = &msg->headers[i];
        if (lb_http_name_eq(h->name.data, h->name.len, "accept-encoding", 15)) {
            lb_http_gzip_accept_value(h->value, &gzip_q, &star_q);
        }
    }
    if (gzip_q >= 0) {
        return gzip_q > 0;
    }
    return star_q > 0;
}

bool
lb_http_gzip_type_matches(const lb_http_gzip_types_t *types, lb_str_t ct)
{
    const lb_str_t  *t;
    size_t           i, n = 0;

    while (n < ct.len && ct.data[n] != ';' && !lb_http_gzip_ows(ct.data[n])) {
        n++;
    }
    if (n == 0) {
        return false;
    }
    if (types->any) {
        return true;
    }
    for (i = 0; i < types->ntypes; i++) {
        t = &types->types[i];
        if (t->data[t->len - 1] == '/') {
            if (n > t->len && strncasecmp(ct.data, t->data, t->len) == 0) {
                return true;
            }
        } else if (lb_http_name_eq(ct.data, n, t->data, t->len)) {
            return true;
        }
    }
    return false;
}

bool
lb_http_gzip_list_has(lb_str_t value, const char *token, size_t len)
{
    const char  *p = value.data, *end = value.data + value.len, *e, *t;

    while (p < end) {
        e = memchr(p, ',', (size_t) (end - p));
        if (e == NULL) {
            e = end;
        }
        while (p < e && lb_http_gzip_ows(*p)) {
            p++;
        }
        t = p;
        while (p < e && *p != '=' && *p != ';' && !lb_http_gzip_ows(*p)) {
            p++;
        }
        if (lb_http_name_eq(t, (size_t) (p - t), token, len)) {
            return true;
        }
        p = e + 1;
    }
    return false;
}

/* Whether any response field called name has token in its list. */
static bool
lb_http_gzip_out_has(lb_http_request_t *r, const char *name, size_t nlen, const char *token,
                     size_t tlen)
{
    const lb_http_header_t  *f;
    size_t                   i;

    for (i = 0; i < r->out.nfields; i++) {
        f = &r->out.fields[i];
        if (lb_http_name_eq(f->name.data, f->name.len, name, nlen)
            && lb_http_gzip_list_has(f->value, token, tlen))
        {
            return true;
        }
    }
    return false;
}

lb_http_gzip_decision_t
lb_http_gzip_decide(lb_http_request_t *r, const lb_http_gzip_conf_t *conf)
{
    const lb_http_header_t  *f;
    int                      st = r->out.status;
    size_t                   i;

    if (conf == NULL || !conf->enabled || st < 200 || st == 204 || st == 206 || st == 304
        || r->out.upgrade)
    {
        return LB_HTTP_GZIP_NO;
    }
    for (i = 0; i < r->out.nfields; i++) {
        f = &r->out.fields[i];
        if (lb_http_name_eq(f->name.data, f->name.len, "content-encoding", 16)
            && !lb_http_name_eq(f->value.data, f->value.len, "identity", 8))
        {
            return LB_HTTP_GZIP_NO;
        }
    }
    if (lb_http_gzip_out_has(r, "cache-control", 13, "no-transform", 12)) {
        return LB_HTTP_GZIP_NO;
    }
    f = lb_http_out_find(r, "Content-Type", 12);
    if (f == NULL || !lb_http_gzip_type_matches(&conf->types, f->value)) {
        return LB_HTTP_GZIP_NO;
    }
    if (r->out.content_length >= 0 && r->out.content_length < conf->min_length) {
        return LB_HTTP_GZIP_NO;
    }
    if (r->head_method || r->msg == NULL || lb_http_find_header(r->msg, "Range") != NULL
        || !lb_http_gzip_accepts(r->msg))
    {
        return LB_HTTP_GZIP_VARY;
    }
    return LB_HTTP_GZIP_YES;
}

/* Head edits ------------------------------------------------------------- */

int
lb_http_gzip_vary(lb_http_request_t *r)
{
    static const char        ae[] = "Accept-Encoding";
    lb_http_header_t        *f, *last = NULL;
    char                    *v;
    size_t                   i, len;

    for (i = 0; i < r->out.nfields; i++) {
        f = &r->out.fields[i];
        if (!lb_http_name_eq(f->name.data, f->name.len, "vary", 4)) {
            continue;
        }
        if (lb_http_gzip_list_has(f->value, "accept-encoding", 15)
            || lb_http_gzip_list_has(f->value, "*", 1))
        {
            return LB_OK;
        }
        last = f;
    }
    if (last == NULL) {
        return lb_http_out_add(r, "Vary", 4, ae, sizeof(ae) - 1);
    }
    if (last->value.len == 0) {
        last->value.data = (char *) ae;
        last->value.len = sizeof(ae) - 1;
        return LB_OK;
    }
    len = last->value.len + 2 + sizeof(ae) - 1;
    v = lb_http_request_alloc(r, len);
    if (v == NULL) {
        return LB_ERROR;
    }
    memcpy(v, last->value.data, last->value.len);
    memcpy(v + last->value.len, ", ", 2);
    memcpy(v + last->value.len + 2, ae, sizeof(ae) - 1);
    last->value.data = v;
    last->value.len = len;
    return LB_OK;
}

int
lb_http_gzip_weaken_etag(lb_http_request_t *r)
{
    lb_http_header_t  *f = lb_http_out_find(r, "ETag", 4);
    char              *v;

    if (f == NULL || (f->value.len >= 2 && memcmp(f->value.data, "W/", 2) == 0)) {
        return LB_OK;
    }
    if (f->value.len == 0 || f->value.data[0] != '"') {
        lb_http_out_remove(r, "ETag", 4);
        return LB_OK;
    }
    v = lb_http_request_alloc(r, f->value.len + 2);
    if (v == NULL) {
        return LB_ERROR;
    }
    memcpy(v, "W/", 2);
    memcpy(v + 2, f->value.data, f->value.len);
    f->value.data = v;
    f->value.len += 2;
    return LB_OK;
}

size_t
lb_http_gzip_ratio(uint64_t in, uint64_t out, char *buf, size_t size)
{
    uint64_t  whole = in / out, rest = in % out, frac;
    int       n;

    /* rounded to the nearest hundredth; rest * 100 stays far from
     * overflow for any body a worker can send */
    frac = (rest * 100 + out / 2) / out;
    if (frac == 100) {
        whole++;
        frac = 0;
    }
    n = snprintf(buf, size, "%llu.%02llu", (unsigned long long) whole,
                 (unsigned long long) frac);
    return n < 0 ? 0 : lb_min((size_t) n, size ? size - 1 : 0);
}

/* Deflate streams, per worker -------------------------------------------- */

static lb_queue_t  lb_http_gzip_free[9];    /* by level - 1 */
static lb_queue_t  lb_http_gzip_busy;       /* in use by a response */
static size_t      lb_http_gzip_nfree;
static bool        lb_http_gzip_lists;

static void
lb_http_gzip_lists_init(void)
{
    size_t  i;

    for (i = 0; i < lb_nelems(lb_http_gzip_free); i++) {
        lb_queue_init(&lb_http_gzip_free[i]);
    }
    lb_queue_init(&lb_http_gzip_busy);
    lb_http_gzip_lists = true;
}

/* A reset stream at level, from the free list or new; NULL when memory
 * or zlib fails (the response then goes uncompressed). */
static lb_http_gzip_stream_t *
lb_http_gzip_stream_get(lb_http_gzip_ctx_t *owner, int level)
{
    lb_http_gzip_stream_t  *zs;
    lb_queue_t             *q;
    int                     rc;

    if (!lb_http_gzip_lists) {
        lb_http_gzip_lists_init();
    }
    q = &lb_http_gzip_free[level - 1];
    if (!lb_queue_empty(q)) {
        zs = lb_queue_data(lb_queue_head(q), lb_http_gzip_stream_t, link);
        lb_queue_remove(&zs->link);
        lb_http_gzip_nfree--;
    } else {
        zs = malloc(sizeof(*zs));
        if (zs == NULL) {
            lb_log_error(errno, "gzip: cannot allocate a deflate stream");
            return NULL;
        }
        memset(&zs->z, 0, sizeof(zs->z));
        rc = deflateInit2(&zs->z, level, Z_DEFLATED, LB_HTTP_GZIP_WBITS,
                          LB_HTTP_GZIP_MEMLEVEL, Z_DEFAULT_STRATEGY);
        if (rc != Z_OK) {
            lb_log_error(0, "gzip: deflateInit2 failed (%d)", rc);
            free(zs);
            return NULL;
        }
        zs->level = level;
        lb_queue_init(&zs->link);
    }
    zs->owner = owner;
    zs->finished = 0;
    zs->unflushed = 0;
    zs->ready = 0;
    lb_chain_link_set(&zs->out, zs->buf, 0);
    lb_queue_insert_tail(&lb_http_gzip_busy, &zs->link);
    return zs;
}

static void
lb_http_gzip_stream_free(lb_http_gzip_stream_t *zs)
{
    if (zs->owner) {
        zs->owner->zs = NULL;
    }
    lb_queue_remove(&zs->link);
    deflateEnd(&zs->z);
    free(zs);
}

/* Gives the stream of ctx back: reset onto its free list, or freed past
 * the cap. */
static void
lb_http_gzip_release(lb_http_gzip_ctx_t *ctx)
{
    lb_http_gzip_stream_t  *zs = ctx->zs;

    if (zs == NULL) {
        return;
    }
    ctx->zs = NULL;
    zs->owner = NULL;
    if (lb_http_gzip_nfree >= LB_HTTP_GZIP_FREE_MAX || deflateReset(&zs->z) != Z_OK) {
        lb_http_gzip_stream_free(zs);
        return;
    }
    lb_queue_remove(&zs->link);
    lb_queue_insert_head(&lb_http_gzip_free[zs->level - 1], &zs->link);
    lb_http_gzip_nfree++;
}

/* Frees every stream of the worker; one still in use (a request the
 * exit cut short) is taken from its request first, so that a log phase
 * run after this finds nothing to give back. */
static void
lb_http_gzip_exit_worker(lb_cycle_t *cycle)
{
    lb_queue_t  *q;
    size_t       i;

    lb_unused(cycle);
    if (!lb_http_gzip_lists) {
        return;
    }
    for (i = 0; i <= lb_nelems(lb_http_gzip_free); i++) {
        q = i < lb_nelems(lb_http_gzip_free) ? &lb_http_gzip_free[i] : &lb_http_gzip_busy;
        while (!lb_queue_empty(q)) {
            lb_http_gzip_stream_free(lb_queue_data(lb_queue_head(q), lb_http_gzip_stream_t,
                                                   link));
        }
    }
    lb_http_gzip_nfree = 0;
}

/* Filters ---------------------------------------------------------------- */

static int
lb_http_gzip_header_filter(lb_http_request_t *r)
{
    lb_http_gzip_ctx_t         *ctx = lb_http_request_ctx(r, lb_http_gzip_module);
    const lb_http_gzip_conf_t  *conf = lb_http_gzip_conf(r);
    lb_http_gzip_decision_t     d;

    /* a second head for the same request (an error answered in place of
     * a head a later filter refused) starts over */
    if (ctx) {
        lb_http_gzip_release(ctx);
        memset(ctx, 0, sizeof(*ctx));
    }
    d = lb_http_gzip_decide(r, conf);
    if (d == LB_HTTP_GZIP_NO) {
        return LB_OK;
    }
    /* Vary goes on whatever follows: this response may be cached for
     * clients that would get it compressed */
    if (lb_http_gzip_vary(r) != LB_OK || d == LB_HTTP_GZIP_VARY) {
        return LB_OK;
    }
    /* Content-Encoding and Accept-Ranges may be removed and one field
     * added: room for it, or the response goes as it is */
    if (r->out.nfields + 1 > LB_HTTP_OUT_FIELDS) {
        return LB_OK;
    }
    if (ctx == NULL) {
        ctx = (lb_http_gzip_ctx_t *) lb_http_request_alloc(r, sizeof(*ctx));
        if (ctx == NULL) {
            return LB_OK;
        }
        memset(ctx, 0, sizeof(*ctx));
        lb_http_request_set_ctx(r, lb_http_gzip_module, ctx);
    }
    ctx->zs = lb_http_gzip_stream_get(ctx, (int) conf->level);
    if (ctx->zs == NULL) {
        return LB_OK;
    }
    if (lb_http_gzip_weaken_etag(r) != LB_OK) {
        lb_http_gzip_release(ctx);
        return LB_OK;
    }
    ctx->compress = 1;
    lb_http_out_remove(r, "Content-Encoding", 16);      /* "identity" */
    lb_http_out_remove(r, "Accept-Ranges", 13);
    if (lb_http_out_add(r, "Content-Encoding", 16, "gzip", 4) != LB_OK) {
        return LB_ERROR;                    /* cannot be: room was checked */
    }
    r->out.content_length = -1;
    return LB_OK;
}

/* The first link of in with bytes that are body data, or NULL; *trailers
 * receives the first trailer line link (they come after all the data). */
static lb_chain_t *
lb_http_gzip_next_data(lb_chain_t *in, lb_chain_t **trailers)
{
    lb_chain_t  *cl;

    *trailers = NULL;
    for (cl = in; cl; cl = cl->next) {
        if (cl->trailer) {
            *trailers = cl;
            return NULL;
        }
        if (cl->pos < cl->last) {
            return cl;
        }
    }
    return NULL;
}

/* Passes what the stream made down the chain: with the end of the body
 * once deflate ended the member, followed by the trailer lines of the
 * input. LB_OK: all taken (the buffer is empty again); LB_AGAIN: the
 * next filter holds bytes, or left some of ours; LB_ERROR. */
static int
lb_http_gzip_send(lb_http_request_t *r, lb_http_gzip_ctx_t *ctx, lb_chain_t *trailers)
{
    lb_http_gzip_stream_t  *zs = ctx->zs;
    lb_chain_t             *out = NULL;
    int                     rc;

    zs->out.next = zs->finished ? trailers : NULL;
    if (zs->out.pos < zs->out.last) {
        out = &zs->out;
    } else if (zs->finished) {
        out = trailers;
    }
    rc = lb_http_next_body_filter(r, out, zs->finished);
    if (rc == LB_ERROR) {
        return LB_ERROR;
    }
    ctx->below = rc == LB_AGAIN;
    if (zs->out.pos < zs->out.last) {
        return LB_AGAIN;
    }
    lb_chain_link_set(&zs->out, zs->buf, 0);
    zs->ready = 0;
    return rc;
}

static int
lb_http_gzip_body_filter(lb_http_request_t *r, lb_chain_t *in, bool last)
{
    lb_http_gzip_ctx_t     *ctx = lb_http_request_ctx(r, lb_http_gzip_module);
    lb_http_gzip_stream_t  *zs;
    lb_chain_t             *cl, *trailers;
    size_t                  len, taken, made;
    int                     flush, rc;

    if (ctx == NULL || !ctx->compress || ctx->done) {
        return lb_http_next_body_filter(r, in, last);
    }
    zs = ctx->zs;
    if (zs == NULL) {
        return LB_ERROR;                    /* the request already ended */
    }
    for ( ;; ) {
        cl = lb_http_gzip_next_data(in, &trailers);

        /* what was made goes first; nothing more is taken while the next
         * filter holds bytes */
        if (zs->ready || zs->finished || ctx->below) {
            rc = lb_http_gzip_send(r, ctx, trailers);
            if (rc != LB_OK) {
                return rc;
            }
            if (zs->finished) {
                ctx->done = 1;
                lb_http_gzip_release(ctx);
                return LB_OK;
            }
        }

        if (cl) {
            len = lb_chain_link_len(cl);
            zs->z.next_in = (Bytef *) cl->pos;
            zs->z.avail_in = (uInt) lb_min(len, (size_t) UINT32_MAX);
            flush = Z_NO_FLUSH;
        } else if (last) {
            zs->z.avail_in = 0;
            flush = Z_FINISH;
        } else if (in == NULL && (zs->unflushed || zs->out.last > zs->out.pos)) {
            zs->z.avail_in = 0;
            flush = Z_SYNC_FLUSH;
        } else {
            return LB_OK;                   /* all of in went into deflate */
        }
        len = zs->z.avail_in;
        zs->z.next_out = (Bytef *) zs->out.last;
        zs->z.avail_out = (uInt) (zs->buf + LB_HTTP_GZIP_BUF - zs->out.last);

        rc = deflate(&zs->z, flush);
        if (rc == Z_STREAM_ERROR) {
            lb_log_error(0, "gzip: deflate failed");
            return LB_ERROR;
        }
        taken = len - zs->z.avail_in;
        made = (size_t) ((const char *) zs->z.next_out - zs->out.last);
        if (cl) {
            cl->pos += taken;
        }
        zs->out.last += made;
        ctx->in += taken;
        ctx->out += made;
        if (taken) {
            zs->unflushed = 1;
        }
        if (rc == Z_STREAM_END) {
            zs->finished = 1;
        } else if (zs->z.avail_out == 0) {
            zs->ready = 1;                  /* the buffer is full */
        } else if (flush == Z_SYNC_FLUSH) {
            zs->unflushed = 0;              /* the flush is complete */
            zs->ready = 1;
        } else if (flush == Z_FINISH) {
            return LB_ERROR;                /* room left, yet no end: cannot be */
        }
    }
}

/* Log phase and variable ------------------------------------------------- */

/* The request is over: a stream still held (the response did not end)
 * goes back. The counts stay for $gzip_ratio, which an access log before
 * this module has read already. */
static void
lb_http_gzip_log(lb_http_request_t *r)
{
    lb_http_gzip_ctx_t  *ctx;

    if (r->ctx == NULL) {
        return;
    }
    ctx = lb_http_request_ctx(r, lb_http_gzip_module);
    if (ctx) {
        lb_http_gzip_release(ctx);
    }
}

/* $gzip_ratio: body bytes over gzip bytes, "3.41"; empty for a response
 * that was not compressed. */
static void
lb_http_gzip_var_ratio(lb_http_var_out_t *out, const lb_http_var_ctx_t *ctx, lb_str_t arg)
{
    const lb_http_gzip_ctx_t  *g;
    char                       buf[32];

    lb_unused(arg);
    if (ctx == NULL || ctx->r == NULL || ctx->r->ctx == NULL) {
        return;
    }
    g = lb_http_request_ctx(ctx->r, lb_http_gzip_module);
    if (g == NULL || !g->compress || g->out == 0) {
        return;
    }
    lb_http_var_write(out, buf, lb_http_gzip_ratio(g->in, g->out, buf, sizeof(buf)));
}
