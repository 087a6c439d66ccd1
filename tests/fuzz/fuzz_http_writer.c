/*
 * fuzz_http_writer.c: libFuzzer target for the HTTP/1 response writer
 * (lb_http_h1.c). The input chooses a response (status, HEAD, HTTP/1.0,
 * known or unknown length) and a body as a chain of links, some of them
 * trailer lines. It is written twice: once to an io that takes
 * everything, once to one that takes pseudo-random slices and often
 * says LB_AGAIN, the producer calling again with what it has left. Both
 * must give the same bytes; a body sent chunked must decode to exactly
 * the data; a known length must frame exactly the data.
 */
#include "fuzz.h"
#include "lb_http.h"
#include "lb_http_h1.h"

bool  lb_worker_quitting;

/* lb_http_request.c is not linked: the reasons the writer needs. */
const char *
lb_http_reason(int status)
{
    return status == 200 ? "OK" : "Other";
}

static char      wire[1 << 18];
static size_t    nwire;
static size_t    slice;
static uint32_t  seed;

static ssize_t
fuzz_sendv(lb_conn_t *c, const struct iovec *iov, int n)
{
    size_t  total = 0, take, max = slice;
    int     i;

    (void) c;
    if (max != SIZE_MAX) {
        seed = seed * 1103515245u + 12345u;
        if ((seed >> 16) % 3 == 0) {
            return LB_AGAIN;
        }
        max = (seed >> 8) % slice + 1;
    }
    for (i = 0; i < n && total < max; i++) {
        take = lb_min(iov[i].iov_len, max - total);
        fuzz_assert(nwire + take <= sizeof(wire));
        memcpy(wire + nwire, iov[i].iov_base, take);
        nwire += take;
        total += take;
    }
    return (ssize_t) total;
}

static const lb_io_t  fuzz_io = { NULL, NULL, fuzz_sendv, NULL, false, NULL };

#define FUZZ_LINKS  12

/* Writes the response; returns the writer's last result. */
static int
write_once(lb_http_request_t *r, const char *const *data, const size_t *len,
           const bool *trailer, size_t nlinks, size_t sl)
{
    static char    head[4096];
    lb_http_h1_t   w;
    lb_conn_t      c;
    lb_chain_t     cl[FUZZ_LINKS], *in;
    size_t         i, given = 0;
    int            rc, rounds = 0;

    memset(&c, 0, sizeof(c));
    c.io = &fuzz_io;
    memset(&w, 0, sizeof(w));
    w.c = &c;
    w.head = head;
    w.head_size = sizeof(head);
    nwire = 0;
    slice = sl;
    fuzz_assert(lb_http_h1_header(&w, r) == LB_OK);
    /* the producer hands its links over in two steps, as a proxy does
     * when more arrives */
    for ( ;; ) {
        for (i = 0; i < nlinks; i++) {
            lb_chain_link_set(&cl[i], data[i], len[i]);
            cl[i].trailer = trailer[i];
        }
        given = nlinks / 2;
        in = lb_chain_link_array(cl, given);
        do {
            fuzz_assert(++rounds < 100000);
            rc = lb_http_h1_body(&w, in, false);
        } while (rc == LB_AGAIN);
        if (rc == LB_ERROR) {
            return rc;
        }
        fuzz_assert(lb_chain_len(in) == 0);
        in = lb_chain_link_array(cl + given, nlinks - given);
        do {
            fuzz_assert(++rounds < 100000);
            rc = lb_http_h1_body(&w, in, true);
        } while (rc == LB_AGAIN);
        if (rc == LB_OK) {
            fuzz_assert(w.done && lb_chain_len(in) == 0 && w.sent == nwire);
        }
        return rc;
    }
}

int
LLVMFuzzerTestOneInput(const uint8_t *in, size_t size)
{
    static lb_http_request_t  r;
    static char               first[sizeof(wire)];
    const char               *data[FUZZ_LINKS];
    size_t                    len[FUZZ_LINKS], nlinks = 0, nfirst, total = 0, n;
    bool                      trailer[FUZZ_LINKS], seen_trailer = false;
    const uint8_t            *p = in + 4, *end = in + size;
    int                       rc1, rc2;
    const char               *body, *w;
    char                      decoded[1 << 16], expect[1 << 16];
    size_t                    ndec = 0;

    if (size < 4) {
        return 0;
    }
    memset(&r, 0, offsetof(lb_http_request_t, out));
    r.out.nfields = 0;
    r.out.status = in[0] % 4 == 0 ? 204 : in[0] % 4 == 1 ? 304 : 200;
    r.head_method = (in[1] & 1) != 0;
    r.http10 = (in[1] & 2) != 0;
    r.keep_alive = (in[1] & 4) != 0;
    seed = in[3];

    /* links: a length byte, then that many bytes; a set top bit makes a
     * trailer line (only after the data, as the relay gives them) */
    while (p < end && nlinks < FUZZ_LINKS) {
        n = *p & 0x3f;
        trailer[nlinks] = (*p & 0x80) != 0 || seen_trailer;
        seen_trailer = trailer[nlinks];
        p++;
        n = lb_min(n, (size_t) (end - p));
        if (trailer[nlinks] && n == 0) {
            break;                  /* the relay never gives an empty line */
        }
        data[nlinks] = (const char *) p;
        len[nlinks] = n;
        if (!trailer[nlinks]) {
            memcpy(expect + total, p, n);
            total += n;
        }
        p += n;
        nlinks++;
    }
    r.out.content_length = (in[2] & 1) ? (int64_t) total : -1;

    rc1 = write_once(&r, data, len, trailer, nlinks, SIZE_MAX);
    memcpy(first, wire, nwire);
    nfirst = nwire;
    rc2 = write_once(&r, data, len, trailer, nlinks, (size_t) in[2] % 13 + 1);
    fuzz_assert(rc1 == rc2);
    if (rc1 != LB_OK) {
        return 0;
    }
    fuzz_assert(nwire == nfirst && memcmp(first, wire, nwire) == 0);

    body = memmem(wire, nwire, "\r\n\r\n", 4);
    fuzz_assert(body != NULL);
    body += 4;
    n = (size_t) (wire + nwire - body);
    if (r.head_method || r.out.status != 200) {
        fuzz_assert(n == 0);
    } else if (r.out.content_length >= 0 || r.http10) {
        fuzz_assert(n == total && memcmp(body, expect, total) == 0);
    } else {
        /* chunked: every chunk line lbd's, the data whole, then the end */
        w = body;
        for ( ;; ) {
            size_t  csize = strtoul(w, NULL, 16);

            w = memchr(w, '\n', (size_t) (wire + nwire - w)) + 1;
            if (csize == 0) {
                break;
            }
            memcpy(decoded + ndec, w, csize);
            ndec += csize;
            w += csize;
            fuzz_assert(w[0] == '\r' && w[1] == '\n');
            w += 2;
        }
        fuzz_assert(ndec == total && memcmp(decoded, expect, total) == 0);
        fuzz_assert(wire + nwire - w >= 2 && memcmp(wire + nwire - 2, "\r\n", 2) == 0);
    }
    return 0;
}
