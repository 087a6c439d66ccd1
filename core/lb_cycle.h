/*
 * lb_cycle.h: one configuration generation. A cycle owns everything that a
 * configuration file produced: the global settings, the listeners, the
 * module configurations and the shared zones it declared. A reload builds
 * a new cycle beside the old one and swaps them only when it is complete.
 */
#ifndef LB_CYCLE_H
#define LB_CYCLE_H

typedef struct {
    int64_t       workers;          /* resolved: "auto" = online CPUs */
    char         *pid_file;         /* absolute */
    char         *error_log;        /* absolute, or "stderr" */
    int           log_level;        /* lb_log_level_t */
    char         *admin_socket;     /* absolute */
    lb_msec_t     shutdown_timeout;
    int64_t       max_old_generations;  /* draining generations kept by a reload */
    char         *user;             /* NULL: keep the master's user */
    int64_t       ipv6_prefix;      /* an IPv6 client counts by this network */
    lb_msec_t     upgrade_timeout;  /* a new binary's time to become ready */
    int64_t       rlimit_nofile;    /* worker_rlimit_nofile; 0: the hard limit */
} lb_core_conf_t;

/* Called for each connection a listener accepts (stream) or each datagram
 * socket it owns: the protocol module takes it over from here. */
typedef void (*lb_listener_handler_pt)(lb_conn_t *c);

/* A step an accepted stream connection goes through before the handler
 * (reading a PROXY protocol header, a TLS handshake): it takes the
 * connection over and, when done, calls lb_listener_next(c), or closes c. */
typedef void (*lb_accept_step_pt)(lb_conn_t *c);

#define LB_LISTENER_MAX_STEPS  4

struct lb_listener_s {
    const char              *name;
    const char              *protocol;
    lb_array_t               addrs;         /* lb_addr_t */
    int                      socktype;      /* SOCK_STREAM (default) or SOCK_DGRAM */
    void                   **confs;         /* per-module confs of this listener */
    lb_listener_handler_pt   handler;       /* set by the protocol module */
    /* run in order on every accepted connection before handler; added at
     * load with lb_listener_add_step */
    lb_accept_step_pt        steps[LB_LISTENER_MAX_STEPS];
    unsigned                 nsteps;
    lb_cidr_list_t          *allow;         /* NULL: no allow list */
    lb_cidr_list_t          *deny;          /* NULL: no deny list */
    const char              *file;          /* where it was declared */
    int                      line;
    /* sockets, one per address per worker slot: fds[addr * workers + slot] */
    int                     *fds;
    /* in a worker: the listening connection of each address */
    lb_conn_t              **conns;
    /* Accepted by this module's helper process, not by the workers (an
     * admin listener): one socket per address, fds[addr * workers] (every
     * slot's entry is the same). */
    lb_module_t             *helper;
    int                      unix_mode;     /* a unix socket file's mode; 0: umask's */
    bool                     optional;      /* lbd runs without it when it cannot
                                               listen (logged); its fds are then -1 */
    /* its metrics (lb_metrics.h): the protocol module adds what it moves */
    uint32_t                 m_connections;
    uint32_t                 m_received;
    uint32_t                 m_sent;
    uint32_t                 m_tls_ok;      /* TLS handshakes done, failed */
    uint32_t                 m_tls_failed;
    /* max_conns_per_ip (0: none), counted in ipcount (lb_ipcount.h) under
     * keys made from ip_key and the client's address (an IPv6 one cut to
     * ipv6_prefix bits). answers_ip_cap: the protocol module answers a
     * client over the cap itself (http: 429) when lb_conn_t.over_ip_cap
     * is set; otherwise the connection is closed at accept. */
    uint32_t                 max_conns_per_ip;
    unsigned                 ip_check_step;     /* after the PROXY step, when there is one */
    int                      ipv6_prefix;
    uint64_t                 ip_key;
    struct lb_ipcount_s     *ipcount;
    bool                     answers_ip_cap;
    uint32_t                 m_ip_refused;
};

struct lb_cycle_s {
    lb_pool_t       *pool;
    void           **confs;             /* global confs, by module index */
    lb_core_conf_t  *core;
    lb_array_t       listeners;         /* lb_listener_t * */
    lb_array_t       shm_zones;         /* lb_shm_zone_t *: zones do not move */
    lb_array_t       metrics;           /* the series it declared (lb_metrics.c) */
    lb_shm_zone_t   *metrics_zone;
    lb_access_file_t *access_files;     /* every access log path, once */
    char            *conf_file;         /* absolute */
    char            *prefix;            /* absolute, with a trailing slash */
    unsigned         generation;
    /* what is left of the file once the parts a reload may apply in place
     * are taken out (lb_reload.h): equal digests, such a reload */
    u_char           conf_digest[32];
};

extern lb_module_t  lb_core_module;

/* Whether the listener's allow/deny lists refuse the client at sa: it is
 * in deny, or allow is set and it is not in allow (so a unix socket
 * client, which no block matches, is refused by any allow list). The
 * protocol module decides what refusing means: a stream connection is
 * closed, an http request gets 403. */
bool lb_listener_denies(const lb_listener_t *ls, const struct sockaddr *sa);

/* Appends an accept step to ls (at load: merge_conf or init_conf).
 * LB_ERROR when LB_LISTENER_MAX_STEPS are taken. */
int  lb_listener_add_step(lb_listener_t *ls, lb_accept_step_pt step);
/* Hands an accepted connection to the listener's next accept step, or to
 * its handler after the last one. The connection may or may not be
 * registered with the loop yet (c->registered says). */
void lb_listener_next(lb_conn_t *c);

/* Loads and validates a configuration file. Every error is handed to
 * report (stderr when NULL) as "FILE:LINE: message". Opens no socket and
 * maps no memory. Returns the cycle, or NULL when the file has errors. */
lb_cycle_t *lb_cycle_load(const char *conf_file, const char *prefix,
                          lb_conf_report_pt report);
void        lb_cycle_free(lb_cycle_t *cycle);

/* Makes a relative "unix:" address relative to the prefix, like every
 * other path in the configuration. Reports an error when it gets too long. */
int   lb_addr_resolve_unix(lb_conf_t *cf, lb_addr_t *a);

/* path if absolute, else prefix + path, allocated from pool. */
char *lb_cycle_path(lb_pool_t *pool, const char *prefix, const char *path);
/* The whole regular file at path, at most max bytes, read into pool (with
 * a NUL after it): a file a worker may not be able to read later, read by
 * the master. LB_OK with out set; LB_ERROR with *why saying what went
 * wrong ("No such file or directory", "not a regular file", "it shrank
 * while read", or lb_cycle_file_too_large, the same pointer, for a file
 * over max). */
int   lb_cycle_read_file(lb_pool_t *pool, const char *path, size_t max, lb_str_t *out,
                         const char **why);
extern const char  lb_cycle_file_too_large[];

#endif
