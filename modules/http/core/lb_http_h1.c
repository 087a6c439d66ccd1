/*
 * lb_http_h1.c: the HTTP/1.1 response writer (see lb_http_h1.h).
 */
#include "lb_core.h"
#include "lb_http.h"
#include "lb_http_h1.h"

/* One step of a send: a range of bytes and what sending it means. A send
 * is planned as a list of steps over the head, framing lbd writes and the
 * chain's links; after the send, the steps are walked in order and each
 * one the bytes reached takes effect, so a short send changes exactly the
 * state of what went out. */
typedef enum {
    LB_H1_HEAD = 0,
    LB_H1_PEND,         /* framing a short send left over */
    LB_H1_FRAME,        /* framing planned now, with its effect */
    LB_H1_DATA,         /* bytes of a link */
    LB_H1_SKIP,         /* a link dropped (trailers without chunked; no body) */
} lb_h1_step_type_t;

typedef struct {
    lb_h1_step_type_t   type;
    const char         *data;
    size_t              len;
    lb_chain_t         *cl;
    /* FRAME: the state once it is out */
    uint64_t            chunk_left;
    unsigned            chunk_open:1;
    unsigned            last_chunk:1;
    unsigned            done:1;
} lb_h1_step_t;

#define LB_H1_STEPS   48
#define LB_H1_FRAME_MAX  24        /* "\r\n" + a chunk line, or the last chunk */

/* n in decimal into buf (20 bytes at least); returns the length. By
 * hand: a printf per response head is a measurable part of a request. */
static size_t
lb_h1_uint(char *buf, uint64_t n)
{
    char    tmp[20];
    size_t  len = 0, i;

    do {
        tmp[len++] = (char) ('0' + n % 10);
        n /= 10;
    } while (n);
    for (i = 0; i < len; i++) {
        buf[i] = tmp[len - 1 - i];
    }
    return len;
}

static size_t
lb_h1_put(char *p, size_t room, const char *s, size_t n)
{
    if (n > room) {
        return SIZE_MAX;
    }
    memcpy(p, s, n);
    return n;
}

/* "Content-Length: N\r\n" at p; returns the end. */
static char *
lb_h1_length(char *p, const char *num, size_t nlen)
{
    memcpy(p, "Content-Length: ", 16);
    memcpy(p + 16, num, nlen);
    p += 16 + nlen;
    *p++ = '\r';
    *p++ = '\n';
    return p;
}

int
lb_http_h1_header(lb_http_h1_t *w, lb_http_request_t *r)
{
    lb_http_headers_out_t  *o = &r->out;
    const lb_http_header_t *f;
    int                     st = o->status;
    bool                    no_body, write_length, length_done = false;
    char                   *p = w->head, *end = w->head + w->head_size;
    char                    num[24];
    size_t                  i, n, nlen, rlen;
    const char             *reason;

    memset(&w->head_len, 0, sizeof(*w) - offsetof(lb_http_h1_t, head_len));
    no_body = st < 200 || st == 204 || st == 304 || r->head_method;
    if (lb_worker_quitting) {
        r->keep_alive = 0;
    }
    write_length = false;
    if (o->upgrade) {
        w->no_body = 1;
    } else if (no_body) {
        w->no_body = 1;
        /* HEAD and 304 may tell the representation's length; it frames
         * nothing here */
        write_length = o->content_length >= 0 && st >= 200 && st != 204;
    } else if (o->content_length >= 0) {
        w->length = 1;
        w->body_left = o->content_length;
        write_length = true;
    } else if (!r->http10) {
        w->chunked = 1;
    } else {
        r->keep_alive = 0;          /* delimited by the end of the connection */
    }
    nlen = write_length ? lb_h1_uint(num, (uint64_t) o->content_length) : 0;

    /* "HTTP/1.1 200 OK\r\n": the status is 100..599 (the parser and the
     * configuration see to it) */
    if (o->reason.len) {
        reason = o->reason.data;
        rlen = lb_min(o->reason.len, 512);
    } else {
        reason = lb_http_reason(st);
        rlen = strlen(reason);
    }
    if ((size_t) (end - p) < 9 + 4 + rlen + 2 || st < 100 || st > 999) {
        return LB_ERROR;
    }
    memcpy(p, "HTTP/1.1 ", 9);
    p[9] = (char) ('0' + st / 100);
    p[10] = (char) ('0' + st / 10 % 10);
    p[11] = (char) ('0' + st % 10);
    p[12] = ' ';
    memcpy(p + 13, reason, rlen);
    p += 13 + rlen;
    *p++ = '\r';
    *p++ = '\n';
    for (i = 0; i < o->nfields; i++) {
        f = &o->fields[i];
        if (lb_http_name_eq(f->name.data, f->name.len, "content-length", 14)) {
            /* where a producer put it, with the length the writer frames */
            if (!write_length || length_done) {
                continue;
            }
            length_done = true;
            if ((size_t) (end - p) < 18 + nlen) {
                return LB_ERROR;
            }
            p = lb_h1_length(p, num, nlen);
            continue;
        }
        if (lb_http_name_eq(f->name.data, f->name.len, "transfer-encoding", 17)
            || lb_http_name_eq(f->name.data, f->name.len, "connection", 10)
            || lb_http_name_eq(f->name.data, f->name.len, "keep-alive", 10))
        {
            continue;               /* the writer's own */
        }
        if ((size_t) (end - p) < f->name.len + f->value.len + 4) {
            return LB_ERROR;
        }
        memcpy(p, f->name.data, f->name.len);
        p += f->name.len;
        *p++ = ':';
        *p++ = ' ';
        memcpy(p, f->value.data, f->value.len);
        p += f->value.len;
        *p++ = '\r';
        *p++ = '\n';
    }
    if (write_length && !length_done) {
        if ((size_t) (end - p) < 18 + nlen) {
            return LB_ERROR;
        }
        p = lb_h1_length(p, num, nlen);
    }
    if (w->chunked) {
        n = lb_h1_put(p, (size_t) (end - p), "Transfer-Encoding: chunked\r\n", 28);
        if (n == SIZE_MAX) {
            return LB_ERROR;
        }
        p += n;
    }
    n = o->upgrade ? lb_h1_put(p, (size_t) (end - p), "Connection: upgrade\r\n\r\n", 23)
        : !r->keep_alive ? lb_h1_put(p, (size_t) (end - p), "Connection: close\r\n\r\n", 21)
        : r->http10 ? lb_h1_put(p, (size_t) (end - p), "Connection: keep-alive\r\n\r\n", 26)
        : lb_h1_put(p, (size_t) (end - p), "\r\n", 2);
    if (n == SIZE_MAX) {
        return LB_ERROR;
    }
    p += n;
    w->head_len = (size_t) (p - w->head);
    return LB_OK;
}

/* Plans the next send into steps[] (and the framing it writes into
 * frames); returns the number of steps, or -1 with w->error. */
static int
lb_h1_plan(lb_http_h1_t *w, lb_chain_t *in, bool last, lb_h1_step_t *s,
           char frames[][LB_H1_FRAME_MAX], bool *all)
{
    uint64_t      chunk_left = w->chunk_left;
    int64_t       body_left = w->body_left;
    bool          open = w->chunk_open, lastc = w->last_chunk;
    int           ns = 0, nf = 0;
    lb_chain_t   *cl;
    const char   *p;
    size_t        len, take;
    char         *fr;

#define LB_H1_FRAME_STEP(text, n) do {                                       \
        s[ns].type = LB_H1_FRAME; s[ns].data = (text); s[ns].len = (n);     \
        s[ns].cl = NULL; s[ns].chunk_left = chunk_left;                     \
        s[ns].chunk_open = open; s[ns].last_chunk = lastc; s[ns].done = 0;  \
        ns++;                                                               \
    } while (0)

    *all = false;
    if (w->head_sent < w->head_len) {
        s[ns].type = LB_H1_HEAD;
        s[ns].data = w->head + w->head_sent;
        s[ns++].len = w->head_len - w->head_sent;
    }
    if (w->pend_sent < w->pend_len) {
        s[ns].type = LB_H1_PEND;
        s[ns].data = w->pend + w->pend_sent;
        s[ns++].len = w->pend_len - w->pend_sent;
    }
    for (cl = in; cl; cl = cl->next) {
        p = cl->pos;
        while (p < cl->last) {
            if (ns + 4 > LB_H1_STEPS) {
                return ns;
            }
            len = (size_t) (cl->last - p);
            if (w->no_body || (cl->trailer && !w->chunked)) {
                s[ns].type = LB_H1_SKIP;
                s[ns].cl = cl;
                s[ns].data = NULL;
                s[ns++].len = 0;
                break;
            }
            if (cl->trailer) {
                /* the last chunk before the first trailer line, and the
                 * CRLF a line or a chunk still owes */
                fr = frames[nf++];
                take = (size_t) snprintf(fr, LB_H1_FRAME_MAX, "%s%s", open ? "\r\n" : "",
                                         lastc ? "" : "0\r\n");
                open = false;
                lastc = true;
                chunk_left = 0;
                if (take) {
                    LB_H1_FRAME_STEP(fr, take);
                }
                s[ns].type = LB_H1_DATA;
                s[ns].cl = cl;
                s[ns].data = p;
                s[ns++].len = len;
                open = true;
                break;
            }
            if (w->length) {
                if ((int64_t) len > body_left) {
                    w->error = "the body is longer than its Content-Length";
                    return -1;
                }
                body_left -= (int64_t) len;
                take = len;
            } else if (w->chunked) {
                if (lastc) {
                    w->error = "body data after the trailers";
                    return -1;
                }
                if (chunk_left == 0) {
                    fr = frames[nf++];
                    take = (size_t) snprintf(fr, LB_H1_FRAME_MAX, "%s%zx\r\n",
                                             open ? "\r\n" : "", len);
                    open = true;
                    chunk_left = len;
                    LB_H1_FRAME_STEP(fr, take);
                }
                take = (size_t) lb_min((uint64_t) len, chunk_left);
                chunk_left -= take;
            } else {
                take = len;
            }
            s[ns].type = LB_H1_DATA;
            s[ns].cl = cl;
            s[ns].data = p;
            s[ns++].len = take;
            p += take;
        }
    }
    *all = true;
    if (last && !w->done) {
        if (w->chunked && !w->no_body) {
            fr = frames[nf++];
            take = (size_t) snprintf(fr, LB_H1_FRAME_MAX, "%s%s\r\n", open ? "\r\n" : "",
                                     lastc ? "" : "0\r\n");
            open = false;
            lastc = true;
            LB_H1_FRAME_STEP(fr, take);
        } else {
            if (w->length && body_left != 0 && !w->no_body) {
                w->error = "the body is shorter than its Content-Length";
                return -1;
            }
            LB_H1_FRAME_STEP("", 0);
        }
        s[ns - 1].done = 1;
    }
#undef LB_H1_FRAME_STEP
    return ns;
}

/* The steps that n sent bytes reached take effect. */
static void
lb_h1_commit(lb_http_h1_t *w, lb_h1_step_t *s, int ns, size_t n)
{
    size_t  take;
    int     i;

    for (i = 0; i < ns; i++) {
        take = lb_min(n, s[i].len);
        n -= take;
        if (s[i].len && take == 0) {
            return;
        }
        switch (s[i].type) {
        case LB_H1_HEAD:
            w->head_sent += take;
            break;
        case LB_H1_PEND:
            w->pend_sent += take;
            break;
        case LB_H1_FRAME:
            w->chunk_left = s[i].chunk_left;
            w->chunk_open = s[i].chunk_open;
            w->last_chunk = s[i].last_chunk;
            w->done |= s[i].done;
            if (take < s[i].len) {
                w->pend_len = s[i].len - take;
                w->pend_sent = 0;
                memcpy(w->pend, s[i].data + take, w->pend_len);
                return;
            }
            break;
        case LB_H1_DATA:
            s[i].cl->pos += take;
            if (s[i].cl->trailer) {
                w->chunk_open |= take == s[i].len;  /* the line's CRLF is due */
            } else if (w->chunked) {
                w->chunk_left -= take;
            } else if (w->length) {
                w->body_left -= (int64_t) take;
            }
            break;
        case LB_H1_SKIP:
            s[i].cl->pos = s[i].cl->last;
            break;
        }
        if (take < s[i].len) {
            return;
        }
    }
}

int
lb_http_h1_body(lb_http_h1_t *w, lb_chain_t *in, bool last)
{
    lb_h1_step_t   steps[LB_H1_STEPS];
    char           frames[LB_H1_STEPS][LB_H1_FRAME_MAX];
    struct iovec   iov[LB_H1_STEPS];
    size_t         total;
    ssize_t        n;
    bool           all;
    int            ns, k, i;

    if (w->hold) {
        return LB_AGAIN;
    }
    for ( ;; ) {
        ns = lb_h1_plan(w, in, last, steps, frames, &all);
        if (ns < 0) {
            return LB_ERROR;
        }
        for (i = 0, k = 0, total = 0; i < ns; i++) {
            if (steps[i].len) {
                iov[k].iov_base = (void *) steps[i].data;
                iov[k++].iov_len = steps[i].len;
                total += steps[i].len;
            }
        }
        if (total == 0) {
            lb_h1_commit(w, steps, ns, 0);
            if (all) {
                return LB_OK;
            }
            continue;
        }
        n = w->c->io->sendv(w->c, iov, k);
        if (n == LB_AGAIN) {
            return LB_AGAIN;
        }
        if (n < 0) {
            w->error = "cannot send the response";
            return LB_ERROR;
        }
        w->sent += (uint64_t) n;
        lb_h1_commit(w, steps, ns, (size_t) n);
        if ((size_t) n < total) {
            continue;                   /* the next sendv says whether it is full */
        }
        if (all) {
            return LB_OK;
        }
    }
}
