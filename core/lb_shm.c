/*
 * lb_shm.c: shared memory zones.
 */
#include "lb_core.h"

#include <sched.h>
#include <sys/mman.h>

lb_shm_zone_t *
lb_shm_zone_add(lb_conf_t *cf, const char *name, size_t size,
                int (*init)(lb_shm_zone_t *), void *owner)
{
    lb_cycle_t     *cycle = cf->cycle;
    lb_shm_zone_t  *z;
    size_t          i;

    for (i = 0; i < cycle->shm_zones.nelts; i++) {
        z = &lb_array_at(&cycle->shm_zones, lb_shm_zone_t, i);
        if (strcmp(z->name, name) == 0) {
            return z->size == size ? z : NULL;
        }
    }
    z = lb_array_push(&cycle->shm_zones);
    if (z == NULL) {
        return NULL;
    }
    z->name = lb_pstrdup(cycle->pool, name);
    z->size = size;
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
        o = &lb_array_at(&old->shm_zones, lb_shm_zone_t, i);
        if (o->addr && o->size == z->size && strcmp(o->name, z->name) == 0) {
            return o;
        }
    }
    return NULL;
}

int
lb_shm_zones_map(lb_cycle_t *cycle, lb_cycle_t *old)
{
    lb_shm_zone_t  *z, *o;
    size_t          i;

    for (i = 0; i < cycle->shm_zones.nelts; i++) {
        z = &lb_array_at(&cycle->shm_zones, lb_shm_zone_t, i);
        o = lb_shm_zone_take(old, z);
        if (o) {
            /* shared until lb_shm_zones_commit: a failed reload gives it back */
            z->addr = o->addr;
            z->reused = true;
        } else {
            z->addr = mmap(NULL, z->size, PROT_READ | PROT_WRITE,
                           MAP_SHARED | MAP_ANONYMOUS, -1, 0);
            if (z->addr == MAP_FAILED) {
                z->addr = NULL;
                lb_log_error(errno, "mmap() of shared zone \"%s\" (%zu bytes) failed",
                             z->name, z->size);
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
    size_t          i;

    for (i = 0; i < cycle->shm_zones.nelts; i++) {
        z = &lb_array_at(&cycle->shm_zones, lb_shm_zone_t, i);
        o = z->reused && old ? lb_shm_zone_take(old, z) : NULL;
        if (o && o->addr == z->addr) {
            o->addr = NULL;         /* now owned by the new cycle only */
        }
    }
}

void
lb_shm_zones_abandon(lb_cycle_t *cycle)
{
    lb_shm_zone_t  *z;
    size_t          i;

    for (i = 0; i < cycle->shm_zones.nelts; i++) {
        z = &lb_array_at(&cycle->shm_zones, lb_shm_zone_t, i);
        if (z->reused) {
            z->addr = NULL;         /* still the running cycle's */
        }
    }
}

void
lb_shm_zones_unmap(lb_cycle_t *cycle)
{
    lb_shm_zone_t  *z;
    size_t          i;

    for (i = 0; i < cycle->shm_zones.nelts; i++) {
        z = &lb_array_at(&cycle->shm_zones, lb_shm_zone_t, i);
        if (z->addr) {
            munmap(z->addr, z->size);
            z->addr = NULL;
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
