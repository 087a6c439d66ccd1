/*
 * lb_upgrade.h: binary upgrade by descriptor handoff (SPEC §8).
 *
 * The old master forks and executes the new binary with LBD_UPGRADE_FD
 * naming one end of a SOCK_SEQPACKET socket pair. Over it:
 *
 *     new -> old   'H' hello: version, pid (it is an lbd, and it loaded the
 *                  configuration), or 'X' why it cannot
 *     old -> new   'S' the listening sockets: what each descriptor is
 *                  'F' the descriptors themselves (SCM_RIGHTS, in batches)
 *                  'T' the state blob (lb_state.h), in chunks; 'E' the end
 *     new -> old   'R' ready (its workers run) or 'X' why it gives up
 *
 * Nothing but this message crosses between the binaries: no shared memory
 * layout. The old master waits (upgrade_timeout), then either stops its
 * workers gracefully and exits, or kills the new master and keeps serving
 * with every socket. In the foreground (lbd -f: a container's PID 1, or a
 * systemd service) the first master never exits: once its workers are
 * gone it stays as a thin supervisor that reaps, forwards signals to the
 * master the pid file names and exits with the last master's status
 * (docs/operations.md, "Binary upgrade").
 */
#ifndef LB_UPGRADE_H
#define LB_UPGRADE_H

#define LB_UPGRADE_ENV      "LBD_UPGRADE_FD"
#define LB_SUPERVISED_ENV   "LBD_SUPERVISED"
#define LB_UPGRADE_VERSION  1
#define LB_CTL_UPGRADE      0x4c55      /* sigqueue value lbctl sends with USR2 */

/* Why an upgrade failed: the sigqueue value of the SIGUSR2 that answers
 * lbctl (a success answers SIGUSR1 with the new master's pid). */
typedef enum {
    LB_UPGRADE_OK = 0,
    LB_UPGRADE_BUSY,            /* this master has handed over already */
    LB_UPGRADE_LOCAL,           /* the old master could not start it */
    LB_UPGRADE_EXEC,            /* the binary could not be run */
    LB_UPGRADE_NOT_LBD,         /* it never said it was lbd */
    LB_UPGRADE_CONFIG,          /* it could not load the configuration */
    LB_UPGRADE_REFUSED,         /* it refused the handoff (sockets, state) */
    LB_UPGRADE_DIED,            /* it died before it was ready */
    LB_UPGRADE_TIMEOUT,         /* not ready within upgrade_timeout */
} lb_upgrade_result_t;

const char *lb_upgrade_result_text(int code);

/* main(): keeps the command line to run the new binary with, and the
 * path of the running one. */
void lb_upgrade_init(int argc, char **argv);
/* The file lbctl writes the requested binary's path in, beside the pid
 * file (the master reads and removes it). */
char *lb_upgrade_request_path(const char *pid_file, char *buf, size_t size);

/* In the old master: runs the upgrade to binary (NULL: the running
 * one's path) and waits for its outcome. The new master's pid, or -1
 * with *result and why (one line, also logged). */
pid_t lb_upgrade_run(lb_cycle_t *cycle, const char *binary, bool foreground,
                     lb_upgrade_result_t *result, char *why, size_t whylen);

/* In the new master. lb_upgrade_child: whether this process is one. lb_upgrade_fail: tells the old master why
 * this one gives up. lb_upgrade_receive: takes the listening sockets
 * over (saying hello first; before lb_master_init opens the others) and
 * keeps the state;
 * lb_upgrade_apply_state: applies it once the zones exist (after
 * lb_master_init); lb_upgrade_ready: its workers run. */
bool lb_upgrade_child(void);
void lb_upgrade_fail(lb_upgrade_result_t result, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
int  lb_upgrade_receive(lb_cycle_t *cycle);
int  lb_upgrade_apply_state(lb_cycle_t *cycle);
bool lb_upgrade_waiting_ready(void);
void lb_upgrade_ready(void);

/* In the foreground, after a handoff: the old master's last role. Never
 * returns. */
void lb_upgrade_supervise(const char *pid_file) __attribute__((noreturn));
/* Whether this master was started by an upgrade of a foreground master
 * (then a supervisor above it reaps what it leaves). */
bool lb_upgrade_supervised(void);

/* The codec of the 'S' message, apart for the fuzzer. */
typedef struct {
    int        socktype;        /* SOCK_STREAM or SOCK_DGRAM */
    int        slot;            /* -1: one socket for every slot */
    lb_addr_t  addr;
} lb_upgrade_socket_t;

/* Writes the 'S' message for n sockets and a state blob of state_len
 * bytes into buf: its length, or 0 when it does not fit. */
size_t lb_upgrade_encode_sockets(u_char *buf, size_t size, const lb_upgrade_socket_t *s,
                                 size_t n, uint32_t state_len);
/* Reads an 'S' message: LB_OK with *n sockets in out (at most max) and
 * *state_len, or LB_ERROR with a one-line reason in err. */
int lb_upgrade_parse_sockets(const u_char *p, size_t len, lb_upgrade_socket_t *out,
                             size_t max, size_t *n, uint32_t *state_len,
                             char *err, size_t errlen);

/* Big-endian 32-bit fields of the messages. */
static inline void
lb_put32(u_char *p, uint32_t v)
{
    p[0] = (u_char) (v >> 24);
    p[1] = (u_char) (v >> 16);
    p[2] = (u_char) (v >> 8);
    p[3] = (u_char) v;
}

static inline uint32_t
lb_get32(const u_char *p)
{
    return (uint32_t) p[0] << 24 | (uint32_t) p[1] << 16 | (uint32_t) p[2] << 8 | p[3];
}

#endif
