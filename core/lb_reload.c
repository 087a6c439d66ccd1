/*
 * lb_reload.c: reloads applied in place (lb_reload.h): the digest that
 * tells whether two configurations differ only in what handlers apply in
 * place, the message the master hands the workers, and its dispatch in a
 * worker.
 *
 * The message is a memfd: for each handler with something to apply, a
 * section { u32 handler index, u32 0, u64 length } and the handler's bytes.
 */
#include "lb_core.h"
#include "lb_reload.h"

#include <sys/mman.h>
#include <sys/stat.h>

static const lb_reload_handler_t  *lb_reload_handlers[LB_RELOAD_MAX_HANDLERS];
static size_t                      lb_reload_nhandlers;

typedef struct {
    uint32_t  handler;
    uint32_t  reserved;
    uint64_t  len;
} lb_reload_section_t;

void
lb_reload_handler_add(const lb_reload_handler_t *h)
{
    size_t  i;

    for (i = 0; i < lb_reload_nhandlers; i++) {
        if (lb_reload_handlers[i] == h) {
            return;
        }
    }
    if (lb_reload_nhandlers < LB_RELOAD_MAX_HANDLERS) {
        lb_reload_handlers[lb_reload_nhandlers++] = h;
    }
}

void
lb_reload_digest(config_t *config, u_char digest[LB_SHA256_LEN])
{
    char    *text = NULL;
    size_t   len = 0, i;
    FILE    *f;

    for (i = 0; i < lb_reload_nhandlers; i++) {
        lb_reload_handlers[i]->strip(config);
    }
    /* libconfig writes the tree it read, includes expanded: two files that
     * say the same in other words or other files compare equal */
    f = open_memstream(&text, &len);
    if (f == NULL) {
        memset(digest, 0, LB_SHA256_LEN);   /* no digest: never in place */
        return;
    }
    config_write(config, f);
    if (fclose(f) != 0 || text == NULL) {
        memset(digest, 0, LB_SHA256_LEN);
        free(text);
        return;
    }
    lb_sha256(text, len, digest);
    free(text);
}

static bool
lb_reload_digest_set(const u_char *d)
{
    size_t  i;

    for (i = 0; i < LB_SHA256_LEN; i++) {
        if (d[i]) {
            return true;
        }
    }
    return false;
}

bool
lb_reload_candidate(const lb_cycle_t *old, const lb_cycle_t *cycle)
{
    return lb_reload_nhandlers > 0 && lb_reload_digest_set(cycle->conf_digest)
           && memcmp(old->conf_digest, cycle->conf_digest, LB_SHA256_LEN) == 0;
}

/* Every zone of cycle is old's memory at old's size: the workers, which
 * mapped old's, see all of it. A zone that had to grow (or is new) is
 * out of their reach. */
static const char *
lb_reload_zones_fit(lb_cycle_t *cycle)
{
    lb_shm_zone_t  *z;
    size_t          i;

    for (i = 0; i < cycle->shm_zones.nelts; i++) {
        z = lb_array_at(&cycle->shm_zones, lb_shm_zone_t *, i);
        if (!z->reused || z->size != z->old_size || !z->shared_map) {
            return z->name;
        }
    }
    return NULL;
}

static int
lb_reload_write(int fd, const void *data, size_t len)
{
    const char  *p = data;
    ssize_t      n;

    while (len) {
        n = write(fd, p, len);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            return LB_ERROR;
        }
        p += n;
        len -= (size_t) n;
    }
    return LB_OK;
}

int
lb_reload_prepare(lb_cycle_t *old, lb_cycle_t *cycle, int *fd, char *summary, size_t size)
{
    lb_reload_section_t  sec;
    const char          *zone;
    char                *text, part[512];
    size_t               i, len, used = 0;
    FILE                *f;
    int                  rc, mfd;
    bool                 any = false;

    *fd = -1;
    summary[0] = '\0';
    mfd = memfd_create("lb_reload", MFD_CLOEXEC);
    if (mfd == -1) {
        snprintf(summary, size, "memfd_create() failed: %s", strerror(errno));
        return LB_DECLINED;
    }
    for (i = 0; i < lb_reload_nhandlers; i++) {
        text = NULL;
        len = 0;
        part[0] = '\0';
        f = open_memstream(&text, &len);
        if (f == NULL) {
            snprintf(summary, size, "out of memory");
            close(mfd);
            return LB_DECLINED;
        }
        rc = lb_reload_handlers[i]->prepare(old, cycle, f, part, sizeof(part));
        if (fclose(f) != 0 && rc == LB_OK) {
            rc = LB_ERROR;
            snprintf(part, sizeof(part), "out of memory");
        }
        if (rc == LB_ERROR) {
            snprintf(summary, size, "%s", part);
            free(text);
            close(mfd);
            return LB_DECLINED;
        }
        if (rc == LB_OK) {
            memset(&sec, 0, sizeof(sec));
            sec.handler = (uint32_t) i;
            sec.len = len;
            if (lb_reload_write(mfd, &sec, sizeof(sec)) != LB_OK
                || lb_reload_write(mfd, text, len) != LB_OK)
            {
                snprintf(summary, size, "cannot write the workers' message: %s",
                         strerror(errno));
                free(text);
                close(mfd);
                return LB_DECLINED;
            }
            used += (size_t) snprintf(summary + used, used < size ? size - used : 0, "%s%s",
                                      any ? ", " : "", part);
            used = lb_min(used, size);
            any = true;
        }
        free(text);
    }
    if (!any) {
        snprintf(summary, size, "no change a running worker can take");
        close(mfd);
        return LB_DECLINED;
    }
    zone = lb_reload_zones_fit(cycle);
    if (zone) {
        snprintf(summary, size, "the change outgrows the headroom of shared zone \"%s\"",
                 zone);
        close(mfd);
        return LB_DECLINED;
    }
    *fd = mfd;
    return LB_OK;
}

void
lb_reload_apply(lb_cycle_t *cycle, int fd)
{
    lb_reload_section_t  sec;
    struct stat          st;
    u_char              *msg;
    size_t               off = 0, size;

    if (fstat(fd, &st) == -1 || st.st_size <= 0) {
        lb_log_error(errno, "reload in place: unreadable message; serving on as before");
        close(fd);
        return;
    }
    size = (size_t) st.st_size;
    msg = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (msg == MAP_FAILED) {
        lb_log_error(errno, "reload in place: mmap() failed; serving on as before");
        return;
    }
    while (size - off >= sizeof(sec)) {
        memcpy(&sec, msg + off, sizeof(sec));
        off += sizeof(sec);
        if (sec.len > size - off || sec.handler >= lb_reload_nhandlers) {
            lb_log_error(0, "reload in place: malformed message; serving on as before");
            break;
        }
        if (lb_reload_handlers[sec.handler]->apply(cycle, msg + off, (size_t) sec.len)
            != LB_OK)
        {
            lb_log_error(0, "reload in place: %s could not be applied in this worker",
                         lb_reload_handlers[sec.handler]->name);
        }
        off += (size_t) sec.len;
    }
    munmap(msg, size);
}
