/*
 * lb_module.h: the module interface (SPEC §10). A module is one exported
 * lb_module_t: its type, the configuration settings it owns and the hooks
 * the core calls. lbd's own features are modules built on exactly this
 * interface; docs/modules.md walks through writing one.
 */
#ifndef LB_MODULE_H
#define LB_MODULE_H

#include <libconfig.h>

typedef enum {
    LB_MODULE_CORE = 0,
    LB_MODULE_STREAM,
    LB_MODULE_HTTP,
    LB_MODULE_BALANCER,     /* ctx: its lb_upstream_balancer_t (lb_upstream.h) */
} lb_module_type_t;

/* Configuration contexts: where a setting may appear. */
#define LB_CTX_GLOBAL    0x01
#define LB_CTX_UPSTREAM  0x02       /* one group inside upstreams = { } */
#define LB_CTX_SERVER    0x04       /* one entry of an upstream's servers */
#define LB_CTX_LISTENER  0x08       /* one entry of listeners = ( ) */
#define LB_CTX_ROUTE     0x10       /* one entry of a listener's routes */

typedef enum {
    LB_SET_BOOL,        /* int: 0 or 1 */
    LB_SET_INT,         /* int64_t, checked against min..max when either is set */
    LB_SET_STR,         /* char *, copied into the cycle's pool */
    LB_SET_DURATION,    /* lb_msec_t: "250ms", "5s", ... or integer seconds */
    LB_SET_SIZE,        /* int64_t bytes: "16k", ... or integer bytes */
    LB_SET_ENUM,        /* int: index into enum_values */
    LB_SET_ADDR,        /* lb_addr_t */
    LB_SET_ADDRS,       /* lb_array_t of lb_addr_t: a string or an array of them */
    LB_SET_STRS,        /* lb_array_t of char *: a string or an array of them */
    LB_SET_CUSTOM,      /* the setting's own handler parses it */
} lb_setting_type_t;

#define LB_SETTING_REQUIRED  0x01
/* A route's action (`upstream`, `return`, ...): a route has exactly one;
 * the route module counts the settings so flagged, whichever module owns
 * them, and the owner installs the route's handler (lb_http_route.h). */
#define LB_SETTING_ACTION    0x02

/* Parses value v of setting s into conf. Reports errors with
 * lb_conf_error(cf, v, ...) and returns LB_ERROR; LB_OK otherwise. */
typedef int (*lb_setting_handler_pt)(lb_conf_t *cf, const lb_setting_t *s,
                                     config_setting_t *v, void *conf);

struct lb_setting_s {
    const char             *name;
    lb_setting_type_t       type;
    unsigned                contexts;       /* LB_CTX_* mask */
    const char             *default_value;  /* in config syntax, or NULL */
    int64_t                 min, max;       /* INT, DURATION (ms), SIZE */
    size_t                  offset;         /* into the module's conf */
    const char *const      *enum_values;    /* ENUM: NULL-terminated */
    lb_setting_handler_pt   set;            /* CUSTOM */
    unsigned                flags;
};

#define lb_setting_end  { NULL, 0, 0, NULL, 0, 0, 0, NULL, NULL, 0 }

/* A command a module adds to lbctl (`lbctl route ...`). It runs in lbctl,
 * on a configuration loaded from the file alone, without the master:
 * argv[0] is the command's name. Returns lbctl's exit status; every
 * failure is one line on stderr. */
typedef struct {
    const char  *name;
    const char  *usage;         /* "route METHOD URL [-H 'Name: value' ...]" */
    int        (*run)(lb_cycle_t *cycle, int argc, char **argv);
} lb_ctl_command_t;

/* A helper process a module runs beside the workers (the health prober,
 * the admin server): the master forks it for every configuration
 * generation that wants it, supervises it and starts it again when it dies,
 * as it does workers, and stops it with its generation (a reload starts
 * the new generation's helper first). It runs the core's event loop, with
 * the workers' privileges (`user`): what needs more is opened before, in
 * the module's init_master. Its log files are reopened with the workers'. */
typedef struct {
    const char  *name;          /* "health prober": in logs, and as the
                                   process name "lbd: NAME" */
    /* In the master: how many of it the configuration wants (0: none,
     * nothing to do; at most LB_HELPER_MAX_INSTANCES). */
    unsigned   (*count)(lb_cycle_t *cycle);
    /* In the helper, once its loop exists: set up its events (timers,
     * connections). LB_OK, or LB_ERROR (logged): it exits and is started
     * again, after a pause if that keeps happening. */
    int        (*start)(lb_cycle_t *cycle, unsigned instance);
    /* In the helper when it must stop (a reload, a shutdown, the master
     * gone): let go of what it holds. It exits right after. May be NULL. */
    void       (*stop)(lb_cycle_t *cycle);
} lb_helper_t;

#define LB_HELPER_MAX_INSTANCES  4

struct lb_module_s {
    const char             *name;           /* "stream_tcp", as in --without-stream_tcp */
    lb_module_type_t        type;
    /* Listener protocols this module implements or applies to; NULL means
     * its listener and route settings apply to every protocol. */
    const char *const      *protocols;
    const lb_setting_t     *settings;       /* terminated by lb_setting_end */
    unsigned                conf_contexts;  /* contexts create_conf is called for */

    /* Allocates the module's configuration for one instance of context ctx
     * from cf->pool; setting defaults are applied after it. NULL: no memory. */
    void *(*create_conf)(lb_conf_t *cf, unsigned ctx);
    /* Called once the block of context ctx is parsed: fill derived fields,
     * cross-check settings. parent is the enclosing context's conf of this
     * module when it has one (a route's listener), else NULL. */
    int   (*merge_conf)(lb_conf_t *cf, unsigned ctx, void *parent, void *conf);
    /* Called once the whole file is parsed: resolve references between
     * blocks (an upstream named by a listener). */
    int   (*init_conf)(lb_conf_t *cf);

    /* Process hooks: in the master after a configuration is loaded (before
     * workers fork), in each worker when it starts and when it exits (see
     * also stop_worker, below). */
    int   (*init_master)(lb_cycle_t *cycle);
    int   (*init_worker)(lb_cycle_t *cycle);
    void  (*exit_worker)(lb_cycle_t *cycle);

    /* Type-specific interface: for http modules the request phases and
     * response filters they join (lb_http_module_t); NULL for others. */
    const void             *ctx;

    /* Set by the core at start-up. */
    size_t                  index;

    /* lbctl commands the module adds, ended by a { NULL } entry; or NULL. */
    const lb_ctl_command_t *commands;
    /* LB_MODULE_MERGE_ON_ERROR: merge_conf runs even when its block had an
     * error (cf->block_failed is then true), for a module whose merge
     * parses nested blocks (a listener's routes), so that their errors are
     * reported in the same pass; it must cope with settings that kept
     * their defaults. Other merges run only on a block without errors.
     * LB_MODULE_DGRAM: the protocols this module serves carry datagrams:
     * their listeners get SOCK_DGRAM sockets (ls->socktype, set before
     * the block is parsed), which are not accepted from but handed to the
     * handler each, and take no accept steps. */
    unsigned                flags;

    /* Called once in a worker when its graceful stop begins (QUIT, an old
     * generation after a reload, the master gone), after it stopped
     * accepting: the module ends what only waits for work (idle
     * keep-alive connections, idle pooled connections, datagram
     * sessions). Work in flight is left to finish; the worker exits when
     * its last connection closes, or at shutdown_timeout. Last in the
     * struct so that initialisers which end earlier leave it NULL. */
    void  (*stop_worker)(lb_cycle_t *cycle);

    /* The module's helper process, or NULL (see lb_helper_t). */
    const lb_helper_t      *helper;

    /* A binary upgrade (SPEC §8, lb_state.h): the state that must live on
     * in the new master. state_save runs in the old master: it writes the
     * module's records (lb_state_record_begin with the module's name, then
     * fields, then lb_state_record_end), keyed by names (upstream, server
     * as written), never by an index or a memory layout. LB_OK, or
     * LB_ERROR (no upgrade). state_load runs in the new master, once its
     * zones are mapped and every init_master ran, before workers fork,
     * for each record bearing the module's name: it applies what still
     * matches the new configuration. LB_OK when applied; LB_DECLINED when
     * the record's type is unknown or names what the configuration dropped
     * (skipped, not an error: the blob was checked whole before). Either
     * may be NULL. */
    int   (*state_save)(lb_cycle_t *cycle, lb_state_writer_t *w);
    int   (*state_load)(lb_cycle_t *cycle, const lb_state_record_t *r);
};

#define LB_MODULE_MERGE_ON_ERROR  0x01
#define LB_MODULE_DGRAM           0x02

/* The module command called name, or NULL. */
const lb_ctl_command_t *lb_module_command(const char *name);

extern lb_module_t  *lb_modules[];          /* generated by configure */
extern const char   *lb_module_names[];
extern lb_module_t **lb_all_modules;        /* the core module, then lb_modules */
extern size_t        lb_nmodules;

int lb_modules_init(void);

/* The configuration of module m in a context instance's conf array. */
#define lb_get_conf(confs, m)  ((confs)[(m).index])

#endif
