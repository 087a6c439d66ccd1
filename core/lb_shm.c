/*
 * lb_shm.c: shared memory zones. Each zone's memory is a memfd that the
 * master maps before forking: workers inherit the mapping, and a reload can
 * map the same memory again, bigger, while older workers keep theirs.
 */
#include "lb_core.h"

#include <sched.h>
#include <sys/mman.h>
#include <sys/stat.h>

lb_shm_zone_t *
lb_shm_zone_add(lb_conf_t *cf, const char *name, size_t size,
                int (*init)(lb_shm_zone_t *), void *owner)
{
    lb_cycle_t     *cycle = cf->cycle;
    lb_shm_zone_t  *z, **slot;
    size_t          i;

    for (i = 0; i < cycle->shm_zones.nelts; i++) {
        z = lb_array_at(&cycle->shm_zones, lb_shm_zone_t *, i);
        if (strcmp(z->name, name) == 0) {
            return z->size == size ? z : NULL;
        }
    }
    /* each zone apart: modules keep pointers to theirs while more are
     * declared (the array of pointers may move, the zones do not) */
    slot = lb_array_push(&cycle->shm_zones);
    z = lb_pcalloc(cycle->pool, sizeof(*z));
    if (slot == NULL || z == NULL) {
        if (slot) {
            cycle->shm_zones.nelts--;
        }
        return NULL;
    }
    *slot = z;
    z->name = lb_pstrdup(cycle->pool, name);
    z->size = size;
    z->fd = -1;
    z->init = init;
    z->owner = owner;
    return z->name ? z : NULL;
}

static lb_shm_zone_t *
lb_shm_zone_take(lb_cycle_t *old, const lb_shm_zone_t *z)
{
    lb_shm_zone_t  *o;
    size_t          i;

    if (old == NULL) {
        return NULL;
    }
    for (i = 0; i < old->shm_zones.nelts; i++) {
        o = lb_array_at(&old->shm_zones, lb_shm_zone_t *, i);
        if (o->addr && o->fd != -1 && strcmp(o->name, z->name) == 0
            && (o->size == z->size || z->growable))
        {
            return o;
        }
    }
    return NULL;
}

static void *
lb_shm_mmap(lb_shm_zone_t *z, size_t size)
{
    struct stat  st;
    void        *p;

    /* growing the memory never hurts a smaller mapping of it; shrinking
     * would (SIGBUS past the end), so it never shrinks, even below what a
     * reload that failed after growing it had asked for */
    if (fstat(z->fd, &st) == -1) {
        lb_log_error(errno, "fstat() of shared zone \"%s\" failed", z->name);
        return NULL;
    }
    if ((off_t) size > st.st_size && ftruncate(z->fd, (off_t) size) == -1) {
        lb_log_error(errno, "cannot size shared zone \"%s\" to %zu bytes", z->name, size);
        return NULL;
    }
    p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, z->fd, 0);
    if (p == MAP_FAILED) {
        lb_log_error(errno, "mmap() of shared zone \"%s\" (%zu bytes) failed", z->name, size);
        return NULL;
    }
    return p;
}

int
lb_shm_zone_grow(lb_shm_zone_t *z, size_t size)
{
    void  *p;

    if (size <= z->size) {
        return LB_OK;
    }
    p = lb_shm_mmap(z, size);
    if (p == NULL) {
        return LB_ERROR;
    }
    if (!z->shared_map) {
        munmap(z->addr, z->size);
    }
    lb_log_notice("shared zone \"%s\" grows from %zu to %zu bytes", z->name, z->size, size);
    z->addr = p;
    z->size = size;
    z->shared_map = false;
    return LB_OK;
}

int
lb_shm_zones_map(lb_cycle_t *cycle, lb_cycle_t *old)
{
    lb_shm_zone_t  *z, *o;
    size_t          i, asked;

    for (i = 0; i < cycle->shm_zones.nelts; i++) {
        z = lb_array_at(&cycle->shm_zones, lb_shm_zone_t *, i);
        o = lb_shm_zone_take(old, z);
        if (o) {
            /* shared until lb_shm_zones_commit: a failed reload gives it back */
            z->fd = o->fd;
            z->reused = true;
            z->old_size = o->size;
            z->addr = o->addr;
            z->shared_map = true;
            asked = z->size;
            z->size = o->size;
            if (lb_shm_zone_grow(z, asked) != LB_OK) {
                return LB_ERROR;
            }
        } else {
            z->fd = memfd_create(z->name, MFD_CLOEXEC);
            if (z->fd == -1) {
                lb_log_error(errno, "memfd_create() of shared zone \"%s\" failed", z->name);
                return LB_ERROR;
            }
            z->addr = lb_shm_mmap(z, z->size);
            if (z->addr == NULL) {
                return LB_ERROR;
            }
        }
        if (z->init && z->init(z) != LB_OK) {
            return LB_ERROR;
        }
    }
    return LB_OK;
}

void
lb_shm_zones_commit(lb_cycle_t *cycle, lb_cycle_t *old)
{
    lb_shm_zone_t  *z, *o;
    size_t          i, j;

    for (i = 0; old && i < cycle->shm_zones.nelts; i++) {
        z = lb_array_at(&cycle->shm_zones, lb_shm_zone_t *, i);
        for (j = 0; z->reused && j < old->shm_zones.nelts; j++) {
            o = lb_array_at(&old->shm_zones, lb_shm_zone_t *, j);
            if (o->fd != z->fd) {
                continue;
            }
            /* the memory is the new cycle's now; a mapping the old one
             * made for itself goes with it */
            if (z->shared_map) {
                o->addr = NULL;
                z->shared_map = false;
            }
            o->fd = -1;
        }
    }
    for (i = 0; i < cycle->shm_zones.nelts; i++) {
        z = lb_array_at(&cycle->shm_zones, lb_shm_zone_t *, i);
        if (z->commit) {
            z->commit(z);
        }
    }
}

void
lb_shm_zones_abandon(lb_cycle_t *cycle)
{
    lb_shm_zone_t  *z;
    size_t          i;

    for (i = 0; i < cycle->shm_zones.nelts; i++) {
        z = lb_array_at(&cycle->shm_zones, lb_shm_zone_t *, i);
        if (z->reused) {
            /* still the running cycle's; a grown mapping is ours to unmap */
            if (z->shared_map) {
                z->addr = NULL;
            }
            z->fd = -1;
        }
    }
}

void
lb_shm_zones_unmap(lb_cycle_t *cycle)
{
    lb_shm_zone_t  *z;
    size_t          i;

    for (i = 0; i < cycle->shm_zones.nelts; i++) {
        z = lb_array_at(&cycle->shm_zones, lb_shm_zone_t *, i);
        if (z->addr) {
            munmap(z->addr, z->size);
            z->addr = NULL;
        }
        if (z->fd != -1) {
            close(z->fd);
            z->fd = -1;
        }
    }
}

void
lb_shm_zones_retire(lb_cycle_t *cycle, unsigned oldest)
{
    lb_shm_zone_t  *z;
    size_t          i;

    for (i = 0; i < cycle->shm_zones.nelts; i++) {
        z = lb_array_at(&cycle->shm_zones, lb_shm_zone_t *, i);
        if (z->retire && z->addr) {
            z->retire(z, oldest);
        }
    }
}

void
lb_shm_lock(lb_shm_lock_t *l)
{
    unsigned  spins = 0;

    while (__atomic_exchange_n(&l->locked, 1, __ATOMIC_ACQUIRE)) {
        if (++spins % 64 == 0) {
            sched_yield();
        }
    }
}

void
lb_shm_unlock(lb_shm_lock_t *l)
{
    __atomic_store_n(&l->locked, 0, __ATOMIC_RELEASE);
}
