/*
 * lb_upstream_sticky.c: signed sticky cookies and the shared
 * source-address table (lb_upstream_sticky.h).
 */
#include "lb_upstream_sticky.h"
#include "lb_upstream_maglev.h"
#include "lb_crypto.h"

#include <endian.h>

#define LB_STICKY_VERSION   1
#define LB_STICKY_RAW_LEN   33          /* version + id + expiry + MAC */
#define LB_STICKY_SIGNED    17          /* the bytes the MAC covers, after the name */
#define LB_STICKY_MAC_LEN   16

struct lb_sticky_key_s {
    lb_hmac_key_t  *hmac;
};

lb_sticky_key_t *
lb_sticky_key_new(const void *secret, size_t len)
{
    lb_sticky_key_t  *k = malloc(sizeof(*k));

    if (k == NULL) {
        return NULL;
    }
    k->hmac = lb_hmac_key_new(secret, len);
    if (k->hmac == NULL) {
        free(k);
        return NULL;
    }
    return k;
}

void
lb_sticky_key_free(lb_sticky_key_t *k)
{
    if (k) {
        lb_hmac_key_free(k->hmac);
        free(k);
    }
}

uint64_t
lb_sticky_server_id(const char *addr_text)
{
    return lb_maglev_hash(addr_text, strlen(addr_text));
}

static const char  lb_b64url[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/* 33 bytes are 11 groups of 3: 44 characters, no padding. */
static void
lb_sticky_encode(const uint8_t in[LB_STICKY_RAW_LEN], char *out)
{
    size_t    i;
    uint32_t  v;

    for (i = 0; i < LB_STICKY_RAW_LEN; i += 3) {
        v = (uint32_t) in[i] << 16 | (uint32_t) in[i + 1] << 8 | in[i + 2];
        *out++ = lb_b64url[v >> 18];
        *out++ = lb_b64url[(v >> 12) & 63];
        *out++ = lb_b64url[(v >> 6) & 63];
        *out++ = lb_b64url[v & 63];
    }
}

static int
lb_sticky_decode(const char *in, uint8_t out[LB_STICKY_RAW_LEN])
{
    size_t    i, j;
    uint32_t  v;
    int       d;
    char      c;

    for (i = 0; i < LB_STICKY_COOKIE_LEN; i += 4) {
        v = 0;
        for (j = 0; j < 4; j++) {
            c = in[i + j];
            d = c >= 'A' && c <= 'Z' ? c - 'A'
                : c >= 'a' && c <= 'z' ? c - 'a' + 26
                : c >= '0' && c <= '9' ? c - '0' + 52
                : c == '-' ? 62 : c == '_' ? 63 : -1;
            if (d < 0) {
                return LB_ERROR;
            }
            v = v << 6 | (uint32_t) d;
        }
        out[i / 4 * 3] = (uint8_t) (v >> 16);
        out[i / 4 * 3 + 1] = (uint8_t) (v >> 8);
        out[i / 4 * 3 + 2] = (uint8_t) v;
    }
    return LB_OK;
}

static void
lb_sticky_put64(uint8_t *p, uint64_t v)
{
    v = htobe64(v);
    memcpy(p, &v, 8);
}

static uint64_t
lb_sticky_get64(const uint8_t *p)
{
    uint64_t  v;

    memcpy(&v, p, 8);
    return be64toh(v);
}

/* The MAC of raw[0..17) for upstream: the name and its NUL first. */
static void
lb_sticky_mac(const lb_sticky_key_t *k, const char *upstream, const uint8_t *raw,
              uint8_t mac[LB_HMAC_SHA256_LEN])
{
    lb_hmac_key_sign(k->hmac, upstream, strlen(upstream) + 1, raw, LB_STICKY_SIGNED, mac);
}

size_t
lb_sticky_cookie_make(const lb_sticky_key_t *k, const char *upstream, uint64_t server_id,
                      int64_t expires, char *out, size_t size)
{
    uint8_t  raw[LB_STICKY_RAW_LEN], mac[LB_HMAC_SHA256_LEN];

    if (size < LB_STICKY_COOKIE_LEN) {
        return 0;
    }
    raw[0] = LB_STICKY_VERSION;
    lb_sticky_put64(raw + 1, server_id);
    lb_sticky_put64(raw + 9, (uint64_t) expires);
    lb_sticky_mac(k, upstream, raw, mac);
    memcpy(raw + LB_STICKY_SIGNED, mac, LB_STICKY_MAC_LEN);
    lb_sticky_encode(raw, out);
    if (size > LB_STICKY_COOKIE_LEN) {
        out[LB_STICKY_COOKIE_LEN] = '\0';
    }
    return LB_STICKY_COOKIE_LEN;
}

int
lb_sticky_cookie_check(const lb_sticky_key_t *k, const char *upstream, const char *value,
                       size_t len, int64_t now, uint64_t *server_id, int64_t *expires,
                       const char **why)
{
    uint8_t   raw[LB_STICKY_RAW_LEN], mac[LB_HMAC_SHA256_LEN], diff = 0;
    size_t    i;

    if (len != LB_STICKY_COOKIE_LEN || lb_sticky_decode(value, raw) != LB_OK) {
        *why = "malformed";
        return LB_DECLINED;
    }
    if (raw[0] != LB_STICKY_VERSION) {
        *why = "unknown version";
        return LB_DECLINED;
    }
    lb_sticky_mac(k, upstream, raw, mac);
    for (i = 0; i < LB_STICKY_MAC_LEN; i++) {
        diff |= (uint8_t) (mac[i] ^ raw[LB_STICKY_SIGNED + i]);     /* constant time */
    }
    if (diff) {
        *why = "bad signature";
        return LB_DECLINED;
    }
    *expires = (int64_t) lb_sticky_get64(raw + 9);
    if (*expires <= now) {
        *why = "expired";
        return LB_DECLINED;
    }
    *server_id = lb_sticky_get64(raw + 1);
    return LB_OK;
}

/* The source-address table --------------------------------------------- */

#define LB_STICKY_MAGIC  0x6c62737469636b31ULL     /* "lbstick1" */

typedef struct {
    uint32_t   next;            /* hash chain or free list: index + 1, 0 ends */
    uint32_t   newer;           /* LRU list: index + 1 */
    uint32_t   older;
    uint32_t   bucket;
    int64_t    used;
    uint64_t   server_id;
    uint8_t    keylen;
    uint8_t    key[LB_STICKY_KEY_MAX];
} lb_sticky_entry_t;

typedef struct {
    uint64_t        magic;
    uint64_t        entries;
    uint64_t        nbuckets;   /* a power of two */
    uint64_t        seed;       /* of the bucket hash: clients choose their addresses */
    lb_shm_lock_t   lock;
    uint32_t        count;
    uint32_t        free;       /* deleted entries: index + 1 */
    uint32_t        fresh;      /* entries [fresh, entries) were never used */
    uint32_t        newest;     /* LRU list ends: index + 1 */
    uint32_t        oldest;
} lb_sticky_table_t;

static size_t
lb_sticky_nbuckets(size_t entries)
{
    size_t  n = 16;

    while (n < entries) {
        n *= 2;
    }
    return n;
}

#define lb_sticky_buckets(t)  ((uint32_t *) ((t) + 1))
#define lb_sticky_entry(t, i)                                                 \
    (&((lb_sticky_entry_t *) (lb_sticky_buckets(t) + (t)->nbuckets))[(i) - 1])

size_t
lb_sticky_table_bytes(size_t entries)
{
    return sizeof(lb_sticky_table_t) + lb_sticky_nbuckets(entries) * sizeof(uint32_t)
           + entries * sizeof(lb_sticky_entry_t);
}

void
lb_sticky_table_init(void *mem, size_t entries)
{
    lb_sticky_table_t  *t = mem;

    if (t->magic == LB_STICKY_MAGIC && t->entries == entries) {
        return;
    }
    memset(t, 0, lb_sticky_table_bytes(entries));
    t->entries = entries;
    t->nbuckets = lb_sticky_nbuckets(entries);
    if (lb_random_bytes(&t->seed, sizeof(t->seed)) != LB_OK) {
        t->seed = (uint64_t) time(NULL) ^ (uint64_t) getpid() << 32;
    }
    t->fresh = 1;
    t->magic = LB_STICKY_MAGIC;
}

static uint32_t
lb_sticky_bucket(const lb_sticky_table_t *t, const void *key, size_t keylen)
{
    return (uint32_t) (lb_maglev_hash_seeded(t->seed, key, keylen) & (t->nbuckets - 1));
}

/* The entry of key (index + 1), or 0; *link then points at what refers to it. */
static uint32_t
lb_sticky_find(lb_sticky_table_t *t, const void *key, size_t keylen, uint32_t **link)
{
    uint32_t           *l = &lb_sticky_buckets(t)[lb_sticky_bucket(t, key, keylen)];
    lb_sticky_entry_t  *e;

    while (*l) {
        e = lb_sticky_entry(t, *l);
        if (e->keylen == keylen && memcmp(e->key, key, keylen) == 0) {
            *link = l;
            return *l;
        }
        l = &e->next;
    }
    *link = l;
    return 0;
}

static void
lb_sticky_lru_unlink(lb_sticky_table_t *t, uint32_t i)
{
    lb_sticky_entry_t  *e = lb_sticky_entry(t, i);

    if (e->newer) {
        lb_sticky_entry(t, e->newer)->older = e->older;
    } else {
        t->newest = e->older;
    }
    if (e->older) {
        lb_sticky_entry(t, e->older)->newer = e->newer;
    } else {
        t->oldest = e->newer;
    }
    e->newer = e->older = 0;
}

static void
lb_sticky_lru_push(lb_sticky_table_t *t, uint32_t i)
{
    lb_sticky_entry_t  *e = lb_sticky_entry(t, i);

    e->older = t->newest;
    e->newer = 0;
    if (t->newest) {
        lb_sticky_entry(t, t->newest)->newer = i;
    } else {
        t->oldest = i;
    }
    t->newest = i;
}

/* Unlinks entry i, found through link, and frees it. */
static void
lb_sticky_remove(lb_sticky_table_t *t, uint32_t *link, uint32_t i)
{
    lb_sticky_entry_t  *e = lb_sticky_entry(t, i);

    *link = e->next;
    lb_sticky_lru_unlink(t, i);
    e->next = t->free;
    t->free = i;
    t->count--;
}

/* Removes the least recently used entry (its chain found from its key). */
static void
lb_sticky_evict(lb_sticky_table_t *t)
{
    lb_sticky_entry_t  *e = lb_sticky_entry(t, t->oldest);
    uint32_t           *link, i;

    i = lb_sticky_find(t, e->key, e->keylen, &link);
    if (i) {
        lb_sticky_remove(t, link, i);
    }
}

int
lb_sticky_table_get(void *mem, const void *key, size_t keylen, int64_t now, int64_t ttl,
                    uint64_t *server_id)
{
    lb_sticky_table_t  *t = mem;
    lb_sticky_entry_t  *e;
    uint32_t           *link, i;
    int                 rc = LB_DECLINED;

    if (keylen > LB_STICKY_KEY_MAX) {
        return LB_DECLINED;
    }
    lb_shm_lock(&t->lock);
    i = lb_sticky_find(t, key, keylen, &link);
    if (i) {
        e = lb_sticky_entry(t, i);
        if (now - e->used > ttl) {
            lb_sticky_remove(t, link, i);
        } else {
            e->used = now;
            lb_sticky_lru_unlink(t, i);
            lb_sticky_lru_push(t, i);
            *server_id = e->server_id;
            rc = LB_OK;
        }
    }
    lb_shm_unlock(&t->lock);
    return rc;
}

void
lb_sticky_table_put(void *mem, const void *key, size_t keylen, uint64_t server_id,
                    int64_t now)
{
    lb_sticky_table_t  *t = mem;
    lb_sticky_entry_t  *e;
    uint32_t           *link, i;

    if (keylen > LB_STICKY_KEY_MAX || t->entries == 0) {
        return;
    }
    lb_shm_lock(&t->lock);
    i = lb_sticky_find(t, key, keylen, &link);
    if (i) {
        lb_sticky_lru_unlink(t, i);
    } else {
        if (t->count == t->entries) {
            lb_sticky_evict(t);
            /* the eviction may have changed the chain key hangs on */
            lb_sticky_find(t, key, keylen, &link);
        }
        if (t->free) {
            i = t->free;
            t->free = lb_sticky_entry(t, i)->next;
        } else {
            i = t->fresh++;
        }
        e = lb_sticky_entry(t, i);
        memset(e, 0, sizeof(*e));
        memcpy(e->key, key, keylen);
        e->keylen = (uint8_t) keylen;
        *link = i;              /* at the end of its chain */
        t->count++;
    }
    e = lb_sticky_entry(t, i);
    e->server_id = server_id;
    e->used = now;
    lb_sticky_lru_push(t, i);
    lb_shm_unlock(&t->lock);
}

size_t
lb_sticky_table_count(void *mem)
{
    return ((lb_sticky_table_t *) mem)->count;
}

void
lb_sticky_table_each(void *mem, void (*fn)(void *data, const void *key, size_t keylen,
                                           uint64_t server_id, int64_t used), void *data)
{
    lb_sticky_table_t  *t = mem;
    lb_sticky_entry_t  *e;
    uint32_t            i;
    size_t              n = 0;

    lb_shm_lock(&t->lock);
    /* bounded by the count too: a table is shared with workers that may
     * have died holding it half-written */
    for (i = t->oldest; i && n < t->count; i = e->newer, n++) {
        e = lb_sticky_entry(t, i);
        fn(data, e->key, e->keylen, e->server_id, e->used);
    }
    lb_shm_unlock(&t->lock);
}
