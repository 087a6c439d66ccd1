/*
 * lb_http.h: the http listener's shared types (SPEC §3.3, §4): the
 * listener settings of the http_core module and the state of one client
 * connection. lb_http.c owns the settings, lb_http_conn.c the connections.
 */
#ifndef LB_HTTP_H
#define LB_HTTP_H

#include "lb_core.h"
#include "lb_http_parse.h"
#include "lb_http_log.h"
#include "lb_http_var.h"
#include "lb_http_forward.h"
#include "lb_http_relay.h"
#include "lb_http_request.h"
#include "lb_http_h1.h"

/* The request buffer holds max_header_size bytes of head and this much
 * more, so that a request body streams through the room after the head
 * while the head stays readable (for variables and the access log). */
#define LB_HTTP_BODY_ROOM  16384

/* error_pages (SPEC §3.3): for some statuses, the bytes of a file read at
 * load are sent (as text/html) in place of lbd's short text body. */
typedef struct {
    int               status;
    lb_str_t          body;         /* from the cycle's pool, shared by the
                                       statuses of one entry */
} lb_http_error_page_t;

typedef struct {
    lb_http_error_page_t  *pages;
    size_t                 npages;
    bool                   set;     /* written in this block: a route's
                                       replace its listener's */
} lb_http_error_pages_t;

/* The longest file error_pages and return's body_file may name: these
 * are sent from memory, kept for the life of the configuration. */
#define LB_HTTP_FILE_MAX  (1024 * 1024)

/* The http_core module's configuration of one http listener. */
typedef struct lb_http_core_conf_s {
    lb_msec_t         client_header_timeout;
    lb_msec_t         client_body_timeout;
    lb_msec_t         keepalive_timeout;
    int64_t           keepalive_requests;
    int64_t           max_header_size;
    int64_t           max_headers;
    int64_t           max_uri;
    int64_t           max_body_size;
    int               merge_slashes;    /* bool: "//" is "/" in the normal path */
    lb_http_limits_t  limits;           /* the three above, for the parser */
    unsigned          uri_flags;        /* for lb_http_parse_uri */
    lb_http_access_log_t  access_log;
    lb_http_error_pages_t error_pages;
    lb_listener_t    *listener;
} lb_http_core_conf_t;

/* The http_core module's configuration of one route: its error pages
 * (its listener's unless it sets its own) and its allow / deny, which
 * replace the listener's when either is set. */
typedef struct {
    lb_http_error_pages_t  error_pages;
    lb_cidr_list_t         allow;
    lb_cidr_list_t         deny;
} lb_http_core_route_conf_t;

/* What a connection holds only while a request is read or answered: the
 * request object, its parsed head and the read buffer's memory. Cached
 * per worker and given back while the connection sits idle in
 * keep-alive. */
typedef struct {
    lb_http_request_t  r;
    lb_http_msg_t      msg;
    size_t             captures[20];    /* path_regex offsets, $0..$9 */
    void             **ctx;             /* lb_nmodules slots, in data[] */
    size_t             size;            /* bytes of the read buffer */
    size_t             uri_size;        /* bytes of uri, max_uri */
    size_t             head_size;       /* bytes of head */
    char              *uri;             /* the normalised path, when it is not
                                           the path as sent: in data[], after
                                           the read buffer, because the head
                                           must stay as sent ($request_uri) */
    char              *head;            /* the response head being written */
    char               data[];          /* the read buffer, uri, head, ctx */
} lb_http_req_mem_t;

/* The HTTP/1 writer's room for a response head: a server's head as large
 * as the proxy reads, and what lbd and the filters add. */
#define LB_HTTP_HEAD_OUT_SIZE  (16384 + 4096)

typedef enum {
    LB_HTTP_READ_HEAD = 0,              /* waiting for, or reading, a head */
    LB_HTTP_READ_BODY,                  /* reading and discarding a body */
    LB_HTTP_LINGER,                     /* response sent, closing: draining input */
    LB_HTTP_CONTENT,                    /* the request runs: its action (or
                                           lbd's own answer) owns it */
} lb_http_state_t;

typedef struct lb_http_conn_s  lb_http_conn_t;

/* A message head being written: the start line and fields, each line
 * ending in CRLF, without the empty line that ends the head. Forwarded-
 * request filters edit it in place. */
typedef struct {
    char     *data;
    size_t    len;
    size_t    size;
    size_t    start_line;       /* bytes of the start line, CRLF included */
    bool      overflow;         /* an edit did not fit: the head is unusable */
} lb_http_head_t;

/* Appends "name: value\r\n". */
void lb_http_head_add(lb_http_head_t *h, const char *name, size_t nlen,
                      const char *value, size_t vlen);
/* Removes every field called name (case-insensitive). */
void lb_http_head_remove(lb_http_head_t *h, const char *name, size_t nlen);

/* What an http module joins (lb_module_t.ctx); NULL members are skipped
 * (designated initialisers read best). For every request head, in this
 * order:
 *   find_route  picks r->route (and its captures); the first handler
 *               that does not return LB_DECLINED decides; none: 404;
 *   access      may refuse;
 *   rewrite     after the route is chosen;
 *   content     the first handler that does not decline serves the
 *               request; when all decline, the route's action does
 *               (lb_http_route_t.handler, installed by the module that
 *               owns the route's action setting).
 * A phase handler returns LB_DECLINED to go on, an HTTP status
 * (400..599) for the core to answer and close with (or'ed with
 * LB_HTTP_LOGGED when the handler logged the refusal its own way, so the
 * core adds no line: a flood of refusals must not flood the log), for access handlers
 * LB_AGAIN after lb_http_request_delay (the request waits, then the next
 * access handler runs), or, for content and actions, LB_OK when it took the request (then it answers through the
 * output path and calls lb_http_finalize when the response is done) or
 * LB_DONE when the connection is gone.
 * Filters: forward_filter edits the head sent upstream (with the
 * request's variables); header_filter edits r->out of every response lbd
 * sends, its own errors included (r->route is NULL for those that come
 * before a route is chosen), and may set up a body filter's state;
 * body_filter is a link of the body filter chain (lb_http_request.h).
 *
 * The log phase runs last, once for every request lbd read a request line
 * of (its method parsed, the rest of the head complete or not), when the
 * request is over: after its response was sent whole, or when its
 * connection closes before that (the client left, a send failed, a
 * timeout, lb_http_abort). A connection that closes before any request
 * line gives no run. Then r->status is the response's status (0 when
 * none was chosen), r->bytes_sent what reached the client, r->route the
 * request's route (NULL before one was chosen), and lb_http_var_ctx(r,
 * &ctx, r->status) gives the request's variables. A log handler must not
 * send, close or allocate per request. Requests still open when a
 * stopping worker reaches shutdown_timeout end with the worker, without
 * a run.
 * variables: the module's variables, ended by a { NULL } entry, added to
 * the registry before the first string is compiled (lb_http_var.h;
 * docs/modules.md, "Adding a variable"). */
#define LB_HTTP_LOGGED  0x10000

typedef int (*lb_http_phase_pt)(lb_http_request_t *r);
typedef int (*lb_http_filter_pt)(lb_http_request_t *r, lb_http_head_t *h,
                                 const lb_http_var_ctx_t *ctx);
typedef void (*lb_http_log_pt)(lb_http_request_t *r);

typedef struct {
    lb_http_phase_pt          access;
    lb_http_phase_pt          rewrite;
    lb_http_phase_pt          content;
    lb_http_filter_pt         forward_filter;
    lb_http_header_filter_pt  header_filter;
    lb_http_log_pt            log;
    const lb_http_var_def_t  *variables;
    lb_http_body_filter_pt    body_filter;
    lb_http_phase_pt          find_route;
} lb_http_module_t;

/* One HTTP/1 client connection: the socket, the read buffer, keep-alive
 * and pipelining. Its request (r) is in mem while one is read or served. */
struct lb_http_conn_s {
    lb_conn_t            *c;
    lb_http_core_conf_t  *conf;
    lb_http_state_t       state;
    lb_http_req_mem_t    *mem;          /* NULL while idle */
    lb_http_request_t    *r;            /* &mem->r; NULL while idle */
    lb_buf_t              buf;          /* over mem->data */
    lb_queue_t            idle_link;    /* on the worker's idle list */
    uint64_t              requests;     /* heads parsed on this connection */
    unsigned              head_started:1;
    lb_http_peer_t        peer;

    /* the request body being discarded */
    lb_http_body_t        body;
    int64_t               body_left;    /* LENGTH: bytes still to come */
    int64_t               body_seen;    /* CHUNKED: decoded bytes so far */
    lb_http_chunked_t     chunked;

    lb_http_h1_t          w;            /* the response being written */
    size_t                interim_sent; /* of an interim response */
    lb_http_conn_t       *next_free;    /* in the per-worker cache */
};

extern lb_module_t  lb_http_core_module;

/* The phase handlers and filters of every http module, collected at load
 * in module order. */
typedef struct {
    lb_http_phase_pt          *find_route, *access, *rewrite, *content;
    lb_http_filter_pt         *forward_filters;
    lb_http_header_filter_pt  *header_filters;
    lb_http_body_filter_pt    *body_filters;
    size_t                     nfind, naccess, nrewrite, ncontent, nforward, nheader, nbody;
    lb_http_log_pt            *log;
    size_t                     nlog;
} lb_http_phases_t;

extern lb_http_phases_t  lb_http_phases;

/* For actions and phases ----------------------------------------------- */

/* Answers status with a short body generated by lbd (or the error_pages
 * file for it), logged at info with why (no line when why is NULL); the connection closes after it
 * unless close is false. LB_OK, or LB_DONE when the connection had to be
 * closed. A response already begun on the wire cannot be replaced: the
 * connection is closed instead (LB_DONE). */
int  lb_http_generate(lb_http_request_t *r, int status, const char *why, bool close);
/* Points ctx at r (NULL: no request) with the response's status (0: none
 * yet): a few stores, no copy; getters read the request on demand. */
void lb_http_var_ctx(lb_http_request_t *r, lb_http_var_ctx_t *ctx, int status);
/* Reads the listener's own address of r's connection into its peer, once
 * (local_known), for $server_addr and $server_port. */
void lb_http_local_addr(lb_http_request_t *r);
/* The http core's own variables (lb_http_variables.c). */
extern const lb_http_var_def_t  lb_http_core_variables[];
/* lb_http_reason(status) is the core's (lb_http_reason.h). */
/* Resets r->out for a response of lbd's own: status, Server, Date. */
void lb_http_out_start(lb_http_request_t *r, int status);
/* An action is done with the request: the response (status, of
 * bytes_sent bytes) has been sent whole. Runs the log phase, then waits
 * for the next request or closes, per r->keep_alive. Returns LB_OK (the
 * state moved on) or LB_DONE (closed). The action must have released
 * everything it held for the request. */
int  lb_http_finalize(lb_http_request_t *r);
/* From an access handler that then returns LB_AGAIN: the request waits
 * msec (on the client connection's write timer: nothing is sent to it
 * meanwhile) before the next access handler runs. A client that leaves
 * meanwhile ends the request as usual. */
void lb_http_request_delay(lb_http_request_t *r, lb_msec_t msec);
/* Closes the client connection at once (after an error mid-response);
 * the log phase runs for the request first. */
void lb_http_abort(lb_http_request_t *r);
/* Runs the connection's state machine again (after an action's event). */
void lb_http_run_request(lb_http_request_t *r);

/* The HTTP/1 connection behind r, NULL for another frontend: a 101
 * tunnel moves raw bytes both ways on it (the proxy's tunnel is the one
 * HTTP/1-only part of an action). */
lb_http_conn_t *lb_http_conn_of(lb_http_request_t *r);

/* Reads the file named by setting v (relative to the prefix) whole into
 * *out, from cf's pool, NUL-terminated (not counted); at most
 * LB_HTTP_FILE_MAX bytes. Reports "FILE:LINE: ..." through cf on error. */
int  lb_http_conf_read_file(lb_conf_t *cf, config_setting_t *v, lb_str_t *out);

/* The listener handler of http listeners: takes an accepted connection. */
void lb_http_init_connection(lb_conn_t *c);
/* Closes the connections that wait for a request (stop_worker). */
void lb_http_conn_stop_worker(lb_cycle_t *cycle);
/* Per-worker caches and the idle list (exit_worker). */
void lb_http_conn_exit_worker(lb_cycle_t *cycle);

#endif
