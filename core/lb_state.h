/*
 * lb_state.h: the runtime state that lives on across a binary upgrade
 * (SPEC §8): server health, drain and disable, runtime weights, slow-start
 * clocks, resolved addresses, sticky tables and the drawn sticky secret,
 * counters, the TLS ticket secret. The old master serialises it into a
 * self-describing, versioned blob that travels in the handoff message; the
 * new master checks the whole blob, then applies it to its own shared
 * zones. No memory layout is shared between the two binaries: the blob is
 * the only contract, and a record the new binary does not know is skipped.
 */
#ifndef LB_STATE_H
#define LB_STATE_H

/* In the old master: the state of cycle as a blob (malloc'd; the caller
 * frees it). LB_OK, or LB_ERROR (logged). */
int  lb_state_save(lb_cycle_t *cycle, u_char **blob, size_t *len);

/* In the new master, after the shared zones are mapped and every module's
 * init_master ran, before any worker forks: checks the whole blob, then
 * applies what still matches the new configuration. LB_OK; LB_ERROR with a
 * one-line reason in err when the blob is corrupt or of an unknown
 * version (nothing applied then). */
int  lb_state_load(lb_cycle_t *cycle, const u_char *blob, size_t len,
                   char *err, size_t errlen);

#endif
