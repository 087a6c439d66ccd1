/*
 * lb_admin_api.c: the admin API's endpoints (SPEC §9; docs/admin-api.md
 * lists every field). Reading is from the shared state every worker
 * writes; the runtime changes (drain, enable, disable, weight) write it,
 * and every worker sees them on its next pick.
 */
#include "lb_admin.h"
#include "lb_process.h"
#include "lb_upstream.h"

#include <sys/mman.h>

/* GET /status */
static void
lb_admin_status(lb_admin_req_t *rq)
{
    lb_cycle_t      *cycle = rq->cycle;
    lb_upstream_t  **all;
    size_t           nu, nl = 0, i;
    time_t           now = time(NULL);
    lb_draining_t    dr;

    lb_master_draining(&dr);
    all = lb_upstream_all(cycle, &nu);
    (void) all;
    for (i = 0; i < cycle->listeners.nelts; i++) {
        /* admin_socket is no listener of the file's */
        nl += lb_array_at(&cycle->listeners, lb_listener_t *, i)->line != 0;
    }
    rq->status = 200;
    if (rq->text) {
        lb_admin_out_printf(&rq->body, "lbd %s\nmaster pid:    %d\ngeneration:    %u\n"
                            "workers:       %lld\nuptime:        %llds\nlisteners:     %zu\n"
                            "upstreams:     %zu\nconfiguration: %s\n", LB_VERSION,
                            (int) getppid(), cycle->generation,
                            (long long) cycle->core->workers,
                            (long long) (now - lb_master_started_at), nl, nu,
                            cycle->conf_file);
        lb_admin_out_printf(&rq->body, "draining:      %u generations, %u workers, %llu "
                            "bytes\n", dr.generations, dr.workers,
                            (unsigned long long) dr.memory_bytes);
        return;
    }
    lb_admin_out_printf(&rq->body, "{\"version\": \"%s\", \"master_pid\": %d, "
                        "\"generation\": %u, \"workers\": %lld, \"uptime_seconds\": %lld, "
                        "\"started\": %lld, \"listeners\": %zu, \"upstreams\": %zu, "
                        "\"config_file\": ", LB_VERSION, (int) getppid(), cycle->generation,
                        (long long) cycle->core->workers,
                        (long long) (now - lb_master_started_at),
                        (long long) lb_master_started_at, nl, nu);
    lb_admin_out_json(&rq->body, cycle->conf_file);
    lb_admin_out_printf(&rq->body, ", \"draining\": {\"generations\": %u, \"workers\": %u, "
                        "\"memory_bytes\": %llu}}\n", dr.generations, dr.workers,
                        (unsigned long long) dr.memory_bytes);
}

/* What an operator calls a server's state, most telling first. */
static const char *
lb_admin_server_state(const lb_upstream_server_t *s, const char **reason)
{
    const lb_upstream_peer_state_t  *st = s->state;

    *reason = "";
    if (__atomic_load_n(&st->disabled, __ATOMIC_RELAXED)) {
        return "disabled";
    }
    if (__atomic_load_n(&st->down, __ATOMIC_ACQUIRE)) {
        *reason = st->down_why;
        return "down";
    }
    if (__atomic_load_n(&st->failed, __ATOMIC_RELAXED)) {
        *reason = "passive health: max_fails reached";
        return "failed";
    }
    if (__atomic_load_n(&st->drain, __ATOMIC_RELAXED)
        || __atomic_load_n(&st->weight, __ATOMIC_RELAXED) == 0)
    {
        return "draining";
    }
    return "up";
}

static void
lb_admin_server_json(lb_admin_out_t *o, const lb_upstream_server_t *s)
{
    const lb_upstream_peer_state_t  *st = s->state;
    const char                      *state, *reason;

    state = lb_admin_server_state(s, &reason);
    lb_admin_out_add(o, "{\"address\": ", 12);
    lb_admin_out_json(o, s->addr.text);
    lb_admin_out_add(o, ", \"name\": ", 10);
    if (s->name) {
        lb_admin_out_json(o, s->name);
    } else {
        lb_admin_out_add(o, "null", 4);
    }
    lb_admin_out_printf(o, ", \"state\": \"%s\", \"reason\": ", state);
    lb_admin_out_json(o, reason);
    lb_admin_out_printf(o, ", \"backup\": %s, \"weight\": %lld, \"configured_weight\": %lld, "
                        "\"max_conns\": %lld, \"active_connections\": %u, "
                        "\"connections_total\": %llu, \"health\": \"%s\", "
                        "\"health_checks_failed_total\": %llu, \"passive_failures\": %u, "
                        "\"requests_total\": %llu, \"failures_total\": %llu, "
                        "\"draining\": %s, \"disabled\": %s}",
                        s->backup ? "true" : "false",
                        (long long) __atomic_load_n(&st->weight, __ATOMIC_RELAXED),
                        (long long) s->weight, (long long) s->max_conns,
                        __atomic_load_n(&st->active, __ATOMIC_RELAXED),
                        (unsigned long long) __atomic_load_n(&st->connects, __ATOMIC_RELAXED),
                        !st->checked ? "unchecked" : st->down ? "down" : "up",
                        (unsigned long long) __atomic_load_n(&st->checks_failed,
                                                             __ATOMIC_RELAXED),
                        __atomic_load_n(&st->fails, __ATOMIC_RELAXED),
                        (unsigned long long) lb_metric_read(s->m_requests),
                        (unsigned long long) lb_metric_read(s->m_failures),
                        st->drain ? "true" : "false", st->disabled ? "true" : "false");
}

/* A table for people: one line per server. */
static void
lb_admin_table_head(lb_admin_out_t *o)
{
    lb_admin_out_printf(o, "%-16s %-24s %-9s %6s %7s %-9s %s\n", "UPSTREAM", "SERVER",
                        "STATE", "WEIGHT", "ACTIVE", "HEALTH", "REASON");
}

static void
lb_admin_server_text(lb_admin_out_t *o, const lb_upstream_t *u, const lb_upstream_server_t *s)
{
    const lb_upstream_peer_state_t  *st = s->state;
    const char                      *state, *reason;
    char                             weight[32];

    state = lb_admin_server_state(s, &reason);
    snprintf(weight, sizeof(weight), "%lld%s",
             (long long) __atomic_load_n(&st->weight, __ATOMIC_RELAXED),
             st->weight_set ? "*" : "");
    lb_admin_out_printf(o, "%-16s %-24s %-9s %6s %7u %-9s %s%s\n", u->name, s->addr.text,
                        state, weight, __atomic_load_n(&st->active, __ATOMIC_RELAXED),
                        !st->checked ? "-" : st->down ? "down" : "up", reason,
                        s->backup ? (*reason ? " (backup)" : "(backup)") : "");
}

static void
lb_admin_upstream_text(lb_admin_out_t *o, const lb_upstream_t *u)
{
    size_t  j;

    for (j = 0; j < u->nservers; j++) {
        lb_admin_server_text(o, u, &u->servers[j]);
    }
}

static void
lb_admin_upstream_json(lb_admin_out_t *o, const lb_upstream_t *u)
{
    size_t  j;

    lb_admin_out_add(o, "{\"name\": ", 9);
    lb_admin_out_json(o, u->name);
    lb_admin_out_add(o, ", \"balance\": ", 13);
    lb_admin_out_json(o, u->balancer->name);
    lb_admin_out_add(o, ", \"servers\": [", 14);
    for (j = 0; j < u->nservers; j++) {
        lb_admin_out_add(o, j ? ",\n    " : "\n    ", j ? 6 : 5);
        lb_admin_server_json(o, &u->servers[j]);
    }
    lb_admin_out_add(o, "]}", 2);
}

/* GET /upstreams */
static void
lb_admin_upstreams(lb_admin_req_t *rq)
{
    lb_upstream_t  **all;
    size_t           n, i;

    all = lb_upstream_all(rq->cycle, &n);
    rq->status = 200;
    if (rq->text) {
        lb_admin_table_head(&rq->body);
        for (i = 0; i < n; i++) {
            lb_admin_upstream_text(&rq->body, all[i]);
        }
        return;
    }
    lb_admin_out_add(&rq->body, "{\"upstreams\": [", 15);
    for (i = 0; i < n; i++) {
        lb_admin_out_add(&rq->body, i ? ",\n  " : "\n  ", i ? 4 : 3);
        lb_admin_upstream_json(&rq->body, all[i]);
    }
    lb_admin_out_add(&rq->body, "]}\n", 3);
}

static lb_upstream_t *
lb_admin_find_upstream(lb_admin_req_t *rq, const char *name)
{
    lb_upstream_t  *u = lb_upstream_find(rq->cycle, name);

    if (u == NULL) {
        lb_upstream_t  **all;
        const char      *names[64], *hint;
        size_t           n, i;

        all = lb_upstream_all(rq->cycle, &n);
        for (i = 0; i < n && i < lb_nelems(names) - 1; i++) {
            names[i] = all[i]->name;
        }
        names[i] = NULL;
        hint = lb_did_you_mean(name, names);
        lb_admin_error(rq, 404, "no upstream \"%s\"%s%s%s", name,
                       hint ? " (did you mean \"" : "", hint ? hint : "", hint ? "\"?)" : "");
    }
    return u;
}

/* A runtime change to the servers of u written `address` (an IP address
 * as written, or a host name with its port: all its addresses). */
typedef enum {
    LB_ADMIN_DRAIN,
    LB_ADMIN_ENABLE,
    LB_ADMIN_DISABLE,
    LB_ADMIN_WEIGHT,
} lb_admin_action_t;

static void
lb_admin_change(lb_admin_req_t *rq, lb_upstream_t *u, const char *address,
                lb_admin_action_t action)
{
    lb_upstream_peer_state_t  *st;
    lb_upstream_server_t      *s;
    const char                *v;
    char                      *end;
    long long                  weight = 0;
    size_t                     j, n = 0;

    if (action == LB_ADMIN_WEIGHT) {
        v = lb_admin_param(rq, "value");
        if (v == NULL) {
            lb_admin_error(rq, 400, "parameter \"value\" is required: the new weight, 0 to "
                           "1000");
            return;
        }
        errno = 0;
        weight = strtoll(v, &end, 10);
        if (*v == '\0' || *end || errno || weight < 0 || weight > 1000) {
            lb_admin_error(rq, 400, "parameter \"value\" must be an integer from 0 to 1000, "
                           "not \"%s\"", v);
            return;
        }
    }
    rq->status = 200;
    if (rq->text) {
        lb_admin_table_head(&rq->body);
    } else {
        lb_admin_out_add(&rq->body, "{\"upstream\": ", 13);
        lb_admin_out_json(&rq->body, u->name);
        lb_admin_out_add(&rq->body, ", \"servers\": [", 14);
    }
    for (j = 0; j < u->nservers; j++) {
        s = &u->servers[j];
        if (strcmp(s->addr.text, address) != 0 && (s->name == NULL
                                                   || strcmp(s->name, address) != 0))
        {
            continue;
        }
        st = s->state;
        switch (action) {
        case LB_ADMIN_DRAIN:
            __atomic_store_n(&st->drain, 1, __ATOMIC_RELAXED);
            break;
        case LB_ADMIN_DISABLE:
            __atomic_store_n(&st->disabled, 1, __ATOMIC_RELAXED);
            break;
        case LB_ADMIN_ENABLE:
            __atomic_store_n(&st->drain, 0, __ATOMIC_RELAXED);
            __atomic_store_n(&st->disabled, 0, __ATOMIC_RELAXED);
            break;
        case LB_ADMIN_WEIGHT:
            st->weight_set = 1;
            __atomic_store_n(&st->weight, (int64_t) weight, __ATOMIC_RELAXED);
            break;
        }
        if (action == LB_ADMIN_WEIGHT) {
            lb_log_info("admin: %s set the weight of server %s in upstream \"%s\" to %lld",
                        rq->who, s->addr.text, u->name, weight);
        } else {
            lb_log_info("admin: %s %s server %s in upstream \"%s\"", rq->who,
                        action == LB_ADMIN_DRAIN ? "drained"
                        : action == LB_ADMIN_DISABLE ? "disabled" : "enabled",
                        s->addr.text, u->name);
        }
        if (rq->text) {
            lb_admin_server_text(&rq->body, u, s);
            n++;
        } else {
            lb_admin_out_add(&rq->body, n ? ",\n  " : "\n  ", n ? 4 : 3);
            lb_admin_server_json(&rq->body, s);
            n++;
        }
    }
    if (n == 0) {
        lb_admin_error(rq, 404, "upstream \"%s\" has no server \"%s\" (name it as the "
                       "configuration writes it, percent-encoded in the path)", u->name,
                       address);
        return;
    }
    if (!rq->text) {
        lb_admin_out_add(&rq->body, "]}\n", 3);
    }
}

/* GET /metrics ------------------------------------------------------------- */

static void
lb_admin_emit(void *data, const char *s, size_t n)
{
    lb_admin_out_add(data, s, n);
}

/* One family of per-server gauges or counters read from the servers'
 * shared state. */
typedef struct {
    const char  *name;
    const char  *type;
    const char  *help;
    uint64_t   (*value)(const lb_upstream_server_t *s);
} lb_admin_server_metric_t;

static uint64_t
lb_admin_server_up(const lb_upstream_server_t *s)
{
    const char  *reason;

    return strcmp(lb_admin_server_state(s, &reason), "up") == 0;
}

static uint64_t
lb_admin_server_active(const lb_upstream_server_t *s)
{
    return __atomic_load_n(&s->state->active, __ATOMIC_RELAXED);
}

static uint64_t
lb_admin_server_connects(const lb_upstream_server_t *s)
{
    return __atomic_load_n(&s->state->connects, __ATOMIC_RELAXED);
}

static uint64_t
lb_admin_server_checks_failed(const lb_upstream_server_t *s)
{
    return __atomic_load_n(&s->state->checks_failed, __ATOMIC_RELAXED);
}

static uint64_t
lb_admin_server_weight(const lb_upstream_server_t *s)
{
    return (uint64_t) lb_upstream_server_weight(s);
}

static uint64_t
lb_admin_server_health(const lb_upstream_server_t *s)
{
    return s->state->checked && !__atomic_load_n(&s->state->down, __ATOMIC_RELAXED);
}

static const lb_admin_server_metric_t  lb_admin_server_metrics[] = {
    { "lbd_upstream_server_up", "gauge", "1 when the server takes new connections (not down, "
      "failed, disabled or draining).", lb_admin_server_up },
    { "lbd_upstream_server_active_connections", "gauge", "Open connections to the server, "
      "all workers.", lb_admin_server_active },
    { "lbd_upstream_server_connections_total", "counter", "Connections made to the server.",
      lb_admin_server_connects },
    { "lbd_upstream_server_weight", "gauge", "The weight in force (configured, or set at "
      "runtime).", lb_admin_server_weight },
    { "lbd_upstream_server_health_check_up", "gauge", "1 when the active health checks see "
      "the server up (0 when down or not checked).", lb_admin_server_health },
    { "lbd_upstream_server_health_checks_failed_total", "counter", "Active health checks "
      "that failed.", lb_admin_server_checks_failed },
};

static void
lb_admin_metrics(lb_admin_req_t *rq)
{
    const lb_admin_server_metric_t  *m;
    lb_admin_out_t                  *o = &rq->body;
    lb_upstream_t                  **all;
    lb_cycle_t                      *cycle = rq->cycle;
    lb_draining_t                    dr;
    char                             name[256], addr[256];
    size_t                           n, i, j, k;

    rq->status = 200;
    rq->content_type = "text/plain; version=0.0.4; charset=utf-8";
    lb_admin_out_printf(o, "# HELP lbd_info The running lbd.\n# TYPE lbd_info gauge\n"
                        "lbd_info{version=\"%s\"} 1\n"
                        "# HELP lbd_workers Worker processes the configuration asks for.\n"
                        "# TYPE lbd_workers gauge\nlbd_workers %lld\n"
                        "# HELP lbd_config_generation Reloads since the master started.\n"
                        "# TYPE lbd_config_generation gauge\nlbd_config_generation %u\n"
                        "# HELP lbd_start_time_seconds When the master started, Unix time.\n"
                        "# TYPE lbd_start_time_seconds gauge\nlbd_start_time_seconds %lld\n",
                        LB_VERSION, (long long) cycle->core->workers, cycle->generation,
                        (long long) lb_master_started_at);
    lb_master_draining(&dr);
    lb_admin_out_printf(o, "# HELP lbd_draining_generations Older generations whose workers "
                        "are still finishing their connections.\n"
                        "# TYPE lbd_draining_generations gauge\nlbd_draining_generations %u\n"
                        "# HELP lbd_draining_workers Workers of older generations still "
                        "finishing their connections.\n"
                        "# TYPE lbd_draining_workers gauge\nlbd_draining_workers %u\n"
                        "# HELP lbd_draining_workers_memory_bytes Private resident memory of "
                        "the draining workers.\n"
                        "# TYPE lbd_draining_workers_memory_bytes gauge\n"
                        "lbd_draining_workers_memory_bytes %llu\n", dr.generations, dr.workers,
                        (unsigned long long) dr.memory_bytes);
    lb_metrics_render(cycle, lb_admin_emit, o);
    all = lb_upstream_all(cycle, &n);
    for (k = 0; k < lb_nelems(lb_admin_server_metrics); k++) {
        m = &lb_admin_server_metrics[k];
        lb_admin_out_printf(o, "# HELP %s %s\n# TYPE %s %s\n", m->name, m->help, m->name,
                            m->type);
        for (i = 0; i < n; i++) {
            lb_metric_label(name, sizeof(name), all[i]->name);
            for (j = 0; j < all[i]->nservers; j++) {
                lb_admin_out_printf(o, "%s{upstream=\"%s\",server=\"%s\"} %llu\n", m->name,
                                    name, lb_metric_label(addr, sizeof(addr),
                                                          all[i]->servers[j].addr.text),
                                    (unsigned long long) m->value(&all[i]->servers[j]));
            }
        }
    }
}

/* GET /route ---------------------------------------------------------------- */

/* The dry run `lbctl route` makes, on the running configuration: the
 * route module's own command, its output captured. The admin server is
 * single-threaded, so borrowing its standard output and error for the
 * call is safe. */
static void
lb_admin_route(lb_admin_req_t *rq)
{
    const lb_ctl_command_t  *cmd = lb_module_command("route");
    const char              *argv[2 * LB_ADMIN_QUERY_MAX + 4];
    char                     buf[16384];
    ssize_t                  n;
    size_t                   i, argc = 0, len = 0;
    int                      fd, out, err, rc;

    if (cmd == NULL) {
        lb_admin_error(rq, 404, "this build has no http routes");
        return;
    }
    argv[argc++] = "route";
    argv[argc++] = lb_admin_param(rq, "method") ? lb_admin_param(rq, "method") : "GET";
    if (lb_admin_param(rq, "url") == NULL || !*lb_admin_param(rq, "url")) {
        lb_admin_error(rq, 400, "parameter \"url\" is required: a path (/a/b?c) or an "
                       "absolute URL");
        return;
    }
    argv[argc++] = lb_admin_param(rq, "url");
    for (i = 0; i < rq->nparams; i++) {
        if (strcmp(rq->params[i].name, "header") == 0) {
            argv[argc++] = "-H";
            argv[argc++] = rq->params[i].value;
        } else if (strcmp(rq->params[i].name, "listener") == 0) {
            argv[argc++] = "--listener";
            argv[argc++] = rq->params[i].value;
        } else if (strcmp(rq->params[i].name, "method") != 0
                   && strcmp(rq->params[i].name, "url") != 0)
        {
            lb_admin_error(rq, 400, "unknown parameter \"%s\": method, url, header, listener",
                           rq->params[i].name);
            return;
        }
    }
    argv[argc] = NULL;

    fd = memfd_create("lbd-route", MFD_CLOEXEC);
    fflush(stdout);
    fflush(stderr);
    out = dup(STDOUT_FILENO);
    err = dup(STDERR_FILENO);
    if (fd == -1 || out == -1 || err == -1 || dup2(fd, STDOUT_FILENO) == -1
        || dup2(fd, STDERR_FILENO) == -1)
    {
        lb_admin_error(rq, 500, "cannot capture the dry run: %s", strerror(errno));
        rc = -1;
    } else {
        rc = cmd->run(rq->cycle, (int) argc, (char **) argv);
        fflush(stdout);
        fflush(stderr);
    }
    if (out != -1) {
        dup2(out, STDOUT_FILENO);
        close(out);
    }
    if (err != -1) {
        dup2(err, STDERR_FILENO);
        close(err);
    }
    if (fd != -1) {
        lseek(fd, 0, SEEK_SET);
        while (len < sizeof(buf) - 1 && (n = read(fd, buf + len, sizeof(buf) - 1 - len)) > 0) {
            len += (size_t) n;
        }
        close(fd);
    }
    if (rc == -1) {
        return;
    }
    buf[len] = '\0';
    if (strncmp(buf, "lbctl: ", 7) == 0) {
        /* the command refused the request: its one line */
        buf[strcspn(buf, "\n")] = '\0';
        lb_admin_error(rq, 400, "%s", buf + 7);
        return;
    }
    rq->status = 200;
    if (rq->text) {
        lb_admin_out_add(&rq->body, buf, len);
        return;
    }
    /* "route: #2 ..." when one matched; lbctl's exit status 1 otherwise */
    lb_admin_out_printf(&rq->body, "{\"matched\": %s, \"text\": ", rc == 0 ? "true" : "false");
    lb_admin_out_json(&rq->body, buf);
    lb_admin_out_add(&rq->body, "}\n", 2);
}

/* The path's segments, percent-decoded: at most max; *n of them. */
static bool
lb_admin_segments(char *path, char **seg, size_t max, size_t *n)
{
    char  *p = path + 1, *slash;

    *n = 0;
    if (*p == '\0') {
        return true;
    }
    for ( ;; ) {
        if (*n == max) {
            return false;
        }
        slash = strchr(p, '/');
        if (slash) {
            *slash = '\0';
        }
        if (*p == '\0' || !lb_admin_unescape(p, false)) {
            return false;
        }
        seg[(*n)++] = p;
        if (slash == NULL) {
            return true;
        }
        p = slash + 1;
    }
}

static bool
lb_admin_method(lb_admin_req_t *rq, const char *want)
{
    if (strcmp(rq->method, want) == 0 || (strcmp(want, "GET") == 0
                                          && strcmp(rq->method, "HEAD") == 0))
    {
        return true;
    }
    rq->allow = strcmp(want, "GET") == 0 ? "GET, HEAD" : want;
    lb_admin_error(rq, 405, "%s takes %s, not %s", rq->path, want, rq->method);
    return false;
}

void
lb_admin_dispatch(lb_admin_req_t *rq)
{
    static const char *const  actions[] = { "drain", "enable", "disable", "weight", NULL };
    char                     *seg[8], path[1024];
    lb_upstream_t            *u;
    size_t                    n, i;

    snprintf(path, sizeof(path), "%s", rq->path);
    if (!lb_admin_segments(rq->path, seg, lb_nelems(seg), &n)) {
        lb_admin_error(rq, 400, "malformed path %s", path);
        return;
    }
    rq->path = path;            /* for messages: as it came */

    if (n == 0) {
        if (lb_admin_method(rq, "GET")) {
            lb_admin_page(rq);
        }
        return;
    }

    if (n == 1 && strcmp(seg[0], "route") == 0) {
        if (lb_admin_method(rq, "GET")) {
            lb_admin_route(rq);
        }
        return;
    }
    if (n == 1 && strcmp(seg[0], "metrics") == 0) {
        if (lb_admin_method(rq, "GET")) {
            lb_admin_metrics(rq);
        }
        return;
    }
    if (n == 1 && strcmp(seg[0], "status") == 0) {
        if (lb_admin_method(rq, "GET")) {
            lb_admin_status(rq);
        }
        return;
    }
    if (n >= 1 && strcmp(seg[0], "upstreams") == 0) {
        if (n == 1) {
            if (lb_admin_method(rq, "GET")) {
                lb_admin_upstreams(rq);
            }
            return;
        }
        if (n == 2) {
            if (lb_admin_method(rq, "GET") && (u = lb_admin_find_upstream(rq, seg[1]))) {
                rq->status = 200;
                if (rq->text) {
                    lb_admin_table_head(&rq->body);
                    lb_admin_upstream_text(&rq->body, u);
                } else {
                    lb_admin_upstream_json(&rq->body, u);
                    lb_admin_out_add(&rq->body, "\n", 1);
                }
            }
            return;
        }
        if (n == 5 && strcmp(seg[2], "servers") == 0) {
            for (i = 0; actions[i] && strcmp(actions[i], seg[4]) != 0; i++) {
                /* search */
            }
            if (actions[i] == NULL) {
                lb_admin_error(rq, 404, "unknown action \"%s\": drain, enable, disable or "
                               "weight", seg[4]);
                return;
            }
            if (lb_admin_method(rq, "POST") && (u = lb_admin_find_upstream(rq, seg[1]))) {
                lb_admin_change(rq, u, seg[3], (lb_admin_action_t) i);
            }
            return;
        }
    }
    if (n == 3 && strcmp(seg[0], "caches") == 0 && strcmp(seg[2], "purge") == 0) {
        if (lb_admin_method(rq, "POST")) {
            lb_admin_error(rq, 404, "no cache zones");
        }
        return;
    }
    lb_admin_error(rq, 404, "not found: %s", path);
}
