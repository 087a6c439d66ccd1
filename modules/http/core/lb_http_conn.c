/*
 * lb_http_conn.c: the http listener's connections (SPEC §3.3, §4): read a
 * request head, route it, answer return and redirect routes (discarding a
 * request body), keep the connection alive and serve pipelined requests in
 * order; run the log phase once per request. Owns the per-worker cache of
 * request memory and the list of idle connections that a graceful stop
 * closes.
 */
#include "lb_core.h"
#include "lb_http.h"
#include "lb_http_forward.h"
#include "lb_http_route.h"
#include "lb_http_var.h"
#include "lb_tls.h"

#include <netinet/in.h>

#define LB_HTTP_MEM_CACHE     64
/* After a response that closes the connection, input is drained for up to
 * this long (after shutting down our side), so that unread request bytes
 * do not make the kernel reset the connection before the client has read
 * the response (RFC 9112 §9.6). */
#define LB_HTTP_LINGER_TIME   2000
#define LB_HTTP_LINGER_READ   (1024 * 1024)     /* per event, then wait */


/* Request memory, cached per worker ----------------------------------- */

static lb_http_req_mem_t  *lb_http_mem_cache[LB_HTTP_MEM_CACHE];
static size_t              lb_http_mem_cached;

static int
lb_http_mem_get(lb_http_conn_t *hc)
{
    size_t              size = (size_t) hc->conf->max_header_size + LB_HTTP_BODY_ROOM, i;
    size_t              uri_size = (size_t) hc->conf->max_uri;
    lb_http_req_mem_t  *m = NULL;

    for (i = lb_http_mem_cached; i-- > 0; ) {
        if (lb_http_mem_cache[i]->size == size && lb_http_mem_cache[i]->uri_size == uri_size) {
            m = lb_http_mem_cache[i];
            lb_http_mem_cache[i] = lb_http_mem_cache[--lb_http_mem_cached];
            break;
        }
    }
    if (m == NULL) {
        m = malloc(sizeof(lb_http_req_mem_t) + size + uri_size);
        if (m == NULL) {
            return LB_ERROR;
        }
        m->size = size;
        m->uri_size = uri_size;
        m->uri = m->data + size;
    }
    hc->mem = m;
    lb_buf_init(&hc->buf, m->data, size);
    return LB_OK;
}

static void
lb_http_mem_put(lb_http_conn_t *hc)
{
    lb_http_req_mem_t  *m = hc->mem;

    if (m == NULL) {
        return;
    }
    hc->mem = NULL;
    hc->buf.start = hc->buf.end = hc->buf.pos = hc->buf.last = NULL;
    if (lb_http_mem_cached == LB_HTTP_MEM_CACHE) {
        /* a full cache keeps its newest entries: drop the oldest */
        free(lb_http_mem_cache[0]);
        lb_http_mem_cache[0] = lb_http_mem_cache[--lb_http_mem_cached];
    }
    lb_http_mem_cache[lb_http_mem_cached++] = m;
}

/* Connection state, cached per worker ---------------------------------- */

/* lb_http_conn_t objects are recycled through a free list (linked through
 * their content member) rather than taken from the connection's pool: an
 * idle keep-alive connection then costs its lb_conn_t and this object,
 * with no pool block beside them. */
#define LB_HTTP_CONN_CACHE  4096

static lb_http_conn_t  *lb_http_conn_free;
static size_t           lb_http_conn_nfree;

static lb_http_conn_t *
lb_http_conn_alloc(void)
{
    lb_http_conn_t  *hc = lb_http_conn_free;

    if (hc) {
        lb_http_conn_free = hc->content;
        lb_http_conn_nfree--;
    } else {
        hc = malloc(sizeof(*hc));
        if (hc == NULL) {
            return NULL;
        }
    }
    memset(hc, 0, sizeof(*hc));
    return hc;
}

static void
lb_http_conn_release(lb_http_conn_t *hc)
{
    if (lb_http_conn_nfree >= LB_HTTP_CONN_CACHE) {
        free(hc);
        return;
    }
    hc->content = lb_http_conn_free;
    lb_http_conn_free = hc;
    lb_http_conn_nfree++;
}

/* Idle connections and graceful stop ---------------------------------- */

static lb_queue_t  lb_http_idle = { &lb_http_idle, &lb_http_idle };

static void lb_http_close(lb_http_conn_t *hc);

/* Connections waiting for a request (new ones and keep-alive ones) are on
 * lb_http_idle; a stopping worker makes no more of them. */
static void
lb_http_idle_add(lb_http_conn_t *hc)
{
    lb_queue_insert_tail(&lb_http_idle, &hc->idle_link);
}

/* The graceful stop closes the idle connections: they have no request in
 * flight, and the worker exits once its connections are gone. */
void
lb_http_conn_stop_worker(lb_cycle_t *cycle)
{
    while (!lb_queue_empty(&lb_http_idle)) {
        lb_http_close(lb_queue_data(lb_queue_head(&lb_http_idle), lb_http_conn_t, idle_link));
    }
}

void
lb_http_conn_exit_worker(lb_cycle_t *cycle)
{
    while (lb_http_mem_cached) {
        free(lb_http_mem_cache[--lb_http_mem_cached]);
    }
    while (lb_http_conn_free) {
        lb_http_conn_t  *hc = lb_http_conn_free;

        lb_http_conn_free = hc->content;
        free(hc);
    }
    lb_http_conn_nfree = 0;
}

/* Connections ----------------------------------------------------------- */

/* The log phase, for the request begun on hc if it has not run for it and
 * a request line was read (see lb_http_module_t). */
static void
lb_http_log_phase(lb_http_conn_t *hc)
{
    size_t  i;

    if (!hc->log_pending || hc->mem == NULL || hc->mem->msg.method.len == 0) {
        return;
    }
    hc->log_pending = 0;
    for (i = 0; i < lb_http_phases.nlog; i++) {
        lb_http_phases.log[i](hc);
    }
}

static void
lb_http_out_free(lb_http_conn_t *hc)
{
    if (hc->out_malloced) {
        free(hc->out);
    }
    hc->out = NULL;
    hc->out_head = hc->out_body = hc->out_tail_len = hc->out_sent = 0;
    hc->out_body_data = NULL;
    hc->out_malloced = false;
}

static void
lb_http_close(lb_http_conn_t *hc)
{
    void  (*cleanup)(lb_http_conn_t *hc) = hc->content_cleanup;

    if (cleanup) {
        hc->content_cleanup = NULL;
        cleanup(hc);
    }
    if (hc->state == LB_HTTP_READ_BODY) {
        hc->status = 0;                     /* its response never began */
    } else if (hc->state == LB_HTTP_SEND) {
        hc->bytes_sent = hc->out_sent;      /* cut off mid-response */
    }
    lb_http_log_phase(hc);
    lb_queue_remove(&hc->idle_link);
    lb_http_out_free(hc);
    lb_http_mem_put(hc);
    lb_conn_close(hc->c);
    lb_http_conn_release(hc);
}

const char *
lb_http_reason(int status)
{
    switch (status) {
    case 100: return "Continue";
    case 101: return "Switching Protocols";
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 204: return "No Content";
    case 206: return "Partial Content";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 303: return "See Other";
    case 304: return "Not Modified";
    case 307: return "Temporary Redirect";
    case 308: return "Permanent Redirect";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 410: return "Gone";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    default:  return status < 300 ? "OK" : status < 400 ? "Redirect"
                     : status < 500 ? "Client Error" : "Server Error";
    }
}

/* The port of sa as text ("" for a unix socket), for $remote_port and
 * $server_port. */
static void
lb_http_port_text(const struct sockaddr_storage *ss, char *buf, size_t size)
{
    unsigned  port = 0;

    if (ss->ss_family == AF_INET) {
        port = ntohs(((const struct sockaddr_in *) ss)->sin_port);
    } else if (ss->ss_family == AF_INET6) {
        port = ntohs(((const struct sockaddr_in6 *) ss)->sin6_port);
    }
    if (port) {
        snprintf(buf, size, "%u", port);
    }
}

void
lb_http_local_addr(lb_http_conn_t *hc)
{
    struct sockaddr_storage  ss;
    socklen_t                len = sizeof(ss);
    lb_str_t                 ip;
    char                     buf[LB_IP_TEXT_LEN];

    hc->local_known = 1;
    if (getsockname(hc->c->fd, (struct sockaddr *) &ss, &len) == -1) {
        return;
    }
    lb_http_real_client(NULL, (struct sockaddr *) &ss, NULL, &ip, buf);
    snprintf(hc->local_ip, sizeof(hc->local_ip), "%.*s", (int) ip.len, ip.data);
    lb_http_port_text(&ss, hc->local_port, sizeof(hc->local_port));
}

void
lb_http_var_ctx(lb_http_conn_t *hc, lb_http_var_ctx_t *ctx, int status)
{
    ctx->hc = hc;
    ctx->request = &hc->mem->msg;
    ctx->status = status;
    ctx->capture_subject = hc->mem->msg.uri.data;
    ctx->captures = hc->mem->captures;
    ctx->ncaptures = hc->ncaptures;
}

/* Message heads being edited ---------------------------------------------- */

void
lb_http_head_add(lb_http_head_t *h, const char *name, size_t nlen,
                 const char *value, size_t vlen)
{
    if (h->overflow || h->size - h->len < nlen + vlen + 4) {
        h->overflow = true;
        return;
    }
    memcpy(h->data + h->len, name, nlen);
    h->len += nlen;
    h->data[h->len++] = ':';
    h->data[h->len++] = ' ';
    memcpy(h->data + h->len, value, vlen);
    h->len += vlen;
    h->data[h->len++] = '\r';
    h->data[h->len++] = '\n';
}

void
lb_http_head_remove(lb_http_head_t *h, const char *name, size_t nlen)
{
    char  *line = h->data + h->start_line, *end = h->data + h->len, *eol;
    size_t n;

    while (line < end) {
        eol = memchr(line, '\n', (size_t) (end - line));
        eol = eol ? eol + 1 : end;
        if ((size_t) (eol - line) > nlen && line[nlen] == ':'
            && strncasecmp(line, name, nlen) == 0)
        {
            n = (size_t) (eol - line);
            memmove(line, eol, (size_t) (end - eol));
            end -= n;
            h->len -= n;
            continue;
        }
        line = eol;
    }
}

int
lb_http_header_filters(lb_http_conn_t *hc, lb_http_head_t *h, int status)
{
    lb_http_var_ctx_t  ctx;
    size_t             i;

    if (lb_http_phases.nheader == 0) {
        return LB_OK;
    }
    lb_http_var_ctx(hc, &ctx, status);
    for (i = 0; i < lb_http_phases.nheader; i++) {
        if (lb_http_phases.header_filters[i](hc, h, &ctx) != LB_OK) {
            return LB_ERROR;
        }
    }
    return h->overflow ? LB_ERROR : LB_OK;
}

/* What a response says: a body is either evaluated (body_cv), literal
 * (body_text, copied into the response) or a file read at load
 * (body_file, sent from where it is). */
typedef struct {
    int                       status;
    const char               *content_type;
    const lb_http_complex_t  *location;
    const lb_http_complex_t  *body_cv;
    const char               *body_text;
    lb_str_t                  body_file;
    const lb_http_var_ctx_t  *ctx;
    bool                      filter;       /* run the header filters */
} lb_http_response_t;

/* Room for what header filters add to a response lbd builds. */
#define LB_HTTP_FILTER_ROOM  2048

/* Builds the response in hc->out: status line, Server, Date, Content-Type (with
 * a body), Content-Length (except for 1xx, 204, 304, which have no body),
 * Location, and the body unless the request was HEAD; lb_http_start_send
 * adds Connection. Returns LB_OK or LB_ERROR (no
 * memory). */
static int
lb_http_build(lb_http_conn_t *hc, const lb_http_response_t *r)
{
    size_t                loc_len = 0, body_len = 0, head_max, need, n;
    bool                  no_body = r->status < 200 || r->status == 204 || r->status == 304;
    char                 *p;

    lb_http_out_free(hc);
    if (r->location) {
        loc_len = lb_http_complex_eval(r->location, r->ctx, NULL, 0);
    }
    if (!no_body) {
        body_len = r->body_file.data ? r->body_file.len
                 : r->body_cv ? lb_http_complex_eval(r->body_cv, r->ctx, NULL, 0)
                 : r->body_text ? strlen(r->body_text) : 0;
    }
    head_max = 256 + strlen(r->content_type) + loc_len + hc->request_id.len
               + (r->filter && lb_http_phases.nheader ? LB_HTTP_FILTER_ROOM : 0);
    need = head_max + (r->body_file.data ? 0 : body_len);
    if (need <= LB_HTTP_OUT_SIZE) {
        p = hc->mem->out;
    } else {
        p = malloc(need);
        if (p == NULL) {
            return LB_ERROR;
        }
        hc->out_malloced = true;
    }
    hc->out = p;
    hc->status = r->status;

    n = (size_t) snprintf(p, head_max, "HTTP/1.1 %d %s\r\nServer: lbd\r\nDate: %.*s\r\n",
                          r->status, lb_http_reason(r->status),
                          (int) lb_http_time_len, lb_http_time);
    if (body_len) {
        n += (size_t) snprintf(p + n, head_max - n, "Content-Type: %s\r\n", r->content_type);
    }
    if (!no_body) {
        n += (size_t) snprintf(p + n, head_max - n, "Content-Length: %zu\r\n", body_len);
    }
    if (r->location) {
        memcpy(p + n, "Location: ", 10);
        n += 10;
        n += lb_http_complex_eval(r->location, r->ctx, p + n, loc_len);
        memcpy(p + n, "\r\n", 2);
        n += 2;
    }
    if (hc->request_id.len) {
        n += (size_t) snprintf(p + n, head_max - n, "X-Request-ID: %.*s\r\n",
                               (int) hc->request_id.len, hc->request_id.data);
    }
    if (r->filter) {
        lb_http_head_t  h = { p, n, head_max, 0, false };

        h.start_line = (size_t) ((char *) memchr(p, '\n', n) - p) + 1;
        if (lb_http_header_filters(hc, &h, r->status) != LB_OK) {
            lb_log_error(0, "*%llu client %s: response_headers do not fit in %zu bytes",
                         (unsigned long long) hc->c->id, hc->c->peer_text, head_max);
            return LB_ERROR;
        }
        n = h.len;
    }
    hc->out_head = n;

    if (!hc->head_method && body_len && r->body_file.data) {
        hc->out_body_data = r->body_file.data;
        hc->out_body = body_len;
        hc->out_sent = 0;
        return LB_OK;
    }
    if (!hc->head_method && body_len) {
        if (r->body_cv) {
            lb_http_complex_eval(r->body_cv, r->ctx, p + n, body_len);
        } else {
            memcpy(p + n, r->body_text, body_len);
        }
        n += body_len;
    }
    hc->out_body = n - hc->out_head;
    hc->out_sent = 0;
    return LB_OK;
}

static void
lb_http_start_send(lb_http_conn_t *hc)
{
    if (lb_worker_quitting) {
        hc->keep_alive = 0;
    }
    if (!hc->keep_alive) {
        hc->out_tail = "Connection: close\r\n\r\n";
    } else if (hc->http10) {
        hc->out_tail = "Connection: keep-alive\r\n\r\n";
    } else {
        hc->out_tail = "\r\n";
    }
    hc->out_tail_len = strlen(hc->out_tail);
    hc->state = LB_HTTP_SEND;
    /* a client that does not read its response is given as long as one
     * that does not send its body */
    lb_event_timer_set(&hc->c->read, hc->conf->client_body_timeout);
}

/* The error page for status: the route's (its own or its listener's)
 * once a route is chosen, else the listener's; NULL for none. */
static const lb_http_error_page_t *
lb_http_error_page(lb_http_conn_t *hc, int status)
{
    const lb_http_error_pages_t      *ep = &hc->conf->error_pages;
    const lb_http_core_route_conf_t  *rcf;
    size_t                            i;

    if (hc->route) {
        rcf = lb_get_conf(hc->route->confs, lb_http_core_module);
        ep = rcf ? &rcf->error_pages : ep;
    }
    for (i = 0; i < ep->npages; i++) {
        if (ep->pages[i].status == status) {
            return &ep->pages[i];
        }
    }
    return NULL;
}

/* Answers status with a short text body generated by lbd, or the
 * error_pages file for it, logged at info with why. The response headers
 * edits apply (the route's when one is chosen). The connection closes
 * after it unless close is false (404). */
int
lb_http_generate(lb_http_conn_t *hc, int status, const char *why, bool close)
{
    const lb_http_error_page_t  *page;
    lb_http_response_t           r;
    char                         body[64];

    lb_log_info("*%llu client %s: %d: %s", (unsigned long long) hc->c->id,
                hc->c->peer_text, status, why);
    if (close) {
        hc->keep_alive = 0;
        hc->body = LB_HTTP_BODY_NONE;
    }
    memset(&r, 0, sizeof(r));
    r.status = status;
    r.filter = true;
    page = lb_http_error_page(hc, status);
    if (page) {
        r.content_type = "text/html";
        r.body_file = page->body;
    } else {
        snprintf(body, sizeof(body), "%d %s\n", status, lb_http_reason(status));
        r.content_type = "text/plain";
        r.body_text = body;
    }
    if (lb_http_build(hc, &r) != LB_OK) {
        lb_log_error_limited(ENOMEM, "*%llu client %s: cannot build a response; closing",
                             (unsigned long long) hc->c->id, hc->c->peer_text);
        lb_http_close(hc);
        return LB_DONE;
    }
    if (hc->body == LB_HTTP_BODY_NONE) {
        lb_http_start_send(hc);
    }
    return LB_OK;
}

/* A request's first byte arrived: the head must be complete within
 * client_header_timeout. */
static void
lb_http_head_begins(lb_http_conn_t *hc)
{
    hc->head_started = 1;
    hc->head_method = 0;
    hc->http10 = 0;
    /* until it is parsed, variables (response_headers of a 400 or 408)
     * see no request, not the last one of this connection or of this
     * memory: no fields, no captures, no request id (which pointed into
     * the last request's memory) */
    lb_http_msg_reset(&hc->mem->msg);
    hc->ncaptures = 0;
    hc->request_id.len = 0;
    hc->route = NULL;
    /* what the log phase reports, should the request end early */
    hc->log_pending = 1;
    hc->status = 0;
    hc->bytes_sent = 0;
    hc->upstream_addr.len = 0;
    hc->upstream_msec = -1;
    hc->upstream_connect_msec = -1;
    hc->upstream_status = 0;
    hc->start_msec = lb_current_msec;
    lb_queue_remove(&hc->idle_link);
    lb_event_timer_set(&hc->c->read, hc->conf->client_header_timeout);
}

/* Runs the handlers of one phase: LB_DECLINED when all declined, else the
 * first other result. */
static int
lb_http_run_phase(lb_http_conn_t *hc, lb_http_phase_pt *h, size_t n)
{
    size_t  i;
    int     rc;

    for (i = 0; i < n; i++) {
        rc = h[i](hc);
        if (rc != LB_DECLINED) {
            return rc;
        }
    }
    return LB_DECLINED;
}

/* A phase handler refused the request with status: answer and close. */
static int
lb_http_refuse(lb_http_conn_t *hc, int rc, const char *phase)
{
    char  why[64];

    if (rc < 400 || rc > 599) {
        lb_log_error(0, "*%llu client %s: an http %s handler returned %d; answering 500",
                     (unsigned long long) hc->c->id, hc->c->peer_text, phase, rc);
        rc = 500;
    }
    snprintf(why, sizeof(why), "refused in the %s phase", phase);
    return lb_http_generate(hc, rc, why, true);
}

/* The request's X-Request-ID: the client's when valid, else a new one. */
static void
lb_http_request_id(lb_http_conn_t *hc)
{
    const lb_http_header_t  *h = lb_http_find_header(&hc->mem->msg, "X-Request-ID");

    if (h && lb_http_request_id_valid(h->value)) {
        hc->request_id = h->value;
        return;
    }
    lb_http_request_id_new(hc->mem->id_buf);
    hc->request_id.data = hc->mem->id_buf;
    hc->request_id.len = LB_HTTP_REQUEST_ID_LEN;
}

/* Answers a return or redirect route. */
static int
lb_http_serve_route(lb_http_conn_t *hc, const lb_http_route_t *route)
{
    lb_http_response_t  r;
    lb_http_var_ctx_t   ctx;
    char                body[64];

    lb_http_var_ctx(hc, &ctx, route->status);
    memset(&r, 0, sizeof(r));
    r.status = route->status;
    r.ctx = &ctx;
    r.filter = true;
    if (route->action == LB_HTTP_ROUTE_RETURN) {
        r.content_type = route->content_type ? route->content_type : "text/plain";
        r.body_cv = route->body;
        r.body_file = route->body_file;
    } else {
        r.content_type = "text/plain";
        r.location = route->location;
        snprintf(body, sizeof(body), "%d %s\n", route->status, lb_http_reason(route->status));
        r.body_text = body;
    }
    if (r.status < 200) {
        hc->keep_alive = 0;     /* a final 1xx leaves the client waiting */
    }
    if (lb_http_build(hc, &r) != LB_OK) {
        lb_log_error_limited(ENOMEM, "*%llu client %s: cannot build a response; closing",
                             (unsigned long long) hc->c->id, hc->c->peer_text);
        lb_http_close(hc);
        return LB_DONE;
    }
    return LB_OK;
}

/* Whether a route's allow / deny refuse the client at sa, as
 * lb_listener_denies does for a listener's. */
static bool
lb_http_acl_denies(const lb_cidr_list_t *allow, const lb_cidr_list_t *deny,
                   const struct sockaddr *sa)
{
    if (!lb_cidr_list_empty(deny) && lb_cidr_list_match(deny, sa)) {
        return true;
    }
    return !lb_cidr_list_empty(allow) && !lb_cidr_list_match(allow, sa);
}

/* The head in hc->mem->msg is complete: run the phases. */
static int
lb_http_process(lb_http_conn_t *hc)
{
    lb_http_msg_t                    *msg = &hc->mem->msg;
    lb_listener_t                    *ls = hc->conf->listener;
    const lb_http_route_t            *route;
    const lb_http_core_route_conf_t  *rcf;
    char                              why[64];
    int                               rc;

    hc->requests++;
    hc->head_method = msg->method.len == 4 && memcmp(msg->method.data, "HEAD", 4) == 0;
    hc->http10 = msg->version == 10;
    hc->keep_alive = msg->keep_alive && (int64_t) hc->requests < hc->conf->keepalive_requests
                     && !lb_worker_quitting;
    hc->body = msg->body;
    hc->body_left = msg->content_length;
    hc->body_seen = 0;
    hc->ncaptures = 0;
    memset(&hc->chunked, 0, sizeof(hc->chunked));
    lb_http_request_id(hc);

    /* the route first: its allow / deny replace the listener's, and the
     * errors from here on carry its response_headers and error_pages */
    route = lb_http_route_match(ls, msg, hc->mem->captures, &hc->ncaptures);
    hc->route = route;

    /* access */
    rcf = route ? lb_get_conf(route->confs, lb_http_core_module) : NULL;
    if (rcf && !(lb_cidr_list_empty(&rcf->allow) && lb_cidr_list_empty(&rcf->deny))) {
        if (lb_http_acl_denies(&rcf->allow, &rcf->deny, (struct sockaddr *) &hc->c->peer)) {
            snprintf(why, sizeof(why), "denied by allow/deny of route #%u", route->index);
            return lb_http_generate(hc, 403, why, true);
        }
    } else if ((ls->allow || ls->deny)
               && lb_listener_denies(ls, (struct sockaddr *) &hc->c->peer))
    {
        return lb_http_generate(hc, 403, "denied by allow/deny of the listener", true);
    }
    if (msg->body == LB_HTTP_BODY_LENGTH && msg->content_length > hc->conf->max_body_size) {
        return lb_http_generate(hc, 413, "Content-Length larger than max_body_size", true);
    }
    rc = lb_http_run_phase(hc, lb_http_phases.access, lb_http_phases.naccess);
    if (rc != LB_DECLINED) {
        return lb_http_refuse(hc, rc, "access");
    }

    /* rewrite */
    if (route == NULL) {
        if (msg->body != LB_HTTP_BODY_NONE && msg->expect_continue) {
            hc->keep_alive = 0;     /* see below */
            hc->body = LB_HTTP_BODY_NONE;
        }
        rc = lb_http_generate(hc, 404, "no route matches", false);
        goto answered;
    }
    rc = lb_http_run_phase(hc, lb_http_phases.rewrite, lb_http_phases.nrewrite);
    if (rc != LB_DECLINED) {
        return lb_http_refuse(hc, rc, "rewrite");
    }

    /* content */
    if (route->action == LB_HTTP_ROUTE_UPSTREAM) {
        rc = lb_http_run_phase(hc, lb_http_phases.content, lb_http_phases.ncontent);
        if (rc == LB_OK) {
            return LB_OK;           /* the handler owns the request now */
        }
        if (rc == LB_DONE) {
            return LB_DONE;
        }
        if (rc == LB_DECLINED) {
            rc = 502;
            lb_log_error(0, "*%llu client %s: no module proxies route #%u "
                         "(built without http_proxy?)", (unsigned long long) hc->c->id,
                         hc->c->peer_text, route->index);
        }
        return lb_http_refuse(hc, rc, "content");
    }
    if (msg->body != LB_HTTP_BODY_NONE && msg->expect_continue) {
        /* answered without 100 Continue (RFC 9110 §10.1.1): the client may
         * then send the body or not, so the connection cannot stay in step */
        hc->keep_alive = 0;
        hc->body = LB_HTTP_BODY_NONE;
    }
    rc = lb_http_serve_route(hc, route);

answered:
    if (rc != LB_OK) {
        return rc;
    }
    if (hc->state == LB_HTTP_SEND && !hc->keep_alive) {
        return LB_OK;               /* an error that closes: nothing else is read */
    }

    /* the response is built: the head's bytes are no longer needed, except
     * by the access log line once the response is sent, so a body being
     * read and discarded goes after the head (the buffer has
     * LB_HTTP_BODY_ROOM beyond the largest head); lb_http_finalize gives
     * the room back. */
    hc->buf.start = hc->buf.pos + msg->head_len;
    lb_buf_consume(&hc->buf, msg->head_len);
    if (hc->body != LB_HTTP_BODY_NONE) {
        hc->state = LB_HTTP_READ_BODY;
        lb_event_timer_set(&hc->c->read, hc->conf->client_body_timeout);
    } else {
        lb_http_start_send(hc);
    }
    return LB_OK;
}

/* Reads until a head is complete (then answers it) or the socket is
 * drained. LB_OK: the state moved on; LB_AGAIN; LB_DONE: closed. */
static int
lb_http_read_head(lb_http_conn_t *hc)
{
    lb_conn_t      *c = hc->c;
    lb_http_msg_t  *msg;
    ssize_t         n;
    size_t          len;
    int             rc;
    bool            parse = hc->mem && lb_buf_len(&hc->buf);

    for ( ;; ) {
        if (parse) {
            parse = false;
            msg = &hc->mem->msg;
            rc = lb_http_parse_request_head(msg, hc->buf.pos, lb_buf_len(&hc->buf),
                                            &hc->conf->limits);
            if (rc == LB_OK) {
                /* routes, $uri and the upstream all see the normal path */
                rc = lb_http_parse_uri(msg, hc->mem->uri, hc->mem->uri_size,
                                       hc->conf->uri_flags);
            }
            if (rc == LB_OK) {
                return lb_http_process(hc);
            }
            if (rc == LB_ERROR) {
                return lb_http_generate(hc, msg->error_status, msg->error, true);
            }
            if (lb_buf_room(&hc->buf) == 0) {
                if (hc->buf.pos == hc->buf.start) {
                    return lb_http_generate(hc, 431, "request head larger than "
                                            "max_header_size", true);
                }
                lb_buf_compact(&hc->buf);
            }
        }
        if (!c->read.ready) {
            return LB_AGAIN;
        }
        if (hc->mem == NULL && lb_http_mem_get(hc) != LB_OK) {
            lb_log_error_limited(ENOMEM, "*%llu client %s: cannot allocate a request buffer; "
                                 "closing", (unsigned long long) c->id, c->peer_text);
            lb_http_close(hc);
            return LB_DONE;
        }
        n = lb_conn_recv(c, hc->buf.last, lb_buf_room(&hc->buf));
        if (n > 0) {
            /* the head is re-parsed from its start, so only when it may
             * have ended or hit a limit: a line ended, the buffer is full,
             * or the bytes just passed max_uri or max_header_size (a
             * client sending a byte at a time costs a parse per line) */
            len = lb_buf_len(&hc->buf);
            parse = memchr(hc->buf.last, '\n', (size_t) n) != NULL
                    || (size_t) n == lb_buf_room(&hc->buf)
                    || (len <= hc->conf->limits.max_uri
                        && len + (size_t) n > hc->conf->limits.max_uri)
                    || (len <= hc->conf->limits.max_header_size
                        && len + (size_t) n > hc->conf->limits.max_header_size);
            hc->buf.last += n;
            if (!hc->head_started) {
                lb_http_head_begins(hc);
            }
            continue;
        }
        if (n == LB_AGAIN) {
            if (!hc->head_started) {
                lb_http_mem_put(hc);        /* nothing came: stay cheap */
            }
            return LB_AGAIN;
        }
        if (hc->head_started) {
            lb_log_info("*%llu client %s: closed the connection in a request head%s",
                        (unsigned long long) c->id, c->peer_text,
                        n == 0 ? "" : " (error)");
        }
        lb_http_close(hc);
        return LB_DONE;
    }
}

ssize_t
lb_http_read_more(lb_http_conn_t *hc)
{
    ssize_t  n;

    if (!hc->c->read.ready) {
        return LB_AGAIN;
    }
    if (lb_buf_room(&hc->buf) == 0) {
        lb_buf_compact(&hc->buf);
    }
    n = lb_conn_recv(hc->c, hc->buf.last, lb_buf_room(&hc->buf));
    if (n > 0) {
        hc->buf.last += n;
    }
    return n;
}

/* Reads and discards the request body. */
static int
lb_http_read_body(lb_http_conn_t *hc)
{
    lb_conn_t   *c = hc->c;
    const char  *data;
    size_t       len, used, data_len;
    ssize_t      n;
    int          rc;

    for ( ;; ) {
        while ((len = lb_buf_len(&hc->buf)) > 0 && hc->body != LB_HTTP_BODY_NONE) {
            if (hc->body == LB_HTTP_BODY_LENGTH) {
                used = (size_t) lb_min((int64_t) len, hc->body_left);
                lb_buf_consume(&hc->buf, used);
                hc->body_left -= (int64_t) used;
                if (hc->body_left == 0) {
                    hc->body = LB_HTTP_BODY_NONE;
                }
                continue;
            }
            rc = lb_http_parse_chunked(&hc->chunked, hc->buf.pos, len, &used, &data, &data_len);
            lb_buf_consume(&hc->buf, used);
            if (rc == LB_OK) {
                hc->body_seen += (int64_t) data_len;
                if (hc->body_seen > hc->conf->max_body_size) {
                    return lb_http_generate(hc, 413, "chunked body larger than "
                                            "max_body_size", true);
                }
            } else if (rc == LB_DONE) {
                hc->body = LB_HTTP_BODY_NONE;
            } else if (rc == LB_ERROR) {
                return lb_http_generate(hc, 400, "invalid chunked body", true);
            } else if (rc == LB_AGAIN) {
                break;                      /* what is left is a partial line */
            }
        }
        if (hc->body == LB_HTTP_BODY_LENGTH && hc->body_left == 0) {
            hc->body = LB_HTTP_BODY_NONE;
        }
        if (hc->body == LB_HTTP_BODY_NONE) {
            lb_http_start_send(hc);
            return LB_OK;
        }
        n = lb_http_read_more(hc);
        if (n > 0) {
            continue;
        }
        if (n == LB_AGAIN) {
            return LB_AGAIN;
        }
        lb_log_info("*%llu client %s: closed the connection in a request body",
                    (unsigned long long) c->id, c->peer_text);
        lb_http_close(hc);
        return LB_DONE;
    }
}

/* Drains input after the response of a connection that closes, until the
 * client closes too or LB_HTTP_LINGER_TIME passes. */
static int
lb_http_linger(lb_http_conn_t *hc)
{
    lb_conn_t  *c = hc->c;
    size_t      total = 0;
    ssize_t     n;

    while (c->read.ready && total < LB_HTTP_LINGER_READ) {
        n = lb_conn_recv(c, hc->buf.start, lb_buf_size(&hc->buf));
        if (n > 0) {
            total += (size_t) n;
            continue;
        }
        if (n == LB_AGAIN) {
            return LB_AGAIN;
        }
        lb_http_close(hc);
        return LB_DONE;
    }
    return LB_AGAIN;
}

static int
lb_http_send(lb_http_conn_t *hc)
{
    lb_conn_t     *c = hc->c;
    struct iovec   iov[3];
    size_t         skip, i;
    ssize_t        n;
    int            k;

    while (hc->out_sent < hc->out_head + hc->out_tail_len + hc->out_body) {
        iov[0].iov_base = hc->out;
        iov[0].iov_len = hc->out_head;
        iov[1].iov_base = (char *) hc->out_tail;
        iov[1].iov_len = hc->out_tail_len;
        iov[2].iov_base = hc->out_body_data ? (char *) hc->out_body_data
                                            : hc->out + hc->out_head;
        iov[2].iov_len = hc->out_body;
        for (i = 0, k = 0, skip = hc->out_sent; i < 3; i++) {
            if (skip >= iov[i].iov_len) {
                skip -= iov[i].iov_len;
                continue;
            }
            iov[k].iov_base = (char *) iov[i].iov_base + skip;
            iov[k].iov_len = iov[i].iov_len - skip;
            skip = 0;
            k++;
        }
        n = c->io->sendv(c, iov, k);
        if (n > 0) {
            hc->out_sent += (size_t) n;
            continue;
        }
        if (n == LB_AGAIN) {
            return LB_AGAIN;
        }
        lb_log_info("*%llu client %s: cannot send the response: %s",
                    (unsigned long long) c->id, c->peer_text, strerror(errno));
        lb_http_close(hc);
        return LB_DONE;
    }
    hc->bytes_sent = hc->out_sent;
    lb_http_out_free(hc);
    return lb_http_finalize(hc);
}

int
lb_http_finalize(lb_http_conn_t *hc)
{
    lb_conn_t  *c = hc->c;

    lb_http_log_phase(hc);
    hc->route = NULL;
    hc->content = NULL;
    hc->content_run = NULL;
    hc->content_timeout = NULL;
    hc->content_cleanup = NULL;
    if (hc->mem) {
        hc->buf.start = hc->mem->data;      /* the head's room, kept for the log */
    }
    hc->head_started = 0;

    if (!hc->keep_alive || lb_worker_quitting) {
        if (hc->mem == NULL || c->io->shutdown(c) != LB_OK) {
            lb_http_close(hc);
            return LB_DONE;
        }
        lb_buf_reset(&hc->buf);
        hc->state = LB_HTTP_LINGER;
        lb_event_timer_set(&c->read, LB_HTTP_LINGER_TIME);
        return LB_OK;
    }

    hc->state = LB_HTTP_READ_HEAD;
    if (lb_buf_len(&hc->buf)) {
        /* pipelined: already here. Moved to the start, so the next head
         * has the whole body room after it. */
        lb_buf_compact(&hc->buf);
        lb_http_head_begins(hc);
    } else {
        lb_http_mem_put(hc);
        lb_http_idle_add(hc);
        lb_event_timer_set(&c->read, hc->conf->keepalive_timeout);
    }
    return LB_OK;
}

void
lb_http_abort(lb_http_conn_t *hc)
{
    lb_http_close(hc);
}

static void
lb_http_timed_out(lb_http_conn_t *hc, lb_event_t *ev)
{
    lb_conn_t  *c = hc->c;

    switch (hc->state) {
    case LB_HTTP_READ_HEAD:
        if (hc->head_started) {
            if (lb_http_generate(hc, 408, "client_header_timeout expired", true) == LB_OK) {
                lb_http_run(hc);
            }
            return;
        }
        lb_log_debug("*%llu client %s: %s expired; closing", (unsigned long long) c->id,
                     c->peer_text, hc->requests ? "keepalive_timeout" : "client_header_timeout");
        break;
    case LB_HTTP_READ_BODY:
        if (lb_http_generate(hc, 408, "client_body_timeout expired", true) == LB_OK) {
            lb_http_run(hc);
        }
        return;
    case LB_HTTP_SEND:
        lb_log_info("*%llu client %s: the client did not read the response within "
                    "client_body_timeout; closing", (unsigned long long) c->id, c->peer_text);
        break;
    case LB_HTTP_LINGER:
        break;
    case LB_HTTP_CONTENT:
        hc->content_timeout(hc, ev);
        return;
    }
    lb_http_close(hc);
}

void
lb_http_run(lb_http_conn_t *hc)
{
    int  rc;

    do {
        switch (hc->state) {
        case LB_HTTP_READ_HEAD:
            rc = lb_http_read_head(hc);
            break;
        case LB_HTTP_READ_BODY:
            rc = lb_http_read_body(hc);
            break;
        case LB_HTTP_SEND:
            rc = lb_http_send(hc);
            break;
        case LB_HTTP_CONTENT:
            rc = hc->content_run(hc);
            break;
        default:
            rc = lb_http_linger(hc);
            break;
        }
    } while (rc == LB_OK);
}

static void
lb_http_handler(lb_event_t *ev)
{
    lb_conn_t       *c = ev->data;
    lb_http_conn_t  *hc = c->data;

    if (ev->timedout) {
        ev->timedout = 0;
        lb_http_timed_out(hc, ev);
        return;
    }
    lb_http_run(hc);
}

void
lb_http_init_connection(lb_conn_t *c)
{
    lb_http_conn_t  *hc;
    lb_str_t         ip;

    hc = lb_http_conn_alloc();
    if (hc == NULL) {
        lb_log_error_limited(ENOMEM, "*%llu client %s: cannot allocate an http connection",
                             (unsigned long long) c->id, c->peer_text);
        lb_conn_close(c);
        return;
    }
    hc->c = c;
    hc->conf = lb_get_conf(c->listener->confs, lb_http_core_module);
    lb_queue_init(&hc->idle_link);

    lb_http_real_client(NULL, (struct sockaddr *) &c->peer, NULL, &ip, hc->remote_ip);
    lb_http_port_text(&c->peer, hc->remote_port, sizeof(hc->remote_port));

    c->data = hc;
    c->read.handler = lb_http_handler;
    c->write.handler = lb_http_handler;
    if (lb_loop_add_conn(c, false) != LB_OK) {
        lb_log_error_limited(errno, "*%llu client %s: cannot watch the connection",
                             (unsigned long long) c->id, c->peer_text);
        lb_conn_close(c);
        lb_http_conn_release(hc);
        return;
    }
    hc->state = LB_HTTP_READ_HEAD;
    lb_http_idle_add(hc);
    lb_event_timer_set(&c->read, hc->conf->client_header_timeout);
    lb_http_run(hc);
}
