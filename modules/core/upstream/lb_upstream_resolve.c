/*
 * lb_upstream_resolve.c: host-name servers resolved off the event loops
 * (lb_upstream_resolve.h).
 */
#include "lb_upstream_resolve.h"

#include <ctype.h>
#include <netdb.h>
#include <pthread.h>
#include <signal.h>
#include <sys/stat.h>

typedef struct {
    char        host[256];
    char        port[8];
    lb_addr_t   addrs[LB_RESOLVE_MAX_ADDRS];
    size_t      naddrs;
    lb_msec_t   interval;
    lb_msec_t   next_at;
    bool        answered;       /* the first lookup has ended */
    bool        inflight;       /* a lookup thread runs for it */
    bool        failing;        /* its failure was logged */
    bool        used;           /* named by the configuration loading or in force */
    unsigned    changed;        /* bumped when its addresses change */
    unsigned    loaded;         /* `changed` when the configuration in force was loaded */
} lb_resolve_name_t;

static pthread_mutex_t     lb_resolve_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t      lb_resolve_cond = PTHREAD_COND_INITIALIZER;
static lb_resolve_name_t **lb_resolve_names;
static size_t              lb_resolve_nnames;
static bool                lb_resolve_running;
static lb_msec_t           lb_resolve_deadline;     /* of the load in progress */
static struct stat         lb_resolve_conf_stat;
static char               *lb_resolve_conf_file;
static bool                lb_resolve_held_logged;

static lb_msec_t
lb_resolve_now(void)
{
    struct timespec  ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (lb_msec_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

bool
lb_resolve_is_host(const char *text, char *host, size_t size, char *port)
{
    const char  *colon = strrchr(text, ':');
    size_t       len, i;
    bool         alpha = false;
    long         p;
    char        *end;

    if (colon == NULL || colon == text || strncmp(text, "unix:", 5) == 0) {
        return false;
    }
    len = (size_t) (colon - text);
    if (len >= size || len > 253) {
        return false;
    }
    for (i = 0; i < len; i++) {
        if (!(isalnum((unsigned char) text[i]) || text[i] == '-' || text[i] == '.')) {
            return false;
        }
        alpha |= isalpha((unsigned char) text[i]) != 0;
    }
    p = strtol(colon + 1, &end, 10);
    if (!alpha || *end != '\0' || end == colon + 1 || p < 1 || p > 65535) {
        return false;
    }
    memcpy(host, text, len);
    host[len] = '\0';
    snprintf(port, 8, "%ld", p);
    return true;
}

static int
lb_resolve_cmp(const void *a, const void *b)
{
    return strcmp(((const lb_addr_t *) a)->text, ((const lb_addr_t *) b)->text);
}

/* One lookup, on its own thread: the answer replaces the name's addresses
 * when it has any; a failure keeps them. */
static void *
lb_resolve_lookup(void *arg)
{
    lb_resolve_name_t  *nm = arg;
    struct addrinfo     hints, *res = NULL, *ai;
    lb_addr_t           got[LB_RESOLVE_MAX_ADDRS];
    size_t              n = 0, i, extra = 0;
    int                 rc;

    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV;
    rc = getaddrinfo(nm->host, nm->port, &hints, &res);
    for (ai = rc == 0 ? res : NULL; ai; ai = ai->ai_next) {
        if ((ai->ai_family != AF_INET && ai->ai_family != AF_INET6)
            || ai->ai_addrlen > sizeof(got[0].u))
        {
            continue;
        }
        if (n == LB_RESOLVE_MAX_ADDRS) {
            extra++;
            continue;
        }
        memset(&got[n], 0, sizeof(got[n]));
        memcpy(&got[n].u, ai->ai_addr, ai->ai_addrlen);
        got[n].len = ai->ai_addrlen;
        lb_addr_format(ai->ai_addr, ai->ai_addrlen, got[n].text, sizeof(got[n].text));
        for (i = 0; i < n && strcmp(got[i].text, got[n].text) != 0; i++) { /* void */ }
        n += i == n;            /* a duplicate is dropped */
    }
    if (res) {
        freeaddrinfo(res);
    }
    qsort(got, n, sizeof(got[0]), lb_resolve_cmp);

    pthread_mutex_lock(&lb_resolve_lock);
    if (n > 0) {
        if (n != nm->naddrs || memcmp(got, nm->addrs, n * sizeof(got[0])) != 0) {
            if (nm->answered) {
                lb_log_notice("server name %s:%s now resolves to %zu address(es), %s%s",
                              nm->host, nm->port, n, got[0].text, n > 1 ? ", ..." : "");
            }
            memcpy(nm->addrs, got, n * sizeof(got[0]));
            nm->naddrs = n;
            nm->changed++;
        }
        if (extra) {
            lb_log_warn(0, "server name %s:%s resolves to more than %d addresses; %zu "
                        "ignored", nm->host, nm->port, LB_RESOLVE_MAX_ADDRS, extra);
        }
        if (nm->failing) {
            lb_log_notice("server name %s:%s resolves again", nm->host, nm->port);
        }
        nm->failing = false;
    } else if (!nm->failing) {
        nm->failing = true;
        lb_log_warn(0, "cannot resolve server name %s:%s: %s; %s", nm->host, nm->port,
                    rc ? gai_strerror(rc) : "no IPv4 or IPv6 address",
                    nm->naddrs ? "keeping the addresses it had" : "it has no servers until it "
                    "resolves");
    }
    nm->answered = true;
    nm->inflight = false;
    pthread_cond_broadcast(&lb_resolve_cond);
    pthread_mutex_unlock(&lb_resolve_lock);
    return NULL;
}

/* Starts a lookup of nm unless one runs; with the lock held. */
static void
lb_resolve_start(lb_resolve_name_t *nm)
{
    pthread_attr_t  attr;
    pthread_t       t;
    sigset_t        all, old;

    if (nm->inflight) {
        return;
    }
    nm->inflight = true;
    /* the thread takes no signal: they are the master's main thread's */
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    if (pthread_create(&t, &attr, lb_resolve_lookup, nm) != 0) {
        nm->inflight = false;
        nm->answered = true;
    }
    pthread_attr_destroy(&attr);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
}

void
lb_resolve_load_begin(void)
{
    size_t  i;

    pthread_mutex_lock(&lb_resolve_lock);
    lb_resolve_deadline = lb_resolve_now() + LB_RESOLVE_LOAD_WAIT;
    for (i = 0; i < lb_resolve_nnames; i++) {
        lb_resolve_names[i]->used = false;
    }
    pthread_mutex_unlock(&lb_resolve_lock);
}

static lb_resolve_name_t *
lb_resolve_find(const char *host, const char *port)
{
    lb_resolve_name_t  **grown, *nm;
    size_t               i;

    for (i = 0; i < lb_resolve_nnames; i++) {
        nm = lb_resolve_names[i];
        if (strcmp(nm->host, host) == 0 && strcmp(nm->port, port) == 0) {
            return nm;
        }
    }
    nm = calloc(1, sizeof(*nm));
    grown = nm ? realloc(lb_resolve_names, (lb_resolve_nnames + 1) * sizeof(*grown)) : NULL;
    if (grown == NULL) {
        free(nm);
        return NULL;
    }
    lb_resolve_names = grown;
    snprintf(nm->host, sizeof(nm->host), "%s", host);
    snprintf(nm->port, sizeof(nm->port), "%s", port);
    lb_resolve_names[lb_resolve_nnames++] = nm;
    return nm;
}

size_t
lb_resolve_addrs(const char *host, const char *port, lb_msec_t interval, lb_addr_t *out,
                 size_t max)
{
    lb_resolve_name_t  *nm;
    struct timespec     until;
    lb_msec_t           left;
    size_t              n = 0;

    pthread_mutex_lock(&lb_resolve_lock);
    nm = lb_resolve_find(host, port);
    if (nm == NULL) {
        pthread_mutex_unlock(&lb_resolve_lock);
        return 0;
    }
    nm->used = true;
    nm->interval = nm->interval && nm->interval < interval ? nm->interval : interval;
    if (!nm->answered) {
        lb_resolve_start(nm);
        while (!nm->answered && (left = lb_resolve_deadline - lb_resolve_now()) > 0) {
            clock_gettime(CLOCK_REALTIME, &until);
            until.tv_sec += left / 1000;
            until.tv_nsec += (left % 1000) * 1000000;
            if (until.tv_nsec >= 1000000000) {
                until.tv_sec++;
                until.tv_nsec -= 1000000000;
            }
            pthread_cond_timedwait(&lb_resolve_cond, &lb_resolve_lock, &until);
        }
        if (!nm->answered) {
            lb_log_warn(0, "server name %s:%s: no answer from the resolver within %dms; it "
                        "has no servers until it resolves", host, port, LB_RESOLVE_LOAD_WAIT);
        }
    }
    n = lb_min(nm->naddrs, max);
    memcpy(out, nm->addrs, n * sizeof(lb_addr_t));
    nm->loaded = nm->changed;
    pthread_mutex_unlock(&lb_resolve_lock);
    return n;
}

/* The master's resolving thread: every second, the names whose time has
 * come are looked up again; a change the running configuration has not
 * seen reloads it, when its file is the one loaded. */
static void *
lb_resolve_loop(void *arg)
{
    lb_resolve_name_t  *nm;
    struct stat         st;
    lb_msec_t           now;
    size_t              i;
    bool                stale, same;

    for ( ;; ) {
        sleep(1);
        now = lb_resolve_now();
        stale = false;
        pthread_mutex_lock(&lb_resolve_lock);
        for (i = 0; i < lb_resolve_nnames; i++) {
            nm = lb_resolve_names[i];
            if (!nm->used) {
                continue;
            }
            if (nm->changed != nm->loaded && !nm->inflight) {
                stale = true;
            }
            if (now >= nm->next_at) {
                nm->next_at = now + nm->interval;
                lb_resolve_start(nm);
            }
        }
        if (stale) {
            same = stat(lb_resolve_conf_file, &st) == 0
                   && st.st_mtim.tv_sec == lb_resolve_conf_stat.st_mtim.tv_sec
                   && st.st_mtim.tv_nsec == lb_resolve_conf_stat.st_mtim.tv_nsec
                   && st.st_size == lb_resolve_conf_stat.st_size
                   && st.st_ino == lb_resolve_conf_stat.st_ino;
            if (same) {
                lb_log_notice("server addresses changed; reloading the configuration");
                for (i = 0; i < lb_resolve_nnames; i++) {
                    lb_resolve_names[i]->loaded = lb_resolve_names[i]->changed;
                }
                kill(getpid(), SIGHUP);
            } else if (!lb_resolve_held_logged) {
                lb_resolve_held_logged = true;
                lb_log_warn(0, "server addresses changed, but %s changed since it was "
                            "loaded: lbctl reload applies both", lb_resolve_conf_file);
            }
        }
        pthread_mutex_unlock(&lb_resolve_lock);
    }
    return NULL;
}

/* In the master's loop (lb_master_at_start): the resolving thread. */
static void
lb_resolve_thread_start(void)
{
    pthread_t  t;
    sigset_t   all, old;

    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    if (pthread_create(&t, NULL, lb_resolve_loop, NULL) == 0) {
        pthread_detach(t);
    } else {
        lb_log_error(errno, "cannot start the thread that resolves server names again");
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
}

void
lb_resolve_master(const char *conf_file)
{
    size_t     i, k, live;
    bool       any = false;

    pthread_mutex_lock(&lb_resolve_lock);
    free(lb_resolve_conf_file);
    lb_resolve_conf_file = strdup(conf_file);
    if (stat(conf_file, &lb_resolve_conf_stat) != 0) {
        memset(&lb_resolve_conf_stat, 0, sizeof(lb_resolve_conf_stat));
    }
    lb_resolve_held_logged = false;
    /* names this configuration dropped go, unless a lookup still runs */
    for (i = k = 0, live = lb_resolve_nnames; i < live; i++) {
        if (lb_resolve_names[i]->used || lb_resolve_names[i]->inflight) {
            lb_resolve_names[k++] = lb_resolve_names[i];
            any |= lb_resolve_names[i]->used;
        } else {
            free(lb_resolve_names[i]);
        }
    }
    lb_resolve_nnames = k;
    pthread_mutex_unlock(&lb_resolve_lock);
    /* once, when the first configuration with a name is in force; the
     * thread is started by the master's loop, after daemonizing */
    if (any && !lb_resolve_running) {
        lb_resolve_running = true;
        lb_master_at_start(lb_resolve_thread_start);
    }
}
