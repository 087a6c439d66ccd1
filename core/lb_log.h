/*
 * lb_log.h: the error log. One line per event:
 *   TIME [LEVEL] PID#TID: message
 * written with a single write(2) so lines from several processes never mix.
 */
#ifndef LB_LOG_H
#define LB_LOG_H

typedef enum {
    LB_LOG_DEBUG = 0,
    LB_LOG_INFO,
    LB_LOG_NOTICE,
    LB_LOG_WARN,
    LB_LOG_ERROR,
} lb_log_level_t;

extern lb_log_level_t  lb_log_level;

extern const char *const lb_log_level_names[];   /* NULL-terminated */

/* Opens (or reopens) the error log. "stderr" or NULL means standard error.
 * Returns LB_OK, or LB_ERROR with errno set; the old file stays on error. */
int  lb_log_open(const char *path);
/* Runs the hooks given to lb_log_on_reopen (other log files: the access
 * log), then reopens the error log. */
int  lb_log_reopen(void);
/* Adds a hook run by lb_log_reopen in this process (at most 8). LB_OK or
 * LB_ERROR when full. */
int  lb_log_on_reopen(void (*hook)(void));
int  lb_log_fd(void);
/* Makes the error log file also standard error of this process, so stray
 * library messages land in it (used after daemonizing). */
void lb_log_redirect_stderr(void);

/* While true, warnings and errors are copied to standard error as well
 * (start-up, before daemonizing, so the user sees why lbd did not start). */
extern bool  lb_log_copy_stderr;

/* err: an errno value, appended as " (N: strerror text)", or 0. */
void lb_log_write(lb_log_level_t level, int err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define lb_log(level, err, ...)                                  \
    do {                                                         \
        if ((level) >= lb_log_level) {                           \
            lb_log_write(level, err, __VA_ARGS__);               \
        }                                                        \
    } while (0)

#define lb_log_error(err, ...)  lb_log(LB_LOG_ERROR, err, __VA_ARGS__)
#define lb_log_warn(err, ...)   lb_log(LB_LOG_WARN, err, __VA_ARGS__)
#define lb_log_notice(...)      lb_log(LB_LOG_NOTICE, 0, __VA_ARGS__)
#define lb_log_info(...)        lb_log(LB_LOG_INFO, 0, __VA_ARGS__)
#define lb_log_debug(...)       lb_log(LB_LOG_DEBUG, 0, __VA_ARGS__)

#endif
