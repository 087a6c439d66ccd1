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
extern char       lb_http_time[];       /* "Wed, 25 Nov 2026 10:59:46 GMT" (RFC 9110 §5.6.7) */
extern size_t     lb_http_time_len;

void   lb_time_update(void);
/* Writes t as an HTTP date; returns its length (snprintf-like, capped). */
size_t lb_time_http_date(time_t t, char *buf, size_t size);

#endif
