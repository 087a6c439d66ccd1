/*
 * lb_timer.c: the timer heap.
 */
#include "lb_core.h"

int
lb_timer_heap_init(lb_timer_heap_t *h, size_t cap)
{
    h->n = 0;
    h->cap = cap ? cap : 64;
    h->items = malloc(h->cap * sizeof(lb_timer_t *));
    return h->items ? LB_OK : LB_ERROR;
}

void
lb_timer_heap_free(lb_timer_heap_t *h)
{
    free(h->items);
    h->items = NULL;
    h->n = h->cap = 0;
}

static inline void
lb_timer_heap_place(lb_timer_heap_t *h, lb_timer_t *t, size_t i)
{
    h->items[i] = t;
    t->index = i;
}

static void
lb_timer_heap_up(lb_timer_heap_t *h, size_t i)
{
    lb_timer_t  *t = h->items[i];
    size_t       parent;

    while (i > 0) {
        parent = (i - 1) / 2;
        if (h->items[parent]->when <= t->when) {
            break;
        }
        lb_timer_heap_place(h, h->items[parent], i);
        i = parent;
    }
    lb_timer_heap_place(h, t, i);
}

static void
lb_timer_heap_down(lb_timer_heap_t *h, size_t i)
{
    lb_timer_t  *t = h->items[i];
    size_t       child;

    for ( ;; ) {
        child = 2 * i + 1;
        if (child >= h->n) {
            break;
        }
        if (child + 1 < h->n && h->items[child + 1]->when < h->items[child]->when) {
            child++;
        }
        if (t->when <= h->items[child]->when) {
            break;
        }
        lb_timer_heap_place(h, h->items[child], i);
        i = child;
    }
    lb_timer_heap_place(h, t, i);
}

int
lb_timer_heap_set(lb_timer_heap_t *h, lb_timer_t *t, lb_msec_t when)
{
    lb_timer_t  **items;
    lb_msec_t     old;

    if (lb_timer_is_set(t)) {
        old = t->when;
        t->when = when;
        if (when < old) {
            lb_timer_heap_up(h, t->index);
        } else if (when > old) {
            lb_timer_heap_down(h, t->index);
        }
        return LB_OK;
    }

    if (h->n == h->cap) {
        items = realloc(h->items, 2 * h->cap * sizeof(lb_timer_t *));
        if (items == NULL) {
            return LB_ERROR;
        }
        h->items = items;
        h->cap *= 2;
    }

    t->when = when;
    h->items[h->n] = t;
    t->index = h->n++;
    lb_timer_heap_up(h, t->index);
    return LB_OK;
}

void
lb_timer_heap_del(lb_timer_heap_t *h, lb_timer_t *t)
{
    size_t       i = t->index;
    lb_timer_t  *last;

    if (i == LB_TIMER_UNSET) {
        return;
    }
    t->index = LB_TIMER_UNSET;
    last = h->items[--h->n];
    if (i == h->n) {
        return;
    }
    lb_timer_heap_place(h, last, i);
    if (i > 0 && h->items[(i - 1) / 2]->when > last->when) {
        lb_timer_heap_up(h, i);
    } else {
        lb_timer_heap_down(h, i);
    }
}

lb_msec_t
lb_timer_heap_delay(const lb_timer_heap_t *h, lb_msec_t now)
{
    if (h->n == 0) {
        return -1;
    }
    return h->items[0]->when > now ? h->items[0]->when - now : 0;
}

void
lb_timer_heap_expire(lb_timer_heap_t *h, lb_msec_t now)
{
    lb_timer_t  *t;

    while (h->n && h->items[0]->when <= now) {
        t = h->items[0];
        lb_timer_heap_del(h, t);
        t->handler(t);
    }
}
