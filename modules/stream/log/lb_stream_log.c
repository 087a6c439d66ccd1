/*
 * lb_stream_log.c: the access_log setting of tcp, tls and udp listeners,
 * its formats compiled at load into a list of parts (literal bytes or one
 * of a few stream variables), and the line of an ended session, written to
 * a core access-log file (lb_access_log.c) like the http log's.
 */
#include "lb_core.h"
#include "lb_stream_log.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/un.h>
#include <time.h>

typedef enum {
    LB_STREAM_VAR_REMOTE_ADDR = 0,
    LB_STREAM_VAR_REMOTE_PORT,
    LB_STREAM_VAR_SERVER_NAME,
    LB_STREAM_VAR_PROTOCOL,
    LB_STREAM_VAR_UPSTREAM_ADDR,
    LB_STREAM_VAR_BYTES_RECEIVED,
    LB_STREAM_VAR_BYTES_SENT,
    LB_STREAM_VAR_SESSION_TIME,
    LB_STREAM_VAR_END_REASON,
    LB_STREAM_VAR_TIME_LOCAL,
    LB_STREAM_VAR_TIME_ISO8601,
    LB_STREAM_VAR_LITERAL,
} lb_stream_var_t;

/* In the order of lb_stream_var_t. */
static const char *const  lb_stream_var_names[] = {
    "remote_addr", "remote_port", "server_name", "protocol", "upstream_addr",
    "bytes_received", "bytes_sent", "session_time", "end_reason", "time_local",
    "time_iso8601", NULL
};

const char *const  lb_stream_end_names[] = {
    "client_closed", "server_closed", "idle_timeout", "session_timeout", "responses",
    "connect_failed", "denied", "shutdown", "error", NULL
};

typedef struct {
    lb_stream_var_t  var;
    const char      *text;          /* LITERAL */
    size_t           len;
} lb_stream_log_part_t;

typedef enum {
    LB_STREAM_LOG_TEXT = 0,         /* the default line, or a custom format */
    LB_STREAM_LOG_JSON,
} lb_stream_log_format_t;

typedef struct {
    lb_access_file_t         *file;     /* NULL: no access log */
    lb_stream_log_format_t    format;
    lb_stream_log_part_t     *parts;    /* TEXT */
    size_t                    nparts;
    lb_listener_t            *listener;
} lb_stream_log_conf_t;

#define LB_STREAM_LOG_DEFAULT                                                  \
    "$remote_addr $remote_port [$time_local] $protocol \"$server_name\" "      \
    "$upstream_addr $bytes_received $bytes_sent $session_time $end_reason"

/* The json format: each key and its variable; numbers are written bare. */
static const struct {
    const char       *key;
    lb_stream_var_t   var;
    bool              number;
} lb_stream_log_json_fields[] = {
    { "time", LB_STREAM_VAR_TIME_ISO8601, false },
    { "remote_addr", LB_STREAM_VAR_REMOTE_ADDR, false },
    { "remote_port", LB_STREAM_VAR_REMOTE_PORT, true },
    { "server_name", LB_STREAM_VAR_SERVER_NAME, false },
    { "protocol", LB_STREAM_VAR_PROTOCOL, false },
    { "upstream_addr", LB_STREAM_VAR_UPSTREAM_ADDR, false },
    { "bytes_received", LB_STREAM_VAR_BYTES_RECEIVED, true },
    { "bytes_sent", LB_STREAM_VAR_BYTES_SENT, true },
    { "session_time", LB_STREAM_VAR_SESSION_TIME, true },
    { "end_reason", LB_STREAM_VAR_END_REASON, false },
};

static int   lb_stream_log_set(lb_conf_t *cf, const lb_setting_t *s, config_setting_t *v,
                               void *conf);
static void *lb_stream_log_create_conf(lb_conf_t *cf, unsigned ctx);
static int   lb_stream_log_merge_conf(lb_conf_t *cf, unsigned ctx, void *parent, void *conf);

static const char *const  lb_stream_log_protocols[] = { "tcp", "tls", "udp", NULL };

static const lb_setting_t  lb_stream_log_settings[] = {
    { "access_log", LB_SET_CUSTOM, LB_CTX_LISTENER, NULL, 0, 0, 0, NULL,
      lb_stream_log_set, 0 },
    lb_setting_end
};

lb_module_t  lb_stream_log_module = {
    "stream_log", LB_MODULE_STREAM, lb_stream_log_protocols, lb_stream_log_settings,
    LB_CTX_LISTENER,
    lb_stream_log_create_conf, lb_stream_log_merge_conf, NULL,
    NULL, NULL, NULL, NULL, 0, NULL
};

static char  lb_stream_log_line[LB_ACCESS_LOG_LINE_MAX];

/* Configuration ---------------------------------------------------------- */

static void *
lb_stream_log_create_conf(lb_conf_t *cf, unsigned ctx)
{
    return lb_pcalloc(cf->pool, sizeof(lb_stream_log_conf_t));
}

static int
lb_stream_log_merge_conf(lb_conf_t *cf, unsigned ctx, void *parent, void *conf)
{
    lb_stream_log_conf_t  *lcf = conf;

    lcf->listener = cf->listener;
    return LB_OK;
}

static inline bool
lb_stream_log_name_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')
           || c == '_';
}

/* Compiles text into parts: "$name" or "${name}" is a variable, "$$" a
 * literal "$". Writes the reason into err and returns LB_ERROR for an
 * unknown or malformed variable. */
static int
lb_stream_log_compile(lb_conf_t *cf, lb_stream_log_conf_t *lcf, const char *text,
                      char *err, size_t errlen)
{
    lb_stream_log_part_t  *parts;
    const char            *p = text, *start, *best;
    char                   name[64];
    size_t                 n = 0, len;
    bool                   braced;
    int                    k;

    /* at most one part per byte, plus one */
    parts = lb_pcalloc(cf->pool, (strlen(text) + 1) * sizeof(*parts));
    if (parts == NULL) {
        snprintf(err, errlen, "out of memory");
        return LB_ERROR;
    }
    while (*p) {
        if (*p != '$' || p[1] == '$') {
            start = p;
            if (*p == '$') {
                p += 2;         /* "$$": the literal is the first "$" */
                len = 1;
            } else {
                while (*p && *p != '$') {
                    p++;
                }
                len = (size_t) (p - start);
            }
            parts[n].var = LB_STREAM_VAR_LITERAL;
            parts[n].text = lb_pstrndup(cf->pool, start, len);
            parts[n].len = len;
            if (parts[n].text == NULL) {
                snprintf(err, errlen, "out of memory");
                return LB_ERROR;
            }
            n++;
            continue;
        }
        p++;
        braced = *p == '{';
        p += braced;
        start = p;
        while (lb_stream_log_name_char(*p)) {
            p++;
        }
        len = (size_t) (p - start);
        if (braced && *p != '}') {
            snprintf(err, errlen, "\"${\" without its \"}\"");
            return LB_ERROR;
        }
        p += braced;
        if (len == 0) {
            snprintf(err, errlen, "a \"$\" without a variable name (write \"$$\" for a "
                     "literal \"$\")");
            return LB_ERROR;
        }
        snprintf(name, sizeof(name), "%.*s", (int) lb_min(len, sizeof(name) - 1), start);
        for (k = 0; lb_stream_var_names[k]; k++) {
            if (strlen(lb_stream_var_names[k]) == len
                && memcmp(lb_stream_var_names[k], start, len) == 0)
            {
                break;
            }
        }
        if (lb_stream_var_names[k] == NULL) {
            best = lb_did_you_mean(name, lb_stream_var_names);
            if (best) {
                snprintf(err, errlen, "unknown variable \"$%s\" (did you mean \"$%s\"?)",
                         name, best);
            } else {
                snprintf(err, errlen, "unknown variable \"$%s\" (stream listeners have "
                         "$remote_addr, $remote_port, $server_name, $protocol, "
                         "$upstream_addr, $bytes_received, $bytes_sent, $session_time, "
                         "$end_reason, $time_local and $time_iso8601)", name);
            }
            return LB_ERROR;
        }
        parts[n].var = (lb_stream_var_t) k;
        n++;
    }
    lcf->parts = parts;
    lcf->nparts = n;
    return LB_OK;
}

static int
lb_stream_log_set(lb_conf_t *cf, const lb_setting_t *s, config_setting_t *v, void *conf)
{
    static const char *const  names[] = { "path", "format", NULL };
    lb_stream_log_conf_t     *lcf = conf;
    config_setting_t         *path_s, *format_s;
    const char               *path, *format = NULL;
    char                      err[512];
    int                       rc;

    rc = lb_access_log_group(cf, v, names, &path_s, &path);
    if (rc == LB_DECLINED) {
        return LB_OK;
    }
    if (rc != LB_OK) {
        return LB_ERROR;
    }
    format_s = config_setting_get_member(v, "format");
    if (format_s && lb_conf_get_string(cf, format_s, &format) != LB_OK) {
        return LB_ERROR;
    }
    if (format && strcmp(format, "json") == 0) {
        lcf->format = LB_STREAM_LOG_JSON;
    } else {
        lcf->format = LB_STREAM_LOG_TEXT;
        if (format && strcmp(format, "combined") == 0) {
            return lb_conf_error(cf, format_s, "access_log format \"combined\" is for http "
                                 "listeners; a %s listener takes \"default\", \"json\" or "
                                 "a string with variables", cf->protocol);
        }
        if (format == NULL || strcmp(format, "default") == 0) {
            format = LB_STREAM_LOG_DEFAULT;
        }
        if (lb_stream_log_compile(cf, lcf, format, err, sizeof(err)) != LB_OK) {
            return lb_conf_error(cf, format_s, "access_log format: %s", err);
        }
    }
    lcf->file = lb_access_file_get(cf, path_s, path);
    return lcf->file ? LB_OK : LB_ERROR;
}

/* Lines ------------------------------------------------------------------- */

/* $remote_addr is the address without its port ("::1", "unix:" for a
 * unix socket client); $remote_port the port, "" for a unix socket. */
static size_t
lb_stream_log_addr(const lb_stream_log_ctx_t *ctx, bool port, char *buf, size_t size)
{
    const struct sockaddr_in   *sin = (const struct sockaddr_in *) ctx->client;
    const struct sockaddr_in6  *sin6 = (const struct sockaddr_in6 *) ctx->client;

    if (ctx->client == NULL) {
        return 0;
    }
    switch (ctx->client->sa_family) {
    case AF_INET:
        if (port) {
            return (size_t) snprintf(buf, size, "%u", (unsigned) ntohs(sin->sin_port));
        }
        return inet_ntop(AF_INET, &sin->sin_addr, buf, (socklen_t) size) ? strlen(buf) : 0;
    case AF_INET6:
        if (port) {
            return (size_t) snprintf(buf, size, "%u", (unsigned) ntohs(sin6->sin6_port));
        }
        return inet_ntop(AF_INET6, &sin6->sin6_addr, buf, (socklen_t) size) ? strlen(buf) : 0;
    case AF_UNIX:
        return port ? 0 : (size_t) snprintf(buf, size, "unix:");
    default:
        return 0;
    }
}

/* Local time, as $time_local ("25/Nov/2026:10:59:46 +0000", English month
 * names whatever the locale) or $time_iso8601 ("2026-11-25T10:59:46+00:00"). */
static size_t
lb_stream_log_time(bool iso, char *buf, size_t size)
{
    static const char *const  months[] = { "Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                           "Jul", "Aug", "Sep", "Oct", "Nov", "Dec" };
    struct tm  tm;
    time_t     now = time(NULL);
    char       zone[8];
    int        n;

    if (localtime_r(&now, &tm) == NULL || strftime(zone, sizeof(zone), "%z", &tm) != 5) {
        return 0;
    }
    if (iso) {
        n = snprintf(buf, size, "%04d-%02d-%02dT%02d:%02d:%02d%.3s:%.2s", tm.tm_year + 1900,
                     tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, zone,
                     zone + 3);
    } else {
        n = snprintf(buf, size, "%02d/%s/%04d:%02d:%02d:%02d %s", tm.tm_mday,
                     months[tm.tm_mon % 12], tm.tm_year + 1900, tm.tm_hour, tm.tm_min,
                     tm.tm_sec, zone);
    }
    return n > 0 && (size_t) n < size ? (size_t) n : 0;
}

/* The value of var into buf (at most size bytes); its length. */
static size_t
lb_stream_log_value(const lb_stream_log_conf_t *lcf, lb_stream_var_t var,
                    const lb_stream_log_ctx_t *ctx, char *buf, size_t size)
{
    const char  *s = NULL;
    lb_msec_t    ms;
    int          n;

    switch (var) {
    case LB_STREAM_VAR_REMOTE_ADDR:
        return lb_stream_log_addr(ctx, false, buf, size);
    case LB_STREAM_VAR_REMOTE_PORT:
        return lb_stream_log_addr(ctx, true, buf, size);
    case LB_STREAM_VAR_SERVER_NAME:
        s = lcf->listener->name;
        break;
    case LB_STREAM_VAR_PROTOCOL:
        s = lcf->listener->protocol;
        break;
    case LB_STREAM_VAR_UPSTREAM_ADDR:
        s = ctx->upstream_addr;
        break;
    case LB_STREAM_VAR_BYTES_RECEIVED:
    case LB_STREAM_VAR_BYTES_SENT:
        n = snprintf(buf, size, "%llu", (unsigned long long)
                     (var == LB_STREAM_VAR_BYTES_SENT ? ctx->bytes_sent
                                                      : ctx->bytes_received));
        return n > 0 ? lb_min((size_t) n, size) : 0;
    case LB_STREAM_VAR_SESSION_TIME:
        ms = lb_max(lb_current_msec - ctx->start_msec, 0);
        n = snprintf(buf, size, "%lld.%03d", (long long) (ms / 1000), (int) (ms % 1000));
        return n > 0 ? lb_min((size_t) n, size) : 0;
    case LB_STREAM_VAR_END_REASON:
        s = lb_stream_end_names[ctx->end];
        break;
    case LB_STREAM_VAR_TIME_LOCAL:
        return lb_stream_log_time(false, buf, size);
    case LB_STREAM_VAR_TIME_ISO8601:
        return lb_stream_log_time(true, buf, size);
    case LB_STREAM_VAR_LITERAL:
        break;
    }
    if (s == NULL) {
        return 0;
    }
    n = snprintf(buf, size, "%s", s);
    return n > 0 ? lb_min((size_t) n, size - 1) : 0;
}

bool
lb_stream_log_enabled(const lb_listener_t *ls)
{
    const lb_stream_log_conf_t  *lcf;

    if (ls->confs == NULL) {
        return false;
    }
    lcf = lb_get_conf(ls->confs, lb_stream_log_module);
    return lcf && lcf->file && lcf->file->buf;
}

void
lb_stream_log_session(const lb_listener_t *ls, const lb_stream_log_ctx_t *ctx)
{
    const lb_stream_log_conf_t  *lcf;
    char                        *line = lb_stream_log_line;
    char                         value[512];     /* a unix path fits */
    size_t                       max = sizeof(lb_stream_log_line) - 1, n = 0, i, len;

    if (!lb_stream_log_enabled(ls)) {
        return;
    }
    lcf = lb_get_conf(ls->confs, lb_stream_log_module);
    if (lcf->format == LB_STREAM_LOG_JSON) {
        lb_access_log_put(line, &n, max, "{", 1);
        for (i = 0; i < lb_nelems(lb_stream_log_json_fields); i++) {
            lb_access_log_put(line, &n, max, i ? ",\"" : "\"", i ? 2 : 1);
            lb_access_log_put(line, &n, max, lb_stream_log_json_fields[i].key,
                              strlen(lb_stream_log_json_fields[i].key));
            lb_access_log_put(line, &n, max, "\":", 2);
            len = lb_stream_log_value(lcf, lb_stream_log_json_fields[i].var, ctx, value,
                                      sizeof(value));
            if (lb_stream_log_json_fields[i].number) {
                lb_access_log_put(line, &n, max, len ? value : "0", len ? len : 1);
            } else if (len == 0 && lb_stream_log_json_fields[i].var
                                   == LB_STREAM_VAR_UPSTREAM_ADDR)
            {
                lb_access_log_put(line, &n, max, "null", 4);
            } else {
                lb_access_log_put(line, &n, max, "\"", 1);
                lb_access_log_put_json(line, &n, max - 1, value, len);
                lb_access_log_put(line, &n, max, "\"", 1);
            }
        }
        lb_access_log_put(line, &n, max, "}", 1);
    } else {
        for (i = 0; i < lcf->nparts; i++) {
            if (lcf->parts[i].var == LB_STREAM_VAR_LITERAL) {
                lb_access_log_put(line, &n, max, lcf->parts[i].text, lcf->parts[i].len);
                continue;
            }
            len = lb_stream_log_value(lcf, lcf->parts[i].var, ctx, value, sizeof(value));
            /* a value that is not there (no server) is "-", as in nginx */
            lb_access_log_put(line, &n, max, len ? value : "-", len ? len : 1);
        }
    }
    line[n++] = '\n';
    lb_access_file_write(lcf->file, line, n);
}
