/*
 * lb_admin_ctl.c: the lbctl commands that go through the admin API
 * (SPEC §2): status, servers, drain, enable, disable, weight, purge. Each
 * is one request on `admin_socket`; the answer is printed as the API
 * renders it for people (a table), or as JSON with --json. Every failure
 * is one line on stderr and exit status 1.
 */
#include "lb_admin.h"

#include <poll.h>
#include <sys/un.h>

#define LB_ADMIN_CTL_TIMEOUT  10000     /* ms for the whole exchange */

static int
lb_admin_ctl_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static int
lb_admin_ctl_fail(const char *fmt, ...)
{
    va_list  ap;

    fputs("lbctl: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    return 1;
}

/* Waits for fd to be ready for events until deadline; false on timeout. */
static bool
lb_admin_ctl_wait(int fd, short events, lb_msec_t deadline)
{
    struct pollfd  p = { .fd = fd, .events = events };
    int            rc;

    for ( ;; ) {
        lb_time_update();
        if (lb_current_msec >= deadline) {
            return false;
        }
        rc = poll(&p, 1, (int) (deadline - lb_current_msec));
        if (rc > 0) {
            return true;
        }
        if (rc == 0 || errno != EINTR) {
            return false;
        }
    }
}

/* One request; the response body goes to stdout (or the error message
 * to stderr). Returns lbctl's exit status. */
static int
lb_admin_ctl_request(lb_cycle_t *cycle, const char *method, const char *path, bool json)
{
    const char          *sock = cycle->core->admin_socket;
    struct sockaddr_un   sun;
    lb_admin_out_t       in = { 0 };
    char                 req[2048], buf[16384], *body, *end;
    lb_msec_t            deadline;
    ssize_t              n;
    size_t               off = 0, len;
    int                  fd, status;

    memset(&sun, 0, sizeof(sun));
    sun.sun_family = AF_UNIX;
    if (strlen(sock) >= sizeof(sun.sun_path)) {
        return lb_admin_ctl_fail("admin_socket \"%s\" is too long a path", sock);
    }
    strcpy(sun.sun_path, sock);
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd == -1 || connect(fd, (struct sockaddr *) &sun, sizeof(sun)) == -1) {
        status = lb_admin_ctl_fail("cannot reach lbd's admin socket \"%s\": %s (is lbd "
                                   "running?)", sock, strerror(errno));
        if (fd != -1) {
            close(fd);
        }
        return status;
    }
    len = (size_t) snprintf(req, sizeof(req), "%s %s HTTP/1.1\r\nHost: lbd\r\nAccept: %s\r\n"
                            "Content-Length: 0\r\nConnection: close\r\n\r\n", method, path,
                            json ? "application/json" : "text/plain");
    lb_time_update();
    deadline = lb_current_msec + LB_ADMIN_CTL_TIMEOUT;
    while (off < len) {
        n = send(fd, req + off, len - off, MSG_NOSIGNAL);
        if (n <= 0) {
            close(fd);
            return lb_admin_ctl_fail("cannot send to the admin socket: %s", strerror(errno));
        }
        off += (size_t) n;
    }
    for ( ;; ) {
        if (!lb_admin_ctl_wait(fd, POLLIN, deadline)) {
            close(fd);
            free(in.data);
            return lb_admin_ctl_fail("lbd's admin server did not answer within %ds",
                                     LB_ADMIN_CTL_TIMEOUT / 1000);
        }
        n = recv(fd, buf, sizeof(buf), 0);
        if (n == 0) {
            break;
        }
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            close(fd);
            free(in.data);
            return lb_admin_ctl_fail("cannot read from the admin socket: %s", strerror(errno));
        }
        lb_admin_out_add(&in, buf, (size_t) n);
    }
    close(fd);
    lb_admin_out_add(&in, "", 1);
    if (in.failed || sscanf(in.data, "HTTP/1.1 %d ", &status) != 1
        || (body = strstr(in.data, "\r\n\r\n")) == NULL)
    {
        free(in.data);
        return lb_admin_ctl_fail("malformed answer from the admin socket");
    }
    body += 4;
    if (status >= 400) {
        if (!json) {
            end = body + strcspn(body, "\n");
            *end = '\0';
            lb_admin_ctl_fail("%s", body);
        } else {
            fputs(body, stderr);
        }
        free(in.data);
        return 1;
    }
    fputs(body, stdout);
    free(in.data);
    return 0;
}

/* Percent-encodes s into out: a path segment. */
static const char *
lb_admin_ctl_escape(const char *s, char *out, size_t size)
{
    size_t  n = 0;

    for ( ; *s && n + 4 < size; s++) {
        if ((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9')
            || strchr("-._~:", *s))
        {
            out[n++] = *s;
        } else {
            n += (size_t) snprintf(out + n, size - n, "%%%02X", (unsigned char) *s);
        }
    }
    out[n] = '\0';
    return out;
}

/* argv less a --json anywhere: how many are left, and whether it was there. */
static int
lb_admin_ctl_args(int argc, char **argv, char **args, bool *json)
{
    int  i, n = 0;

    *json = false;
    for (i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--json") == 0) {
            *json = true;
        } else if (n < 4) {
            args[n++] = argv[i];
        } else {
            return -1;
        }
    }
    return n;
}

static int
lb_admin_ctl_status(lb_cycle_t *cycle, int argc, char **argv)
{
    char  *args[4];
    bool   json;

    if (lb_admin_ctl_args(argc, argv, args, &json) != 0) {
        return lb_admin_ctl_fail("usage: lbctl status [--json]");
    }
    return lb_admin_ctl_request(cycle, "GET", "/status", json);
}

static int
lb_admin_ctl_servers(lb_cycle_t *cycle, int argc, char **argv)
{
    char  *args[4], path[512], name[256];
    bool   json;
    int    n = lb_admin_ctl_args(argc, argv, args, &json);

    if (n < 0 || n > 1) {
        return lb_admin_ctl_fail("usage: lbctl servers [UPSTREAM] [--json]");
    }
    if (n == 1) {
        snprintf(path, sizeof(path), "/upstreams/%s",
                 lb_admin_ctl_escape(args[0], name, sizeof(name)));
    } else {
        snprintf(path, sizeof(path), "/upstreams");
    }
    return lb_admin_ctl_request(cycle, "GET", path, json);
}

/* drain, enable, disable, weight */
static int
lb_admin_ctl_change(lb_cycle_t *cycle, int argc, char **argv)
{
    char  *args[4], path[1024], name[256], addr[256], value[64];
    bool   json, weight = strcmp(argv[0], "weight") == 0;
    int    n = lb_admin_ctl_args(argc, argv, args, &json);

    if (n != (weight ? 3 : 2)) {
        return lb_admin_ctl_fail("usage: lbctl %s UPSTREAM ADDRESS%s [--json]", argv[0],
                                 weight ? " N" : "");
    }
    snprintf(path, sizeof(path), "/upstreams/%s/servers/%s/%s%s%s",
             lb_admin_ctl_escape(args[0], name, sizeof(name)),
             lb_admin_ctl_escape(args[1], addr, sizeof(addr)), argv[0],
             weight ? "?value=" : "",
             weight ? lb_admin_ctl_escape(args[2], value, sizeof(value)) : "");
    return lb_admin_ctl_request(cycle, "POST", path, json);
}

static int
lb_admin_ctl_purge(lb_cycle_t *cycle, int argc, char **argv)
{
    char  *args[4], path[1024], zone[256], key[512];
    bool   json;
    int    n = lb_admin_ctl_args(argc, argv, args, &json);

    if (n < 1 || n > 2) {
        return lb_admin_ctl_fail("usage: lbctl purge ZONE [KEY] [--json]");
    }
    snprintf(path, sizeof(path), "/caches/%s/purge%s%s",
             lb_admin_ctl_escape(args[0], zone, sizeof(zone)), n == 2 ? "?key=" : "",
             n == 2 ? lb_admin_ctl_escape(args[1], key, sizeof(key)) : "");
    return lb_admin_ctl_request(cycle, "POST", path, json);
}

const lb_ctl_command_t  lb_admin_commands[] = {
    { "status", "status [--json]  master pid, workers, generation, uptime",
      lb_admin_ctl_status },
    { "servers", "servers [UPSTREAM] [--json]  every server: state, weight, health, "
                 "active connections", lb_admin_ctl_servers },
    { "drain", "drain UPSTREAM ADDRESS  no new connections but sticky ones",
      lb_admin_ctl_change },
    { "enable", "enable UPSTREAM ADDRESS  undo drain and disable", lb_admin_ctl_change },
    { "disable", "disable UPSTREAM ADDRESS  no connections at all", lb_admin_ctl_change },
    { "weight", "weight UPSTREAM ADDRESS N  set the weight (0-1000) until changed again",
      lb_admin_ctl_change },
    { "purge", "purge ZONE [KEY]  drop cached responses", lb_admin_ctl_purge },
    { NULL, NULL, NULL }
};
