/*
 * lb_http_return.h: the http_return module's configuration of a route
 * (SPEC §3.4): its `return` or `redirect` action.
 */
#ifndef LB_HTTP_RETURN_H
#define LB_HTTP_RETURN_H

#include "lb_core.h"
#include "lb_http.h"

typedef struct {
    int                  status;        /* 0: the route has neither action */
    bool                 redirect;
    lb_http_complex_t   *body;          /* return; NULL: empty, or body_file */
    lb_str_t             body_file;     /* return: the file's bytes, read at load */
    const char          *content_type;  /* return: "text/plain" unless set */
    lb_http_complex_t   *location;      /* redirect */
    const char          *location_text; /* as written, for describe */
} lb_http_return_conf_t;

extern lb_module_t  lb_http_return_module;

#endif
