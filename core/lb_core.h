/*
 * lb_core.h: the one header every lbd source includes. It pulls in the
 * system headers the core needs, the return-code convention and the
 * forward declarations of the core types; each core unit has its own header.
 */
#ifndef LB_CORE_H
#define LB_CORE_H

#define _GNU_SOURCE
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/socket.h>
#include <unistd.h>

#include "lb_auto_config.h"

/* The closed set of return codes (see docs/modules.md). */
#define LB_OK        0
#define LB_ERROR    -1
#define LB_AGAIN    -2      /* would block: wait for an event and call again */
#define LB_DECLINED -3      /* not mine: try the next handler */
#define LB_DONE     -4      /* finished early: stop processing */

typedef int64_t lb_msec_t;  /* milliseconds, on the monotonic clock */

/* A string view: bytes somewhere else, not NUL-terminated. */
typedef struct {
    size_t  len;
    char   *data;
} lb_str_t;

#define lb_string(s)     { sizeof(s) - 1, (char *) (s) }
#define lb_null_string   { 0, NULL }
#define lb_nelems(a)     (sizeof(a) / sizeof((a)[0]))
#define lb_min(a, b)     ((a) < (b) ? (a) : (b))
#define lb_max(a, b)     ((a) > (b) ? (a) : (b))
#define lb_unused(x)     ((void) (x))
#define lb_container_of(p, type, member) \
    ((type *) ((char *) (p) - offsetof(type, member)))

typedef struct lb_pool_s      lb_pool_t;
typedef struct lb_buf_s       lb_buf_t;
typedef struct lb_timer_s     lb_timer_t;
typedef struct lb_event_s     lb_event_t;
typedef struct lb_loop_s      lb_loop_t;
typedef struct lb_conn_s      lb_conn_t;
typedef struct lb_addr_s      lb_addr_t;
typedef struct lb_module_s    lb_module_t;
typedef struct lb_setting_s   lb_setting_t;
typedef struct lb_conf_s      lb_conf_t;
typedef struct lb_cycle_s     lb_cycle_t;
typedef struct lb_listener_s  lb_listener_t;
typedef struct lb_shm_zone_s  lb_shm_zone_t;
typedef struct lb_state_writer_s  lb_state_writer_t;    /* lb_state.h */
typedef struct lb_state_record_s  lb_state_record_t;

#include "lb_queue.h"
#include "lb_time.h"
#include "lb_log.h"
#include "lb_pool.h"
#include "lb_array.h"
#include "lb_buf.h"
#include "lb_chain.h"
#include "lb_timer.h"
#include "lb_parse.h"
#include "lb_cidr.h"
#include "lb_event.h"
#include "lb_conn.h"
#include "lb_shm.h"
#include "lb_metrics.h"
#include "lb_http_reason.h"
#include "lb_module.h"
#include "lb_conf.h"
#include "lb_access_log.h"
#include "lb_cycle.h"
#include "lb_process.h"

#endif
