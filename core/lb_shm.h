/*
 * lb_shm.h: shared memory zones, mapped by the master before it forks and
 * so shared by every worker. A zone is named; a reload keeps the memory of
 * a zone with the same name (and size, unless the zone may grow), which is
 * how runtime state (server health, drain, weights, sticky tables) survives
 * reloads.
 */
#ifndef LB_SHM_H
#define LB_SHM_H

struct lb_shm_zone_s {
    const char   *name;
    /* Bytes asked for by the configuration; once mapped, bytes mapped at
     * addr (a growable zone keeps a bigger size of the previous one). */
    size_t        size;
    void         *addr;         /* mapping, once created */
    int           fd;           /* the memory (a memfd); -1 until mapped */
    bool          reused;       /* kept from the previous configuration */
    size_t        old_size;     /* when reused: the size the previous one mapped */
    bool          shared_map;   /* addr is still the previous configuration's mapping */
    /* Set by the owner after lb_shm_zone_add. growable: a reload keeps the
     * zone whatever size the new configuration asks for, growing the memory
     * in place when it asks for more; bytes never move, so pointers that
     * older workers hold into their own mappings stay valid. retire: called
     * in the master whenever every worker of each generation older than
     * `oldest` has exited, to free what only those generations used. */
    bool          growable;
    void        (*retire)(lb_shm_zone_t *zone, unsigned oldest);
    /* Called in the master when the zone is mapped: lay out addr (when not
     * reused) and set data. */
    int         (*init)(lb_shm_zone_t *zone);
    /* Called in the master once the configuration that declared the zone
     * is the one in force (at start, and when a reload is applied, in place
     * or not; never for a reload that failed or was abandoned). Optional. */
    void        (*commit)(lb_shm_zone_t *zone);
    void         *data;         /* the owner's view of the zone */
    void         *owner;
};

/* Declares a zone in the cycle being configured. Two declarations of one
 * name must agree on size. NULL on failure. */
lb_shm_zone_t *lb_shm_zone_add(lb_conf_t *cf, const char *name, size_t size,
                               int (*init)(lb_shm_zone_t *), void *owner);
/* Maps every zone of cycle, keeping old's memory where the name matches
 * (and the size, or the zone is growable). old may be NULL. Then exactly
 * one of: commit (the new cycle takes the memory over, so freeing old
 * leaves it alone) or abandon (the reload failed: freeing the new cycle
 * leaves it to old). */
int  lb_shm_zones_map(lb_cycle_t *cycle, lb_cycle_t *old);
void lb_shm_zones_commit(lb_cycle_t *cycle, lb_cycle_t *old);
void lb_shm_zones_abandon(lb_cycle_t *cycle);
void lb_shm_zones_unmap(lb_cycle_t *cycle);
/* In the master, from a growable zone's init or its module's init_master:
 * makes the zone at least size bytes. The bytes already there stay where
 * they are in the memory (new ones read as zero), but zone->addr changes:
 * recompute every pointer into it. LB_OK, or LB_ERROR (logged). */
int  lb_shm_zone_grow(lb_shm_zone_t *zone, size_t size);
/* In the master: calls every zone's retire (see above). */
void lb_shm_zones_retire(lb_cycle_t *cycle, unsigned oldest);

/* A spin lock that lives in shared memory. */
typedef struct { volatile uint32_t locked; } lb_shm_lock_t;
void lb_shm_lock(lb_shm_lock_t *l);
void lb_shm_unlock(lb_shm_lock_t *l);

#endif
