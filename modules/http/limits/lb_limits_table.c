/*
 * lb_limits_table.c: the shared buckets of the rate limits
 * (lb_limits_table.h). Layout, all offsets and 32-bit indices so that
 * every process may map the zone at its own address: a header, the chain
 * heads (a power of two, about one per bucket), then the buckets. Index 0
 * is "none". The least recently used list runs through the buckets in use.
 */
#include "lb_limits_table.h"
#include "lb_shm.h"

typedef struct {
    uint64_t   hash;
    int64_t    tat;             /* when the bucket is empty again (us) */
    uint32_t   chain;           /* next in its hash chain */
    uint32_t   prev, next;      /* least recently used list (prev: older) */
    uint32_t   pad;
} lb_limits_bucket_t;

struct lb_limits_table_s {
    lb_shm_lock_t  lock;
    uint32_t       nentries;
    uint32_t       mask;            /* chain heads - 1 */
    uint32_t       count;
    uint32_t       unused;          /* buckets never used yet: unused+1 .. nentries */
    uint32_t       oldest, newest;
    uint64_t       seed;
    uint64_t       evicted;
};

#define LB_LIMITS_MIN_ENTRIES  16

static uint32_t *
lb_limits_heads(lb_limits_table_t *t)
{
    return (uint32_t *) (t + 1);
}

static lb_limits_bucket_t *
lb_limits_bucket(lb_limits_table_t *t, uint32_t i)
{
    return (lb_limits_bucket_t *) (lb_limits_heads(t) + t->mask + 1) + (i - 1);
}

static size_t
lb_limits_heads_for(size_t entries)
{
    size_t  heads = 1;

    while (heads < entries) {
        heads <<= 1;
    }
    return heads;
}

size_t
lb_limits_table_bytes(size_t entries)
{
    return sizeof(lb_limits_table_t) + lb_limits_heads_for(entries) * sizeof(uint32_t)
           + entries * sizeof(lb_limits_bucket_t);
}

size_t
lb_limits_table_entries(size_t bytes)
{
    size_t  n;

    if (bytes < lb_limits_table_bytes(LB_LIMITS_MIN_ENTRIES)) {
        return 0;
    }
    /* about 40 bytes a bucket with its head; then step down to what fits */
    n = (bytes - sizeof(lb_limits_table_t)) / (sizeof(lb_limits_bucket_t) + sizeof(uint32_t));
    if (n > UINT32_MAX - 1) {
        n = UINT32_MAX - 1;
    }
    while (n > LB_LIMITS_MIN_ENTRIES && lb_limits_table_bytes(n) > bytes) {
        n -= n / 64 + 1;
    }
    return n;
}

lb_limits_table_t *
lb_limits_table_init(void *mem, size_t bytes, uint64_t seed)
{
    lb_limits_table_t  *t = mem;
    size_t              n = lb_limits_table_entries(bytes);

    if (n == 0) {
        return NULL;
    }
    memset(t, 0, sizeof(*t));
    t->nentries = (uint32_t) n;
    t->mask = (uint32_t) (lb_limits_heads_for(n) - 1);
    t->seed = seed;
    return t;
}

uint64_t
lb_limits_table_seed(const lb_limits_table_t *t)
{
    return t->seed;
}

/* The list of buckets in use, oldest first. */
static void
lb_limits_unlink(lb_limits_table_t *t, uint32_t i)
{
    lb_limits_bucket_t  *b = lb_limits_bucket(t, i);

    if (b->prev) {
        lb_limits_bucket(t, b->prev)->next = b->next;
    } else {
        t->oldest = b->next;
    }
    if (b->next) {
        lb_limits_bucket(t, b->next)->prev = b->prev;
    } else {
        t->newest = b->prev;
    }
    b->prev = b->next = 0;
}

static void
lb_limits_push_newest(lb_limits_table_t *t, uint32_t i)
{
    lb_limits_bucket_t  *b = lb_limits_bucket(t, i);

    b->prev = t->newest;
    b->next = 0;
    if (t->newest) {
        lb_limits_bucket(t, t->newest)->next = i;
    } else {
        t->oldest = i;
    }
    t->newest = i;
}

/* Takes the oldest bucket out of its chain for reuse. */
static uint32_t
lb_limits_evict(lb_limits_table_t *t)
{
    uint32_t            i = t->oldest, *p;
    lb_limits_bucket_t  *b = lb_limits_bucket(t, i);

    for (p = &lb_limits_heads(t)[b->hash & t->mask]; *p; p = &lb_limits_bucket(t, *p)->chain) {
        if (*p == i) {
            *p = b->chain;
            break;
        }
    }
    lb_limits_unlink(t, i);
    t->evicted++;
    t->count--;
    return i;
}

static lb_limits_bucket_t *
lb_limits_find_or_add(lb_limits_table_t *t, uint64_t hash, int64_t now_us)
{
    lb_limits_bucket_t  *b;
    uint32_t            *head = &lb_limits_heads(t)[hash & t->mask], i;

    for (i = *head; i; i = b->chain) {
        b = lb_limits_bucket(t, i);
        if (b->hash == hash) {
            lb_limits_unlink(t, i);
            lb_limits_push_newest(t, i);
            return b;
        }
    }
    if (t->unused < t->nentries) {
        i = ++t->unused;
    } else {
        i = lb_limits_evict(t);
    }
    b = lb_limits_bucket(t, i);
    b->hash = hash;
    b->tat = now_us;                    /* empty */
    b->chain = *head;
    *head = i;
    lb_limits_push_newest(t, i);
    t->count++;
    return b;
}

lb_limits_verdict_t
lb_limits_take(lb_limits_table_t *t, uint64_t hash, int64_t now_us, int64_t interval_us,
               int64_t burst, bool nodelay, int64_t *wait_us)
{
    lb_limits_bucket_t  *b;
    lb_limits_verdict_t  v;
    int64_t              start;

    lb_shm_lock(&t->lock);
    b = lb_limits_find_or_add(t, hash, now_us);
    start = b->tat > now_us ? b->tat : now_us;
    if (start - now_us > burst * interval_us) {
        /* over the burst: the bucket is left as it is */
        *wait_us = start - now_us - burst * interval_us;
        v = LB_LIMITS_REFUSE;
    } else {
        b->tat = start + interval_us;
        *wait_us = nodelay ? 0 : start - now_us;
        v = *wait_us > 0 ? LB_LIMITS_DELAY : LB_LIMITS_PASS;
    }
    lb_shm_unlock(&t->lock);
    return v;
}

void
lb_limits_table_each(lb_limits_table_t *t,
                     void (*fn)(void *arg, uint64_t hash, int64_t tat), void *arg)
{
    lb_limits_bucket_t  *b;
    uint32_t             i;

    lb_shm_lock(&t->lock);
    for (i = t->oldest; i; i = b->next) {
        b = lb_limits_bucket(t, i);
        fn(arg, b->hash, b->tat);
    }
    lb_shm_unlock(&t->lock);
}

void
lb_limits_table_set_seed(lb_limits_table_t *t, uint64_t seed)
{
    t->seed = seed;
}

void
lb_limits_table_put(lb_limits_table_t *t, uint64_t hash, int64_t tat)
{
    lb_shm_lock(&t->lock);
    lb_limits_find_or_add(t, hash, tat)->tat = tat;
    lb_shm_unlock(&t->lock);
}

size_t
lb_limits_table_count(lb_limits_table_t *t)
{
    return t->count;
}

uint64_t
lb_limits_table_evicted(lb_limits_table_t *t)
{
    return t->evicted;
}
