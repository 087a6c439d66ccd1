/*
 * fuzz_proxy_protocol.c: libFuzzer target for lb_proxy_parse. Beyond what
 * the sanitizers catch it checks the contract: a header never longer than
 * the input or the limits, a reason with every error, prefixes that never
 * disagree with the whole, well-formed TLVs, and that a parsed address
 * built again parses to the same address.
 */
#include "fuzz.h"
#include "lb_proxy_protocol.h"

static void
fuzz_check_header(const lb_proxy_header_t *h, const uint8_t *buf, size_t size)
{
    const uint8_t  *v;
    uint8_t         type, out[LB_PROXY_BUILD_MAX_LEN];
    size_t          off = 0, vlen, n;
    lb_proxy_header_t  again;
    const char     *why;

    fuzz_assert(h->len > 0 && h->len <= size && h->len <= LB_PROXY_MAX_LEN);
    fuzz_assert(h->version == 1 || h->version == 2);
    fuzz_assert(h->version == 2 || h->len <= LB_PROXY_V1_MAX_LEN);
    fuzz_assert(h->tlv == NULL || (h->tlv >= buf && h->tlv + h->tlv_len <= buf + h->len));
    while (lb_proxy_tlv_next(h, &off, &type, &v, &vlen)) {
        fuzz_assert(v >= h->tlv && v + vlen <= h->tlv + h->tlv_len);
    }
    fuzz_assert(off == h->tlv_len || h->tlv == NULL);
    if (h->local) {
        return;
    }
    fuzz_assert(h->src.ss_family == h->dst.ss_family);
    fuzz_assert(h->src.ss_family == AF_INET || h->src.ss_family == AF_INET6);
    n = lb_proxy_build(h->version, out, sizeof(out), (const struct sockaddr *) &h->src,
                       (const struct sockaddr *) &h->dst);
    fuzz_assert(n > 0);
    fuzz_assert(lb_proxy_parse(&again, out, n, &why) == LB_OK);
    fuzz_assert(again.len == n && !again.local);
    fuzz_assert(memcmp(&again.src, &h->src, h->addr_len) == 0);
    fuzz_assert(memcmp(&again.dst, &h->dst, h->addr_len) == 0);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    lb_proxy_header_t  h, p;
    const char        *why, *pwhy;
    int                rc, rc2;

    rc = lb_proxy_parse(&h, data, size, &why);
    switch (rc) {
    case LB_OK:
        fuzz_check_header(&h, data, size);
        /* the header alone parses the same; one byte less is incomplete */
        fuzz_assert(lb_proxy_parse(&p, data, h.len, &pwhy) == LB_OK && p.len == h.len);
        fuzz_assert(lb_proxy_parse(&p, data, h.len - 1, &pwhy) == LB_AGAIN);
        break;

    case LB_AGAIN:
        fuzz_assert(size < LB_PROXY_MAX_LEN);
        fuzz_assert(lb_proxy_parse(&p, data, size / 2, &pwhy) == LB_AGAIN);
        break;

    case LB_ERROR:
        fuzz_assert(why != NULL && why[0] != '\0');
        rc2 = lb_proxy_parse(&p, data, size / 2, &pwhy);
        fuzz_assert(rc2 == LB_AGAIN || (rc2 == LB_ERROR && strcmp(pwhy, why) == 0));
        break;

    default:
        fuzz_assert(0);
    }
    return 0;
}
