/*
 * lb_pool.h: region allocator. Memory for one configuration generation or
 * one connection comes from a pool and is released all at once; a pool can
 * be reset and reused, so a steady stream of connections does not malloc.
 */
#ifndef LB_POOL_H
#define LB_POOL_H

#define LB_POOL_DEFAULT_SIZE  4096
#define LB_POOL_ALIGN         16

typedef struct lb_pool_block_s  lb_pool_block_t;
typedef struct lb_pool_large_s  lb_pool_large_t;
typedef struct lb_pool_cleanup_s lb_pool_cleanup_t;

struct lb_pool_block_s {
    lb_pool_block_t  *next;
    char             *pos;
    char             *end;
};

struct lb_pool_large_s {
    lb_pool_large_t  *next;
};

struct lb_pool_cleanup_s {
    void              (*handler)(void *data);
    void               *data;
    lb_pool_cleanup_t  *next;
};

struct lb_pool_s {
    lb_pool_block_t    *current;      /* block small allocations come from */
    lb_pool_block_t    *first;        /* first block, allocated with the pool */
    lb_pool_large_t    *large;        /* allocations bigger than a block */
    lb_pool_cleanup_t  *cleanups;
    size_t              block_size;
};

/* Returns NULL on allocation failure. */
lb_pool_t *lb_pool_create(size_t block_size);
void       lb_pool_destroy(lb_pool_t *pool);
/* Runs cleanups, frees large allocations and extra blocks, keeps the first
 * block: the pool is as good as new without a malloc. */
void       lb_pool_reset(lb_pool_t *pool);

void *lb_palloc(lb_pool_t *pool, size_t size);
void *lb_pcalloc(lb_pool_t *pool, size_t size);
char *lb_pstrdup(lb_pool_t *pool, const char *s);
char *lb_pstrndup(lb_pool_t *pool, const char *s, size_t n);
char *lb_psprintf(lb_pool_t *pool, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Registers handler(data) to run when the pool is reset or destroyed. */
int   lb_pool_cleanup_add(lb_pool_t *pool, void (*handler)(void *), void *data);

#endif
