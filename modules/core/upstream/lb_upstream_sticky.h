/*
 * lb_upstream_sticky.h: the two building blocks of sticky sessions (SPEC
 * §3.2 `sticky`), free of any request or configuration.
 *
 * The cookie names a server, opaque and tamper-evident: 44 characters of
 * base64url (RFC 4648 §5, no padding) over 33 bytes:
 *
 *     [1] version (1)  [8] server id  [8] expiry, unix seconds  [16] MAC
 *
 * (integers big-endian); the MAC is HMAC-SHA256, cut to 16 bytes, over
 * the upstream's name, a NUL, and the first 17 bytes. The server id is a
 * hash of the server's address as written, so another lbd instance with
 * the same servers and the same secret reads the cookie; the name in the
 * MAC keeps a cookie of one upstream from naming a server of another.
 *
 * The source-address table lives in shared memory, used by every worker
 * at once and mapped at different addresses: no pointers, only indices.
 * Hash buckets chain entries (the hash keyed by a seed drawn when the
 * block is formatted: clients choose their addresses, and must not be able
 * to aim them all at one chain); a doubly linked list orders them by last
 * use; a full table gives up its least recently used entry. All under one
 * spin lock in the block.
 */
#ifndef LB_UPSTREAM_STICKY_H
#define LB_UPSTREAM_STICKY_H

#include "lb_core.h"

#define LB_STICKY_COOKIE_LEN  44
#define LB_STICKY_KEY_MAX     20        /* a table key: family + IPv6 address + spare */

typedef struct lb_sticky_key_s  lb_sticky_key_t;

/* A key for making and checking cookies, from a secret of any length;
 * NULL when out of memory. */
lb_sticky_key_t *lb_sticky_key_new(const void *secret, size_t len);
void             lb_sticky_key_free(lb_sticky_key_t *k);

/* The id of a server, from its address as written. */
uint64_t lb_sticky_server_id(const char *addr_text);

/* Writes the cookie value naming server_id of upstream, expiring at
 * `expires` (unix seconds), into out (LB_STICKY_COOKIE_LEN bytes, and a
 * NUL when there is room). Its length, or 0 when size is too small. */
size_t lb_sticky_cookie_make(const lb_sticky_key_t *k, const char *upstream,
                             uint64_t server_id, int64_t expires, char *out, size_t size);

/* Checks a cookie value a client sent: LB_OK with *server_id and
 * *expires when it is well formed, signed by k for this upstream and not
 * expired at now (unix seconds); LB_DECLINED with *why otherwise
 * ("malformed", "unknown version", "bad signature", "expired"). Any bytes
 * of any length are safe; the MAC is compared in constant time. */
int lb_sticky_cookie_check(const lb_sticky_key_t *k, const char *upstream, const char *value,
                           size_t len, int64_t now, uint64_t *server_id, int64_t *expires,
                           const char **why);

/* The table. lb_sticky_table_bytes: the size of a table of `entries`;
 * lb_sticky_table_init formats a zeroed block of that size, and leaves a
 * block it formatted before as it is (a reload keeps the entries). Keys
 * are up to LB_STICKY_KEY_MAX bytes; times are monotonic milliseconds,
 * the same clock in every process. */
size_t lb_sticky_table_bytes(size_t entries);
void   lb_sticky_table_init(void *mem, size_t entries);
/* LB_OK with *server_id when key is there and was used within ttl (the
 * use is recorded); LB_DECLINED otherwise (an expired entry goes). */
int    lb_sticky_table_get(void *mem, const void *key, size_t keylen, int64_t now,
                           int64_t ttl, uint64_t *server_id);
/* key -> server_id at now, replacing what was there; when the table is
 * full, its least recently used entry makes room. */
void   lb_sticky_table_put(void *mem, const void *key, size_t keylen, uint64_t server_id,
                           int64_t now);
size_t lb_sticky_table_count(void *mem);
/* Calls fn for every entry, least recently used first (so that putting
 * them in that order rebuilds the same order), under the table's lock:
 * fn must not use the table. */
void   lb_sticky_table_each(void *mem, void (*fn)(void *data, const void *key, size_t keylen,
                                                  uint64_t server_id, int64_t used),
                            void *data);

#endif
