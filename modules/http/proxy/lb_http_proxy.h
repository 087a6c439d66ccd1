/*
 * lb_http_proxy.h: the http_proxy module's configuration (SPEC §3.3,
 * §3.4): of a listener, or of a route (its `upstream` action, `rewrite`,
 * and request_buffering).
 */
#ifndef LB_HTTP_PROXY_H
#define LB_HTTP_PROXY_H

#include "lb_core.h"
#include "lb_http.h"
#include "lb_upstream.h"

typedef struct {
    int                 xff;            /* lb_http_xff_mode_t */
    lb_cidr_list_t      trusted;
    int                 request_buffering;  /* route: -1 follows the listener */
    int64_t             request_buffer_size;
    lb_msec_t           client_body_max_time;   /* 0: no total deadline */

    /* a route's action */
    const char         *upstream_name;  /* as written; NULL: not this action */
    const char         *upstream_file;
    int                 upstream_line;
    lb_upstream_t      *upstream;       /* resolved once the file is read */
    lb_http_complex_t  *rewrite;        /* NULL: the path is sent as is */
    const char         *rewrite_text;
    const char         *rewrite_file;
    int                 rewrite_line;
} lb_http_proxy_conf_t;

extern lb_module_t  lb_http_proxy_module;

#endif
