/*
 * lb_cycle.c: loading a configuration generation, and the core module that
 * owns the global settings (SPEC §3.1) and the common listener settings
 * (SPEC §3.3).
 */
#include "lb_core.h"
#include "lb_proxy_protocol.h"
#include "lb_crypto.h"
#include "lb_hash.h"
#include "lb_ipcount.h"
#include "lb_reload.h"

#include <fcntl.h>
#include <libgen.h>
#include <sys/stat.h>
#include <pwd.h>
#include <limits.h>

typedef struct {
    char            *protocol;
    lb_array_t       listen;        /* lb_addr_t */
    char            *name;
    lb_cidr_list_t   allow;
    lb_cidr_list_t   deny;
    int              accept_proxy_protocol;
    int64_t          max_conns_per_ip;
} lb_core_listener_conf_t;

static int lb_core_set_workers(lb_conf_t *cf, const lb_setting_t *s,
                               config_setting_t *v, void *conf);
static int lb_core_set_listeners(lb_conf_t *cf, const lb_setting_t *s,
                                 config_setting_t *v, void *conf);
static int lb_core_set_cidrs(lb_conf_t *cf, const lb_setting_t *s,
                             config_setting_t *v, void *conf);
static void *lb_core_create_conf(lb_conf_t *cf, unsigned ctx);
static int lb_core_merge_conf(lb_conf_t *cf, unsigned ctx, void *parent, void *conf);
static int lb_core_init_conf(lb_conf_t *cf);
static int lb_core_init_master(lb_cycle_t *cycle);

static const lb_setting_t  lb_core_settings[] = {
    { "workers", LB_SET_CUSTOM, LB_CTX_GLOBAL, NULL, 0, 0,
      offsetof(lb_core_conf_t, workers), NULL, lb_core_set_workers, 0 },
    { "pid_file", LB_SET_STR, LB_CTX_GLOBAL, "logs/lbd.pid", 0, 0,
      offsetof(lb_core_conf_t, pid_file), NULL, NULL, 0 },
    { "error_log", LB_SET_STR, LB_CTX_GLOBAL, "logs/error.log", 0, 0,
      offsetof(lb_core_conf_t, error_log), NULL, NULL, 0 },
    { "log_level", LB_SET_ENUM, LB_CTX_GLOBAL, "info", 0, 0,
      offsetof(lb_core_conf_t, log_level), lb_log_level_names, NULL, 0 },
    { "admin_socket", LB_SET_STR, LB_CTX_GLOBAL, "logs/admin.sock", 0, 0,
      offsetof(lb_core_conf_t, admin_socket), NULL, NULL, 0 },
    { "shutdown_timeout", LB_SET_DURATION, LB_CTX_GLOBAL, "30s", 0, 86400000,
      offsetof(lb_core_conf_t, shutdown_timeout), NULL, NULL, 0 },
    { "max_old_generations", LB_SET_INT, LB_CTX_GLOBAL, "2", 0, 64,
      offsetof(lb_core_conf_t, max_old_generations), NULL, NULL, 0 },
    { "user", LB_SET_STR, LB_CTX_GLOBAL, NULL, 0, 0,
      offsetof(lb_core_conf_t, user), NULL, NULL, 0 },
    { "worker_rlimit_nofile", LB_SET_INT, LB_CTX_GLOBAL, "0", 0, 1 << 30,
      offsetof(lb_core_conf_t, rlimit_nofile), NULL, NULL, 0 },
    { "upgrade_timeout", LB_SET_DURATION, LB_CTX_GLOBAL, "30s", 100, 600000,
      offsetof(lb_core_conf_t, upgrade_timeout), NULL, NULL, 0 },
    { "ipv6_prefix", LB_SET_INT, LB_CTX_GLOBAL, "64", 1, 128,
      offsetof(lb_core_conf_t, ipv6_prefix), NULL, NULL, 0 },
    { "listeners", LB_SET_CUSTOM, LB_CTX_GLOBAL, NULL, 0, 0, 0, NULL,
      lb_core_set_listeners, 0 },

    { "protocol", LB_SET_STR, LB_CTX_LISTENER, NULL, 0, 0,
      offsetof(lb_core_listener_conf_t, protocol), NULL, NULL, LB_SETTING_REQUIRED },
    { "listen", LB_SET_ADDRS, LB_CTX_LISTENER, NULL, 0, 0,
      offsetof(lb_core_listener_conf_t, listen), NULL, NULL, LB_SETTING_REQUIRED },
    { "name", LB_SET_STR, LB_CTX_LISTENER, NULL, 0, 0,
      offsetof(lb_core_listener_conf_t, name), NULL, NULL, 0 },
    { "allow", LB_SET_CUSTOM, LB_CTX_LISTENER, NULL, 0, 0,
      offsetof(lb_core_listener_conf_t, allow), NULL, lb_core_set_cidrs, 0 },
    { "deny", LB_SET_CUSTOM, LB_CTX_LISTENER, NULL, 0, 0,
      offsetof(lb_core_listener_conf_t, deny), NULL, lb_core_set_cidrs, 0 },
    { "accept_proxy_protocol", LB_SET_BOOL, LB_CTX_LISTENER, "false", 0, 0,
      offsetof(lb_core_listener_conf_t, accept_proxy_protocol), NULL, NULL, 0 },
    { "max_conns_per_ip", LB_SET_INT, LB_CTX_LISTENER, "0", 0, 1000000,
      offsetof(lb_core_listener_conf_t, max_conns_per_ip), NULL, NULL, 0 },
    lb_setting_end
};

lb_module_t  lb_core_module = {
    "core", LB_MODULE_CORE, NULL, lb_core_settings,
    LB_CTX_GLOBAL | LB_CTX_LISTENER,
    lb_core_create_conf, lb_core_merge_conf, lb_core_init_conf,
    lb_core_init_master, NULL, NULL, NULL, 0, NULL, 0, NULL, NULL,
    lb_metrics_state_save, lb_metrics_state_load
};

/* Every listener's own series. */
static const lb_metric_family_t  lb_core_connections = {
    "lbd_connections_total", "Connections accepted (tcp, tls, http, https, admin) or "
    "sessions opened (udp), by listener.", LB_METRIC_COUNTER, NULL, 0, 0
};
static const lb_metric_family_t  lb_core_received = {
    "lbd_received_bytes_total", "Bytes received from clients, by listener.",
    LB_METRIC_COUNTER, NULL, 0, 0
};
static const lb_metric_family_t  lb_core_sent = {
    "lbd_sent_bytes_total", "Bytes sent to clients, by listener.", LB_METRIC_COUNTER,
    NULL, 0, 0
};

static const lb_metric_family_t  lb_core_ip_refused = {
    "lbd_conns_per_ip_refused_total", "Connections (udp: sessions) refused because their "
    "client address had max_conns_per_ip open already, by listener.", LB_METRIC_COUNTER,
    NULL, 0, 0
};

/* The connections-per-address table: kept by a reload (same size), so the
 * counts of connections open in older generations stay right. */
static int
lb_core_ipcount_zone_init(lb_shm_zone_t *zone)
{
    uint64_t  seed;

    if (zone->reused) {
        zone->data = zone->addr;
        return LB_OK;
    }
    if (lb_random_bytes(&seed, sizeof(seed)) != LB_OK) {
        lb_log_error(0, "cannot draw the seed of the connections-per-address table");
        return LB_ERROR;
    }
    zone->data = lb_ipcount_init(zone->addr, LB_IPCOUNT_ENTRIES, seed);
    return zone->data ? LB_OK : LB_ERROR;
}

static lb_shm_zone_t  *lb_core_ipcount_zone;

static int
lb_core_init_master(lb_cycle_t *cycle)
{
    lb_listener_t  *ls;
    size_t          i;

    /* the zone of this cycle, if it has one (lb_core_init_conf) */
    for (i = 0; i < cycle->listeners.nelts; i++) {
        ls = lb_array_at(&cycle->listeners, lb_listener_t *, i);
        ls->ipcount = ls->max_conns_per_ip && lb_core_ipcount_zone
                      ? lb_core_ipcount_zone->data : NULL;
    }
    return lb_metrics_init_master(cycle);
}

static int
lb_core_listener_metrics(lb_conf_t *cf, lb_listener_t *ls)
{
    char  name[256], labels[512];

    lb_metric_label(name, sizeof(name), ls->name);
    snprintf(labels, sizeof(labels), "listener=\"%s\",protocol=\"%s\"", name, ls->protocol);
    if (lb_metric_declare(cf, &ls->m_connections, &lb_core_connections, labels) != LB_OK) {
        return LB_ERROR;
    }
    snprintf(labels, sizeof(labels), "listener=\"%s\"", name);
    if (lb_metric_declare(cf, &ls->m_received, &lb_core_received, labels) != LB_OK
        || lb_metric_declare(cf, &ls->m_sent, &lb_core_sent, labels) != LB_OK)
    {
        return LB_ERROR;
    }
    return LB_OK;
}

lb_module_t  **lb_all_modules;
size_t         lb_nmodules;

int
lb_modules_init(void)
{
    size_t  n, i;

    if (lb_all_modules) {
        return LB_OK;
    }
    for (n = 0; lb_modules[n]; n++) { /* count */ }
    lb_all_modules = calloc(n + 2, sizeof(lb_module_t *));
    if (lb_all_modules == NULL) {
        return LB_ERROR;
    }
    lb_all_modules[0] = &lb_core_module;
    for (i = 0; i < n; i++) {
        lb_all_modules[i + 1] = lb_modules[i];
    }
    lb_nmodules = n + 1;
    for (i = 0; i < lb_nmodules; i++) {
        lb_all_modules[i]->index = i;
    }
    return LB_OK;
}

const lb_ctl_command_t *
lb_module_command(const char *name)
{
    const lb_ctl_command_t  *cmd;
    size_t                   i;

    if (lb_modules_init() != LB_OK) {
        return NULL;
    }
    for (i = 0; i < lb_nmodules; i++) {
        for (cmd = lb_all_modules[i]->commands; cmd && cmd->name; cmd++) {
            if (strcmp(cmd->name, name) == 0) {
                return cmd;
            }
        }
    }
    return NULL;
}

char *
lb_cycle_path(lb_pool_t *pool, const char *prefix, const char *path)
{
    if (path[0] == '/' || strcmp(path, "stderr") == 0) {
        return lb_pstrdup(pool, path);
    }
    return lb_psprintf(pool, "%s%s", prefix, path);
}

const char  lb_cycle_file_too_large[] = "larger than the limit";

int
lb_cycle_read_file(lb_pool_t *pool, const char *path, size_t max, lb_str_t *out,
                   const char **why)
{
    struct stat  st;
    size_t       got = 0;
    ssize_t      n;
    char        *data = NULL;
    int          fd;

    *why = NULL;
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd == -1 || fstat(fd, &st) == -1) {
        *why = strerror(errno);
    } else if (!S_ISREG(st.st_mode)) {
        *why = "not a regular file";
    } else if ((uint64_t) st.st_size > max) {
        *why = lb_cycle_file_too_large;
    } else if ((data = lb_palloc(pool, (size_t) st.st_size + 1)) == NULL) {
        *why = strerror(ENOMEM);
    }
    /* a file that grows meanwhile is cut at the size it had */
    while (*why == NULL && got < (size_t) st.st_size) {
        n = read(fd, data + got, (size_t) st.st_size - got);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            *why = n == 0 ? "it shrank while read" : strerror(errno);
            break;
        }
        got += (size_t) n;
    }
    if (fd != -1) {
        close(fd);
    }
    if (*why) {
        return LB_ERROR;
    }
    data[got] = '\0';
    out->data = data;
    out->len = got;
    return LB_OK;
}

static void *
lb_core_create_conf(lb_conf_t *cf, unsigned ctx)
{
    lb_core_conf_t  *ccf;

    if (ctx == LB_CTX_LISTENER) {
        return lb_pcalloc(cf->pool, sizeof(lb_core_listener_conf_t));
    }
    ccf = lb_pcalloc(cf->pool, sizeof(lb_core_conf_t));
    if (ccf) {
        ccf->workers = sysconf(_SC_NPROCESSORS_ONLN);
        if (ccf->workers < 1) {
            ccf->workers = 1;
        }
    }
    return ccf;
}

static int
lb_core_set_workers(lb_conf_t *cf, const lb_setting_t *s, config_setting_t *v, void *conf)
{
    lb_core_conf_t  *ccf = conf;
    long long        n;

    if (config_setting_type(v) == CONFIG_TYPE_STRING
        && strcmp(config_setting_get_string(v), "auto") == 0)
    {
        return LB_OK;       /* the default already is the CPU count */
    }
    if (config_setting_type(v) != CONFIG_TYPE_INT && config_setting_type(v) != CONFIG_TYPE_INT64) {
        return lb_conf_error(cf, v, "\"workers\" must be an integer or \"auto\", not %s",
                             config_setting_type(v) == CONFIG_TYPE_STRING
                             ? "that string" : lb_conf_type_name(v));
    }
    n = config_setting_get_int64(v);
    if (n < 1 || n > 256) {
        return lb_conf_error(cf, v, "\"workers\" must be between 1 and 256, got %lld", n);
    }
    ccf->workers = n;
    return LB_OK;
}

static int
lb_core_push_cidr(lb_conf_t *cf, config_setting_t *elt, const char *str, void *arg)
{
    char  err[160];

    if (lb_cidr_list_add(arg, cf->pool, str, err, sizeof(err)) != LB_OK) {
        return lb_conf_error(cf, elt, "invalid address block \"%s\": %s", str, err);
    }
    return LB_OK;
}

/* allow, deny: a CIDR or an array of them. */
static int
lb_core_set_cidrs(lb_conf_t *cf, const lb_setting_t *s, config_setting_t *v, void *conf)
{
    return lb_conf_each_string(cf, v, lb_core_push_cidr, (char *) conf + s->offset);
}

bool
lb_listener_denies(const lb_listener_t *ls, const struct sockaddr *sa)
{
    if (ls->deny && lb_cidr_list_match(ls->deny, sa)) {
        return true;
    }
    return ls->allow && !lb_cidr_list_match(ls->allow, sa);
}

/* Every protocol some compiled-in module declares, for error messages. */
static size_t
lb_core_protocols(const char **out, size_t max)
{
    const char *const  *p;
    size_t              i, j, n = 0;

    for (i = 0; i < lb_nmodules; i++) {
        for (p = lb_all_modules[i]->protocols; p && *p; p++) {
            for (j = 0; j < n && strcmp(out[j], *p) != 0; j++) { /* dedup */ }
            if (j == n && n < max - 1) {
                out[n++] = *p;
            }
        }
    }
    out[n] = NULL;
    return n;
}

/* SOCK_DGRAM when a module that serves protocol says it carries
 * datagrams (LB_MODULE_DGRAM), else SOCK_STREAM. */
static int
lb_core_protocol_socktype(const char *protocol)
{
    const char *const  *p;
    size_t              i;

    for (i = 0; i < lb_nmodules; i++) {
        if (!(lb_all_modules[i]->flags & LB_MODULE_DGRAM)) {
            continue;
        }
        for (p = lb_all_modules[i]->protocols; p && *p; p++) {
            if (strcmp(*p, protocol) == 0) {
                return SOCK_DGRAM;
            }
        }
    }
    return SOCK_STREAM;
}

static int
lb_core_parse_listener(lb_conf_t *cf, config_setting_t *g, unsigned i)
{
    config_setting_t   *proto, *listen, *name;
    lb_listener_t      *ls, **lsp;
    const char         *protocols[32], *hint, *first;
    char                list[256];
    size_t              n, k, len;
    int                 rc;

    if (config_setting_type(g) != CONFIG_TYPE_GROUP) {
        return lb_conf_error(cf, g, "each entry of \"listeners\" must be a group { ... }, not %s",
                             lb_conf_type_name(g));
    }

    proto = config_setting_get_member(g, "protocol");
    if (proto == NULL || config_setting_type(proto) != CONFIG_TYPE_STRING) {
        return lb_conf_error(cf, proto ? proto : g, "listener #%u needs \"protocol\" "
                             "as a string", i + 1);
    }

    n = lb_core_protocols(protocols, lb_nelems(protocols));
    for (k = 0; k < n && strcmp(protocols[k], config_setting_get_string(proto)) != 0; k++) {
        /* search */
    }
    if (k == n) {
        list[0] = '\0';
        for (k = 0, len = 0; k < n && len < sizeof(list); k++) {
            len += (size_t) snprintf(list + len, sizeof(list) - len, "%s%s",
                                     k ? ", " : "", protocols[k]);
        }
        hint = lb_did_you_mean(config_setting_get_string(proto), protocols);
        if (hint) {
            return lb_conf_error(cf, proto, "unknown protocol \"%s\" (did you mean \"%s\"?); "
                                 "this build serves: %s",
                                 config_setting_get_string(proto), hint, list);
        }
        return lb_conf_error(cf, proto, "unknown protocol \"%s\"; this build serves: %s",
                             config_setting_get_string(proto), list);
    }

    ls = lb_pcalloc(cf->pool, sizeof(lb_listener_t));
    lsp = lb_array_push(&cf->cycle->listeners);
    if (ls == NULL || lsp == NULL) {
        return lb_conf_error(cf, g, "out of memory");
    }
    *lsp = ls;
    ls->protocol = protocols[k];
    ls->socktype = lb_core_protocol_socktype(ls->protocol);
    ls->file = lb_pstrdup(cf->pool, lb_conf_file(cf, g));
    ls->line = (int) config_setting_source_line(g);

    /* the name is needed for messages before the block is parsed */
    name = config_setting_get_member(g, "name");
    listen = config_setting_get_member(g, "listen");
    first = NULL;
    if (listen && config_setting_type(listen) == CONFIG_TYPE_STRING) {
        first = config_setting_get_string(listen);
    } else if (listen && config_setting_length(listen) > 0) {
        first = config_setting_get_string_elem(listen, 0);
    }
    if (name && config_setting_type(name) == CONFIG_TYPE_STRING) {
        ls->name = lb_pstrdup(cf->pool, config_setting_get_string(name));
    } else {
        ls->name = lb_psprintf(cf->pool, "%s:%s", ls->protocol, first ? first : "?");
    }

    cf->listener = ls;
    cf->protocol = ls->protocol;
    cf->block = lb_psprintf(cf->pool, "listener \"%s\"", ls->name);
    rc = lb_conf_parse_block(cf, g, LB_CTX_LISTENER, &ls->confs);
    cf->listener = NULL;
    cf->protocol = NULL;
    cf->block = "the global section";

    if (rc == LB_OK && ls->handler == NULL) {
        return lb_conf_error(cf, g, "no compiled-in module serves protocol \"%s\"",
                             ls->protocol);
    }
    return rc;
}

static int
lb_core_set_listeners(lb_conf_t *cf, const lb_setting_t *s, config_setting_t *v, void *conf)
{
    int       rc = LB_OK;
    unsigned  i, n;

    if (config_setting_type(v) != CONFIG_TYPE_LIST) {
        return lb_conf_error(cf, v, "\"listeners\" must be a list ( { ... }, ... ), not %s",
                             lb_conf_type_name(v));
    }
    n = (unsigned) config_setting_length(v);
    for (i = 0; i < n; i++) {
        if (lb_core_parse_listener(cf, config_setting_get_elem(v, i), i) != LB_OK) {
            rc = LB_ERROR;
        }
    }
    return rc;
}

int
lb_addr_resolve_unix(lb_conf_t *cf, lb_addr_t *a)
{
    char    *path;
    size_t   n;
    char     err[160];

    if (a->u.sa.sa_family != AF_UNIX || a->u.sun.sun_path[0] == '/') {
        return LB_OK;
    }
    path = lb_psprintf(cf->pool, "unix:%s%s", cf->cycle->prefix, a->u.sun.sun_path);
    n = path ? strlen(path) : 0;
    if (path == NULL || lb_parse_addr(path, a, err, sizeof(err)) != LB_OK) {
        return lb_conf_error(cf, cf->group, "unix socket path \"%s\" is too long once "
                             "resolved against the prefix (%zu bytes)", path ? path : "", n);
    }
    return LB_OK;
}

/* accept_proxy_protocol: the PROXY step goes first, so that a TLS
 * handshake after it and allow/deny in the handler see the header's
 * client. Datagrams carry no header: refused for the listeners of
 * LB_MODULE_DGRAM protocols here, and in lb_core_init_conf for any
 * listener a module made a datagram one itself. */
static int
lb_core_proxy_protocol_step(lb_conf_t *cf)
{
    config_setting_t  *v = config_setting_get_member(cf->group, "accept_proxy_protocol");

    if (cf->listener->socktype != SOCK_STREAM) {
        return lb_conf_error(cf, v ? v : cf->group, "\"accept_proxy_protocol\" is for "
                             "stream listeners (tcp, http, ...); a %s listener cannot "
                             "read PROXY protocol headers", cf->protocol);
    }
    if (lb_listener_add_step(cf->listener, lb_proxy_protocol_accept_step) != LB_OK) {
        return lb_conf_error(cf, v ? v : cf->group, "too many accept steps on %s",
                             cf->block);
    }
    return LB_OK;
}

static int
lb_core_merge_conf(lb_conf_t *cf, unsigned ctx, void *parent, void *conf)
{
    lb_core_conf_t           *ccf;
    lb_core_listener_conf_t  *lcf;
    lb_cycle_t               *cycle = cf->cycle;
    size_t                    i;

    if (ctx == LB_CTX_LISTENER) {
        lcf = conf;
        cf->listener->addrs = lcf->listen;
        cf->listener->allow = lb_cidr_list_empty(&lcf->allow) ? NULL : &lcf->allow;
        cf->listener->deny = lb_cidr_list_empty(&lcf->deny) ? NULL : &lcf->deny;
        for (i = 0; i < lcf->listen.nelts; i++) {
            if (lb_addr_resolve_unix(cf, &lb_array_at(&lcf->listen, lb_addr_t, i)) != LB_OK) {
                return LB_ERROR;
            }
        }
        cf->listener->max_conns_per_ip = (uint32_t) lcf->max_conns_per_ip;
        if (lcf->accept_proxy_protocol) {
            cf->listener->ip_check_step = 1;    /* the PROXY step is the first */
            return lb_core_proxy_protocol_step(cf);
        }
        return LB_OK;
    }

    ccf = conf;
    if (ccf->user && getpwnam(ccf->user) == NULL) {
        return lb_conf_error(cf, config_setting_get_member(cf->group, "user"),
                             "user \"%s\" does not exist", ccf->user);
    }
    ccf->pid_file = lb_cycle_path(cf->pool, cycle->prefix, ccf->pid_file);
    ccf->error_log = lb_cycle_path(cf->pool, cycle->prefix, ccf->error_log);
    ccf->admin_socket = lb_cycle_path(cf->pool, cycle->prefix, ccf->admin_socket);
    if (!ccf->pid_file || !ccf->error_log || !ccf->admin_socket) {
        return lb_conf_error(cf, cf->group, "out of memory");
    }
    cycle->core = ccf;
    return LB_OK;
}

/* A listener with max_conns_per_ip: its key in the shared table, its
 * series, and the table (declared once per cycle). */
static int
lb_core_ipcount_conf(lb_conf_t *cf, lb_listener_t *ls)
{
    char  name[256], labels[512];

    ls->ip_key = lb_hash_mix64(lb_hash_fnv64(LB_HASH_FNV_BASIS, ls->name, strlen(ls->name)));
    ls->ipv6_prefix = (int) cf->cycle->core->ipv6_prefix;
    lb_metric_label(name, sizeof(name), ls->name);
    snprintf(labels, sizeof(labels), "listener=\"%s\"", name);
    if (lb_metric_declare(cf, &ls->m_ip_refused, &lb_core_ip_refused, labels) != LB_OK) {
        return LB_ERROR;
    }
    lb_core_ipcount_zone = lb_shm_zone_add(cf, LB_IPCOUNT_ZONE,
                                           lb_ipcount_bytes(LB_IPCOUNT_ENTRIES),
                                           lb_core_ipcount_zone_init, NULL);
    if (lb_core_ipcount_zone == NULL) {
        return lb_conf_error_at(cf, cf->cycle->conf_file, 0, "cannot declare the shared zone "
                                "\"" LB_IPCOUNT_ZONE "\"");
    }
    return LB_OK;
}

/* Two listeners may not share an address, nor a port where one of them
 * listens on the wildcard: with SO_REUSEPORT the kernel would split
 * connections between them, or the bind would fail at start-up. */
static int
lb_core_init_conf(lb_conf_t *cf)
{
    lb_array_t               *lss = &cf->cycle->listeners;
    lb_listener_t            *a, *b;
    lb_core_listener_conf_t  *lcf;
    lb_addr_t                *x, *y;
    size_t                    i, j, k, l;
    int                       rc = LB_OK;

    for (i = 0; i < lss->nelts; i++) {
        a = lb_array_at(lss, lb_listener_t *, i);
        lcf = a->confs ? lb_get_conf(a->confs, lb_core_module) : NULL;
        if (lcf && lcf->accept_proxy_protocol && a->socktype != SOCK_STREAM) {
            rc = lb_conf_error_at(cf, a->file, a->line, "\"accept_proxy_protocol\" is for "
                                  "stream listeners; listener \"%s\" (%s) receives "
                                  "datagrams", a->name, a->protocol);
        }
        for (k = 0; k < a->addrs.nelts; k++) {
            x = &lb_array_at(&a->addrs, lb_addr_t, k);
            for (j = 0; j <= i; j++) {
                b = lb_array_at(lss, lb_listener_t *, j);
                for (l = 0; l < (j == i ? k : b->addrs.nelts); l++) {
                    y = &lb_array_at(&b->addrs, lb_addr_t, l);
                    if (a->socktype != b->socktype || !lb_addr_overlaps(x, y)) {
                        continue;
                    }
                    if (lb_addr_equal(x, y)) {
                        rc = lb_conf_error_at(cf, a->file, a->line,
                                              "address %s of listener \"%s\" is already "
                                              "used by listener \"%s\"",
                                              x->text, a->name, b->name);
                    } else {
                        rc = lb_conf_error_at(cf, a->file, a->line,
                                              "address %s of listener \"%s\" overlaps %s "
                                              "of listener \"%s\"",
                                              x->text, a->name, y->text, b->name);
                    }
                }
            }
        }
        for (j = 0; j < i; j++) {
            b = lb_array_at(lss, lb_listener_t *, j);
            if (strcmp(a->name, b->name) == 0) {
                rc = lb_conf_error_at(cf, a->file, a->line,
                                      "duplicate listener name \"%s\"", a->name);
            }
        }
        if (rc == LB_OK && lb_core_listener_metrics(cf, a) != LB_OK) {
            rc = LB_ERROR;
        }
        if (rc == LB_OK && a->max_conns_per_ip && lb_core_ipcount_conf(cf, a) != LB_OK) {
            rc = LB_ERROR;
        }
    }
    return rc == LB_OK ? lb_metrics_init_conf(cf) : rc;
}

static char *
lb_cycle_absolute(lb_pool_t *pool, const char *path)
{
    char  cwd[PATH_MAX];

    if (path[0] == '/') {
        return lb_pstrdup(pool, path);
    }
    if (getcwd(cwd, sizeof(cwd)) == NULL) {
        return NULL;
    }
    return lb_psprintf(pool, "%s/%s", cwd, path);
}

static const char *
lb_cycle_abs_in(lb_pool_t *pool, const char *dir, const char *path)
{
    char  *p;

    if (path[0] == '/') {
        return path;
    }
    p = lb_psprintf(pool, "%s/%s", dir, path);
    return p ? p : path;
}

/* libconfig does not say why it cannot read a file; ask first. */
static int
lb_cycle_check_file(const char *path, lb_conf_report_pt report)
{
    char         line[PATH_MAX + 128];
    struct stat  st;
    int          fd, err = 0;

    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd == -1) {
        err = errno;
    } else {
        if (fstat(fd, &st) == 0 && S_ISDIR(st.st_mode)) {
            err = EISDIR;
        }
        close(fd);
    }
    if (err == 0) {
        return LB_OK;
    }
    snprintf(line, sizeof(line), "%s:0: cannot read the configuration file: %s",
             path, strerror(err));
    if (report) {
        report(line);
    } else {
        fprintf(stderr, "%s\n", line);
    }
    return LB_ERROR;
}

/* Checks every @include before libconfig reads the file: libconfig 1.5
 * exits the process when asked to include a directory, and names neither
 * the file nor the reason when it cannot open one. Paths are resolved as
 * libconfig will resolve them: absolute, or relative to dir (the main
 * file's directory, the working directory while libconfig reads). */
static int
lb_cycle_check_includes(lb_conf_t *cf, const char *file, const char *dir, int depth)
{
    char         buf[4096], path[PATH_MAX], *p, *q;
    struct stat  st;
    FILE        *f;
    int          line = 0, rc = LB_OK, fd;

    f = fopen(file, "r");
    if (f == NULL) {
        return LB_OK;               /* reported by whoever opens it */
    }
    while (fgets(buf, sizeof(buf), f)) {
        line++;
        for (p = buf; *p == ' ' || *p == '\t'; p++) { /* skip */ }
        if (strncmp(p, "@include", 8) != 0) {
            continue;
        }
        p = strchr(p + 8, '"');
        q = p ? strchr(p + 1, '"') : NULL;
        if (q == NULL) {
            continue;               /* libconfig reports the syntax */
        }
        *q = '\0';
        snprintf(path, sizeof(path), "%s%s%s", p[1] == '/' ? "" : dir,
                 p[1] == '/' ? "" : "/", p + 1);
        if (depth >= 10) {
            rc = lb_conf_error_at(cf, file, line, "includes nested more than 10 deep at "
                                  "\"%s\"", path);
            break;
        }
        fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd == -1) {
            rc = lb_conf_error_at(cf, file, line, "cannot open include file \"%s\": %s",
                                  path, strerror(errno));
            continue;
        }
        if (fstat(fd, &st) == 0 && !S_ISREG(st.st_mode)) {
            close(fd);
            rc = lb_conf_error_at(cf, file, line, "cannot include \"%s\": %s", path,
                                  S_ISDIR(st.st_mode) ? "it is a directory"
                                                      : "it is not a regular file");
            continue;
        }
        close(fd);
        if (lb_cycle_check_includes(cf, path, dir, depth + 1) != LB_OK) {
            rc = LB_ERROR;
        }
    }
    fclose(f);
    return rc;
}

/* A libconfig error: libconfig gives a line and no column, so the line
 * is quoted as written (spaces around it trimmed, control bytes as
 * spaces, cut at 120 bytes) in the same one-line message:
 * `FILE:2: syntax error (the line reads: log_level "info";)`, or `FILE:4:
 * syntax error at the end of the file` past the last line. */
static void
lb_cycle_config_error(lb_conf_t *cf, const char *file, int line, const char *text)
{
    FILE    *f;
    char     buf[1024], *p, *e;
    int      n = 0;
    size_t   len;

    f = fopen(file, "r");
    while (f != NULL && fgets(buf, sizeof(buf), f) != NULL) {
        len = strlen(buf);
        if (++n == line) {
            break;
        }
        /* the rest of a line longer than buf */
        while (len > 0 && buf[len - 1] != '\n' && fgets(buf, sizeof(buf), f) != NULL) {
            len = strlen(buf);
        }
    }
    if (f == NULL || n != line) {
        if (f != NULL) {
            fclose(f);
        }
        lb_conf_error_at(cf, file, line, "%s%s", text,
                         f != NULL && line > n ? " at the end of the file" : "");
        return;
    }
    fclose(f);
    for (p = buf; *p == ' ' || *p == '\t'; p++) { /* indentation */ }
    for (e = p + strlen(p); e > p && (unsigned char) e[-1] <= ' '; e--) { /* end */ }
    if (e - p > 120) {
        e = p + 117;
        memcpy(e, "...", 3);
        e += 3;
    }
    *e = '\0';
    for (e = p; *e; e++) {
        if ((unsigned char) *e < ' ' || *e == 0x7f) {
            *e = ' ';
        }
    }
    if (*p == '\0') {
        lb_conf_error_at(cf, file, line, "%s (on an empty line)", text);
        return;
    }
    lb_conf_error_at(cf, file, line, "%s (the line reads: %s)", text, p);
}

/* libconfig 1.5 prepends its include directory even to absolute paths, so
 * instead of setting one, the file is read from its own directory. */
static int
lb_cycle_read_config(config_t *config, const char *file, const char *dir)
{
    int  cwd, rc, err;

    cwd = open(".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (cwd == -1 || chdir(dir) == -1) {
        if (cwd != -1) {
            close(cwd);
        }
        return config_read_file(config, file);
    }
    rc = config_read_file(config, file);
    err = errno;
    if (fchdir(cwd) == -1) {
        lb_log_error(errno, "cannot return to the working directory");
    }
    close(cwd);
    errno = err;
    return rc;
}

lb_cycle_t *
lb_cycle_load(const char *conf_file, const char *prefix, lb_conf_report_pt report)
{
    lb_pool_t   *pool;
    lb_cycle_t  *cycle;
    lb_conf_t    cf;
    config_t     config;
    char        *dir, *p;
    size_t       i;
    int          rc = LB_OK;

    if (lb_modules_init() != LB_OK || (pool = lb_pool_create(16384)) == NULL) {
        return NULL;
    }
    cycle = lb_pcalloc(pool, sizeof(lb_cycle_t));
    if (cycle == NULL
        || lb_array_init(&cycle->listeners, pool, 8, sizeof(lb_listener_t *)) != LB_OK
        || lb_array_init(&cycle->shm_zones, pool, 4, sizeof(lb_shm_zone_t *)) != LB_OK
        || lb_array_init(&cycle->metrics, pool, 64, lb_metric_decl_size) != LB_OK
        || (cycle->conf_file = lb_cycle_absolute(pool, conf_file)) == NULL)
    {
        lb_pool_destroy(pool);
        return NULL;
    }
    cycle->pool = pool;

    p = lb_cycle_absolute(pool, prefix);
    cycle->prefix = p ? lb_psprintf(pool, "%s%s", p,
                                    p[0] && p[strlen(p) - 1] == '/' ? "" : "/") : NULL;
    dir = lb_pstrdup(pool, cycle->conf_file);
    if (cycle->prefix == NULL || dir == NULL) {
        lb_pool_destroy(pool);
        return NULL;
    }

    memset(&cf, 0, sizeof(cf));
    cf.cycle = cycle;
    cf.pool = pool;
    cf.report = report;
    cf.config = &config;
    cf.block = "the global section";

    config_init(&config);
    /* @include paths are relative to the main file's directory, nested
     * includes too (libconfig resolves them all against it) */
    dir = dirname(dir);
    cf.include_dir = dir;

    if (lb_cycle_check_file(cycle->conf_file, report) != LB_OK) {
        config_destroy(&config);
        lb_pool_destroy(pool);
        return NULL;
    }
    if (lb_cycle_check_includes(&cf, cycle->conf_file, dir, 0) != LB_OK) {
        config_destroy(&config);
        lb_pool_destroy(pool);
        return NULL;
    }
    if (lb_cycle_read_config(&config, cycle->conf_file, dir) != CONFIG_TRUE) {
        if (config_error_type(&config) == CONFIG_ERR_FILE_IO && config_error_file(&config) == NULL) {
            char  line[PATH_MAX + 128];

            snprintf(line, sizeof(line), "%s:0: cannot read the configuration file: %s",
                     conf_file, strerror(errno ? errno : ENOENT));
            if (report) {
                report(line);
            } else {
                fprintf(stderr, "%s\n", line);
            }
        } else {
            lb_cycle_config_error(&cf, config_error_file(&config)
                                       ? lb_cycle_abs_in(pool, dir, config_error_file(&config))
                                       : cycle->conf_file,
                                  config_error_line(&config), config_error_text(&config));
        }
        config_destroy(&config);
        lb_pool_destroy(pool);
        return NULL;
    }

    rc = lb_conf_parse_block(&cf, config_root_setting(&config), LB_CTX_GLOBAL, &cycle->confs);

    if (rc == LB_OK) {
        for (i = 0; i < lb_nmodules; i++) {
            if (lb_all_modules[i]->init_conf && lb_all_modules[i]->init_conf(&cf) != LB_OK) {
                rc = LB_ERROR;
            }
        }
    }
    if (rc == LB_OK && cf.nerrors == 0) {
        lb_reload_digest(&config, cycle->conf_digest);
    }
    config_destroy(&config);

    if (rc != LB_OK || cf.nerrors) {
        lb_pool_destroy(pool);
        return NULL;
    }
    return cycle;
}

void
lb_cycle_free(lb_cycle_t *cycle)
{
    if (cycle) {
        lb_shm_zones_unmap(cycle);
        lb_pool_destroy(cycle->pool);
    }
}
