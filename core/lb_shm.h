/*
 * lb_shm.h: shared memory zones, mapped by the master before it forks and
 * so shared by every worker. A zone is named; a reload keeps the mapping of
 * a zone with the same name and size, which is how runtime state (server
 * health, drain, weights, sticky tables) survives reloads.
 */
#ifndef LB_SHM_H
#define LB_SHM_H

struct lb_shm_zone_s {
    const char   *name;
    size_t        size;
    void         *addr;         /* mapping, once created */
    bool          reused;       /* kept from the previous configuration */
    /* Called in the master when the zone is mapped: lay out addr (when not
     * reused) and set data. */
    int         (*init)(lb_shm_zone_t *zone);
    void         *data;         /* the owner's view of the zone */
    void         *owner;
};

/* Declares a zone in the cycle being configured. Two declarations of one
 * name must agree on size. NULL on failure. */
lb_shm_zone_t *lb_shm_zone_add(lb_conf_t *cf, const char *name, size_t size,
                               int (*init)(lb_shm_zone_t *), void *owner);
/* Maps every zone of cycle, sharing old's mappings where name and size
 * match. old may be NULL. Then exactly one of: commit (the new cycle takes
 * the shared mappings over, so freeing old leaves them alone) or abandon
 * (the reload failed: freeing the new cycle leaves them to old). */
int  lb_shm_zones_map(lb_cycle_t *cycle, lb_cycle_t *old);
void lb_shm_zones_commit(lb_cycle_t *cycle, lb_cycle_t *old);
void lb_shm_zones_abandon(lb_cycle_t *cycle);
void lb_shm_zones_unmap(lb_cycle_t *cycle);

/* A spin lock that lives in shared memory. */
typedef struct { volatile uint32_t locked; } lb_shm_lock_t;
void lb_shm_lock(lb_shm_lock_t *l);
void lb_shm_unlock(lb_shm_lock_t *l);

#endif
