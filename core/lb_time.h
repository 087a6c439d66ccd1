/*
 * lb_time.h: cached time. The event loop refreshes it once per wake-up, so
 * hot paths read a variable instead of making a system call.
 */
#ifndef LB_TIME_H
#define LB_TIME_H

#include <time.h>

extern lb_msec_t  lb_current_msec;      /* monotonic, for timers */
extern time_t     lb_current_sec;       /* wall clock, for logs */
extern char       lb_log_time[];        /* "2026/11/25 10:59:46" */
extern size_t     lb_log_time_len;

void lb_time_update(void);

#endif
