/*
 * lb_event.h: the per-process event loop: epoll for readiness, the timer
 * heap for deadlines. Every descriptor the loop watches belongs to an
 * lb_conn_t (listening sockets too), whose read and write events carry the
 * handlers. Connections are registered once, edge-triggered, for both
 * directions; a handler reads or writes until LB_AGAIN.
 */
#ifndef LB_EVENT_H
#define LB_EVENT_H

#include <signal.h>

typedef void (*lb_event_handler_pt)(lb_event_t *ev);

struct lb_event_s {
    void                *data;          /* the owning lb_conn_t */
    lb_event_handler_pt  handler;
    lb_timer_t           timer;
    unsigned             ready:1;       /* readiness seen and not used up */
    unsigned             timedout:1;    /* the handler runs because of the timer */
    unsigned             write:1;
};

struct lb_loop_s {
    int                  epfd;
    lb_timer_heap_t      timers;
    void                *events;        /* struct epoll_event[nevents] */
    int                  nevents;
    lb_queue_t           closed;        /* connections closed in this batch */
};

extern lb_loop_t  *lb_loop;

int  lb_loop_init(int nevents);
void lb_loop_free(void);

/* Registers c->fd: edge-triggered read+write, or level-triggered read only
 * (listening sockets). A connection already registered (by an accept step)
 * is left as it is. Returns LB_OK or LB_ERROR with errno set. */
int  lb_loop_add_conn(lb_conn_t *c, bool level);
void lb_loop_del_conn(lb_conn_t *c);

/* Waits up to the next timer (or max_wait ms when there is none; -1 for
 * ever) with `sigmask` in force during the wait, then dispatches events and
 * expired timers. Returns LB_OK, or LB_AGAIN when a signal interrupted it. */
int  lb_loop_process(lb_msec_t max_wait, const sigset_t *sigmask);

/* Timers bound to an event: on expiry ev->timedout is set and the event's
 * handler runs. */
void lb_event_timer_set(lb_event_t *ev, lb_msec_t delay);
void lb_event_timer_del(lb_event_t *ev);
/* Plain timers for work that is not tied to a connection. */
void lb_timer_set(lb_timer_t *t, lb_msec_t delay);
void lb_timer_del(lb_timer_t *t);

#endif
