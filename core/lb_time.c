/*
 * lb_time.c: the cached clocks behind lb_time.h.
 */
#include "lb_core.h"

lb_msec_t  lb_current_msec;
time_t     lb_current_sec;
char       lb_log_time[sizeof("2026/11/25 10:59:46")];
size_t     lb_log_time_len;

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
}
