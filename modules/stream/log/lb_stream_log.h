/*
 * lb_stream_log.h: the access log of tcp, tls and udp listeners (SPEC
 * §3.3, §7): one line per session when it ends, naming the client, the
 * listener, the server, the bytes each way, the duration and how it ended.
 * The protocol modules fill an lb_stream_log_ctx_t; this module owns the
 * access_log setting of stream listeners, its formats and variables.
 */
#ifndef LB_STREAM_LOG_H
#define LB_STREAM_LOG_H

#include "lb_core.h"

/* How a session ended ($end_reason); lb_stream_end_names[] spells them. */
typedef enum {
    LB_STREAM_END_CLIENT_CLOSED = 0,    /* the client finished (or reset) first */
    LB_STREAM_END_SERVER_CLOSED,        /* the server did */
    LB_STREAM_END_IDLE_TIMEOUT,         /* tcp/tls idle_timeout */
    LB_STREAM_END_SESSION_TIMEOUT,      /* udp session_timeout */
    LB_STREAM_END_RESPONSES,            /* udp: `responses` replies came */
    LB_STREAM_END_CONNECT_FAILED,       /* no server could be reached, or none usable */
    LB_STREAM_END_DENIED,               /* refused by the listener's allow/deny */
    LB_STREAM_END_SHUTDOWN,             /* the worker stopped with it open */
    LB_STREAM_END_ERROR,                /* a local error or a bad ClientHello */
} lb_stream_end_t;

extern const char *const  lb_stream_end_names[];

typedef struct {
    const struct sockaddr  *client;
    socklen_t               client_len;
    const char             *upstream_addr;      /* the server, or NULL: none */
    uint64_t                bytes_received;     /* from the client */
    uint64_t                bytes_sent;         /* to the client */
    lb_msec_t               start_msec;         /* lb_current_msec at the start */
    lb_stream_end_t         end;
} lb_stream_log_ctx_t;

/* Whether listener ls has an access log (so a caller can skip filling a
 * context). */
bool lb_stream_log_enabled(const lb_listener_t *ls);
/* Writes the line of one ended session of ls. Never allocates. */
void lb_stream_log_session(const lb_listener_t *ls, const lb_stream_log_ctx_t *ctx);

#endif
