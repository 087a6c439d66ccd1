/*
 * lb_log.c: the error log file, shared by the master and its workers
 * (each process holds its own descriptor, reopened on USR1).
 */
#include "lb_core.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/syscall.h>

lb_log_level_t  lb_log_level = LB_LOG_INFO;
bool            lb_log_copy_stderr;

const char *const lb_log_level_names[] = {
    "debug", "info", "notice", "warn", "error", NULL
};

#define LB_LOG_MAX_REOPEN_HOOKS  8

static int    lb_log_file_fd = STDERR_FILENO;
static char  *lb_log_file_path;
static void (*lb_log_reopen_hooks[LB_LOG_MAX_REOPEN_HOOKS])(void);
static size_t lb_log_nreopen_hooks;

int
lb_log_on_reopen(void (*hook)(void))
{
    if (lb_log_nreopen_hooks == LB_LOG_MAX_REOPEN_HOOKS) {
        return LB_ERROR;
    }
    lb_log_reopen_hooks[lb_log_nreopen_hooks++] = hook;
    return LB_OK;
}

int
lb_log_open(const char *path)
{
    int    fd;
    char  *copy;

    if (path == NULL || strcmp(path, "stderr") == 0) {
        if (lb_log_file_fd != STDERR_FILENO) {
            close(lb_log_file_fd);
        }
        lb_log_file_fd = STDERR_FILENO;
        free(lb_log_file_path);
        lb_log_file_path = NULL;
        return LB_OK;
    }

    fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (fd == -1) {
        return LB_ERROR;
    }

    copy = strdup(path);
    if (copy == NULL) {
        close(fd);
        return LB_ERROR;
    }

    if (lb_log_file_fd != STDERR_FILENO) {
        close(lb_log_file_fd);
    }
    free(lb_log_file_path);
    lb_log_file_path = copy;
    lb_log_file_fd = fd;
    return LB_OK;
}

int
lb_log_reopen(void)
{
    char   *path;
    int     rc;
    size_t  i;

    for (i = 0; i < lb_log_nreopen_hooks; i++) {
        lb_log_reopen_hooks[i]();
    }
    if (lb_log_file_path == NULL) {
        return LB_OK;
    }
    path = strdup(lb_log_file_path);
    if (path == NULL) {
        return LB_ERROR;
    }
    rc = lb_log_open(path);
    free(path);
    return rc;
}

int
lb_log_fd(void)
{
    return lb_log_file_fd;
}

const char *
lb_log_path(void)
{
    return lb_log_file_path;
}

void
lb_log_adopt(int fd)
{
    struct stat  old, err;

    if (lb_log_file_fd != STDERR_FILENO) {
        /* a daemon's standard error is the error log (lb_log_redirect_stderr):
         * it follows the log to its new file */
        if (fstat(lb_log_file_fd, &old) == 0 && fstat(STDERR_FILENO, &err) == 0
            && old.st_dev == err.st_dev && old.st_ino == err.st_ino)
        {
            dup2(fd, STDERR_FILENO);
        }
        close(lb_log_file_fd);
    }
    lb_log_file_fd = fd;
}

void
lb_log_redirect_stderr(void)
{
    if (lb_log_file_fd != STDERR_FILENO) {
        dup2(lb_log_file_fd, STDERR_FILENO);
    }
}

/* One line: the prefix, the message, the errno text and, when lines were
 * held back before it, their count; cut to fit, always newline-ended. */
static void
lb_log_vwrite(lb_log_level_t level, int err, uint64_t suppressed, const char *fmt,
              va_list ap)
{
    char     line[2048];
    size_t   n, max;
    int      r;

    if (lb_log_time_len == 0) {
        lb_time_update();
    }

    max = sizeof(line) - 1;     /* room for the newline */
    r = snprintf(line, max, "%s [%s] %d#%ld: ", lb_log_time,
                 lb_log_level_names[level], (int) getpid(),
                 (long) syscall(SYS_gettid));
    n = r > 0 ? lb_min((size_t) r, max) : 0;

    r = vsnprintf(line + n, max - n, fmt, ap);
    n = r > 0 ? lb_min(n + (size_t) r, max - 1) : n;

    if (err && n < max - 1) {
        r = snprintf(line + n, max - n, " (%d: %s)", err, strerror(err));
        n = r > 0 ? lb_min(n + (size_t) r, max - 1) : n;
    }
    if (suppressed && n < max - 1) {
        r = snprintf(line + n, max - n, " (%llu similar messages suppressed)",
                     (unsigned long long) suppressed);
        n = r > 0 ? lb_min(n + (size_t) r, max - 1) : n;
    }

    line[n++] = '\n';
    if (write(lb_log_file_fd, line, n) == -1) {
        /* nowhere left to report it */
    }
    if (lb_log_copy_stderr && level >= LB_LOG_WARN && lb_log_file_fd != STDERR_FILENO
        && write(STDERR_FILENO, line, n) == -1)
    {
        /* as above */
    }
}

void
lb_log_write(lb_log_level_t level, int err, const char *fmt, ...)
{
    va_list  ap;

    va_start(ap, fmt);
    lb_log_vwrite(level, err, 0, fmt, ap);
    va_end(ap);
}

bool
lb_log_ratelimit(lb_log_ratelimit_t *rl, int err, uint64_t *suppressed)
{
    lb_log_ratelimit_cause_t  *c = NULL, *oldest = NULL;
    size_t                     i;

    if (lb_current_msec == 0) {
        lb_time_update();       /* before the first loop wake-up */
    }
    for (i = 0; i < LB_LOG_RATELIMIT_CAUSES; i++) {
        if (rl->causes[i].used && rl->causes[i].err == err) {
            c = &rl->causes[i];
            break;
        }
        if (oldest == NULL || !rl->causes[i].used
            || (oldest->used && rl->causes[i].last < oldest->last))
        {
            oldest = &rl->causes[i];
        }
    }
    if (c == NULL) {
        c = oldest;
        c->used = true;
        c->err = err;
        c->suppressed = 0;
    } else if (lb_current_msec - c->last < LB_LOG_RATELIMIT_MSEC) {
        c->suppressed++;
        return false;
    }
    c->last = lb_current_msec;
    *suppressed = c->suppressed;
    c->suppressed = 0;
    return true;
}

void
lb_log_write_limited(lb_log_ratelimit_t *rl, lb_log_level_t level, int err,
                     const char *fmt, ...)
{
    uint64_t  suppressed;
    va_list   ap;

    if (level < lb_log_level || !lb_log_ratelimit(rl, err, &suppressed)) {
        return;
    }
    va_start(ap, fmt);
    lb_log_vwrite(level, err, suppressed, fmt, ap);
    va_end(ap);
}
