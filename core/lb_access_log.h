/*
 * lb_access_log.h: the files of access logs, for every kind of listener
 * (http lines, stream session lines). The master opens each file before it
 * forks, so a worker that runs as `user` writes through a descriptor it
 * could not open itself; on reopen the master opens the new files and
 * hands them to the running workers (lb_process.c). A worker buffers
 * whole lines per file and writes them under flock(2), so lines of several
 * workers never mix and a full disk never leaves a torn line.
 */
#ifndef LB_ACCESS_LOG_H
#define LB_ACCESS_LOG_H

#include <libconfig.h>

typedef struct lb_access_file_s  lb_access_file_t;

struct lb_access_file_s {
    const char        *path;            /* absolute */
    const char        *conf_file;       /* the first access_log naming it */
    int                conf_line;
    int                fd;              /* -1: not open */
    char              *buf;             /* LB_ACCESS_LOG_BUF_SIZE, in a worker */
    size_t             len;
    int                failed;          /* errno of the last write that failed, or 0 */
    bool               gone;            /* said once: the file was deleted */
    lb_access_file_t  *next;            /* the cycle's files */
};

#define LB_ACCESS_LOG_BUF_SIZE   (64 * 1024)
#define LB_ACCESS_LOG_LINE_MAX   (16 * 1024)    /* longer lines are cut */

/* At load: the file for path (relative to the prefix) in cf's cycle, one
 * per distinct path so that a worker opens and buffers each once. v is the
 * path setting, for errors. NULL (reported) when out of memory. */
lb_access_file_t *lb_access_file_get(lb_conf_t *cf, config_setting_t *v, const char *path);

/* The common part of an `access_log` setting, for every module that has
 * one: the string "off" or a group whose member names are all in names
 * (each other one reported, with the valid ones) and whose `path` is a
 * non-empty string. LB_DECLINED: the log is off. LB_OK: *path_s and *path
 * are set. LB_ERROR: reported; when *path is set even so, the caller may
 * go on checking its other members, so that one pass reports them all. */
int  lb_access_log_group(lb_conf_t *cf, config_setting_t *v, const char *const *names,
                         config_setting_t **path_s, const char **path);

/* Master, before forking a cycle's workers: opens every file of the cycle
 * for appending; the descriptors close with the cycle. LB_ERROR (logged
 * as "FILE:LINE: cannot open access log ...") when one cannot be opened. */
int  lb_access_files_open(lb_cycle_t *cycle);
/* Master, on reopen: opens each file of the cycle again under its path
 * (creating it when it was renamed away). A file that cannot be opened
 * keeps its old descriptor and is said once. */
void lb_access_files_reopen(lb_cycle_t *cycle);
/* Worker: a descriptor the master opened for path after a reopen. Flushes
 * the buffer to the old descriptor and takes fd; closes fd when no file of
 * the cycle has that path. */
void lb_access_files_adopt(lb_cycle_t *cycle, const char *path, int fd);

/* Worker start and exit: buffers, the flush timer; exit flushes. */
int  lb_access_files_init_worker(lb_cycle_t *cycle);
void lb_access_files_exit_worker(lb_cycle_t *cycle);

/* Appends one line (len bytes, ending in '\n') to f's buffer; written when
 * the buffer is full, by a 1 s timer, on reopen and at exit. Never
 * allocates. */
void lb_access_file_write(lb_access_file_t *f, const char *line, size_t len);

/* Line building: appends s to line[*n..max), cut at max. */
void lb_access_log_put(char *line, size_t *n, size_t max, const char *s, size_t len);
/* ... JSON-escaped (RFC 8259 §7); stops where a whole escape no longer fits. */
void lb_access_log_put_json(char *line, size_t *n, size_t max, const char *s, size_t len);

#endif
