/*
 * lb_upgrade.c: binary upgrade by descriptor handoff (lb_upgrade.h).
 */
#include "lb_core.h"
#include "lb_state.h"
#include "lb_upgrade.h"

#include <fcntl.h>
#include <dirent.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>

#define LB_UPGRADE_MAX_MSG    (64 * 1024)       /* one SEQPACKET message */
#define LB_UPGRADE_FD_BATCH   250               /* SCM_MAX_FD is 253 */
#define LB_UPGRADE_MAX_SOCKS  65536

static char   **lb_upgrade_argv;
static int      lb_upgrade_argc;
static char     lb_upgrade_self[PATH_MAX];
static int      lb_upgrade_fd = -1;             /* in a new master: to the old one */
static u_char  *lb_upgrade_state;               /* the blob received */
static size_t   lb_upgrade_state_len;

const char *
lb_upgrade_result_text(int code)
{
    switch (code) {
    case LB_UPGRADE_OK:      return "upgraded";
    case LB_UPGRADE_BUSY:    return "this master has handed over to a new one already";
    case LB_UPGRADE_LOCAL:   return "the running master could not start the new binary";
    case LB_UPGRADE_EXEC:    return "the new binary could not be run";
    case LB_UPGRADE_NOT_LBD: return "the new binary is not lbd (it never answered)";
    case LB_UPGRADE_CONFIG:  return "the new binary cannot load the configuration";
    case LB_UPGRADE_REFUSED: return "the new master refused the handoff";
    case LB_UPGRADE_DIED:    return "the new master died before it was ready";
    case LB_UPGRADE_TIMEOUT: return "the new master was not ready within upgrade_timeout";
    default:                 return "unknown outcome";
    }
}

void
lb_upgrade_init(int argc, char **argv)
{
    ssize_t  n;

    lb_upgrade_argc = argc;
    lb_upgrade_argv = argv;
    /* before anything replaces the file: the path it was started from */
    n = readlink("/proc/self/exe", lb_upgrade_self, sizeof(lb_upgrade_self) - 1);
    lb_upgrade_self[n > 0 ? n : 0] = '\0';
}

char *
lb_upgrade_request_path(const char *pid_file, char *buf, size_t size)
{
    if ((size_t) snprintf(buf, size, "%s.upgrade", pid_file) >= size) {
        return NULL;
    }
    return buf;
}

/* Messages --------------------------------------------------------------- */

/* Receives one message (and the descriptors it carries, at most *nfds)
 * before deadline (monotonic ms). Its length; 0 at the end of the
 * stream; -1 on error or timeout (errno ETIMEDOUT). */
static ssize_t
lb_upgrade_recv(int fd, u_char *buf, size_t size, int *fds, size_t *nfds, lb_msec_t deadline)
{
    union {
        struct cmsghdr  h;
        char            space[CMSG_SPACE(LB_UPGRADE_FD_BATCH * sizeof(int))];
    } ctl;
    struct pollfd    pfd = { .fd = fd, .events = POLLIN };
    struct msghdr    msg;
    struct iovec     iov = { buf, size };
    struct cmsghdr  *cm;
    ssize_t          n;
    size_t           got = 0, k, want = nfds ? *nfds : 0;
    int              wait, *in;

    for ( ;; ) {
        lb_time_update();
        wait = deadline > lb_current_msec ? (int) (deadline - lb_current_msec) : 0;
        n = poll(&pfd, 1, wait);
        if (n == 1) {
            break;
        }
        if (n == 0) {
            errno = ETIMEDOUT;
            return -1;
        }
        if (errno != EINTR) {
            return -1;
        }
    }
    memset(&msg, 0, sizeof(msg));
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = &ctl;
    msg.msg_controllen = sizeof(ctl);
    n = recvmsg(fd, &msg, MSG_CMSG_CLOEXEC);
    if (n < 0) {
        return -1;
    }
    for (cm = CMSG_FIRSTHDR(&msg); cm; cm = CMSG_NXTHDR(&msg, cm)) {
        if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS) {
            continue;
        }
        in = (int *) CMSG_DATA(cm);
        for (k = 0; k < (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int); k++) {
            if (got < want) {
                fds[got++] = in[k];
            } else {
                close(in[k]);           /* more than announced: not ours to keep */
            }
        }
    }
    if (nfds) {
        *nfds = got;
    }
    if (msg.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) {
        errno = EMSGSIZE;
        return -1;
    }
    return n;
}

static int
lb_upgrade_send(int fd, const void *buf, size_t len, const int *fds, size_t nfds)
{
    union {
        struct cmsghdr  h;
        char            space[CMSG_SPACE(LB_UPGRADE_FD_BATCH * sizeof(int))];
    } ctl;
    struct msghdr    msg;
    struct iovec     iov = { (void *) buf, len };
    struct cmsghdr  *cm;

    memset(&msg, 0, sizeof(msg));
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    if (nfds) {
        memset(&ctl, 0, sizeof(ctl));
        msg.msg_control = &ctl;
        msg.msg_controllen = CMSG_SPACE(nfds * sizeof(int));
        cm = CMSG_FIRSTHDR(&msg);
        cm->cmsg_level = SOL_SOCKET;
        cm->cmsg_type = SCM_RIGHTS;
        cm->cmsg_len = CMSG_LEN(nfds * sizeof(int));
        memcpy(CMSG_DATA(cm), fds, nfds * sizeof(int));
    }
    while (sendmsg(fd, &msg, MSG_NOSIGNAL) < 0) {
        if (errno != EINTR) {
            return LB_ERROR;
        }
    }
    return LB_OK;
}

/* The old master -------------------------------------------------------- */

/* In the forked child: becomes the new binary, or says why not. */
static void __attribute__((noreturn))
lb_upgrade_exec(int sock, const char *binary, bool foreground)
{
    char      num[16], msg[512], **argv;
    sigset_t  none;
    int       fd, i, n;

    /* a descriptor the new binary keeps: not close-on-exec */
    fd = dup(sock);
    argv = calloc((size_t) lb_upgrade_argc + 1, sizeof(char *));
    if (fd == -1 || argv == NULL) {
        n = snprintf(msg, sizeof(msg), "X%ccannot prepare to run %s: %s", LB_UPGRADE_LOCAL,
                     binary, strerror(errno));
        (void) !write(sock, msg, (size_t) n);
        _exit(127);
    }
    snprintf(num, sizeof(num), "%d", fd);
    setenv(LB_UPGRADE_ENV, num, 1);
    if (foreground) {
        setenv(LB_SUPERVISED_ENV, "1", 1);
    } else {
        unsetenv(LB_SUPERVISED_ENV);
    }
    argv[0] = (char *) binary;
    for (i = 1; i < lb_upgrade_argc; i++) {
        argv[i] = lb_upgrade_argv[i];
    }
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    execv(binary, argv);
    n = snprintf(msg, sizeof(msg), "X%ccannot run %s: %s", LB_UPGRADE_EXEC, binary,
                 strerror(errno));
    (void) !write(sock, msg, (size_t) n);
    _exit(127);
}

/* What became of the child that closed its end, for the reason line. */
static void
lb_upgrade_child_status(pid_t pid, char *buf, size_t size)
{
    int  status, i;

    for (i = 0; i < 50; i++) {
        if (waitpid(pid, &status, WNOHANG) == pid) {
            if (WIFEXITED(status)) {
                snprintf(buf, size, "it exited with status %d", WEXITSTATUS(status));
            } else if (WIFSIGNALED(status)) {
                snprintf(buf, size, "it was killed by signal %d (%s)", WTERMSIG(status),
                         strsignal(WTERMSIG(status)));
            } else {
                snprintf(buf, size, "it stopped");
            }
            return;
        }
        usleep(10000);
    }
    snprintf(buf, size, "it closed the handoff socket");
}

/* Sends the sockets, their descriptors and the state. */
static int
lb_upgrade_handoff(int sock, const u_char *blob, size_t blob_len)
{
    lb_upgrade_socket_t  *socks;
    const lb_addr_t      *addr;
    u_char               *msg;
    size_t                i, n = 0, total = lb_sockets_count(), len, off;
    int                  *fds, socktype, slot, fd, rc = LB_ERROR;
    u_char                head[5];

    socks = calloc(total ? total : 1, sizeof(*socks));
    fds = calloc(total ? total : 1, sizeof(int));
    msg = malloc(LB_UPGRADE_MAX_MSG * 4);
    if (socks == NULL || fds == NULL || msg == NULL) {
        goto done;
    }
    for (i = 0; i < total; i++) {
        if (lb_sockets_get(i, &addr, &socktype, &slot, &fd)) {
            socks[n].socktype = socktype;
            socks[n].slot = slot;
            socks[n].addr = *addr;
            fds[n++] = fd;
        }
    }
    len = lb_upgrade_encode_sockets(msg, LB_UPGRADE_MAX_MSG * 4, socks, n, (uint32_t) blob_len);
    if (len == 0 || lb_upgrade_send(sock, msg, len, NULL, 0) != LB_OK) {
        goto done;
    }
    for (i = 0; i < n; i += LB_UPGRADE_FD_BATCH) {
        head[0] = 'F';
        lb_put32(head + 1, (uint32_t) lb_min(n - i, (size_t) LB_UPGRADE_FD_BATCH));
        if (lb_upgrade_send(sock, head, 5, fds + i, lb_min(n - i, (size_t) LB_UPGRADE_FD_BATCH))
            != LB_OK)
        {
            goto done;
        }
    }
    for (off = 0; off < blob_len; off += len) {
        len = lb_min(blob_len - off, (size_t) LB_UPGRADE_MAX_MSG - 1);
        msg[0] = 'T';
        memcpy(msg + 1, blob + off, len);
        if (lb_upgrade_send(sock, msg, len + 1, NULL, 0) != LB_OK) {
            goto done;
        }
    }
    rc = lb_upgrade_send(sock, "E", 1, NULL, 0);

done:
    free(socks);
    free(fds);
    free(msg);
    return rc;
}

static void
lb_upgrade_stop_child(pid_t pid)
{
    int  i, status;

    /* gracefully first: workers it started may hold connections */
    kill(pid, SIGQUIT);
    for (i = 0; i < 300; i++) {
        if (waitpid(pid, &status, WNOHANG) == pid) {
            return;
        }
        usleep(10000);
    }
    kill(pid, SIGKILL);
    waitpid(pid, &status, 0);
}

pid_t
lb_upgrade_run(lb_cycle_t *cycle, const char *binary, bool foreground,
               lb_upgrade_result_t *result, char *why, size_t whylen)
{
    const char  *pid_file = cycle->core->pid_file;
    char         oldbin[PATH_MAX + 8], detail[256];
    u_char      *blob = NULL, msg[1024];
    size_t       blob_len = 0;
    ssize_t      n;
    lb_msec_t    deadline;
    pid_t        pid = -1, hello = 0;
    int          sv[2] = { -1, -1 };

    *result = LB_UPGRADE_LOCAL;
    if (binary == NULL || binary[0] == '\0') {
        binary = lb_upgrade_self;
    }
    snprintf(oldbin, sizeof(oldbin), "%s.oldbin", pid_file);
    if (lb_state_save(cycle, &blob, &blob_len) != LB_OK) {
        snprintf(why, whylen, "cannot save the state to carry over");
        goto failed;
    }
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) == -1) {
        snprintf(why, whylen, "socketpair() failed: %s", strerror(errno));
        goto failed;
    }
    if (rename(pid_file, oldbin) == -1 && errno != ENOENT) {
        snprintf(why, whylen, "cannot rename the pid file to %s: %s", oldbin, strerror(errno));
        goto failed;
    }
    lb_log_notice("binary upgrade: starting %s", binary);
    pid = fork();
    if (pid == -1) {
        snprintf(why, whylen, "fork() failed: %s", strerror(errno));
        goto restore;
    }
    if (pid == 0) {
        close(sv[0]);
        lb_upgrade_exec(sv[1], binary, foreground);
    }
    close(sv[1]);
    sv[1] = -1;

    lb_time_update();
    deadline = lb_current_msec + cycle->core->upgrade_timeout;
    /* the hello, or why it could not come */
    n = lb_upgrade_recv(sv[0], msg, sizeof(msg) - 1, NULL, NULL, deadline);
    if (n > 0 && msg[0] == 'H' && n == 6 && msg[1] == LB_UPGRADE_VERSION) {
        hello = (pid_t) lb_get32(msg + 2);
    } else if (n > 2 && msg[0] == 'X') {
        msg[n] = '\0';
        *result = (lb_upgrade_result_t) msg[1];
        snprintf(why, whylen, "%s", (char *) msg + 2);
        goto stop;
    } else if (n > 0 && msg[0] == 'H') {
        *result = LB_UPGRADE_NOT_LBD;
        snprintf(why, whylen, "%s speaks handoff version %u; this lbd speaks %u", binary,
                 n > 1 ? msg[1] : 0, LB_UPGRADE_VERSION);
        goto stop;
    } else if (n < 0 && errno == ETIMEDOUT) {
        *result = LB_UPGRADE_NOT_LBD;
        snprintf(why, whylen, "%s did not answer within upgrade_timeout: not lbd?", binary);
        goto stop;
    } else {
        *result = LB_UPGRADE_NOT_LBD;
        lb_upgrade_child_status(pid, detail, sizeof(detail));
        snprintf(why, whylen, "%s never said it was lbd: %s", binary, detail);
        goto stop;
    }

    if (lb_upgrade_handoff(sv[0], blob, blob_len) != LB_OK) {
        n = recv(sv[0], msg, sizeof(msg) - 1, MSG_DONTWAIT);
        if (n > 2 && msg[0] == 'X') {
            msg[n] = '\0';
            *result = (lb_upgrade_result_t) msg[1];
            snprintf(why, whylen, "%s", (char *) msg + 2);
            goto stop;
        }
        lb_upgrade_child_status(pid, detail, sizeof(detail));
        *result = LB_UPGRADE_DIED;
        snprintf(why, whylen, "the handoff to %s failed (%s): %s", binary, strerror(errno),
                 detail);
        goto stop;
    }
    n = lb_upgrade_recv(sv[0], msg, sizeof(msg) - 1, NULL, NULL, deadline);
    if (n == 5 && msg[0] == 'R') {
        free(blob);
        close(sv[0]);
        /* the master is the process that said hello (a wrapper script may
         * have started it as its child) */
        pid = hello > 0 ? hello : pid;
        lb_log_notice("binary upgrade: new master %d (%s) is ready; this master (%d) stops "
                      "its workers gracefully", (int) pid, binary, (int) getpid());
        *result = LB_UPGRADE_OK;
        return pid;
    }
    if (n > 2 && msg[0] == 'X') {
        msg[n] = '\0';
        *result = (lb_upgrade_result_t) msg[1];
        snprintf(why, whylen, "%s", (char *) msg + 2);
    } else if (n < 0 && errno == ETIMEDOUT) {
        *result = LB_UPGRADE_TIMEOUT;
        snprintf(why, whylen, "the new master %d was not ready within upgrade_timeout (%lld ms)",
                 (int) pid, (long long) cycle->core->upgrade_timeout);
    } else {
        lb_upgrade_child_status(pid, detail, sizeof(detail));
        *result = LB_UPGRADE_DIED;
        snprintf(why, whylen, "the new master %d died before it was ready: %s", (int) pid,
                 detail);
    }

stop:
    lb_upgrade_stop_child(pid);
restore:
    if (rename(oldbin, pid_file) == -1 && errno != ENOENT) {
        lb_log_error(errno, "cannot rename %s back to %s", oldbin, pid_file);
    }
failed:
    if ((int) *result < LB_UPGRADE_BUSY || *result > LB_UPGRADE_TIMEOUT) {
        *result = LB_UPGRADE_REFUSED;
    }
    lb_log_error(0, "binary upgrade failed: %s; this master (%d) keeps serving", why,
                 (int) getpid());
    free(blob);
    if (sv[0] != -1) {
        close(sv[0]);
    }
    if (sv[1] != -1) {
        close(sv[1]);
    }
    return -1;
}

/* The new master ------------------------------------------------------- */

bool
lb_upgrade_child(void)
{
    const char  *v = getenv(LB_UPGRADE_ENV);
    char        *end;
    long         fd;

    if (lb_upgrade_fd != -1) {
        return true;
    }
    if (v == NULL) {
        return false;
    }
    fd = strtol(v, &end, 10);
    unsetenv(LB_UPGRADE_ENV);       /* not for processes this one starts */
    if (*end != '\0' || fd < 3 || fd > INT_MAX) {
        return false;
    }
    lb_upgrade_fd = (int) fd;
    fcntl(lb_upgrade_fd, F_SETFD, FD_CLOEXEC);
    return true;
}

bool
lb_upgrade_supervised(void)
{
    const char  *v = getenv(LB_SUPERVISED_ENV);

    return v && strcmp(v, "1") == 0;
}

void
lb_upgrade_fail(lb_upgrade_result_t result, const char *fmt, ...)
{
    char     msg[1024];
    va_list  args;
    int      n;

    if (lb_upgrade_fd == -1) {
        return;
    }
    msg[0] = 'X';
    msg[1] = (char) result;
    va_start(args, fmt);
    n = vsnprintf(msg + 2, sizeof(msg) - 2, fmt, args);
    va_end(args);
    if (n < 0) {
        n = 0;
    }
    lb_upgrade_send(lb_upgrade_fd, msg, lb_min((size_t) n + 2, sizeof(msg) - 1), NULL, 0);
    /* what the old master sent and we did not read would make it see a
     * reset instead of our reason */
    while (recv(lb_upgrade_fd, msg, sizeof(msg), MSG_DONTWAIT | MSG_TRUNC) > 0) {
        /* discarded */
    }
    close(lb_upgrade_fd);
    lb_upgrade_fd = -1;
}

int
lb_upgrade_receive(lb_cycle_t *cycle)
{
    lb_upgrade_socket_t  *socks = NULL;
    u_char               *msg = NULL, hello[6];
    char                  err[256];
    size_t                nsocks = 0, got = 0, want, i, blob_off = 0;
    uint32_t              state_len = 0;
    ssize_t               n;
    lb_msec_t             deadline;
    int                  *fds = NULL, rc;

    /* the configuration is loaded: this lbd can take over */
    hello[0] = 'H';
    hello[1] = LB_UPGRADE_VERSION;
    lb_put32(hello + 2, (uint32_t) getpid());
    lb_upgrade_send(lb_upgrade_fd, hello, sizeof(hello), NULL, 0);

    lb_time_update();
    deadline = lb_current_msec + cycle->core->upgrade_timeout;
    msg = malloc(LB_UPGRADE_MAX_MSG * 4);
    socks = calloc(LB_UPGRADE_MAX_SOCKS, sizeof(*socks));
    if (msg == NULL || socks == NULL) {
        snprintf(err, sizeof(err), "out of memory");
        goto failed;
    }
    n = lb_upgrade_recv(lb_upgrade_fd, msg, LB_UPGRADE_MAX_MSG * 4, NULL, NULL, deadline);
    if (n <= 0) {
        snprintf(err, sizeof(err), "no handoff from the old master: %s",
                 n == 0 ? "it closed the socket" : strerror(errno));
        goto failed;
    }
    if (lb_upgrade_parse_sockets(msg, (size_t) n, socks, LB_UPGRADE_MAX_SOCKS, &nsocks,
                                 &state_len, err, sizeof(err)) != LB_OK)
    {
        goto failed;
    }
    fds = calloc(nsocks ? nsocks : 1, sizeof(int));
    lb_upgrade_state = malloc(state_len ? state_len : 1);
    if (fds == NULL || lb_upgrade_state == NULL) {
        snprintf(err, sizeof(err), "out of memory");
        goto failed;
    }
    for ( ;; ) {
        want = nsocks - got;
        n = lb_upgrade_recv(lb_upgrade_fd, msg, LB_UPGRADE_MAX_MSG, fds + got, &want, deadline);
        got += n > 0 && msg[0] == 'F' ? want : 0;
        if (n <= 0) {
            snprintf(err, sizeof(err), "the handoff stopped short: %s",
                     n == 0 ? "the old master closed the socket" : strerror(errno));
            goto failed;
        }
        if (msg[0] == 'E') {
            break;
        }
        if (msg[0] == 'F' && n == 5 && lb_get32(msg + 1) == want) {
            continue;
        }
        if (msg[0] == 'T' && (size_t) n - 1 <= state_len - blob_off) {
            memcpy(lb_upgrade_state + blob_off, msg + 1, (size_t) n - 1);
            blob_off += (size_t) n - 1;
            continue;
        }
        snprintf(err, sizeof(err), "the handoff holds an unexpected message ('%c', %zd bytes)",
                 msg[0] >= 0x20 && msg[0] < 0x7f ? msg[0] : '?', n);
        goto failed;
    }
    if (got != nsocks || blob_off != state_len) {
        snprintf(err, sizeof(err), "the handoff is incomplete: %zu of %zu descriptors, %zu of "
                 "%u state bytes", got, nsocks, blob_off, state_len);
        goto failed;
    }
    lb_upgrade_state_len = state_len;
    for (i = 0; i < nsocks; i++) {
        rc = lb_sockets_adopt(&socks[i].addr, socks[i].socktype, socks[i].slot, fds[i]);
        if (rc != LB_OK) {
            snprintf(err, sizeof(err), "descriptor %zu of the handoff is not %s socket on %s",
                     i, socks[i].socktype == SOCK_STREAM ? "a listening stream" : "a datagram",
                     socks[i].addr.text);
            goto failed;
        }
        fds[i] = -1;
    }
    lb_log_notice("binary upgrade: took over %zu listening sockets and %u bytes of state from "
                  "the old master", nsocks, state_len);
    free(fds);
    free(socks);
    free(msg);
    return LB_OK;

failed:
    for (i = 0; fds && i < got; i++) {
        if (fds[i] != -1) {
            close(fds[i]);
        }
    }
    lb_log_error(0, "binary upgrade: %s", err);
    lb_upgrade_fail(LB_UPGRADE_REFUSED, "%s", err);
    free(fds);
    free(socks);
    free(msg);
    return LB_ERROR;
}

int
lb_upgrade_apply_state(lb_cycle_t *cycle)
{
    char  err[256];
    int   rc = LB_OK;

    if (lb_upgrade_state_len
        && lb_state_load(cycle, lb_upgrade_state, lb_upgrade_state_len, err, sizeof(err))
           != LB_OK)
    {
        lb_log_error(0, "binary upgrade: %s", err);
        lb_upgrade_fail(LB_UPGRADE_REFUSED, "the state from the old master: %s", err);
        rc = LB_ERROR;
    }
    free(lb_upgrade_state);
    lb_upgrade_state = NULL;
    lb_upgrade_state_len = 0;
    return rc;
}

bool
lb_upgrade_waiting_ready(void)
{
    return lb_upgrade_fd != -1;
}

void
lb_upgrade_ready(void)
{
    u_char  msg[5];

    if (lb_upgrade_fd == -1) {
        return;
    }
    msg[0] = 'R';
    lb_put32(msg + 1, (uint32_t) getpid());
    lb_upgrade_send(lb_upgrade_fd, msg, sizeof(msg), NULL, 0);
    close(lb_upgrade_fd);
    lb_upgrade_fd = -1;
    lb_log_notice("binary upgrade: this master (%d) is ready", (int) getpid());
}

/* The supervisor --------------------------------------------------------- */

static volatile sig_atomic_t  lb_sv_signal;
static volatile sig_atomic_t  lb_sv_child;

static void
lb_sv_handler(int signo)
{
    if (signo == SIGCHLD) {
        lb_sv_child = 1;
    } else {
        lb_sv_signal = signo;
    }
}

/* Whether pid runs lbd (its name starts so), and, with parent, whether it
 * is that process's child. */
static bool
lb_sv_is_lbd(pid_t pid, pid_t *parent)
{
    char   path[64], line[256];
    FILE  *f;
    long   ppid = 0;
    bool   lbd = false;

    snprintf(path, sizeof(path), "/proc/%d/status", (int) pid);
    f = fopen(path, "r");
    if (f == NULL) {
        return false;
    }
    while (fgets(line, sizeof(line), f)) {
        if (strncmp(line, "Name:\tlbd", 9) == 0) {
            lbd = true;
        }
        sscanf(line, "PPid: %ld", &ppid);
    }
    fclose(f);
    *parent = (pid_t) ppid;
    return lbd;
}

/* A signal for the masters: the one the pid file names (a child, or the
 * child of a master that is handing over to it), and every master that
 * is this process's child (old ones finishing their connections). */
static void
lb_sv_forward(const char *pid_file, int signo)
{
    DIR            *dir;
    struct dirent  *de;
    FILE           *f;
    pid_t           pid, parent;
    long            named = 0;

    f = fopen(pid_file, "r");
    if (f) {
        if (fscanf(f, "%ld", &named) != 1 || named <= 1 || named > INT_MAX) {
            named = 0;
        }
        fclose(f);
    }
    if (named && lb_sv_is_lbd((pid_t) named, &parent)) {
        kill((pid_t) named, signo);
    }
    if (signo != SIGTERM && signo != SIGINT && signo != SIGQUIT) {
        return;                 /* reload, reopen, upgrade: the current master's */
    }
    dir = opendir("/proc");
    if (dir == NULL) {
        return;
    }
    while ((de = readdir(dir)) != NULL) {
        pid = (pid_t) atoi(de->d_name);
        if (pid > 0 && pid != (pid_t) named && lb_sv_is_lbd(pid, &parent)
            && parent == getpid())
        {
            kill(pid, signo);
        }
    }
    closedir(dir);
}

void
lb_upgrade_supervise(const char *pid_file)
{
    static const int  forwarded[] = { SIGHUP, SIGUSR1, SIGUSR2, SIGQUIT, SIGTERM, SIGINT };
    struct sigaction  sa;
    sigset_t          all, none;
    char             *path = strdup(pid_file);
    pid_t             pid;
    size_t            i;
    int               status, last = 0;

    prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
    lb_sv_child = 1;                /* a master may have gone already */
    prctl(PR_SET_NAME, "lbd-supervisor", 0, 0, 0);
    lb_log_notice("binary upgrade: this process (%d) stays as the supervisor of the masters "
                  "that follow it", (int) getpid());
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = lb_sv_handler;
    sigemptyset(&sa.sa_mask);
    for (i = 0; i < lb_nelems(forwarded); i++) {
        sigaction(forwarded[i], &sa, NULL);
    }
    sigaction(SIGCHLD, &sa, NULL);
    sigfillset(&all);
    sigprocmask(SIG_BLOCK, &all, NULL);
    sigemptyset(&none);

    for ( ;; ) {
        while (!lb_sv_signal && !lb_sv_child) {
            sigsuspend(&none);
        }
        if (lb_sv_signal) {
            if (path) {
                lb_sv_forward(path, lb_sv_signal);
            }
            lb_sv_signal = 0;
        }
        if (lb_sv_child) {
            lb_sv_child = 0;
            while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
                last = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
            }
            if (pid == -1 && errno == ECHILD) {
                exit(last);     /* the last master is gone */
            }
        }
    }
}
