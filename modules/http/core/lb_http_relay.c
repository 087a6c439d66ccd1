/*
 * lb_http_relay.c: relays a message body with framing written by lbd
 * (see lb_http_relay.h for why).
 */
#include "lb_http_relay.h"

static const char  lb_http_crlf[] = "\r\n";
static const char  lb_http_last_chunk[] = "0\r\n";

static void lb_http_relay_end(lb_http_relay_t *r);

void
lb_http_relay_init(lb_http_relay_t *r, lb_http_body_t in, int64_t length,
                   lb_http_out_t out, int64_t max)
{
    memset(r, 0, sizeof(*r));
    r->in = in;
    r->out = out;
    r->left = in == LB_HTTP_BODY_LENGTH ? length : 0;
    r->max = max;
    r->complete = in == LB_HTTP_BODY_NONE;
    if (in == LB_HTTP_BODY_LENGTH && length == 0) {
        lb_http_relay_end(r);
    }
}

static void
lb_http_relay_queue(lb_http_relay_t *r, const char *p, size_t n)
{
    struct iovec  *prev = r->niov > r->first ? &r->iov[r->niov - 1] : NULL;

    if (n == 0) {
        return;
    }
    if (prev && (const char *) prev->iov_base + prev->iov_len == p
        && !((r->trailers >> (r->niov - 1)) & 1))
    {
        prev->iov_len += n;         /* adjacent input: one view */
        return;
    }
    r->iov[r->niov].iov_base = (void *) p;
    r->iov[r->niov++].iov_len = n;
}

/* Chunk data: as it is, or as one chunk of its own. */
static void
lb_http_relay_data(lb_http_relay_t *r, const char *p, size_t n)
{
    char  *line;

    if (r->out != LB_HTTP_OUT_CHUNKED) {
        lb_http_relay_queue(r, p, n);
        return;
    }
    line = r->lines[r->nlines++];
    lb_http_relay_queue(r, line, (size_t) snprintf(line, sizeof(r->lines[0]), "%zx\r\n", n));
    lb_http_relay_queue(r, p, n);
    lb_http_relay_queue(r, lb_http_crlf, 2);
}

static void
lb_http_relay_last_chunk(lb_http_relay_t *r)
{
    if (!r->last_chunk) {
        r->last_chunk = true;
        lb_http_relay_queue(r, lb_http_last_chunk, 3);
    }
}

/* The input of a length or close-delimited body is all there. */
static void
lb_http_relay_end(lb_http_relay_t *r)
{
    r->complete = true;
    if (r->out == LB_HTTP_OUT_CHUNKED) {
        lb_http_relay_last_chunk(r);
        lb_http_relay_queue(r, lb_http_crlf, 2);
    }
}

static int
lb_http_relay_error(lb_http_relay_t *r, int status, const char *why)
{
    r->error_status = status;
    r->error = why;
    return LB_ERROR;
}

int
lb_http_relay_fill(lb_http_relay_t *r, lb_buf_t *b)
{
    const char  *p, *data, *colon;
    size_t       avail, used, dlen;
    int          rc;

    /* room for the most one step queues: a chunk line, data and CRLF */
    while (!r->complete && r->niov + 3 <= LB_HTTP_RELAY_IOV && r->nlines < LB_HTTP_RELAY_LINES) {
        avail = lb_buf_len(b) - r->parsed;
        if (avail == 0) {
            break;
        }
        p = b->pos + r->parsed;

        if (r->in != LB_HTTP_BODY_CHUNKED) {
            used = r->in == LB_HTTP_BODY_LENGTH ? (size_t) lb_min((int64_t) avail, r->left)
                                                : avail;
            lb_http_relay_data(r, p, used);
            r->parsed += used;
            r->data += (int64_t) used;
            if (r->in == LB_HTTP_BODY_LENGTH) {
                r->left -= (int64_t) used;
                if (r->left == 0) {
                    lb_http_relay_end(r);
                }
            }
            continue;
        }

        if (r->data_left) {
            used = (size_t) lb_min((uint64_t) avail, r->data_left);
            lb_http_relay_data(r, p, used);
            r->parsed += used;
            r->data_left -= used;
            continue;
        }

        rc = lb_http_parse_chunked(&r->chunked, p, avail, &used, &data, &dlen);
        r->parsed += used;
        switch (rc) {
        case LB_OK:
            r->data += (int64_t) dlen;
            if (r->max >= 0 && r->data > r->max) {
                return lb_http_relay_error(r, 413, "chunked body larger than max_body_size");
            }
            lb_http_relay_data(r, data, dlen);
            break;
        case LB_HTTP_CHUNK_TRAILER:
            colon = memchr(data, ':', dlen);
            if (colon == NULL || lb_http_trailer_forbidden(data, (size_t) (colon - data))) {
                break;
            }
            if (r->out == LB_HTTP_OUT_CHUNKED) {
                lb_http_relay_last_chunk(r);
                lb_http_relay_queue(r, data, dlen);
                lb_http_relay_queue(r, lb_http_crlf, 2);
            } else if (r->out == LB_HTTP_OUT_DATA) {
                /* a view of its own, never merged with another */
                r->trailers |= 1u << r->niov;
                r->iov[r->niov].iov_base = (void *) data;
                r->iov[r->niov++].iov_len = dlen;
            }
            break;
        case LB_DONE:
            r->complete = true;
            if (r->out == LB_HTTP_OUT_CHUNKED) {
                lb_http_relay_last_chunk(r);
                lb_http_relay_queue(r, lb_http_crlf, 2);
            }
            break;
        case LB_AGAIN:
            if (used < avail && lb_buf_room(b) == 0 && b->pos + r->parsed == b->start) {
                return lb_http_relay_error(r, 400, "a trailer field line does not fit");
            }
            goto out;
        default:
            return lb_http_relay_error(r, 400, "invalid chunked body");
        }
    }

out:

    if (r->first == r->niov && r->parsed) {
        /* framing only, nothing to send: the input can go now */
        lb_buf_consume(b, r->parsed);
        r->parsed = 0;
        r->first = r->niov = r->nlines = 0;
        r->trailers = 0;
    }
    return LB_OK;
}

void
lb_http_relay_eof(lb_http_relay_t *r)
{
    if (r->in == LB_HTTP_BODY_CLOSE) {
        lb_http_relay_end(r);
    }
}

int
lb_http_relay_iov(const lb_http_relay_t *r, struct iovec *iov, int max)
{
    int  n = (int) (r->niov - r->first);

    n = lb_min(n, max);
    memcpy(iov, &r->iov[r->first], (size_t) n * sizeof(*iov));
    return n;
}

void
lb_http_relay_sent(lb_http_relay_t *r, lb_buf_t *b, size_t n)
{
    struct iovec  *v;

    r->sent += n;
    while (n && r->first < r->niov) {
        v = &r->iov[r->first];
        if (n < v->iov_len) {
            v->iov_base = (char *) v->iov_base + n;
            v->iov_len -= n;
            return;
        }
        n -= v->iov_len;
        r->first++;
    }
    if (r->first == r->niov) {
        lb_buf_consume(b, r->parsed);
        r->parsed = 0;
        r->first = r->niov = r->nlines = 0;
        r->trailers = 0;
    }
}

bool
lb_http_trailer_forbidden(const char *name, size_t len)
{
    static const char *const  names[] = {
        "content-length", "transfer-encoding", "host", "trailer", "connection",
        "keep-alive", "te", "upgrade", "proxy-connection", "expect", "max-forwards",
        "content-encoding", "content-type", "content-range", "authorization",
        "proxy-authorization", "proxy-authenticate", "www-authenticate",
        "cookie", "set-cookie", NULL
    };
    size_t  i;

    for (i = 0; names[i]; i++) {
        if (lb_http_name_eq(name, len, names[i], strlen(names[i]))) {
            return true;
        }
    }
    return false;
}
