/*
 * lb_crypto.c: random bytes, SHA-256 and HMAC-SHA256 for modules, on
 * OpenSSL's one-shot calls (no context to allocate per use).
 */
/* The low-level SHA-256 calls are deprecated in OpenSSL 3 in favour of
 * EVP, whose context copies allocate: a per-request HMAC (sticky cookies)
 * uses the plain structs, where a copy is a memcpy. */
#define OPENSSL_SUPPRESS_DEPRECATED 1

#include "lb_core.h"
#include "lb_crypto.h"

#include <limits.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

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

void
lb_sha256(const void *msg, size_t len, unsigned char out[LB_SHA256_LEN])
{
    static const unsigned char  empty[1];

    SHA256(len ? msg : empty, len, out);
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

struct lb_hmac_key_s {
    SHA256_CTX  inner;          /* after the key ^ ipad block */
    SHA256_CTX  outer;          /* after the key ^ opad block */
};

lb_hmac_key_t *
lb_hmac_key_new(const void *key, size_t key_len)
{
    unsigned char   block[SHA256_CBLOCK], pad[SHA256_CBLOCK];
    lb_hmac_key_t  *k = malloc(sizeof(*k));
    size_t          i;

    if (k == NULL) {
        return NULL;
    }
    memset(block, 0, sizeof(block));
    if (key_len > sizeof(block)) {
        SHA256(key, key_len, block);            /* RFC 2104: a long key is hashed */
    } else if (key_len) {
        memcpy(block, key, key_len);
    }
    for (i = 0; i < sizeof(block); i++) {
        pad[i] = block[i] ^ 0x36;
    }
    SHA256_Init(&k->inner);
    SHA256_Update(&k->inner, pad, sizeof(pad));
    for (i = 0; i < sizeof(block); i++) {
        pad[i] = block[i] ^ 0x5c;
    }
    SHA256_Init(&k->outer);
    SHA256_Update(&k->outer, pad, sizeof(pad));
    OPENSSL_cleanse(block, sizeof(block));
    OPENSSL_cleanse(pad, sizeof(pad));
    return k;
}

void
lb_hmac_key_free(lb_hmac_key_t *k)
{
    if (k) {
        OPENSSL_cleanse(k, sizeof(*k));
        free(k);
    }
}

void
lb_hmac_key_sign(const lb_hmac_key_t *k, const void *a, size_t alen, const void *b,
                 size_t blen, unsigned char out[LB_HMAC_SHA256_LEN])
{
    SHA256_CTX     c = k->inner;
    unsigned char  inner[SHA256_DIGEST_LENGTH];

    SHA256_Update(&c, a, alen);
    SHA256_Update(&c, b, blen);
    SHA256_Final(inner, &c);
    c = k->outer;
    SHA256_Update(&c, inner, sizeof(inner));
    SHA256_Final(out, &c);
}
