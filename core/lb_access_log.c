/*
 * lb_access_log.c: access-log files shared by the http and stream logs.
 * The master owns the descriptors (opened before forking, reopened on
 * USR1 and handed over); each worker keeps a 64 KiB buffer per file and
 * writes only whole lines (lb_access_file_flush says how).
 */
#include "lb_core.h"

#include <fcntl.h>
#include <sys/stat.h>

#define LB_ACCESS_LOG_FLUSH_MSEC  1000

static lb_cycle_t  *lb_access_worker_cycle;     /* the worker's files */
static lb_timer_t   lb_access_timer;

int
lb_access_log_group(lb_conf_t *cf, config_setting_t *v, const char *const *names,
                    config_setting_t **path_s, const char **path)
{
    config_setting_t   *m;
    const char *const  *p;
    unsigned            i;
    int                 rc = LB_OK;

    *path_s = NULL;
    *path = NULL;
    if (config_setting_type(v) == CONFIG_TYPE_STRING
        && strcmp(config_setting_get_string(v), "off") == 0)
    {
        return LB_DECLINED;
    }
    if (config_setting_type(v) != CONFIG_TYPE_GROUP) {
        return lb_conf_error(cf, v, "access_log must be a group { path = \"...\"; "
                             "format = \"...\"; } or \"off\", not %s",
                             lb_conf_type_name(v));
    }
    for (i = 0; i < (unsigned) config_setting_length(v); i++) {
        m = config_setting_get_elem(v, i);
        for (p = names; *p && strcmp(*p, config_setting_name(m)) != 0; p++) {
            /* search */
        }
        if (*p == NULL) {
            rc = lb_conf_unknown_name(cf, m, "access_log", names);
        }
    }
    *path_s = config_setting_get_member(v, "path");
    if (*path_s == NULL) {
        return lb_conf_error(cf, v, "access_log needs a path (or \"off\")");
    }
    if (lb_conf_get_string(cf, *path_s, path) != LB_OK) {
        *path = NULL;
        return LB_ERROR;
    }
    if (strcmp(*path, "off") == 0) {
        *path = NULL;
        return rc == LB_OK ? LB_DECLINED : rc;
    }
    if ((*path)[0] == '\0') {
        *path = NULL;
        return lb_conf_error(cf, *path_s, "access_log path is empty");
    }
    return rc;
}

lb_access_file_t *
lb_access_file_get(lb_conf_t *cf, config_setting_t *v, const char *path)
{
    lb_access_file_t  *f;
    char              *abs;

    abs = lb_cycle_path(cf->pool, cf->cycle->prefix, path);
    if (abs == NULL) {
        lb_conf_error(cf, v, "out of memory");
        return NULL;
    }
    for (f = cf->cycle->access_files; f; f = f->next) {
        if (strcmp(f->path, abs) == 0) {
            return f;
        }
    }
    f = lb_pcalloc(cf->pool, sizeof(*f));
    if (f == NULL) {
        lb_conf_error(cf, v, "out of memory");
        return NULL;
    }
    f->path = abs;
    f->fd = -1;
    /* the name outlives libconfig, which frees its file names */
    f->conf_file = lb_pstrdup(cf->pool, lb_conf_file(cf, v));
    if (f->conf_file == NULL) {
        lb_conf_error(cf, v, "out of memory");
        return NULL;
    }
    f->conf_line = config_setting_source_line(v);
    f->next = cf->cycle->access_files;
    cf->cycle->access_files = f;
    return f;
}

static int
lb_access_file_open(const char *path)
{
    return open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
}

/* The cycle's pool cleanup: the master's descriptors go with the cycle
 * (a reload opens the new cycle's own before this runs for the old one). */
static void
lb_access_files_close(void *data)
{
    lb_cycle_t        *cycle = data;
    lb_access_file_t  *f;

    for (f = cycle->access_files; f; f = f->next) {
        if (f->fd != -1) {
            close(f->fd);
            f->fd = -1;
        }
    }
}

int
lb_access_files_open(lb_cycle_t *cycle)
{
    lb_access_file_t  *f;

    if (cycle->access_files == NULL) {
        return LB_OK;
    }
    if (lb_pool_cleanup_add(cycle->pool, lb_access_files_close, cycle) != LB_OK) {
        lb_log_error(ENOMEM, "cannot register the access log files");
        return LB_ERROR;
    }
    for (f = cycle->access_files; f; f = f->next) {
        f->fd = lb_access_file_open(f->path);
        if (f->fd == -1) {
            lb_log_error(errno, "%s:%d: cannot open access log \"%s\"", f->conf_file,
                         f->conf_line, f->path);
            return LB_ERROR;
        }
    }
    return LB_OK;
}

void
lb_access_files_reopen(lb_cycle_t *cycle)
{
    lb_access_file_t  *f;
    int                fd;

    for (f = cycle->access_files; f; f = f->next) {
        fd = lb_access_file_open(f->path);
        if (fd == -1) {
            lb_log_error(errno, "cannot reopen the access log \"%s\"; it is written "
                         "where it was until the next reopen", f->path);
            continue;
        }
        lb_log_notice("reopened the access log \"%s\"", f->path);
        if (f->fd != -1) {
            close(f->fd);
        }
        f->fd = fd;
    }
}

/* Cuts what a short write left after the last newline it wrote, so the
 * file ends with a whole line. Returns the bytes of f->buf now in the file:
 * `wrote` cut back to a line end, or all of `wrote` when the cut is not
 * possible (then the next write finishes the torn line). */
static size_t
lb_access_file_cut(lb_access_file_t *f, size_t wrote)
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

/* Writes the buffer. Every worker appends to the file through the
 * master's open file description (O_APPEND), and one write(2) of whole
 * lines lands at the end in one piece. A full disk (ENOSPC, EDQUOT,
 * EFBIG) can cut that write short, leaving a torn line that the other
 * workers' lines would follow. So the write is made under an exclusive
 * lock on the file, which every worker takes for its writes, and a short
 * write is cut back to its last newline before the lock is dropped:
 * nobody appended after it meanwhile. The lock is a POSIX record lock
 * (fcntl F_SETLKW), owned by the process: flock(2) locks belong to the
 * open file description, which the workers share, so they would not
 * exclude each other. The lines not written stay in the buffer and the
 * 1 s timer tries them again; while the file fails, new lines are added
 * only as long as they fit, and the ones that do not are dropped and
 * counted in the error log. The lock costs two calls per flush (one per
 * 64 KiB at most) and is held for one write. */
static void
lb_access_file_lock(int fd, short type)
{
    struct flock  fl;

    memset(&fl, 0, sizeof(fl));
    fl.l_type = type;
    fl.l_whence = SEEK_SET;     /* l_start 0, l_len 0: the whole file */
    while (fcntl(fd, F_SETLKW, &fl) == -1 && errno == EINTR) {
        /* a signal: the lock is still wanted */
    }
}

static void
lb_access_file_flush(lb_access_file_t *f)
{
    struct stat  st;
    size_t       done = 0;
    ssize_t      n;
    int          err = 0;

    if (f->len == 0 || f->fd == -1) {
        return;
    }
    lb_access_file_lock(f->fd, F_WRLCK);
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
            done = lb_access_file_cut(f, done + (size_t) n);
            err = ENOSPC;
            break;
        }
        done += (size_t) n;
    }
    lb_access_file_lock(f->fd, F_UNLCK);

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
    /* a file deleted under lbd takes writes that nobody will read: said
     * once, until a reopen makes a new one */
    if (!f->gone && fstat(f->fd, &st) == 0 && st.st_nlink == 0) {
        f->gone = true;
        lb_log_warn(0, "the access log \"%s\" was deleted; its lines are lost until "
                    "\"lbctl reopen\" creates it again", f->path);
    }
}

static void
lb_access_files_flush_all(void)
{
    lb_access_file_t  *f;
    bool               left = false;

    if (lb_access_worker_cycle == NULL) {
        return;
    }
    for (f = lb_access_worker_cycle->access_files; f; f = f->next) {
        lb_access_file_flush(f);
        left = left || f->len;
    }
    if (left && !lb_worker_quitting && !lb_timer_is_set(&lb_access_timer)) {
        lb_timer_set(&lb_access_timer, LB_ACCESS_LOG_FLUSH_MSEC);
    }
}

static void
lb_access_timer_expired(lb_timer_t *t)
{
    lb_access_files_flush_all();
}

int
lb_access_files_init_worker(lb_cycle_t *cycle)
{
    lb_access_file_t  *f;

    lb_timer_init(&lb_access_timer, lb_access_timer_expired, NULL);
    lb_access_worker_cycle = cycle;
    for (f = cycle->access_files; f; f = f->next) {
        f->len = 0;
        if (f->fd == -1) {
            continue;
        }
        f->buf = malloc(LB_ACCESS_LOG_BUF_SIZE);
        if (f->buf == NULL) {
            lb_log_error(ENOMEM, "cannot allocate the access log buffer");
            return LB_ERROR;
        }
    }
    return LB_OK;
}

void
lb_access_files_adopt(lb_cycle_t *cycle, const char *path, int fd)
{
    lb_access_file_t  *f;

    for (f = cycle->access_files; f; f = f->next) {
        if (f->buf && strcmp(f->path, path) == 0) {
            break;
        }
    }
    if (f == NULL) {
        close(fd);
        return;
    }
    lb_access_file_flush(f);
    close(f->fd);
    f->fd = fd;
    f->gone = false;
}

void
lb_access_files_exit_worker(lb_cycle_t *cycle)
{
    lb_access_file_t  *f;

    lb_access_files_flush_all();
    for (f = cycle->access_files; f; f = f->next) {
        if (f->len) {
            lb_log_error(f->failed, "the worker exits with %zu bytes of lines for the "
                         "access log \"%s\" not written; they are lost", f->len, f->path);
        }
        if (f->fd != -1) {
            close(f->fd);
            f->fd = -1;
        }
        free(f->buf);
        f->buf = NULL;
        f->len = 0;
    }
    if (lb_timer_is_set(&lb_access_timer)) {
        lb_timer_del(&lb_access_timer);
    }
    lb_access_worker_cycle = NULL;
}

void
lb_access_file_write(lb_access_file_t *f, const char *line, size_t len)
{
    if (f->buf == NULL) {
        return;
    }
    /* a failing file is tried again by the timer only, not per line */
    if (f->len + len > LB_ACCESS_LOG_BUF_SIZE && !f->failed) {
        lb_access_file_flush(f);
    }
    if (f->len + len > LB_ACCESS_LOG_BUF_SIZE) {
        lb_log_error_limited(f->failed, "the access log \"%s\" cannot be written and its "
                             "buffer is full; a line is dropped", f->path);
    } else {
        memcpy(f->buf + f->len, line, len);
        f->len += len;
    }
    if (!lb_timer_is_set(&lb_access_timer)) {
        lb_timer_set(&lb_access_timer, LB_ACCESS_LOG_FLUSH_MSEC);
    }
}

void
lb_access_log_put(char *line, size_t *n, size_t max, const char *s, size_t len)
{
    len = lb_min(len, max - *n);
    memcpy(line + *n, s, len);
    *n += len;
}

void
lb_access_log_put_json(char *line, size_t *n, size_t max, const char *s, size_t len)
{
    static const char  hex[] = "0123456789abcdef";
    unsigned char      c;
    size_t             i, k = *n;

    /* '"', '\\', bytes below 0x20 and 0x7f escaped; bytes from 0x80 pass
     * through as sent */
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
