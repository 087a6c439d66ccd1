/*
 * lb_crypto.c: random bytes and HMAC-SHA256 for modules, on OpenSSL's
 * one-shot calls (no context to allocate per use).
 */
#include "lb_core.h"
#include "lb_crypto.h"

#include <limits.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

int
lb_random_bytes(void *buf, size_t n)
{
    unsigned char  *p = buf;
    int             k;

    while (n > 0) {
        k = (int) lb_min(n, (size_t) INT_MAX);
        if (RAND_bytes(p, k) != 1) {
            return LB_ERROR;
        }
        p += k;
        n -= (size_t) k;
    }
    return LB_OK;
}

int
lb_hmac_sha256(const void *key, size_t key_len, const void *msg, size_t msg_len,
               unsigned char out[LB_HMAC_SHA256_LEN])
{
    static const unsigned char  empty[1];
    unsigned int                len = LB_HMAC_SHA256_LEN;

    if (key_len > INT_MAX) {
        return LB_ERROR;
    }
    /* HMAC() takes a NULL key as "reuse the last one": never pass one */
    if (HMAC(EVP_sha256(), key_len ? key : empty, (int) key_len,
             msg_len ? msg : empty, msg_len, out, &len) == NULL || len != LB_HMAC_SHA256_LEN)
    {
        return LB_ERROR;
    }
    return LB_OK;
}
