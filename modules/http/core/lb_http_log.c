/*
 * lb_http_log.c: the access log of http listeners (SPEC §7). Formats are
 * compiled at load; the lines go to the core's access-log files
 * (lb_access_log.c), which the master opens and the workers buffer and
 * write as whole lines.
 */
#include "lb_core.h"
#include "lb_http_log.h"

#define LB_HTTP_LOG_FIELD_MAX  (8 * 1024)      /* one json value before escaping */

#define LB_HTTP_LOG_COMBINED_TEXT                                            \
    "$remote_addr - - [$time_local] \"$request\" $status $bytes_sent "       \
    "\"$http_referer\" \"$http_user_agent\""

/* The json format: each key and the variable giving its value; numbers are
 * written bare ("0" when empty). */
static const struct {
    const char  *key;
    const char  *var;
    bool         number;
} lb_http_log_json_fields[] = {
    { "time", "$time_iso8601", false },
    { "remote_addr", "$remote_addr", false },
    { "method", "$method", false },
    { "uri", "$request_uri", false },
    { "protocol", NULL, false },            /* from the request's version */
    { "status", "$status", true },
    { "bytes_sent", "$bytes_sent", true },
    { "request_time", "$request_time", true },
    { "host", "$host", false },
    { "user_agent", "$http_user_agent", false },
    { "referer", "$http_referer", false },
    { "request_id", "$request_id", false },
    { "upstream_addr", "$upstream_addr", false },
};

#define LB_HTTP_LOG_NJSON  (sizeof(lb_http_log_json_fields) / sizeof(lb_http_log_json_fields[0]))

static char  lb_http_log_line[LB_ACCESS_LOG_LINE_MAX];
static char  lb_http_log_field[LB_HTTP_LOG_FIELD_MAX];

/* escape = "default" | "json": how a format's variables are written. */
static int
lb_http_log_escape(lb_conf_t *cf, config_setting_t *v, lb_http_escape_t *out)
{
    static const char *const  names[] = { "default", "json", NULL };
    const char               *str, *hint;

    if (lb_conf_get_string(cf, v, &str) != LB_OK) {
        return LB_ERROR;
    }
    if (strcmp(str, "default") == 0 || strcmp(str, "json") == 0) {
        *out = str[0] == 'j' ? LB_HTTP_ESCAPE_JSON : LB_HTTP_ESCAPE_NONE;
        return LB_OK;
    }
    hint = lb_did_you_mean(str, names);
    if (hint) {
        return lb_conf_error(cf, v, "invalid value \"%s\" for \"escape\" (did you mean "
                             "\"%s\"?); expected one of: default, json", str, hint);
    }
    return lb_conf_error(cf, v, "invalid value \"%s\" for \"escape\"; expected one of: "
                         "default, json", str);
}

int
lb_http_log_set(lb_conf_t *cf, const lb_setting_t *s, config_setting_t *v, void *conf)
{
    static const char *const  names[] = { "path", "format", "escape", NULL };
    lb_http_access_log_t     *log = (lb_http_access_log_t *) ((char *) conf + s->offset);
    config_setting_t         *path_s, *format_s, *escape_s;
    const char               *path, *format = "combined", *text;
    char                      err[256];
    unsigned                  i;
    int                       rc;

    rc = lb_access_log_group(cf, v, names, &path_s, &path);
    if (rc == LB_DECLINED) {
        return LB_OK;
    }
    if (path == NULL) {
        return LB_ERROR;
    }
    format_s = config_setting_get_member(v, "format");
    escape_s = config_setting_get_member(v, "escape");
    if ((format_s && lb_conf_get_string(cf, format_s, &format) != LB_OK)
        || (escape_s && lb_http_log_escape(cf, escape_s, &log->escape) != LB_OK))
    {
        return LB_ERROR;
    }

    if (strcmp(format, "json") == 0) {
        log->format = LB_HTTP_LOG_JSON;
        log->json = lb_pcalloc(cf->pool, LB_HTTP_LOG_NJSON * sizeof(lb_http_complex_t *));
        if (log->json == NULL) {
            return lb_conf_error(cf, v, "out of memory");
        }
        for (i = 0; i < LB_HTTP_LOG_NJSON; i++) {
            if (lb_http_log_json_fields[i].var) {
                log->json[i] = lb_http_complex_compile(cf->pool,
                                                       lb_http_log_json_fields[i].var,
                                                       err, sizeof(err));
                if (log->json[i] == NULL) {
                    return lb_conf_error(cf, v, "access_log json: %s", err);
                }
            }
        }
    } else {
        log->format = strcmp(format, "combined") == 0 ? LB_HTTP_LOG_COMBINED
                                                      : LB_HTTP_LOG_CUSTOM;
        text = log->format == LB_HTTP_LOG_COMBINED ? LB_HTTP_LOG_COMBINED_TEXT : format;
        log->cv = lb_http_complex_conf(cf, format_s ? format_s : v, text, "access_log format");
        if (log->cv == NULL || rc != LB_OK) {
            return LB_ERROR;
        }
    }

    log->file = lb_access_file_get(cf, path_s, path);
    return log->file ? rc : LB_ERROR;
}

static size_t
lb_http_log_json(const lb_http_access_log_t *log, const lb_http_var_ctx_t *ctx,
                 char *line, size_t max)
{
    const char  *v;
    size_t       n = 0, i, len;

    lb_access_log_put(line, &n, max, "{", 1);
    for (i = 0; i < LB_HTTP_LOG_NJSON; i++) {
        if (i) {
            lb_access_log_put(line, &n, max, ",", 1);
        }
        lb_access_log_put(line, &n, max, "\"", 1);
        lb_access_log_put(line, &n, max, lb_http_log_json_fields[i].key,
                        strlen(lb_http_log_json_fields[i].key));
        lb_access_log_put(line, &n, max, "\":", 2);
        if (log->json[i] == NULL) {
            v = ctx->request == NULL ? "" : ctx->request->version == 10 ? "HTTP/1.0"
                                                                         : "HTTP/1.1";
            len = strlen(v);
        } else {
            len = lb_min(lb_http_complex_eval(log->json[i], ctx,
                                              lb_http_log_field, sizeof(lb_http_log_field)),
                         sizeof(lb_http_log_field));
            v = lb_http_log_field;
        }
        if (lb_http_log_json_fields[i].number) {
            lb_access_log_put(line, &n, max, len ? v : "0", len ? len : 1);
            continue;
        }
        lb_access_log_put(line, &n, max, "\"", 1);
        lb_access_log_put_json(line, &n, max - 1, v, len);
        lb_access_log_put(line, &n, max, "\"", 1);
    }
    lb_access_log_put(line, &n, max, "}", 1);
    return n;
}

void
lb_http_log_request(const lb_http_access_log_t *log, const lb_http_var_ctx_t *ctx)
{
    size_t  max = sizeof(lb_http_log_line) - 1, n;

    if (log->file == NULL || log->file->buf == NULL) {
        return;
    }
    if (log->format == LB_HTTP_LOG_JSON) {
        n = lb_http_log_json(log, ctx, lb_http_log_line, max);
    } else {
        n = lb_min(lb_http_complex_eval_escaped(log->cv, ctx, lb_http_log_line, max,
                                                log->escape), max);
    }
    lb_http_log_line[n++] = '\n';
    lb_access_file_write(log->file, lb_http_log_line, n);
}
