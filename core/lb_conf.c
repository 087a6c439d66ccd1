/*
 * lb_conf.c: the table-driven configuration loader.
 */
#include "lb_core.h"

#include <limits.h>

const char *
lb_conf_file(lb_conf_t *cf, const config_setting_t *s)
{
    const char  *f = config_setting_source_file(s);
    char        *abs;

    if (f == NULL) {
        return "(unknown)";
    }
    /* libconfig 1.5 names an included file as written in @include, and
     * resolves it against the include directory: do the same */
    if (f[0] != '/' && cf->include_dir) {
        abs = lb_psprintf(cf->pool, "%s/%s", cf->include_dir, f);
        return abs ? abs : f;
    }
    return f;
}

static void
lb_conf_report_line(lb_conf_t *cf, const char *line)
{
    cf->nerrors++;
    if (cf->nerrors > LB_CONF_MAX_ERRORS) {
        return;
    }
    if (cf->nerrors == LB_CONF_MAX_ERRORS) {
        line = "too many errors; stopping here";
    }
    if (cf->report) {
        cf->report(line);
    } else {
        fprintf(stderr, "%s\n", line);
    }
}

static int
lb_conf_verror(lb_conf_t *cf, const char *file, int line, const char *fmt, va_list ap)
{
    char  buf[4096];
    int   n;

    n = snprintf(buf, sizeof(buf), "%s:%d: ", file, line);
    if (n < 0 || (size_t) n >= sizeof(buf)) {
        n = 0;
    }
    vsnprintf(buf + n, sizeof(buf) - (size_t) n, fmt, ap);
    lb_conf_report_line(cf, buf);
    return LB_ERROR;
}

int
lb_conf_error_at(lb_conf_t *cf, const char *file, int line, const char *fmt, ...)
{
    va_list  ap;

    va_start(ap, fmt);
    lb_conf_verror(cf, file, line, fmt, ap);
    va_end(ap);
    return LB_ERROR;
}

int
lb_conf_error(lb_conf_t *cf, const config_setting_t *s, const char *fmt, ...)
{
    va_list  ap;

    va_start(ap, fmt);
    lb_conf_verror(cf, lb_conf_file(cf, s), (int) config_setting_source_line(s), fmt, ap);
    va_end(ap);
    return LB_ERROR;
}

void
lb_conf_warn_at(lb_conf_t *cf, const char *file, int line, const char *fmt, ...)
{
    va_list  ap;
    char     buf[1024];
    int      n;

    n = snprintf(buf, sizeof(buf), "%s:%d: warning: ", file, line);
    if (n < 0 || (size_t) n >= sizeof(buf)) {
        n = 0;
    }
    va_start(ap, fmt);
    vsnprintf(buf + n, sizeof(buf) - (size_t) n, fmt, ap);
    va_end(ap);
    /* on reload (a report function) the error log has it */
    if (cf->report) {
        lb_log_warn(0, "%s", buf);
    } else {
        fprintf(stderr, "%s\n", buf);
    }
}

const char *
lb_conf_type_name(const config_setting_t *v)
{
    switch (config_setting_type(v)) {
    case CONFIG_TYPE_INT:
    case CONFIG_TYPE_INT64:  return "an integer";
    case CONFIG_TYPE_FLOAT:  return "a float";
    case CONFIG_TYPE_STRING: return "a string";
    case CONFIG_TYPE_BOOL:   return "a boolean";
    case CONFIG_TYPE_GROUP:  return "a group { }";
    case CONFIG_TYPE_ARRAY:  return "an array [ ]";
    case CONFIG_TYPE_LIST:   return "a list ( )";
    default:                 return "an unknown type";
    }
}

int
lb_conf_get_string(lb_conf_t *cf, config_setting_t *v, const char **out)
{
    if (config_setting_type(v) != CONFIG_TYPE_STRING) {
        return lb_conf_error(cf, v, "\"%s\" must be a string, not %s",
                             config_setting_name(v) ? config_setting_name(v) : "value",
                             lb_conf_type_name(v));
    }
    *out = config_setting_get_string(v);
    return LB_OK;
}

int
lb_conf_get_duration(lb_conf_t *cf, config_setting_t *v, lb_msec_t *out)
{
    const char  *name = config_setting_name(v) ? config_setting_name(v) : "value";
    long long    n;

    switch (config_setting_type(v)) {
    case CONFIG_TYPE_INT:
    case CONFIG_TYPE_INT64:
        n = config_setting_get_int64(v);
        if (n < 0 || n > INT64_MAX / 1000) {
            return lb_conf_error(cf, v, "\"%s\" must not be negative or huge, got %lld",
                                 name, n);
        }
        *out = n * 1000;
        return LB_OK;
    case CONFIG_TYPE_STRING:
        if (lb_parse_duration(config_setting_get_string(v), out) == LB_OK) {
            return LB_OK;
        }
        return lb_conf_error(cf, v, "\"%s\" must be a duration such as \"250ms\", "
                             "\"5s\", \"2m\", \"1h\" or \"1d\", got \"%s\"",
                             name, config_setting_get_string(v));
    default:
        return lb_conf_error(cf, v, "\"%s\" must be a duration (a string such as "
                             "\"5s\" or an integer of seconds), not %s",
                             name, lb_conf_type_name(v));
    }
}

static int
lb_conf_get_size(lb_conf_t *cf, config_setting_t *v, int64_t *out)
{
    const char  *name = config_setting_name(v);
    long long    n;

    switch (config_setting_type(v)) {
    case CONFIG_TYPE_INT:
    case CONFIG_TYPE_INT64:
        n = config_setting_get_int64(v);
        if (n < 0) {
            return lb_conf_error(cf, v, "\"%s\" must not be negative, got %lld", name, n);
        }
        *out = n;
        return LB_OK;
    case CONFIG_TYPE_STRING:
        if (lb_parse_size(config_setting_get_string(v), out) == LB_OK) {
            return LB_OK;
        }
        return lb_conf_error(cf, v, "\"%s\" must be a size such as \"512\", \"16k\", "
                             "\"8m\" or \"1g\", got \"%s\"",
                             name, config_setting_get_string(v));
    default:
        return lb_conf_error(cf, v, "\"%s\" must be a size (a string such as \"16k\" "
                             "or an integer of bytes), not %s", name, lb_conf_type_name(v));
    }
}

int
lb_conf_each_string(lb_conf_t *cf, config_setting_t *v,
                    int (*fn)(lb_conf_t *, config_setting_t *, const char *, void *),
                    void *arg)
{
    config_setting_t  *elt;
    int                i, n, rc = LB_OK;

    if (config_setting_type(v) == CONFIG_TYPE_STRING) {
        return fn(cf, v, config_setting_get_string(v), arg);
    }
    if (config_setting_type(v) != CONFIG_TYPE_ARRAY && config_setting_type(v) != CONFIG_TYPE_LIST) {
        return lb_conf_error(cf, v, "\"%s\" must be a string or an array of strings, not %s",
                             config_setting_name(v), lb_conf_type_name(v));
    }
    n = config_setting_length(v);
    if (n == 0) {
        return lb_conf_error(cf, v, "\"%s\" must not be empty", config_setting_name(v));
    }
    for (i = 0; i < n; i++) {
        elt = config_setting_get_elem(v, (unsigned) i);
        if (config_setting_type(elt) != CONFIG_TYPE_STRING) {
            rc = lb_conf_error(cf, elt, "\"%s\" must hold strings, not %s",
                               config_setting_name(v), lb_conf_type_name(elt));
            continue;
        }
        if (fn(cf, elt, config_setting_get_string(elt), arg) != LB_OK) {
            rc = LB_ERROR;
        }
    }
    return rc;
}

/* The value forms of each typed setting ---------------------------------- */

static int
lb_conf_check_range(lb_conf_t *cf, config_setting_t *v, const lb_setting_t *s,
                    int64_t n, const char *unit)
{
    if ((s->min || s->max) && (n < s->min || n > s->max)) {
        if (unit[0] == 'm') {
            return lb_conf_error(cf, v, "\"%s\" must be between %lldms and %lldms, got %lldms",
                                 s->name, (long long) s->min, (long long) s->max,
                                 (long long) n);
        }
        return lb_conf_error(cf, v, "\"%s\" must be between %lld and %lld%s, got %lld",
                             s->name, (long long) s->min, (long long) s->max, unit,
                             (long long) n);
    }
    return LB_OK;
}

static int
lb_conf_push_str(lb_conf_t *cf, config_setting_t *elt, const char *s, void *arg)
{
    char  **p = lb_array_push(arg);

    if (p == NULL || (*p = lb_pstrdup(cf->pool, s)) == NULL) {
        return lb_conf_error(cf, elt, "out of memory");
    }
    return LB_OK;
}

static int
lb_conf_push_addr(lb_conf_t *cf, config_setting_t *elt, const char *s, void *arg)
{
    lb_addr_t  *a = lb_array_push(arg);
    char        err[160];

    if (a == NULL) {
        return lb_conf_error(cf, elt, "out of memory");
    }
    if (lb_parse_addr(s, a, err, sizeof(err)) != LB_OK) {
        return lb_conf_error(cf, elt, "invalid address \"%s\" in \"%s\": %s",
                             s, config_setting_name(elt) ? config_setting_name(elt)
                                : config_setting_name(config_setting_parent(elt)), err);
    }
    return LB_OK;
}

static int
lb_conf_set_value(lb_conf_t *cf, const lb_setting_t *s, config_setting_t *v, void *conf)
{
    char        *field = (char *) conf + s->offset;
    const char  *str = NULL;
    char         err[160];
    int64_t      n;
    int          i;

    switch (s->type) {
    case LB_SET_BOOL:
        if (config_setting_type(v) != CONFIG_TYPE_BOOL) {
            return lb_conf_error(cf, v, "\"%s\" must be true or false, not %s",
                                 s->name, lb_conf_type_name(v));
        }
        *(int *) field = config_setting_get_bool(v);
        return LB_OK;

    case LB_SET_INT:
        if (config_setting_type(v) != CONFIG_TYPE_INT && config_setting_type(v) != CONFIG_TYPE_INT64) {
            return lb_conf_error(cf, v, "\"%s\" must be an integer, not %s",
                                 s->name, lb_conf_type_name(v));
        }
        n = config_setting_get_int64(v);
        if (lb_conf_check_range(cf, v, s, n, "") != LB_OK) {
            return LB_ERROR;
        }
        *(int64_t *) field = n;
        return LB_OK;

    case LB_SET_STR:
        if (lb_conf_get_string(cf, v, &str) != LB_OK) {
            return LB_ERROR;
        }
        if ((*(char **) field = lb_pstrdup(cf->pool, str)) == NULL) {
            return lb_conf_error(cf, v, "out of memory");
        }
        return LB_OK;

    case LB_SET_DURATION:
        if (lb_conf_get_duration(cf, v, (lb_msec_t *) field) != LB_OK) {
            return LB_ERROR;
        }
        return lb_conf_check_range(cf, v, s, *(lb_msec_t *) field, "ms");

    case LB_SET_SIZE:
        if (lb_conf_get_size(cf, v, &n) != LB_OK
            || lb_conf_check_range(cf, v, s, n, " bytes") != LB_OK)
        {
            return LB_ERROR;
        }
        *(int64_t *) field = n;
        return LB_OK;

    case LB_SET_ENUM:
        if (lb_conf_get_string(cf, v, &str) != LB_OK) {
            return LB_ERROR;
        }
        for (i = 0; s->enum_values[i]; i++) {
            if (strcmp(str, s->enum_values[i]) == 0) {
                *(int *) field = i;
                return LB_OK;
            }
        }
        {
            char         list[256];
            size_t       len = 0;
            const char  *hint = lb_did_you_mean(str, s->enum_values);

            list[0] = '\0';
            for (i = 0; s->enum_values[i] && len < sizeof(list); i++) {
                len += (size_t) snprintf(list + len, sizeof(list) - len, "%s%s",
                                         i ? ", " : "", s->enum_values[i]);
            }
            if (hint) {
                return lb_conf_error(cf, v, "invalid value \"%s\" for \"%s\" (did you mean "
                                     "\"%s\"?); expected one of: %s", str, s->name, hint, list);
            }
            return lb_conf_error(cf, v, "invalid value \"%s\" for \"%s\"; expected one of: %s",
                                 str, s->name, list);
        }

    case LB_SET_ADDR:
        if (lb_conf_get_string(cf, v, &str) != LB_OK) {
            return LB_ERROR;
        }
        if (lb_parse_addr(str, (lb_addr_t *) field, err, sizeof(err)) != LB_OK) {
            return lb_conf_error(cf, v, "invalid address \"%s\" in \"%s\": %s",
                                 str, s->name, err);
        }
        return LB_OK;

    case LB_SET_ADDRS:
    case LB_SET_STRS:
        if (lb_array_init((lb_array_t *) field, cf->pool, 4,
                          s->type == LB_SET_ADDRS ? sizeof(lb_addr_t) : sizeof(char *)) != LB_OK)
        {
            return lb_conf_error(cf, v, "out of memory");
        }
        return lb_conf_each_string(cf, v, s->type == LB_SET_ADDRS ? lb_conf_push_addr
                                                                  : lb_conf_push_str, field);

    case LB_SET_CUSTOM:
        return s->set(cf, s, v, conf);
    }
    return lb_conf_error(cf, v, "internal error: setting \"%s\" has no type", s->name);
}

/* Defaults are written in config syntax and parsed with the same code as
 * the file, through a tiny libconfig document. */
static int
lb_conf_set_default(lb_conf_t *cf, const lb_setting_t *s, void *conf)
{
    config_t           c;
    config_setting_t  *v;
    char               doc[256];
    int                rc = LB_ERROR;
    const char        *q;

    if (s->default_value == NULL || s->type == LB_SET_CUSTOM) {
        return LB_OK;
    }
    /* bare words (true, 5) stay bare; everything else is a string */
    q = (s->type == LB_SET_BOOL || s->type == LB_SET_INT) ? "" : "\"";
    snprintf(doc, sizeof(doc), "%s = %s%s%s;", s->name, q, s->default_value, q);

    config_init(&c);
    if (config_read_string(&c, doc) == CONFIG_TRUE
        && (v = config_lookup(&c, s->name)) != NULL)
    {
        rc = lb_conf_set_value(cf, s, v, conf);
    }
    config_destroy(&c);
    if (rc != LB_OK) {
        lb_log_error(0, "internal error: bad default \"%s\" for \"%s\"", s->default_value, s->name);
    }
    return rc;
}

int
lb_conf_set_defaults(lb_conf_t *cf, const lb_setting_t *table, void *conf)
{
    const lb_setting_t  *s;
    int                  rc = LB_OK;

    for (s = table; s->name; s++) {
        if (lb_conf_set_default(cf, s, conf) != LB_OK) {
            rc = LB_ERROR;
        }
    }
    return rc;
}

int
lb_conf_parse_group(lb_conf_t *cf, config_setting_t *v, const lb_setting_t *table, void *conf)
{
    const char          *names[32], *hint, *name = config_setting_name(v);
    const lb_setting_t  *s;
    config_setting_t    *e;
    size_t               k;
    int                  i, n, rc = LB_OK;

    if (config_setting_type(v) != CONFIG_TYPE_GROUP) {
        return lb_conf_error(cf, v, "\"%s\" must be a group { ... }, not %s",
                             name, lb_conf_type_name(v));
    }
    n = config_setting_length(v);
    for (i = 0; i < n; i++) {
        e = config_setting_get_elem(v, (unsigned) i);
        for (s = table; s->name; s++) {
            if (strcmp(s->name, config_setting_name(e)) == 0) {
                break;
            }
        }
        if (s->name) {
            if (lb_conf_set_value(cf, s, e, conf) != LB_OK) {
                rc = LB_ERROR;
            }
            continue;
        }
        for (k = 0; table[k].name && k < lb_nelems(names) - 1; k++) {
            names[k] = table[k].name;
        }
        names[k] = NULL;
        hint = lb_did_you_mean(config_setting_name(e), names);
        rc = lb_conf_error(cf, e, "unknown setting \"%s\" in \"%s\" of %s%s%s%s",
                           config_setting_name(e), name, cf->block,
                           hint ? " (did you mean \"" : "", hint ? hint : "",
                           hint ? "\"?)" : "");
    }
    return rc;
}

static bool
lb_module_applies(const lb_module_t *m, unsigned ctx, const char *protocol)
{
    const char *const  *p;

    if (!(m->conf_contexts & ctx)) {
        return false;
    }
    if (!(ctx & (LB_CTX_LISTENER | LB_CTX_ROUTE)) || m->protocols == NULL) {
        return true;
    }
    for (p = m->protocols; *p; p++) {
        if (protocol && strcmp(*p, protocol) == 0) {
            return true;
        }
    }
    return false;
}

static const lb_setting_t *
lb_conf_find_setting(lb_conf_t *cf, unsigned ctx, const char *name, lb_module_t **owner)
{
    const lb_setting_t  *s;
    size_t               i;

    for (i = 0; i < lb_nmodules; i++) {
        if (!lb_module_applies(lb_all_modules[i], ctx, cf->protocol)
            || lb_all_modules[i]->settings == NULL)
        {
            continue;
        }
        for (s = lb_all_modules[i]->settings; s->name; s++) {
            if ((s->contexts & ctx) && strcmp(s->name, name) == 0) {
                *owner = lb_all_modules[i];
                return s;
            }
        }
    }
    return NULL;
}

static int
lb_conf_cmp_names(const void *a, const void *b)
{
    return strcmp(*(const char *const *) a, *(const char *const *) b);
}

int
lb_conf_unknown_name(lb_conf_t *cf, const config_setting_t *v, const char *where,
                     const char *const *names)
{
    const char  *sorted[256], *hint;
    char         list[2048], did[160];
    size_t       i, n, len = 0;

    for (n = 0; names[n] != NULL && n < lb_nelems(sorted); n++) {
        sorted[n] = names[n];
    }
    qsort(sorted, n, sizeof(sorted[0]), lb_conf_cmp_names);
    list[0] = '\0';
    for (i = 0; i < n && len < sizeof(list); i++) {
        if (i > 0 && strcmp(sorted[i], sorted[i - 1]) == 0) {
            continue;
        }
        len += (size_t) snprintf(list + len, sizeof(list) - len, "%s%s", len ? ", " : "",
                                 sorted[i]);
    }
    hint = lb_did_you_mean(config_setting_name(v), names);
    did[0] = '\0';
    if (hint) {
        snprintf(did, sizeof(did), " (did you mean \"%s\"?)", hint);
    }
    return lb_conf_error(cf, v, "unknown setting \"%s\" in %s%s; valid here: %s",
                         config_setting_name(v), where, did, list);
}

static int
lb_conf_unknown(lb_conf_t *cf, config_setting_t *v, unsigned ctx)
{
    const char          *names[256];
    const lb_setting_t  *s;
    size_t               i, n = 0;

    for (i = 0; i < lb_nmodules; i++) {
        if (!lb_module_applies(lb_all_modules[i], ctx, cf->protocol)
            || lb_all_modules[i]->settings == NULL)
        {
            continue;
        }
        for (s = lb_all_modules[i]->settings; s->name && n < lb_nelems(names) - 1; s++) {
            if (s->contexts & ctx) {
                names[n++] = s->name;
            }
        }
    }
    names[n] = NULL;
    return lb_conf_unknown_name(cf, v, cf->block, names);
}

int
lb_conf_parse_block(lb_conf_t *cf, config_setting_t *group, unsigned ctx, void ***out)
{
    void               **confs;
    void                *parent;
    lb_module_t         *m, *owner;
    const lb_setting_t  *s;
    config_setting_t    *v;
    unsigned             saved_ctx = cf->ctx;
    config_setting_t    *saved_group = cf->group;
    int                  i, n, rc = LB_OK;
    size_t               k;
    bool                 failed;

    if (config_setting_type(group) != CONFIG_TYPE_GROUP) {
        return lb_conf_error(cf, group, "%s must be a group { ... }, not %s",
                             cf->block, lb_conf_type_name(group));
    }

    confs = lb_pcalloc(cf->pool, lb_nmodules * sizeof(void *));
    if (confs == NULL) {
        return lb_conf_error(cf, group, "out of memory");
    }
    /* visible at once, so a nested block parsed by a setting or a
     * merge_conf of this one can name these confs as its parent */
    *out = confs;
    cf->ctx = ctx;
    cf->group = group;

    for (k = 0; k < lb_nmodules; k++) {
        m = lb_all_modules[k];
        if (!lb_module_applies(m, ctx, cf->protocol) || m->create_conf == NULL) {
            continue;
        }
        confs[k] = m->create_conf(cf, ctx);
        if (confs[k] == NULL) {
            return lb_conf_error(cf, group, "out of memory");
        }
        for (s = m->settings; s && s->name; s++) {
            if ((s->contexts & ctx) && lb_conf_set_default(cf, s, confs[k]) != LB_OK) {
                rc = LB_ERROR;
            }
        }
    }

    n = config_setting_length(group);
    for (i = 0; i < n; i++) {
        v = config_setting_get_elem(group, (unsigned) i);
        s = lb_conf_find_setting(cf, ctx, config_setting_name(v), &owner);
        if (s == NULL) {
            rc = lb_conf_unknown(cf, v, ctx);
            continue;
        }
        if (confs[owner->index] == NULL) {
            rc = lb_conf_error(cf, v, "internal error: module %s has no configuration "
                               "for \"%s\"", owner->name, s->name);
            continue;
        }
        if (lb_conf_set_value(cf, s, v, confs[owner->index]) != LB_OK) {
            rc = LB_ERROR;
        }
    }

    for (k = 0; k < lb_nmodules; k++) {
        m = lb_all_modules[k];
        if (confs[k] == NULL) {
            continue;
        }
        for (s = m->settings; s && s->name; s++) {
            if ((s->contexts & ctx) && (s->flags & LB_SETTING_REQUIRED)
                && config_setting_get_member(group, s->name) == NULL)
            {
                rc = lb_conf_error(cf, group, "missing required setting \"%s\" in %s",
                                   s->name, cf->block);
            }
        }
    }

    /* a block with errors still has its nested blocks checked by the
     * merges that parse them */
    failed = rc != LB_OK;
    for (k = 0; k < lb_nmodules; k++) {
        m = lb_all_modules[k];
        if (confs[k] == NULL || m->merge_conf == NULL
            || (failed && !(m->flags & LB_MODULE_MERGE_ON_ERROR)))
        {
            continue;
        }
        parent = cf->parent_confs ? cf->parent_confs[k] : NULL;
        cf->block_failed = failed;
        if (m->merge_conf(cf, ctx, parent, confs[k]) != LB_OK) {
            rc = LB_ERROR;
        }
    }
    cf->block_failed = false;

    cf->ctx = saved_ctx;
    cf->group = saved_group;
    *out = confs;
    return rc;
}
