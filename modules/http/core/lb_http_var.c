/*
 * lb_http_var.c: the registry of variables (SPEC §3.5), the compiler of
 * strings with variables into a list of parts at configuration load, and
 * their evaluation per request into a caller's buffer without allocating.
 * It knows no variable by name: modules register them (the http core its
 * own, in lb_http_variables.c); only the suggestions for nginx's names
 * name some.
 */
#include "lb_core.h"
#include "lb_http.h"

/* A compiled part: literal text (get NULL) or a variable's getter with
 * its argument (the prefix variable's NAME, the variable's name, or the
 * value an LB_HTTP_VAR_AT_LOAD variable had at load). */
typedef struct {
    lb_http_var_get_pt   get;
    lb_str_t             text;
} lb_http_var_part_t;

struct lb_http_complex_s {
    lb_http_var_part_t  *parts;
    size_t               nparts;
    bool                 literal;       /* nparts == 0, or one literal part */
};

#define LB_HTTP_VAR_NAME_MAX   64            /* longest name in a message */

/* The registry: filled once per process, at start-up (lb_http_var_init),
 * read at load by the compiler; requests never look a name up. */
static lb_http_var_def_t   lb_http_vars[LB_HTTP_VAR_MAX];
static size_t              lb_http_nvars;
static bool                lb_http_vars_ready;
/* for the suggestions: the names that are words, and the prefixes that
 * end in "_" without it ("http"), each NULL-terminated */
static const char         *lb_http_var_words[LB_HTTP_VAR_MAX + 1];
static size_t              lb_http_var_nwords;
static char                lb_http_var_prefix_buf[LB_HTTP_VAR_MAX][LB_HTTP_VAR_NAME_MAX + 1];
static const char         *lb_http_var_prefix_words[LB_HTTP_VAR_MAX + 1];
static size_t              lb_http_var_nprefix_words;

/* nginx's names for what lbd calls otherwise, for the suggestions; a name
 * nginx shares with lbd ($host, $args, $http_NAME) needs no entry. */
static const struct {
    const char  *nginx;
    const char  *ours;
} lb_http_var_nginx_names[] = {
    { "request_method", "method" },
    { "document_uri", "uri" },
    { "ssl_server_name", "sni" },
    { "content_type", "http_content_type" },
    { "content_length", "http_content_length" },
};

/* What eval reads when given no context: nothing is known. */
static const lb_http_var_ctx_t  lb_http_var_ctx_empty;

static inline bool
lb_http_var_name_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
           || (c >= '0' && c <= '9') || c == '_';
}

/* The registry ---------------------------------------------------------------- */

static int
lb_http_var_register(const char *name, lb_http_var_get_pt get, unsigned flags)
{
    const lb_http_var_def_t  *v;
    size_t                    i, n = strlen(name), vn;
    bool                      prefix = flags & LB_HTTP_VAR_PREFIX;

    if (get == NULL) {
        lb_log_error(0, "cannot add the variable \"$%s\": it has no getter", name);
        return LB_ERROR;
    }
    if (n == 0 || n > LB_HTTP_VAR_NAME_MAX || strspn(name,
            "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_") != n)
    {
        lb_log_error(0, "cannot add the variable \"$%s\": a name is 1 to %d letters, "
                     "digits and \"_\"", name, LB_HTTP_VAR_NAME_MAX);
        return LB_ERROR;
    }
    for (i = 0; i < lb_http_nvars; i++) {
        v = &lb_http_vars[i];
        vn = strlen(v->name);
        /* the same name, or a name that a prefix variable would also take */
        if ((vn == n && memcmp(v->name, name, n) == 0)
            || (prefix && vn > n && memcmp(v->name, name, n) == 0)
            || ((v->flags & LB_HTTP_VAR_PREFIX) && n > vn && memcmp(v->name, name, vn) == 0))
        {
            lb_log_error(0, "cannot add the variable \"$%s\": \"$%s%s\" is already known",
                         name, v->name, (v->flags & LB_HTTP_VAR_PREFIX) ? "NAME" : "");
            return LB_ERROR;
        }
    }
    if (lb_http_nvars == LB_HTTP_VAR_MAX) {
        lb_log_error(0, "cannot add the variable \"$%s\": more than %d variables", name,
                     LB_HTTP_VAR_MAX);
        return LB_ERROR;
    }
    lb_http_vars[lb_http_nvars].name = name;
    lb_http_vars[lb_http_nvars].get = get;
    lb_http_vars[lb_http_nvars].flags = flags;
    lb_http_nvars++;

    if (prefix && n > 1 && name[n - 1] == '_') {
        memcpy(lb_http_var_prefix_buf[lb_http_var_nprefix_words], name, n - 1);
        lb_http_var_prefix_buf[lb_http_var_nprefix_words][n - 1] = '\0';
        lb_http_var_prefix_words[lb_http_var_nprefix_words] =
            lb_http_var_prefix_buf[lb_http_var_nprefix_words];
        lb_http_var_nprefix_words++;
    } else if (!prefix && !(name[0] >= '0' && name[0] <= '9')) {
        lb_http_var_words[lb_http_var_nwords++] = name;
    }
    return LB_OK;
}

/* Adds the variables of every http module's table, once. */
static void
lb_http_var_init(void)
{
    const lb_http_module_t   *m;
    const lb_http_var_def_t  *d;
    size_t                    i;

    if (lb_http_vars_ready) {
        return;
    }
    lb_http_vars_ready = true;
    if (lb_modules_init() != LB_OK) {
        return;
    }
    for (i = 0; i < lb_nmodules; i++) {
        if (lb_all_modules[i]->type != LB_MODULE_HTTP || lb_all_modules[i]->ctx == NULL) {
            continue;
        }
        m = lb_all_modules[i]->ctx;
        for (d = m->variables; d != NULL && d->name != NULL; d++) {
            (void) lb_http_var_register(d->name, d->get, d->flags);
        }
    }
}

int
lb_http_var_add(const char *name, lb_http_var_get_pt get, unsigned flags)
{
    lb_http_var_init();
    return lb_http_var_register(name, get, flags);
}

int
lb_http_var_add_prefix(const char *prefix, lb_http_var_get_pt get)
{
    return lb_http_var_add(prefix, get, LB_HTTP_VAR_PREFIX);
}

const lb_http_var_def_t *
lb_http_var_find(const char *name, size_t len, lb_str_t *arg)
{
    const lb_http_var_def_t  *v;
    size_t                    i, n;

    lb_http_var_init();
    for (i = 0; i < lb_http_nvars; i++) {
        v = &lb_http_vars[i];
        n = strlen(v->name);
        if (v->flags & LB_HTTP_VAR_PREFIX) {
            if (len < n || memcmp(name, v->name, n) != 0) {
                continue;
            }
            arg->data = (char *) name + n;
            arg->len = len - n;
            return v;
        }
        if (n == len && memcmp(name, v->name, n) == 0) {
            arg->data = (char *) v->name;
            arg->len = n;
            return v;
        }
    }
    return NULL;
}

const char *const *
lb_http_var_names(void)
{
    lb_http_var_init();
    return lb_http_var_words;
}

/* Compilation --------------------------------------------------------------- */

/* Writes "unknown variable "$name"" and the best suggestion into err: a
 * close name, lbd's name for an nginx one ("$request_method" ->
 * "$method"), a close prefix ("$htpp_x" -> "$http_x"), or a known name
 * that the text runs into ("$hostx" -> "${host}x"; not when the rest reads
 * as more of one name, as "_method" in "$request_method" does). */
static void
lb_http_var_unknown(const char *name, size_t len, char *err, size_t errlen)
{
    char         word[LB_HTTP_VAR_NAME_MAX + 1], fixed[LB_HTTP_VAR_NAME_MAX + 1];
    const char  *best, *us, *nginx[lb_nelems(lb_http_var_nginx_names) + 1];
    size_t       i, n, best_len = 0;

    if (len > LB_HTTP_VAR_NAME_MAX) {
        snprintf(err, errlen, "unknown variable \"$%.*s\"", (int) len, name);
        return;
    }
    memcpy(word, name, len);
    word[len] = '\0';

    for (i = 0; i < lb_nelems(lb_http_var_nginx_names); i++) {
        nginx[i] = lb_http_var_nginx_names[i].nginx;
        if (strcmp(word, nginx[i]) == 0) {
            snprintf(err, errlen, "unknown variable \"$%s\" (did you mean \"$%s\"?)",
                     word, lb_http_var_nginx_names[i].ours);
            return;
        }
    }
    nginx[i] = NULL;

    best = lb_did_you_mean(word, lb_http_var_words);
    if (best == NULL) {
        best = lb_did_you_mean(word, nginx);
        for (i = 0; best != NULL && i < lb_nelems(lb_http_var_nginx_names); i++) {
            if (best == nginx[i]) {
                best = lb_http_var_nginx_names[i].ours;
                break;
            }
        }
    }
    if (best != NULL) {
        snprintf(err, errlen, "unknown variable \"$%s\" (did you mean \"$%s\"?)", word, best);
        return;
    }

    /* "$htpp_x" -> "$http_x" */
    us = memchr(word, '_', len);
    if (us != NULL && us[1] != '\0') {
        n = (size_t) (us - word);
        memcpy(fixed, word, n);
        fixed[n] = '\0';
        best = lb_did_you_mean(fixed, lb_http_var_prefix_words);
        if (best != NULL) {
            snprintf(err, errlen, "unknown variable \"$%s\" (did you mean \"$%s%s\"?)",
                     word, best, us);
            return;
        }
    }

    /* "$hostx" -> "${host}x", "$host_" -> "${host}_" */
    best = NULL;
    for (i = 0; lb_http_var_words[i] != NULL; i++) {
        n = strlen(lb_http_var_words[i]);
        if (n < len && n > best_len && memcmp(word, lb_http_var_words[i], n) == 0) {
            best = lb_http_var_words[i];
            best_len = n;
        }
    }
    if (best != NULL && !(word[best_len] == '_' && word[best_len + 1] != '\0')) {
        snprintf(err, errlen, "unknown variable \"$%s\" (did you mean \"${%s}%s\"?)",
                 word, best, word + best_len);
        return;
    }

    snprintf(err, errlen, "unknown variable \"$%s\"", word);
}

/* Adds one reason to err: the first as it is, the next ones each on a
 * line of their own. */
static void
lb_http_var_error(char *err, size_t errlen, const char *reason)
{
    size_t  n = strlen(err);

    if (n == 0) {
        snprintf(err, errlen, "%s", reason);
    } else if (n + 1 < errlen) {
        snprintf(err + n, errlen - n, "\n%s", reason);
    }
}

static size_t lb_http_var_eval_part(const lb_http_var_part_t *part,
                                    const lb_http_var_ctx_t *ctx, char *buf, size_t size);

/* An LB_HTTP_VAR_AT_LOAD variable's kept value. */
static void
lb_http_var_get_kept(lb_http_var_out_t *out, const lb_http_var_ctx_t *ctx, lb_str_t value)
{
    lb_http_var_write_str(out, value);
}

/* Resolves name[0..len) (already checked to be [A-Za-z0-9_]+) into part,
 * through the registry. A prefix variable's NAME stays a view into name,
 * which lives in the pool. */
static int
lb_http_var_resolve(lb_pool_t *pool, lb_http_var_part_t *part, char *name, size_t len,
                    char *err, size_t errlen)
{
    const lb_http_var_def_t  *v;
    char                      value[256];
    size_t                    n;

    v = lb_http_var_find(name, len, &part->text);
    if (v == NULL) {
        lb_http_var_unknown(name, len, err, errlen);
        return LB_ERROR;
    }
    if ((v->flags & LB_HTTP_VAR_PREFIX) && part->text.len == 0) {
        snprintf(err, errlen, "variable \"$%.*s\" needs a name after \"%s\" "
                 "(as in \"$%sname\")", (int) len, name, v->name, v->name);
        return LB_ERROR;
    }
    part->get = v->get;
    if (!(v->flags & LB_HTTP_VAR_AT_LOAD)) {
        return LB_OK;
    }

    /* read once here, as nginx reads $hostname at load */
    n = lb_http_var_eval_part(part, NULL, value, sizeof(value));
    n = lb_min(n, sizeof(value));
    part->get = lb_http_var_get_kept;
    part->text.len = n;
    part->text.data = lb_palloc(pool, n + 1);
    if (part->text.data == NULL) {
        snprintf(err, errlen, "out of memory");
        return LB_ERROR;
    }
    memcpy(part->text.data, value, n);
    return LB_OK;
}

lb_http_complex_t *
lb_http_complex_compile(lb_pool_t *pool, const char *text, char *err, size_t errlen)
{
    lb_http_complex_t   *cv;
    lb_http_var_part_t  *part;
    const char          *p, *end, *name;
    char                *copy, *w;
    size_t               len, ndollars = 0, nlen;
    char                 dummy[1], reason[256];
    bool                 failed = false;

    if (err == NULL || errlen == 0) {
        err = dummy;
        errlen = sizeof(dummy);
    }
    err[0] = '\0';

    len = strlen(text);
    for (p = text; (p = memchr(p, '$', (size_t) (text + len - p))) != NULL; p++) {
        ndollars++;
    }

    cv = lb_pcalloc(pool, sizeof(lb_http_complex_t));
    /* Each "$" ends at most one literal and adds one variable; the copy
     * holds literal bytes ("$$" unescaped) and variable names, so never
     * more than the text. */
    copy = lb_palloc(pool, len + 1);
    if (cv == NULL || copy == NULL
        || (cv->parts = lb_palloc(pool, (2 * ndollars + 1) * sizeof(lb_http_var_part_t)))
           == NULL)
    {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }

    w = copy;
    end = text + len;
    p = text;
    part = NULL;            /* the open literal part, if the last one is one */

    while (p < end) {
        if (*p != '$' || (p + 1 < end && p[1] == '$')) {
            if (part == NULL) {
                part = &cv->parts[cv->nparts++];
                part->get = NULL;
                part->text.data = w;
                part->text.len = 0;
            }
            *w++ = *p;
            part->text.len++;
            p += *p == '$' ? 2 : 1;
            continue;
        }

        /* a variable: a bad one is reported and the rest read on, so that
         * every mistake of the string is told at once */
        part = NULL;
        p++;
        if (p < end && *p == '{') {
            name = ++p;
            while (p < end && lb_http_var_name_char(*p)) {
                p++;
            }
            nlen = (size_t) (p - name);
            if (p == end) {
                snprintf(reason, sizeof(reason), "the closing \"}\" of \"${%.*s\" is missing",
                         (int) nlen, name);
                lb_http_var_error(err, errlen, reason);
                return NULL;
            }
            if (*p != '}') {
                snprintf(reason, sizeof(reason), "invalid character \"%c\" in \"${%.*s\": "
                         "a variable name is letters, digits and \"_\"",
                         *p, (int) nlen + 1, name);
                lb_http_var_error(err, errlen, reason);
                return NULL;
            }
            p++;
            if (nlen == 0) {
                lb_http_var_error(err, errlen, "empty variable name \"${}\"");
                failed = true;
                continue;
            }

        } else if (p < end && *p >= '0' && *p <= '9') {
            /* one digit, as in nginx: "$1.html" and "$10" are $1 and text */
            name = p++;
            nlen = 1;

        } else {
            name = p;
            while (p < end && lb_http_var_name_char(*p)) {
                p++;
            }
            nlen = (size_t) (p - name);
            if (nlen == 0) {
                lb_http_var_error(err, errlen, "a \"$\" must start a variable name "
                                  "(write $$ for a dollar sign)");
                failed = true;
                continue;
            }
        }

        memcpy(w, name, nlen);
        part = &cv->parts[cv->nparts++];
        part->text.len = 0;
        part->text.data = NULL;
        if (lb_http_var_resolve(pool, part, w, nlen, reason, sizeof(reason)) != LB_OK) {
            lb_http_var_error(err, errlen, reason);
            failed = true;
        }
        w += nlen;
        part = NULL;
    }
    if (failed) {
        return NULL;
    }

    cv->literal = cv->nparts == 0
                  || (cv->nparts == 1 && cv->parts[0].get == NULL);
    return cv;
}

lb_http_complex_t *
lb_http_complex_conf(lb_conf_t *cf, const config_setting_t *v, const char *text,
                     const char *what)
{
    lb_http_complex_t  *cv;
    char                err[1024];
    const char         *p, *nl;

    cv = lb_http_complex_compile(cf->pool, text, err, sizeof(err));
    if (cv != NULL) {
        return cv;
    }
    for (p = err; p != NULL; p = nl ? nl + 1 : NULL) {
        nl = strchr(p, '\n');
        lb_conf_error(cf, v, "%s: %.*s", what, (int) (nl ? (size_t) (nl - p) : strlen(p)), p);
    }
    return NULL;
}

bool
lb_http_complex_is_literal(const lb_http_complex_t *cv)
{
    return cv->literal;
}
/* Evaluation ---------------------------------------------------------------- */

static inline void
lb_http_var_put_raw(lb_http_var_out_t *out, const char *p, size_t n)
{
    if (n > 0 && out->len < out->size) {
        memcpy(out->buf + out->len, p, lb_min(n, out->size - out->len));
    }
    out->len += n;
}

/* JSON string content (RFC 8259 §7): '"' and '\\' behind a backslash,
 * control bytes (below 0x20, and 0x7f) as \u00XX or their short forms;
 * the other bytes, those from 0x80 too, as they are. */
void
lb_http_var_write_json(lb_http_var_out_t *out, const char *p, size_t n)
{
    static const char  hex[] = "0123456789abcdef";
    const char        *run = p, *end = p + n;
    unsigned char      c;
    char               esc[6];
    size_t             elen;

    for (; p < end; p++) {
        c = (unsigned char) *p;
        if (c >= 0x20 && c != 0x7f && c != '"' && c != '\\') {
            continue;
        }
        lb_http_var_put_raw(out, run, (size_t) (p - run));
        run = p + 1;
        esc[0] = '\\';
        elen = 2;
        switch (c) {
        case '"':  esc[1] = '"'; break;
        case '\\': esc[1] = '\\'; break;
        case '\n': esc[1] = 'n'; break;
        case '\r': esc[1] = 'r'; break;
        case '\t': esc[1] = 't'; break;
        default:
            memcpy(esc + 1, "u00", 3);
            esc[4] = hex[c >> 4];
            esc[5] = hex[c & 0xf];
            elen = 6;
        }
        lb_http_var_put_raw(out, esc, elen);
    }
    lb_http_var_put_raw(out, run, (size_t) (end - run));
}

void
lb_http_var_write_str(lb_http_var_out_t *out, lb_str_t s)
{
    lb_http_var_write(out, s.data, s.len);
}

void
lb_http_var_write_lower(lb_http_var_out_t *out, const char *p, size_t n)
{
    char    tmp[64];
    size_t  i, k;

    for (i = 0; i < n; i += k) {
        for (k = 0; k < sizeof(tmp) && i + k < n; k++) {
            tmp[k] = lb_http_var_lower(p[i + k]);
        }
        lb_http_var_write(out, tmp, k);
    }
}

void
lb_http_var_write_uint(lb_http_var_out_t *out, uint64_t v)
{
    char   tmp[20], *q = tmp + sizeof(tmp);

    do {
        *--q = (char) ('0' + v % 10);
        v /= 10;
    } while (v != 0);
    lb_http_var_write(out, q, (size_t) (tmp + sizeof(tmp) - q));
}

/* msec as seconds with three decimals: 1234 -> "1.234" */
void
lb_http_var_write_msec(lb_http_var_out_t *out, int64_t msec)
{
    char  tmp[4];

    if (msec < 0) {
        msec = 0;
    }
    lb_http_var_write_uint(out, (uint64_t) msec / 1000);
    tmp[0] = '.';
    tmp[1] = (char) ('0' + msec / 100 % 10);
    tmp[2] = (char) ('0' + msec / 10 % 10);
    tmp[3] = (char) ('0' + msec % 10);
    lb_http_var_write(out, tmp, 4);
}

/* One variable part's value, unescaped, as eval would write it. */
static size_t
lb_http_var_eval_part(const lb_http_var_part_t *part, const lb_http_var_ctx_t *ctx,
                      char *buf, size_t size)
{
    lb_http_var_out_t  out = { buf, size, 0, LB_HTTP_ESCAPE_NONE };

    part->get(&out, ctx != NULL ? ctx : &lb_http_var_ctx_empty, part->text);
    return out.len;
}

size_t
lb_http_complex_eval(const lb_http_complex_t *cv, const lb_http_var_ctx_t *ctx,
                     char *buf, size_t size)
{
    return lb_http_complex_eval_escaped(cv, ctx, buf, size, LB_HTTP_ESCAPE_NONE);
}

size_t
lb_http_complex_eval_escaped(const lb_http_complex_t *cv, const lb_http_var_ctx_t *ctx,
                             char *buf, size_t size, lb_http_escape_t escape)
{
    lb_http_var_out_t          out = { buf, buf != NULL ? size : 0, 0, escape };
    const lb_http_var_part_t  *part, *end = cv->parts + cv->nparts;

    if (ctx == NULL) {
        ctx = &lb_http_var_ctx_empty;
    }
    for (part = cv->parts; part < end; part++) {
        if (part->get == NULL) {
            lb_http_var_put_raw(&out, part->text.data, part->text.len);
        } else {
            part->get(&out, ctx, part->text);
        }
    }
    return out.len;
}

lb_str_t *
lb_http_complex_eval_pool(const lb_http_complex_t *cv, const lb_http_var_ctx_t *ctx,
                          lb_pool_t *pool)
{
    lb_str_t  *s;
    size_t     size, len;
    int        tries;

    s = lb_palloc(pool, sizeof(lb_str_t));
    if (s == NULL) {
        return NULL;
    }
    /* The time variables can grow between two evaluations ("9.999" ->
     * "10.000"): evaluate again into a bigger buffer when that happens. */
    size = lb_http_complex_eval(cv, ctx, NULL, 0);
    for (tries = 0; tries < 4; tries++) {
        s->data = lb_palloc(pool, size + 1);
        if (s->data == NULL) {
            return NULL;
        }
        len = lb_http_complex_eval(cv, ctx, s->data, size);
        if (len <= size) {
            s->len = len;
            s->data[len] = '\0';
            return s;
        }
        size = len + 8;
    }
    s->len = size;
    s->data[size] = '\0';
    return s;
}
