/*
 * lb_time.c: the cached clocks behind lb_time.h.
 */
#include "lb_core.h"

lb_msec_t  lb_current_msec;
time_t     lb_current_sec;
char       lb_log_time[sizeof("2026/11/25 10:59:46")];
size_t     lb_log_time_len;
char       lb_http_time[sizeof("Wed, 25 Nov 2026 10:59:46 GMT")];
size_t     lb_http_time_len;

/* IMF-fixdate, always in English and GMT whatever the locale. */
size_t
lb_time_http_date(time_t t, char *buf, size_t size)
{
    static const char  days[7][4] = { "Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat" };
    static const char  months[12][4] = { "Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                         "Jul", "Aug", "Sep", "Oct", "Nov", "Dec" };
    struct tm          tm;
    int                n;

    gmtime_r(&t, &tm);
    n = snprintf(buf, size, "%s, %02d %s %04d %02d:%02d:%02d GMT", days[tm.tm_wday],
                 tm.tm_mday, months[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour,
                 tm.tm_min, tm.tm_sec);
    return n > 0 ? lb_min((size_t) n, size ? size - 1 : 0) : 0;
}

void
lb_time_update(void)
{
    struct timespec  ts;
    struct tm        tm;
    time_t           now;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    lb_current_msec = (lb_msec_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;

    now = time(NULL);
    if (now == lb_current_sec && lb_log_time_len) {
        return;
    }

    lb_current_sec = now;
    localtime_r(&now, &tm);
    lb_log_time_len = strftime(lb_log_time, sizeof(lb_log_time),
                               "%Y/%m/%d %H:%M:%S", &tm);
    lb_http_time_len = lb_time_http_date(now, lb_http_time, sizeof(lb_http_time));
}
