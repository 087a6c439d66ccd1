/*
 * lb_http_log.h: the access log of http listeners (SPEC §7): one line per
 * request (the http core's log phase handler, lb_http.c), in the
 * "combined" or "json" format or a string with variables, written to a
 * core access-log file (lb_access_log.h).
 */
#ifndef LB_HTTP_LOG_H
#define LB_HTTP_LOG_H

#include "lb_core.h"
#include "lb_http_var.h"

typedef enum {
    LB_HTTP_LOG_COMBINED = 0,
    LB_HTTP_LOG_JSON,
    LB_HTTP_LOG_CUSTOM,
} lb_http_log_format_t;

/* One listener's access_log setting; file NULL: no access log. */
typedef struct {
    lb_access_file_t         *file;     /* shared by every log naming its path */
    lb_http_log_format_t      format;
    lb_http_complex_t        *cv;       /* COMBINED and CUSTOM */
    lb_http_escape_t          escape;   /* of cv's variables */
    lb_http_complex_t       **json;     /* JSON: one per field (NULL: protocol) */
} lb_http_access_log_t;

/* The LB_SET_CUSTOM handler of access_log: the lb_http_access_log_t is at
 * s->offset in conf.
 * Compiles the format; an unknown variable is an error at the format. */
int  lb_http_log_set(lb_conf_t *cf, const lb_setting_t *s, config_setting_t *v,
                     void *conf);
/* Appends the line of one request, whose ctx is complete (status,
 * bytes_sent). Never allocates. */
void lb_http_log_request(const lb_http_access_log_t *log, const lb_http_var_ctx_t *ctx);

#endif
