/*
 * fuzz_http_chunked.c: libFuzzer target for lb_http_parse_chunked. The
 * input is decoded three ways, all at once, byte by byte and in pieces of
 * pseudo-random sizes, as a connection would see it: the three must give
 * the same result, the same bytes consumed and the same decoded data, and
 * the data can never be more than the input.
 */
#include "fuzz.h"

typedef struct {
    int      rc;
    size_t   consumed;
    size_t   out_len;
    char    *out;
} fuzz_result_t;

/* The size of the next piece to arrive: everything at once (step 0), one
 * byte (step 1), or 1..16 bytes from a small LCG seeded with the size. */
static size_t
fuzz_piece(int step, uint32_t *seed, size_t len)
{
    if (step == 0) {
        return len;
    }
    if (step == 1) {
        return 1;
    }
    *seed = *seed * 1103515245u + 12345u;
    return (*seed >> 16) % 16 + 1;
}

/* Decodes in[0..len) as it arrives piece by piece; unconsumed bytes stay
 * for the next call, as on a connection. */
static void
fuzz_dechunk(const char *in, size_t len, int step, fuzz_result_t *r)
{
    lb_http_chunked_t  c;
    const char        *data;
    size_t             off = 0, arrived, used, n;
    uint32_t           seed = (uint32_t) len * 2654435761u + 1;
    int                rc;

    memset(&c, 0, sizeof(c));
    r->out_len = 0;

    n = fuzz_piece(step, &seed, len);
    arrived = lb_min(n, len);

    for ( ;; ) {
        rc = lb_http_parse_chunked(&c, in + off, arrived - off, &used, &data, &n);
        fuzz_assert(used <= arrived - off);
        if (rc == LB_HTTP_CHUNK_TRAILER) {
            /* a whole field line, its CRLF consumed with it */
            fuzz_assert(data >= in + off && data + n + 2 == in + off + used);
            fuzz_assert(memchr(data, '\n', n) == NULL && memchr(data, ':', n) != NULL);
            off += used;
            continue;
        }
        if (n != 0) {
            fuzz_assert(rc == LB_OK);
            fuzz_assert(data >= in + off && data + n <= in + off + used);
            fuzz_assert(r->out_len + n <= len);
            memcpy(r->out + r->out_len, data, n);
            r->out_len += n;
        }
        off += used;
        if (rc == LB_OK) {
            fuzz_assert(n != 0);
            continue;
        }
        if (rc == LB_AGAIN) {
            /* all consumed, or a trailer line waiting for its end */
            fuzz_assert(off <= arrived && !c.done);
            if (arrived == len) {
                break;
            }
            n = fuzz_piece(step, &seed, len);
            arrived = lb_min(arrived + n, len);
            continue;
        }
        fuzz_assert(rc == LB_DONE || rc == LB_ERROR);
        fuzz_assert(c.done == (rc == LB_DONE));
        break;
    }

    fuzz_assert(c.ext_len <= LB_HTTP_CHUNK_EXT_MAX + 1);
    fuzz_assert(c.trailer_len <= LB_HTTP_TRAILER_MAX + 1);
    r->rc = rc;
    r->consumed = off;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_result_t  r[3];
    int            i;

    for (i = 0; i < 3; i++) {
        r[i].out = malloc(size + 1);
        fuzz_assert(r[i].out != NULL);
        fuzz_dechunk((const char *) data, size, i, &r[i]);
    }
    for (i = 1; i < 3; i++) {
        fuzz_assert(r[i].rc == r[0].rc);
        fuzz_assert(r[i].consumed == r[0].consumed);
        fuzz_assert(r[i].out_len == r[0].out_len);
        fuzz_assert(memcmp(r[i].out, r[0].out, r[0].out_len) == 0);
    }
    for (i = 0; i < 3; i++) {
        free(r[i].out);
    }
    return 0;
}
