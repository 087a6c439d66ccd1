/*
 * fuzz_http_relay.c: libFuzzer target for lb_http_relay (a chunked body
 * re-framed by lbd). The input is relayed chunked-to-chunked, arriving and
 * leaving in pseudo-random pieces; when the relay accepts it, its output
 * must decode to exactly the data of the input, carry no chunk extension
 * and no trailer field that may not travel in trailers, and end where
 * the relay said the body ended.
 */
#include "fuzz.h"
#include "lb_http_relay.h"

static char  fuzz_in[1 << 16];
static char  fuzz_out[1 << 18];

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    lb_http_relay_t    r, check;
    lb_buf_t           b, ob;
    struct iovec       iov[LB_HTTP_RELAY_IOV];
    uint32_t           seed = (uint32_t) size * 2654435761u + 7;
    size_t             arrived = 0, nout = 0, n, budget, i, take;
    const char        *d, *colon, *nl;
    size_t             used, dlen, ndata = 0;
    int                k, rc, rounds = 0;

    if (size > sizeof(fuzz_in) / 2) {
        return 0;
    }
    lb_buf_init(&b, fuzz_in, sizeof(fuzz_in));
    lb_http_relay_init(&r, LB_HTTP_BODY_CHUNKED, -1, LB_HTTP_OUT_CHUNKED, -1);

    while (!lb_http_relay_done(&r)) {
        fuzz_assert(++rounds < 1000000);
        if (arrived < size && !lb_http_relay_busy(&r)) {
            seed = seed * 1103515245u + 12345u;
            n = lb_min((seed >> 16) % 32 + 1, size - arrived);
            if (lb_buf_room(&b) < n) {
                lb_buf_compact(&b);
            }
            memcpy(b.last, data + arrived, n);
            b.last += n;
            arrived += n;
        }
        if (lb_http_relay_fill(&r, &b) != LB_OK) {
            return 0;                       /* refused: nothing to compare */
        }
        k = lb_http_relay_iov(&r, iov, LB_HTTP_RELAY_IOV);
        if (k == 0) {
            if (arrived == size && !lb_http_relay_done(&r)) {
                return 0;                   /* incomplete */
            }
            continue;
        }
        seed = seed * 1103515245u + 12345u;
        budget = (seed >> 16) % 64 + 1;
        n = 0;
        for (i = 0; i < (size_t) k && budget; i++) {
            take = lb_min(iov[i].iov_len, budget);
            fuzz_assert(nout + take <= sizeof(fuzz_out));
            memcpy(fuzz_out + nout, iov[i].iov_base, take);
            nout += take;
            n += take;
            budget -= take;
        }
        lb_http_relay_sent(&r, &b, n);
    }

    /* the output is a valid chunked body of the same data, whole */
    memset(&check, 0, sizeof(check));
    lb_buf_init(&ob, fuzz_out, nout);
    ob.last = fuzz_out + nout;
    for ( ;; ) {
        rc = lb_http_parse_chunked(&check.chunked, ob.pos, lb_buf_len(&ob), &used, &d, &dlen);
        if (rc == LB_OK) {
            ndata += dlen;
        } else if (rc == LB_HTTP_CHUNK_TRAILER) {
            colon = memchr(d, ':', dlen);
            fuzz_assert(colon != NULL);
            fuzz_assert(!lb_http_trailer_forbidden(d, (size_t) (colon - d)));
        }
        fuzz_assert(rc != LB_ERROR && rc != LB_AGAIN);
        lb_buf_consume(&ob, used);
        if (rc == LB_DONE) {
            break;
        }
    }
    fuzz_assert(lb_buf_len(&ob) == 0);
    fuzz_assert((int64_t) ndata == r.data);
    /* every chunk line is bare hex: no extension survives */
    for (d = fuzz_out; d < fuzz_out + nout && ndata; ) {
        nl = memchr(d, '\n', (size_t) (fuzz_out + nout - d));
        fuzz_assert(nl != NULL);
        for (colon = d; colon < nl - 1; colon++) {
            fuzz_assert((*colon >= '0' && *colon <= '9') || (*colon >= 'a' && *colon <= 'f'));
        }
        dlen = strtoul(d, NULL, 16);
        if (dlen == 0) {
            break;
        }
        d = nl + 1 + dlen + 2;
        ndata -= dlen;
    }
    return 0;
}
