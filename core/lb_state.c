/*
 * lb_state.c: the state blob carried across a binary upgrade (see
 * lb_state.h): every module writes its records with its state_save hook,
 * and gets back the records of its name through state_load. The format
 * itself is in lb_state_codec.c.
 */
#include "lb_core.h"
#include "lb_state.h"

int
lb_state_save(lb_cycle_t *cycle, u_char **blob, size_t *len)
{
    lb_state_writer_t  w;
    lb_module_t       *m;
    size_t             i;

    lb_time_update();
    lb_state_writer_init(&w);
    for (i = 0; i < lb_nmodules; i++) {
        m = lb_all_modules[i];
        if (m->state_save && m->state_save(cycle, &w) != LB_OK) {
            lb_log_error(0, "module %s cannot save its state for the upgrade", m->name);
            free(w.buf);
            return LB_ERROR;
        }
    }
    if (lb_state_writer_finish(&w, blob, len) != LB_OK) {
        lb_log_error(ENOMEM, "cannot build the upgrade state");
        return LB_ERROR;
    }
    return LB_OK;
}

static lb_module_t *
lb_state_module(const char *name)
{
    size_t  i;

    for (i = 0; i < lb_nmodules; i++) {
        if (strcmp(lb_all_modules[i]->name, name) == 0) {
            return lb_all_modules[i];
        }
    }
    return NULL;
}

int
lb_state_load(lb_cycle_t *cycle, const u_char *blob, size_t len, char *err, size_t errlen)
{
    lb_state_record_t   r;
    lb_module_t        *m;
    size_t              off = 0, applied = 0, skipped = 0;

    if (lb_state_check(blob, len, err, errlen) != LB_OK) {
        return LB_ERROR;
    }
    lb_time_update();
    while (lb_state_next(blob, len, &off, &r) == LB_OK) {
        m = lb_state_module(r.module);
        /* a module this binary lacks, or a record it does not know, or one
         * that names what the new configuration dropped: skipped, not an
         * error (the blob was checked whole) */
        if (m && m->state_load && m->state_load(cycle, &r) == LB_OK) {
            applied++;
        } else {
            skipped++;
        }
    }
    lb_log_notice("upgrade state: %zu records applied, %zu skipped (unknown or no longer "
                  "configured)", applied, skipped);
    return LB_OK;
}
