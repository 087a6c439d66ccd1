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

/* Generated responses whose head and body fit here are built in the
 * connection's cached request memory; longer ones take a malloc. */
#define LB_HTTP_OUT_SIZE  4096
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
typedef struct {
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
 * parsed head and the read buffer's memory. Cached per worker and given
 * back while the connection sits idle in keep-alive. */
typedef struct {
    lb_http_msg_t     msg;
    size_t            captures[20];     /* path_regex offsets, $0..$9 */
    char              id_buf[LB_HTTP_REQUEST_ID_LEN + 1];   /* a generated id */
    size_t            size;             /* bytes of the read buffer */
    size_t            uri_size;         /* bytes of uri, max_uri */
    char             *uri;              /* the normalised path, when it is not
                                           the path as sent: in data[], after
                                           the read buffer, because the head
                                           must stay as sent ($request_uri) */
    char              out[LB_HTTP_OUT_SIZE];   /* a response that fits */
    char              data[];           /* the read buffer, then uri */
} lb_http_req_mem_t;

typedef enum {
    LB_HTTP_READ_HEAD = 0,              /* waiting for, or reading, a head */
    LB_HTTP_READ_BODY,                  /* reading and discarding a body */
    LB_HTTP_SEND,                       /* writing the response */
    LB_HTTP_LINGER,                     /* response sent, closing: draining input */
    LB_HTTP_CONTENT,                    /* a content handler owns the request */
} lb_http_state_t;

typedef struct lb_http_conn_s  lb_http_conn_t;
struct lb_http_route_s;

/* A message head being written: the start line and fields, each line
 * ending in CRLF, without the empty line that ends the head. Response
 * header filters and forwarded-request filters edit it in place. */
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

/* What an http module joins (lb_module_t.ctx). Request phases run in
 * this order for every request head: access (may refuse), rewrite (after
 * the route is chosen), content (the first handler that does not decline
 * serves the request; the core itself serves return and redirect routes).
 * A phase handler returns LB_DECLINED to go on, an HTTP status (400..599)
 * for the core to answer and close with, or, for content, LB_OK when it
 * took the request (then it calls lb_http_finalize when the response is
 * done). Filters edit a head on its way out, with the request's variables:
 * forward filters the head sent upstream, header filters every response
 * head lbd sends, its own error responses included (hc->route is NULL
 * for those that come before a route is chosen).
 *
 * The log phase runs last, once for every request lbd read a request line
 * of (its method parsed, the rest of the head complete or not), when the
 * request is over: after its response was sent whole (answered by a
 * route, a content handler or one of lbd's errors), or when its
 * connection closes before that (the client left, a send failed, a
 * timeout, a content handler's lb_http_abort). A connection that closes
 * before any request line gives no run. Then hc->status is the response's
 * status (0 when none was chosen), hc->bytes_sent what reached the client,
 * hc->route the request's route (NULL before one was chosen), and
 * lb_http_var_ctx(hc, &ctx, hc->status) gives the request's variables. A
 * log handler must not send, close or allocate per request. Requests
 * still open when a stopping worker reaches shutdown_timeout end with the
 * worker, without a run. NULL members are skipped.
 * variables: the module's variables, ended by a { NULL } entry,
 * added to the registry before the first string is compiled
 * (lb_http_var.h; docs/modules.md, "Adding a variable"). */
typedef int (*lb_http_phase_pt)(lb_http_conn_t *hc);
typedef int (*lb_http_filter_pt)(lb_http_conn_t *hc, lb_http_head_t *h,
                                 const lb_http_var_ctx_t *ctx);
typedef void (*lb_http_log_pt)(lb_http_conn_t *hc);

typedef struct {
    lb_http_phase_pt    access;
    lb_http_phase_pt    rewrite;
    lb_http_phase_pt    content;
    lb_http_filter_pt   forward_filter;
    lb_http_filter_pt   header_filter;
    lb_http_log_pt      log;
    const lb_http_var_def_t  *variables;
} lb_http_module_t;

/* One client connection, from the connection's pool. */
struct lb_http_conn_s {
    lb_conn_t            *c;
    lb_http_core_conf_t  *conf;
    lb_http_state_t       state;
    lb_http_req_mem_t    *mem;          /* NULL while idle */
    lb_buf_t              buf;          /* over mem->data */
    lb_queue_t            idle_link;    /* on the worker's idle list */
    uint64_t              requests;     /* heads parsed on this connection */
    lb_msec_t             start_msec;   /* first byte of the current request */
    unsigned              head_started:1;
    unsigned              keep_alive:1; /* after this response */
    unsigned              local_known:1;
    unsigned              head_method:1;    /* the request is HEAD */
    unsigned              http10:1;         /* the request is HTTP/1.0 */
    unsigned              log_pending:1;    /* the log phase has not run for
                                               the request begun */
    int                   status;           /* of the response being sent */

    /* the request body being discarded */
    lb_http_body_t        body;
    int64_t               body_left;    /* LENGTH: bytes still to come */
    int64_t               body_seen;    /* CHUNKED: decoded bytes so far */
    lb_http_chunked_t     chunked;

    /* the response: out[0..out_head) is the head without its Connection
     * field and final CRLF, which are chosen when sending starts (a
     * graceful stop may begin while a body is read); the body is
     * out[out_head..out_head + out_body); out_sent counts all three */
    char                 *out;
    size_t                out_head;
    size_t                out_body;
    const char           *out_tail;
    size_t                out_tail_len;
    size_t                out_sent;
    const char           *out_body_data;    /* the body, when it is not in
                                               out: a file read at load */
    bool                  out_malloced;
    lb_msec_t             linger_until;

    char                  remote_ip[LB_IP_TEXT_LEN];
    char                  remote_port[8];
    char                  local_ip[LB_IP_TEXT_LEN];
    char                  local_port[8];

    /* the request being served */
    const struct lb_http_route_s  *route;
    int                   ncaptures;        /* in mem->captures */
    lb_str_t              request_id;       /* the client's, or mem->id_buf */
    uint64_t              bytes_sent;       /* to the client, for the log */
    lb_str_t              upstream_addr;    /* for $upstream_addr */
    lb_msec_t             upstream_msec;    /* -1: no upstream */
    lb_msec_t             upstream_connect_msec;    /* -1: no connection made */
    int                   upstream_status;  /* the server's; 0: none */

    /* LB_HTTP_CONTENT: the content handler's state and its event entry
     * points (called from the connection's events with the handler's own
     * lb_http_run-style result: LB_OK go on, LB_AGAIN wait, LB_DONE the
     * connection is gone) */
    void                 *content;
    int                 (*content_run)(lb_http_conn_t *hc);
    void                (*content_timeout)(lb_http_conn_t *hc, lb_event_t *ev);
    /* called when the client connection closes while the handler holds
     * the request (lb_http_abort, a graceful stop) */
    void                (*content_cleanup)(lb_http_conn_t *hc);
};

extern lb_module_t  lb_http_core_module;

/* The phase handlers and filters of every http module, collected at load
 * in module order. */
typedef struct {
    lb_http_phase_pt    *access, *rewrite, *content;
    lb_http_filter_pt   *forward_filters, *header_filters;
    size_t               naccess, nrewrite, ncontent, nforward, nheader;
    lb_http_log_pt      *log;
    size_t               nlog;
} lb_http_phases_t;

extern lb_http_phases_t  lb_http_phases;

/* For content handlers ------------------------------------------------- */

/* Answers status with a short body generated by lbd, logged at info with
 * why; the connection closes after it unless close is false. LB_OK, or
 * LB_DONE when the connection had to be closed. */
int  lb_http_generate(lb_http_conn_t *hc, int status, const char *why, bool close);
/* Points ctx at hc's current request, with the response's status (0:
 * none yet): a few stores, no copy; getters read the request on demand. */
void lb_http_var_ctx(lb_http_conn_t *hc, lb_http_var_ctx_t *ctx, int status);
/* Reads the listener's own address of hc into local_ip and local_port,
 * once (local_known), for $server_addr and $server_port. */
void lb_http_local_addr(lb_http_conn_t *hc);
/* The http core's own variables (lb_http_variables.c). */
extern const lb_http_var_def_t  lb_http_core_variables[];
/* Runs the header filters over h. */
int  lb_http_header_filters(lb_http_conn_t *hc, lb_http_head_t *h, int status);
const char *lb_http_reason(int status);
/* A content handler is done with the request: the response (status, of
 * bytes_sent bytes) has been sent whole. Runs the log phase, then waits for the next
 * request or closes, per hc->keep_alive. Returns LB_OK (the state moved
 * on) or LB_DONE (closed). The handler must have released everything it
 * held for the request. */
int  lb_http_finalize(lb_http_conn_t *hc);
/* Reads more of the request into hc->buf, compacting it first when it is
 * full (only bytes not yet consumed move: nothing may point into it). The
 * bytes read, 0 at the end of the stream, LB_AGAIN or LB_ERROR (errno). */
ssize_t lb_http_read_more(lb_http_conn_t *hc);
/* Closes the client connection at once (after an error mid-response);
 * the log phase runs for the request first. */
void lb_http_abort(lb_http_conn_t *hc);
/* Runs the connection's state machine (after a content handler set the
 * state to one of the core's own, e.g. by lb_http_generate). */
void lb_http_run(lb_http_conn_t *hc);

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
