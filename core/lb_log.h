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
/* The error log's path, or NULL for standard error. */
const char *lb_log_path(void);
/* Makes fd, opened elsewhere for the same path (by the master, for a
 * worker that may not open it), the error log; the old one is closed. */
void lb_log_adopt(int fd);
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

/* Rate-limited lines, for errors that can repeat once per event (a full
 * disk under the access log, accept4() out of descriptors): at most one
 * line per LB_LOG_RATELIMIT_MSEC for each cause, the next line that gets
 * through ending in " (N similar messages suppressed)". A cause is a call
 * site and an errno value: each lb_log_limited() expansion owns a static
 * state, and that state keeps LB_LOG_RATELIMIT_CAUSES errno values apart,
 * so EMFILE and ENOBUFS at one site are counted separately. The state is
 * per process (each worker limits its own lines) and needs no memory of
 * its own. A count is reported by the next line of its cause: when the
 * cause stops, its last count is never written, which is the price of
 * needing no timer. */
#define LB_LOG_RATELIMIT_MSEC    1000
#define LB_LOG_RATELIMIT_CAUSES  4

typedef struct {
    lb_msec_t  last;            /* when its last line was written */
    uint64_t   suppressed;      /* lines not written since */
    int        err;
    bool       used;
} lb_log_ratelimit_cause_t;

typedef struct {
    lb_log_ratelimit_cause_t  causes[LB_LOG_RATELIMIT_CAUSES];
} lb_log_ratelimit_t;

/* Whether a line for cause err may be written now (lb_current_msec). When
 * it may, *suppressed is how many were held back since its last line and
 * the count restarts; when not, the hold-back is counted. A fifth cause
 * takes over the slot of the one logged longest ago. */
bool lb_log_ratelimit(lb_log_ratelimit_t *rl, int err, uint64_t *suppressed);

/* lb_log_write behind lb_log_ratelimit(rl, err): one line at most per
 * cause and second, with the suppressed count appended. For a state that
 * lives elsewhere than a call site (one per listener, say). */
void lb_log_write_limited(lb_log_ratelimit_t *rl, lb_log_level_t level, int err,
                          const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

#define lb_log_limited(level, err, ...)                                     \
    do {                                                                    \
        static lb_log_ratelimit_t  lb_log_site_rl;                          \
        if ((level) >= lb_log_level) {                                      \
            lb_log_write_limited(&lb_log_site_rl, level, err, __VA_ARGS__); \
        }                                                                   \
    } while (0)

#define lb_log_error_limited(err, ...)  lb_log_limited(LB_LOG_ERROR, err, __VA_ARGS__)
#define lb_log_warn_limited(err, ...)   lb_log_limited(LB_LOG_WARN, err, __VA_ARGS__)

#endif
