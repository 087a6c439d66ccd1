/*
 * lbd.c: the lbd command (SPEC §2): parse the command line, load and check
 * the configuration, then become the master.
 */
#include "lb_core.h"
#include "lb_upgrade.h"
#include "lb_sanitizer.h"

#include <fcntl.h>
#include <sys/stat.h>

static void
lbd_usage(FILE *f)
{
    fprintf(f, "usage: lbd [-c FILE] [-p PREFIX] [-f] [-t] [-V]\n"
               "  -c FILE    configuration file (default PREFIX/%s)\n"
               "  -p PREFIX  prefix for relative paths (default %s)\n"
               "  -f         stay in the foreground\n"
               "  -t         test the configuration and exit\n"
               "  -V         show version, build options and modules\n",
            LB_CONF_PATH, LB_PREFIX);
}

static void
lbd_version(void)
{
    size_t  i;

    printf("lbd version %s\nbuilt by %s\nconfigure arguments: %s\nmodules:",
           LB_VERSION, LB_CC_VERSION, LB_CONFIGURE_ARGS);
    for (i = 0; lb_module_names[i]; i++) {
        printf(" %s", lb_module_names[i]);
    }
    printf("\n");
}

/* Writes the pid file; one error line and LB_ERROR when it cannot. */
static int
lbd_write_pid(const char *path)
{
    char  buf[32];
    int   fd, n;

    fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd == -1) {
        fprintf(stderr, "lbd: cannot write pid file \"%s\": %s\n", path, strerror(errno));
        return LB_ERROR;
    }
    n = snprintf(buf, sizeof(buf), "%d\n", (int) getpid());
    if (write(fd, buf, (size_t) n) != n) {
        fprintf(stderr, "lbd: cannot write pid file \"%s\": %s\n", path, strerror(errno));
        close(fd);
        return LB_ERROR;
    }
    close(fd);
    return LB_OK;
}

/* Refuses to start over a pid file whose process is a live lbd: starting
 * would overwrite it and leave lbctl unable to find the running master. */
static int
lbd_check_running(const char *pid_file)
{
    char   path[64], cmd[256];
    FILE  *f;
    long   pid = 0;
    size_t n;

    f = fopen(pid_file, "r");
    if (f == NULL) {
        return LB_OK;
    }
    if (fscanf(f, "%ld", &pid) != 1 || pid <= 1 || pid == (long) getpid()) {
        fclose(f);
        return LB_OK;
    }
    fclose(f);
    snprintf(path, sizeof(path), "/proc/%ld/cmdline", pid);
    f = fopen(path, "r");
    if (f == NULL) {
        return LB_OK;               /* stale: that process is gone */
    }
    n = fread(cmd, 1, sizeof(cmd) - 1, f);
    fclose(f);
    cmd[n] = '\0';
    if (strstr(cmd, "lbd") == NULL) {
        return LB_OK;
    }
    fprintf(stderr, "lbd: already running with pid %ld (pid file \"%s\"); "
            "stop it first or use another pid_file\n", pid, pid_file);
    return LB_ERROR;
}

static int
lbd_daemonize(void)
{
    int  fd;

    switch (fork()) {
    case -1:
        fprintf(stderr, "lbd: fork() failed: %s\n", strerror(errno));
        return LB_ERROR;
    case 0:
        break;
    default:
        _exit(0);
    }
    if (setsid() == -1) {
        return LB_ERROR;
    }
    umask(022);
    fd = open("/dev/null", O_RDWR);
    if (fd != -1) {
        dup2(fd, STDIN_FILENO);
        dup2(fd, STDOUT_FILENO);
        if (fd > STDERR_FILENO) {
            close(fd);
        }
    }
    lb_log_redirect_stderr();
    return LB_OK;
}

/* The first configuration error, for an old master waiting on an upgrade. */
static char  lbd_first_error[512];

static void
lbd_report(const char *line)
{
    fprintf(stderr, "%s\n", line);
    if (lbd_first_error[0] == '\0') {
        snprintf(lbd_first_error, sizeof(lbd_first_error), "%s", line);
    }
}

int
main(int argc, char **argv)
{
    const char  *conf = NULL, *prefix = LB_PREFIX;
    bool         foreground = false, test = false, upgrading;
    lb_cycle_t  *cycle;
    char        *conf_path = NULL;
    int          opt;

    while ((opt = getopt(argc, argv, "c:p:ftVh")) != -1) {
        switch (opt) {
        case 'c': conf = optarg; break;
        case 'p': prefix = optarg; break;
        case 'f': foreground = true; break;
        case 't': test = true; break;
        case 'V': lbd_version(); return 0;
        case 'h': lbd_usage(stdout); return 0;
        default:  lbd_usage(stderr); return 1;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "lbd: unexpected argument \"%s\"\n", argv[optind]);
        return 1;
    }

    lb_time_update();
    lb_upgrade_init(argc, argv);
    /* started by an old master's binary upgrade: says hello at once */
    upgrading = !test && lb_upgrade_child();
    if (conf == NULL) {
        conf_path = malloc(strlen(prefix) + sizeof(LB_CONF_PATH) + 2);
        if (conf_path == NULL) {
            return 1;
        }
        sprintf(conf_path, "%s/%s", prefix, LB_CONF_PATH);
        conf = conf_path;
    }

    cycle = lb_cycle_load(conf, prefix, upgrading ? lbd_report : NULL);
    free(conf_path);
    if (cycle == NULL) {
        lb_upgrade_fail(LB_UPGRADE_CONFIG, "%s", lbd_first_error[0] ? lbd_first_error
                        : "the configuration has errors");
        return 1;
    }
    if (test) {
        printf("configuration ok\n");
        lb_cycle_free(cycle);
        return 0;
    }

    if (lb_log_open(cycle->core->error_log) != LB_OK) {
        fprintf(stderr, "lbd: cannot open error log \"%s\": %s\n",
                cycle->core->error_log, strerror(errno));
        goto failed;
    }
    lb_log_level = (lb_log_level_t) cycle->core->log_level;

    /* fail early, while the user still sees stderr */
    lb_log_copy_stderr = true;
    if (upgrading) {
        /* the old master renamed its pid file; this one is already out of
         * any terminal's session (a daemon's child) or the foreground
         * master's child: no daemonizing */
        if (lb_upgrade_receive(cycle) != LB_OK) {
            goto failed;
        }
        if (lb_master_init(cycle) != LB_OK || lb_upgrade_apply_state(cycle) != LB_OK
            || lbd_write_pid(cycle->core->pid_file) != LB_OK)
        {
            lb_upgrade_fail(LB_UPGRADE_REFUSED, "the new master could not start: see %s",
                            cycle->core->error_log);
            goto failed;
        }
        lb_sockets_close_unused(cycle);
    } else if (lbd_check_running(cycle->core->pid_file) != LB_OK
               || lb_master_init(cycle) != LB_OK
               || lbd_write_pid(cycle->core->pid_file) != LB_OK)
    {
        goto failed;
    } else if (!foreground && (lbd_daemonize() != LB_OK
                               || lbd_write_pid(cycle->core->pid_file) != LB_OK))
    {
        goto failed;
    }

    lb_log_copy_stderr = foreground;
    lb_log_notice("lbd %s started, configuration %s", LB_VERSION, cycle->conf_file);
    return lb_master_run(cycle, foreground);

failed:
    if (upgrading) {
        lb_sockets_forget_all();        /* the old master still listens on them */
    } else {
        lb_sockets_close_all();
    }
    lb_cycle_free(cycle);
    return 1;
}
