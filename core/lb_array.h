/*
 * lb_array.h: a growable array of fixed-size elements in a pool; used at
 * configuration time (listeners, servers, settings), not on hot paths.
 */
#ifndef LB_ARRAY_H
#define LB_ARRAY_H

typedef struct {
    void       *elts;
    size_t      nelts;
    size_t      size;       /* of one element */
    size_t      nalloc;
    lb_pool_t  *pool;
} lb_array_t;

int   lb_array_init(lb_array_t *a, lb_pool_t *pool, size_t n, size_t size);
/* Returns a pointer to a new zeroed element at the end, NULL on failure. */
void *lb_array_push(lb_array_t *a);

#define lb_array_at(a, type, i)  (((type *) (a)->elts)[i])

#endif
