/*
 * lb_http_route.h: the routes of an http or https listener (SPEC §3.4) as
 * the http listener and `lbctl route` see them. Routes are compiled once
 * at load (regexes with PCRE2 JIT, match data allocated then) and tried in
 * order; the first whose every condition holds serves the request.
 *
 * Matching rules (what SPEC §3.4 leaves open):
 * - host: the request's host (the Host field, or the authority of an
 *   absolute-form target, RFC 9112 §3.2.2) without its port and without
 *   one trailing dot (lb_http_host_name), compared case-insensitively. "api.example.com" is exact;
 *   "*.example.com" matches any name ending in ".example.com" with at
 *   least one byte before it ("a.example.com", "a.b.example.com"), never
 *   "example.com" itself; "~regex" is searched in the lowercased host. A
 *   configured host may not carry a port. A request without Host (HTTP/1.0)
 *   fails every host condition.
 * - path, path_prefix, path_regex: compared with the request's normal
 *   path, req->uri (lb_http_parse_uri: unreserved escapes decoded, dot
 *   segments removed, "//" merged per merge_slashes; for an absolute-form
 *   target, the path after the authority), byte for byte, or ignoring
 *   ASCII case when the listener has path_case_insensitive (path_regex is
 *   then compiled caseless).
 * - method: a string or an array of tokens (RFC 9110 §9.1). Methods are
 *   case-sensitive, so they are compared exactly as written; a lowercase
 *   spelling of a standard method ("get") is refused as a mistake, and so
 *   is any method the parser refuses (lb_http_valid_method): it could
 *   never match. Extension methods ("PURGE") are allowed.
 * - header, cookie, query: a string or an array of strings, all of which
 *   must hold; each is "Name" (present), "Name: value" (equal, exactly,
 *   case-sensitive) or "Name: ~regex" (searched); cookie and query also
 *   take "Name=value" and "Name=~regex", as on the wire. header: the name is
 *   case-insensitive and the condition holds when any field of that name
 *   matches (values are trimmed by the parser). cookie: the first cookie
 *   of that (case-sensitive) name across every Cookie field. query: the
 *   first parameter of that name in the query string; "lang" without '='
 *   is present with an empty value; names and values are not decoded.
 * - Regexes are PCRE2, byte-oriented (no UTF mode), unanchored unless the
 *   pattern says ^ or $; path_regex captures are $1..$9 in rewrite,
 *   redirect location and return body, and a $N beyond the pattern's
 *   capture groups is a configuration error.
 * - rewrite is allowed only on a route whose action is upstream.
 *
 * A listener's routes are compiled in this module's listener merge_conf,
 * after the listener's other settings (wherever `routes` stands in the
 * block) and after the listener merge_conf of every module listed before
 * this one in auto/modules. Each route is a LB_CTX_ROUTE block, so any
 * module may add route settings; their merge_conf gets the module's
 * listener conf as parent (lb_conf_parse_block hands the listener's confs
 * out as soon as it allocates them).
 */
#ifndef LB_HTTP_ROUTE_H
#define LB_HTTP_ROUTE_H

#include "lb_core.h"
#include "lb_http_parse.h"
#include "lb_http_var.h"
#include "lb_http_request.h"
#include "lb_upstream.h"

#define LB_HTTP_ROUTE_MAX_CAPTURES  10      /* $0..$9: pairs in captures[] */


/* The compiled routes of one listener, in order. */
typedef struct {
    lb_http_route_t        **routes;
    size_t                   nroutes;
    int                      path_case_insensitive;  /* bool; the listener's
                                                        setting, read by
                                                        lb_http_routes_compile */
} lb_http_routes_t;

extern lb_module_t  lb_http_route_module;

/* The routes of listener ls (nroutes 0 when it has none), or NULL when the
 * listener is not one this module serves. */
const lb_http_routes_t *lb_http_route_list(lb_listener_t *ls);

/* The first route of ls that req satisfies, or NULL (the listener answers
 * 404). captures, when not NULL, must hold 2 * LB_HTTP_ROUTE_MAX_CAPTURES
 * offsets: it receives the path_regex match as offset pairs into
 * req->path.data ($0 first; a group that did not take part is 0,0, an
 * empty string), and *ncaptures the number of pairs (0 when the route has
 * no path_regex): what lb_http_var_ctx_t.captures, .ncaptures and
 * .capture_subject (req->uri.data) expect. req->uri must have been set
 * by lb_http_parse_uri: a request that skipped it has an empty path. Never allocates; uses match
 * data made at load, so it is for one thread per process (a worker). */
const lb_http_route_t *lb_http_route_match(lb_listener_t *ls, const lb_http_msg_t *req,
                                           size_t *captures, int *ncaptures);
const lb_http_route_t *lb_http_routes_match(const lb_http_routes_t *rs,
                                            const lb_http_msg_t *req,
                                            size_t *captures, int *ncaptures);

/* Writes a one-line account of r for `lbctl route`, such as
 *   route #2 at lbd.conf:14: host = "api.example.com", method = [GET, HEAD],
 *   path_prefix = "/v1/" -> upstream "orders"
 * into buf (NUL-terminated when size > 0, truncated to fit) and returns
 * the full length, like snprintf, so a caller can size a buffer. */
size_t lb_http_route_describe(const lb_http_route_t *r, char *buf, size_t size);

/* Compiles list (a listener's `routes`, a libconfig list of groups) for
 * listener ls into *out: every group is parsed as an LB_CTX_ROUTE block,
 * so other modules' route settings are read too; out->path_case_insensitive
 * must be set before (it decides how path_regex compiles). Reports every error
 * through cf and returns LB_ERROR after them. The module calls it while
 * loading; tests call it on a setting they read themselves (cf needs
 * cycle, pool and report; ls needs name and protocol). */
int lb_http_routes_compile(lb_conf_t *cf, lb_listener_t *ls, config_setting_t *list,
                           lb_http_routes_t *out);

/* Runs every route's resolve hook (the proxy resolves upstream names
 * there, with a "did you mean" error at the route's `upstream` line). */
int lb_http_routes_resolve(lb_conf_t *cf, lb_http_routes_t *rs);

/* For the module that owns an action setting, from its merge_conf of a
 * route block: installs the action on the route being compiled (handler,
 * name, describe text, optional resolve and explain hooks). */
void lb_http_route_set_action(lb_conf_t *cf, const char *action, lb_http_handler_pt handler,
                              const char *text,
                              int (*resolve)(lb_conf_t *cf, lb_http_route_t *route),
                              void (*explain)(const lb_http_route_t *route,
                                              const lb_http_var_ctx_t *ctx));
/* For an action module's route setting with variables (rewrite, body,
 * location): compiles the string value of v, naming it `what` in errors.
 * Its $N are checked against the route's path_regex once the whole block
 * is read. NULL on error (reported through cf). */
lb_http_complex_t *lb_http_route_complex(lb_conf_t *cf, config_setting_t *v,
                                         const char *what);

#endif
