/*
 * lb_state.c: the state blob carried across a binary upgrade (see
 * lb_state.h). This first version carries no records yet: a header with
 * the format version, which the loader checks.
 */
#include "lb_core.h"
#include "lb_state.h"

#define LB_STATE_MAGIC     "LBDSTATE"
#define LB_STATE_VERSION   1

int
lb_state_save(lb_cycle_t *cycle, u_char **blob, size_t *len)
{
    u_char  *p;

    (void) cycle;
    p = malloc(sizeof(LB_STATE_MAGIC) - 1 + 1);
    if (p == NULL) {
        lb_log_error(errno, "cannot allocate the upgrade state");
        return LB_ERROR;
    }
    memcpy(p, LB_STATE_MAGIC, sizeof(LB_STATE_MAGIC) - 1);
    p[sizeof(LB_STATE_MAGIC) - 1] = LB_STATE_VERSION;
    *blob = p;
    *len = sizeof(LB_STATE_MAGIC);
    return LB_OK;
}

int
lb_state_load(lb_cycle_t *cycle, const u_char *blob, size_t len, char *err, size_t errlen)
{
    (void) cycle;
    if (len < sizeof(LB_STATE_MAGIC)
        || memcmp(blob, LB_STATE_MAGIC, sizeof(LB_STATE_MAGIC) - 1) != 0)
    {
        snprintf(err, errlen, "the upgrade state is not lbd's");
        return LB_ERROR;
    }
    if (blob[sizeof(LB_STATE_MAGIC) - 1] != LB_STATE_VERSION) {
        snprintf(err, errlen, "the upgrade state is of version %u; this lbd reads version %u",
                 blob[sizeof(LB_STATE_MAGIC) - 1], LB_STATE_VERSION);
        return LB_ERROR;
    }
    return LB_OK;
}
