/*
 * lb_crypto.h: the cryptography modules may use without OpenSSL: random
 * bytes, SHA-256 (content hashes) and HMAC-SHA256 (for keys derived from a
 * secret, signed cookies).
 * Part of the TLS seam (docs/modules.md): only core/lb_tls.c, core/lb_crypto.c
 * and the tls module include OpenSSL headers.
 */
#ifndef LB_CRYPTO_H
#define LB_CRYPTO_H

#define LB_HMAC_SHA256_LEN  32
#define LB_SHA256_LEN       32

/* Fills buf with n bytes from OpenSSL's CSPRNG. LB_OK, or LB_ERROR (with
 * the reason in lb_tls_error_text()) when it cannot; buf is then not to
 * be used. */
int lb_random_bytes(void *buf, size_t n);

/* SHA-256 (FIPS 180-4) of msg into out: a digest of content, such as the
 * hash a Content-Security-Policy names a script by. */
void lb_sha256(const void *msg, size_t len, unsigned char out[LB_SHA256_LEN]);

/* HMAC-SHA256 (RFC 2104) of msg under key into out. A key longer than the
 * block (64 bytes) is hashed first, as the RFC says. LB_OK or LB_ERROR. */
int lb_hmac_sha256(const void *key, size_t key_len, const void *msg, size_t msg_len,
                   unsigned char out[LB_HMAC_SHA256_LEN]);

/* A key made once for many HMAC-SHA256s of short messages (signed
 * cookies checked per request): the key's inner and outer hash states are
 * computed when it is made, so a signature costs no allocation and no key
 * schedule. NULL when out of memory. */
typedef struct lb_hmac_key_s  lb_hmac_key_t;

lb_hmac_key_t *lb_hmac_key_new(const void *key, size_t key_len);
void           lb_hmac_key_free(lb_hmac_key_t *k);
/* HMAC-SHA256 of the concatenation of a (alen bytes) and b (blen bytes). */
void           lb_hmac_key_sign(const lb_hmac_key_t *k, const void *a, size_t alen,
                                const void *b, size_t blen,
                                unsigned char out[LB_HMAC_SHA256_LEN]);

#endif
