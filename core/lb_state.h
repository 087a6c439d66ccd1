/*
 * lb_state.h: the runtime state that lives on across a binary upgrade
 * (SPEC §8): server health, drain and disable, runtime weights, slow-start
 * clocks, resolved addresses, sticky tables and the drawn sticky secret,
 * counters, the TLS ticket secret. The old master serialises it into a
 * self-describing, versioned blob that travels in the handoff message; the
 * new master checks the whole blob, then applies it to its own shared
 * zones. No memory layout is shared between the two binaries: the blob is
 * the only contract, and a record the new binary does not know is skipped.
 *
 * The blob (format version 2; integers big-endian, fixed size):
 *
 *     "LBDSTATE"  [1] version  [4] length of what follows
 *     records, each:
 *         [1] n, module name (n bytes: lb_module_t.name)
 *         [1] n, record type (n bytes: the module's own word, "server")
 *         [4] length of the fields
 *         fields, each:
 *             [1] n, key (n bytes)  [1] kind  [4] length, value
 *             kind 1: an integer, length 8 (signed, two's complement)
 *             kind 2: bytes (text is bytes without a NUL)
 *
 * Names and keys are 1 to LB_STATE_NAME_MAX bytes, without NUL. Records
 * are keyed by names (upstream, server as written, address), never by an
 * index, so that they apply to a configuration that changed. A reader
 * skips a module, record type or key it does not know; it refuses the
 * whole blob when any length disagrees with what contains it. Version 1
 * (a header alone, from the binary before records existed) reads as an
 * empty state.
 */
#ifndef LB_STATE_H
#define LB_STATE_H

#define LB_STATE_NAME_MAX   63

/* Builds a blob in memory (malloc'd). An allocation failure is remembered
 * and reported by lb_state_writer_finish, so the puts need no checks. */
struct lb_state_writer_s {
    u_char   *buf;
    size_t    len;
    size_t    cap;
    size_t    record;       /* offset of the open record's length; 0: none */
    bool      failed;
};

/* One record of a checked blob. module and type are NUL-terminated. */
struct lb_state_record_s {
    char           module[LB_STATE_NAME_MAX + 1];
    char           type[LB_STATE_NAME_MAX + 1];
    const u_char  *fields;
    size_t         len;
};

/* The codec: no cycle, no I/O (the fuzz target links it alone). */
void lb_state_writer_init(lb_state_writer_t *w);
void lb_state_record_begin(lb_state_writer_t *w, const char *module, const char *type);
void lb_state_put_int(lb_state_writer_t *w, const char *key, int64_t v);
void lb_state_put_bytes(lb_state_writer_t *w, const char *key, const void *p, size_t n);
void lb_state_put_str(lb_state_writer_t *w, const char *key, const char *s);
void lb_state_record_end(lb_state_writer_t *w);
/* The blob (the caller frees it): LB_OK, or LB_ERROR when out of memory
 * or a name was too long (the buffer is freed then). */
int  lb_state_writer_finish(lb_state_writer_t *w, u_char **blob, size_t *len);

/* Checks every length of the blob: LB_OK, or LB_ERROR with a one-line
 * reason in err. */
int  lb_state_check(const u_char *blob, size_t len, char *err, size_t errlen);
/* The record at *off (start at 0) of a checked blob: LB_OK with r and *off
 * past it, LB_DONE at the end. */
int  lb_state_next(const u_char *blob, size_t len, size_t *off, lb_state_record_t *r);
/* A field of r: true when key is there with that kind. get_str copies text
 * with its NUL; false also when it does not fit in size. */
bool lb_state_get_int(const lb_state_record_t *r, const char *key, int64_t *v);
const u_char *lb_state_get_bytes(const lb_state_record_t *r, const char *key, size_t *n);
bool lb_state_get_str(const lb_state_record_t *r, const char *key, char *out, size_t size);

/* In the old master: the state of cycle as a blob (malloc'd; the caller
 * frees it): every module's state_save, in module order. LB_OK, or
 * LB_ERROR (logged). */
int  lb_state_save(lb_cycle_t *cycle, u_char **blob, size_t *len);

/* In the new master, after the shared zones are mapped and every module's
 * init_master ran, before any worker forks: checks the whole blob, then
 * hands each record to the state_load of the module it names, which
 * applies what still matches the new configuration. LB_OK; LB_ERROR with
 * a one-line reason in err when the blob is corrupt or of an unknown
 * version (nothing applied then). */
int  lb_state_load(lb_cycle_t *cycle, const u_char *blob, size_t len,
                   char *err, size_t errlen);

#endif
