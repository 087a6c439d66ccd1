/*
 * lb_http_log.c: the access log (SPEC §7). Formats are compiled at load;
 * each worker opens every distinct path once (O_APPEND) and keeps a
 * 64 KiB buffer per file, flushed when the next line would not fit, by a
 * 1 s timer, on USR1 (before reopening) and at exit. Only whole lines are
 * written, so the lines of several workers never mix, and a full disk
 * never leaves a torn line (lb_http_log_flush says how).
 */
#include "lb_core.h"
#include "lb_http_log.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>

#define LB_HTTP_LOG_BUF_SIZE   (64 * 1024)
#define LB_HTTP_LOG_LINE_MAX   (16 * 1024)     /* longer lines are cut */
#define LB_HTTP_LOG_FIELD_MAX  (8 * 1024)      /* one json value before escaping */
#define LB_HTTP_LOG_FLUSH_MSEC 1000

struct lb_http_log_file_s {
    const char          *path;          /* absolute */
    int                  fd;            /* -1: not open in this process */
    char                *buf;           /* LB_HTTP_LOG_BUF_SIZE, per worker */
    size_t               len;
    int                  failed;        /* errno of the last write that failed, or 0 */
    lb_http_log_file_t  *next;          /* the worker's open files */
};

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

static lb_http_log_file_t  *lb_http_log_open_files;
static lb_timer_t           lb_http_log_timer;
static bool                 lb_http_log_worker_ready;
static char                 lb_http_log_line[LB_HTTP_LOG_LINE_MAX];
static char                 lb_http_log_field[LB_HTTP_LOG_FIELD_MAX];

static void lb_http_log_flush_all(void);

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
    config_setting_t         *path_s, *format_s, *escape_s, *m;
    const char               *path = NULL, *format = "combined", *text, *const *p;
    char                      err[256];
    unsigned                  i;
    int                       n, rc = LB_OK;

    if (config_setting_type(v) == CONFIG_TYPE_STRING
        && strcmp(config_setting_get_string(v), "off") == 0)
    {
        return LB_OK;
    }
    if (config_setting_type(v) != CONFIG_TYPE_GROUP) {
        return lb_conf_error(cf, v, "access_log must be a group { path = \"...\"; "
                             "format = \"...\"; } or \"off\", not %s",
                             lb_conf_type_name(v));
    }
    n = config_setting_length(v);
    for (i = 0; i < (unsigned) n; i++) {
        m = config_setting_get_elem(v, i);
        for (p = names; *p && strcmp(*p, config_setting_name(m)) != 0; p++) { /* search */ }
        if (*p == NULL) {
            rc = lb_conf_unknown_name(cf, m, "access_log", names);
        }
    }
    path_s = config_setting_get_member(v, "path");
    format_s = config_setting_get_member(v, "format");
    escape_s = config_setting_get_member(v, "escape");
    if (path_s == NULL) {
        return lb_conf_error(cf, v, "access_log needs a path (or \"off\")");
    }
    if (lb_conf_get_string(cf, path_s, &path) != LB_OK
        || (format_s && lb_conf_get_string(cf, format_s, &format) != LB_OK)
        || (escape_s && lb_http_log_escape(cf, escape_s, &log->escape) != LB_OK))
    {
        return LB_ERROR;
    }
    if (strcmp(path, "off") == 0) {
        return rc;
    }
    if (path[0] == '\0') {
        return lb_conf_error(cf, path_s, "access_log path is empty");
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

    log->file = lb_pcalloc(cf->pool, sizeof(lb_http_log_file_t));
    if (log->file == NULL) {
        return lb_conf_error(cf, v, "out of memory");
    }
    log->file->path = lb_cycle_path(cf->pool, cf->cycle->prefix, path);
    if (log->file->path == NULL) {
        return lb_conf_error(cf, v, "out of memory");
    }
    log->file->fd = -1;
    log->conf_file = lb_pstrdup(cf->pool, lb_conf_file(cf, path_s));   /* outlives libconfig */
    if (log->conf_file == NULL) {
        return lb_conf_error(cf, v, "out of memory");
    }
    log->conf_line = config_setting_source_line(path_s);
    return rc;
}

void
lb_http_log_share(lb_http_access_log_t *log, const lb_http_access_log_t *earlier)
{
    if (log->file && earlier->file && log->file != earlier->file
        && strcmp(log->file->path, earlier->file->path) == 0)
    {
        log->file = earlier->file;
    }
}

int
lb_http_log_check(lb_http_access_log_t *log)
{
    int  fd;

    if (log->file == NULL) {
        return LB_OK;
    }
    fd = open(log->file->path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (fd == -1) {
        lb_log_error(errno, "%s:%d: cannot open access log \"%s\"", log->conf_file,
                     log->conf_line, log->file->path);
        return LB_ERROR;
    }
    close(fd);
    return LB_OK;
}

/* Cuts what a short write left after the last newline it wrote, so the
 * file ends with a whole line. Returns the bytes of f->buf now in the file:
 * `wrote` cut back to a line end, or all of `wrote` when the cut is not
 * possible (then the next write finishes the torn line). */
static size_t
lb_http_log_cut(lb_http_log_file_t *f, size_t wrote)
{
    struct stat  st;
    off_t        end;
    size_t       keep = wrote;

    while (keep > 0 && f->buf[keep - 1] != '\n') {
        keep--;
    }
    /* O_APPEND left our offset at the end of what we wrote; under the lock
     * no worker can have written after it, but another program may have */
    end = lseek(f->fd, 0, SEEK_CUR);
    if (end == -1 || fstat(f->fd, &st) == -1 || st.st_size != end
        || ftruncate(f->fd, end - (off_t) (wrote - keep)) == -1)
    {
        lb_log_error_limited(errno, "cannot cut a torn line off the access log \"%s\"; "
                             "its end is written with the next lines", f->path);
        return wrote;
    }
    return keep;
}

/* Writes the buffer. Several workers append to the file, each through its
 * own O_APPEND descriptor, and one write(2) of whole lines lands at the end
 * in one piece. A full disk (ENOSPC, EDQUOT, EFBIG) can cut that write
 * short, leaving a torn line that the other workers' lines would follow.
 * So the write is made under an exclusive flock(2) on the file, which
 * every worker (each with its own open file description) takes for its
 * writes, and a short write is cut back to its last newline before the
 * lock is dropped: nobody appended after it meanwhile. The lines not
 * written stay in the buffer and the 1 s timer tries them again; while
 * the file fails, new lines are added only as long as they fit, and the
 * ones that do not are dropped and counted in the error log. The lock
 * costs two calls per flush (one per 64 KiB at most) and is held for one
 * write. */
static void
lb_http_log_flush(lb_http_log_file_t *f)
{
    size_t   done = 0;
    ssize_t  n;
    int      err = 0;

    if (f->len == 0) {
        return;
    }
    while (flock(f->fd, LOCK_EX) == -1 && errno == EINTR) {
        /* a signal: the lock is still wanted */
    }
    while (done < f->len) {
        n = write(f->fd, f->buf + done, f->len - done);
        if (n == -1 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            err = n == 0 ? EIO : errno;
            break;
        }
        if ((size_t) n < f->len - done) {
            /* short: the disk filled up (a retry here could loop on a
             * line that never fits; the timer makes the next one) */
            done = lb_http_log_cut(f, done + (size_t) n);
            err = ENOSPC;
            break;
        }
        done += (size_t) n;
    }
    flock(f->fd, LOCK_UN);

    memmove(f->buf, f->buf + done, f->len - done);
    f->len -= done;
    if (err) {
        lb_log_error_limited(err, "cannot write the access log \"%s\"; %zu bytes of whole "
                             "lines kept to try again", f->path, f->len);
        f->failed = err;
        return;
    }
    if (f->failed) {
        lb_log_notice("the access log \"%s\" is written again", f->path);
        f->failed = 0;
    }
}

static void
lb_http_log_flush_all(void)
{
    lb_http_log_file_t  *f;
    bool                 left = false;

    for (f = lb_http_log_open_files; f; f = f->next) {
        lb_http_log_flush(f);
        left = left || f->len;
    }
    if (left && !lb_worker_quitting && !lb_timer_is_set(&lb_http_log_timer)) {
        lb_timer_set(&lb_http_log_timer, LB_HTTP_LOG_FLUSH_MSEC);
    }
}

static void
lb_http_log_timer_expired(lb_timer_t *t)
{
    lb_http_log_flush_all();
}

/* USR1: flush, then reopen each file under its path; a file that cannot
 * be reopened keeps its old descriptor. */
static void
lb_http_log_reopen(void)
{
    lb_http_log_file_t  *f;
    int                  fd;

    for (f = lb_http_log_open_files; f; f = f->next) {
        lb_http_log_flush(f);
        fd = open(f->path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
        if (fd == -1) {
            lb_log_error(errno, "cannot reopen the access log \"%s\"", f->path);
            continue;
        }
        close(f->fd);
        f->fd = fd;
    }
}

int
lb_http_log_open(lb_http_access_log_t *log)
{
    lb_http_log_file_t  *f = log->file;

    if (f == NULL || f->fd != -1) {
        return LB_OK;
    }
    if (!lb_http_log_worker_ready) {
        lb_timer_init(&lb_http_log_timer, lb_http_log_timer_expired, NULL);
        if (lb_log_on_reopen(lb_http_log_reopen) != LB_OK) {
            return LB_ERROR;
        }
        lb_http_log_worker_ready = true;
    }
    f->buf = malloc(LB_HTTP_LOG_BUF_SIZE);
    if (f->buf == NULL) {
        lb_log_error(ENOMEM, "cannot allocate the access log buffer");
        return LB_ERROR;
    }
    f->fd = open(f->path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (f->fd == -1) {
        /* the master could open it (lb_http_log_check): a worker that
         * cannot (another user, the file gone) serves without the log
         * rather than exit and be forked again */
        lb_log_error(errno, "cannot open the access log \"%s\"; requests of this "
                     "worker are not logged there", f->path);
        free(f->buf);
        f->buf = NULL;
        return LB_OK;
    }
    f->len = 0;
    f->next = lb_http_log_open_files;
    lb_http_log_open_files = f;
    return LB_OK;
}

void
lb_http_log_exit_worker(void)
{
    lb_http_log_file_t  *f;

    lb_http_log_flush_all();
    for (f = lb_http_log_open_files; f; f = f->next) {
        if (f->len) {
            lb_log_error(f->failed, "the worker exits with %zu bytes of lines for the "
                         "access log \"%s\" not written; they are lost", f->len, f->path);
        }
        close(f->fd);
        f->fd = -1;
        free(f->buf);
        f->buf = NULL;
    }
    lb_http_log_open_files = NULL;
    if (lb_http_log_worker_ready && lb_timer_is_set(&lb_http_log_timer)) {
        lb_timer_del(&lb_http_log_timer);
    }
}

/* Appends s to line[*n..), JSON-escaped (RFC 8259 §7): '"', '\\' and bytes
 * below 0x20 and 0x7f as \u00XX (or their short forms); bytes from 0x80
 * pass through as sent. Stops where a whole escape no longer fits. */
static void
lb_http_log_put_json(char *line, size_t *n, size_t max, const char *s, size_t len)
{
    static const char  hex[] = "0123456789abcdef";
    unsigned char      c;
    size_t             i, k = *n;

    for (i = 0; i < len; i++) {
        c = (unsigned char) s[i];
        if (c == '"' || c == '\\') {
            if (k + 2 > max) {
                break;
            }
            line[k++] = '\\';
            line[k++] = (char) c;
        } else if (c < 0x20 || c == 0x7f) {
            if (k + 6 > max) {
                break;
            }
            memcpy(line + k, "\\u00", 4);
            line[k + 4] = hex[c >> 4];
            line[k + 5] = hex[c & 0xf];
            k += 6;
        } else {
            if (k + 1 > max) {
                break;
            }
            line[k++] = (char) c;
        }
    }
    *n = k;
}

static void
lb_http_log_put(char *line, size_t *n, size_t max, const char *s, size_t len)
{
    len = lb_min(len, max - *n);
    memcpy(line + *n, s, len);
    *n += len;
}

static size_t
lb_http_log_json(const lb_http_access_log_t *log, const lb_http_var_ctx_t *ctx,
                 char *line, size_t max)
{
    const char  *v;
    size_t       n = 0, i, len;

    lb_http_log_put(line, &n, max, "{", 1);
    for (i = 0; i < LB_HTTP_LOG_NJSON; i++) {
        if (i) {
            lb_http_log_put(line, &n, max, ",", 1);
        }
        lb_http_log_put(line, &n, max, "\"", 1);
        lb_http_log_put(line, &n, max, lb_http_log_json_fields[i].key,
                        strlen(lb_http_log_json_fields[i].key));
        lb_http_log_put(line, &n, max, "\":", 2);
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
            lb_http_log_put(line, &n, max, len ? v : "0", len ? len : 1);
            continue;
        }
        lb_http_log_put(line, &n, max, "\"", 1);
        lb_http_log_put_json(line, &n, max - 1, v, len);
        lb_http_log_put(line, &n, max, "\"", 1);
    }
    lb_http_log_put(line, &n, max, "}", 1);
    return n;
}

void
lb_http_log_request(const lb_http_access_log_t *log, const lb_http_var_ctx_t *ctx)
{
    lb_http_log_file_t  *f = log->file;
    size_t               max = sizeof(lb_http_log_line) - 1, n;

    if (f == NULL || f->fd == -1) {
        return;
    }
    if (log->format == LB_HTTP_LOG_JSON) {
        n = lb_http_log_json(log, ctx, lb_http_log_line, max);
    } else {
        n = lb_min(lb_http_complex_eval_escaped(log->cv, ctx, lb_http_log_line, max,
                                                log->escape), max);
    }
    lb_http_log_line[n++] = '\n';

    /* a failing file is tried again by the timer only, not per request */
    if (f->len + n > LB_HTTP_LOG_BUF_SIZE && !f->failed) {
        lb_http_log_flush(f);
    }
    if (f->len + n > LB_HTTP_LOG_BUF_SIZE) {
        lb_log_error_limited(f->failed, "the access log \"%s\" cannot be written and its "
                             "buffer is full; a line is dropped", f->path);
    } else {
        memcpy(f->buf + f->len, lb_http_log_line, n);
        f->len += n;
    }
    if (!lb_timer_is_set(&lb_http_log_timer)) {
        lb_timer_set(&lb_http_log_timer, LB_HTTP_LOG_FLUSH_MSEC);
    }
}
