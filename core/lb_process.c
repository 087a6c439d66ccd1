/*
 * lb_process.c: the master, which supervises workers and helper processes
 * and reloads, and the main loops of workers and helpers. The master sleeps in sigsuspend(2): every event it acts
 * on is a signal (HUP, QUIT, TERM/INT, USR1, CHLD, ALRM). Its children watch
 * a pipe to notice when the master is gone.
 */
#include "lb_core.h"
#include "lb_notify.h"
#include "lb_upgrade.h"
#include "lb_reload.h"

#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <pwd.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <sys/wait.h>

lb_cycle_t  *lb_cycle;
time_t       lb_master_started_at;
int          lb_worker_slot = -1;
bool         lb_worker_quitting;

/* A child of the master: a worker in a slot, or an instance of a module's
 * helper process. */
typedef struct {
    pid_t      pid;             /* 0: free entry */
    int        slot;            /* a helper: its instance */
    lb_module_t  *helper;       /* a helper: its module; NULL for a worker */
    unsigned   generation;
    bool       quitting;        /* QUIT sent: finishing in-flight work */
    bool       closed;          /* TERM sent: its generation was closed early */
    bool       stopped;         /* it said it no longer accepts */
    bool       ready;           /* it said it serves (workers) */
    lb_msec_t  started;
    lb_msec_t  shutdown_timeout;    /* of the worker's own configuration */
    lb_msec_t  kill_at;         /* when quitting: SIGKILL after this */
    int        channel;         /* the master's end of its socket pair, or -1 */
    bool       replaced;        /* a helper replaced by a reload in place */
    bool       applying;        /* a worker handed a reload in place, until
                                   it says it applied it */
} lb_worker_t;

static lb_worker_t  lb_workers[2 * LB_MAX_WORKERS * 4];

/* How long a worker of a generation closed early (max_old_generations)
 * has to honour TERM before it is killed. */
#define LB_CLOSED_GRACE  3000

/* The generations still draining, as the master last saw them, in memory
 * it shares with every child (mapped before the first fork): the admin
 * server, a helper without the master's table, reads it for /status and
 * /metrics. A sequence count, odd while the master writes, lets a reader
 * see a consistent copy without a lock. */
typedef struct {
    uint32_t  seq;
    uint32_t  generations;
    uint32_t  nworkers;
    pid_t     pids[lb_nelems(lb_workers)];
} lb_draining_zone_t;

static lb_draining_zone_t  *lb_draining_zone;

/* The master's pid, for its children: after the master dies, getppid()
 * names whoever adopted them (init, a subreaper), which must never get the
 * master's signals. */
static pid_t  lb_master_pid;

/* In a worker: its end of the socket pair through which the master hands
 * it the log files it reopened (a worker running as `user` may not open
 * them itself); -1 in the master. */
static int  lb_worker_channel = -1;

/* lbctl reload sends HUP with sigqueue(2) and this value, and the master
 * answers SIGUSR1 (applied) or SIGUSR2 (refused) to the sender. A plain
 * kill -HUP gets no answer, so no shell is ever signalled back. */
#define LB_MAX_REQUESTERS  16
static volatile pid_t         lb_reload_requesters[LB_MAX_REQUESTERS];
static volatile sig_atomic_t  lb_nrequesters;

/* Workers that reported they stopped accepting, not yet processed. */
#define LB_MAX_STOPPED  (4 * LB_MAX_WORKERS)
static volatile pid_t         lb_stopped_pids[LB_MAX_STOPPED];
static volatile sig_atomic_t  lb_nstopped;
/* workers that started serving (LB_WORKER_READY), and who asked for an
 * upgrade (lbctl upgrade's pid) */
#define LB_WORKER_READY  1
static volatile pid_t         lb_ready_pids[LB_MAX_STOPPED];
static volatile sig_atomic_t  lb_nready;
/* workers that applied a reload in place (LB_WORKER_APPLIED) */
#define LB_WORKER_APPLIED  2
static volatile pid_t         lb_applied_pids[LB_MAX_STOPPED];
static volatile sig_atomic_t  lb_napplied;
static volatile pid_t         lb_upgrade_requester;
/* READY=1 is owed to the service manager (lb_notify.h) */
static bool                   lb_notify_ready_pending = true;

static volatile sig_atomic_t  lb_sig_reload, lb_sig_quit, lb_sig_terminate,
                              lb_sig_reopen, lb_sig_child, lb_sig_alarm, lb_sig_upgrade;

/* The answer to lbctl reload waits until no worker of an older generation
 * still accepts, so that once lbctl returns every new connection meets the
 * new configuration (bounded: 5s). */
static bool       lb_answer_pending, lb_answer_ok, lb_answer_in_place;
static lb_msec_t  lb_answer_deadline;

/* A slot whose workers keep dying young (three in a row within a second of
 * starting) is restarted after a pause, so a worker that crashes at once
 * does not make the master spin; a single early death is replaced at once.
 * The same for each helper instance, counted after the worker slots. */
#define LB_HELPER_SLOTS  (64 * LB_HELPER_MAX_INSTANCES)
#define LB_ALL_SLOTS     (LB_MAX_WORKERS + LB_HELPER_SLOTS)
static lb_msec_t  lb_slot_respawn_at[LB_ALL_SLOTS];
static unsigned   lb_slot_quick_deaths[LB_ALL_SLOTS];

/* The child's index in the two arrays above. */
static size_t
lb_child_slot(const lb_worker_t *w)
{
    if (w->helper == NULL) {
        return (size_t) w->slot;
    }
    return LB_MAX_WORKERS + (w->helper->index * LB_HELPER_MAX_INSTANCES + (size_t) w->slot)
                            % LB_HELPER_SLOTS;
}

/* "worker 123 (slot 0)" or "health prober 124": for log lines. */
static const char *
lb_child_text(const lb_worker_t *w, char *buf, size_t size)
{
    if (w->helper) {
        snprintf(buf, size, "%s %d", w->helper->helper->name, (int) w->pid);
    } else {
        snprintf(buf, size, "worker %d (slot %d)", (int) w->pid, w->slot);
    }
    return buf;
}

static void
lb_signal_handler(int signo, siginfo_t *info, void *unused)
{
    switch (signo) {
    case SIGHUP:
        lb_sig_reload = 1;
        if (info && info->si_code == SI_QUEUE && info->si_value.sival_int == LB_CTL_RELOAD
            && lb_nrequesters < LB_MAX_REQUESTERS)
        {
            lb_reload_requesters[lb_nrequesters++] = info->si_pid;
        }
        break;
    case SIGUSR2:
        lb_sig_upgrade = 1;
        if (info && info->si_code == SI_QUEUE && info->si_value.sival_int == LB_CTL_UPGRADE) {
            lb_upgrade_requester = info->si_pid;
        }
        break;
    default:
        if (signo != LB_SIG_STOPPED || info == NULL) {
            break;
        }
        if (info->si_code == SI_QUEUE && info->si_value.sival_int == LB_WORKER_READY) {
            if (lb_nready < LB_MAX_STOPPED) {
                lb_ready_pids[lb_nready++] = info->si_pid;
            }
        } else if (info->si_code == SI_QUEUE && info->si_value.sival_int == LB_WORKER_APPLIED) {
            if (lb_napplied < LB_MAX_STOPPED) {
                lb_applied_pids[lb_napplied++] = info->si_pid;
            }
        } else if (lb_nstopped < LB_MAX_STOPPED) {
            lb_stopped_pids[lb_nstopped++] = info->si_pid;
        }
        break;
    case SIGQUIT: lb_sig_quit = 1; break;
    case SIGTERM:
    case SIGINT:  lb_sig_terminate = 1; break;
    case SIGUSR1: lb_sig_reopen = 1; break;
    case SIGCHLD: lb_sig_child = 1; break;
    case SIGALRM: lb_sig_alarm = 1; break;
    }
}

static const int  lb_signals[] = {
    SIGHUP, SIGQUIT, SIGTERM, SIGINT, SIGUSR1, SIGUSR2, SIGCHLD, SIGALRM
};

static void
lb_signals_install(void)
{
    struct sigaction  sa;
    size_t            i;

    memset(&sa, 0, sizeof(sa));
    sa.sa_sigaction = lb_signal_handler;
    sa.sa_flags = SA_SIGINFO;
    sigemptyset(&sa.sa_mask);
    for (i = 0; i < lb_nelems(lb_signals); i++) {
        sigaction(lb_signals[i], &sa, NULL);
    }
    sigaction(LB_SIG_STOPPED, &sa, NULL);
    sa.sa_flags = 0;
    sa.sa_handler = SIG_IGN;
    sigaction(SIGPIPE, &sa, NULL);
}

static void
lb_signals_block(sigset_t *old)
{
    sigset_t  set;
    size_t    i;

    sigemptyset(&set);
    for (i = 0; i < lb_nelems(lb_signals); i++) {
        sigaddset(&set, lb_signals[i]);
    }
    sigaddset(&set, LB_SIG_STOPPED);
    sigprocmask(SIG_BLOCK, &set, old);
}

/* Watching the master ------------------------------------------------------ */

/*
 * A process the master forks must not outlive it: it would keep serving an
 * old configuration, hold the ports and never be told to stop. The master
 * creates a pipe, keeps its write end for its whole life and never writes
 * to it; every child closes the write end at once and watches the read end
 * in its event loop. However the master dies (kill -9 included), the kernel
 * closes the last write end and the read end reports EOF (EPOLLIN|EPOLLHUP),
 * which no later setuid(2) can disarm (PR_SET_PDEATHSIG would be cleared by
 * it) and which cannot be missed: an end closed before the child watches it
 * is reported as soon as it does.
 *
 * Both ends are close-on-exec. A new master started by a binary upgrade
 * creates its own pipe for its own workers; if it inherited this write end,
 * the old master's workers would never see the old master go.
 */
static int        lb_master_pipe[2] = { -1, -1 };
static lb_conn_t *lb_master_watch_conn;
static void     (*lb_master_gone_handler)(void);

static int
lb_master_watch_open(void)
{
    if (pipe2(lb_master_pipe, O_CLOEXEC | O_NONBLOCK) == -1) {
        lb_log_error(errno, "pipe2() failed for the master's watch pipe");
        return LB_ERROR;
    }
    return LB_OK;
}

/* In a child, first thing after fork: the master's end is the master's
 * alone, or the pipe would outlive it. */
static void
lb_master_watch_child(void)
{
    close(lb_master_pipe[1]);
    lb_master_pipe[1] = -1;
}

static void
lb_master_watch_read(lb_event_t *ev)
{
    void  (*gone)(void) = lb_master_gone_handler;

    /* nothing is ever written: readable means the master is gone */
    lb_master_watch_stop();
    if (gone) {
        gone();
    }
}

int
lb_master_watch_start(void (*gone)(void))
{
    lb_conn_t  *c;

    c = lb_conn_get(lb_master_pipe[0]);
    if (c == NULL) {
        lb_log_error(ENOMEM, "cannot watch the master process");
        return LB_ERROR;
    }
    c->read.handler = lb_master_watch_read;
    lb_master_pipe[0] = -1;     /* the connection owns it now */
    if (lb_loop_add_conn(c, true) != LB_OK) {
        lb_log_error(errno, "cannot watch the master process");
        lb_conn_close(c);
        return LB_ERROR;
    }
    lb_master_watch_conn = c;
    lb_master_gone_handler = gone;
    return LB_OK;
}

void
lb_master_watch_stop(void)
{
    if (lb_master_watch_conn) {
        lb_conn_close(lb_master_watch_conn);
        lb_master_watch_conn = NULL;
    }
    lb_master_gone_handler = NULL;
}

/* Workers ---------------------------------------------------------------- */

static int
lb_worker_drop_privileges(lb_cycle_t *cycle)
{
    struct passwd  *pw;

    if (cycle->core->user == NULL || geteuid() != 0) {
        return LB_OK;
    }
    pw = getpwnam(cycle->core->user);
    if (pw == NULL) {
        lb_log_error(0, "user \"%s\" does not exist", cycle->core->user);
        return LB_ERROR;
    }
    if (setgid(pw->pw_gid) == -1 || initgroups(pw->pw_name, pw->pw_gid) == -1
        || setuid(pw->pw_uid) == -1)
    {
        lb_log_error(errno, "cannot switch to user \"%s\"", cycle->core->user);
        return LB_ERROR;
    }
    return LB_OK;
}

static void lb_workers_signal(int signo, bool old_only, unsigned generation);

/* Log files ---------------------------------------------------------------- */

/* One message per file: its absolute path, NUL-terminated, with the
 * descriptor the master opened for it (SCM_RIGHTS). */
static int
lb_channel_send_file(int channel, const char *path, int fd)
{
    struct msghdr    msg;
    struct iovec     iov;
    struct cmsghdr  *cm;
    union {
        struct cmsghdr  align;
        char            buf[CMSG_SPACE(sizeof(int))];
    } ctl;

    memset(&msg, 0, sizeof(msg));
    memset(&ctl, 0, sizeof(ctl));
    iov.iov_base = (void *) path;
    iov.iov_len = strlen(path) + 1;
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = ctl.buf;
    msg.msg_controllen = sizeof(ctl.buf);
    cm = CMSG_FIRSTHDR(&msg);
    cm->cmsg_level = SOL_SOCKET;
    cm->cmsg_type = SCM_RIGHTS;
    cm->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(cm), &fd, sizeof(int));
    return sendmsg(channel, &msg, MSG_DONTWAIT | MSG_NOSIGNAL) == -1 ? LB_ERROR : LB_OK;
}

/* Receives one file: LB_OK with *fd and path set, LB_AGAIN when no message
 * is waiting, LB_ERROR on a malformed one (skipped). */
static int
lb_channel_recv_file(int channel, char *path, size_t size, int *fd)
{
    struct msghdr    msg;
    struct iovec     iov;
    struct cmsghdr  *cm;
    ssize_t          n;
    union {
        struct cmsghdr  align;
        char            buf[CMSG_SPACE(sizeof(int))];
    } ctl;

    memset(&msg, 0, sizeof(msg));
    iov.iov_base = path;
    iov.iov_len = size;
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = ctl.buf;
    msg.msg_controllen = sizeof(ctl.buf);
    do {
        n = recvmsg(channel, &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
    } while (n == -1 && errno == EINTR);
    if (n <= 0) {
        return LB_AGAIN;       /* drained, or the master is gone */
    }
    *fd = -1;
    for (cm = CMSG_FIRSTHDR(&msg); cm; cm = CMSG_NXTHDR(&msg, cm)) {
        if (cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_RIGHTS
            && cm->cmsg_len == CMSG_LEN(sizeof(int)))
        {
            memcpy(fd, CMSG_DATA(cm), sizeof(int));
        }
    }
    if (*fd == -1 || (msg.msg_flags & MSG_TRUNC) || path[n - 1] != '\0') {
        if (*fd != -1) {
            close(*fd);
        }
        return LB_ERROR;
    }
    return LB_OK;
}

/* USR1 in a worker: takes the files the master reopened for it, which it
 * sent before the signal. A worker without a channel reopens its error
 * log itself, as well as its rights allow. */
static void
lb_worker_reopen(lb_cycle_t *cycle)
{
    char  path[PATH_MAX + 1];
    int   fd, rc;

    if (lb_worker_channel == -1) {
        if (lb_log_reopen() != LB_OK) {
            lb_log_error(errno, "cannot reopen the error log");
        }
        return;
    }
    while ((rc = lb_channel_recv_file(lb_worker_channel, path, sizeof(path), &fd)) != LB_AGAIN) {
        if (rc != LB_OK) {
            continue;
        }
        if (strcmp(path, LB_RELOAD_CHANNEL_TAG) == 0) {
            lb_reload_apply(cycle, fd);     /* a reload in place; closes fd */
            if (getppid() == lb_master_pid) {
                /* the master answers lbctl once every worker applied it */
                sigqueue(lb_master_pid, LB_SIG_STOPPED,
                         (union sigval) { .sival_int = LB_WORKER_APPLIED });
            }
        } else if (lb_log_path() && strcmp(lb_log_path(), path) == 0) {
            lb_log_adopt(fd);
        } else {
            lb_access_files_adopt(cycle, path, fd);
        }
    }
}

/* USR1 in the master: reopens the error log and the access logs of the
 * configuration in force, hands the new descriptors to every worker, then
 * signals them to take them. A file that cannot be opened (its directory
 * gone or not writable) keeps being written where it was. */
static void
lb_master_reopen(bool foreground)
{
    lb_access_file_t  *f;
    size_t             i;
    bool               failed = false;

    /* in the file being rotated away: it ends with why it stopped */
    lb_log_notice("reopening log files");
    if (lb_log_reopen() != LB_OK) {
        lb_log_error(errno, "cannot reopen the error log \"%s\"; it is written where "
                     "it was until the next reopen", lb_log_path() ? lb_log_path() : "stderr");
    } else if (!foreground) {
        lb_log_redirect_stderr();
    }
    lb_access_files_reopen(lb_cycle);

    for (i = 0; i < lb_nelems(lb_workers); i++) {
        if (lb_workers[i].pid == 0 || lb_workers[i].channel == -1) {
            continue;
        }
        if (lb_log_path() && lb_log_fd() != STDERR_FILENO
            && lb_channel_send_file(lb_workers[i].channel, lb_log_path(), lb_log_fd()) != LB_OK)
        {
            failed = true;
        }
        for (f = lb_cycle->access_files; f; f = f->next) {
            if (f->fd != -1
                && lb_channel_send_file(lb_workers[i].channel, f->path, f->fd) != LB_OK)
            {
                failed = true;
            }
        }
    }
    if (failed) {
        lb_log_error(errno, "cannot hand the reopened log files to every worker; "
                     "those workers keep their old files");
    }
    lb_workers_signal(SIGUSR1, false, 0);
}

static bool       lb_worker_shutdown_over;
static bool       lb_worker_master_gone;
static lb_timer_t lb_worker_shutdown_timer;

static void
lb_worker_shutdown_expired(lb_timer_t *t)
{
    lb_log_warn(0, "shutdown_timeout reached with %zu connections still open; closing them",
                lb_conn_active);
    lb_worker_shutdown_over = true;
}

/* Called from the loop: only a flag, acted on between turns. */
static void
lb_worker_on_master_gone(void)
{
    lb_worker_master_gone = true;
}

/* The graceful stop, on QUIT or when the master is gone: stop accepting,
 * have the modules end what is idle (their stop_worker hooks), let the
 * connections in flight finish for up to shutdown_timeout. Between loop
 * turns only (it releases closed connections). */
static void
lb_worker_stop(lb_cycle_t *cycle)
{
    size_t  i;

    lb_worker_quitting = true;
    lb_listeners_stop(cycle);
    lb_master_watch_stop();     /* shutdown_timeout bounds the rest */
    for (i = 0; i < lb_nmodules; i++) {
        if (lb_all_modules[i]->stop_worker) {
            lb_all_modules[i]->stop_worker(cycle);
        }
    }
    lb_conn_release_closed();
    if (lb_worker_master_gone) {
        lb_log_warn(0, "master process %d is gone; stopped accepting, finishing %zu "
                    "connections (up to shutdown_timeout) before exiting",
                    (int) lb_master_pid, lb_conn_active);
    } else {
        if (getppid() == lb_master_pid) {
            kill(lb_master_pid, LB_SIG_STOPPED);    /* the master may answer lbctl now */
        }
        lb_log_notice("stopped accepting; finishing %zu connections", lb_conn_active);
    }
    lb_timer_set(&lb_worker_shutdown_timer, cycle->core->shutdown_timeout);
}

static void
lb_worker_run(lb_cycle_t *cycle, int slot)
{
    sigset_t    empty;
    size_t      i;

    lb_worker_slot = slot;
    sigemptyset(&empty);
    lb_metrics_init_process(cycle, slot);

    if (lb_worker_drop_privileges(cycle) != LB_OK || lb_loop_init(512) != LB_OK
        || lb_master_watch_start(lb_worker_on_master_gone) != LB_OK
        || lb_access_files_init_worker(cycle) != LB_OK)
    {
        exit(2);
    }
    for (i = 0; i < lb_nmodules; i++) {
        if (lb_all_modules[i]->init_worker && lb_all_modules[i]->init_worker(cycle) != LB_OK) {
            lb_log_error(0, "module %s failed to start in worker slot %d",
                         lb_all_modules[i]->name, slot);
            exit(2);
        }
    }
    lb_sockets_keep_slot(cycle, slot, NULL);
    if (lb_listeners_start(cycle, slot) != LB_OK) {
        exit(2);
    }
    lb_timer_init(&lb_worker_shutdown_timer, lb_worker_shutdown_expired, NULL);
    if (getppid() == lb_master_pid) {
        /* a new master waits for this before the old one may stop */
        sigqueue(lb_master_pid, LB_SIG_STOPPED, (union sigval) { .sival_int = LB_WORKER_READY });
    }

    for ( ;; ) {
        lb_loop_process(-1, &empty);

        if (lb_sig_terminate || lb_worker_shutdown_over) {
            break;
        }
        if ((lb_sig_quit || lb_worker_master_gone) && !lb_worker_quitting) {
            lb_sig_quit = 0;
            lb_worker_stop(cycle);
        }
        if (lb_sig_reopen) {
            lb_sig_reopen = 0;
            lb_worker_reopen(cycle);
        }
        if (lb_worker_quitting && lb_conn_active == 0) {
            break;
        }
    }

    for (i = lb_nmodules; i-- > 0; ) {
        if (lb_all_modules[i]->exit_worker) {
            lb_all_modules[i]->exit_worker(cycle);
        }
    }
    lb_access_files_exit_worker(cycle);     /* after the modules' last lines */
    exit(0);
}

/* A helper process's life: its module's start, the loop until it must
 * stop (QUIT, TERM, the master gone), its module's stop. */
static void
lb_helper_run(lb_cycle_t *cycle, lb_module_t *m, int instance)
{
    const lb_helper_t  *h = m->helper;
    sigset_t            empty;

    sigemptyset(&empty);
    lb_sockets_keep_slot(cycle, 0, m);
    lb_metrics_init_process(cycle, -1);
    if (lb_worker_drop_privileges(cycle) != LB_OK || lb_loop_init(64) != LB_OK
        || lb_master_watch_start(lb_worker_on_master_gone) != LB_OK)
    {
        exit(2);
    }
    if (h->start(cycle, (unsigned) instance) != LB_OK) {
        lb_log_error(0, "%s %d failed to start", h->name, (int) getpid());
        exit(2);
    }
    while (!lb_sig_terminate && !lb_sig_quit && !lb_worker_master_gone) {
        lb_loop_process(-1, &empty);
        if (lb_sig_reopen) {
            lb_sig_reopen = 0;
            lb_worker_reopen(cycle);
        }
    }
    if (h->stop) {
        h->stop(cycle);
    }
    exit(0);
}

static lb_worker_t *
lb_child_spawn(lb_cycle_t *cycle, int slot, lb_module_t *helper)
{
    char          what[128], own_name[16 + 1];

    lb_worker_t  *w = NULL;
    size_t        i;
    pid_t         pid;
    int           sv[2];

    for (i = 0; i < lb_nelems(lb_workers); i++) {
        if (lb_workers[i].pid == 0) {
            w = &lb_workers[i];
            break;
        }
    }
    if (helper) {
        snprintf(what, sizeof(what), "the %s", helper->helper->name);
    } else {
        snprintf(what, sizeof(what), "worker slot %d", slot);
    }
    if (w == NULL) {
        lb_log_error(0, "too many child processes; cannot start %s", what);
        return NULL;
    }

    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, sv) == -1) {
        /* the child then reopens its logs itself, as far as it may */
        lb_log_error(errno, "socketpair() failed for %s", what);
        sv[0] = sv[1] = -1;
    }
    if (helper) {
        /* named before the fork: no one ever sees a helper by the master's name */
        prctl(PR_GET_NAME, own_name, 0, 0, 0);
        prctl(PR_SET_NAME, helper->helper->name, 0, 0, 0);
    }
    pid = fork();
    if (helper && pid != 0) {
        prctl(PR_SET_NAME, own_name, 0, 0, 0);
    }
    if (pid == -1) {
        lb_log_error(errno, "fork() failed for %s", what);
        if (sv[0] != -1) {
            close(sv[0]);
            close(sv[1]);
        }
        return NULL;
    }
    if (pid == 0) {
        lb_master_watch_child();
        /* the other workers' channels are the master's business */
        for (i = 0; i < lb_nelems(lb_workers); i++) {
            if (lb_workers[i].pid && lb_workers[i].channel != -1) {
                close(lb_workers[i].channel);
            }
        }
        if (sv[0] != -1) {
            close(sv[0]);
        }
        lb_worker_channel = sv[1];
        /* the signal handlers stay; the flags start clear */
        lb_sig_reload = lb_sig_quit = lb_sig_terminate = lb_sig_reopen = 0;
        lb_sig_child = lb_sig_alarm = lb_sig_upgrade = 0;
        /* Ctrl-C reaches the whole process group: the master alone
         * decides, and stops the workers with TERM */
        signal(SIGINT, SIG_IGN);
        signal(SIGHUP, SIG_IGN);
        signal(SIGUSR2, SIG_IGN);
        signal(SIGCHLD, SIG_DFL);
        if (helper) {
            lb_helper_run(cycle, helper, slot);     /* does not return */
        }
        lb_worker_run(cycle, slot);     /* does not return */
        _exit(0);
    }

    if (sv[1] != -1) {
        close(sv[1]);
    }
    w->channel = sv[0];
    w->pid = pid;
    w->slot = slot;
    w->helper = helper;
    w->generation = cycle->generation;
    w->quitting = false;
    w->closed = false;
    w->ready = false;
    /* a reload's answer waits for the old helpers too: after it, the admin
     * API answers from the new configuration (a helper exits at once) */
    w->stopped = false;
    w->started = lb_current_msec;
    w->shutdown_timeout = cycle->core->shutdown_timeout;
    w->kill_at = 0;
    w->replaced = false;
    w->applying = false;
    if (helper) {
        lb_log_notice("started %s %d (generation %u)", helper->helper->name, (int) pid,
                      cycle->generation);
    } else {
        lb_log_notice("started worker %d in slot %d (generation %u)", (int) pid, slot,
                      cycle->generation);
    }
    return w;
}

static void
lb_workers_signal(int signo, bool old_only, unsigned generation)
{
    size_t  i;

    for (i = 0; i < lb_nelems(lb_workers); i++) {
        if (lb_workers[i].pid == 0) {
            continue;
        }
        if (old_only && lb_workers[i].generation >= generation) {
            continue;
        }
        if (signo == SIGQUIT) {
            if (lb_workers[i].quitting) {
                continue;
            }
            lb_workers[i].quitting = true;
            lb_workers[i].kill_at = lb_current_msec + lb_workers[i].shutdown_timeout + 5000;
        }
        if (kill(lb_workers[i].pid, signo) == -1 && errno != ESRCH) {
            lb_log_error(errno, "kill(%d, %d) failed", (int) lb_workers[i].pid, signo);
        }
    }
}

static size_t
lb_workers_count(void)
{
    size_t  i, n = 0;

    for (i = 0; i < lb_nelems(lb_workers); i++) {
        n += lb_workers[i].pid != 0;
    }
    return n;
}

/* Restarts worker slots and helper instances that have no live,
 * non-quitting process of the current generation (and whose pause, if
 * any, is over). */
static void
lb_workers_fill(lb_cycle_t *cycle, bool exiting)
{
    static bool   alive[LB_ALL_SLOTS];
    lb_worker_t   probe;
    size_t        i, k;
    unsigned      want;
    int           slot;

    if (exiting) {
        return;
    }
    memset(alive, 0, sizeof(alive));
    for (i = 0; i < lb_nelems(lb_workers); i++) {
        if (lb_workers[i].pid && !lb_workers[i].quitting
            && lb_workers[i].generation == cycle->generation)
        {
            alive[lb_child_slot(&lb_workers[i])] = true;
        }
    }
    for (slot = 0; slot < (int) cycle->core->workers; slot++) {
        if (!alive[slot] && lb_slot_respawn_at[slot] <= lb_current_msec) {
            lb_child_spawn(cycle, slot, NULL);
        }
    }
    for (i = 0; i < lb_nmodules; i++) {
        probe.helper = lb_all_modules[i];
        if (probe.helper->helper == NULL) {
            continue;
        }
        want = lb_min(probe.helper->helper->count(cycle), LB_HELPER_MAX_INSTANCES);
        for (slot = 0; slot < (int) want; slot++) {
            probe.slot = slot;
            k = lb_child_slot(&probe);
            if (!alive[k] && lb_slot_respawn_at[k] <= lb_current_msec) {
                lb_child_spawn(cycle, slot, probe.helper);
            }
        }
    }
}

/* The child with that pid, or NULL. */
static lb_worker_t *
lb_worker_find(pid_t pid)
{
    size_t  i;

    for (i = 0; pid > 0 && i < lb_nelems(lb_workers); i++) {
        if (lb_workers[i].pid == pid) {
            return &lb_workers[i];
        }
    }
    return NULL;
}

static void
lb_workers_reap(lb_cycle_t *cycle, bool exiting)
{
    lb_worker_t  *w;
    pid_t         pid;
    size_t        k;
    int           status;
    char          what[128];

    while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
        w = lb_worker_find(pid);
        if (w == NULL) {
            continue;
        }
        lb_child_text(w, what, sizeof(what));
        if (WIFSIGNALED(status)) {
            lb_log(w->quitting || exiting ? LB_LOG_NOTICE : LB_LOG_ERROR, 0,
                   "%s exited on signal %d", what, WTERMSIG(status));
        } else if (WEXITSTATUS(status) != 0 || (!w->quitting && !exiting)) {
            lb_log(w->quitting || exiting ? LB_LOG_NOTICE : LB_LOG_ERROR, 0,
                   "%s exited with code %d", what, WEXITSTATUS(status));
        } else {
            lb_log_info("%s exited", what);
        }
        if (!w->quitting && !exiting && w->generation == cycle->generation) {
            k = lb_child_slot(w);
            if (lb_current_msec - w->started >= 1000) {
                lb_slot_quick_deaths[k] = 0;
            } else if (++lb_slot_quick_deaths[k] >= 3) {
                lb_slot_respawn_at[k] = lb_current_msec + 1000;
                if (w->helper) {
                    lb_log_error(0, "the %s died within a second of starting %u times in a "
                                 "row; restarting it in 1s", w->helper->helper->name,
                                 lb_slot_quick_deaths[k]);
                } else {
                    lb_log_error(0, "worker slot %d died within a second of starting %u "
                                 "times in a row; restarting it in 1s", w->slot,
                                 lb_slot_quick_deaths[k]);
                }
            }
        }
        if (w->channel != -1) {
            close(w->channel);
            w->channel = -1;
        }
        w->pid = 0;
    }
}

/* Once every worker of the generations before some G has exited, what
 * only those generations used in shared memory can be freed: the zones'
 * retire hooks are told the oldest generation still running. */
static void
lb_master_retire_generations(lb_cycle_t *cycle)
{
    static unsigned  retired;       /* generations below it are retired */
    unsigned         oldest = cycle->generation;
    size_t           i;

    for (i = 0; i < lb_nelems(lb_workers); i++) {
        if (lb_workers[i].pid && lb_workers[i].generation < oldest) {
            oldest = lb_workers[i].generation;
        }
    }
    if (oldest > retired) {
        retired = oldest;
        lb_shm_zones_retire(cycle, oldest);
    }
}

/* Keeps a 1s alarm running while the master has timed work: quitting
 * workers to kill when they outlive shutdown_timeout, slots waiting to be
 * restarted, or a fast shutdown to escalate. */
static void
lb_master_arm_alarm(bool exiting)
{
    struct itimerval  it;
    bool              pending = exiting || lb_answer_pending;
    size_t            i;
    int               slot;

    for (i = 0; i < lb_nelems(lb_workers) && !pending; i++) {
        pending = lb_workers[i].pid && lb_workers[i].quitting;
    }
    for (slot = 0; slot < LB_ALL_SLOTS && !pending; slot++) {
        pending = lb_slot_respawn_at[slot] > lb_current_msec;
    }
    memset(&it, 0, sizeof(it));
    if (pending) {
        it.it_value.tv_sec = 1;
    }
    setitimer(ITIMER_REAL, &it, NULL);
}

static void
lb_workers_kill_overdue(void)
{
    size_t  i;
    char    what[128];

    for (i = 0; i < lb_nelems(lb_workers); i++) {
        if (lb_workers[i].pid && lb_workers[i].quitting && lb_workers[i].kill_at
            && lb_workers[i].kill_at <= lb_current_msec)
        {
            lb_log_warn(0, lb_workers[i].closed
                           ? "%s did not exit after its generation was closed; killing it"
                           : "%s outlived shutdown_timeout; killing it",
                        lb_child_text(&lb_workers[i], what, sizeof(what)));
            kill(lb_workers[i].pid, SIGKILL);
            lb_workers[i].kill_at = 0;
        }
    }
}

/* Draining generations ---------------------------------------------------- */

/* A worker of a generation older than the one in force: it stopped
 * accepting and finishes what it has. Helpers are not counted: an old
 * helper holds no client's connection and quits at once. */
static bool
lb_worker_draining(const lb_worker_t *w, const lb_cycle_t *cycle)
{
    return w->pid && w->helper == NULL && w->generation < cycle->generation;
}

/* The oldest generation from `from` on that still has draining workers
 * (not closed yet, unless with_closed); false when there is none. */
static bool
lb_draining_next(const lb_cycle_t *cycle, unsigned from, bool with_closed, unsigned *g)
{
    bool    found = false;
    size_t  i;

    for (i = 0; i < lb_nelems(lb_workers); i++) {
        if (lb_worker_draining(&lb_workers[i], cycle)
            && (with_closed || !lb_workers[i].closed)
            && lb_workers[i].generation >= from
            && (!found || lb_workers[i].generation < *g))
        {
            *g = lb_workers[i].generation;
            found = true;
        }
    }
    return found;
}

/* After a reload: past max_old_generations generations still draining,
 * the oldest are closed at once, so that a stream of reloads with long
 * connections (shutdown_timeout of hours) does not pile up workers and
 * their memory. Their processes get TERM (they close their connections
 * and exit) and KILL if still there LB_CLOSED_GRACE later. */
static void
lb_master_close_old_generations(lb_cycle_t *cycle)
{
    unsigned  n = 0, g = 0, total;
    size_t    i;

    for (g = 0; lb_draining_next(cycle, g, false, &g); g++) {
        n++;
    }
    total = n;
    while (n > (unsigned) cycle->core->max_old_generations
           && lb_draining_next(cycle, 0, false, &g))
    {
        for (i = 0; i < lb_nelems(lb_workers); i++) {
            if (lb_workers[i].pid && lb_workers[i].generation == g && !lb_workers[i].closed) {
                lb_workers[i].quitting = true;
                lb_workers[i].closed = true;
                lb_workers[i].kill_at = lb_current_msec + LB_CLOSED_GRACE;
                if (kill(lb_workers[i].pid, SIGTERM) == -1 && errno != ESRCH) {
                    lb_log_error(errno, "kill(%d, TERM) failed", (int) lb_workers[i].pid);
                }
            }
        }
        lb_log_warn(0, "generation %u closed early: %u generations were draining, "
                    "max_old_generations = %lld", g, total,
                    (long long) cycle->core->max_old_generations);
        n--;
    }
}

/* Publishes the draining workers into lb_draining_zone; after every turn
 * of the master's loop (cheap: the table is small and the loop sleeps). */
static void
lb_master_publish_draining(const lb_cycle_t *cycle)
{
    lb_draining_zone_t  *z = lb_draining_zone;
    uint32_t             seq, n = 0, gens = 0;
    unsigned             g = 0;
    size_t               i;

    if (z == NULL) {
        return;
    }
    seq = z->seq;
    __atomic_store_n(&z->seq, seq + 1, __ATOMIC_RELAXED);
    __atomic_thread_fence(__ATOMIC_RELEASE);
    for (i = 0; i < lb_nelems(lb_workers); i++) {
        if (lb_worker_draining(&lb_workers[i], cycle)) {
            __atomic_store_n(&z->pids[n++], lb_workers[i].pid, __ATOMIC_RELAXED);
        }
    }
    /* closed ones count too: they are still there */
    for (g = 0; lb_draining_next(cycle, g, true, &g); g++) {
        gens++;
    }
    __atomic_store_n(&z->nworkers, n, __ATOMIC_RELAXED);
    __atomic_store_n(&z->generations, gens, __ATOMIC_RELAXED);
    __atomic_store_n(&z->seq, seq + 2, __ATOMIC_RELEASE);
}

/* The private resident memory of a process (RssAnon: resident pages not
 * backed by a file or by shared memory), in bytes; 0 once it is gone. */
static uint64_t
lb_process_private_rss(pid_t pid)
{
    char                path[64];
    unsigned long long  size, resident, shared;
    FILE               *f;
    int                 n;

    snprintf(path, sizeof(path), "/proc/%d/statm", (int) pid);
    f = fopen(path, "re");
    if (f == NULL) {
        return 0;
    }
    n = fscanf(f, "%llu %llu %llu", &size, &resident, &shared);
    fclose(f);
    if (n != 3 || shared > resident) {
        return 0;
    }
    return (uint64_t) (resident - shared) * (uint64_t) sysconf(_SC_PAGESIZE);
}

void
lb_master_draining(lb_draining_t *d)
{
    lb_draining_zone_t  *z = lb_draining_zone;
    static pid_t         pids[lb_nelems(lb_workers)];
    uint32_t             seq, n = 0;
    size_t               i;
    int                  tries;

    memset(d, 0, sizeof(*d));
    if (z == NULL) {
        return;
    }
    for (tries = 0; tries < 100; tries++) {
        seq = __atomic_load_n(&z->seq, __ATOMIC_ACQUIRE);
        if (seq & 1) {
            sched_yield();
            continue;
        }
        d->generations = __atomic_load_n(&z->generations, __ATOMIC_RELAXED);
        n = lb_min(__atomic_load_n(&z->nworkers, __ATOMIC_RELAXED),
                   (uint32_t) lb_nelems(pids));
        for (i = 0; i < n; i++) {
            pids[i] = __atomic_load_n(&z->pids[i], __ATOMIC_RELAXED);
        }
        __atomic_thread_fence(__ATOMIC_ACQUIRE);
        if (__atomic_load_n(&z->seq, __ATOMIC_RELAXED) == seq) {
            break;
        }
    }
    d->workers = n;
    for (i = 0; i < n; i++) {
        d->memory_bytes += lb_process_private_rss(pids[i]);
    }
}

/* Reload ----------------------------------------------------------------- */

static void
lb_reload_report(const char *line)
{
    lb_log_error(0, "%s", line);
}

/* worker_rlimit_nofile: the open-files limit the master (and so every
 * process it forks) runs with. 0 raises the soft limit to the hard one;
 * a number above the hard limit raises both where the master may (root),
 * else the hard limit is used and that is said. */
static void
lb_master_set_nofile(lb_cycle_t *cycle)
{
    struct rlimit  rl, want;

    if (getrlimit(RLIMIT_NOFILE, &rl) == -1) {
        return;
    }
    want = rl;
    want.rlim_cur = cycle->core->rlimit_nofile ? (rlim_t) cycle->core->rlimit_nofile
                                               : rl.rlim_max;
    if (want.rlim_cur > rl.rlim_max) {
        want.rlim_max = want.rlim_cur;
    }
    if (want.rlim_cur == rl.rlim_cur && want.rlim_max == rl.rlim_max) {
        return;
    }
    if (setrlimit(RLIMIT_NOFILE, &want) == 0) {
        return;
    }
    lb_log_warn(errno, "cannot raise the open-files limit to %llu (worker_rlimit_nofile); "
                "using the hard limit, %llu", (unsigned long long) want.rlim_cur,
                (unsigned long long) rl.rlim_max);
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
}

static int
lb_master_init_cycle(lb_cycle_t *cycle, lb_cycle_t *old)
{
    size_t  i;

    lb_master_set_nofile(cycle);

    if (lb_sockets_open(cycle) != LB_OK || lb_shm_zones_map(cycle, old) != LB_OK) {
        return LB_ERROR;
    }
    for (i = 0; i < lb_nmodules; i++) {
        if (lb_all_modules[i]->init_master && lb_all_modules[i]->init_master(cycle) != LB_OK) {
            lb_log_error(0, "module %s failed to initialise", lb_all_modules[i]->name);
            return LB_ERROR;
        }
    }
    /* opened here, before any worker forks, so that workers running as
     * `user` write through the master's descriptors */
    return lb_access_files_open(cycle);
}

/* Reload in place (lb_reload.h) -------------------------------------------- */

/* Hands the message in fd to every worker of the generation in force; one
 * it cannot reach is replaced by a worker forked from the new cycle. */
static void
lb_workers_send_reload(lb_cycle_t *cycle, int fd)
{
    lb_worker_t  *w;
    size_t        i;
    char          what[128];

    for (i = 0; i < lb_nelems(lb_workers); i++) {
        w = &lb_workers[i];
        if (w->pid == 0 || w->helper || w->quitting || w->generation != cycle->generation) {
            continue;
        }
        if (w->channel != -1
            && lb_channel_send_file(w->channel, LB_RELOAD_CHANNEL_TAG, fd) == LB_OK)
        {
            w->applying = true;
            kill(w->pid, SIGUSR1);
            continue;
        }
        lb_log_warn(errno, "cannot hand the change to %s; replacing it",
                    lb_child_text(w, what, sizeof(what)));
        w->quitting = true;
        w->kill_at = lb_current_msec + w->shutdown_timeout + 5000;
        kill(w->pid, SIGQUIT);
    }
}

/* The helpers (health prober, admin server) run the configuration they
 * were forked with: new ones are forked from the new cycle and the old
 * ones told to stop; the answer to lbctl waits for those to be gone. */
static void
lb_helpers_replace(lb_cycle_t *cycle)
{
    size_t  i;

    for (i = 0; i < lb_nelems(lb_workers); i++) {
        if (lb_workers[i].pid && lb_workers[i].helper && !lb_workers[i].quitting) {
            lb_workers[i].quitting = true;
            lb_workers[i].replaced = true;
            lb_workers[i].kill_at = lb_current_msec + lb_workers[i].shutdown_timeout + 5000;
            kill(lb_workers[i].pid, SIGQUIT);
        }
    }
    lb_workers_fill(cycle, false);
}

/* cycle, initialised beside old with old's generation, differs from it
 * only in what the running workers can take: it becomes the master's, the
 * workers get the change, the helpers are replaced. LB_DECLINED (logged
 * why): a full reload it must be; nothing was committed. */
static int
lb_master_reload_in_place(lb_cycle_t *cycle, lb_cycle_t *old)
{
    char  summary[1024];
    int   fd;

    if (lb_reload_prepare(old, cycle, &fd, summary, sizeof(summary)) != LB_OK) {
        lb_log_notice("reload: %s; starting a new generation", summary);
        return LB_DECLINED;
    }
    lb_shm_zones_commit(cycle, old);
    lb_cycle = cycle;
    lb_workers_send_reload(cycle, fd);
    close(fd);
    lb_helpers_replace(cycle);
    lb_sockets_close_unused(cycle);
    lb_cycle_free(old);
    lb_log_notice("reloaded in place: %s", summary);
    return LB_OK;
}

static bool
lb_master_reload(void)
{
    lb_cycle_t  *cycle, *old = lb_cycle;
    bool         in_place = true;       /* tried first, when the change allows */

    lb_answer_in_place = false;
    lb_log_notice("reloading configuration from %s", old->conf_file);
    lb_notify("RELOADING=1");
    /* READY=1 again once the new generation serves, or at once when the
     * running configuration stays */
    lb_notify_ready_pending = true;
    for ( ;; ) {
        cycle = lb_cycle_load(old->conf_file, old->prefix, lb_reload_report);
        if (cycle == NULL) {
            lb_log_error(0, "reload failed: the configuration has errors; "
                         "the running configuration keeps serving");
            return false;
        }
        in_place = in_place && lb_reload_candidate(old, cycle);
        cycle->generation = old->generation + !in_place;
        if (lb_master_init_cycle(cycle, old) != LB_OK) {
            lb_log_error(0, "reload failed; the running configuration keeps serving");
            lb_shm_zones_abandon(cycle);
            lb_cycle_free(cycle);
            lb_sockets_close_unused(old);       /* those this attempt opened */
            return false;
        }
        if (!in_place) {
            break;
        }
        if (lb_master_reload_in_place(cycle, old) == LB_OK) {
            lb_answer_in_place = true;
            return true;
        }
        /* loaded again as a new generation: its shared state marked anew */
        lb_shm_zones_abandon(cycle);
        lb_cycle_free(cycle);
        lb_sockets_close_unused(old);
        in_place = false;
    }
    lb_shm_zones_commit(cycle, old);
    if (strcmp(cycle->core->error_log, old->core->error_log) != 0
        && lb_log_open(cycle->core->error_log) != LB_OK)
    {
        lb_log_error(errno, "cannot open error log \"%s\"; keeping the old one",
                     cycle->core->error_log);
    }
    lb_log_level = (lb_log_level_t) cycle->core->log_level;

    lb_cycle = cycle;
    memset(lb_slot_respawn_at, 0, sizeof(lb_slot_respawn_at));
    memset(lb_slot_quick_deaths, 0, sizeof(lb_slot_quick_deaths));
    lb_workers_fill(cycle, false);
    lb_workers_signal(SIGQUIT, true, cycle->generation);
    lb_master_close_old_generations(cycle);
    lb_sockets_close_unused(cycle);
    lb_cycle_free(old);
    lb_master_retire_generations(cycle);    /* an older generation may have none left */
    lb_log_notice("reload done: generation %u, %lld workers", cycle->generation,
                  (long long) cycle->core->workers);
    return true;
}

int
lb_master_init(lb_cycle_t *cycle)
{
    if (lb_master_watch_open() != LB_OK) {
        return LB_ERROR;
    }
    /* before any fork: every child inherits the mapping */
    lb_draining_zone = mmap(NULL, sizeof(lb_draining_zone_t), PROT_READ | PROT_WRITE,
                            MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (lb_draining_zone == MAP_FAILED) {
        lb_log_error(errno, "mmap(%zu) failed; /status will not show draining workers",
                     sizeof(lb_draining_zone_t));
        lb_draining_zone = NULL;
    }
    if (lb_master_init_cycle(cycle, NULL) != LB_OK) {
        return LB_ERROR;
    }
    lb_shm_zones_commit(cycle, NULL);       /* the zones' commit hooks */
    return LB_OK;
}

/* The marks that children's signals ask for: signals stay blocked outside
 * sigsuspend, so the lists are ours here. */
static void
lb_workers_mark_stopped(void)
{
    lb_worker_t  *w;
    int           k;

    for (k = 0; k < lb_nstopped; k++) {
        if ((w = lb_worker_find(lb_stopped_pids[k])) != NULL) {
            w->stopped = true;
        }
    }
    lb_nstopped = 0;
}

static void
lb_master_answer(bool now)
{
    union sigval  value;
    size_t        i;
    int           k;

    if (!lb_answer_pending) {
        return;
    }
    if (lb_answer_ok && !now && lb_current_msec < lb_answer_deadline) {
        for (i = 0; i < lb_nelems(lb_workers); i++) {
            if (lb_workers[i].pid
                && ((lb_workers[i].generation < lb_cycle->generation && !lb_workers[i].stopped)
                    || lb_workers[i].replaced || lb_workers[i].applying))
            {
                return;
            }
        }
    }
    /* what was done: the generation in force, and whether in place */
    value.sival_int = (int) (lb_cycle->generation & LB_CTL_GENERATION)
                      | (lb_answer_in_place ? LB_CTL_IN_PLACE : 0);
    for (k = 0; k < lb_nrequesters; k++) {
        sigqueue(lb_reload_requesters[k], lb_answer_ok ? SIGUSR1 : SIGUSR2, value);
    }
    lb_nrequesters = 0;
    lb_answer_pending = false;
}

static void
lb_workers_mark_applied(void)
{
    lb_worker_t  *w;
    int           k;

    for (k = 0; k < lb_napplied; k++) {
        if ((w = lb_worker_find(lb_applied_pids[k])) != NULL) {
            w->applying = false;
        }
    }
    lb_napplied = 0;
}

/* Binary upgrade ---------------------------------------------------------- */

static void
lb_workers_mark_ready(void)
{
    lb_worker_t  *w;
    int           k;

    for (k = 0; k < lb_nready; k++) {
        if ((w = lb_worker_find(lb_ready_pids[k])) != NULL) {
            w->ready = true;
        }
    }
    lb_nready = 0;
}

/* Once a worker of the configuration in force serves in every slot: a
 * new master tells the old one, and the service manager hears READY=1
 * (after the start and after each reload). */
static void
lb_master_check_ready(lb_cycle_t *cycle)
{
    bool    ready[LB_MAX_WORKERS] = { false };
    size_t  i;
    int     slot;

    for (i = 0; i < lb_nelems(lb_workers); i++) {
        if (lb_workers[i].pid && lb_workers[i].ready && lb_workers[i].helper == NULL
            && lb_workers[i].generation == cycle->generation && lb_workers[i].slot >= 0
            && lb_workers[i].slot < LB_MAX_WORKERS)
        {
            ready[lb_workers[i].slot] = true;
        }
    }
    for (slot = 0; slot < (int) cycle->core->workers; slot++) {
        if (!ready[slot]) {
            return;
        }
    }
    lb_upgrade_ready();
    if (lb_notify_ready_pending) {
        lb_notify_ready_pending = false;
        lb_notify("READY=1");
    }
}

static void
lb_upgrade_answer(pid_t requester, bool ok, int value)
{
    if (requester > 0) {
        sigqueue(requester, ok ? SIGUSR1 : SIGUSR2, (union sigval) { .sival_int = value });
    }
}

/* USR2: hands every listening socket to a new binary (lb_upgrade.c). true
 * when it took over: this master then stops its workers and leaves. */
static bool
lb_master_upgrade(lb_cycle_t *cycle, bool foreground, bool exiting)
{
    lb_upgrade_result_t  result;
    pid_t                requester = lb_upgrade_requester, pid;
    char                 path[PATH_MAX + 16], binary[PATH_MAX + 1], why[512];
    FILE                *f;

    lb_upgrade_requester = 0;
    binary[0] = '\0';
    if (requester && lb_upgrade_request_path(cycle->core->pid_file, path, sizeof(path))) {
        /* lbctl upgrade --binary PATH left the path there */
        f = fopen(path, "r");
        if (f) {
            if (fgets(binary, sizeof(binary), f) == NULL) {
                binary[0] = '\0';
            }
            binary[strcspn(binary, "\n")] = '\0';
            fclose(f);
            unlink(path);
        }
    }
    if (exiting) {
        lb_log_error(0, "binary upgrade refused: this master is stopping (or handed over "
                     "already)");
        lb_upgrade_answer(requester, false, LB_UPGRADE_BUSY);
        return false;
    }
    pid = lb_upgrade_run(cycle, binary, foreground, &result, why, sizeof(why));
    if (pid == -1) {
        lb_upgrade_answer(requester, false, (int) result);
        return false;
    }
    lb_upgrade_answer(requester, true, (int) pid);
    /* the new master listens on the same sockets: close our copies only */
    lb_sockets_forget_all();
    lb_workers_signal(SIGQUIT, false, 0);
    return true;
}

/* The master loop --------------------------------------------------------- */

static void  (*lb_master_starters[8])(void);
static size_t  lb_master_nstarters;
static bool    lb_master_started;

int
lb_master_at_start(void (*fn)(void))
{
    if (lb_master_started) {
        fn();
        return LB_OK;
    }
    if (lb_master_nstarters == lb_nelems(lb_master_starters)) {
        return LB_ERROR;
    }
    lb_master_starters[lb_master_nstarters++] = fn;
    return LB_OK;
}

int
lb_master_run(lb_cycle_t *cycle, bool foreground)
{
    sigset_t  empty;
    bool      exiting = false, terminating = false, upgraded = false;
    int       ticks = 0;

    lb_cycle = cycle;
    lb_master_pid = getpid();           /* after daemonizing */
    lb_master_started_at = time(NULL);
    lb_signals_install();
    lb_signals_block(NULL);
    sigemptyset(&empty);
    lb_master_started = true;
    for (size_t i = 0; i < lb_master_nstarters; i++) {
        lb_master_starters[i]();
    }
    lb_workers_fill(cycle, false);

    for ( ;; ) {
        lb_time_update();
        if (exiting && lb_workers_count() == 0) {
            break;
        }
        lb_master_arm_alarm(exiting);
        if (!lb_sig_reload && !lb_sig_quit && !lb_sig_terminate && !lb_sig_reopen
            && !lb_sig_child && !lb_sig_alarm && !lb_sig_upgrade)
        {
            sigsuspend(&empty);
        }
        lb_time_update();

        if (lb_sig_alarm) {
            lb_sig_alarm = 0;
            lb_workers_kill_overdue();
            lb_workers_fill(lb_cycle, exiting);
            if (terminating) {
                /* workers get three seconds to honour TERM */
                lb_workers_signal(++ticks >= 3 ? SIGKILL : SIGTERM, false, 0);
            }
        }
        if (lb_sig_terminate) {
            lb_sig_terminate = 0;
            if (!terminating) {
                lb_log_notice("fast shutdown");
                lb_notify("STOPPING=1");
            }
            exiting = terminating = true;
            lb_workers_signal(SIGTERM, false, 0);
        }
        if (lb_sig_quit) {
            lb_sig_quit = 0;
            if (!exiting) {
                lb_log_notice("graceful shutdown");
                lb_notify("STOPPING=1");
                exiting = true;
                /* new clients are refused at once, not queued until the
                 * end: the master's copies go first, then the workers
                 * close theirs as they stop (in this order, a worker that
                 * says it stopped accepting leaves no open copy behind) */
                lb_sockets_close_all();
                lb_workers_signal(SIGQUIT, false, 0);
            }
        }
        /* after TERM and QUIT, so workers stopped by the same Ctrl-C are
         * reaped as part of the shutdown, not restarted */
        if (lb_sig_child) {
            lb_sig_child = 0;
            lb_workers_reap(lb_cycle, exiting);
            lb_workers_fill(lb_cycle, exiting);
            lb_master_retire_generations(lb_cycle);
        }
        if (lb_nstopped) {
            lb_workers_mark_stopped();
        }
        if (lb_nready) {
            lb_workers_mark_ready();
        }
        if (lb_napplied) {
            lb_workers_mark_applied();
        }
        if (lb_upgrade_waiting_ready() || lb_notify_ready_pending) {
            lb_master_check_ready(lb_cycle);
        }
        if (lb_sig_reload) {
            lb_sig_reload = 0;
            lb_answer_ok = !exiting && lb_master_reload();
            lb_answer_pending = true;
            lb_answer_deadline = lb_current_msec + 5000;
        }
        lb_master_answer(false);
        if (lb_sig_upgrade) {
            lb_sig_upgrade = 0;
            if (lb_master_upgrade(lb_cycle, foreground, exiting)) {
                exiting = upgraded = true;
            }
        }
        if (lb_sig_reopen) {
            lb_sig_reopen = 0;
            lb_master_reopen(foreground);
        }
        lb_master_publish_draining(lb_cycle);
    }

    lb_master_answer(true);
    if (upgraded) {
        char   oldbin[PATH_MAX + 8];
        FILE  *f;
        long   pid = 0;

        /* the pid file is the new master's now; the .oldbin one is ours
         * unless the new master has upgraded again since */
        snprintf(oldbin, sizeof(oldbin), "%s.oldbin", lb_cycle->core->pid_file);
        f = fopen(oldbin, "r");
        if (f) {
            if (fscanf(f, "%ld", &pid) == 1 && pid == (long) getpid()) {
                unlink(oldbin);
            }
            fclose(f);
        }
        lb_log_notice("handed over to the new master; exiting");
        if (foreground && !lb_upgrade_supervised()) {
            /* a container's PID 1, a service's main process: stays, with
             * nothing of the old configuration (its shared zones unmapped) */
            char  *pid_file = strdup(lb_cycle->core->pid_file);

            lb_cycle_free(lb_cycle);
            lb_cycle = NULL;
            lb_upgrade_supervise(pid_file ? pid_file : "");
        }
        return 0;
    }
    lb_log_notice("exiting");
    unlink(lb_cycle->core->pid_file);
    lb_sockets_close_all();
    return 0;
}
