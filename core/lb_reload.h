/*
 * lb_reload.h: reloads applied in place (SPEC §6). A reload whose only
 * changes are ones some module can hand to the running workers (an
 * upstream's servers) is applied by those workers between two events:
 * no new generation, no connection cut. Everything else reloads as always.
 *
 * A module registers a handler that
 *   - at every load, takes out of the parsed tree what it applies in place,
 *     so that what is left of two configurations compares by a digest;
 *   - in the master, once the new configuration is initialised, writes what
 *     changed into a message for the workers (or declines);
 *   - in a worker, applies that message.
 * The master hands the message to each worker of the generation in force
 * as a memfd over its channel (the file is never read by a worker, which
 * may lack the rights after dropping privileges).
 */
#ifndef LB_RELOAD_H
#define LB_RELOAD_H

#include "lb_core.h"
#include "lb_crypto.h"

#include <libconfig.h>

typedef struct {
    const char  *name;
    /* At load, in any process: removes from config the settings this
     * handler applies in place. */
    void       (*strip)(config_t *config);
    /* In the master: what changed from old to cycle in this handler's
     * settings, written to msg, and said in summary ("upstream \"web\" (1
     * server added)"). LB_OK: in place; LB_DECLINED: nothing of its own
     * changed; LB_ERROR: cannot be applied in place (summary says why). */
    int        (*prepare)(lb_cycle_t *old, lb_cycle_t *cycle, FILE *msg, char *summary,
                          size_t size);
    /* In a worker, between events: applies the message prepare wrote.
     * LB_OK or LB_ERROR (logged; the worker serves on as it was). */
    int        (*apply)(lb_cycle_t *cycle, const u_char *msg, size_t len);
} lb_reload_handler_t;

#define LB_RELOAD_MAX_HANDLERS  4
/* The tag of the channel message carrying the memfd (log files carry an
 * absolute path instead). */
#define LB_RELOAD_CHANNEL_TAG   "@reload"

/* Registers h (idempotent); a module does it when its configuration is
 * created, before the load's digest is taken. */
void lb_reload_handler_add(const lb_reload_handler_t *h);

/* At load, once the tree is parsed and checked: the digest of what is
 * left of config once every handler took its part out. It changes
 * config (the load is done with it). */
void lb_reload_digest(config_t *config, u_char digest[LB_SHA256_LEN]);

/* In the master, for a freshly loaded cycle: whether it differs from old
 * only in what handlers apply in place. */
bool lb_reload_candidate(const lb_cycle_t *old, const lb_cycle_t *cycle);

/* In the master, once cycle is initialised (its zones mapped from old's,
 * init_master run) and before it is committed: LB_OK with *fd a memfd
 * holding the workers' message and summary saying what changed;
 * LB_DECLINED when it must be a full reload after all (summary says
 * why: nothing a worker can take changed, a shared zone had to grow). */
int  lb_reload_prepare(lb_cycle_t *old, lb_cycle_t *cycle, int *fd, char *summary,
                       size_t size);

/* In a worker, between events: applies the message in fd and closes it. */
void lb_reload_apply(lb_cycle_t *cycle, int fd);

#endif
