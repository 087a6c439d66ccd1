/*
 * lb_health.c: active health checks (SPEC §3.2 `health_check`). One helper
 * process, the health prober, checks every server of every upstream that
 * has a `health_check` group — never one prober per worker — and writes
 * its verdict into the server's shared state (`down`), which every worker
 * reads on its next pick. A check is a connect (tcp), a request and its
 * status line and optionally body (http), or a datagram and its answer
 * (udp), optionally over TLS; `fall` failures in a row take a server out,
 * `rise` successes bring it back (with slow_start, and clearing what
 * passive health held against it). Each change of state is one log line
 * with the reason.
 *
 * An http check that passed leaves its connection open for the next one
 * when the answer allows it (HTTP/1.1, its end told by its length, no
 * "Connection: close"), for up to `keepalive_time` (default 10s) after the
 * connection was made: the next check then costs a request and an answer,
 * not a handshake and a close (nor a TLS handshake), while a new
 * connection at least that often still proves the server takes them. A
 * kept connection that the server closes, or that fails before the first
 * byte of its answer, is replaced by a new one within the same check: a
 * server's idle timeout never counts against it.
 *
 * Checks are spread: each server's first check comes at a random point of
 * its first interval, and every next one an interval after the one before
 * began, give or take a tenth. A check never outlives `timeout`, whatever the server does
 * (hangs, resets, drips, sends a gigabyte: reading stops at
 * LB_HEALTH_READ_MAX).
 */
#include "lb_core.h"
#include "lb_upstream.h"
#include "lb_regex.h"
#include "lb_tls.h"
#include "lb_state.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <sys/prctl.h>
#include <sys/resource.h>

#define LB_HEALTH_READ_MAX  16384       /* of an answer: status line, head, body start */
#define LB_HEALTH_SEND_MAX  1024        /* a udp check's datagram */
#define LB_HEALTH_BUFS_KEPT 64          /* idle read buffers kept for the next checks */

typedef enum {
    LB_HEALTH_TCP = 0,
    LB_HEALTH_HTTP,
    LB_HEALTH_UDP,
} lb_health_type_t;

static const char *const  lb_health_types[] = { "tcp", "http", "udp", NULL };

/* An upstream's health_check group. */
typedef struct {
    int               configured;   /* the group is there */
    int               enabled;
    int               type;         /* lb_health_type_t */
    char             *path;
    char             *host;
    char             *expect_status;
    int               status_lo, status_hi;
    char             *expect_body;
    lb_regex_t       *body_re;
    char             *send;
    char             *send_hex;
    char             *payload;      /* udp: send or send_hex, decoded */
    size_t            payload_len;
    char             *expect;
    lb_regex_t       *expect_re;
    int               tls;
    lb_msec_t         interval;
    lb_msec_t         timeout;
    int64_t           rise;
    int64_t           fall;
    int64_t           port;         /* 0: the server's */
    int               start_down;
    lb_msec_t         keepalive_time;   /* http: 0, a new connection each check */
} lb_health_conf_t;

static const lb_setting_t  lb_health_group[] = {
    { "enabled", LB_SET_BOOL, 0, "true", 0, 0,
      offsetof(lb_health_conf_t, enabled), NULL, NULL, 0 },
    { "type", LB_SET_ENUM, 0, "tcp", 0, 0,
      offsetof(lb_health_conf_t, type), lb_health_types, NULL, 0 },
    { "path", LB_SET_STR, 0, "/", 0, 0,
      offsetof(lb_health_conf_t, path), NULL, NULL, 0 },
    { "host", LB_SET_STR, 0, NULL, 0, 0,
      offsetof(lb_health_conf_t, host), NULL, NULL, 0 },
    { "expect_status", LB_SET_STR, 0, "200-399", 0, 0,
      offsetof(lb_health_conf_t, expect_status), NULL, NULL, 0 },
    { "expect_body", LB_SET_STR, 0, NULL, 0, 0,
      offsetof(lb_health_conf_t, expect_body), NULL, NULL, 0 },
    { "send", LB_SET_STR, 0, NULL, 0, 0,
      offsetof(lb_health_conf_t, send), NULL, NULL, 0 },
    { "send_hex", LB_SET_STR, 0, NULL, 0, 0,
      offsetof(lb_health_conf_t, send_hex), NULL, NULL, 0 },
    { "expect", LB_SET_STR, 0, NULL, 0, 0,
      offsetof(lb_health_conf_t, expect), NULL, NULL, 0 },
    { "tls", LB_SET_BOOL, 0, "false", 0, 0,
      offsetof(lb_health_conf_t, tls), NULL, NULL, 0 },
    { "interval", LB_SET_DURATION, 0, "2s", 100, 86400000,
      offsetof(lb_health_conf_t, interval), NULL, NULL, 0 },
    { "timeout", LB_SET_DURATION, 0, "1s", 10, 86400000,
      offsetof(lb_health_conf_t, timeout), NULL, NULL, 0 },
    { "rise", LB_SET_INT, 0, "2", 1, 100,
      offsetof(lb_health_conf_t, rise), NULL, NULL, 0 },
    { "fall", LB_SET_INT, 0, "3", 1, 100,
      offsetof(lb_health_conf_t, fall), NULL, NULL, 0 },
    { "port", LB_SET_INT, 0, "0", 0, 65535,
      offsetof(lb_health_conf_t, port), NULL, NULL, 0 },
    { "start_down", LB_SET_BOOL, 0, "false", 0, 0,
      offsetof(lb_health_conf_t, start_down), NULL, NULL, 0 },
    { "keepalive_time", LB_SET_DURATION, 0, "10s", 0, 86400000,
      offsetof(lb_health_conf_t, keepalive_time), NULL, NULL, 0 },
    lb_setting_end
};

static int   lb_health_set(lb_conf_t *cf, const lb_setting_t *s, config_setting_t *v,
                           void *conf);
static void *lb_health_create_conf(lb_conf_t *cf, unsigned ctx);
static int   lb_health_init_master(lb_cycle_t *cycle);
static int   lb_health_state_save(lb_cycle_t *cycle, lb_state_writer_t *w);
static int   lb_health_state_load(lb_cycle_t *cycle, const lb_state_record_t *r);
static unsigned lb_health_count(lb_cycle_t *cycle);
static int   lb_health_start(lb_cycle_t *cycle, unsigned instance);
static void  lb_health_stop(lb_cycle_t *cycle);

static const lb_setting_t  lb_health_settings[] = {
    { "health_check", LB_SET_CUSTOM, LB_CTX_UPSTREAM, NULL, 0, 0, 0, NULL, lb_health_set, 0 },
    lb_setting_end
};

static const lb_helper_t  lb_health_helper = {
    "health prober", lb_health_count, lb_health_start, lb_health_stop
};

lb_module_t  lb_core_health_module = {
    .name = "core_health",
    .type = LB_MODULE_CORE,
    .settings = lb_health_settings,
    .conf_contexts = LB_CTX_UPSTREAM,
    .create_conf = lb_health_create_conf,
    .init_master = lb_health_init_master,
    .helper = &lb_health_helper,
    .state_save = lb_health_state_save,
    .state_load = lb_health_state_load,
};

/* Configuration ---------------------------------------------------------- */

static void *
lb_health_create_conf(lb_conf_t *cf, unsigned ctx)
{
    return lb_pcalloc(cf->pool, sizeof(lb_health_conf_t));
}

/* "200", "2xx", "200-399" into lo..hi. */
static bool
lb_health_parse_status(const char *s, int *lo, int *hi)
{
    unsigned  a, b;
    char      x, y, end;

    if (sscanf(s, "%3u%c", &a, &end) == 1 && a >= 100 && a <= 599 && strlen(s) == 3) {
        *lo = *hi = (int) a;
        return true;
    }
    if (strlen(s) == 3 && s[0] >= '1' && s[0] <= '5' && sscanf(s + 1, "%c%c", &x, &y) == 2
        && (x == 'x' || x == 'X') && (y == 'x' || y == 'X'))
    {
        *lo = (s[0] - '0') * 100;
        *hi = *lo + 99;
        return true;
    }
    if (strlen(s) == 7 && sscanf(s, "%3u-%3u%c", &a, &b, &end) == 2 && a >= 100 && b <= 599
        && a <= b)
    {
        *lo = (int) a;
        *hi = (int) b;
        return true;
    }
    return false;
}

static int
lb_health_hex(lb_conf_t *cf, config_setting_t *v, lb_health_conf_t *hc)
{
    size_t  i, n = strlen(hc->send_hex);
    char   *out;
    int     hi, lo;

    if (n == 0 || n % 2 || n / 2 > LB_HEALTH_SEND_MAX) {
        return lb_conf_error(cf, v, "health_check send_hex must be an even number of hex "
                             "digits, 2 to %d", 2 * LB_HEALTH_SEND_MAX);
    }
    out = lb_palloc(cf->pool, n / 2);
    if (out == NULL) {
        return lb_conf_error(cf, v, "out of memory");
    }
    for (i = 0; i < n; i += 2) {
        hi = lb_hex_digit(hc->send_hex[i]);
        lo = lb_hex_digit(hc->send_hex[i + 1]);
        if (hi < 0 || lo < 0) {
            return lb_conf_error(cf, v, "health_check send_hex: \"%c%c\" is not a hex byte",
                                 hc->send_hex[i], hc->send_hex[i + 1]);
        }
        out[i / 2] = (char) (hi << 4 | lo);
    }
    hc->payload = out;
    hc->payload_len = n / 2;
    return LB_OK;
}

/* Settings that belong to another type than the one chosen are refused
 * rather than ignored: a udp check with a `path` is a mistake. */
static int
lb_health_check_types(lb_conf_t *cf, config_setting_t *v, lb_health_conf_t *hc)
{
    static const struct { const char *name; int type; } only[] = {
        { "path", LB_HEALTH_HTTP }, { "host", LB_HEALTH_HTTP },
        { "expect_status", LB_HEALTH_HTTP }, { "expect_body", LB_HEALTH_HTTP },
        { "keepalive_time", LB_HEALTH_HTTP },
        { "send", LB_HEALTH_UDP }, { "send_hex", LB_HEALTH_UDP }, { "expect", LB_HEALTH_UDP },
    };
    config_setting_t  *m;
    size_t             i;

    for (i = 0; i < lb_nelems(only); i++) {
        m = config_setting_get_member(v, only[i].name);
        if (m && hc->type != only[i].type) {
            return lb_conf_error(cf, m, "\"%s\" is for health checks of type \"%s\"; this "
                                 "one is \"%s\"", only[i].name, lb_health_types[only[i].type],
                                 lb_health_types[hc->type]);
        }
    }
    m = config_setting_get_member(v, "tls");
    if (m && hc->tls && hc->type == LB_HEALTH_UDP) {
        return lb_conf_error(cf, m, "\"tls\" is for tcp and http health checks");
    }
    return LB_OK;
}

static int
lb_health_set(lb_conf_t *cf, const lb_setting_t *s, config_setting_t *v, void *conf)
{
    lb_health_conf_t  *hc = conf;
    config_setting_t  *m;

    if (!config_setting_is_group(v)) {
        return lb_conf_error(cf, v, "\"health_check\" must be a group { ... }, not %s",
                             lb_conf_type_name(v));
    }
    if (lb_conf_set_defaults(cf, lb_health_group, hc) != LB_OK
        || lb_conf_parse_group(cf, v, lb_health_group, hc) != LB_OK
        || lb_health_check_types(cf, v, hc) != LB_OK)
    {
        return LB_ERROR;
    }
    hc->configured = 1;
    if (!lb_health_parse_status(hc->expect_status, &hc->status_lo, &hc->status_hi)) {
        m = config_setting_get_member(v, "expect_status");
        return lb_conf_error(cf, m ? m : v, "expect_status \"%s\": expected a status (\"200\"), "
                             "a class (\"2xx\") or a range (\"200-399\")", hc->expect_status);
    }
    if (hc->expect_body) {
        hc->body_re = lb_regex_compile(cf, config_setting_get_member(v, "expect_body"),
                                       "expect_body", hc->expect_body, 0);
        if (hc->body_re == NULL) {
            return LB_ERROR;
        }
    }
    if (hc->expect) {
        hc->expect_re = lb_regex_compile(cf, config_setting_get_member(v, "expect"),
                                         "expect", hc->expect, 0);
        if (hc->expect_re == NULL) {
            return LB_ERROR;
        }
    }
    if (hc->send && hc->send_hex) {
        return lb_conf_error(cf, v, "health_check has both send and send_hex; keep one");
    }
    if (hc->send_hex && lb_health_hex(cf, config_setting_get_member(v, "send_hex"), hc)
                        != LB_OK)
    {
        return LB_ERROR;
    }
    if (hc->send) {
        hc->payload = hc->send;
        hc->payload_len = strlen(hc->send);
        if (hc->payload_len == 0 || hc->payload_len > LB_HEALTH_SEND_MAX) {
            return lb_conf_error(cf, config_setting_get_member(v, "send"),
                                 "health_check send must hold 1 to %d bytes",
                                 LB_HEALTH_SEND_MAX);
        }
    }
    if (hc->type == LB_HEALTH_UDP && hc->payload == NULL) {
        return lb_conf_error(cf, v, "a udp health check needs \"send\" (or \"send_hex\"): "
                             "the datagram a server must answer");
    }
    if (hc->type == LB_HEALTH_HTTP && (hc->path[0] != '/' || strpbrk(hc->path, " \r\n"))) {
        return lb_conf_error(cf, v, "health_check path \"%s\" must start with \"/\" and hold "
                             "no spaces or line breaks", hc->path);
    }
    if (hc->host && (!*hc->host || strpbrk(hc->host, " \r\n"))) {
        return lb_conf_error(cf, v, "health_check host \"%s\" is not a valid Host", hc->host);
    }
    if (hc->timeout > hc->interval) {
        lb_conf_warn_at(cf, lb_conf_file(cf, v), (int) config_setting_source_line(v),
                        "health_check timeout is longer than its interval: a check runs "
                        "at most once at a time, so checks come every timeout at worst");
    }
    return LB_OK;
}

static lb_health_conf_t *
lb_health_conf(lb_upstream_t *u)
{
    lb_health_conf_t  *hc = lb_get_conf(u->confs, lb_core_health_module);

    return hc && hc->configured && hc->enabled && u->nservers ? hc : NULL;
}

/* In the master, for each configuration: a server new to checks starts
 * down when start_down says so (before any worker can pick it); one that
 * this configuration does not check is not held down by an old verdict,
 * whoever wrote it (the prober it replaces may have, after the last
 * reload cleared `checked`). Both before the workers fork. */
static int
lb_health_init_master(lb_cycle_t *cycle)
{
    lb_upstream_t           **all, *u;
    lb_upstream_server_t     *s;
    lb_upstream_peer_state_t *st;
    lb_health_conf_t         *hc;
    size_t                    i, j, n;

    all = lb_upstream_all(cycle, &n);
    for (i = 0; i < n; i++) {
        u = all[i];
        hc = lb_health_conf(u);
        for (j = 0; j < u->nservers; j++) {
            s = &u->servers[j];
            st = s->state;
            if (hc && !st->checked) {
                __atomic_store_n(&st->checked, 1, __ATOMIC_RELEASE);
                if (hc->start_down) {
                    snprintf(st->down_why, sizeof(st->down_why), "start_down: not checked yet");
                    __atomic_store_n(&st->down, 1, __ATOMIC_RELEASE);
                }
            } else if (hc == NULL) {
                __atomic_store_n(&st->checked, 0, __ATOMIC_RELEASE);
                if (__atomic_exchange_n(&st->down, 0, __ATOMIC_ACQ_REL)) {
                    lb_log_notice("server %s in upstream \"%s\" is up: it has no health "
                                  "check any more", s->addr.text, u->name);
                }
                st->down_why[0] = '\0';
            }
        }
    }
    return LB_OK;
}

/* A binary upgrade (lb_state.h): each checked server's verdict and
 * progress, so that a server the checks took out stays out until `rise`
 * checks pass in the new master's prober, and one that was up is not
 * taken out by start_down. Applied only where both configurations check
 * the server: the new one's init_master decided the rest. */
static int
lb_health_state_save(lb_cycle_t *cycle, lb_state_writer_t *w)
{
    lb_upstream_t             **all, *u;
    lb_upstream_server_t       *s;
    lb_upstream_peer_state_t   *st;
    size_t                      i, j, n;

    all = lb_upstream_all(cycle, &n);
    for (i = 0; i < n; i++) {
        u = all[i];
        for (j = 0; j < u->nservers; j++) {
            s = &u->servers[j];
            st = s->state;
            if (st == NULL) {
                continue;
            }
            lb_state_record_begin(w, "core_health", "server");
            lb_state_put_str(w, "upstream", u->name);
            lb_state_put_str(w, "server", lb_upstream_server_written(s));
            lb_state_put_str(w, "addr", s->addr.text);
            lb_state_put_int(w, "checked", __atomic_load_n(&st->checked, __ATOMIC_ACQUIRE));
            lb_state_put_int(w, "down", __atomic_load_n(&st->down, __ATOMIC_ACQUIRE));
            lb_state_put_bytes(w, "why", st->down_why, strnlen(st->down_why,
                                                               sizeof(st->down_why)));
            lb_state_put_int(w, "ok_run", __atomic_load_n(&st->ok_run, __ATOMIC_RELAXED));
            lb_state_put_int(w, "fail_run", __atomic_load_n(&st->fail_run, __ATOMIC_RELAXED));
            lb_state_put_int(w, "checks_failed",
                             (int64_t) __atomic_load_n(&st->checks_failed, __ATOMIC_RELAXED));
            lb_state_record_end(w);
        }
    }
    return LB_OK;
}

static int
lb_health_state_load(lb_cycle_t *cycle, const lb_state_record_t *r)
{
    lb_upstream_server_t      *s;
    lb_upstream_peer_state_t  *st;
    char                       upstream[256], server[256], addr[256];
    char                       why[sizeof(st->down_why)];
    int64_t                    checked, down, ok_run = 0, fail_run = 0, failed = 0;

    if (strcmp(r->type, "server") != 0
        || !lb_state_get_str(r, "upstream", upstream, sizeof(upstream))
        || !lb_state_get_str(r, "server", server, sizeof(server))
        || !lb_state_get_str(r, "addr", addr, sizeof(addr))
        || (s = lb_upstream_server_find(cycle, upstream, server, addr)) == NULL
        || s->state == NULL)
    {
        return LB_DECLINED;
    }
    st = s->state;
    if (lb_state_get_int(r, "checks_failed", &failed) && failed > 0) {
        __atomic_add_fetch(&st->checks_failed, (uint64_t) failed, __ATOMIC_RELAXED);
    }
    if (!__atomic_load_n(&st->checked, __ATOMIC_ACQUIRE)
        || !lb_state_get_int(r, "checked", &checked) || !checked
        || !lb_state_get_int(r, "down", &down))
    {
        return LB_OK;           /* not checked before, or not now */
    }
    lb_state_get_int(r, "ok_run", &ok_run);
    lb_state_get_int(r, "fail_run", &fail_run);
    if (!lb_state_get_str(r, "why", why, sizeof(why))) {
        snprintf(why, sizeof(why), "down before the upgrade");
    }
    snprintf(st->down_why, sizeof(st->down_why), "%s", down ? why : "");
    __atomic_store_n(&st->ok_run, (uint32_t) lb_max(lb_min(ok_run, 100), 0), __ATOMIC_RELAXED);
    __atomic_store_n(&st->fail_run, (uint32_t) lb_max(lb_min(fail_run, 100), 0),
                     __ATOMIC_RELAXED);
    __atomic_store_n(&st->down, down != 0, __ATOMIC_RELEASE);
    return LB_OK;
}

/* The prober ------------------------------------------------------------ */

/* How an http answer's body ends (RFC 9112 §6.3). */
typedef enum {
    LB_HEALTH_BODY_NONE = 0,        /* 204, 304: there is none */
    LB_HEALTH_BODY_LENGTH,          /* Content-Length */
    LB_HEALTH_BODY_CHUNKED,         /* decoded in place as it comes */
    LB_HEALTH_BODY_CLOSE,           /* the server closes */
} lb_health_body_t;

typedef enum {
    LB_HEALTH_CHUNK_SIZE = 0,
    LB_HEALTH_CHUNK_EXT,            /* the rest of the size line */
    LB_HEALTH_CHUNK_DATA,
    LB_HEALTH_CHUNK_CRLF,           /* after the data */
} lb_health_chunk_t;

/* A read buffer, lent to a check for as long as it reads: a few checks
 * run at once, so thousands of servers do not each hold 16 KiB; after a
 * burst (every server hanging at once) the free list keeps only
 * LB_HEALTH_BUFS_KEPT. */
typedef union lb_health_buf_u  lb_health_buf_t;
union lb_health_buf_u {
    lb_health_buf_t  *next;         /* in the free list */
    char              data[LB_HEALTH_READ_MAX];
};

typedef struct {
    lb_upstream_t         *u;
    lb_upstream_server_t  *s;
    lb_health_conf_t      *hc;
    lb_addr_t              addr;        /* the server's, or its `port` */
    const char            *host;        /* http: the Host field */
    lb_tls_ctx_t          *tls;         /* tls = true: the context, and the name */
    const char            *sni;
    lb_timer_t             timer;       /* the next check */
    lb_conn_t             *c;           /* the check under way, or the
                                           connection kept for the next */
    lb_msec_t              conn_at;     /* when c was made */
    bool                   reused;      /* the check runs on a kept connection */
    bool                   keep;        /* http: the answer lets c be kept */
    bool                   clean_end;   /* with expect_body: the answer ended
                                           exactly at its length */
    lb_msec_t              started;     /* when it began */
    lb_msec_t              deadline;
    unsigned               ok_run;      /* checks passed in a row, up to rise */
    unsigned               fail_run;    /* failed in a row, up to fall */
    size_t                 sent;
    char                   why[64];     /* the last failure */
    /* what the check read: buf[0..len) */
    lb_health_buf_t       *buf;
    size_t                 len;
    /* http with expect_body, once the head is in: the body starts at
     * `body`; chunked, it is decoded up to `body_end` and len follows it */
    size_t                 body;
    size_t                 body_end;
    int                    status;
    lb_health_body_t       framing;
    uint64_t               length;      /* Content-Length */
    uint64_t               chunk_left;
    lb_health_chunk_t      chunk_state;
    unsigned               chunk_digits;
} lb_health_probe_t;

static lb_health_probe_t  *lb_health_probes;
static size_t              lb_health_nprobes;
static lb_health_buf_t    *lb_health_free_bufs;
static size_t              lb_health_nfree_bufs;

static void lb_health_begin(lb_timer_t *t);
static void lb_health_idle(lb_event_t *ev);
static void lb_health_read(lb_event_t *ev);
static void lb_health_write(lb_event_t *ev);
static void lb_health_connected(lb_health_probe_t *pr);
static void lb_health_open(lb_health_probe_t *pr);
static int  lb_health_answer_end(lb_health_probe_t *pr);
static void lb_health_settle(lb_event_t *ev);
static void lb_health_kept(lb_event_t *ev);
static void lb_health_reopen(lb_health_probe_t *pr);

static unsigned
lb_health_count(lb_cycle_t *cycle)
{
    lb_upstream_t  **all;
    size_t           i, n;

    all = lb_upstream_all(cycle, &n);
    for (i = 0; i < n; i++) {
        if (lb_health_conf(all[i])) {
            return 1;
        }
    }
    return 0;
}

static lb_health_buf_t *
lb_health_buf_get(void)
{
    lb_health_buf_t  *b = lb_health_free_bufs;

    if (b) {
        lb_health_free_bufs = b->next;
        lb_health_nfree_bufs--;
        return b;
    }
    return malloc(sizeof(lb_health_buf_t));
}

static void
lb_health_buf_put(lb_health_buf_t *b)
{
    if (lb_health_nfree_bufs == LB_HEALTH_BUFS_KEPT) {
        free(b);
        return;
    }
    b->next = lb_health_free_bufs;
    lb_health_free_bufs = b;
    lb_health_nfree_bufs++;
}

/* The next check: an interval after this one began, give or take a
 * tenth, so that what a check takes does not stretch the rhythm (one that
 * outlasts the interval is followed at once: checks of a server never
 * overlap). */
static void
lb_health_schedule(lb_health_probe_t *pr)
{
    lb_msec_t  iv = pr->hc->interval, tenth = iv / 10, at;

    at = pr->started + iv - tenth + (tenth ? random() % (2 * tenth + 1) : 0);
    lb_timer_set(&pr->timer, at > lb_current_msec ? at - lb_current_msec : 0);
}

/* The check's connection goes. */
static void
lb_health_drop(lb_health_probe_t *pr)
{
    struct linger  now = { 1, 0 };

    if (pr->c) {
        /* a check has nothing left to say: a reset ends it without the
         * FIN exchange and TIME_WAIT of an orderly close (a third of the
         * prober's system time went to close at 1,000 checks a second) */
        if (pr->hc->type != LB_HEALTH_UDP) {
            setsockopt(pr->c->fd, SOL_SOCKET, SO_LINGER, &now, sizeof(now));
        }
        lb_conn_close(pr->c);
        pr->c = NULL;
    }
}

/* The answer ended: its buffer goes back, and the connection waits for
 * the next check (lb_health_kept watches it meanwhile). */
static void
lb_health_keep(lb_health_probe_t *pr)
{
    lb_health_buf_put(pr->buf);
    pr->buf = NULL;
    lb_event_timer_del(&pr->c->read);
    lb_event_timer_del(&pr->c->write);
    pr->c->read.handler = lb_health_kept;
    pr->c->write.handler = lb_health_idle;
}

/* The end of a check: its buffer goes, and its connection too unless the
 * check passed and its answer lets the next check use it (when the answer
 * has not all come in yet, lb_health_settle reads the rest first). */
static void
lb_health_release(lb_health_probe_t *pr, bool ok)
{
    int  rc;

    if (ok && pr->c && pr->buf && pr->hc->keepalive_time
        && pr->hc->type == LB_HEALTH_HTTP)
    {
        rc = lb_health_answer_end(pr);
        if (rc == LB_OK) {
            lb_health_keep(pr);
            return;
        }
        if (rc == LB_AGAIN) {
            /* until the check's deadline; what is in the socket already
             * is read now (its edge is spent) */
            pr->c->read.handler = lb_health_settle;
            lb_health_settle(&pr->c->read);
            return;
        }
    }
    lb_health_drop(pr);
    if (pr->buf) {
        lb_health_buf_put(pr->buf);
        pr->buf = NULL;
    }
}

/* The runs in a row go to the shared state too, so that the next prober
 * (a reload, a respawn, a binary upgrade) goes on from them. */
static void
lb_health_runs(lb_health_probe_t *pr)
{
    __atomic_store_n(&pr->s->state->ok_run, pr->ok_run, __ATOMIC_RELAXED);
    __atomic_store_n(&pr->s->state->fail_run, pr->fail_run, __ATOMIC_RELAXED);
}

/* The shared state is the verdict, not a copy of it here: a prober that
 * starts (a reload, a respawn) goes on from what is there, and the one it
 * replaces may still write once before it stops. A server that no
 * configuration checks any more (st->checked cleared by the master) is
 * never taken out again by a prober that has not stopped yet. */
static void
lb_health_verdict(lb_health_probe_t *pr, bool ok)
{
    lb_upstream_peer_state_t  *st = pr->s->state;
    lb_upstream_t             *u = pr->u;
    bool                       down;

    lb_health_release(pr, ok);
    down = __atomic_load_n(&st->down, __ATOMIC_ACQUIRE) != 0;
    if (ok) {
        pr->fail_run = 0;
        pr->ok_run = lb_min(pr->ok_run + 1, (unsigned) pr->hc->rise);
        lb_health_runs(pr);
        if (down && pr->ok_run == (unsigned) pr->hc->rise) {
            /* what passive health held against it goes too: the checks
             * say it answers (its own failures will count again) */
            lb_upstream_fail_clear(st);
            if (u->slow_start) {
                __atomic_store_n(&st->back_at, lb_current_msec, __ATOMIC_RELAXED);
            }
            st->down_why[0] = '\0';
            __atomic_store_n(&st->down, 0, __ATOMIC_RELEASE);
            lb_log_notice("server %s in upstream \"%s\" is up: %u of %u checks passed",
                          pr->s->addr.text, u->name, pr->ok_run, (unsigned) pr->hc->rise);
        }
    } else {
        pr->ok_run = 0;
        pr->fail_run = lb_min(pr->fail_run + 1, (unsigned) pr->hc->fall);
        lb_health_runs(pr);
        __atomic_add_fetch(&st->checks_failed, 1, __ATOMIC_RELAXED);
        lb_log_debug("health check of server %s in upstream \"%s\" failed: %s",
                     pr->s->addr.text, u->name, pr->why);
        if (!down && pr->fail_run == (unsigned) pr->hc->fall
            && __atomic_load_n(&st->checked, __ATOMIC_ACQUIRE))
        {
            snprintf(st->down_why, sizeof(st->down_why), "%s", pr->why);
            __atomic_store_n(&st->down, 1, __ATOMIC_RELEASE);
            lb_log_warn(0, "server %s in upstream \"%s\" is down: %s, %u of %u checks failed",
                        pr->s->addr.text, u->name, pr->why, pr->fail_run,
                        (unsigned) pr->hc->fall);
        }
    }
    lb_health_schedule(pr);
}

static void
lb_health_fail(lb_health_probe_t *pr, int err, const char *what)
{
    if (err) {
        snprintf(pr->why, sizeof(pr->why), "%s (%s)", what, strerror(err));
    } else {
        snprintf(pr->why, sizeof(pr->why), "%s", what);
    }
    lb_health_verdict(pr, false);
}

/* A check that could not even start for want of something here (a
 * descriptor, memory, an ephemeral port: lb_conn_error_is_local): no
 * verdict either way, since the server is not to blame (lb_conn.h), and
 * a prober short of descriptors must not take down the servers it could
 * not reach; the next check comes as usual. */
static void
lb_health_skip(lb_health_probe_t *pr, int err, const char *what)
{
    lb_health_release(pr, false);
    lb_log_error_limited(err, "health prober: %s for the check of server %s in upstream "
                         "\"%s\"; not counted against it", what, pr->s->addr.text,
                         pr->u->name);
    lb_health_schedule(pr);
}

static lb_msec_t
lb_health_left(lb_health_probe_t *pr)
{
    return pr->deadline > lb_current_msec ? pr->deadline - lb_current_msec : 1;
}

/* http answers --------------------------------------------------------------- */

/* The status of the status line at p (RFC 9112 §4): LB_OK, LB_AGAIN (the
 * line is not all there yet) or LB_ERROR (it is no HTTP/1 status line;
 * told from its first bytes already, so that garbage fails at once). */
static int
lb_health_status_line(const char *p, size_t len, int *status)
{
    const char  *nl = memchr(p, '\n', len);
    size_t       n = nl ? (size_t) (nl - p) : len;

    if (memcmp(p, "HTTP/1.", lb_min(n, 7)) != 0) {
        return LB_ERROR;
    }
    if (nl == NULL) {
        return LB_AGAIN;
    }
    if (n < 12 || !isdigit((unsigned char) p[7]) || p[8] != ' '
        || !isdigit((unsigned char) p[9]) || !isdigit((unsigned char) p[10])
        || !isdigit((unsigned char) p[11]) || (n > 12 && p[12] != ' ' && p[12] != '\r'))
    {
        return LB_ERROR;
    }
    *status = (p[9] - '0') * 100 + (p[10] - '0') * 10 + (p[11] - '0');
    return LB_OK;
}

/* The length of the head at p, its empty line included; 0 when it has
 * not ended yet. */
static size_t
lb_health_head_len(const char *p, size_t len)
{
    const char  *nl, *end = p + len;

    for (nl = memchr(p, '\n', len); nl; nl = memchr(nl + 1, '\n', (size_t) (end - nl - 1))) {
        if (nl + 1 < end && nl[1] == '\n') {
            return (size_t) (nl + 2 - p);
        }
        if (nl + 2 < end && nl[1] == '\r' && nl[2] == '\n') {
            return (size_t) (nl + 3 - p);
        }
    }
    return 0;
}

/* Whether the field line [p, e) is called name; *value then points past
 * its colon and blanks. */
static bool
lb_health_field(const char *p, const char *e, const char *name, const char **value)
{
    size_t  n = strlen(name);

    if ((size_t) (e - p) <= n || p[n] != ':' || strncasecmp(p, name, n) != 0) {
        return false;
    }
    for (p += n + 1; p < e && (*p == ' ' || *p == '\t'); p++) {
        /* the value's leading blanks */
    }
    *value = p;
    return true;
}

/* From the head buf[0..head): how the body ends. LB_ERROR on a
 * Content-Length that is not one number. */
static int
lb_health_framing(lb_health_probe_t *pr, size_t head)
{
    const char  *p = pr->buf->data, *end = p + head, *e, *v, *last;
    uint64_t     length = 0;
    bool         chunked = false, has_length = false;
    size_t       digits;

    if (pr->status == 204 || pr->status == 304) {
        pr->framing = LB_HEALTH_BODY_NONE;
        return LB_OK;
    }
    /* the fields: after the status line, which ends in a '\n' (it parsed) */
    for (p = (const char *) memchr(p, '\n', head) + 1; p < end; p = e + 1) {
        e = memchr(p, '\n', (size_t) (end - p));
        if (e == NULL) {
            break;
        }
        if (lb_health_field(p, e, "content-length", &v)) {
            for (length = 0, digits = 0; v < e && isdigit((unsigned char) *v); v++, digits++) {
                if (length > (UINT64_MAX - 9) / 10) {
                    return LB_ERROR;
                }
                length = length * 10 + (uint64_t) (*v - '0');
            }
            while (v < e && (*v == ' ' || *v == '\t' || *v == '\r')) {
                v++;
            }
            if (digits == 0 || v != e || (has_length && length != pr->length)) {
                return LB_ERROR;
            }
            has_length = true;
            pr->length = length;
        } else if (lb_health_field(p, e, "transfer-encoding", &v)) {
            /* chunked when it is the last coding */
            for (last = e; last > v && memchr(" \t\r", last[-1], 3); last--) {
                /* trailing blanks */
            }
            chunked = last - v >= 7 && strncasecmp(last - 7, "chunked", 7) == 0
                      && (last - v == 7 || memchr(" \t,", last[-8], 3));
        }
    }
    pr->framing = chunked ? LB_HEALTH_BODY_CHUNKED
                          : has_length ? LB_HEALTH_BODY_LENGTH : LB_HEALTH_BODY_CLOSE;
    return LB_OK;
}

/* Whether the head buf[0..head) has a Connection field with "close". */
static bool
lb_health_says_close(const char *buf, size_t head)
{
    const char  *p, *e, *v, *end = buf + head;

    for (p = (const char *) memchr(buf, '\n', head) + 1; p < end; p = e + 1) {
        e = memchr(p, '\n', (size_t) (end - p));
        if (e == NULL) {
            break;
        }
        if (!lb_health_field(p, e, "connection", &v)) {
            continue;
        }
        for ( ; e - v >= 5; v++) {
            if (strncasecmp(v, "close", 5) == 0) {
                return true;
            }
        }
    }
    return false;
}

/* For a check that passed: whether its connection can carry the next
 * check, the answer being all in buf and nothing after it. LB_OK: yes;
 * LB_AGAIN: the end is still to come; LB_DECLINED: it cannot be kept
 * (not HTTP/1.1, "Connection: close", an end told by the close or by
 * chunks, longer than the buffer, or more bytes than the answer). */
static int
lb_health_answer_end(lb_health_probe_t *pr)
{
    const char  *buf = pr->buf->data;
    size_t       head, end;

    if (pr->hc->body_re) {
        /* read through its body already (lb_health_judge_body) */
        return pr->keep && pr->clean_end ? LB_OK : LB_DECLINED;
    }
    if (pr->status < 200 || pr->len < 8 || memcmp(buf, "HTTP/1.1", 8) != 0) {
        return LB_DECLINED;
    }
    head = lb_health_head_len(buf, pr->len);
    if (head == 0) {
        return pr->len < LB_HEALTH_READ_MAX ? LB_AGAIN : LB_DECLINED;
    }
    if (lb_health_says_close(buf, head) || lb_health_framing(pr, head) != LB_OK) {
        return LB_DECLINED;
    }
    if (pr->framing == LB_HEALTH_BODY_NONE) {
        end = head;
    } else if (pr->framing == LB_HEALTH_BODY_LENGTH
               && pr->length <= LB_HEALTH_READ_MAX - head)
    {
        end = head + (size_t) pr->length;
    } else {
        return LB_DECLINED;
    }
    if (pr->len < end) {
        return LB_AGAIN;
    }
    return pr->len == end ? LB_OK : LB_DECLINED;
}

/* Decodes the chunked body that arrived, in place (RFC 9112 §7.1): the
 * data moves down over the framing, to body_end, and len follows it, so
 * the whole buffer is left for data. LB_OK: the last chunk came (its
 * trailer is not waited for); LB_AGAIN: more is to come; LB_ERROR: it is
 * not chunked framing. */
static int
lb_health_dechunk(lb_health_probe_t *pr)
{
    char      *buf = pr->buf->data, *p = buf + pr->body_end, *end = buf + pr->len;
    size_t     n;
    int        d;

    while (p < end) {
        switch (pr->chunk_state) {
        case LB_HEALTH_CHUNK_SIZE:
            d = lb_hex_digit(*p);
            if (d >= 0) {
                if (pr->chunk_left > (UINT64_MAX >> 4)) {
                    return LB_ERROR;
                }
                pr->chunk_left = pr->chunk_left << 4 | (uint64_t) d;
                pr->chunk_digits++;
                p++;
                break;
            }
            if (pr->chunk_digits == 0) {
                return LB_ERROR;
            }
            pr->chunk_state = LB_HEALTH_CHUNK_EXT;
            break;
        case LB_HEALTH_CHUNK_EXT:
            if (*p++ == '\n') {
                if (pr->chunk_left == 0) {
                    pr->len = pr->body_end;
                    return LB_OK;
                }
                pr->chunk_state = LB_HEALTH_CHUNK_DATA;
            }
            break;
        case LB_HEALTH_CHUNK_DATA:
            n = (size_t) lb_min(pr->chunk_left, (uint64_t) (end - p));
            memmove(buf + pr->body_end, p, n);
            pr->body_end += n;
            pr->chunk_left -= n;
            p += n;
            if (pr->chunk_left == 0) {
                pr->chunk_state = LB_HEALTH_CHUNK_CRLF;
            }
            break;
        case LB_HEALTH_CHUNK_CRLF:
            if (*p == '\n') {
                pr->chunk_state = LB_HEALTH_CHUNK_SIZE;
                pr->chunk_digits = 0;
            } else if (*p != '\r') {
                return LB_ERROR;
            }
            p++;
            break;
        }
    }
    pr->len = pr->body_end;
    return LB_AGAIN;
}

/* With expect_body, once the head is in: the body so far. LB_AGAIN: more
 * is needed and may come; else judged. Reading stops when the buffer is
 * full: the first LB_HEALTH_READ_MAX bytes are what is matched. */
static int
lb_health_judge_body(lb_health_probe_t *pr, bool complete)
{
    bool    full = pr->len == LB_HEALTH_READ_MAX;
    size_t  have;
    int     rc;

    switch (pr->framing) {
    case LB_HEALTH_BODY_NONE:
        pr->clean_end = pr->len == pr->body;
        pr->len = pr->body;
        break;
    case LB_HEALTH_BODY_LENGTH:
        have = pr->len - pr->body;
        if (have >= pr->length) {
            pr->clean_end = have == pr->length;
            pr->len = pr->body + (size_t) pr->length;
        } else if (complete) {
            lb_health_fail(pr, 0, "closed before the end of the body");
            return LB_ERROR;
        } else if (!full) {
            return LB_AGAIN;
        }
        break;
    case LB_HEALTH_BODY_CHUNKED:
        rc = lb_health_dechunk(pr);
        if (rc == LB_ERROR) {
            lb_health_fail(pr, 0, "invalid chunked body");
            return LB_ERROR;
        }
        if (rc == LB_AGAIN && complete) {
            lb_health_fail(pr, 0, "closed before the end of the body");
            return LB_ERROR;
        }
        if (rc == LB_AGAIN && pr->len < LB_HEALTH_READ_MAX) {
            return LB_AGAIN;
        }
        break;
    case LB_HEALTH_BODY_CLOSE:
        if (!complete && !full) {
            return LB_AGAIN;
        }
        break;
    }
    if (!lb_regex_search(pr->hc->body_re, pr->buf->data + pr->body, pr->len - pr->body)) {
        lb_health_fail(pr, 0, "body does not match expect_body");
        return LB_ERROR;
    }
    lb_health_verdict(pr, true);
    return LB_OK;
}

/* http: judged on what arrived; complete: the server closed. LB_AGAIN:
 * more is needed and may come (never when complete or when the buffer is
 * full). */
static int
lb_health_judge_http(lb_health_probe_t *pr, bool complete)
{
    lb_health_conf_t  *hc = pr->hc;
    char              *buf = pr->buf->data;
    size_t             head;
    int                rc;

    if (pr->body) {
        return lb_health_judge_body(pr, complete);
    }
    for ( ;; ) {
        rc = pr->len ? lb_health_status_line(buf, pr->len, &pr->status) : LB_AGAIN;
        if (rc == LB_ERROR
            || (rc == LB_AGAIN && pr->len && (complete || pr->len == LB_HEALTH_READ_MAX)))
        {
            lb_health_fail(pr, 0, "invalid http status line");
            return LB_ERROR;
        }
        if (rc == LB_AGAIN) {
            if (complete) {
                lb_health_fail(pr, 0, "closed without answering");
                return LB_ERROR;
            }
            return LB_AGAIN;
        }
        if (pr->status >= 200 || pr->status == 101) {
            break;
        }
        /* an interim answer (RFC 9110 §15.2): the final one follows it */
        head = lb_health_head_len(buf, pr->len);
        if (head == 0) {
            break;
        }
        memmove(buf, buf + head, pr->len - head);
        pr->len -= head;
    }
    if (pr->status >= 100 && pr->status < 200 && pr->status != 101) {
        head = 0;               /* the interim head is not all in yet */
    } else if (pr->status < hc->status_lo || pr->status > hc->status_hi) {
        snprintf(pr->why, sizeof(pr->why), "http status %d", pr->status);
        lb_health_verdict(pr, false);
        return LB_ERROR;
    } else if (hc->body_re == NULL) {
        lb_health_verdict(pr, true);
        return LB_OK;
    } else {
        head = lb_health_head_len(buf, pr->len);
    }
    if (head == 0) {
        if (complete || pr->len == LB_HEALTH_READ_MAX) {
            lb_health_fail(pr, 0, "http head never ended");
            return LB_ERROR;
        }
        return LB_AGAIN;
    }
    if (lb_health_framing(pr, head) != LB_OK) {
        lb_health_fail(pr, 0, "invalid Content-Length");
        return LB_ERROR;
    }
    pr->keep = memcmp(buf, "HTTP/1.1", 8) == 0 && !lb_health_says_close(buf, head);
    pr->body = pr->body_end = head;
    return lb_health_judge_body(pr, complete);
}

/* Checks under way ---------------------------------------------------------- */

static void
lb_health_read(lb_event_t *ev)
{
    lb_conn_t          *c = ev->data;
    lb_health_probe_t  *pr = c->data;
    ssize_t             n;

    if (ev->timedout) {
        lb_health_fail(pr, 0, "timed out");
        return;
    }
    for ( ;; ) {
        n = lb_conn_recv(c, pr->buf->data + pr->len, LB_HEALTH_READ_MAX - pr->len);
        if (n == LB_AGAIN) {
            return;
        }
        if (pr->reused && pr->len == 0 && (n == LB_ERROR || n == 0)) {
            lb_health_reopen(pr);
            return;
        }
        if (n == LB_ERROR) {
            lb_health_fail(pr, errno, pr->hc->type == LB_HEALTH_UDP ? "no answer" : "read failed");
            return;
        }
        if (pr->hc->type == LB_HEALTH_UDP) {
            /* one datagram is the answer */
            if (pr->hc->expect_re
                && !lb_regex_search(pr->hc->expect_re, pr->buf->data, (size_t) n))
            {
                lb_health_fail(pr, 0, "answer does not match expect");
            } else {
                lb_health_verdict(pr, true);
            }
            return;
        }
        pr->len += (size_t) n;
        if (lb_health_judge_http(pr, n == 0) != LB_AGAIN || n == 0) {
            return;
        }
    }
}

static void
lb_health_send(lb_health_probe_t *pr)
{
    lb_conn_t  *c = pr->c;
    char        req[1024];
    const char *data;
    size_t      len;
    ssize_t     n;
    int         k;

    if (pr->hc->type == LB_HEALTH_UDP) {
        data = pr->hc->payload;
        len = pr->hc->payload_len;
    } else {
        k = snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: lbd "
                     "health check\r\nAccept: */*\r\n%s\r\n", pr->hc->path, pr->host,
                     pr->hc->keepalive_time ? "" : "Connection: close\r\n");
        if (k < 0 || (size_t) k >= sizeof(req)) {
            lb_health_fail(pr, 0, "request too long");
            return;
        }
        data = req;
        len = (size_t) k;
    }
    while (pr->sent < len) {
        n = lb_conn_send(c, data + pr->sent, len - pr->sent);
        if (n == LB_AGAIN) {
            return;             /* lb_health_write goes on */
        }
        if (n == LB_ERROR) {
            if (pr->reused && pr->len == 0) {
                lb_health_reopen(pr);
                return;
            }
            lb_health_fail(pr, errno, "send failed");
            return;
        }
        pr->sent += (size_t) n;
    }
    c->write.handler = lb_health_idle;      /* writable again says nothing */
    c->read.handler = lb_health_read;
    lb_event_timer_del(&c->write);
    lb_event_timer_set(&c->read, lb_health_left(pr));
    /* the answer cannot be there before the request, unless the server
     * spoke first (its edge is then spent: ready says so) or TLS holds
     * it already; otherwise a read now would only say EAGAIN */
    if (c->read.ready || lb_conn_is_tls(c)) {
        lb_health_read(&c->read);
    }
}

/* The connection is ready for the check itself (connected, TLS done). */
static void
lb_health_ready(lb_health_probe_t *pr)
{
    if (pr->hc->type == LB_HEALTH_TCP) {
        lb_health_verdict(pr, true);
        return;
    }
    pr->c->read.handler = lb_health_read;
    pr->c->write.handler = lb_health_write;
    lb_event_timer_set(&pr->c->write, lb_health_left(pr));
    lb_health_send(pr);
}

static void
lb_health_tls_done(lb_conn_t *c, bool ok)
{
    lb_health_probe_t  *pr = c->data;

    if (!ok) {
        snprintf(pr->why, sizeof(pr->why), "tls handshake failed: %s",
                 *lb_tls_verify_error(c) ? lb_tls_verify_error(c) : "closed");
        lb_health_verdict(pr, false);
        return;
    }
    lb_health_ready(pr);
}

static void
lb_health_connected(lb_health_probe_t *pr)
{
    if (pr->tls) {
        if (lb_tls_connect(pr->c, pr->tls, pr->sni, lb_health_left(pr), lb_health_tls_done)
            != LB_OK)
        {
            lb_health_fail(pr, 0, "cannot start tls");
        }
        return;
    }
    lb_health_ready(pr);
}

/* Writable while the request (or datagram) is not all out. */
static void
lb_health_write(lb_event_t *ev)
{
    lb_conn_t          *c = ev->data;
    lb_health_probe_t  *pr = c->data;

    if (ev->timedout) {
        lb_health_fail(pr, 0, "timed out");
        return;
    }
    lb_health_send(pr);
}

/* Writable once the connect finished, or failed. */
static void
lb_health_on_connect(lb_event_t *ev)
{
    lb_conn_t          *c = ev->data;
    lb_health_probe_t  *pr = c->data;

    if (ev->timedout) {
        lb_health_fail(pr, 0, "connect timed out");
        return;
    }
    if (lb_conn_connect_result(c) != LB_OK) {
        lb_health_fail(pr, errno, "connect failed");
        return;
    }
    lb_health_connected(pr);
}

static void
lb_health_idle(lb_event_t *ev)
{
}

/* A kept connection became readable between checks: the server closed
 * it (its idle timeout) or said something unasked; it goes. */
static void
lb_health_kept(lb_event_t *ev)
{
    lb_conn_t          *c = ev->data;
    lb_health_probe_t  *pr = c->data;

    lb_health_drop(pr);
}

/* After the verdict of a check that passed: the rest of its answer, read
 * until it ends (the connection is kept) or cannot be kept (it goes), by
 * the check's deadline at the latest. */
static void
lb_health_settle(lb_event_t *ev)
{
    lb_conn_t          *c = ev->data;
    lb_health_probe_t  *pr = c->data;
    ssize_t             n;
    int                 rc = LB_DECLINED;

    while (!ev->timedout) {
        n = lb_conn_recv(c, pr->buf->data + pr->len, LB_HEALTH_READ_MAX - pr->len);
        if (n == LB_AGAIN) {
            return;
        }
        if (n == LB_ERROR || n == 0) {
            break;
        }
        pr->len += (size_t) n;
        rc = lb_health_answer_end(pr);
        if (rc != LB_AGAIN) {
            break;
        }
    }
    if (rc == LB_OK) {
        lb_health_keep(pr);
        return;
    }
    lb_health_drop(pr);
    lb_health_buf_put(pr->buf);
    pr->buf = NULL;
}

/* A kept connection failed before its answer began: the server closed it
 * as the request went (its idle timeout). The check goes on over a new
 * connection, within its deadline; the server is not to blame. */
static void
lb_health_reopen(lb_health_probe_t *pr)
{
    lb_health_drop(pr);
    pr->reused = false;
    pr->sent = 0;
    lb_health_open(pr);
}

/* A datagram socket connected to the check's address. */
static int
lb_health_open_dgram(lb_health_probe_t *pr)
{
    int  err;

    if (lb_conn_connect_dgram(&pr->addr, &pr->c) != LB_OK) {
        pr->c = NULL;
        return LB_ERROR;
    }
    if (lb_loop_add_conn(pr->c, false) != LB_OK) {
        err = errno;
        lb_conn_close(pr->c);
        pr->c = NULL;
        errno = err;
        return LB_ERROR;
    }
    return LB_OK;
}

static void
lb_health_begin(lb_timer_t *t)
{
    lb_health_probe_t  *pr = t->data;

    /* the rhythm follows when the check was due, not when a busy loop got
     * to it, so that lateness does not add up; one late by a whole
     * interval starts it afresh rather than make up for lost checks */
    pr->started = lb_current_msec - t->when < pr->hc->interval ? t->when : lb_current_msec;
    pr->deadline = lb_current_msec + pr->hc->timeout;
    if (pr->buf) {
        /* the answer before never ended: its connection goes */
        lb_health_drop(pr);
        lb_health_buf_put(pr->buf);
        pr->buf = NULL;
    }
    pr->keep = pr->clean_end = false;
    pr->sent = pr->len = pr->body = pr->body_end = 0;
    pr->chunk_left = 0;
    pr->chunk_state = LB_HEALTH_CHUNK_SIZE;
    pr->chunk_digits = 0;
    if (pr->hc->type != LB_HEALTH_TCP) {
        pr->buf = lb_health_buf_get();
        if (pr->buf == NULL) {
            lb_health_skip(pr, ENOMEM, "no read buffer");
            return;
        }
    }
    if (pr->hc->type == LB_HEALTH_UDP) {
        if (lb_health_open_dgram(pr) != LB_OK) {
            if (lb_conn_error_is_local(errno)) {
                lb_health_skip(pr, errno, "no socket");
            } else {
                lb_health_fail(pr, errno, "cannot open a socket");
            }
            return;
        }
        pr->c->data = pr;
        pr->c->read.handler = lb_health_read;
        pr->c->write.handler = lb_health_write;
        lb_event_timer_set(&pr->c->read, pr->hc->timeout);
        lb_health_send(pr);
        return;
    }
    if (pr->c) {
        /* kept from the check before: used while young enough */
        if (lb_current_msec - pr->conn_at < pr->hc->keepalive_time) {
            pr->reused = true;
            lb_health_ready(pr);
            return;
        }
        lb_health_drop(pr);
    }
    pr->reused = false;
    lb_health_open(pr);
}

/* A new connection for the check. */
static void
lb_health_open(lb_health_probe_t *pr)
{
    int  rc;

    rc = lb_conn_connect(&pr->addr, &pr->c);
    if (rc == LB_ERROR) {
        pr->c = NULL;
        if (lb_conn_error_is_local(errno)) {
            lb_health_skip(pr, errno, "no connection");
        } else {
            lb_health_fail(pr, errno, "connect failed");
        }
        return;
    }
    pr->conn_at = lb_current_msec;
    pr->c->data = pr;
    pr->c->read.handler = lb_health_idle;
    pr->c->write.handler = lb_health_on_connect;
    if (rc == LB_AGAIN) {
        lb_event_timer_set(&pr->c->write, lb_health_left(pr));
        return;
    }
    lb_health_connected(pr);
}

/* Checks of one server never overlap, so the prober needs at most a
 * descriptor per server, and a few of its own: when every server hangs
 * at once, a soft limit of 1024 would leave servers unchecked. Up to the
 * hard limit; what is still short is skipped (lb_health_skip). */
static void
lb_health_raise_nofile(size_t need)
{
    struct rlimit  rl;

    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY
        && rl.rlim_cur < need)
    {
        rl.rlim_cur = rl.rlim_max == RLIM_INFINITY ? need : lb_min(need, rl.rlim_max);
        if (setrlimit(RLIMIT_NOFILE, &rl) != 0) {
            lb_log_warn(errno, "health prober: cannot raise its descriptor limit to %zu",
                        need);
        }
    }
}

static int
lb_health_start(lb_cycle_t *cycle, unsigned instance)
{
    lb_upstream_t     **all, *u;
    lb_health_conf_t   *hc;
    lb_health_probe_t  *pr;
    lb_tls_upstream_t  *ut;
    lb_msec_t           slack = 0;
    size_t              i, j, n, k = 0;

    srandom((unsigned) getpid() ^ (unsigned) lb_current_msec);
    all = lb_upstream_all(cycle, &n);
    for (i = 0; i < n; i++) {
        if (lb_health_conf(all[i])) {
            lb_health_nprobes += all[i]->nservers;
        }
    }
    lb_health_probes = calloc(lb_health_nprobes, sizeof(lb_health_probe_t));
    if (lb_health_probes == NULL) {
        lb_log_error(ENOMEM, "health prober: no memory for %zu servers", lb_health_nprobes);
        return LB_ERROR;
    }
    lb_health_raise_nofile(lb_health_nprobes + 64);
    for (i = 0; i < n; i++) {
        u = all[i];
        hc = lb_health_conf(u);
        if (hc == NULL) {
            continue;
        }
        ut = hc->tls ? lb_tls_upstream(u->confs) : NULL;
        if (slack == 0 || lb_min(hc->interval, 5 * hc->timeout) < slack) {
            slack = lb_min(hc->interval, 5 * hc->timeout);
        }
        for (j = 0; j < u->nservers; j++) {
            pr = &lb_health_probes[k++];
            pr->u = u;
            pr->s = &u->servers[j];
            pr->hc = hc;
            pr->ok_run = lb_min(__atomic_load_n(&pr->s->state->ok_run, __ATOMIC_RELAXED),
                                (unsigned) hc->rise);
            pr->fail_run = lb_min(__atomic_load_n(&pr->s->state->fail_run, __ATOMIC_RELAXED),
                                  (unsigned) hc->fall);
            pr->addr = pr->s->addr;
            if (hc->port && pr->addr.u.sa.sa_family == AF_INET) {
                pr->addr.u.sin.sin_port = htons((uint16_t) hc->port);
            } else if (hc->port && pr->addr.u.sa.sa_family == AF_INET6) {
                pr->addr.u.sin6.sin6_port = htons((uint16_t) hc->port);
            }
            pr->host = hc->host ? hc->host : pr->s->name ? pr->s->name : pr->s->addr.text;
            if (hc->tls) {
                pr->tls = ut ? ut->ctx : lb_tls_client_unverified();
                pr->sni = ut ? ut->sni : NULL;
                if (pr->tls == NULL) {
                    lb_log_error(0, "health prober: cannot make a TLS context");
                    return LB_ERROR;
                }
            }
            lb_timer_init(&pr->timer, lb_health_begin, pr);
            lb_timer_set(&pr->timer, (lb_msec_t) (random() % hc->interval));
        }
    }
    /* The checks are spread at random over each interval, so each would
     * wake the prober on its own; a timer slack of a fiftieth of the
     * shortest interval (and a tenth of the shortest timeout) lets the
     * kernel wake it once for the checks due together, a batch instead of
     * a wakeup each (1,000 servers every second: ~50 wakeups, not 1,000) */
    if (slack) {
        prctl(PR_SET_TIMERSLACK, (unsigned long) slack * 1000000 / 50, 0, 0, 0);
    }
    lb_log_info("health prober: checking %zu servers", lb_health_nprobes);
    return LB_OK;
}

static void
lb_health_stop(lb_cycle_t *cycle)
{
    lb_health_buf_t  *b;
    size_t            i;

    for (i = 0; i < lb_health_nprobes; i++) {
        lb_timer_del(&lb_health_probes[i].timer);
        lb_health_release(&lb_health_probes[i], false);
    }
    lb_conn_release_closed();
    while ((b = lb_health_free_bufs) != NULL) {
        lb_health_free_bufs = b->next;
        free(b);
    }
    lb_health_nfree_bufs = 0;
    free(lb_health_probes);
    lb_health_probes = NULL;
    lb_health_nprobes = 0;
}
