/*
 * lb_ipcount.c: connections per client address (lb_ipcount.h). An open-
 * addressed table with linear probing in shared memory, under one spin
 * lock; an entry whose count falls to zero is removed by shifting the
 * entries after it back, so probes never cross tombstones. It takes new
 * keys up to three quarters full, so probes stay short.
 */
#include "lb_core.h"
#include "lb_hash.h"
#include "lb_ipcount.h"

typedef struct {
    uint64_t   key;             /* 0: empty */
    uint32_t   count;
    uint32_t   pad;
} lb_ipcount_entry_t;

struct lb_ipcount_s {
    lb_shm_lock_t  lock;
    uint32_t       mask;
    uint32_t       used;
    uint64_t       seed;
};

lb_ipcount_t  *lb_ipcount;

static lb_ipcount_entry_t *
lb_ipcount_entries(lb_ipcount_t *t)
{
    return (lb_ipcount_entry_t *) (t + 1);
}

size_t
lb_ipcount_bytes(size_t entries)
{
    return sizeof(lb_ipcount_t) + entries * sizeof(lb_ipcount_entry_t);
}

lb_ipcount_t *
lb_ipcount_init(void *mem, size_t entries, uint64_t seed)
{
    lb_ipcount_t  *t = mem;

    if (entries == 0 || (entries & (entries - 1)) != 0) {
        return NULL;
    }
    memset(t, 0, lb_ipcount_bytes(entries));
    t->mask = (uint32_t) (entries - 1);
    t->seed = seed;
    return t;
}

uint64_t
lb_ipcount_key(const lb_ipcount_t *t, uint64_t listener_key, const struct sockaddr *sa,
               int ipv6_prefix)
{
    uint8_t   a6[16];
    uint64_t  h = lb_hash_fnv64(t->seed, &listener_key, sizeof(listener_key));
    int       i, bits;

    if (sa->sa_family == AF_INET6) {
        memcpy(a6, &((const struct sockaddr_in6 *) sa)->sin6_addr, 16);
        for (i = 0, bits = ipv6_prefix; i < 16; i++, bits -= 8) {
            a6[i] &= bits >= 8 ? 0xff : bits <= 0 ? 0 : (uint8_t) (0xff << (8 - bits));
        }
        h = lb_hash_fnv64(h, a6, sizeof(a6));
    } else if (sa->sa_family == AF_INET) {
        h = lb_hash_fnv64(h, &((const struct sockaddr_in *) sa)->sin_addr, 4);
    } else {
        h = lb_hash_fnv64(h, "unix", 4);    /* every local client is one */
    }
    h = lb_hash_mix64(h);
    return h ? h : 1;
}

/* The slot of key, or of the empty slot where it would go. */
static uint32_t
lb_ipcount_find(lb_ipcount_t *t, uint64_t key)
{
    lb_ipcount_entry_t  *e = lb_ipcount_entries(t);
    uint32_t             i = (uint32_t) key & t->mask;

    while (e[i].key != 0 && e[i].key != key) {
        i = (i + 1) & t->mask;
    }
    return i;
}

lb_ipcount_verdict_t
lb_ipcount_take(lb_ipcount_t *t, uint64_t key, uint32_t max)
{
    lb_ipcount_entry_t    *e = lb_ipcount_entries(t);
    lb_ipcount_verdict_t   v = LB_IPCOUNT_OK;
    uint32_t               i;

    lb_shm_lock(&t->lock);
    i = lb_ipcount_find(t, key);
    if (e[i].key == key) {
        if (e[i].count >= max) {
            v = LB_IPCOUNT_OVER;
        } else {
            e[i].count++;
        }
    } else if (max == 0) {
        v = LB_IPCOUNT_OVER;
    } else if (t->used >= (t->mask + 1) / 4 * 3) {
        v = LB_IPCOUNT_FULL;
    } else {
        e[i].key = key;
        e[i].count = 1;
        t->used++;
    }
    lb_shm_unlock(&t->lock);
    return v;
}

void
lb_ipcount_release(lb_ipcount_t *t, uint64_t key)
{
    lb_ipcount_entry_t  *e = lb_ipcount_entries(t);
    uint32_t             i, j, home;

    lb_shm_lock(&t->lock);
    i = lb_ipcount_find(t, key);
    if (e[i].key != key || e[i].count == 0) {
        lb_shm_unlock(&t->lock);
        return;                     /* not counted (cannot happen) */
    }
    if (--e[i].count) {
        lb_shm_unlock(&t->lock);
        return;
    }
    /* remove it, then move back each later entry of the run that may
     * take the hole (its home slot is not between the hole and it) */
    e[i].key = 0;
    t->used--;
    for (j = (i + 1) & t->mask; e[j].key != 0; j = (j + 1) & t->mask) {
        home = (uint32_t) e[j].key & t->mask;
        if (((j - home) & t->mask) >= ((j - i) & t->mask)) {
            e[i] = e[j];
            e[j].key = 0;
            e[j].count = 0;
            i = j;
        }
    }
    lb_shm_unlock(&t->lock);
}

uint32_t
lb_ipcount_get(lb_ipcount_t *t, uint64_t key)
{
    lb_ipcount_entry_t  *e = lb_ipcount_entries(t);
    uint32_t             i, n;

    lb_shm_lock(&t->lock);
    i = lb_ipcount_find(t, key);
    n = e[i].key == key ? e[i].count : 0;
    lb_shm_unlock(&t->lock);
    return n;
}

size_t
lb_ipcount_used(lb_ipcount_t *t)
{
    return t->used;
}
