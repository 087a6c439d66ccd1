/*
 * lb_event.c: the epoll event loop and its timers.
 */
#include "lb_core.h"

#include <sys/epoll.h>

lb_loop_t  *lb_loop;

static lb_loop_t  lb_loop_storage;

int
lb_loop_init(int nevents)
{
    lb_loop_t  *loop = &lb_loop_storage;

    loop->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (loop->epfd == -1) {
        return LB_ERROR;
    }
    loop->nevents = nevents;
    loop->events = calloc((size_t) nevents, sizeof(struct epoll_event));
    if (loop->events == NULL || lb_timer_heap_init(&loop->timers, 1024) != LB_OK) {
        close(loop->epfd);
        free(loop->events);
        return LB_ERROR;
    }
    lb_queue_init(&loop->closed);
    lb_loop = loop;
    lb_time_update();
    return LB_OK;
}

void
lb_loop_free(void)
{
    if (lb_loop == NULL) {
        return;
    }
    close(lb_loop->epfd);
    free(lb_loop->events);
    lb_timer_heap_free(&lb_loop->timers);
    lb_loop = NULL;
}

int
lb_loop_add_conn(lb_conn_t *c, bool level)
{
    struct epoll_event  ee;

    if (c->registered) {
        return LB_OK;           /* an accept step registered it already */
    }
    ee.events = level ? EPOLLIN : (EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET);
    ee.data.ptr = c;
    if (epoll_ctl(lb_loop->epfd, EPOLL_CTL_ADD, c->fd, &ee) == -1) {
        return LB_ERROR;
    }
    c->registered = 1;
    return LB_OK;
}

void
lb_loop_del_conn(lb_conn_t *c)
{
    if (c->registered) {
        epoll_ctl(lb_loop->epfd, EPOLL_CTL_DEL, c->fd, NULL);
        c->registered = 0;
    }
}

static void
lb_event_timer_fire(lb_timer_t *t)
{
    lb_event_t  *ev = t->data;

    ev->timedout = 1;
    ev->handler(ev);
}

void
lb_event_timer_set(lb_event_t *ev, lb_msec_t delay)
{
    if (ev->timer.handler == NULL) {
        lb_timer_init(&ev->timer, lb_event_timer_fire, ev);
    }
    lb_timer_set(&ev->timer, delay);
}

void
lb_event_timer_del(lb_event_t *ev)
{
    lb_timer_del(&ev->timer);
}

void
lb_timer_set(lb_timer_t *t, lb_msec_t delay)
{
    if (lb_timer_heap_set(&lb_loop->timers, t, lb_current_msec + delay) != LB_OK) {
        lb_log_error(ENOMEM, "cannot grow the timer heap");
    }
}

void
lb_timer_del(lb_timer_t *t)
{
    if (lb_loop && lb_timer_is_set(t)) {
        lb_timer_heap_del(&lb_loop->timers, t);
    }
}

int
lb_loop_process(lb_msec_t max_wait, const sigset_t *sigmask)
{
    struct epoll_event  *events = lb_loop->events, *ee;
    lb_conn_t           *c;
    lb_msec_t            delay;
    int                  n, i, timeout;

    delay = lb_timer_heap_delay(&lb_loop->timers, lb_current_msec);
    if (delay < 0 || (max_wait >= 0 && delay > max_wait)) {
        delay = max_wait;
    }
    timeout = delay > INT32_MAX ? INT32_MAX : (int) delay;

    n = epoll_pwait(lb_loop->epfd, events, lb_loop->nevents, timeout, sigmask);
    lb_time_update();

    if (n == -1) {
        if (errno == EINTR) {
            return LB_AGAIN;
        }
        lb_log_error(errno, "epoll_pwait() failed");
        return LB_ERROR;
    }

    for (i = 0; i < n; i++) {
        ee = &events[i];
        c = ee->data.ptr;

        if (c->fd == -1) {
            continue;           /* closed earlier in this batch */
        }
        if (ee->events & EPOLLERR) {
            c->error = 1;
        }
        if (ee->events & (EPOLLRDHUP | EPOLLHUP)) {
            c->rdhup = 1;
        }
        if (ee->events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) {
            c->read.ready = 1;
            if (c->read.handler) {
                c->read.timedout = 0;
                c->read.handler(&c->read);
            }
        }
        if (c->fd == -1) {
            continue;
        }
        if (ee->events & (EPOLLOUT | EPOLLHUP | EPOLLERR)) {
            c->write.ready = 1;
            if (c->write.handler) {
                c->write.timedout = 0;
                c->write.handler(&c->write);
            }
        }
    }

    lb_timer_heap_expire(&lb_loop->timers, lb_current_msec);
    lb_conn_release_closed();
    return LB_OK;
}
