/*
 * lb_upstream.h: backend server groups (SPEC §3.2) as the other modules see
 * them: find an upstream by name, pick a server for a new connection, give
 * it back. Server state that must be the same in every worker and survive
 * reloads (active connections, failures, down) lives in shared memory.
 */
#ifndef LB_UPSTREAM_H
#define LB_UPSTREAM_H

#include "lb_core.h"

#define LB_UPSTREAM_MAX_SERVERS  1024
/* Servers of all upstreams together: bounds the shared state zone (about
 * 248 bytes a slot, two slots a server) to some 50 MB. */
#define LB_UPSTREAM_MAX_TOTAL_SERVERS  100000

typedef enum {
    LB_BALANCE_ROUND_ROBIN = 0,
    LB_BALANCE_LEAST_CONN,
    LB_BALANCE_RANDOM_TWO,
    LB_BALANCE_HASH,
} lb_balance_t;

/* One server's state shared by all workers, kept across reloads while the
 * upstream still has a server at that address. The passive health record
 * (fails .. retry_at) changes under `lock` and is read without it. */
typedef struct {
    uint32_t       active;      /* open connections, all workers */
    uint32_t       fails;       /* failures in the window that began at fail_start */
    uint32_t       down;        /* set by health checks */
    uint32_t       failed;      /* 1: max_fails reached, and no success since */
    uint64_t       connects;    /* total connections made */
    lb_msec_t      fail_start;  /* the first failure of the window */
    lb_msec_t      retry_at;    /* a failed server gets its next trial then */
    lb_shm_lock_t  lock;
} lb_upstream_peer_state_t;

/* passive = { max_fails; fail_timeout; }: after max_fails failures within
 * fail_timeout a server is not used for fail_timeout; then one connection
 * tries it, and a success brings it back. max_fails = 0: never. */
typedef struct {
    int64_t    max_fails;
    lb_msec_t  fail_timeout;
} lb_upstream_passive_t;

typedef struct lb_upstream_s  lb_upstream_t;

typedef struct {
    lb_addr_t                  addr;
    int64_t                    weight;
    int64_t                    max_conns;   /* 0: unlimited */
    int                        backup;
    lb_upstream_peer_state_t  *state;       /* in shared memory */
    int64_t                    current;     /* smooth round robin, per worker */
    lb_upstream_t             *upstream;    /* its own, for passive health and logs */
} lb_upstream_server_t;

struct lb_upstream_s {
    char                  *name;
    lb_upstream_server_t  *servers;         /* primaries first, then backups */
    size_t                 nservers;
    size_t                 nprimary;
    int                    balance;         /* lb_balance_t */
    char                  *hash_key;
    lb_msec_t              connect_timeout;
    lb_msec_t              read_timeout;
    lb_msec_t              send_timeout;
    lb_msec_t              response_head_timeout;   /* http: total wait for the final head */
    int64_t                retries;
    int64_t                keepalive;       /* http: idle connections kept per
                                               worker, at most;
                                               LB_UPSTREAM_KEEPALIVE_AUTO: what
                                               the recent peak needs */
    lb_msec_t              keepalive_timeout;   /* an idle one is closed then */
    int64_t                proxy_protocol;  /* 0, or the PROXY version sent to servers */
    lb_upstream_passive_t  passive;
    lb_array_t             server_list;     /* while parsing */
    void                 **confs;           /* every module's conf of this upstream */
};

#define LB_UPSTREAM_KEEPALIVE_AUTO  (-1)

/* The servers already tried for one connection. */
typedef struct {
    uint64_t   tried[LB_UPSTREAM_MAX_SERVERS / 64];
    unsigned   attempts;
    bool       trial;           /* the last server picked is a failed one on trial */
} lb_upstream_try_t;

extern lb_module_t  lb_core_upstream_module;

/* A setting that names an upstream, kept with where it was written: it is
 * resolved once the whole file is read (an upstream may be declared after
 * its users). */
typedef struct {
    char         *name;         /* NULL: the setting is absent */
    const char   *file;
    int           line;
} lb_upstream_ref_t;

/* Setting handler (LB_SET_CUSTOM) for such a name: the setting's offset
 * points at an lb_upstream_ref_t in the module's conf. */
int lb_upstream_set_ref(lb_conf_t *cf, const lb_setting_t *s, config_setting_t *v, void *conf);

/* The upstream called name in cycle, or NULL. */
lb_upstream_t *lb_upstream_find(lb_cycle_t *cycle, const char *name);
/* Checks a reference to an upstream from setting v; reports a "did you
 * mean" error naming `where` when there is none. */
int lb_upstream_resolve(lb_conf_t *cf, const char *file, int line, const char *name,
                        const char *where, lb_upstream_t **out);

/* What a user of upstreams can do beyond picking servers: an upstream
 * whose settings need a capability its user lacks is refused at load. */
#define LB_UPSTREAM_CAN_PROXY_PROTOCOL  0x01    /* sends proxy_protocol headers */

/* lb_upstream_resolve for a user with the capabilities `can`
 * (LB_UPSTREAM_CAN_*); lb_upstream_resolve has none. */
int lb_upstream_resolve_for(lb_conf_t *cf, const char *file, int line, const char *name,
                            const char *where, unsigned can, lb_upstream_t **out);

/* Picks a usable server not yet in `try` (primaries first, backups when no
 * primary is usable), counts a connection against it and marks it tried.
 * A server marked failed by passive health is not usable until its
 * retry_at; then the first pick in any worker takes it as a trial
 * (try->trial). When every untried server is failed, they are used all
 * the same: passive health never refuses traffic on its own.
 * Returns NULL when no server is usable; `why` then says why. */
lb_upstream_server_t *lb_upstream_pick(lb_upstream_t *u, lb_upstream_try_t *try,
                                       const char **why);
/* What became of the server lb_upstream_pick gave: ok, it answered (a
 * connect succeeded, a udp reply came); !ok, it failed (connect refused or
 * timed out, ICMP unreachable, no udp reply in time). Feeds passive
 * health, which logs when the server is marked failed and when it is back.
 * lb_upstream_release: the connection counted by the pick is over. */
void lb_upstream_connected(lb_upstream_server_t *s, bool ok);
void lb_upstream_release(lb_upstream_server_t *s);

/* Passive health on one state, the arithmetic behind the calls above,
 * exposed for unit tests. All at time now; p->max_fails is not 0.
 * lb_upstream_fail_note: a failure; true when it marks the server failed
 * (max_fails failures within fail_timeout). A failure of a failed server
 * (its trial) puts its next trial fail_timeout away.
 * lb_upstream_fail_check: whether the server may be used: LB_OK when not
 * failed; LB_AGAIN when failed but its trial is due, which this call then
 * took (the next trial is fail_timeout away); LB_DECLINED when failed.
 * lb_upstream_fail_clear: a success; true when the server was failed. */
bool lb_upstream_fail_note(lb_upstream_peer_state_t *st, const lb_upstream_passive_t *p,
                           lb_msec_t now);
int  lb_upstream_fail_check(lb_upstream_peer_state_t *st, const lb_upstream_passive_t *p,
                            lb_msec_t now);
bool lb_upstream_fail_clear(lb_upstream_peer_state_t *st);

/* The shared state zone holds one slot per server, keyed by upstream name
 * and address. Exposed for unit tests:
 * lb_upstream_zone_slots: the slots a configuration of nservers servers
 * starts with: room for them twice, so that a reload to a configuration of
 * as many entirely different servers fits beside the generation draining.
 * lb_upstream_zone_capacity: the slots a reload needs when `used` slots
 * are taken (by any generation) and `missing` of the new configuration's
 * nservers servers have none yet: `capacity` when they fit, else enough
 * for them plus another nservers, the headroom for the next reload. */
size_t lb_upstream_zone_slots(size_t nservers);
size_t lb_upstream_zone_capacity(size_t capacity, size_t used, size_t missing,
                                 size_t nservers);

/* Smooth weighted round robin over servers[0..n) restricted to usable[i]:
 * the pure algorithm, exposed for unit tests. Returns an index or -1. */
ssize_t lb_upstream_swrr(lb_upstream_server_t *servers, size_t n, const bool *usable);

#endif
