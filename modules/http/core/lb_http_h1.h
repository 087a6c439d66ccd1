/*
 * lb_http_h1.h: the HTTP/1.1 response writer, the bottom of the output
 * path for HTTP/1 connections (lb_http_request.h).
 *
 * It decides the framing of every response lbd sends, its own and
 * proxied alike: Content-Length when the body's length is known, else
 * chunked for an HTTP/1.1 client and the end of the connection for an
 * HTTP/1.0 one; no body for HEAD, 1xx, 204 and 304. It writes the
 * Connection field from the request's keep_alive, which it clears when
 * the framing needs the connection's end. Chunk lines and the last chunk
 * are written by lbd: each link of the body chain goes out as one chunk
 * (trailer lines after the last chunk); with any other framing, trailer
 * lines are dropped.
 *
 * Bytes go out through the connection's io (c->io->sendv) straight from
 * the chain's links; the writer copies only the head and its own framing
 * lines. What it could not send stays in the links (LB_AGAIN): the
 * producer calls again with them.
 */
#ifndef LB_HTTP_H1_H
#define LB_HTTP_H1_H

#include "lb_http_request.h"

#define LB_HTTP_H1_PEND  64         /* framing bytes a partial send left */

typedef struct {
    lb_conn_t          *c;
    char               *head;       /* room for the serialised head */
    size_t              head_size;

    size_t              head_len;
    size_t              head_sent;
    unsigned            chunked:1;
    unsigned            no_body:1;
    unsigned            length:1;   /* Content-Length framing */
    unsigned            chunk_open:1;   /* a CRLF is owed: after chunk data or a
                                           trailer line */
    unsigned            last_chunk:1;   /* "0\r\n" is out (trailers may follow) */
    unsigned            done:1;         /* the whole response is out */
    unsigned            hold:1;     /* send nothing yet (a body is being read) */
    int64_t             body_left;  /* length framing: body bytes still due */
    uint64_t            chunk_left; /* data of the open chunk still to send */
    char                pend[LB_HTTP_H1_PEND];
    size_t              pend_len;
    size_t              pend_sent;
    uint64_t            sent;       /* bytes that reached the socket */
    const char         *error;      /* on LB_ERROR, why (errno may add to it) */
} lb_http_h1_t;

/* Starts a response on c, serialising the head of r (status line,
 * fields, framing, Connection) into head[0..head_size). LB_OK, or
 * LB_ERROR when it does not fit. */
int  lb_http_h1_header(lb_http_h1_t *w, lb_http_request_t *r);
/* Sends the head (once) and the body bytes of in, framed; with last, the
 * end of the body. LB_OK: all of in is sent (with last: the response is
 * complete, w->done); LB_AGAIN: the socket is full; LB_ERROR: the send
 * failed or the body broke its framing (w->error). */
int  lb_http_h1_body(lb_http_h1_t *w, lb_chain_t *in, bool last);

#endif
