/*
 * lb_http.c: the http core module. Today it carries the HTTP/1.x parser
 * (lb_http_parse.c) that the http listener and upstream code are built on;
 * it declares no listener protocol and no setting yet, so a configuration
 * that asks for protocol "http" is still refused as not compiled in.
 */
#include "lb_core.h"
#include "lb_http_parse.h"

lb_module_t  lb_http_core_module = {
    "http_core", LB_MODULE_HTTP, NULL, NULL, 0,
    NULL, NULL, NULL,
    NULL, NULL, NULL, NULL, 0
};
