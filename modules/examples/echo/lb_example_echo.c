/*
 * lb_example_echo.c: an example module for docs/modules.md. It adds the
 * listener protocol "echo": greet each client with a banner, then send back
 * every byte it sends, up to max_bytes, closing after idle_timeout of
 * silence. It uses only the public module interface (lb_core.h).
 */
#include "lb_core.h"

/* 1. The module's configuration for one listener. */
typedef struct {
    char       *banner;
    int64_t     max_bytes;
    lb_msec_t   idle_timeout;
} lb_echo_conf_t;

/* 2. Per-connection state, allocated from the connection's pool. */
typedef struct {
    lb_conn_t       *c;
    lb_echo_conf_t  *conf;
    lb_buf_t         buf;
    char             mem[4096];
    int64_t          echoed;
} lb_echo_session_t;

static void *lb_echo_create_conf(lb_conf_t *cf, unsigned ctx);
static int   lb_echo_merge_conf(lb_conf_t *cf, unsigned ctx, void *parent, void *conf);
static void  lb_echo_init_session(lb_conn_t *c);

static const char *const  lb_echo_protocols[] = { "echo", NULL };

/* 3. The settings table: the loader parses, range-checks and stores each
 * value; a misspelt name gets a "did you mean" error with FILE:LINE. */
static const lb_setting_t  lb_echo_settings[] = {
    { "banner", LB_SET_STR, LB_CTX_LISTENER, "", 0, 0,
      offsetof(lb_echo_conf_t, banner), NULL, NULL, 0 },
    { "max_bytes", LB_SET_SIZE, LB_CTX_LISTENER, "1m", 1, 1LL << 40,
      offsetof(lb_echo_conf_t, max_bytes), NULL, NULL, 0 },
    { "idle_timeout", LB_SET_DURATION, LB_CTX_LISTENER, "60s", 1, 86400000,
      offsetof(lb_echo_conf_t, idle_timeout), NULL, NULL, 0 },
    lb_setting_end
};

/* 4. The module itself: its name (for --without-example_echo), type, the
 * protocol it serves, its settings and hooks. */
lb_module_t  lb_example_echo_module = {
    "example_echo", LB_MODULE_STREAM, lb_echo_protocols, lb_echo_settings,
    LB_CTX_LISTENER,
    lb_echo_create_conf, lb_echo_merge_conf, NULL,
    NULL, NULL, NULL, NULL, 0
};

static void *
lb_echo_create_conf(lb_conf_t *cf, unsigned ctx)
{
    return lb_pcalloc(cf->pool, sizeof(lb_echo_conf_t));
}

/* The listener is ours: tell the core what to call for each connection. */
static int
lb_echo_merge_conf(lb_conf_t *cf, unsigned ctx, void *parent, void *conf)
{
    cf->listener->handler = lb_echo_init_session;
    return LB_OK;
}

/* 5. The connection: read what is there, write it back, wait for events. */
static void
lb_echo_handler(lb_event_t *ev)
{
    lb_conn_t          *c = ev->data;
    lb_echo_session_t  *s = c->data;
    ssize_t             n;

    if (ev->timedout) {
        lb_log_info("*%llu client %s: echo idle_timeout expired",
                    (unsigned long long) c->id, c->peer_text);
        lb_conn_close(c);
        return;
    }

    for ( ;; ) {
        if (lb_buf_len(&s->buf) && c->write.ready) {
            n = lb_conn_send(c, s->buf.pos, lb_buf_len(&s->buf));
            if (n == LB_ERROR) {
                lb_conn_close(c);
                return;
            }
            if (n > 0) {
                lb_buf_consume(&s->buf, (size_t) n);
                s->echoed += n;
                continue;
            }
        }
        if (s->echoed >= s->conf->max_bytes) {
            lb_conn_close(c);
            return;
        }
        if (lb_buf_len(&s->buf) == 0 && c->read.ready) {
            n = lb_conn_recv(c, s->buf.last,
                             (size_t) lb_min((int64_t) lb_buf_room(&s->buf),
                                             s->conf->max_bytes - s->echoed));
            if (n == 0 || n == LB_ERROR) {
                lb_conn_close(c);
                return;
            }
            if (n > 0) {
                s->buf.last += n;
                continue;
            }
        }
        break;      /* both directions would block */
    }
    lb_event_timer_set(&c->read, s->conf->idle_timeout);
}

static void
lb_echo_init_session(lb_conn_t *c)
{
    lb_echo_session_t  *s;
    lb_pool_t          *pool = lb_conn_pool(c);

    s = pool ? lb_pcalloc(pool, sizeof(*s)) : NULL;
    if (s == NULL) {
        lb_conn_close(c);
        return;
    }
    s->c = c;
    s->conf = lb_get_conf(c->listener->confs, lb_example_echo_module);
    lb_buf_init(&s->buf, s->mem, sizeof(s->mem));
    lb_buf_append(&s->buf, s->conf->banner, strlen(s->conf->banner));
    s->echoed = -(int64_t) lb_buf_len(&s->buf);     /* the banner is not echo */

    c->data = s;
    c->read.handler = lb_echo_handler;
    c->write.handler = lb_echo_handler;
    if (lb_loop_add_conn(c, false) != LB_OK) {
        lb_conn_close(c);
        return;
    }
    c->write.ready = 1;         /* a new socket can take the banner at once */
    lb_echo_handler(&c->read);
}
