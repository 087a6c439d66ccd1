/*
 * lb_pool.c: the region allocator behind lb_pool.h.
 */
#include "lb_core.h"

#define lb_align_up(n, a)  (((n) + ((a) - 1)) & ~((size_t) (a) - 1))

static lb_pool_block_t *
lb_pool_block_new(size_t size)
{
    lb_pool_block_t  *b;
    size_t            head = lb_align_up(sizeof(lb_pool_block_t), LB_POOL_ALIGN);

    b = malloc(head + size);
    if (b == NULL) {
        return NULL;
    }
    b->next = NULL;
    b->pos = (char *) b + head;
    b->end = b->pos + size;
    return b;
}

lb_pool_t *
lb_pool_create(size_t block_size)
{
    lb_pool_t        *pool;
    lb_pool_block_t  *b;

    if (block_size < 256) {
        block_size = 256;
    }
    b = lb_pool_block_new(block_size);
    if (b == NULL) {
        return NULL;
    }
    pool = (lb_pool_t *) b->pos;
    b->pos += lb_align_up(sizeof(lb_pool_t), LB_POOL_ALIGN);

    pool->current = b;
    pool->first = b;
    pool->large = NULL;
    pool->cleanups = NULL;
    pool->block_size = block_size;
    return pool;
}

static void
lb_pool_release(lb_pool_t *pool)
{
    lb_pool_cleanup_t  *c;
    lb_pool_large_t    *l, *ln;

    for (c = pool->cleanups; c; c = c->next) {
        c->handler(c->data);
    }
    pool->cleanups = NULL;

    for (l = pool->large; l; l = ln) {
        ln = l->next;
        free(l);
    }
    pool->large = NULL;
}

void
lb_pool_destroy(lb_pool_t *pool)
{
    lb_pool_block_t  *b, *bn;

    if (pool == NULL) {
        return;
    }
    lb_pool_release(pool);
    for (b = pool->first; b; b = bn) {
        bn = b->next;
        free(b);
    }
}

void
lb_pool_reset(lb_pool_t *pool)
{
    lb_pool_block_t  *first = pool->first, *b, *bn;
    size_t            head = lb_align_up(sizeof(lb_pool_block_t), LB_POOL_ALIGN);

    lb_pool_release(pool);
    for (b = first->next; b; b = bn) {
        bn = b->next;
        free(b);
    }
    first->next = NULL;
    first->pos = (char *) first + head
                 + lb_align_up(sizeof(lb_pool_t), LB_POOL_ALIGN);
    pool->current = first;
}

void *
lb_palloc(lb_pool_t *pool, size_t size)
{
    lb_pool_block_t  *b;
    lb_pool_large_t  *l;
    char             *p;
    size_t            head;

    if (size > SIZE_MAX / 2) {
        return NULL;
    }
    size = lb_align_up(size ? size : 1, LB_POOL_ALIGN);

    if (size <= pool->block_size / 2) {
        b = pool->current;
        if ((size_t) (b->end - b->pos) >= size) {
            p = b->pos;
            b->pos += size;
            return p;
        }
        b = lb_pool_block_new(pool->block_size);
        if (b == NULL) {
            return NULL;
        }
        b->next = pool->current->next;
        pool->current->next = b;
        pool->current = b;
        p = b->pos;
        b->pos += size;
        return p;
    }

    head = lb_align_up(sizeof(lb_pool_large_t), LB_POOL_ALIGN);
    l = malloc(head + size);
    if (l == NULL) {
        return NULL;
    }
    l->next = pool->large;
    pool->large = l;
    return (char *) l + head;
}

void *
lb_pcalloc(lb_pool_t *pool, size_t size)
{
    void  *p = lb_palloc(pool, size);

    if (p) {
        memset(p, 0, size);
    }
    return p;
}

char *
lb_pstrndup(lb_pool_t *pool, const char *s, size_t n)
{
    char  *p = lb_palloc(pool, n + 1);

    if (p) {
        memcpy(p, s, n);
        p[n] = '\0';
    }
    return p;
}

char *
lb_pstrdup(lb_pool_t *pool, const char *s)
{
    return lb_pstrndup(pool, s, strlen(s));
}

char *
lb_psprintf(lb_pool_t *pool, const char *fmt, ...)
{
    va_list  ap;
    int      n;
    char    *p;

    va_start(ap, fmt);
    n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0) {
        return NULL;
    }
    p = lb_palloc(pool, (size_t) n + 1);
    if (p == NULL) {
        return NULL;
    }
    va_start(ap, fmt);
    vsnprintf(p, (size_t) n + 1, fmt, ap);
    va_end(ap);
    return p;
}

int
lb_pool_cleanup_add(lb_pool_t *pool, void (*handler)(void *), void *data)
{
    lb_pool_cleanup_t  *c = lb_palloc(pool, sizeof(*c));

    if (c == NULL) {
        return LB_ERROR;
    }
    c->handler = handler;
    c->data = data;
    c->next = pool->cleanups;
    pool->cleanups = c;
    return LB_OK;
}
