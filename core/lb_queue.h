/*
 * lb_queue.h: an intrusive circular doubly-linked list. The links live in
 * the element, so putting an object on a list never allocates.
 */
#ifndef LB_QUEUE_H
#define LB_QUEUE_H

typedef struct lb_queue_s lb_queue_t;

struct lb_queue_s {
    lb_queue_t  *prev;
    lb_queue_t  *next;
};

static inline void lb_queue_init(lb_queue_t *q) { q->prev = q; q->next = q; }
static inline int  lb_queue_empty(const lb_queue_t *h) { return h->next == h; }

static inline void
lb_queue_insert_tail(lb_queue_t *h, lb_queue_t *x)
{
    x->prev = h->prev;
    x->prev->next = x;
    x->next = h;
    h->prev = x;
}

static inline void
lb_queue_insert_head(lb_queue_t *h, lb_queue_t *x)
{
    x->next = h->next;
    x->next->prev = x;
    x->prev = h;
    h->next = x;
}

/* Unlinks x and leaves it pointing at itself, so removing twice is safe. */
static inline void
lb_queue_remove(lb_queue_t *x)
{
    x->next->prev = x->prev;
    x->prev->next = x->next;
    x->prev = x;
    x->next = x;
}

#define lb_queue_head(h)  ((h)->next)
#define lb_queue_data(q, type, link)  lb_container_of(q, type, link)

#endif
