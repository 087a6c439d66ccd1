/*
 * lb_process.h: the master and worker processes (SPEC §5, §6) and the
 * listening sockets they share.
 */
#ifndef LB_PROCESS_H
#define LB_PROCESS_H

#define LB_MAX_WORKERS  256

/* The sigqueue(2) value lbctl sends with HUP to ask for an answer. */
#define LB_CTL_RELOAD   0x4c42
/* The master's SIGUSR1 answer carries what it did: the generation in
 * force, with LB_CTL_IN_PLACE when the running workers took the change
 * (lb_reload.h) instead of a new generation. */
#define LB_CTL_IN_PLACE    0x40000000
#define LB_CTL_GENERATION  0x3fffffff

extern lb_cycle_t  *lb_cycle;           /* the configuration in force */
extern time_t       lb_master_started_at;   /* wall clock; children inherit it */
extern int          lb_worker_slot;     /* in a worker: its slot; -1 in the master */
extern bool         lb_worker_quitting; /* in a worker: graceful shutdown started */

/* Opens (or reuses from the previous generation) one SO_REUSEPORT socket per
 * worker slot for every listening address of cycle, and fills each
 * listener's fds. On failure logs one line naming the address and returns
 * LB_ERROR; sockets of the previous generation are untouched. */
int  lb_sockets_open(lb_cycle_t *cycle);
/* Closes the sockets no listener of cycle uses any more. */
void lb_sockets_close_unused(lb_cycle_t *cycle);
void lb_sockets_close_all(void);
/* Binary upgrade: the open listening sockets (i from 0; false past the
 * end), one taken over from the old master (LB_OK; LB_DECLINED when fd is
 * not a socket of that kind bound to addr; LB_ERROR), and closing every
 * copy without removing unix socket files (the new master listens on
 * them). */
size_t lb_sockets_count(void);
bool lb_sockets_get(size_t i, const lb_addr_t **addr, int *socktype, int *slot, int *fd);
int  lb_sockets_adopt(const lb_addr_t *addr, int socktype, int slot, int fd);
void lb_sockets_forget_all(void);
/* In a worker (helper NULL): closes the inherited sockets of every other
 * slot and of the helpers' listeners. In a helper process (slot 0): closes
 * every socket but those of its module's listeners. */
void lb_sockets_keep_slot(lb_cycle_t *cycle, int slot, lb_module_t *helper);

/* Sent by a worker to the master once it has stopped accepting. */
#define LB_SIG_STOPPED  (SIGRTMIN + 1)

/* Starts accepting on this worker's sockets of every listener. */
int  lb_listeners_start(lb_cycle_t *cycle, int slot);
void lb_listeners_stop(lb_cycle_t *cycle);
/* In a helper process: starts accepting on the listeners served by its
 * module m (ls->helper == m). */
int  lb_listeners_start_helper(lb_cycle_t *cycle, lb_module_t *m);

/* In a process the master forked (a worker, a helper), after its loop is
 * created: calls gone() from the loop once the master has died, however it
 * died, so that the process stops instead of serving on without a master.
 * gone() runs inside an event handler: it should only set a flag. Works
 * across setuid(2). LB_OK, or LB_ERROR (logged). */
int  lb_master_watch_start(void (*gone)(void));
/* Stops watching (a process that is stopping anyway): closes the pipe. */
void lb_master_watch_stop(void);

/* Creates the master's watch pipe, opens the sockets, maps shared memory
 * and runs the modules' init_master for the first configuration. LB_OK or
 * LB_ERROR (logged). */
int  lb_master_init(lb_cycle_t *cycle);
/* The workers of older generations still finishing their connections
 * (SPEC §6), as the master last published them; any process the master
 * forked may ask. memory_bytes sums their private resident memory. */
typedef struct {
    unsigned   generations;
    unsigned   workers;
    uint64_t   memory_bytes;
} lb_draining_t;

void lb_master_draining(lb_draining_t *d);

/* Runs the master until it exits; returns the process exit status. */
int  lb_master_run(lb_cycle_t *cycle, bool foreground);
/* Runs fn once in the master when its loop starts: after daemonizing, so
 * that a thread it starts lives in the process that stays (init_master
 * runs before). Up to 8; LB_ERROR when full. A call once the loop runs
 * calls fn at once. */
int  lb_master_at_start(void (*fn)(void));

#endif
