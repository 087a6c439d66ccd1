/*
 * lb_upstream_maglev.c: the Maglev table (lb_upstream_maglev.h).
 */
#include "lb_upstream_maglev.h"
#include "lb_hash.h"

static bool
lb_maglev_is_prime(uint32_t n)
{
    uint32_t  d;

    if (n < 2) {
        return false;
    }
    for (d = 2; (uint64_t) d * d <= n; d++) {
        if (n % d == 0) {
            return false;
        }
    }
    return true;
}

uint32_t
lb_maglev_size(size_t n, uint32_t min_size)
{
    uint64_t  want = min_size ? min_size : LB_MAGLEV_DEFAULT_SIZE;

    if (100 * (uint64_t) n > want) {
        want = 100 * (uint64_t) n;
    }
    while (!lb_maglev_is_prime((uint32_t) want)) {
        want++;
    }
    return (uint32_t) want;
}

uint64_t
lb_maglev_hash(const void *data, size_t len)
{
    return lb_hash_mix64(lb_hash_fnv64(LB_HASH_FNV_BASIS, data, len));
}

uint64_t
lb_maglev_hash_seeded(uint64_t seed, const void *data, size_t len)
{
    return lb_hash_mix64(lb_hash_fnv64(lb_hash_mix64(LB_HASH_FNV_BASIS ^ seed), data, len));
}

/* The permutation of one server: the slot of its j-th turn is
 * (offset + j * skip) mod size. */
typedef struct {
    const char  *name;
    uint32_t     weight;
    uint32_t     index;         /* in the caller's order */
    uint64_t     offset;
    uint64_t     skip;
    uint64_t     next;          /* turns taken */
    uint64_t     credit;        /* weight added each round; a turn costs max_weight */
} lb_maglev_server_t;

static int
lb_maglev_by_name(const void *a, const void *b)
{
    return strcmp(((const lb_maglev_server_t *) a)->name,
                  ((const lb_maglev_server_t *) b)->name);
}

/* Two independent hashes of a name: salted with a different prefix. */
static uint64_t
lb_maglev_hash_name(const char *name, const char *salt)
{
    return lb_hash_mix64(lb_hash_fnv64(lb_hash_fnv64(LB_HASH_FNV_BASIS, salt, 2), name,
                                       strlen(name)));
}

int
lb_maglev_build(lb_maglev_t *m, const char *const *names, const uint32_t *weights, size_t n,
                uint32_t size)
{
    lb_maglev_server_t  *sv;
    uint32_t             max_weight = 1, slot, filled = 0;
    size_t               i;

    memset(m, 0, sizeof(*m));
    if (n == 0 || size <= n) {
        return LB_ERROR;
    }
    sv = calloc(n, sizeof(*sv));
    m->entry = malloc((size_t) size * sizeof(uint32_t));
    if (sv == NULL || m->entry == NULL) {
        free(sv);
        free(m->entry);
        m->entry = NULL;
        return LB_ERROR;
    }
    for (i = 0; i < n; i++) {
        sv[i].name = names[i];
        sv[i].weight = weights[i] ? weights[i] : 1;
        sv[i].index = (uint32_t) i;
        sv[i].offset = lb_maglev_hash_name(names[i], "o:") % size;
        sv[i].skip = lb_maglev_hash_name(names[i], "s:") % (size - 1) + 1;
        max_weight = sv[i].weight > max_weight ? sv[i].weight : max_weight;
    }
    /* the same table whatever order the caller gave */
    qsort(sv, n, sizeof(*sv), lb_maglev_by_name);
    memset(m->entry, 0xff, (size_t) size * sizeof(uint32_t));

    while (filled < size) {
        for (i = 0; i < n && filled < size; i++) {
            sv[i].credit += sv[i].weight;
            if (sv[i].credit < max_weight) {
                continue;
            }
            sv[i].credit -= max_weight;
            /* its next slot nobody owns yet: at most size steps, as the
             * permutation visits every slot (size is prime) */
            do {
                slot = (uint32_t) ((sv[i].offset + sv[i].next * sv[i].skip) % size);
                sv[i].next++;
            } while (m->entry[slot] != UINT32_MAX);
            m->entry[slot] = sv[i].index;
            filled++;
        }
    }
    free(sv);
    m->size = size;
    m->n = (uint32_t) n;
    return LB_OK;
}

void
lb_maglev_free(lb_maglev_t *m)
{
    free(m->entry);
    m->entry = NULL;
    m->size = m->n = 0;
}

ssize_t
lb_maglev_lookup(const lb_maglev_t *m, uint64_t h, bool (*usable)(void *arg, size_t i),
                 void *arg)
{
    uint64_t  slot, step;
    uint32_t  j, owner;

    if (m->size == 0) {
        return -1;
    }
    slot = h % m->size;
    owner = m->entry[slot];
    if (usable == NULL || usable(arg, owner)) {
        return owner;
    }
    /* the key's own walk: a step from the high bits, never 0 */
    step = (h >> 32) % (m->size - 1) + 1;
    for (j = 1; j < m->size; j++) {
        slot = (slot + step) % m->size;
        owner = m->entry[slot];
        if (usable(arg, owner)) {
            return owner;
        }
    }
    return -1;
}
