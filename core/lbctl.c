/*
 * lbctl.c: the control command (SPEC §2). It reads the same configuration
 * as lbd to find the master (pid_file) and talks to it with signals; every
 * failure is one line on stderr and a non-zero exit.
 */
#include "lb_core.h"
#include "lb_sanitizer.h"
#include "lb_upgrade.h"

#include <fcntl.h>
#include <limits.h>

#include <signal.h>
#include <sys/stat.h>
#include <time.h>

static void
lbctl_usage_modules(FILE *f)
{
    const lb_ctl_command_t  *cmd;
    size_t                   i;

    if (lb_modules_init() != LB_OK) {
        return;
    }
    for (i = 0; i < lb_nmodules; i++) {
        for (cmd = lb_all_modules[i]->commands; cmd && cmd->name; cmd++) {
            fprintf(f, "  %s\n", cmd->usage);
        }
    }
}

static void
lbctl_usage(FILE *f)
{
    fprintf(f, "usage: lbctl [-c FILE] [-p PREFIX] COMMAND\n"
               "commands:\n"
               "  test     check the configuration (same as lbd -t)\n"
               "  reload   check the configuration, then make lbd load it\n"
               "  upgrade [--binary PATH]\n"
               "           run the installed (or that) lbd binary in place of the running\n"
               "           one, handing it every listening socket\n"
               "  stop     fast shutdown; waits until lbd has exited\n"
               "  quit     graceful shutdown; waits until lbd has exited\n"
               "  reopen   reopen the log files\n");
    lbctl_usage_modules(f);
}

static bool
lbctl_is_lbd(pid_t pid)
{
    char   path[64], comm[64];
    FILE  *f;
    bool   ok;

    snprintf(path, sizeof(path), "/proc/%d/comm", (int) pid);
    f = fopen(path, "r");
    if (f == NULL) {
        return false;
    }
    ok = fgets(comm, sizeof(comm), f) != NULL && strncmp(comm, "lbd", 3) == 0;
    fclose(f);
    return ok;
}

static pid_t
lbctl_read_pid(const char *path)
{
    FILE  *f;
    long   pid = 0;

    f = fopen(path, "r");
    if (f == NULL) {
        fprintf(stderr, "lbctl: cannot read pid file \"%s\": %s (is lbd running?)\n",
                path, strerror(errno));
        return -1;
    }
    if (fscanf(f, "%ld", &pid) != 1 || pid < 1 || pid > INT_MAX) {
        fprintf(stderr, "lbctl: pid file \"%s\" does not hold a process id\n", path);
        fclose(f);
        return -1;
    }
    fclose(f);
    if (kill((pid_t) pid, 0) == -1 && errno == ESRCH) {
        fprintf(stderr, "lbctl: lbd is not running (no process %ld from \"%s\")\n", pid, path);
        return -1;
    }
    /* never signal what is not lbd: a stale file whose pid was reused, or
     * a container's pid file ("1") read from outside its namespace, where
     * 1 is the host's init */
    if (!lbctl_is_lbd((pid_t) pid)) {
        fprintf(stderr, "lbctl: process %ld named by \"%s\" is not lbd (a stale pid file, or "
                "one from another pid namespace); not signalling it\n", pid, path);
        return -1;
    }
    return (pid_t) pid;
}

static int
lbctl_signal(pid_t pid, int signo)
{
    if (kill(pid, signo) == -1) {
        fprintf(stderr, "lbctl: cannot signal process %d: %s\n", (int) pid, strerror(errno));
        return 1;
    }
    return 0;
}

static off_t
lbctl_log_size(const char *path)
{
    struct stat  st;

    if (strcmp(path, "stderr") == 0 || stat(path, &st) == -1) {
        return -1;
    }
    return st.st_size;
}

/* Prints the master's error lines written since offset `from`: the reasons
 * a reload was refused on the master's side (a port in use, say). */
static void
lbctl_print_errors(const char *path, off_t from, pid_t pid)
{
    char   line[2048], tag[32], *msg;
    FILE  *f;

    if (from < 0 || (f = fopen(path, "r")) == NULL) {
        fprintf(stderr, "lbctl: the reasons are in the error log \"%s\"\n", path);
        return;
    }
    snprintf(tag, sizeof(tag), "] %d#", (int) pid);
    if (fseeko(f, from, SEEK_SET) == 0) {
        while (fgets(line, sizeof(line), f)) {
            if (strstr(line, "[error]") == NULL || strstr(line, tag) == NULL) {
                continue;
            }
            msg = strstr(line, ": ");
            fprintf(stderr, "%s", msg ? msg + 2 : line);
        }
    }
    fclose(f);
}

/* After a reload applied in place: the master's line saying what changed
 * ("reloaded in place: upstream ..."), from the error log written since
 * `from`; "reloaded in place" alone when the log cannot be read. */
static void
lbctl_print_in_place(const char *path, off_t from, pid_t pid)
{
    char   line[2048], tag[32], *msg;
    FILE  *f;

    snprintf(tag, sizeof(tag), "] %d#", (int) pid);
    f = from >= 0 ? fopen(path, "r") : NULL;
    if (f && fseeko(f, from, SEEK_SET) == 0) {
        while (fgets(line, sizeof(line), f)) {
            msg = strstr(line, tag) ? strstr(line, ": reloaded in place: ") : NULL;
            if (msg) {
                printf("%s", msg + 2);
                fclose(f);
                return;
            }
        }
    }
    if (f) {
        fclose(f);
    }
    printf("reloaded in place\n");
}

/* Sends HUP with a value that asks the master to answer, then waits for
 * its answer: SIGUSR1 applied (its value says how: in place, or the new
 * generation), SIGUSR2 refused (reasons in the error log). */
static int
lbctl_reload(pid_t pid, lb_cycle_t *cycle)
{
    union sigval     value = { .sival_int = LB_CTL_RELOAD };
    struct timespec  timeout = { 30, 0 };
    siginfo_t        info;
    sigset_t         set;
    int              signo;
    off_t            log_size;

    sigemptyset(&set);
    sigaddset(&set, SIGUSR1);
    sigaddset(&set, SIGUSR2);
    sigprocmask(SIG_BLOCK, &set, NULL);

    log_size = lbctl_log_size(cycle->core->error_log);
    if (sigqueue(pid, SIGHUP, value) == -1) {
        fprintf(stderr, "lbctl: cannot signal process %d: %s\n", (int) pid, strerror(errno));
        return 1;
    }
    for ( ;; ) {
        signo = sigtimedwait(&set, &info, &timeout);
        if (signo == -1) {
            if (errno == EINTR) {
                continue;
            }
            fprintf(stderr, "lbctl: lbd (pid %d) did not answer the reload within 30s; "
                    "see the error log \"%s\"\n", (int) pid, cycle->core->error_log);
            return 1;
        }
        if (info.si_pid != pid) {
            continue;
        }
        if (signo == SIGUSR1) {
            if (info.si_value.sival_int & LB_CTL_IN_PLACE) {
                lbctl_print_in_place(cycle->core->error_log, log_size, pid);
            } else {
                printf("reloaded: new generation %d\n",
                       info.si_value.sival_int & LB_CTL_GENERATION);
            }
            return 0;
        }
        lbctl_print_errors(cycle->core->error_log, log_size, pid);
        fprintf(stderr, "lbctl: lbd refused the new configuration and keeps the running one\n");
        return 1;
    }
}

/* USR2 with a value that asks the master to answer (after writing the
 * binary asked for beside the pid file), then waits: SIGUSR1 with the new
 * master's pid, or SIGUSR2 with why it failed (lb_upgrade.h). */
static int
lbctl_upgrade(pid_t pid, lb_cycle_t *cycle, const char *binary)
{
    union sigval     value = { .sival_int = LB_CTL_UPGRADE };
    struct timespec  timeout;
    siginfo_t        info;
    sigset_t         set;
    char             path[PATH_MAX + 16], full[PATH_MAX];
    FILE            *f;
    off_t            log_size;
    int              signo, fd;

    if (binary) {
        if (realpath(binary, full) == NULL || access(full, X_OK) == -1) {
            fprintf(stderr, "lbctl: cannot run \"%s\": %s\n", binary, strerror(errno));
            return 1;
        }
        binary = full;
    }
    if (lb_upgrade_request_path(cycle->core->pid_file, path, sizeof(path)) == NULL) {
        fprintf(stderr, "lbctl: pid_file path too long\n");
        return 1;
    }
    unlink(path);
    fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    f = fd == -1 ? NULL : fdopen(fd, "w");
    if (f == NULL || fprintf(f, "%s\n", binary ? binary : "") < 0 || fclose(f) != 0) {
        fprintf(stderr, "lbctl: cannot write \"%s\": %s\n", path, strerror(errno));
        return 1;
    }

    sigemptyset(&set);
    sigaddset(&set, SIGUSR1);
    sigaddset(&set, SIGUSR2);
    sigprocmask(SIG_BLOCK, &set, NULL);
    log_size = lbctl_log_size(cycle->core->error_log);
    if (sigqueue(pid, SIGUSR2, value) == -1) {
        fprintf(stderr, "lbctl: cannot signal process %d: %s\n", (int) pid, strerror(errno));
        unlink(path);
        return 1;
    }
    timeout.tv_sec = (time_t) (cycle->core->upgrade_timeout / 1000) + 20;
    timeout.tv_nsec = 0;
    for ( ;; ) {
        signo = sigtimedwait(&set, &info, &timeout);
        if (signo == -1) {
            if (errno == EINTR) {
                continue;
            }
            fprintf(stderr, "lbctl: lbd (pid %d) did not answer the upgrade in time; see the "
                    "error log \"%s\"\n", (int) pid, cycle->core->error_log);
            return 1;
        }
        if (info.si_pid != pid) {
            continue;
        }
        if (signo == SIGUSR1) {
            printf("upgraded: new master %d, the old one (%d) stops its workers gracefully\n",
                   info.si_value.sival_int, (int) pid);
            return 0;
        }
        lbctl_print_errors(cycle->core->error_log, log_size, pid);
        fprintf(stderr, "lbctl: upgrade failed: %s; lbd %d keeps serving\n",
                lb_upgrade_result_text(info.si_value.sival_int), (int) pid);
        return 1;
    }
}

/* Whether a binary upgrade is handing over right now: the old master has
 * renamed the pid file to pid_file.oldbin and the new one has not written
 * its own yet. (Once it has, a new upgrade may start while the old master
 * still finishes its connections.) */
static bool
lbctl_upgrade_under_way(const char *pid_file)
{
    char   path[PATH_MAX + 8];
    FILE  *f;
    long   pid = 0;

    snprintf(path, sizeof(path), "%s.oldbin", pid_file);
    f = fopen(path, "r");
    if (f == NULL) {
        return false;
    }
    if (fscanf(f, "%ld", &pid) != 1 || pid < 1 || pid > INT_MAX || !lbctl_is_lbd((pid_t) pid)) {
        fclose(f);
        return false;               /* left by a master that is gone */
    }
    fclose(f);
    if (access(pid_file, F_OK) == 0) {
        return false;
    }
    fprintf(stderr, "lbctl: an upgrade is under way: lbd %ld is handing over to a new binary "
            "(\"%s\"); try again when it has ended\n", pid, path);
    return true;
}

/* An exited master whose parent has not reaped it yet is gone for us. */
static bool
lbctl_is_zombie(pid_t pid)
{
    char   path[64], buf[512], *p;
    FILE  *f;
    bool   zombie = false;

    snprintf(path, sizeof(path), "/proc/%d/stat", (int) pid);
    f = fopen(path, "r");
    if (f == NULL) {
        return false;
    }
    if (fgets(buf, sizeof(buf), f) && (p = strrchr(buf, ')')) != NULL) {
        zombie = p[1] == ' ' && p[2] == 'Z';
    }
    fclose(f);
    return zombie;
}

/* Waits until pid has exited, up to timeout ms. */
static int
lbctl_wait_exit(pid_t pid, lb_msec_t timeout)
{
    struct timespec  ts = { 0, 20 * 1000000 };
    lb_msec_t        waited;

    for (waited = 0; waited < timeout; waited += 20) {
        if ((kill(pid, 0) == -1 && errno == ESRCH) || lbctl_is_zombie(pid)) {
            return 0;
        }
        nanosleep(&ts, NULL);
    }
    fprintf(stderr, "lbctl: lbd (pid %d) is still running after %lldms\n",
            (int) pid, (long long) timeout);
    return 1;
}

static int
lbctl_run(const char *cmd, lb_cycle_t *cycle, const char *binary)
{
    pid_t  pid;
    int    rc;

    if (strcmp(cmd, "test") == 0) {
        printf("configuration ok\n");
        return 0;
    }
    if (lbctl_upgrade_under_way(cycle->core->pid_file)) {
        return 1;
    }
    pid = lbctl_read_pid(cycle->core->pid_file);
    if (pid == -1) {
        return 1;
    }
    if (strcmp(cmd, "reload") == 0) {
        return lbctl_reload(pid, cycle);
    }
    if (strcmp(cmd, "upgrade") == 0) {
        return lbctl_upgrade(pid, cycle, binary);
    }
    if (strcmp(cmd, "reopen") == 0) {
        return lbctl_signal(pid, SIGUSR1);
    }
    if (strcmp(cmd, "stop") == 0) {
        rc = lbctl_signal(pid, SIGTERM);
        return rc ? rc : lbctl_wait_exit(pid, 15000);
    }
    rc = lbctl_signal(pid, SIGQUIT);
    return rc ? rc : lbctl_wait_exit(pid, cycle->core->shutdown_timeout + 10000);
}

int
main(int argc, char **argv)
{
    const char              *conf = NULL, *prefix = LB_PREFIX, *cmd;
    const lb_ctl_command_t  *module_cmd;
    lb_cycle_t              *cycle;
    const char              *binary = NULL;
    char        *conf_path = NULL;
    int          opt, rc;

    while ((opt = getopt(argc, argv, "+c:p:h")) != -1) {
        switch (opt) {
        case 'c': conf = optarg; break;
        case 'p': prefix = optarg; break;
        case 'h': lbctl_usage(stdout); return 0;
        default:  lbctl_usage(stderr); return 2;
        }
    }
    if (optind >= argc) {
        lbctl_usage(stderr);
        return 2;
    }
    cmd = argv[optind];
    module_cmd = lb_module_command(cmd);
    if (module_cmd == NULL) {
        if (strcmp(cmd, "test") != 0 && strcmp(cmd, "reload") != 0 && strcmp(cmd, "stop") != 0
            && strcmp(cmd, "quit") != 0 && strcmp(cmd, "reopen") != 0
            && strcmp(cmd, "upgrade") != 0)
        {
            fprintf(stderr, "lbctl: unknown command \"%s\" (try lbctl -h)\n", cmd);
            return 2;
        }
        if (strcmp(cmd, "upgrade") == 0 && optind + 2 < argc
            && strcmp(argv[optind + 1], "--binary") == 0)
        {
            binary = argv[optind + 2];
            optind += 2;
        } else if (strcmp(cmd, "upgrade") == 0 && optind + 1 < argc
                   && strcmp(argv[optind + 1], "--help") == 0)
        {
            printf("usage: lbctl [-c FILE] [-p PREFIX] upgrade [--binary PATH]\n");
            return 0;
        }
        if (optind != argc - 1) {
            fprintf(stderr, "lbctl: \"%s\" takes no arguments\n", cmd);
            return 2;
        }
    }

    lb_time_update();
    if (conf == NULL) {
        conf_path = malloc(strlen(prefix) + sizeof(LB_CONF_PATH) + 2);
        if (conf_path == NULL) {
            return 1;
        }
        sprintf(conf_path, "%s/%s", prefix, LB_CONF_PATH);
        conf = conf_path;
    }

    /* every command needs the configuration: test and reload check it,
     * the others read pid_file from it */
    cycle = lb_cycle_load(conf, prefix, NULL);
    if (cycle == NULL) {
        if (strcmp(cmd, "test") != 0 && strcmp(cmd, "reload") != 0) {
            fprintf(stderr, "lbctl: cannot find lbd: the configuration has errors\n");
        }
        free(conf_path);
        return 1;
    }
    rc = module_cmd ? module_cmd->run(cycle, argc - optind, argv + optind)
                    : lbctl_run(cmd, cycle, binary);
    lb_cycle_free(cycle);
    free(conf_path);
    return rc;
}
