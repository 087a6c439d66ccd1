/*
 * lb_http_relay.h: a message body on its way through lbd, from the
 * framing it arrived with to the framing lbd chose for the next hop.
 *
 * The framing of a forwarded message is lbd's own decision (RFC 9112 §6,
 * §7): the input is checked and decoded as it arrives (Content-Length
 * bytes counted, chunked decoded), and the output is written with framing
 * lbd wrote itself: the bytes as they are for a length or close-delimited
 * body, chunked with every chunk line and the last chunk written by lbd,
 * or the decoded data alone. Nothing a peer wrote as framing is ever
 * copied, so no field, chunk extension or trailer can make the next hop
 * see message boundaries other than the ones lbd saw.
 *
 * Zero-copy: the queue holds views into the input buffer and the few
 * bytes of framing lbd writes; the input behind the views is consumed
 * once the queue has gone out. While a relay is busy its input buffer
 * must not be compacted.
 */
#ifndef LB_HTTP_RELAY_H
#define LB_HTTP_RELAY_H

#include "lb_core.h"
#include "lb_http_parse.h"

typedef enum {
    LB_HTTP_OUT_AS_IS = 0,      /* length or close-delimited input, as it is */
    LB_HTTP_OUT_CHUNKED,        /* chunked, framing written by lbd */
    LB_HTTP_OUT_DATA,           /* the decoded data, then the trailer field
                                   lines allowed on (lb_http_relay_is_trailer) */
} lb_http_out_t;

#define LB_HTTP_RELAY_IOV    24
#define LB_HTTP_RELAY_LINES  (LB_HTTP_RELAY_IOV / 3 + 1)

typedef struct {
    lb_http_body_t      in;         /* LENGTH, CHUNKED or CLOSE */
    lb_http_out_t       out;
    int64_t             left;       /* LENGTH: input bytes still to come */
    int64_t             data;       /* decoded bytes so far */
    int64_t             max;        /* decoded bytes allowed (413), -1: any */
    uint64_t            data_left;  /* CHUNKED: chunk data at the start of the
                                       input already decoded by the caller */
    lb_http_chunked_t   chunked;
    bool                complete;   /* the input is parsed to its end */
    bool                last_chunk; /* CHUNKED out: "0\r\n" is queued */

    struct iovec        iov[LB_HTTP_RELAY_IOV];
    unsigned            first, niov;
    uint32_t            trailers;   /* DATA out: bit i, iov[i] is a trailer
                                       field line (without CRLF) */
    char                lines[LB_HTTP_RELAY_LINES][20];
    unsigned            nlines;
    size_t              parsed;     /* input bytes behind the queue */
    uint64_t            sent;       /* bytes of the queue that went out */

    int                 error_status;   /* on LB_ERROR: 400, 413 or 502 */
    const char         *error;
} lb_http_relay_t;

/* Starts a relay of a body framed as in (with length bytes for LENGTH)
 * and written out as out; max bounds the decoded bytes (-1: none). */
void lb_http_relay_init(lb_http_relay_t *r, lb_http_body_t in, int64_t length,
                        lb_http_out_t out, int64_t max);

/* Parses the input at b->pos (past what is already queued) and queues
 * what goes out, until the input or the queue's room runs out. LB_OK, or
 * LB_ERROR with error_status and error (a bad chunked body, a body over
 * max, a trailer line that cannot fit in b). */
int  lb_http_relay_fill(lb_http_relay_t *r, lb_buf_t *b);

/* The input ended (a close-delimited body is complete). */
void lb_http_relay_eof(lb_http_relay_t *r);

/* Copies the queued views into iov[0..max), returning how many. */
int  lb_http_relay_iov(const lb_http_relay_t *r, struct iovec *iov, int max);

/* n bytes of the queue went out; once all of it has, the input behind it
 * is consumed from b. */
void lb_http_relay_sent(lb_http_relay_t *r, lb_buf_t *b, size_t n);

/* Whether the i-th view lb_http_relay_iov gave is a trailer field line. */
static inline bool
lb_http_relay_is_trailer(const lb_http_relay_t *r, size_t i)
{
    return (r->trailers >> (r->first + i)) & 1;
}

/* Bytes are queued or held: b must not be compacted. */
static inline bool
lb_http_relay_busy(const lb_http_relay_t *r)
{
    return r->first < r->niov || r->parsed;
}

/* Everything went out, the last chunk included. */
static inline bool
lb_http_relay_done(const lb_http_relay_t *r)
{
    return r->complete && !lb_http_relay_busy(r);
}

/* A trailer field that must not travel in trailers (RFC 9110 §6.5.1):
 * framing, routing, hop-by-hop and the fields that say how to read the
 * content or who may. */
bool lb_http_trailer_forbidden(const char *name, size_t len);

#endif
