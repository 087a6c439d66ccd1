/*
 * lb_upstream.h: backend server groups (SPEC §3.2) as the other modules see
 * them: find an upstream by name, connect to one of its servers through
 * the peer layer (which picks it with the upstream's balancer, retries and
 * feeds passive health), and the balancer interface itself. Server state
 * that must be the same in every worker and survive reloads (active
 * connections, failures, down, slow start) lives in shared memory.
 */
#ifndef LB_UPSTREAM_H
#define LB_UPSTREAM_H

#include "lb_core.h"

#define LB_UPSTREAM_MAX_SERVERS  1024
/* Servers of all upstreams together: bounds the shared state zone (about
 * 248 bytes a slot, two slots a server) to some 50 MB. */
#define LB_UPSTREAM_MAX_TOTAL_SERVERS  100000

/* One server's state shared by all workers, kept across reloads while the
 * upstream still has a server at that address. The passive health record
 * (fails .. retry_at) changes under `lock` and is read without it. */
typedef struct {
    uint32_t       active;      /* open connections, all workers */
    uint32_t       fails;       /* failures in the window that began at fail_start */
    uint32_t       down;        /* set by health checks */
    uint32_t       failed;      /* 1: max_fails reached, and no success since */
    uint64_t       connects;    /* total connections made */
    lb_msec_t      back_at;     /* when it last came back (slow_start), 0: never left */
    lb_msec_t      fail_start;  /* the first failure of the window */
    lb_msec_t      retry_at;    /* a failed server gets its next trial then */
    lb_shm_lock_t  lock;
    /* runtime changes (the admin API), read by every worker at its next
     * pick; kept across reloads */
    uint32_t       drain;       /* no new connections but sticky ones */
    uint32_t       disabled;    /* no connections at all */
    uint32_t       weight_set;  /* 1: `weight` was set at runtime */
    int64_t        weight;      /* in force: the configured one unless set
                                   at runtime (0: no new connections) */
    int64_t        weight_conf; /* the configured one, as last loaded: a
                                   reload that changes it drops the runtime one */
    /* active health checks: written by the prober alone */
    uint32_t       checked;     /* 1 once a configuration with checks took the
                                   server (start_down applies before that only) */
    uint64_t       checks_failed;   /* total, for metrics */
    char           down_why[64];    /* why the prober took it out */
    uint32_t       ok_run;      /* checks passed in a row, up to rise: a */
    uint32_t       fail_run;    /* prober that starts goes on from them */
} lb_upstream_peer_state_t;

/* passive = { max_fails; fail_timeout; }: after max_fails failures within
 * fail_timeout a server is not used for fail_timeout; then one connection
 * tries it, and a success brings it back. max_fails = 0: never. */
typedef struct {
    int64_t    max_fails;
    lb_msec_t  fail_timeout;
} lb_upstream_passive_t;

typedef struct lb_sticky_key_s         lb_sticky_key_t;
typedef struct lb_upstream_s           lb_upstream_t;
typedef struct lb_upstream_peer_s      lb_upstream_peer_t;

/* sticky = { mode; cookie; ttl; secret_file; path; domain; table_size; } */
typedef enum {
    LB_STICKY_NONE = 0,
    LB_STICKY_COOKIE,
    LB_STICKY_SOURCE_IP,
} lb_sticky_mode_t;

typedef struct {
    int               mode;         /* lb_sticky_mode_t */
    char             *cookie;       /* its name */
    lb_msec_t         ttl;
    char             *secret_file;  /* NULL: the master's own secret */
    char             *path;
    char             *domain;       /* NULL: none */
    int64_t           table_size;   /* source_ip: entries */
    lb_sticky_key_t  *key;          /* cookie: signs and checks */
    lb_shm_zone_t    *zone;         /* source_ip: the table */
} lb_upstream_sticky_t;
typedef struct lb_upstream_balancer_s  lb_upstream_balancer_t;

typedef struct {
    lb_addr_t                  addr;
    int64_t                    weight;
    int64_t                    max_conns;   /* 0: unlimited */
    int                        backup;
    lb_upstream_peer_state_t  *state;       /* in shared memory */
    uint64_t                   sticky_id;   /* names it in sticky cookies and tables */
    const char                *name;        /* "host:port" as written when the address
                                               is a host name; NULL for an IP address */
    int64_t                    share;       /* servers its name resolved to (weight is
                                               shared among them); 1 otherwise */
    int64_t                    current;     /* smooth round robin, per worker */
    lb_upstream_t             *upstream;    /* its own, for passive health and logs */
    uint32_t                   m_requests;  /* metrics: connections or requests it got */
    uint32_t                   m_failures;  /* ... and those it failed */
} lb_upstream_server_t;

struct lb_upstream_s {
    char                  *name;
    lb_upstream_server_t  *servers;         /* primaries first, then backups */
    size_t                 nservers;
    size_t                 nprimary;
    const lb_upstream_balancer_t  *balancer;   /* `balance` */
    void                  *balancer_data;   /* what its init_upstream built */
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
    lb_msec_t              resolve_interval;    /* host-name servers: looked up again */
    int64_t                proxy_protocol;  /* 0, or the PROXY version sent to servers */
    lb_upstream_passive_t  passive;
    lb_msec_t              slow_start;      /* 0: off */
    unsigned               next_upstream;   /* LB_NEXT_*: failures tried elsewhere */
    lb_upstream_sticky_t   sticky;
    lb_array_t             server_list;     /* while parsing */
    void                 **confs;           /* every module's conf of this upstream */

    /* A reload applied in place (lb_upstream_update.c) gives a worker a
     * new version of the upstream: the settings, with other servers. The
     * upstream the configuration loaded is the handle every user keeps;
     * lb_upstream_current says which version new connections use. A
     * version lives in its own pool until no connection uses it. */
    lb_upstream_t         *latest;          /* of the handle: the version in
                                               force; NULL: the handle itself */
    lb_upstream_t         *handle;          /* of a version: its handle */
    lb_pool_t             *pool;            /* of a version: its memory */
    uint32_t               refs;            /* servers taken and not released,
                                               in this worker */
    lb_msec_t              idle_since;      /* a replaced version: unused since */
    lb_upstream_t         *next_retired;
};

#define LB_UPSTREAM_KEEPALIVE_AUTO  (-1)

/* next_upstream: which failures send a connection (http: an idempotent
 * request that can be sent again whole) to another server. */
#define LB_NEXT_ERROR           0x01    /* connect or TLS failed; http: closed before answering */
#define LB_NEXT_TIMEOUT         0x02    /* connect_timeout */
#define LB_NEXT_INVALID_HEADER  0x04    /* http: an invalid response head */
#define LB_NEXT_500             0x08
#define LB_NEXT_502             0x10
#define LB_NEXT_503             0x20
#define LB_NEXT_504             0x40
#define LB_NEXT_429             0x80
#define LB_NEXT_STATUSES        (LB_NEXT_500 | LB_NEXT_502 | LB_NEXT_503 | LB_NEXT_504 \
                                 | LB_NEXT_429)

/* The LB_NEXT_ bit of an http status, 0 for one next_upstream cannot name. */
unsigned lb_upstream_next_status(int status);

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

/* The version of u (a handle) that new connections use. */
static inline lb_upstream_t *
lb_upstream_current(lb_upstream_t *u)
{
    return u->latest ? u->latest : u;
}

/* Reloads applied in place, in a worker: fn(old, u) is called once u, a
 * new version of an upstream, is built and before it is in force, for a
 * module to give u what it keeps per server (u->confs is u's own copy of
 * old's, and u->pool its memory). Up to 8; at init_worker. */
typedef void (*lb_upstream_update_pt)(lb_upstream_t *old, lb_upstream_t *u);
int  lb_upstream_on_update(lb_upstream_update_pt fn);
/* The index in u of the server that is s (same address, same name as
 * written), or -1. */
ssize_t lb_upstream_server_index(const lb_upstream_t *u, const lb_upstream_server_t *s);
/* Within the module (lb_upstream_update.c): the reload handler
 * (lb_reload.h), registered at load; the shared state zone of cycle; and
 * forgetting the sticky cookies verified lately, which name servers of
 * the version replaced. */
void lb_upstream_update_register(void);
lb_shm_zone_t *lb_upstream_zone(lb_cycle_t *cycle);
void lb_upstream_sticky_forget(void);

/* The upstream called name in cycle, or NULL. */
lb_upstream_t *lb_upstream_find(lb_cycle_t *cycle, const char *name);
/* Every upstream of cycle, in the file's order: *n of them. */
lb_upstream_t **lb_upstream_all(lb_cycle_t *cycle, size_t *n);
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

/* The peer layer ---------------------------------------------------------
 *
 * One connection to a server of an upstream, from the choice of the server
 * to a connection ready for bytes: pick (the sticky target first, else the
 * balancer) -> an idle connection from the caller's pool -> connect ->
 * connect_timeout -> PROXY header -> upstream TLS -> on failure the next
 * server, while `retries` allows -> give up with the reason. tcp, udp and
 * http listeners all connect through it. */

/* What became of a server's connection, for the balancer's free and for
 * passive health. */
typedef enum {
    LB_PEER_UNUSED = 0,     /* let go without a verdict */
    LB_PEER_SERVED,         /* the server answered */
    LB_PEER_FAILED,         /* it failed (refused, timed out, broke the protocol) */
} lb_upstream_outcome_t;

/* Why lb_upstream_peer_connect gave up (pr->gave_up). */
typedef enum {
    LB_PEER_GAVE_NONE = 0,
    LB_PEER_NO_SERVER,      /* none usable: down, at max_conns, or all tried */
    LB_PEER_RETRIES_OUT,    /* `retries` other servers failed too */
    LB_PEER_LOCAL,          /* this host is short of descriptors, memory or ports */
} lb_upstream_gave_up_t;

struct lb_upstream_peer_s {
    lb_upstream_t          *u;
    lb_upstream_try_t       try;
    lb_upstream_server_t   *server;     /* picked and counted; NULL: none */
    lb_upstream_server_t   *last;       /* the last one picked, kept after it is let go */
    lb_conn_t              *c;          /* the connection to it */
    int                     socktype;   /* SOCK_STREAM (default) or SOCK_DGRAM */

    /* set by the caller before connecting */
    lb_conn_t              *client;     /* PROXY header source; NULL: never one */
    uint64_t                log_id;     /* log lines say "*ID client TEXT: " */
    const char             *client_text;
    const struct sockaddr  *client_addr;    /* sticky source_ip: its key; may be NULL */
    lb_log_ratelimit_t     *log_limit;  /* non-NULL: failure lines rate limited */
    const char             *local_action;   /* what a local error does: "answering 503" */
    uint64_t                key;        /* the balancer key's hash (has_key) */
    bool                    has_key;
    lb_upstream_server_t   *sticky;     /* taken first while usable */
    /* An idle connection to pr->server, from the caller's pool: LB_OK with
     * pr->c set, or LB_DECLINED. NULL: no pool. */
    int                   (*pool_get)(lb_upstream_peer_t *pr);
    /* The end of a connect that returned LB_AGAIN: LB_OK, ready; LB_ERROR,
     * gave up (gave_up and why say why). Never called from inside
     * lb_upstream_peer_connect. */
    void                  (*ready)(lb_upstream_peer_t *pr, int rc);
    void                   *data;

    /* set by the layer */
    lb_upstream_server_t   *sticky_hit; /* the sticky target it started with */
    void                   *balancer_data;
    bool                    reused;     /* c came from the pool */
    bool                    timed_out;  /* the last failure was a timeout */
    lb_upstream_gave_up_t   gave_up;
    const char             *why;        /* static text, when it gave up */
    lb_msec_t               connect_start;
    lb_msec_t               connect_msec;   /* the connect took; 0 from the pool */
};

/* A balancer: how a server is chosen (SPEC §3.2 `balance`). The built-in
 * ones are round_robin, least_conn, random_two and hash; a module adds one
 * by being of type LB_MODULE_BALANCER with its lb_upstream_balancer_t as
 * ctx (docs/modules.md). */
#define LB_BALANCER_KEY  0x01   /* get uses the peer's key: callers compute it */

struct lb_upstream_balancer_s {
    const char  *name;
    unsigned     flags;         /* LB_BALANCER_* */
    /* At load, once an upstream's servers are known: build what get needs
     * into u->balancer_data (from cf->pool). NULL: nothing to build. */
    int        (*init_upstream)(lb_conf_t *cf, lb_upstream_t *u);
    /* A peer starts (its key is set). NULL: nothing to do. */
    void       (*init_peer)(lb_upstream_peer_t *pr);
    /* Chooses among servers[0..n) those with usable[i] (the primaries,
     * or the backups when backup), may clear entries of usable; returns
     * an index or -1. */
    ssize_t    (*get)(lb_upstream_peer_t *pr, lb_upstream_server_t *servers, size_t n,
                      bool backup, bool *usable);
    /* The connection to s is over, with that outcome. NULL: nothing. */
    void       (*free)(lb_upstream_server_t *s, lb_upstream_outcome_t outcome);
};

/* The balancer called name: a built-in one or a module's; NULL if none. */
const lb_upstream_balancer_t *lb_upstream_balancer_find(const char *name);

extern const lb_upstream_balancer_t  lb_upstream_round_robin;
extern const lb_upstream_balancer_t  lb_upstream_least_conn;
extern const lb_upstream_balancer_t  lb_upstream_random_two;
extern const lb_upstream_balancer_t  lb_upstream_hash;

/* Starts pr on u: SOCK_STREAM, nothing tried. */
void lb_upstream_peer_init(lb_upstream_peer_t *pr, lb_upstream_t *u);
/* The client's address (sticky source_ip's key; the balancer key of a
 * stream, when the balancer takes one; log lines without client_text). */
void lb_upstream_peer_client_addr(lb_upstream_peer_t *pr, const struct sockaddr *sa);
/* Picks a server and connects to it (or takes an idle connection from the
 * pool), trying other servers after failures. LB_OK: pr->c is ready
 * (pr->server its server); LB_AGAIN: pr->ready will say; LB_ERROR: gave up
 * (pr->gave_up, pr->why), nothing held. */
int  lb_upstream_peer_connect(lb_upstream_peer_t *pr);
/* A new connection to pr->server again (the one from the pool went
 * stale): as lb_upstream_peer_connect, without a pick. */
int  lb_upstream_peer_reopen(lb_upstream_peer_t *pr);
/* The server failed after its connection was ready (it closed it, or broke
 * the protocol before answering): counted, the connection closed, and the
 * next server tried as lb_upstream_peer_connect does. what: as in
 * "connect() failed to", followed by the server's address. */
int  lb_upstream_peer_next(lb_upstream_peer_t *pr, int err, const char *what);
/* Lets go of the server: pr->c is closed unless the caller took it (set it
 * to NULL, to keep it in a pool); the server's connection count and the
 * balancer are told. */
void lb_upstream_peer_free(lb_upstream_peer_t *pr, lb_upstream_outcome_t outcome);

/* The balancer key of a stream or datagram client: a hash of its address
 * (not the port); and the hash of any key, the same in every instance. */
uint64_t lb_upstream_addr_key(const struct sockaddr *sa);
uint64_t lb_upstream_key_hash(const void *data, size_t len);

/* Sticky sessions. lb_upstream_server_by_id: the server a sticky id
 * names, or NULL. lb_upstream_sticky_cookie: the cookie value naming s
 * (u->sticky.mode is cookie), valid for ttl from now; its length, 0 on
 * failure. lb_upstream_sticky_check: the server a cookie value names, or
 * NULL with *why ("bad signature", "expired", "unknown server", ...);
 * *renew set when the cookie is past half its life. */
lb_upstream_server_t *lb_upstream_server_by_id(lb_upstream_t *u, uint64_t id);
size_t lb_upstream_sticky_cookie(lb_upstream_t *u, const lb_upstream_server_t *s, char *out,
                                 size_t size);
lb_upstream_server_t *lb_upstream_sticky_check(lb_upstream_t *u, const char *value,
                                               size_t len, const char **why, bool *renew);

/* The effective weight of s now, in hundredths: its weight, shared with
 * the other addresses of its host name, ramped up over slow_start after it
 * came back. Inline for the common case, a plain weight. */
int64_t lb_upstream_weight_now(const lb_upstream_server_t *s, lb_msec_t now);

/* The weight in force: the configured one, or what the admin API set. */
static inline int64_t
lb_upstream_server_weight(const lb_upstream_server_t *s)
{
    return s->state ? __atomic_load_n(&s->state->weight, __ATOMIC_RELAXED) : s->weight;
}

static inline int64_t
lb_upstream_weight(const lb_upstream_server_t *s, lb_msec_t now)
{
    if (s->share <= 1 && (s->upstream == NULL || s->upstream->slow_start == 0)) {
        return lb_upstream_server_weight(s) * 100;
    }
    return lb_upstream_weight_now(s, now);
}

/* Picks a usable server not yet in pr->try (the sticky target when usable,
 * else primaries first, backups when no primary is usable), counts a
 * connection against it and marks it tried. A server marked failed by
 * passive health is not usable until its retry_at; then the first pick in
 * any worker takes it as a trial (try.trial). When every untried server is
 * failed, they are used all the same: passive health never refuses
 * traffic on its own. Returns NULL when no server is usable; `why` then
 * says why. */
lb_upstream_server_t *lb_upstream_pick(lb_upstream_peer_t *pr, const char **why);
/* What became of the server lb_upstream_pick gave: ok, it answered (a
 * connect succeeded, a udp reply came); !ok, it failed (connect refused or
 * timed out, ICMP unreachable, no udp reply in time). Feeds passive
 * health, which logs when the server is marked failed and when it is back.
 * lb_upstream_release: the connection counted by the pick is over, with
 * that outcome (for the balancer). */
void lb_upstream_connected(lb_upstream_server_t *s, bool ok);
void lb_upstream_release(lb_upstream_server_t *s, lb_upstream_outcome_t outcome);

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

/* A binary upgrade (lb_state.h): the module's state_save and state_load
 * (lb_upstream_state.c); the server of upstream `upstream` written as
 * `server` in the file (its host name:port, or its address) at address
 * `addr`, or NULL; the text a server is written as; the drawn sticky
 * secret (NULL: none drawn) and taking one from the old master, which
 * makes the cookie key again of every upstream that uses it. */
int  lb_upstream_state_save(lb_cycle_t *cycle, lb_state_writer_t *w);
int  lb_upstream_state_load(lb_cycle_t *cycle, const lb_state_record_t *r);
lb_upstream_server_t *lb_upstream_server_find(lb_cycle_t *cycle, const char *upstream,
                                              const char *server, const char *addr);
#define lb_upstream_server_written(s)  ((s)->name ? (s)->name : (s)->addr.text)
const u_char *lb_upstream_sticky_secret_get(size_t *len);
int  lb_upstream_sticky_secret_set(lb_cycle_t *cycle, const u_char *secret, size_t len);

/* Smooth weighted round robin over servers[0..n) restricted to usable[i],
 * with each server's lb_upstream_weight at now: the pure algorithm, exposed
 * for unit tests and for balancers that break ties with it. Returns an
 * index or -1. */
ssize_t lb_upstream_swrr(lb_upstream_server_t *servers, size_t n, const bool *usable,
                         lb_msec_t now);

#endif
