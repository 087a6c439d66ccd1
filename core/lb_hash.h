/*
 * lb_hash.h: the 64-bit hashing shared by lbd's tables: FNV-1a over the
 * bytes, then a finaliser (MurmurHash3's fmix64) that spreads every input
 * bit over the whole word, since tables take the low bits or a remainder.
 * Not a keyed hash by itself: a table whose keys a client chooses starts
 * FNV from a secret seed.
 */
#ifndef LB_HASH_H
#define LB_HASH_H

#define LB_HASH_FNV_BASIS  14695981039346656037ULL

static inline uint64_t
lb_hash_mix64(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ULL;
    x ^= x >> 33;
    return x;
}

static inline uint64_t
lb_hash_fnv64(uint64_t h, const void *data, size_t len)
{
    const unsigned char  *p = data;

    while (len--) {
        h = (h ^ *p++) * 1099511628211ULL;
    }
    return h;
}

#endif
