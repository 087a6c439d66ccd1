/*
 * lb_array.c: the pool-backed growable array.
 */
#include "lb_core.h"

int
lb_array_init(lb_array_t *a, lb_pool_t *pool, size_t n, size_t size)
{
    a->nelts = 0;
    a->size = size;
    a->nalloc = n ? n : 1;
    if (a->nalloc > SIZE_MAX / size) {
        return LB_ERROR;
    }
    a->pool = pool;
    a->elts = lb_palloc(pool, a->nalloc * size);
    return a->elts ? LB_OK : LB_ERROR;
}

void *
lb_array_push(lb_array_t *a)
{
    void  *p;

    if (a->nelts == a->nalloc) {
        if (a->nalloc > SIZE_MAX / 2 / a->size) {
            return NULL;
        }
        p = lb_palloc(a->pool, 2 * a->nalloc * a->size);
        if (p == NULL) {
            return NULL;
        }
        memcpy(p, a->elts, a->nelts * a->size);
        a->elts = p;
        a->nalloc *= 2;
    }
    p = (char *) a->elts + a->nelts++ * a->size;
    memset(p, 0, a->size);
    return p;
}
