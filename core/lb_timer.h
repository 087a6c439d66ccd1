/*
 * lb_timer.h: timers in a binary min-heap ordered by expiry, so adding,
 * moving and deleting a timer are O(log n) and finding the next one O(1).
 * Each timer remembers its heap index, so deletion needs no search.
 */
#ifndef LB_TIMER_H
#define LB_TIMER_H

#define LB_TIMER_UNSET  ((size_t) -1)

typedef void (*lb_timer_handler_pt)(lb_timer_t *t);

struct lb_timer_s {
    lb_msec_t            when;
    size_t               index;     /* position in the heap, or LB_TIMER_UNSET */
    lb_timer_handler_pt  handler;
    void                *data;
};

typedef struct {
    lb_timer_t  **items;
    size_t        n;
    size_t        cap;
} lb_timer_heap_t;

static inline void
lb_timer_init(lb_timer_t *t, lb_timer_handler_pt handler, void *data)
{
    t->when = 0;
    t->index = LB_TIMER_UNSET;
    t->handler = handler;
    t->data = data;
}

static inline bool lb_timer_is_set(const lb_timer_t *t) { return t->index != LB_TIMER_UNSET; }

int   lb_timer_heap_init(lb_timer_heap_t *h, size_t cap);
void  lb_timer_heap_free(lb_timer_heap_t *h);
/* Arms t to fire at `when`, moving it if it is already armed.
 * Returns LB_ERROR only when the heap cannot grow. */
int   lb_timer_heap_set(lb_timer_heap_t *h, lb_timer_t *t, lb_msec_t when);
void  lb_timer_heap_del(lb_timer_heap_t *h, lb_timer_t *t);
static inline lb_timer_t *
lb_timer_heap_min(const lb_timer_heap_t *h) { return h->n ? h->items[0] : NULL; }
/* Milliseconds until the next timer (0 if due), or -1 if there is none. */
lb_msec_t lb_timer_heap_delay(const lb_timer_heap_t *h, lb_msec_t now);
/* Disarms and runs every timer due at `now`; handlers may re-arm timers. */
void  lb_timer_heap_expire(lb_timer_heap_t *h, lb_msec_t now);

#endif
