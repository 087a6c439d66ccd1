/*
 * lb_upstream_maglev.h: a Maglev consistent-hash lookup table (Eisenbud et
 * al., "Maglev: A Fast and Reliable Software Network Load Balancer", NSDI
 * 2016), the table behind balance = "hash".
 *
 * Each server has a permutation of the table's slots (an offset and a
 * skip from two hashes of its name); building, the servers take turns
 * claiming the next free slot of their own permutation until every slot
 * is owned, so each server owns about size/n slots and a key, hashed onto
 * a slot, finds its server in one lookup. Weights: a server of weight w
 * takes a turn only in the rounds where its credit (w added each round)
 * reaches the largest weight, which a turn costs, so it owns about w/sum
 * of the slots; integer arithmetic, the same everywhere. The servers are sorted by name first: the table depends only on
 * the set of (name, weight) pairs and the size, never on the order the
 * caller lists them in, and two processes, two machines, two versions
 * build the same one.
 *
 * A server that cannot take a key (down, full, already tried) is passed
 * over at lookup: the key walks a probe sequence of its own through the
 * table (slot h1, h1 + h2, h1 + 2 h2, ... mod size; size is prime) to the
 * first slot whose owner is usable. Keys of usable servers never move;
 * those of an unusable one spread over the others, and come back when it
 * does. No rebuild when states change.
 */
#ifndef LB_UPSTREAM_MAGLEV_H
#define LB_UPSTREAM_MAGLEV_H

#include "lb_core.h"

#define LB_MAGLEV_DEFAULT_SIZE  65537

typedef struct {
    uint32_t   size;        /* M, a prime */
    uint32_t   n;           /* servers */
    uint32_t  *entry;       /* M entries: a server index, in the caller's order */
} lb_maglev_t;

/* The smallest prime >= max(min_size, 100 * n); min_size 0: 65537. */
uint32_t lb_maglev_size(size_t n, uint32_t min_size);

/* Builds m over n servers called names[i] (their addresses as written),
 * of weights[i] >= 1, with `size` slots (a prime > n). Memory from
 * malloc, released by lb_maglev_free. LB_OK, or LB_ERROR (no memory, n 0,
 * size not above n). */
int  lb_maglev_build(lb_maglev_t *m, const char *const *names, const uint32_t *weights,
                     size_t n, uint32_t size);
void lb_maglev_free(lb_maglev_t *m);

/* A 64-bit hash of a key, the same in every process and instance (no
 * seed): FNV-1a, then a finaliser that spreads short keys' bits. */
uint64_t lb_maglev_hash(const void *data, size_t len);
/* The same, keyed by a secret seed: for tables whose keys a client
 * chooses (its address), so that nobody can aim many keys at one bucket. */
uint64_t lb_maglev_hash_seeded(uint64_t seed, const void *data, size_t len);

/* The server for key hash h: the owner of its first slot when usable(arg,
 * owner) (or usable is NULL), else the owner of the first usable slot on
 * the key's probe sequence; -1 when none is usable. */
ssize_t lb_maglev_lookup(const lb_maglev_t *m, uint64_t h, bool (*usable)(void *arg, size_t i),
                         void *arg);

#endif
