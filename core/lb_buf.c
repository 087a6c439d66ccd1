/*
 * lb_buf.c: the bounded byte buffer.
 */
#include "lb_core.h"

void
lb_buf_init(lb_buf_t *b, char *mem, size_t size)
{
    b->start = b->pos = b->last = mem;
    b->end = mem + size;
}

lb_buf_t *
lb_buf_create(lb_pool_t *pool, size_t size)
{
    lb_buf_t  *b = lb_palloc(pool, sizeof(*b));
    char      *mem = b ? lb_palloc(pool, size) : NULL;

    if (mem == NULL) {
        return NULL;
    }
    lb_buf_init(b, mem, size);
    return b;
}

void
lb_buf_compact(lb_buf_t *b)
{
    size_t  n = lb_buf_len(b);

    if (b->pos != b->start) {
        memmove(b->start, b->pos, n);
        b->pos = b->start;
        b->last = b->start + n;
    }
}

size_t
lb_buf_append(lb_buf_t *b, const void *data, size_t n)
{
    if (n > lb_buf_room(b)) {
        lb_buf_compact(b);
        n = lb_min(n, lb_buf_room(b));
    }
    memcpy(b->last, data, n);
    b->last += n;
    return n;
}

void
lb_buf_consume(lb_buf_t *b, size_t n)
{
    b->pos += lb_min(n, lb_buf_len(b));
    if (b->pos == b->last) {
        lb_buf_reset(b);
    }
}
