/*
 * lb_admin.c: the admin API's server (SPEC §9). It runs in a helper
 * process of its own, the admin server, beside the workers: it reads and
 * writes the shared state that the workers read on every pick, so a
 * runtime change takes effect in every worker at once, with no reload.
 * It listens on `admin_socket` (a unix socket, mode 0600, the master opens
 * it before privileges are dropped) and on every listener with
 * `protocol = "admin"` (which must have `allow`, and may have
 * `token_file`: then each request needs `Authorization: Bearer TOKEN`).
 *
 * The protocol is a small, strict HTTP/1.1: a request head and body of at
 * most LB_ADMIN_HEAD_MAX bytes, Content-Length bodies only, keep-alive.
 * Anything else is refused with a clear status and a JSON error.
 */
#include "lb_admin.h"
#include "lb_process.h"

#include <sys/stat.h>

#define LB_ADMIN_READ_TIMEOUT  10000     /* a whole request, from its first byte */
#define LB_ADMIN_IDLE_TIMEOUT  60000     /* between requests */
#define LB_ADMIN_LINGER        2000      /* reading what follows a refusal */

typedef struct {
    char       *token_file;
    char       *token;          /* NULL: no token asked */
    size_t      token_len;
} lb_admin_conf_t;

/* One connection to the admin server. */
typedef struct {
    lb_conn_t        *c;
    lb_listener_t    *ls;
    lb_queue_t        link;         /* in lb_admin_conns */
    size_t            len;          /* bytes in `in` */
    lb_admin_out_t    out;          /* the response being sent */
    size_t            sent;
    bool              close;        /* after this response */
    char              in[LB_ADMIN_HEAD_MAX + 1];
} lb_admin_conn_t;

static const char *const  lb_admin_protocols[] = { "admin", NULL };

static void *lb_admin_create_conf(lb_conf_t *cf, unsigned ctx);
static int   lb_admin_merge_conf(lb_conf_t *cf, unsigned ctx, void *parent, void *conf);
static int   lb_admin_init_conf(lb_conf_t *cf);
static unsigned lb_admin_count(lb_cycle_t *cycle);
static int   lb_admin_start(lb_cycle_t *cycle, unsigned instance);
static void  lb_admin_stop(lb_cycle_t *cycle);
static void  lb_admin_accept(lb_conn_t *c);

static const lb_setting_t  lb_admin_settings[] = {
    { "token_file", LB_SET_STR, LB_CTX_LISTENER, NULL, 0, 0,
      offsetof(lb_admin_conf_t, token_file), NULL, NULL, 0 },
    lb_setting_end
};

static const lb_helper_t  lb_admin_helper = {
    "admin server", lb_admin_count, lb_admin_start, lb_admin_stop
};

lb_module_t  lb_core_admin_module = {
    .name = "core_admin",
    .type = LB_MODULE_CORE,
    .protocols = lb_admin_protocols,
    .settings = lb_admin_settings,
    .conf_contexts = LB_CTX_LISTENER,
    .create_conf = lb_admin_create_conf,
    .merge_conf = lb_admin_merge_conf,
    .init_conf = lb_admin_init_conf,
    .commands = lb_admin_commands,
    .helper = &lb_admin_helper,
};

static lb_queue_t   lb_admin_conns = { &lb_admin_conns, &lb_admin_conns };
static lb_cycle_t  *lb_admin_cycle;

/* Configuration ---------------------------------------------------------- */

static void *
lb_admin_create_conf(lb_conf_t *cf, unsigned ctx)
{
    return lb_pcalloc(cf->pool, sizeof(lb_admin_conf_t));
}

/* The token: the file's first line, read at load (a worker may not be
 * able to read the file after dropping privileges). */
static int
lb_admin_read_token(lb_conf_t *cf, config_setting_t *v, lb_admin_conf_t *acf)
{
    char         buf[512], *path;
    struct stat  st;
    FILE        *f;
    size_t       n;

    path = lb_cycle_path(cf->pool, cf->cycle->prefix, acf->token_file);
    f = path ? fopen(path, "r") : NULL;
    if (f == NULL) {
        return lb_conf_error(cf, v, "cannot read token_file \"%s\": %s", acf->token_file,
                             strerror(errno));
    }
    n = fread(buf, 1, sizeof(buf) - 1, f);
    if (fstat(fileno(f), &st) == 0 && (st.st_mode & 0077)) {
        lb_conf_warn_at(cf, lb_conf_file(cf, v), (int) config_setting_source_line(v),
                        "token_file \"%s\" can be read by other users (mode %o); make it "
                        "0600", path, (unsigned) (st.st_mode & 0777));
    }
    fclose(f);
    buf[n] = '\0';
    buf[strcspn(buf, "\r\n")] = '\0';
    n = strlen(buf);
    if (n < 16 || n > 256 || strspn(buf, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                                         "0123456789-._~+/=") != n)
    {
        return lb_conf_error(cf, v, "token_file \"%s\": its first line must be a token of 16 "
                             "to 256 characters (letters, digits, -._~+/=)", acf->token_file);
    }
    acf->token = lb_pstrdup(cf->pool, buf);
    acf->token_len = n;
    explicit_bzero(buf, sizeof(buf));
    return acf->token ? LB_OK : lb_conf_error(cf, v, "out of memory");
}

static int
lb_admin_merge_conf(lb_conf_t *cf, unsigned ctx, void *parent, void *conf)
{
    lb_admin_conf_t  *acf = conf;
    lb_listener_t    *ls = cf->listener;

    if (ls == NULL || strcmp(ls->protocol, "admin") != 0) {
        return LB_OK;
    }
    if (ls->allow == NULL) {
        return lb_conf_error_at(cf, ls->file, ls->line, "admin listener \"%s\" needs \"allow\": "
                                "the networks that may use the admin API (e.g. allow = "
                                "[\"127.0.0.1/32\"])", ls->name);
    }
    if (acf->token_file
        && lb_admin_read_token(cf, config_setting_get_member(cf->group, "token_file"), acf)
           != LB_OK)
    {
        return LB_ERROR;
    }
    ls->handler = lb_admin_accept;
    ls->helper = &lb_core_admin_module;
    return LB_OK;
}

/* admin_socket is a listener of the admin server's too, one nobody wrote:
 * the core keeps its socket across reloads like any other. */
static int
lb_admin_init_conf(lb_conf_t *cf)
{
    lb_cycle_t      *cycle = cf->cycle;
    lb_listener_t   *ls, **lsp;
    lb_addr_t       *addr;
    char            *text, err[128];

    if (strlen(cycle->core->admin_socket) >= sizeof(addr->u.sun.sun_path)) {
        return lb_conf_error_at(cf, cycle->conf_file, 1, "admin_socket \"%s\" is longer "
                                "than a unix socket path may be (%zu bytes)",
                                cycle->core->admin_socket, sizeof(addr->u.sun.sun_path) - 1);
    }
    ls = lb_pcalloc(cf->pool, sizeof(lb_listener_t));
    lsp = lb_array_push(&cycle->listeners);
    text = lb_psprintf(cf->pool, "unix:%s", cycle->core->admin_socket);
    if (ls == NULL || lsp == NULL || text == NULL
        || lb_array_init(&ls->addrs, cf->pool, 1, sizeof(lb_addr_t)) != LB_OK
        || (addr = lb_array_push(&ls->addrs)) == NULL)
    {
        return lb_conf_error_at(cf, cycle->conf_file, 1, "out of memory");
    }
    if (lb_parse_addr(text, addr, err, sizeof(err)) != LB_OK) {
        return lb_conf_error_at(cf, cycle->conf_file, 1, "admin_socket \"%s\": %s",
                                cycle->core->admin_socket, err);
    }
    *lsp = ls;
    ls->name = "admin_socket";
    ls->protocol = "admin";
    ls->socktype = SOCK_STREAM;
    ls->file = cycle->conf_file;
    ls->line = 0;
    ls->handler = lb_admin_accept;
    ls->helper = &lb_core_admin_module;
    ls->unix_mode = 0600;
    /* traffic goes on without it: the API is no reason not to serve */
    ls->optional = true;
    return LB_OK;
}

/* The helper ------------------------------------------------------------- */

static unsigned
lb_admin_count(lb_cycle_t *cycle)
{
    return 1;           /* admin_socket is always there */
}

static int
lb_admin_start(lb_cycle_t *cycle, unsigned instance)
{
    lb_admin_cycle = cycle;
    return lb_listeners_start_helper(cycle, &lb_core_admin_module);
}

/* Closes and frees ac: its caller returns at once. */
static void
lb_admin_close(lb_admin_conn_t *ac)
{
    lb_queue_remove(&ac->link);
    free(ac->out.data);
    lb_conn_close(ac->c);       /* later events of this batch skip it */
    free(ac);
}

static void
lb_admin_stop(lb_cycle_t *cycle)
{
    lb_listeners_stop(cycle);
    while (!lb_queue_empty(&lb_admin_conns)) {
        lb_admin_close(lb_queue_data(lb_queue_head(&lb_admin_conns), lb_admin_conn_t, link));
    }
    lb_conn_release_closed();
}

/* Output ------------------------------------------------------------------ */

void
lb_admin_out_add(lb_admin_out_t *o, const char *s, size_t n)
{
    size_t  cap;
    char   *p;

    if (o->failed) {
        return;
    }
    if (o->len + n > o->cap) {
        cap = lb_max(o->cap * 2, o->len + n + 1024);
        p = realloc(o->data, cap);
        if (p == NULL) {
            o->failed = true;
            return;
        }
        o->data = p;
        o->cap = cap;
    }
    memcpy(o->data + o->len, s, n);
    o->len += n;
}

void
lb_admin_out_printf(lb_admin_out_t *o, const char *fmt, ...)
{
    char     buf[1024], *big;
    va_list  ap;
    int      n;

    va_start(ap, fmt);
    n = vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    if (n < 0) {
        o->failed = true;
        return;
    }
    if ((size_t) n < sizeof(buf)) {
        lb_admin_out_add(o, buf, (size_t) n);
        return;
    }
    big = malloc((size_t) n + 1);
    if (big == NULL) {
        o->failed = true;
        return;
    }
    va_start(ap, fmt);
    vsnprintf(big, (size_t) n + 1, fmt, ap);
    va_end(ap);
    lb_admin_out_add(o, big, (size_t) n);
    free(big);
}

void
lb_admin_out_json(lb_admin_out_t *o, const char *s)
{
    const unsigned char  *p;
    char                  esc[8];

    lb_admin_out_add(o, "\"", 1);
    for (p = (const unsigned char *) s; *p; p++) {
        if (*p == '"' || *p == '\\') {
            esc[0] = '\\';
            esc[1] = (char) *p;
            lb_admin_out_add(o, esc, 2);
        } else if (*p == '\n' || *p == '\t' || *p == '\r') {
            esc[0] = '\\';
            esc[1] = *p == '\n' ? 'n' : *p == '\t' ? 't' : 'r';
            lb_admin_out_add(o, esc, 2);
        } else if (*p < 0x20 || *p == 0x7f) {
            snprintf(esc, sizeof(esc), "\\u%04x", *p);
            lb_admin_out_add(o, esc, 6);
        } else {
            lb_admin_out_add(o, (const char *) p, 1);
        }
    }
    lb_admin_out_add(o, "\"", 1);
}

void
lb_admin_error(lb_admin_req_t *rq, int status, const char *fmt, ...)
{
    char     msg[512];
    va_list  ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    rq->status = status;
    rq->body.len = 0;
    if (rq->text) {
        lb_admin_out_printf(&rq->body, "%s\n", msg);
        return;
    }
    lb_admin_out_add(&rq->body, "{\"error\": ", 10);
    lb_admin_out_json(&rq->body, msg);
    lb_admin_out_add(&rq->body, "}\n", 2);
}

const char *
lb_admin_param(const lb_admin_req_t *rq, const char *name)
{
    size_t  i;

    for (i = 0; i < rq->nparams; i++) {
        if (strcmp(rq->params[i].name, name) == 0) {
            return rq->params[i].value;
        }
    }
    return NULL;
}

/* Requests ------------------------------------------------------------------ */

static void lb_admin_write(lb_event_t *ev);
static void lb_admin_read(lb_event_t *ev);

/* After the last response: what the client still sends is read and
 * dropped for a moment, so that closing does not reset the connection
 * before the client has read the answer (a refused request often comes
 * with more bytes than were read). */
static void
lb_admin_linger(lb_event_t *ev)
{
    lb_conn_t        *c = ev->data;
    lb_admin_conn_t  *ac = c->data;
    char              buf[4096];
    ssize_t           n;

    if (ev->timedout) {
        lb_admin_close(ac);
        return;
    }
    do {
        n = lb_conn_recv(c, buf, sizeof(buf));
    } while (n > 0);
    if (n != LB_AGAIN) {
        lb_admin_close(ac);
    }
}

/* Sends rq's answer on ac; the connection closes after it when ac->close. */
static void
lb_admin_respond(lb_admin_conn_t *ac, lb_admin_req_t *rq, const char *extra)
{
    lb_admin_out_t  *o = &ac->out;

    if (rq->body.failed) {
        rq->body.failed = false;
        lb_admin_error(rq, 500, "out of memory");
        if (rq->body.failed) {
            lb_admin_close(ac);
            return;
        }
    }
    o->len = 0;
    lb_admin_out_printf(o, "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
                        "Cache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\n"
                        "Connection: %s\r\n%s%s%s%s%s\r\n", rq->status,
                        lb_http_reason(rq->status),
                        rq->content_type ? rq->content_type
                        : rq->text ? "text/plain; charset=utf-8" : "application/json",
                        rq->body.len, ac->close ? "close" : "keep-alive",
                        rq->allow ? "Allow: " : "", rq->allow ? rq->allow : "",
                        rq->allow ? "\r\n" : "", rq->extra_headers ? rq->extra_headers : "",
                        extra ? extra : "");
    if (rq->method == NULL || strcmp(rq->method, "HEAD") != 0) {
        lb_admin_out_add(o, rq->body.data, rq->body.len);
    }
    free(rq->body.data);
    if (o->failed) {
        lb_admin_close(ac);
        return;
    }
    ac->sent = 0;
    ac->c->write.handler = lb_admin_write;
    lb_event_timer_del(&ac->c->read);
    lb_event_timer_set(&ac->c->write, LB_ADMIN_READ_TIMEOUT);
    lb_admin_write(&ac->c->write);
}

/* A refusal before any endpoint runs. */
static void
lb_admin_refuse(lb_admin_conn_t *ac, int status, const char *extra, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void
lb_admin_refuse(lb_admin_conn_t *ac, int status, const char *extra, const char *fmt, ...)
{
    lb_admin_req_t  rq;
    char            msg[512];
    va_list         ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    memset(&rq, 0, sizeof(rq));
    lb_admin_error(&rq, status, "%s", msg);
    ac->close = ac->close || status >= 400;
    lb_admin_respond(ac, &rq, extra);
}

/* Constant time for equal lengths: a wrong token takes as long whatever
 * its first wrong byte. */
static bool
lb_admin_token_ok(const lb_admin_conf_t *acf, const char *v, size_t len)
{
    unsigned char  diff = 0;
    size_t         i;

    if (len != 7 + acf->token_len || strncasecmp(v, "Bearer ", 7) != 0) {
        return false;
    }
    for (i = 0; i < acf->token_len; i++) {
        diff |= (unsigned char) (v[7 + i] ^ acf->token[i]);
    }
    return diff == 0;
}

/* GET / or HEAD /: the status page. */
static bool
lb_admin_is_page(const char *method, const char *path)
{
    return (strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0)
           && strcmp(path, "/") == 0;
}

/* One complete request head at ac->in (head_len bytes, its blank line
 * included) and its body: parses, checks who asks, serves. */
static void
lb_admin_serve(lb_admin_conn_t *ac, size_t head_len)
{
    lb_admin_conf_t  *acf = ac->ls->confs ? lb_get_conf(ac->ls->confs, lb_core_admin_module)
                                          : NULL;
    lb_admin_req_t    rq;
    lb_admin_head_t   h;
    const char       *why, *p;
    int               status;

    memset(&rq, 0, sizeof(rq));
    rq.cycle = lb_admin_cycle;
    rq.who = ac->ls->addrs.nelts
             && lb_array_at(&ac->ls->addrs, lb_addr_t, 0).u.sa.sa_family == AF_UNIX
             ? "admin socket" : ac->c->peer_text;
    status = lb_admin_parse_head(ac->in, head_len, &rq, &h, &why);
    ac->close = h.close;
    if (status) {
        lb_admin_refuse(ac, status, NULL, "%s", why);
        return;
    }

    /* who may ask: an admin listener's allow list and token */
    if (ac->ls->allow && lb_listener_denies(ac->ls, (struct sockaddr *) &ac->c->peer)) {
        lb_admin_refuse(ac, 403, NULL, "forbidden: %s is not allowed", ac->c->peer_text);
        return;
    }
    /* the status page holds no data and a browser cannot send a token when
     * it navigates: it gets the page, whose script sends the token the
     * operator types with every request for data */
    if (acf && acf->token && !lb_admin_is_page(rq.method, rq.path)
        && (h.auth == NULL || !lb_admin_token_ok(acf, h.auth, h.auth_len)))
    {
        lb_admin_refuse(ac, 401, "WWW-Authenticate: Bearer realm=\"lbd\"\r\n",
                        h.auth ? "wrong token" : "this listener needs Authorization: Bearer "
                        "TOKEN");
        return;
    }
    /* a browser page of another site may send a POST but cannot forge
     * Origin: a state change from elsewhere is refused */
    if (h.origin && strcmp(rq.method, "GET") != 0 && strcmp(rq.method, "HEAD") != 0) {
        p = strstr(h.origin, "://");
        if (h.host == NULL || p == NULL || strcasecmp(p + 3, h.host) != 0) {
            lb_admin_refuse(ac, 403, NULL, "forbidden: a request from origin %s", h.origin);
            return;
        }
    }
    lb_admin_dispatch(&rq);
    lb_admin_respond(ac, &rq, NULL);
}

/* Reads until a whole request is in; serves it. */
static void
lb_admin_read(lb_event_t *ev)
{
    lb_conn_t        *c = ev->data;
    lb_admin_conn_t  *ac = c->data;
    const char       *end, *why;
    size_t            head_len, body;
    ssize_t           n;
    int               status;

    if (ev->timedout) {
        if (ac->len) {
            lb_admin_refuse(ac, 408, NULL, "the request did not arrive in time");
        } else {
            lb_admin_close(ac);
        }
        return;
    }
    for ( ;; ) {
        n = lb_conn_recv(c, ac->in + ac->len, LB_ADMIN_HEAD_MAX - ac->len);
        if (n == LB_AGAIN) {
            break;
        }
        if (n == 0 || n == LB_ERROR) {
            lb_admin_close(ac);
            return;
        }
        if (ac->len == 0) {
            lb_event_timer_set(&c->read, LB_ADMIN_READ_TIMEOUT);
        }
        lb_metric_add(ac->ls->m_received, (uint64_t) n);
        ac->len += (size_t) n;
        ac->in[ac->len] = '\0';
        if (memchr(ac->in, '\0', ac->len)) {
            lb_admin_refuse(ac, 400, NULL, "NUL byte in request");
            return;
        }
        end = strstr(ac->in, "\r\n\r\n");
        if (end == NULL) {
            if (ac->len == LB_ADMIN_HEAD_MAX) {
                lb_admin_refuse(ac, 431, NULL, "request head larger than %d bytes",
                                LB_ADMIN_HEAD_MAX);
                return;
            }
            continue;
        }
        head_len = (size_t) (end - ac->in) + 4;
        status = lb_admin_content_length(ac->in, head_len, &body, &why);
        if (status) {
            lb_admin_refuse(ac, status, NULL, "%s", why);
            return;
        }
        if (body > LB_ADMIN_HEAD_MAX - head_len) {
            lb_admin_refuse(ac, 413, NULL, "request body larger than %zu bytes",
                            LB_ADMIN_HEAD_MAX - head_len);
            return;
        }
        if (ac->len < head_len + body) {
            continue;
        }
        if (ac->len > head_len + body) {
            /* pipelining: one request at a time is plenty for an admin API */
            lb_admin_refuse(ac, 400, NULL, "pipelined requests are not accepted");
            return;
        }
        lb_admin_serve(ac, head_len);
        return;
    }
}

static void
lb_admin_write(lb_event_t *ev)
{
    lb_conn_t        *c = ev->data;
    lb_admin_conn_t  *ac = c->data;
    ssize_t           n;

    if (ev->timedout) {
        lb_admin_close(ac);
        return;
    }
    while (ac->sent < ac->out.len) {
        n = lb_conn_send(c, ac->out.data + ac->sent, ac->out.len - ac->sent);
        if (n == LB_AGAIN) {
            return;
        }
        if (n == LB_ERROR) {
            lb_admin_close(ac);
            return;
        }
        ac->sent += (size_t) n;
        lb_metric_add(ac->ls->m_sent, (uint64_t) n);
    }
    if (ac->close) {
        if (c->io->shutdown(c) == LB_ERROR) {
            lb_admin_close(ac);
            return;
        }
        lb_event_timer_del(&c->write);
        c->read.handler = lb_admin_linger;
        lb_event_timer_set(&c->read, LB_ADMIN_LINGER);
        lb_admin_linger(&c->read);
        return;
    }
    /* the next request */
    ac->len = 0;
    ac->out.len = 0;
    c->write.handler = lb_admin_write;
    lb_event_timer_del(&c->write);
    c->read.handler = lb_admin_read;
    lb_event_timer_set(&c->read, LB_ADMIN_IDLE_TIMEOUT);
    if (c->read.ready) {
        lb_admin_read(&c->read);
    }
}

static void
lb_admin_accept(lb_conn_t *c)
{
    lb_admin_conn_t  *ac;

    ac = calloc(1, sizeof(*ac));
    if (ac == NULL) {
        lb_conn_close(c);
        return;
    }
    ac->c = c;
    ac->ls = c->listener;
    c->data = ac;
    lb_queue_insert_head(&lb_admin_conns, &ac->link);
    c->read.handler = lb_admin_read;
    c->write.handler = lb_admin_write;
    lb_event_timer_set(&c->read, LB_ADMIN_IDLE_TIMEOUT);
    if (lb_loop_add_conn(c, false) != LB_OK) {
        lb_admin_close(ac);
        return;
    }
    lb_admin_read(&c->read);
}
