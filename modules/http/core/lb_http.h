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

/* Generated responses whose head and body fit here are built in the
 * connection's cached request memory; longer ones take a malloc. */
#define LB_HTTP_OUT_SIZE  4096

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
    lb_http_limits_t  limits;           /* the three above, for the parser */
    lb_http_access_log_t  access_log;
    lb_listener_t    *listener;
} lb_http_core_conf_t;

/* What a connection holds only while a request is read or answered: the
 * parsed head and the read buffer's memory. Cached per worker and given
 * back while the connection sits idle in keep-alive. */
typedef struct {
    lb_http_msg_t     msg;
    size_t            size;             /* bytes of data[] */
    char              out[LB_HTTP_OUT_SIZE];   /* a response that fits */
    char              data[];           /* the read buffer */
} lb_http_req_mem_t;

typedef enum {
    LB_HTTP_READ_HEAD = 0,              /* waiting for, or reading, a head */
    LB_HTTP_READ_BODY,                  /* reading and discarding a body */
    LB_HTTP_SEND,                       /* writing the response */
    LB_HTTP_LINGER,                     /* response sent, closing: draining input */
} lb_http_state_t;

/* One client connection, from the connection's pool. */
typedef struct {
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
    bool                  out_malloced;
    lb_msec_t             linger_until;

    char                  remote_ip[LB_IP_TEXT_LEN];
    char                  remote_port[8];
    char                  local_ip[LB_IP_TEXT_LEN];
    char                  local_port[8];
} lb_http_conn_t;

extern lb_module_t  lb_http_core_module;

/* The listener handler of http listeners: takes an accepted connection. */
void lb_http_init_connection(lb_conn_t *c);
/* Per-worker caches and the idle list (exit_worker). */
void lb_http_conn_exit_worker(lb_cycle_t *cycle);

#endif
