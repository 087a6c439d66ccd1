/*
 * lb_notify.c: sd_notify without libsystemd (lb_notify.h).
 */
#include "lb_core.h"
#include "lb_notify.h"

#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>

int
lb_notify(const char *state)
{
    static bool          warned;
    struct sockaddr_un   sun;
    struct timespec      ts;
    const char          *path = getenv("NOTIFY_SOCKET");
    char                 msg[256];
    socklen_t            len;
    size_t               n;
    int                  fd, rc;

    if (path == NULL || path[0] == '\0') {
        return LB_DECLINED;
    }
    n = strlen(path);
    if ((path[0] != '/' && path[0] != '@') || n >= sizeof(sun.sun_path)) {
        if (!warned) {
            warned = true;
            lb_log_error(0, "NOTIFY_SOCKET \"%s\" is not a unix socket path; not notifying "
                         "the service manager", path);
        }
        return LB_ERROR;
    }
    memset(&sun, 0, sizeof(sun));
    sun.sun_family = AF_UNIX;
    memcpy(sun.sun_path, path, n);
    if (path[0] == '@') {
        sun.sun_path[0] = '\0';         /* an abstract name */
    }
    len = (socklen_t) (offsetof(struct sockaddr_un, sun_path) + n + (path[0] == '/'));

    if (strcmp(state, "RELOADING=1") == 0) {
        clock_gettime(CLOCK_MONOTONIC, &ts);
        snprintf(msg, sizeof(msg), "RELOADING=1\nMONOTONIC_USEC=%llu",
                 (unsigned long long) ts.tv_sec * 1000000 + (unsigned long long) ts.tv_nsec / 1000);
    } else {
        snprintf(msg, sizeof(msg), "%s", state);
    }
    fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd == -1) {
        return LB_ERROR;
    }
    rc = sendto(fd, msg, strlen(msg), MSG_NOSIGNAL, (struct sockaddr *) &sun, len) == -1
         ? LB_ERROR : LB_OK;
    if (rc != LB_OK && !warned) {
        warned = true;
        lb_log_error(errno, "cannot notify the service manager at \"%s\"", path);
    }
    close(fd);
    return rc;
}
