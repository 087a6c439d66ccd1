/*
 * lb_http_request.c: running a request whatever frontend read it (SPEC
 * §3.4, §4): route, phases, the route's action, and the output path every
 * response takes (header filters, body filters, the frontend's writer);
 * lbd's own responses (errors, error_pages) on that path.
 */
#include "lb_core.h"
#include "lb_http.h"
#include "lb_http_forward.h"
#include "lb_http_var.h"

void
lb_http_request_init(lb_http_request_t *r)
{
    /* what the log phase reports, should the request end early */
    r->route = NULL;
    r->ncaptures = 0;
    r->request_id.len = 0;
    r->status = 0;
    r->out.status = 0;
    r->out.nfields = 0;
    r->out.reason.len = 0;
    r->out.content_length = -1;
    r->out.upgrade = 0;
    r->header_sent = 0;
    r->log_pending = 1;
    r->bytes_sent = 0;
    r->upstream_addr.len = 0;
    r->upstream_msec = -1;
    r->upstream_connect_msec = -1;
    r->upstream_status = 0;
    r->content = NULL;
    r->content_run = NULL;
    r->content_timeout = NULL;
    r->content_cleanup = NULL;
    r->arena_used = 0;
    r->head_method = 0;
    r->http10 = 0;
    r->body_taken = 0;
    memset(r->ctx, 0, lb_nmodules * sizeof(void *));
}

char *
lb_http_request_alloc(lb_http_request_t *r, size_t size)
{
    char  *p;

    size = (size + 7) & ~(size_t) 7;
    if (size > sizeof(r->arena) - r->arena_used) {
        return NULL;
    }
    p = r->arena + r->arena_used;
    r->arena_used += size;
    return p;
}

/* Response fields ----------------------------------------------------------- */

int
lb_http_out_add(lb_http_request_t *r, const char *name, size_t nlen,
                const char *value, size_t vlen)
{
    lb_http_header_t  *f;

    if (r->out.nfields == LB_HTTP_OUT_FIELDS) {
        return LB_ERROR;
    }
    f = &r->out.fields[r->out.nfields++];
    f->name.data = (char *) name;
    f->name.len = nlen;
    f->value.data = (char *) value;
    f->value.len = vlen;
    return LB_OK;
}

lb_http_header_t *
lb_http_out_find(lb_http_request_t *r, const char *name, size_t nlen)
{
    size_t  i;

    for (i = 0; i < r->out.nfields; i++) {
        if (r->out.fields[i].name.len == nlen
            && strncasecmp(r->out.fields[i].name.data, name, nlen) == 0)
        {
            return &r->out.fields[i];
        }
    }
    return NULL;
}

void
lb_http_out_remove(lb_http_request_t *r, const char *name, size_t nlen)
{
    size_t  i, k;

    for (i = 0, k = 0; i < r->out.nfields; i++) {
        if (r->out.fields[i].name.len == nlen
            && strncasecmp(r->out.fields[i].name.data, name, nlen) == 0)
        {
            continue;
        }
        r->out.fields[k++] = r->out.fields[i];
    }
    r->out.nfields = k;
}

void
lb_http_out_start(lb_http_request_t *r, int status)
{
    r->out.status = status;
    r->out.reason.len = 0;
    r->out.nfields = 0;
    r->out.content_length = -1;
    r->out.upgrade = 0;
    lb_http_out_add(r, "Server", 6, "lbd", 3);
    lb_http_out_add(r, "Date", 4, lb_http_time, lb_http_time_len);
}

int
lb_http_finalize(lb_http_request_t *r)
{
    return r->writer->finalize(r);
}

void
lb_http_abort(lb_http_request_t *r)
{
    r->writer->abort(r);
}

void
lb_http_run_request(lb_http_request_t *r)
{
    r->writer->run(r);
}

/* The output path ------------------------------------------------------------- */

int
lb_http_send_header(lb_http_request_t *r)
{
    size_t  i;

    r->status = r->out.status;
    /* before the filters, so that response_headers may drop or replace
     * them: a Date when the origin gave none (RFC 9110 §6.6.1), and the
     * request id echoed */
    if (lb_http_out_find(r, "Date", 4) == NULL
        && lb_http_out_add(r, "Date", 4, lb_http_time, lb_http_time_len) != LB_OK)
    {
        return LB_ERROR;
    }
    if (r->request_id.len
        && lb_http_out_add(r, "X-Request-ID", 12, r->request_id.data,
                           r->request_id.len) != LB_OK)
    {
        return LB_ERROR;
    }
    for (i = 0; i < lb_http_phases.nheader; i++) {
        if (lb_http_phases.header_filters[i](r) != LB_OK) {
            return LB_ERROR;
        }
    }
    if (r->writer->header(r) != LB_OK) {
        return LB_ERROR;
    }
    r->header_sent = 1;
    return LB_OK;
}

int
lb_http_next_body_filter(lb_http_request_t *r, lb_chain_t *in, bool last)
{
    size_t  i = r->filter_pos;
    int     rc;

    r->filter_pos = i + 1;
    rc = i < lb_http_phases.nbody ? lb_http_phases.body_filters[i](r, in, last)
                                  : r->writer->body(r, in, last);
    r->filter_pos = i;
    return rc;
}

int
lb_http_send_body(lb_http_request_t *r, lb_chain_t *in, bool last)
{
    r->filter_pos = 0;
    return lb_http_next_body_filter(r, in, last);
}

/* lbd's own responses -------------------------------------------------------- */

/* Sends what is left of an own response; the frontend calls it again when
 * the client can take more. */
static int
lb_http_own_run(lb_http_request_t *r)
{
    int  rc = lb_http_send_body(r, &r->own_body, true);

    if (rc == LB_OK) {
        return lb_http_finalize(r);
    }
    if (rc == LB_AGAIN) {
        return LB_AGAIN;
    }
    lb_log_info("*%llu client %s: cannot send the response; closing",
                (unsigned long long) r->c->id, r->c->peer_text);
    lb_http_abort(r);
    return LB_DONE;
}

static void
lb_http_own_timeout(lb_http_request_t *r, lb_event_t *ev)
{
    lb_log_info("*%llu client %s: the client did not read the response within "
                "client_body_timeout; closing", (unsigned long long) r->c->id,
                r->c->peer_text);
    lb_http_abort(r);
}

int
lb_http_response_fields(lb_http_request_t *r, int status, const char *content_type,
                        size_t len)
{
    bool  no_body = status < 200 || status == 204 || status == 304;

    if (no_body) {
        return LB_OK;
    }
    if (len && content_type && lb_http_out_find(r, "Content-Type", 12) == NULL
        && lb_http_out_add(r, "Content-Type", 12, content_type, strlen(content_type)) != LB_OK)
    {
        return LB_ERROR;
    }
    r->out.content_length = (int64_t) len;
    /* where the writer puts the length it frames with */
    return lb_http_out_add(r, "Content-Length", 14, "", 0);
}

int
lb_http_send_prepared(lb_http_request_t *r, const char *body, size_t len)
{
    int  status = r->out.status;

    if (status < 200 || status == 204 || status == 304) {
        len = 0;
    }
    if (status < 200) {
        r->keep_alive = 0;      /* a final 1xx leaves the client waiting */
    }
    if (lb_http_send_header(r) != LB_OK) {
        return LB_ERROR;
    }
    lb_chain_link_set(&r->own_body, body, len);
    r->content = NULL;
    r->content_run = lb_http_own_run;
    r->content_timeout = lb_http_own_timeout;
    r->content_cleanup = NULL;
    return LB_OK;
}

int
lb_http_send_response(lb_http_request_t *r, int status, const char *content_type,
                      const char *body, size_t len)
{
    if (lb_http_response_fields(r, status, content_type, len) != LB_OK) {
        return LB_ERROR;
    }
    return lb_http_send_prepared(r, body, len);
}

/* The error page for status: the route's (its own or its listener's)
 * once a route is chosen, else the listener's; NULL for none. */
static const lb_http_error_page_t *
lb_http_error_page(lb_http_request_t *r, int status)
{
    const lb_http_error_pages_t      *ep = &r->conf->error_pages;
    const lb_http_core_route_conf_t  *rcf;
    size_t                            i;

    if (r->route) {
        rcf = lb_get_conf(r->route->confs, lb_http_core_module);
        ep = rcf ? &rcf->error_pages : ep;
    }
    for (i = 0; i < ep->npages; i++) {
        if (ep->pages[i].status == status) {
            return &ep->pages[i];
        }
    }
    return NULL;
}

const char *
lb_http_error_text(int status, size_t *len)
{
    static char   texts[600][48];
    static bool   made[600];
    char         *t;

    if (status < 100 || status > 599) {
        status = 500;
    }
    t = texts[status];
    if (!made[status]) {
        snprintf(t, sizeof(texts[0]), "%d %s\n", status, lb_http_reason(status));
        made[status] = true;
    }
    *len = strlen(t);
    return t;
}

int
lb_http_generate(lb_http_request_t *r, int status, const char *why, bool close)
{
    const lb_http_error_page_t  *page;
    const char                  *body;
    size_t                       len;
    int                          rc;

    if (why) {
        lb_log_info("*%llu client %s: %d: %s", (unsigned long long) r->c->id,
                    r->c->peer_text, status, why);
    }
    if (r->header_sent && r->writer->started(r)) {
        /* part of another response is out: the client can only see it cut */
        lb_http_abort(r);
        return LB_DONE;
    }
    if (close) {
        r->keep_alive = 0;
    }
    lb_http_out_start(r, status);
    page = lb_http_error_page(r, status);
    if (page) {
        rc = lb_http_send_response(r, status, "text/html", page->body.data, page->body.len);
    } else {
        body = lb_http_error_text(status, &len);
        rc = lb_http_send_response(r, status, "text/plain", body, len);
    }
    if (rc != LB_OK) {
        lb_log_error(0, "*%llu client %s: the response head with response_headers does "
                     "not fit; closing", (unsigned long long) r->c->id, r->c->peer_text);
        lb_http_abort(r);
        return LB_DONE;
    }
    return LB_OK;
}

/* Variables ----------------------------------------------------------------- */

void
lb_http_var_ctx(lb_http_request_t *r, lb_http_var_ctx_t *ctx, int status)
{
    ctx->r = r;
    ctx->request = r ? r->msg : NULL;
    ctx->status = status;
    ctx->capture_subject = r ? r->msg->uri.data : NULL;
    ctx->captures = r ? r->captures : NULL;
    ctx->ncaptures = r ? r->ncaptures : 0;
}

/* Message heads being forwarded ------------------------------------------------ */

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

/* Running a request ------------------------------------------------------------ */

/* Runs the handlers of one phase: LB_DECLINED when all declined, else the
 * first other result. */
static int
lb_http_run_phase(lb_http_request_t *r, lb_http_phase_pt *h, size_t n)
{
    size_t  i;
    int     rc;

    for (i = 0; i < n; i++) {
        rc = h[i](r);
        if (rc != LB_DECLINED) {
            return rc;
        }
    }
    return LB_DECLINED;
}

/* A phase handler refused the request with status: answer and close. */
static int
lb_http_refuse(lb_http_request_t *r, int rc, const char *phase)
{
    char  why[64];
    bool  logged = rc & LB_HTTP_LOGGED;

    rc &= ~LB_HTTP_LOGGED;
    if (rc < 400 || rc > 599) {
        lb_log_error(0, "*%llu client %s: an http %s handler returned %d; answering 500",
                     (unsigned long long) r->c->id, r->c->peer_text, phase, rc);
        rc = 500;
        logged = false;
    }
    snprintf(why, sizeof(why), "refused in the %s phase", phase);
    return lb_http_generate(r, rc, logged ? NULL : why, true);
}

/* The request's X-Request-ID: the client's when valid, else a new one. */
static void
lb_http_request_id(lb_http_request_t *r)
{
    const lb_http_header_t  *h = lb_http_find_header(r->msg, "X-Request-ID");

    if (h && lb_http_request_id_valid(h->value)) {
        r->request_id = h->value;
        return;
    }
    lb_http_request_id_new(r->id_buf);
    r->request_id.data = r->id_buf;
    r->request_id.len = LB_HTTP_REQUEST_ID_LEN;
}

/* Whether a route's allow / deny refuse the client at sa, as
 * lb_listener_denies does for a listener's. */
static int  lb_http_request_access(lb_http_request_t *r, size_t from);
static int  lb_http_request_serve(lb_http_request_t *r);
static int  lb_http_delay_run(lb_http_request_t *r);
static void lb_http_delay_over(lb_http_request_t *r, lb_event_t *ev);

static bool
lb_http_acl_denies(const lb_cidr_list_t *allow, const lb_cidr_list_t *deny,
                   const struct sockaddr *sa)
{
    if (!lb_cidr_list_empty(deny) && lb_cidr_list_match(deny, sa)) {
        return true;
    }
    return !lb_cidr_list_empty(allow) && !lb_cidr_list_match(allow, sa);
}

int
lb_http_request_run(lb_http_request_t *r)
{
    lb_http_msg_t                    *msg = r->msg;
    lb_listener_t                    *ls = r->conf->listener;
    const lb_http_core_route_conf_t  *rcf;
    char                              why[64];
    int                               rc;

    r->head_method = msg->method.len == 4 && memcmp(msg->method.data, "HEAD", 4) == 0;
    r->http10 = msg->version == 10;
    lb_http_request_id(r);

    /* the route first: its allow / deny replace the listener's, and the
     * errors from here on carry its response_headers and error_pages */
    rc = lb_http_run_phase(r, lb_http_phases.find_route, lb_http_phases.nfind);
    if (rc != LB_DECLINED && rc != LB_OK) {
        return lb_http_refuse(r, rc, "find_route");
    }

    /* access */
    rcf = r->route ? lb_get_conf(r->route->confs, lb_http_core_module) : NULL;
    if (rcf && !(lb_cidr_list_empty(&rcf->allow) && lb_cidr_list_empty(&rcf->deny))) {
        if (lb_http_acl_denies(&rcf->allow, &rcf->deny, (struct sockaddr *) &r->c->peer)) {
            snprintf(why, sizeof(why), "denied by allow/deny of route #%u", r->route->index);
            return lb_http_generate(r, 403, why, true);
        }
    } else if ((ls->allow || ls->deny)
               && lb_listener_denies(ls, (struct sockaddr *) &r->c->peer))
    {
        return lb_http_generate(r, 403, "denied by allow/deny of the listener", true);
    }
    if (msg->body == LB_HTTP_BODY_LENGTH && msg->content_length > r->conf->max_body_size) {
        return lb_http_generate(r, 413, "Content-Length larger than max_body_size", true);
    }
    return lb_http_request_access(r, 0);
}

/* The access handlers from the index from on, then the rest of the
 * request; an access handler that returns LB_AGAIN has called
 * lb_http_request_delay: the request waits, then goes on from the next
 * handler (lb_http_delay_over). */
static int
lb_http_request_access(lb_http_request_t *r, size_t from)
{
    size_t  i;
    int     rc;

    for (i = from; i < lb_http_phases.naccess; i++) {
        rc = lb_http_phases.access[i](r);
        if (rc == LB_AGAIN && lb_timer_is_set(&r->c->write.timer)) {
            r->access_next = i + 1;
            r->content_run = lb_http_delay_run;
            r->content_timeout = lb_http_delay_over;
            r->content_cleanup = NULL;
            return LB_OK;
        }
        if (rc != LB_DECLINED) {
            return lb_http_refuse(r, rc == LB_AGAIN ? 500 : rc, "access");
        }
    }
    return lb_http_request_serve(r);
}

void
lb_http_request_delay(lb_http_request_t *r, lb_msec_t msec)
{
    lb_event_timer_set(&r->c->write, msec);
}

/* While the request waits, the client's events change nothing. */
static int
lb_http_delay_run(lb_http_request_t *r)
{
    lb_unused(r);
    return LB_AGAIN;
}

static void
lb_http_delay_over(lb_http_request_t *r, lb_event_t *ev)
{
    lb_unused(ev);
    r->content_run = NULL;
    r->content_timeout = NULL;
    if (lb_http_request_access(r, r->access_next) != LB_DONE) {
        lb_http_run_request(r);
    }
}

/* After the access phase: rewrite, then content. */
static int
lb_http_request_serve(lb_http_request_t *r)
{
    int  rc;

    if (r->route == NULL) {
        return lb_http_generate(r, 404, "no route matches", false);
    }

    /* rewrite */
    rc = lb_http_run_phase(r, lb_http_phases.rewrite, lb_http_phases.nrewrite);
    if (rc != LB_DECLINED) {
        return lb_http_refuse(r, rc, "rewrite");
    }

    /* content: a module's handler, else the route's action */
    rc = lb_http_run_phase(r, lb_http_phases.content, lb_http_phases.ncontent);
    if (rc == LB_DECLINED) {
        rc = r->route->handler ? r->route->handler(r) : LB_DECLINED;
    }
    if (rc == LB_OK || rc == LB_DONE) {
        return rc;
    }
    if (rc == LB_DECLINED) {
        lb_log_error(0, "*%llu client %s: nothing serves route #%u",
                     (unsigned long long) r->c->id, r->c->peer_text, r->route->index);
        rc = 502;
    }
    return lb_http_refuse(r, rc, "content");
}
