/*
 * lb_http_reason.h: the reason phrase of an HTTP status ("Not Found"), for
 * the http listeners and the admin API alike.
 */
#ifndef LB_HTTP_REASON_H
#define LB_HTTP_REASON_H

/* The phrase for status; for one without a phrase here, its class's
 * ("Client Error"). */
const char *lb_http_reason(int status);

#endif
