/*
 * lb_limits_table.h: the rate limits' buckets, in one shared-memory zone
 * that every worker uses (SPEC §3.8). A bucket is found by a 64-bit hash
 * of (the limit, the key): the limit is a listener's or a route's `limits`
 * group, the key what its `key` evaluated to. Hashes start from a secret
 * seed, so a client cannot aim keys at one chain or at another key's
 * bucket. A full table gives its least recently used bucket to the new
 * key: a million distinct keys stay within the zone, the busiest ones
 * keep their state.
 *
 * Each bucket is a GCRA clock (the "virtual scheduling" form of a leaky
 * bucket): tat, the time at which the bucket is empty again. A request at
 * now starts at max(tat, now); it is refused when that is more than
 * burst intervals away, else tat moves one interval on and the request
 * waits start - now (nothing with nodelay). Requests then pass at the rate,
 * with up to burst of them early.
 */
#ifndef LB_LIMITS_TABLE_H
#define LB_LIMITS_TABLE_H

#include "lb_core.h"

typedef struct lb_limits_table_s  lb_limits_table_t;

/* Bytes a table needs for `entries` buckets, and the buckets that fit in
 * `bytes` (at least 16 or 0 when it is too small). */
size_t lb_limits_table_bytes(size_t entries);
size_t lb_limits_table_entries(size_t bytes);
/* Formats mem (bytes long, zeroed) as an empty table with seed. Returns
 * the table (mem) or NULL when bytes is too small. */
lb_limits_table_t *lb_limits_table_init(void *mem, size_t bytes, uint64_t seed);
/* The seed a table was made with, for the keys' hashes. */
uint64_t lb_limits_table_seed(const lb_limits_table_t *t);

typedef enum {
    LB_LIMITS_PASS = 0,     /* at once */
    LB_LIMITS_DELAY,        /* after *wait_us */
    LB_LIMITS_REFUSE,       /* over the burst: *wait_us says when one would pass */
} lb_limits_verdict_t;

/* One request of the bucket `hash` at now_us (a monotonic clock in
 * microseconds), for a limit of interval_us per request (1e6 / rate) and
 * burst requests ahead. nodelay: an early request passes at once and still
 * uses its place. Takes the table's lock. */
lb_limits_verdict_t lb_limits_take(lb_limits_table_t *t, uint64_t hash, int64_t now_us,
                                   int64_t interval_us, int64_t burst, bool nodelay,
                                   int64_t *wait_us);

/* A binary upgrade carries the buckets over (lb_state.h): every bucket,
 * least recently used first, to fn; and, in the new master's table, the
 * old seed (before any bucket goes in) and a bucket as it was. */
void lb_limits_table_each(lb_limits_table_t *t,
                          void (*fn)(void *arg, uint64_t hash, int64_t tat), void *arg);
void lb_limits_table_set_seed(lb_limits_table_t *t, uint64_t seed);
void lb_limits_table_put(lb_limits_table_t *t, uint64_t hash, int64_t tat);

/* Buckets in use, and how many were taken from the least recently used. */
size_t   lb_limits_table_count(lb_limits_table_t *t);
uint64_t lb_limits_table_evicted(lb_limits_table_t *t);

#endif
