/*
 * fuzz_tls_hello.c: libFuzzer target for lb_tls_hello_parse. Beyond what
 * the sanitizers catch it checks the contract: the answer for the whole
 * input is the same when the bytes come in two pieces cut anywhere (the
 * first byte of the input picks the cut) and when they come one by one;
 * a server name is never empty and lies inside the parser's buffer.
 */
#include "fuzz.h"
#include "lb_tls_hello.h"

static lb_tls_hello_t  a, b;

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    lb_str_t     sni, sni2;
    const char  *why, *why2;
    size_t       cut, n;
    int          rc, rc2;

    if (size == 0) {
        return 0;
    }
    cut = data[0] % size;
    data++;
    size--;

    lb_tls_hello_init(&a);
    rc = lb_tls_hello_parse(&a, data, size, &sni, &why);
    fuzz_assert(rc == LB_OK || rc == LB_DECLINED || rc == LB_AGAIN || rc == LB_ERROR);
    fuzz_assert(rc != LB_ERROR || (why != NULL && why[0] != '\0'));
    fuzz_assert(a.off <= size);
    if (rc == LB_OK) {
        fuzz_assert(sni.len > 0);
        fuzz_assert((uint8_t *) sni.data >= a.msg
                    && (uint8_t *) sni.data + sni.len <= a.msg + a.msg_len);
    } else {
        fuzz_assert(sni.len == 0 && sni.data == NULL);
    }

    /* in two pieces */
    lb_tls_hello_init(&b);
    rc2 = lb_tls_hello_parse(&b, data, lb_min(cut, size), &sni2, &why2);
    if (rc2 == LB_AGAIN) {
        rc2 = lb_tls_hello_parse(&b, data, size, &sni2, &why2);
    }
    fuzz_assert(rc2 == rc);
    fuzz_assert(rc != LB_OK || (sni2.len == sni.len && memcmp(sni2.data, sni.data, sni.len) == 0));

    /* one byte at a time, for short inputs */
    if (size <= 512) {
        lb_tls_hello_init(&b);
        rc2 = LB_AGAIN;
        for (n = 1; n <= size && rc2 == LB_AGAIN; n++) {
            rc2 = lb_tls_hello_parse(&b, data, n, &sni2, &why2);
        }
        fuzz_assert(rc2 == rc);
    }
    return 0;
}
