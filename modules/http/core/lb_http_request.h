/*
 * lb_http_request.h: one HTTP request, apart from the connection that
 * carries it, and the output path every response takes.
 *
 * A frontend (HTTP/1 today: lb_http_conn.c) reads a request head, makes
 * a request object, fills what it read (msg, the client's addresses) and
 * a writer (how bytes go out in its protocol), and runs it:
 * lb_http_request_run() chooses the route, runs the phases and the
 * route's action. Whatever answers (the action's module, a phase that
 * refuses, lbd's own errors) does so the same way:
 *
 *   fill r->out (status, fields, content_length)
 *   lb_http_send_header(r)          header filters, in module order, then
 *                                   the writer's header step
 *   lb_http_send_body(r, chain, last)   body filters, then the writer
 *
 * A body filter takes bytes from its input chain (lb_chain.h: moving
 * pos), passes what it makes on with lb_http_next_body_filter() and
 * returns what that returned. The results, for every filter and the
 * writer alike:
 *   LB_OK     everything passed in went on, nothing is held below
 *             (with last: the response is complete);
 *   LB_AGAIN  something is held below (the client is slow): the caller
 *             calls again, with what it has left or NULL, when the
 *             frontend calls its content_run again; bytes it left in
 *             its chain are still its own and must stay as they are;
 *   LB_ERROR  the response cannot go on: the caller aborts the request
 *             (lb_http_request_abort), which closes that client
 *             connection; the client sees a truncated response.
 * A filter that holds bytes of its own (a compressor's output the writer
 * could not take yet) takes no more input until they went on, so memory
 * never grows with the size of a body.
 */
#ifndef LB_HTTP_REQUEST_H
#define LB_HTTP_REQUEST_H

#include "lb_core.h"
#include "lb_http_parse.h"
#include "lb_http_var.h"

typedef struct lb_http_request_s  lb_http_request_t;
typedef struct lb_http_route_s    lb_http_route_t;
struct lb_http_core_conf_s;

typedef int  (*lb_http_handler_pt)(lb_http_request_t *r);

/* A route as the core sees it: made by the route module (which picks it
 * for a request on the find_route phase), served by the module that owns
 * its action. */
struct lb_http_route_s {
    unsigned                 index;         /* 1-based, as in "route #3" */
    const char              *file;          /* where the route is declared */
    int                      line;
    lb_listener_t           *listener;
    void                   **confs;         /* every module's conf of this route */

    /* The route's action, installed while the route is compiled by the
     * module that owns the action's setting (lb_http_route_set_action):
     * http_proxy for `upstream`, http_return for `return` and `redirect`.
     * NULL handler: nothing built in serves it (502). */
    lb_http_handler_pt       handler;
    const char              *action;        /* the setting's name */
    const char              *action_text;   /* for describe: "upstream \"api\"" */
    /* after the whole file is read (upstreams may come later): resolve
     * names; reports through cf */
    int                    (*resolve)(lb_conf_t *cf, lb_http_route_t *route);
    /* lbctl route: prints the "action: ..." lines for the request in ctx */
    void                   (*explain)(const lb_http_route_t *route,
                                      const lb_http_var_ctx_t *ctx);
};

/* A response head, structured: status, reason and fields. The framing
 * fields (Content-Length, Transfer-Encoding, Connection, Keep-Alive) are
 * never among the fields: the writer writes them from content_length and
 * the connection's state. lb_http_send_header adds Date when absent and
 * the X-Request-ID echo before the header filters run; lbd's own
 * responses get Server from lb_http_out_start. */
#define LB_HTTP_OUT_FIELDS  (LB_HTTP_MAX_HEADERS + 32)

typedef struct {
    int                 status;
    lb_str_t            reason;         /* empty: lbd's text for status */
    lb_http_header_t    fields[LB_HTTP_OUT_FIELDS];
    size_t              nfields;
    int64_t             content_length; /* of the body, -1: not known (the
                                           writer chunks it, or closes) */
    unsigned            upgrade:1;      /* 101: the connection becomes a
                                           tunnel once the head is out */
} lb_http_headers_out_t;

/* What a frontend does for its requests: send interim responses; send a
 * response's head once
 * the header filters ran, then the body (what the body filters made);
 * end a request whose response went out whole (the log phase, then the
 * next request or the connection's end: lb_http_finalize), or at once
 * (lb_http_abort). */
typedef struct {
    int   (*header)(lb_http_request_t *r);
    int   (*body)(lb_http_request_t *r, lb_chain_t *in, bool last);
    /* whether bytes of the response reached the client: until then a
     * response may still be replaced by another (an error) */
    bool  (*started)(lb_http_request_t *r);
    int   (*finalize)(lb_http_request_t *r);
    void  (*abort)(lb_http_request_t *r);
    /* an interim response ahead of the final one (100 Continue): LB_OK
     * once it is all out, LB_AGAIN when the client is slow (call again),
     * LB_ERROR */
    int   (*interim)(lb_http_request_t *r, int status);
    /* the request body, for an action that takes it (r->body_taken): reads
     * more into r->body_in, the bytes in the framing r->msg->body says;
     * when body_in is full it is compacted first unless pinned (bytes in
     * it are still pointed at: then LB_AGAIN). The bytes read, 0 at the
     * end of the stream, LB_AGAIN or LB_ERROR */
    ssize_t (*read_body)(lb_http_request_t *r, bool pinned);
    /* runs the request's frontend again, after an event of the action's
     * own (an upstream socket, a timer): lb_http_run_request */
    void  (*run)(lb_http_request_t *r);
} lb_http_writer_t;

typedef int  (*lb_http_header_filter_pt)(lb_http_request_t *r);
typedef int  (*lb_http_body_filter_pt)(lb_http_request_t *r, lb_chain_t *in, bool last);

/* The client as the frontend knows it (addresses as text, once). */
typedef struct {
    char   remote_ip[LB_IP_TEXT_LEN];
    char   remote_port[8];
    char   local_ip[LB_IP_TEXT_LEN];
    char   local_port[8];
    bool   local_known;
} lb_http_peer_t;

#define LB_HTTP_REQUEST_ID_BUF  40      /* LB_HTTP_REQUEST_ID_LEN + NUL */
#define LB_HTTP_ARENA_SIZE      4096    /* for values filters make */

struct lb_http_request_s {
    /* set by the frontend */
    lb_conn_t                       *c;         /* the client connection */
    struct lb_http_core_conf_s      *conf;      /* the listener's http settings */
    const lb_http_writer_t          *writer;
    void                            *frontend;  /* the frontend's own state */
    lb_http_peer_t                  *peer;
    lb_http_msg_t                   *msg;       /* the request head */
    lb_buf_t                        *body_in;   /* the request body as it arrives */
    lb_msec_t                        start_msec;
    unsigned                         head_method:1;  /* HEAD */
    unsigned                         http10:1;       /* HTTP/1.0 */
    unsigned                         keep_alive:1;   /* the connection may
                                                        serve another request
                                                        after this one */
    unsigned                         body_taken:1;   /* an action reads the
                                                        body (else the
                                                        frontend drops it) */

    /* chosen while the request runs */
    const lb_http_route_t           *route;     /* NULL before one (and 404) */
    size_t                          *captures;  /* path_regex offsets */
    int                              ncaptures;
    lb_str_t                         request_id;    /* the client's, or id_buf */

    /* the response */
    int                              status;        /* 0: none chosen yet */
    lb_http_headers_out_t            out;
    unsigned                         header_sent:1;
    unsigned                         log_pending:1; /* the log phase has not run */
    uint64_t                         bytes_sent;    /* to the client, head included */

    /* what the upstream side tells variables */
    lb_str_t                         upstream_addr;
    lb_msec_t                        upstream_msec;         /* -1: no upstream */
    lb_msec_t                        upstream_connect_msec; /* -1: no connection */
    int                              upstream_status;       /* 0: none */

    /* the action that took the request: its state and entry points, run
     * by the frontend on the client's events (content_run with the
     * frontend's result convention: LB_OK go on, LB_AGAIN wait, LB_DONE
     * the connection is gone), on a timer of the client's, and when the
     * client connection closes while the action holds the request */
    void                            *content;
    int                            (*content_run)(lb_http_request_t *r);
    void                           (*content_timeout)(lb_http_request_t *r, lb_event_t *ev);
    void                           (*content_cleanup)(lb_http_request_t *r);

    /* a response of lbd's own, while it goes out */
    lb_chain_t                       own_body;

    /* per-module state of this request (lb_http_request_ctx) */
    void                           **ctx;
    size_t                           filter_pos;    /* lb_http_next_body_filter */
    size_t                           access_next;   /* after a delay: the next access handler */
    size_t                           arena_used;
    char                             arena[LB_HTTP_ARENA_SIZE];
    char                             id_buf[LB_HTTP_REQUEST_ID_BUF];
};

#define lb_http_request_ctx(r, m)        ((r)->ctx[(m).index])
#define lb_http_request_set_ctx(r, m, v) ((r)->ctx[(m).index] = (v))

/* Prepares r for a new request (keeps c, conf, writer, frontend, peer,
 * msg and ctx as the frontend set them; ctx is cleared). */
void  lb_http_request_init(lb_http_request_t *r);

/* Runs a request whose head is in r->msg (parsed, lb_http_parse_uri
 * done): route, access, rewrite, the route's action. Returns what the
 * answer returned: LB_OK when the request was answered or an action took
 * it (r->content set), LB_DONE when the frontend's connection is gone. */
int   lb_http_request_run(lb_http_request_t *r);

/* Bytes from the request's arena (LB_HTTP_ARENA_SIZE for the whole
 * request), for values a filter makes; NULL when it is used up. */
char *lb_http_request_alloc(lb_http_request_t *r, size_t size);

/* Response fields -------------------------------------------------------- */

/* Appends a field (the strings must live until the head is sent: the
 * arena, the configuration, the upstream's buffer). LB_ERROR: no room. */
int   lb_http_out_add(lb_http_request_t *r, const char *name, size_t nlen,
                      const char *value, size_t vlen);
/* The first field called name (case-insensitive), or NULL. */
lb_http_header_t *lb_http_out_find(lb_http_request_t *r, const char *name, size_t nlen);
/* Removes every field called name. */
void  lb_http_out_remove(lb_http_request_t *r, const char *name, size_t nlen);

/* The output path -------------------------------------------------------- */

/* Header filters, then the writer's header step. LB_OK or LB_ERROR (a
 * filter failed: nothing was sent; the caller answers 500/502 instead). */
int   lb_http_send_header(lb_http_request_t *r);
/* Body filters, then the writer (results: see above). */
int   lb_http_send_body(lb_http_request_t *r, lb_chain_t *in, bool last);
/* For a body filter: passes its output on to the next filter. */
int   lb_http_next_body_filter(lb_http_request_t *r, lb_chain_t *in, bool last);

/* The two halves of lb_http_send_response, for a response that adds
 * fields of its own between them (Location): Content-Type and the body's
 * length into r->out (after lb_http_out_start), then the head and the
 * body through the output path. */
int   lb_http_response_fields(lb_http_request_t *r, int status, const char *content_type,
                              size_t len);
int   lb_http_send_prepared(lb_http_request_t *r, const char *body, size_t len);
/* lbd's short body for status: "404 Not Found\n" (made once, static). */
const char *lb_http_error_text(int status, size_t *len);

/* Answers r->out.status (r->out begun by lb_http_out_start) with
 * content_type and body (not copied: body must live until the request
 * ends), through the output path: the head goes now, the body as the
 * frontend runs r->content_run. LB_OK or LB_ERROR (the head did not fit:
 * nothing was sent). */
int   lb_http_send_response(lb_http_request_t *r, int status, const char *content_type,
                            const char *body, size_t len);

#endif
