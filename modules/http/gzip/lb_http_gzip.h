/*
 * lb_http_gzip.h: the gzip module's settings and the pure steps of its
 * decision (SPEC §3.6), exported so that the unit tests can check them
 * one by one. The module itself, the filters and the deflate streams,
 * is lb_http_gzip.c.
 */
#ifndef LB_HTTP_GZIP_H
#define LB_HTTP_GZIP_H

#include "lb_core.h"
#include "lb_http.h"

/* The media types a listener or route compresses: lowercased
 * "type/subtype", or "type/" for an entry written as a type, a slash
 * and a star (any subtype of type); any is the "*" entry. */
typedef struct {
    lb_str_t   *types;
    size_t      ntypes;
    bool        any;
} lb_http_gzip_types_t;

/* One gzip = { } group, or the defaults where none was written. */
typedef struct {
    int                    enabled;     /* bool */
    int64_t                level;       /* 1..9 */
    int64_t                min_length;  /* bytes, for a known length */
    lb_http_gzip_types_t   types;
    bool                   set;         /* written in this block: a route's
                                           replaces its listener's whole */
} lb_http_gzip_conf_t;

typedef enum {
    LB_HTTP_GZIP_NO = 0,    /* leave the response as it is */
    LB_HTTP_GZIP_VARY,      /* not for this request, but another one would
                               get it compressed: add Vary only */
    LB_HTTP_GZIP_YES,       /* compress */
} lb_http_gzip_decision_t;

extern lb_module_t  lb_http_gzip_module;

/* Whether the Accept-Encoding fields of msg (all of them, as one list)
 * accept gzip (RFC 9110 §12.5.3): "gzip" or "x-gzip" with a weight above
 * 0; without either, "*" with a weight above 0. No field, or an empty
 * one, accepts nothing but identity. A malformed weight counts as 0. */
bool lb_http_gzip_accepts(const lb_http_msg_t *msg);

/* Whether a Content-Type value is one of types: its media type, without
 * parameters and whitespace, compared ignoring case. An empty value
 * never matches, not even "*". */
bool lb_http_gzip_type_matches(const lb_http_gzip_types_t *types, lb_str_t content_type);

/* Whether the comma-separated list value holds the token (its part
 * before any '=' or ';', whitespace trimmed), ignoring case: for
 * Cache-Control's no-transform and Vary's names. */
bool lb_http_gzip_list_has(lb_str_t value, const char *token, size_t len);

/* What to do with the response in r->out for the request in r, under
 * conf. NO for a response that is never compressed: gzip off, status
 * 1xx, 204, 206 or 304, an upgrade, a Content-Encoding other than
 * identity, Cache-Control no-transform, a type not in types (or none),
 * a known length below min_length. VARY when only the request stands in
 * the way: HEAD, a Range field, an Accept-Encoding that refuses gzip.
 * YES otherwise. */
lb_http_gzip_decision_t lb_http_gzip_decide(lb_http_request_t *r,
                                            const lb_http_gzip_conf_t *conf);

/* Makes r->out say that the response varies with Accept-Encoding: adds
 * "Vary: Accept-Encoding", or appends ", Accept-Encoding" to the value of
 * the last Vary field (the new value from the request's arena) unless a
 * Vary field already names it or "*". LB_OK, or LB_ERROR (no room: no
 * field slot, or the arena is used up) with r->out unchanged. */
int  lb_http_gzip_vary(lb_http_request_t *r);

/* A strong ETag ("abc") becomes weak (W/"abc", from the arena): the
 * compressed bytes are not the bytes the tag was made for (RFC 9110
 * §8.8.1). A weak one stays; one that is neither (malformed) is removed,
 * as it cannot be weakened. LB_OK, or LB_ERROR (the arena is used up)
 * with r->out unchanged. */
int  lb_http_gzip_weaken_etag(lb_http_request_t *r);

/* Writes in/out with two decimals, rounded ("3.41"), into buf and
 * returns its length (at most 23); out must not be 0. */
size_t lb_http_gzip_ratio(uint64_t in, uint64_t out, char *buf, size_t size);

#endif
